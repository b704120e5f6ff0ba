"""Fixtures for the training tests: small synthetic WSOL datasets and tiny training settings."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 classes, 200 images of 64x64 (150 train / 50 test), boxes and masks."""
    from camloc.data.synth import make_synth

    return make_synth(tmp_path_factory.mktemp("train-synth") / "synth", classes=4, images=200,
                      size=64, seed=0)


@pytest.fixture(scope="session")
def synth_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes, 48 images of 32x32 (36 train / 12 test): for resume and torchrun tests."""
    from camloc.data.synth import make_synth

    return make_synth(tmp_path_factory.mktemp("train-tiny") / "synth", classes=3, images=48,
                      size=32, seed=1)


def _tiny_config(data: Path, out: Path, **changes):
    from camloc.train import TrainConfig

    kw = dict(dataset=data, arch="tiny-cnn", arch_kwargs={"width": 8}, epochs=2, batch_size=8,
              lr=0.05, input_size=32, crop_scale=(0.5, 1.0), out=out, workers=0, seed=3,
              val_split="none")
    kw.update(changes)
    return TrainConfig(**kw)


@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config(data, out, **changes)``: a TrainConfig that runs in about a second."""
    return _tiny_config
