"""The real ImageNet dev set (511 validation photos) through the wsol reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from camloc.data.datasets import detect_format, open_dataset

DEVSET = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "imagenet-val-dev"

pytestmark = pytest.mark.devset


@pytest.fixture(scope="module")
def devset() -> Path:
    if not (DEVSET / "metadata" / "image_ids.txt").is_file():
        pytest.skip(f"dev set not found at {DEVSET.resolve()} (see docs/datasets.md)")
    return DEVSET


def test_devset_counts(devset: Path) -> None:
    assert detect_format(devset) == "wsol"
    ds = open_dataset(devset, num_classes=1000)
    assert len(ds) == 511 and ds.num_classes == 1000
    assert sum(s.boxes.shape[0] for s in ds) == 745
    labels = np.array([s.label for s in ds])
    assert labels.min() >= 0 and labels.max() <= 999
    assert all(s.size == (227, 227) and s.path.is_file() for s in ds)
    boxes = np.concatenate([s.boxes for s in ds])
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 227).all()
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    first = ds[0]
    assert first.image_id == "images/ILSVRC2012_val_00000355.JPEG" and first.label == 260
    assert first.boxes.tolist() == [[51.81, 61.29, 199.05, 214.74]]
    assert len({s.image_id for s in ds}) == 511


def test_devset_shards(devset: Path) -> None:
    ds = open_dataset(devset)
    shards = [ds.shard(r, 3) for r in range(3)]
    assert sorted(s.image_id for sh in shards for s in sh) == sorted(s.image_id for s in ds)
