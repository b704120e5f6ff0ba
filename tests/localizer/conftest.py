"""Fixtures for the localizer: a small synthetic WSOL set and a tiny random model folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from camloc.data.synth import class_names as synth_class_names


def write_tiny(folder: Path, seed: int = 0, size: int = 64) -> Path:
    """A tiny-cnn model folder (random weights, 3 classes) that ``camloc.load_model`` reads."""
    import torch

    from camloc.models.archs import build_arch
    from camloc.models.spec import Preprocess
    from camloc.train.checkpoint import write_model_dir

    torch.manual_seed(seed)
    net = build_arch("tiny-cnn", num_classes=3, pool="avg", pretrained=False, width=8)
    spec = {"format": "camloc-model", "version": 1, "name": "tiny-avg", "arch": "tiny-cnn",
            "arch_kwargs": {"width": 8}, "num_classes": 3, "class_names": synth_class_names(3),
            "pool": "avg",
            "preprocess": Preprocess(input_size=(size, size), interpolation="bilinear").to_dict()}
    return write_model_dir(folder, net, spec)


@pytest.fixture(scope="session")
def loc_synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from camloc.data.synth import make_synth

    return make_synth(tmp_path_factory.mktemp("loc") / "syn", classes=3, images=24, size=64,
                      seed=5, test_fraction=0.25)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny(tmp_path_factory.mktemp("loc-model") / "tiny")


@pytest.fixture(scope="session")
def other_tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same architecture and name with other weights."""
    return write_tiny(tmp_path_factory.mktemp("loc-model2") / "tiny", seed=1)


@pytest.fixture(scope="session")
def tiny(tiny_dir: Path):
    import camloc

    return camloc.load_model(str(tiny_dir), device="cpu")
