"""Fixtures for the units tests: a tiny trained-free GAP model folder and tiny synthetic data.

Everything is built in memory or in tmp folders; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

CLASSES = ("disk", "square", "ring")


def write_tiny_model(folder: Path, num_classes: int = 3, width: int = 4, pool: str = "avg",
                     seed: int = 0) -> Path:
    """A ``camloc train``-style folder (tiny-cnn, random weights) that ``load_model`` reads."""
    from camloc.models.archs import build_arch
    from camloc.train.checkpoint import write_model_dir

    torch.manual_seed(seed)
    net = build_arch("tiny-cnn", num_classes=num_classes, pool=pool, width=width)
    # non-trivial BatchNorm statistics, so units differ in scale
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    spec = {"arch": "tiny-cnn", "arch_kwargs": {"width": width}, "num_classes": num_classes,
            "pool": pool, "name": "tiny", "class_names": list(CLASSES[:num_classes]),
            "preprocess": {"input_size": [32, 32], "fit": "stretch"}}
    return write_model_dir(folder, net, spec)


def write_images(folder: Path, n: int, size: int = 40, seed: int = 0) -> list[Path]:
    """``n`` random-blob RGB PNGs of ``size`` x ``size``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        arr = rng.integers(0, 255, (size // 4, size // 4, 3)).astype(np.uint8)
        img = Image.fromarray(arr).resize((size, size), Image.Resampling.BILINEAR)
        p = folder / f"img_{i:03d}.png"
        img.save(p)
        out.append(p)
    return out


def write_wsol(root: Path, n: int = 18, size: int = 40, seed: int = 0,
               names: tuple[str, ...] | None = None) -> Path:
    """A wsol-format dataset: ``n`` images, label ``i % 3``, one or two boxes each."""
    rng = np.random.default_rng(seed)
    write_images(root / "images", n, size, seed)
    meta = root / "metadata"
    meta.mkdir(parents=True)
    ids, labels, sizes, locs = [], [], [], []
    for i in range(n):
        rel = f"images/img_{i:03d}.png"
        ids.append(rel)
        labels.append(f"{rel},{i % 3}")
        sizes.append(f"{rel},{size},{size}")
        for _ in range(1 + i % 2):
            x0, y0 = rng.integers(0, size // 2, 2)
            w, h = rng.integers(size // 4, size // 2, 2)
            locs.append(f"{rel},{x0},{y0},{x0 + w},{y0 + h}")
    files = {"image_ids.txt": ids, "class_labels.txt": labels, "image_sizes.txt": sizes,
             "localization.txt": locs}
    if names is not None:
        files["class_names.txt"] = list(names)
    for name, lines in files.items():
        (meta / name).write_text("".join(line + "\n" for line in lines))
    return root


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("units-model") / "tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path):
    import camloc

    return camloc.load_model(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="session")
def tiny_wsol(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_wsol(tmp_path_factory.mktemp("units-data") / "wsol")


class _Writers:
    write_tiny_model = staticmethod(write_tiny_model)
    write_images = staticmethod(write_images)
    write_wsol = staticmethod(write_wsol)


@pytest.fixture(scope="session")
def units_data() -> type[_Writers]:
    """The writers above (test modules cannot import conftest by name)."""
    return _Writers
