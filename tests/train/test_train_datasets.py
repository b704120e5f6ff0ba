"""Bad training sets give clear errors (and exit code 2 from the CLI) before any training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from camloc.cli import main as cli_main
from camloc.errors import ConfigError, DatasetError
from camloc.train import TrainConfig, open_train_val, train


def _images(root: Path, n: int) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        name = f"im{i}.png"
        Image.fromarray(np.full((8, 8, 3), i * 20, np.uint8)).save(root / name)
        names.append(name)
    return names


def _csv(root: Path, rows: list[str], header: str = "path,label") -> Path:
    (root / "annotations.csv").write_text(header + "\n" + "".join(r + "\n" for r in rows))
    return root


def _cfg(root: Path, tmp: Path, **kw) -> TrainConfig:
    kw = {"workers": 0, **kw}
    return TrainConfig(dataset=root, arch="tiny-cnn", out=tmp / "out", val_split="none", **kw)


def test_one_class(tmp_path):
    root = tmp_path / "one"
    names = _images(root, 4)
    _csv(root, [f"{n},cat" for n in names])
    with pytest.raises(DatasetError, match="at least two classes"):
        train(_cfg(root, tmp_path))
    assert not (tmp_path / "out").exists()


def test_same_label_everywhere(tmp_path):
    root = tmp_path / "same"
    names = _images(root, 4)
    (root / "classes.txt").write_text("cat\ndog\n")
    _csv(root, [f"{n},0" for n in names])
    with pytest.raises(DatasetError, match="same label"):
        train(_cfg(root, tmp_path))


def test_no_labels(tmp_path):
    root = tmp_path / "nolabels"
    names = _images(root, 3)
    _csv(root, names, header="path")
    with pytest.raises(DatasetError) as info:
        train(_cfg(root, tmp_path))
    assert "no class label" in str(info.value) and len(info.value.problems) == 3


def test_empty_and_missing(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    _csv(empty, [])
    with pytest.raises(DatasetError):
        train(_cfg(empty, tmp_path))
    missing = tmp_path / "missing"
    names = _images(missing, 2)
    _csv(missing, [f"{names[0]},a", f"{names[1]},b", "gone.png,a"])
    with pytest.raises(DatasetError, match="gone.png"):
        train(_cfg(missing, tmp_path))
    with pytest.raises(DatasetError, match="not found"):
        train(_cfg(tmp_path / "nowhere", tmp_path))


def test_unreadable_image_names_the_file(tmp_path):
    root = tmp_path / "broken"
    names = _images(root, 4)
    (root / names[2]).write_bytes(b"not a png")
    _csv(root, [f"{n},{'ab'[i % 2]}" for i, n in enumerate(names)])
    with pytest.raises(DatasetError, match=names[2]):
        train(_cfg(root, tmp_path, epochs=1, batch_size=4, input_size=16, workers=1))


def test_validation_options(tmp_path):
    root = tmp_path / "ok"
    names = _images(root, 10)
    _csv(root, [f"{n},{'ab'[i % 2]}" for i, n in enumerate(names)])
    train_ds, val_ds, desc = open_train_val(
        TrainConfig(dataset=root, arch="tiny-cnn", val_split="0.2").checked())
    assert len(train_ds) == 8 and len(val_ds) == 2 and "held out" in desc
    assert not {s.image_id for s in train_ds} & {s.image_id for s in val_ds}
    with pytest.raises(ConfigError, match="needs boxes"):
        train(TrainConfig(dataset=root, arch="tiny-cnn", out=tmp_path / "o2", val_split="0.2",
                          select="maxboxacc_v2", workers=0))


def test_cli_exit_code_and_message(tmp_path, capsys):
    root = tmp_path / "one"
    names = _images(root, 3)
    _csv(root, [f"{n},cat" for n in names])
    rc = cli_main(["train", str(root), "--arch", "tiny-cnn", "--out", str(tmp_path / "o"),
                   "--val-split", "none"])
    assert rc == 2
    assert "at least two classes" in capsys.readouterr().err
    rc = cli_main(["train", str(root), "--arch", "tiny-cnn", "--arch-opt", "nokeyvalue"])
    assert rc == 2
