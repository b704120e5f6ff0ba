"""Fixtures for compare: a small synthetic WSOL dataset (boxes and masks) and tiny random models."""

from __future__ import annotations

from pathlib import Path

import pytest

from camloc.data.synth import class_names as synth_class_names


def write_tiny(folder: Path, num_classes: int = 3, pool: str = "avg", size: int = 64) -> Path:
    """A tiny-cnn model folder (random weights) that ``camloc.load_model`` reads."""
    import torch

    from camloc.models.archs import build_arch
    from camloc.models.spec import Preprocess
    from camloc.train.checkpoint import write_model_dir

    torch.manual_seed(0)
    net = build_arch("tiny-cnn", num_classes=num_classes, pool=pool, pretrained=False, width=8)
    spec = {"format": "camloc-model", "version": 1, "name": f"tiny-{pool}", "arch": "tiny-cnn",
            "arch_kwargs": {"width": 8}, "num_classes": num_classes,
            "class_names": synth_class_names(num_classes), "pool": pool,
            "preprocess": Preprocess(input_size=(size, size), interpolation="bilinear").to_dict()}
    return write_model_dir(folder, net, spec)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from camloc.data.synth import make_synth

    return make_synth(tmp_path_factory.mktemp("cmp") / "syn", classes=3, images=16, size=64,
                      seed=3, test_fraction=0.25)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny(tmp_path_factory.mktemp("cmp-model") / "tiny")


@pytest.fixture(scope="session")
def tiny(tiny_dir: Path):
    import camloc

    return camloc.load_model(str(tiny_dir), device="cpu")
