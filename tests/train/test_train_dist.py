"""torchrun with two CPU processes (gloo) trains with DDP; only rank 0 writes one checkpoint."""

from __future__ import annotations

import csv
import json
import socket
from pathlib import Path

import pytest
import torch

import camloc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_torchrun_two_processes(synth_tiny: Path, tmp_path: Path, run_torchrun):
    out = tmp_path / "ddp"
    proc = run_torchrun(["train", str(synth_tiny), "--arch", "tiny-cnn", "--arch-opt", "width=8",
                         "--epochs", "2", "--batch-size", "6", "--input-size", "32", "--workers", "0",
                         "--lr", "0.05", "--crop-scale", "0.5", "--device", "cpu", "--val-split",
                         "test", "--out", str(out)], timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # one checkpoint, written once (rank 0): the best and last model folders, the state, the log,
    # and the lock file rank 0 held while the run wrote (camloc.io.out_lock)
    assert sorted(p.name for p in out.iterdir()) == [".camloc.lock", "last", "log.csv",
                                                     "metrics.json",
                                                     "model.safetensors", "spec.json",
                                                     "train_state.pt"]
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    # 36 training images over 2 ranks x 6 per step: 3 steps per epoch
    assert int(rows[-1]["step"]) == 6
    # validation was sharded over the ranks and merged: all 12 test images scored once
    assert metrics["last"]["report"]["counts"]["scored"] == 12
    state = torch.load(str(out / "train_state.pt"), weights_only=True)
    assert state["world_size"] == 2 and state["epoch"] == 2
    model = camloc.load_model(out / "last")
    assert model.spec.num_classes == 3
