"""The synthetic WSOL dataset: deterministic bytes, readable by open_dataset, boxes = masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from camloc.data.datasets import load_gt_mask, open_dataset
from camloc.data.synth import class_names, make_synth, render_sample
from camloc.errors import ConfigError

KW = dict(classes=3, images=24, size=48)


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = tree_bytes(make_synth(tmp_path / "a", seed=7, **KW))
    b = tree_bytes(make_synth(tmp_path / "b", seed=7, **KW))
    assert a == b
    assert len([k for k in a if k.startswith("images/")]) == 24
    c = tree_bytes(make_synth(tmp_path / "c", seed=8, **KW))
    assert set(c) == set(a)
    assert c["images/train/00000.png"] != a["images/train/00000.png"]


def test_readable_by_open_dataset(tmp_path: Path) -> None:
    root = make_synth(tmp_path / "s", **KW)
    assert (root / "synth.json").is_file()
    train = open_dataset(root, split="train")
    test = open_dataset(root, split="test")
    assert train.format == "wsol" and (len(train), len(test)) == (18, 6)
    assert train.class_names == class_names(3) == ["red-disk", "green-square", "blue-triangle"]
    assert train.has_boxes and train.has_masks
    labels = [s.label for s in train] + [s.label for s in test]
    assert labels == [i % 3 for i in range(24)]
    assert {s.image_id for s in train}.isdisjoint({s.image_id for s in test})
    for s in list(train)[:6] + list(test):
        assert s.size == (48, 48) and s.boxes.shape == (1, 4)
        gt = load_gt_mask(s)
        assert gt.shape == (48, 48) and set(np.unique(gt).tolist()) == {0, 1}
        ys, xs = np.nonzero(gt == 1)
        # the box is the mask's tight bounds, inclusive corners
        assert s.boxes[0].tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]
        # the object is large: at least ~8% of the image
        assert (gt == 1).mean() > 0.08


def test_part_is_small_and_inside_the_object() -> None:
    """The saturated class part lies inside the object mask and is a small share of it."""
    for i in range(12):
        img, mask = render_sample(i % 4, 96, np.random.default_rng([0, i]))
        hsv_sat = img.max(2).astype(int) - img.min(2).astype(int)
        part = hsv_sat > 150
        assert part.any()
        assert (part & ~mask).sum() <= 0.05 * part.sum() + 3   # blur may leak a pixel or two
        assert part.sum() < 0.25 * mask.sum()


def test_overwrite_rules(tmp_path: Path) -> None:
    root = make_synth(tmp_path / "s", **KW)
    with pytest.raises(ConfigError, match="overwrite"):
        make_synth(root, **KW)
    make_synth(root, seed=3, overwrite=True, **KW)
    assert '"seed": 3' in (root / "synth.json").read_text()
    other = tmp_path / "precious"
    other.mkdir()
    (other / "thesis.tex").write_text("x")
    with pytest.raises(ConfigError, match="not a camloc synthetic dataset"):
        make_synth(other, overwrite=True, **KW)
    assert (other / "thesis.tex").read_text() == "x"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


@pytest.mark.parametrize("kw", [dict(classes=1), dict(classes=43), dict(images=0), dict(size=16),
                                dict(seed=-1), dict(test_fraction=1.0), dict(images=1, test_fraction=0.9)])
def test_bad_arguments(tmp_path: Path, kw) -> None:
    with pytest.raises(ConfigError):
        make_synth(tmp_path / "x", **{**KW, **kw})


def test_cli(tmp_path: Path, capsys) -> None:
    from camloc.cli import main

    out = tmp_path / "cli"
    assert main(["synth", str(out), "--classes", "2", "--images", "10", "--size", "40",
                 "--seed", "1"]) == 0
    text = capsys.readouterr().out
    assert str(out) in text and "train: 8 images, test: 2 images" in text
    assert len(open_dataset(out, split="train")) == 8
    assert main(["synth", str(out), "--images", "10", "--size", "40"]) == 2
