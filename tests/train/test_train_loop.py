"""A short training run learns, validates and writes loadable checkpoints; `camloc explain` runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

import camloc
from camloc.cli import main as cli_main
from camloc.errors import ConfigError
from camloc.train import LOG_COLUMNS, TrainConfig, train
from camloc.train.data import epoch_batches, random_resized_crop_box, steps_per_epoch
from camloc.train.schedule import LRSchedule


@pytest.fixture(scope="module")
def trained(synth_small: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("run") / "tiny"
    events: list[tuple] = []

    class Rec:
        def message(self, text):
            events.append(("message", text))

        def start_epoch(self, *a):
            events.append(("start_epoch",) + a)

        def step(self, done, loss, acc, lr):
            events.append(("step", done, loss, acc, lr))

        def start_eval(self, *a):
            events.append(("start_eval",) + a)

        def end_epoch(self, record):
            events.append(("end_epoch", record))

    cfg = TrainConfig(dataset=synth_small, arch="tiny-cnn", arch_kwargs={"width": 8}, epochs=6,
                      batch_size=16, lr=0.1, input_size=64, crop_scale=(0.5, 1.0), out=out,
                      workers=0, seed=0, val_split="auto", eval_batch_size=50,
                      eval_interval=0.05)
    return train(cfg, reporter=Rec()), out, events


def test_training_learns(trained):
    result, out, events = trained
    assert result.completed and result.epochs_done == 6 and result.global_step == 6 * 10
    hist = result.history
    assert hist[-1]["train_loss"] < hist[0]["train_loss"] - 0.3
    # 4 classes: chance is 0.25
    assert hist[-1]["train_acc"] > 60.0  # percent, like every metric
    assert hist[-1]["val_top1"] > 50.0
    for rec in hist:
        assert 0.0 <= rec["val_gt_known"] <= 100.0 and 0.0 <= rec["val_maxboxacc_v2"] <= 100.0
    assert result.select == "maxboxacc_v2"
    assert result.best_value == max(r["val_maxboxacc_v2"] for r in hist)
    steps = [e for e in events if e[0] == "step"]
    assert len(steps) == 60 and [e[0] for e in events].count("end_epoch") == 6


def test_outputs_and_log(trained):
    result, out, _ = trained
    for f in ("spec.json", "model.safetensors", "last/spec.json", "last/model.safetensors",
              "train_state.pt", "log.csv", "metrics.json"):
        assert (out / f).is_file(), f
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert len(rows) == 6 and tuple(rows[0]) == LOG_COLUMNS
    assert [int(r["epoch"]) for r in rows] == list(range(1, 7))
    assert sum(r["best"] == "True" for r in rows) >= 1
    spec = json.loads((out / "spec.json").read_text())
    assert spec["format"] == "camloc-model" and spec["arch"] == "tiny-cnn"
    assert spec["arch_kwargs"] == {"width": 8} and spec["pool"] == "avg"
    assert spec["epoch"] == result.best_epoch
    assert spec["class_names"] == ["red-disk", "green-square", "blue-triangle", "yellow-cross"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best"]["epoch"] == result.best_epoch and metrics["completed"] is True
    assert "localization" in metrics["best"]["report"]
    assert not list(out.glob(".*.tmp"))  # no temporary files left behind


def test_checkpoint_loads_and_explains(trained, tmp_path, synth_small):
    _, out, _ = trained
    model = camloc.load_model(out)
    assert model.spec.num_classes == 4 and model.head.num_channels == 32
    assert model.spec.preprocess.input_size == (64, 64)
    last = camloc.load_model(out / "last")
    sd_last = last.module.state_dict()
    assert all(torch.equal(v, sd_last[k]) for k, v in model.module.state_dict().items()) == \
        (json.loads((out / "spec.json").read_text())["epoch"] == 6)
    img = sorted((synth_small / "images" / "test").glob("*.png"))[0]
    rc = cli_main(["explain", str(img), "--model", str(out), "--out", str(tmp_path / "ex"),
                   "--top-k", "2"])
    assert rc == 0
    assert (tmp_path / "ex" / "results.jsonl").is_file()


def test_existing_run_needs_resume_or_overwrite(trained, synth_small):
    _, out, _ = trained
    cfg = TrainConfig(dataset=synth_small, arch="tiny-cnn", out=out, val_split="none")
    with pytest.raises(ConfigError, match="--resume"):
        train(cfg)


def test_epoch_batches_are_deterministic_and_shard_exactly():
    a = epoch_batches(23, 4, seed=1, epoch=2)
    assert a == epoch_batches(23, 4, seed=1, epoch=2)
    assert a != epoch_batches(23, 4, seed=1, epoch=3)
    assert sorted(i for b in a for i, _ in b) == list(range(23))
    assert len(a) == steps_per_epoch(23, 4)
    shards = [epoch_batches(23, 4, 1, 2, rank=r, world_size=2) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == steps_per_epoch(23, 4, 2)
    seen = sorted(i for s in shards for b in s for i, _ in b)
    assert set(seen) == set(range(23)) and len(seen) == 24  # padded by one, like DistributedSampler
    # a lone last image is dropped (BatchNorm), never the only batch
    assert [len(b) for b in epoch_batches(9, 4, 0, 0)] == [4, 4]
    assert steps_per_epoch(9, 4) == 2 and steps_per_epoch(1, 4) == 1


def test_crop_box_and_schedule():
    import numpy as np

    rng = np.random.default_rng(0)
    for _ in range(50):
        x0, y0, x1, y1 = random_resized_crop_box(80, 40, rng, (0.3, 1.0), (0.75, 4 / 3))
        assert 0 <= x0 < x1 <= 80 and 0 <= y0 < y1 <= 40
    s = LRSchedule("cosine", total_steps=10, warmup_steps=2)
    assert s.factor(0) == 0.5 and s.factor(1) == 1.0 and s.factor(10) == pytest.approx(0.0)
    assert LRSchedule("constant", 5).factor(4) == 1.0


def test_config_errors():
    with pytest.raises(ConfigError, match="pool"):
        TrainConfig(dataset="d", arch="tiny-cnn", pool="median").checked()
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig(dataset="d", arch="tiny-cnn", epochs=0).checked()
    with pytest.raises(ConfigError, match="crop_scale"):
        TrainConfig(dataset="d", arch="tiny-cnn", crop_scale=(0.5, 2.0)).checked()
    with pytest.raises(ConfigError, match="val_split"):
        TrainConfig(dataset="d", arch="tiny-cnn", val_split="1.5").checked()
    assert TrainConfig(dataset="d", arch="x", pretrained=True).new_lr_multiplier() == 10.0
    assert TrainConfig(dataset="d", arch="x").new_lr_multiplier() == 1.0


def test_standalone_evaluation_matches_the_logged_validation(trained, synth_small):
    from camloc.data.datasets import open_dataset
    from camloc.evaluate import evaluate_model

    result, out, _ = trained
    model = camloc.load_model(out)
    report = evaluate_model(model, open_dataset(synth_small, split="test"), interval=0.05,
                            batch_size=50)
    best = result.history[result.best_epoch - 1]
    assert report["classification"]["top1"] == pytest.approx(best["val_top1"])
    assert report["localization"]["maxboxacc_v2"]["value"] == \
        pytest.approx(best["val_maxboxacc_v2"])
