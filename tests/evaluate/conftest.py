"""Fixtures of the evaluation tests: a synthetic dataset and a tiny camloc model folder with its
three classes (random weights, seeded), so that `camloc evaluate` runs in a second."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from camloc.data.synth import make_synth

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def synth3(tmp_path_factory) -> Path:
    """3 classes, 24 images of 64 x 64, half of them in ``test``."""
    return make_synth(tmp_path_factory.mktemp("synth3") / "data", classes=3, images=24, size=64,
                      seed=1, test_fraction=0.5)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, synth3) -> Path:
    """A tiny-cnn model folder (3 classes, 64 px input, random weights with seed 0) named after
    the synthetic set's classes."""
    from camloc.data.open import open_dataset
    from camloc.models.archs import build_arch
    from camloc.train.checkpoint import write_model_dir

    torch.manual_seed(0)
    net = build_arch("tiny-cnn", num_classes=3, width=8)
    names = open_dataset(synth3, split="test").class_names
    spec = {"arch": "tiny-cnn", "num_classes": 3, "arch_kwargs": {"width": 8},
            "class_names": list(names), "name": "tiny",
            "preprocess": {"input_size": [64, 64], "fit": "stretch", "interpolation": "bilinear",
                           "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}
    return write_model_dir(tmp_path_factory.mktemp("model") / "tiny", net, spec)


def run_cli(args: list[str], cwd: Path | None = None, timeout: float = 240
            ) -> subprocess.CompletedProcess[str]:
    """``python -m camloc ARGS`` as a user runs it (this checkout's sources first)."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "camloc", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def cli():
    """:func:`run_cli`."""
    return run_cli
