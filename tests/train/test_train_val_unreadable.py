"""Unreadable validation images are reported, and an epoch without a metric is never 'best'."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from camloc.train import train


def _corrupt(data: Path, tmp_path: Path, count: int | None) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    test = sorted((copy / "images" / "test").iterdir())
    for p in test[: len(test) if count is None else count]:
        p.write_bytes(b"not an image")
    return copy


def test_one_unreadable_validation_image_is_reported(synth_tiny, tiny_config, tmp_path):
    data = _corrupt(synth_tiny, tmp_path, 1)
    messages: list[str] = []

    class Rep:
        def message(self, text): messages.append(text)
        def start_epoch(self, *a): pass
        def step(self, *a): pass
        def start_eval(self, *a): pass
        def end_epoch(self, *a): pass

    res = train(tiny_config(data, tmp_path / "run", val_split="test", epochs=1), reporter=Rep())
    assert [Path(f["path"]).name for f in res.val_failed] == ["00036.png"]
    assert any("1 image(s) could not be read" in m and "00036.png" in m for m in messages)
    assert res.best_epoch == 1 and res.best_value is not None
    assert res.exit_code == 1
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["last"]["report"]["counts"] == {"scored": 11, "failed": 1}


def test_no_best_model_from_null_metrics(synth_tiny, tiny_config, tmp_path):
    data = _corrupt(synth_tiny, tmp_path, None)
    res = train(tiny_config(data, tmp_path / "run", val_split="test", epochs=2))
    assert res.select == "maxboxacc_v2"
    assert res.best_epoch is None and res.best_value is None
    assert res.exit_code == 1
    out = tmp_path / "run"
    assert not (out / "spec.json").exists()  # no "best" model written
    assert (out / "last" / "spec.json").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best"]["epoch"] is None
    assert all(not h["best"] for h in metrics["history"])


def test_cli_exit_code_and_message(synth_tiny, tmp_path, capsys):
    from camloc.cli import main

    data = _corrupt(synth_tiny, tmp_path, None)
    rc = main(["train", str(data), "-a", "tiny-cnn", "--arch-opt", "width=8", "--epochs", "1",
               "--batch-size", "8", "--input-size", "32", "--workers", "0", "-o",
               str(tmp_path / "run")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "no best model" in err and "12 validation image(s) could not be read" in err


def test_bad_numbers_are_usage_errors(synth_tiny, tmp_path, capsys):
    from camloc.cli import main

    for opt, value in (("--workers", "-1"), ("--epochs", "0"), ("--batch-size", "0"),
                       ("--lr", "nan"), ("--eval-interval", "nan")):
        rc = main(["train", str(synth_tiny), "-a", "tiny-cnn", opt, value, "-o",
                   str(tmp_path / "run")])
        assert rc == 2, opt
        [line] = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
        assert line.startswith("error: ") and opt.lstrip("-").replace("-", "_") in line, line
    assert not (tmp_path / "run").exists()
