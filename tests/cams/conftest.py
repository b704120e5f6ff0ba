"""Models for the method tests: seeded random resnet18 / vgg16 / ViT-tiny, built once per module."""

from __future__ import annotations

import pytest
import torch


def _seeded(name: str, **kw):
    import camloc

    torch.manual_seed(0)
    return camloc.load_model(name, weights=None, **kw)


@pytest.fixture(scope="module")
def resnet18():
    return _seeded("resnet18")


@pytest.fixture(scope="module")
def vgg16():
    return _seeded("vgg16")


@pytest.fixture(scope="module")
def vit_tiny():
    return _seeded("timm:vit_tiny_patch16_224")


@pytest.fixture
def photos(samples_dir):
    """``photos(model, size)``: the bundled sample photos preprocessed for ``model`` at ``size``."""
    from camloc.data.images import batch_images, load_image

    def make(model, size: int, n: int = 2) -> torch.Tensor:
        pre = model.spec.preprocess.with_(input_size=(size, size), fit="stretch")
        paths = sorted(samples_dir.glob("*.jpg"))[:n]
        x, _ = batch_images([load_image(p) for p in paths], pre)
        return x

    return make
