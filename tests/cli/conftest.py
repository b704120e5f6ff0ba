"""Fixtures for the CLI tests: a tiny camloc model folder (12 classes, two of them named 'crane',
as in ImageNet) and small images, so in-process CLI runs take a fraction of a second."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

TINY_CLASSES = [f"thing{i}" for i in range(10)] + ["crane", "crane"]


def write_tiny_model(folder: Path, num_classes: int = 12) -> Path:
    """A tiny-cnn checkpoint folder (random weights, 32x32 input) that ``load_model`` reads."""
    import torch

    from camloc.models.archs import build_arch
    from camloc.models.spec import Preprocess
    from camloc.train.checkpoint import write_model_dir

    torch.manual_seed(0)
    net = build_arch("tiny-cnn", num_classes=num_classes, pool="avg", pretrained=False, width=8)
    names = (TINY_CLASSES + [f"extra{i}" for i in range(num_classes)])[:num_classes]
    spec = {"format": "camloc-model", "version": 1, "name": "tiny", "arch": "tiny-cnn",
            "arch_kwargs": {"width": 8}, "num_classes": num_classes, "class_names": names,
            "pool": "avg",
            "preprocess": Preprocess(input_size=(32, 32), interpolation="bilinear").to_dict()}
    return write_model_dir(folder, net, spec)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("cli-model") / "tiny")


@pytest.fixture
def small_images(tmp_path: Path, samples_dir: Path) -> Path:
    """imgs/{cat.jpg, sub/coffee.jpg}: two real photos."""
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    shutil.copy(samples_dir / "chelsea.jpg", d / "cat.jpg")
    shutil.copy(samples_dir / "coffee.jpg", d / "sub" / "coffee.jpg")
    return d


@pytest.fixture(scope="session")
def tiny_model_3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with 3 classes (fewer than explain's default top-k)."""
    return write_tiny_model(tmp_path_factory.mktemp("cli-model3") / "tiny3", num_classes=3)
