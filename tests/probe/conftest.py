"""Fixtures for the probe tests: a small "pasted photo" localization set.

Why not ``camloc.data.synth.make_synth``: its class evidence is, by design, a small coloured part
inside a large textured body whose box is the ground truth (the GAP-vs-GMP experiment), so a
correct probe's CAM finds the part, not the box. Here each class is a whole real object (the
photos shipped in ``camloc/assets/samples``), pasted at a random place and scale onto a random
smooth background; the ground-truth box is the pasted rectangle, so an ImageNet backbone's generic
features both recognise the class and cover the object.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "camloc" / "assets" / "samples"
FRAC = (0.45, 0.65)  # object width as a fraction of the image: large enough for a 7x7 CAM
OBJECTS = {"cat": "chelsea.jpg", "coffee": "coffee.jpg", "astronaut": "astronaut.jpg"}


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    grid = rng.uniform(40, 215, (3, 3, 3)).astype(np.uint8)
    bg = Image.fromarray(grid, "RGB").resize((size, size), Image.Resampling.BICUBIC)
    arr = np.asarray(bg, np.float32) + rng.normal(0, 8, (size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def render_pasted(label: int, rng: np.random.Generator, size: int = 160,
                  classes: tuple[str, ...] = tuple(OBJECTS)) -> tuple[Image.Image, list[float]]:
    """One image of class ``label`` and its box ``[x0, y0, x1, y1]`` (pixel edges)."""
    obj = Image.open(SAMPLES / OBJECTS[classes[label]]).convert("RGB")
    frac = rng.uniform(*FRAC)
    w = int(size * frac)
    h = max(8, int(w * obj.size[1] / obj.size[0] * rng.uniform(0.9, 1.1)))
    h = min(h, size - 2)
    obj = obj.resize((w, h), Image.Resampling.BILINEAR)
    if rng.uniform() < 0.5:
        obj = obj.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    obj = Image.fromarray(np.clip(np.asarray(obj, np.float32) * rng.uniform(0.85, 1.15), 0, 255)
                          .astype(np.uint8))
    x0 = int(rng.integers(0, size - w + 1))
    y0 = int(rng.integers(0, size - h + 1))
    canvas = _background(rng, size)
    canvas.paste(obj, (x0, y0))
    return canvas, [float(x0), float(y0), float(x0 + w), float(y0 + h)]


def write_wsol(root: Path, per_class: int, seed: int = 0, size: int = 160,
               classes: tuple[str, ...] = tuple(OBJECTS)) -> Path:
    """A wsol-format dataset (class_names.txt, boxes) of ``per_class`` images per class."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    meta = root / "metadata"
    meta.mkdir()
    ids, labels, sizes, locs = [], [], [], []
    for i in range(per_class * len(classes)):
        label = i % len(classes)
        img, box = render_pasted(label, rng, size, classes)
        rel = f"images/{i:04d}.png"
        img.save(root / rel)
        ids.append(rel)
        labels.append(f"{rel},{label}")
        sizes.append(f"{rel},{size},{size}")
        locs.append(f"{rel},{box[0]:.1f},{box[1]:.1f},{box[2] - 1:.1f},{box[3] - 1:.1f}")
    for name, lines in (("image_ids.txt", ids), ("class_labels.txt", labels),
                        ("image_sizes.txt", sizes), ("localization.txt", locs),
                        ("class_names.txt", list(classes))):
        (meta / name).write_text("".join(line + "\n" for line in lines))
    return root


def write_folder(root: Path, per_class: int, seed: int = 0, size: int = 96,
                 classes: tuple[str, ...] = tuple(OBJECTS)) -> Path:
    """A class-per-folder dataset."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img, _ = render_pasted(label, rng, size, classes)
            img.save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def pasted_wsol(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_wsol(tmp_path_factory.mktemp("probe") / "pasted", per_class=12)


class _Writers:
    """The dataset writers, as a fixture (test modules cannot import conftest by name)."""

    write_wsol = staticmethod(write_wsol)
    write_folder = staticmethod(write_folder)
    render_pasted = staticmethod(render_pasted)


@pytest.fixture(scope="session")
def probe_data() -> type[_Writers]:
    return _Writers
