"""Hand-written explain records (what ``results.jsonl`` holds) with known boxes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

CLASS_NAMES = ["tench, Tinca tinca", "goldfish", "great white shark", "tiger shark"]


def write_results(folder: Path, records: list[dict]) -> Path:
    path = folder / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def records(tmp_path: Path) -> list[dict]:
    """Three images: one box per class; a --multi record with two components of one class and
    an empty box; a record whose classes were all dropped."""
    return [
        {"path": str(tmp_path / "imgs" / "a.jpg"), "width": 200, "height": 100,
         "class_ids": [1, 3], "class_names": [CLASS_NAMES[1], CLASS_NAMES[3]],
         "probs": [0.75, 0.125], "boxes": [[10.5, 20.0, 60.25, 80.0], [0.0, 0.0, 200.0, 100.0]]},
        {"path": str(tmp_path / "imgs" / "b b.png"), "width": 64, "height": 48,
         "image_id": "val/b b.png", "class_ids": [2, 0], "class_names": [CLASS_NAMES[2],
                                                                         CLASS_NAMES[0]],
         "probs": [0.5, 0.25], "boxes": [[4.0, 4.0, 30.0, 40.0], [0.0, 0.0, 0.0, 0.0]],
         "component_boxes": [[[4.0, 4.0, 30.0, 40.0], [40.0, 10.0, 60.0, 20.0]], []]},
        {"path": str(tmp_path / "imgs" / "c.jpg"), "width": 10, "height": 10,
         "class_ids": [], "class_names": [], "probs": [], "boxes": []},
    ]
