"""Shared fixtures: tiny models built in memory, the offline default model, sample photos, the dev set.

Nothing here downloads anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "src" / "camloc" / "assets" / "samples"
DEV_SET = (REPO / ".." / "shared" / "data" / "imagenet-val-dev").resolve()


@pytest.fixture(scope="session")
def dev_set() -> Path:
    """The 511-image ILSVRC validation subset; tests using it skip where it is absent."""
    if not (DEV_SET / "metadata" / "image_ids.txt").is_file():
        pytest.skip(f"dev set not found at {DEV_SET} (it lives in ../shared beside the checkout)")
    return DEV_SET


@pytest.fixture(scope="session")
def default_model():
    import camloc

    return camloc.load_model("efficientnet_lite0", device="cpu")


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES


def tiny_gapnet(num_classes: int = 4, channels: int = 8, seed: int = 0) -> nn.Module:
    """A small GapNet with random weights."""
    from camloc.models import GapNet

    torch.manual_seed(seed)
    feats = nn.Sequential(nn.Conv2d(3, channels, 3, stride=2, padding=1), nn.ReLU(),
                          nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU())
    return GapNet(feats, nn.Linear(channels, num_classes))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def make_gapnet():
    """Factory for small random GapNets: ``make_gapnet(num_classes=4, channels=8, seed=0)``."""
    return tiny_gapnet


def _run_torchrun(args: list[str], nproc: int = 2, timeout: float = 600.0):
    """Run ``torchrun --standalone --nproc_per_node=nproc -m camloc ARGS`` in its own process
    group (killed whole on timeout, so no rank is left behind); returns CompletedProcess."""
    import os
    import signal
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "camloc", *args]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"torchrun timed out after {timeout}s\n{out[-2000:]}\n{err[-2000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.fixture
def run_torchrun():
    """``run_torchrun(["evaluate", ...], nproc=2, timeout=180)``: see ``_run_torchrun``."""
    return _run_torchrun
