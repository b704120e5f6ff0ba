"""--resume after an interrupted run ends with bit-identical weights to an uninterrupted run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from camloc.errors import CheckpointError
from camloc.train import train


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def reference(synth_tiny: Path, tmp_path_factory: pytest.TempPathFactory, tiny_config):
    out = tmp_path_factory.mktemp("ref") / "run"
    res = train(tiny_config(synth_tiny, out, epochs=3, val_split="test", select="top1"))
    assert res.completed and res.global_step == 3 * 5
    return out, res


def test_resume_mid_epoch_is_bit_identical(synth_tiny, tmp_path, reference, tiny_config):
    ref_out, ref = reference
    out = tmp_path / "run"
    # stop after 7 steps: epoch 2 (5 steps per epoch), 2 steps in
    first = train(tiny_config(synth_tiny, out, epochs=3, val_split="test", select="top1",
                              max_steps=7))
    assert not first.completed and first.global_step == 7 and first.epochs_done == 1
    assert (out / "last" / "model.safetensors").is_file()  # epoch 1 finished and was written
    second = train(tiny_config(synth_tiny, out, epochs=3, val_split="test", select="top1",
                               resume=True))
    assert second.completed and second.global_step == ref.global_step
    assert _same(_weights(out / "last"), _weights(ref_out / "last"))
    assert _same(_weights(out), _weights(ref_out))
    assert second.best_epoch == ref.best_epoch
    # the epoch records (train loss/accuracy summed across the interruption, val metrics) agree
    keys = ("epoch", "step", "lr", "train_loss", "train_acc", "val_top1", "best")
    assert [{k: r[k] for k in keys} for r in second.history] == \
        [{k: r[k] for k in keys} for r in ref.history]
    assert json.loads((out / "metrics.json").read_text())["completed"] is True


def test_resume_at_epoch_boundary_and_periodic_saves(synth_tiny, tmp_path, reference, tiny_config):
    ref_out, _ = reference
    out = tmp_path / "run"
    # stop exactly at the end of epoch 2 (10 steps), with a state saved every 3 steps
    first = train(tiny_config(synth_tiny, out, epochs=3, val_split="test", select="top1",
                              max_steps=10, save_every=3))
    assert not first.completed and first.epochs_done == 2
    second = train(tiny_config(synth_tiny, out, epochs=3, val_split="test", select="top1",
                               resume=True))
    assert second.completed
    assert _same(_weights(out / "last"), _weights(ref_out / "last"))
    # resuming a finished run does nothing and keeps the weights
    again = train(tiny_config(synth_tiny, out, epochs=3, val_split="test", select="top1",
                              resume=True))
    assert again.completed and again.global_step == second.global_step
    assert _same(_weights(out / "last"), _weights(ref_out / "last"))


def test_resume_with_other_settings_is_refused(synth_tiny, tmp_path, tiny_config):
    out = tmp_path / "run"
    train(tiny_config(synth_tiny, out, epochs=2, max_steps=2))
    with pytest.raises(CheckpointError, match="batch_size"):
        train(tiny_config(synth_tiny, out, epochs=2, batch_size=4, resume=True))
    with pytest.raises(CheckpointError, match="epochs"):
        train(tiny_config(synth_tiny, out, epochs=5, resume=True))


def test_resume_after_the_process_is_killed(synth_tiny, tmp_path, reference, tiny_config):
    """SIGKILL a `camloc train` process mid-run (state saved every step), then --resume."""
    import os
    import signal
    import subprocess
    import sys
    import time

    ref_out, ref = reference
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "camloc", "train", str(synth_tiny), "--arch", "tiny-cnn",
           "--arch-opt", "width=8", "--epochs", "3", "--batch-size", "8", "--lr", "0.05",
           "--input-size", "32", "--crop-scale", "0.5,1", "--workers", "0", "--seed", "3",
           "--val-split", "test", "--select", "top1", "--save-every", "1", "--device", "cpu",
           "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state = out / "train_state.pt"
    deadline = time.monotonic() + 60
    step = 0
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if state.is_file():
                try:
                    step = int(torch.load(str(state), weights_only=True)["global_step"])
                except Exception:  # noqa: BLE001 - never torn (atomic rename), but be safe
                    step = 0
                if step >= 7:
                    break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    killed = proc.returncode == -signal.SIGKILL
    assert killed or proc.returncode == 0, proc.stderr.read().decode()[-2000:]
    saved = torch.load(str(state), weights_only=True)  # a complete state survived the kill
    assert saved["global_step"] >= 1
    assert not list(out.glob(".*.tmp")) or killed  # a temp file may only be left by the kill
    done = train(tiny_config(synth_tiny, out, epochs=3, val_split="test", select="top1",
                             save_every=1, resume=True))
    assert done.completed and done.global_step == ref.global_step
    assert _same(_weights(out / "last"), _weights(ref_out / "last"))
    assert _same(_weights(out), _weights(ref_out))
