"""A procedural weakly-supervised localization dataset where the label lives in a small part.

Each image holds one object on a cluttered background:

* the object's **body** is a large irregular blob (its size, elongation, rotation and position
  vary) filled with a texture drawn from the same families and muted palette for every class, so
  the body says nothing about the class;
* a **small class-specific part** (a saturated coloured shape, e.g. a red disk or a green square,
  about a tenth of the image across) sits somewhere inside the body: classification needs only
  the part, while the ground-truth box and mask cover the whole body;
* the background is smooth colour noise with **distractor clutter**: smaller blobs with the same
  textures as bodies but never a part.

A classifier therefore only has to find the part; a network that pools globally (GAP) is rewarded
for evidence spread over the object, while one that pools with a max (GMP) can localize just the
part, which is what the synthetic experiment is meant to show.

Layout written by :func:`make_synth` (wsol format, read with
``open_dataset(root, split="train" | "test")``)::

    root/
      synth.json                       parameters and per-split counts
      images/{train,test}/00000.png    RGB, size x size
      masks/{train,test}/00000.png     object mask, 0 / 255
      metadata/{train,test}/
        image_ids.txt                  images/train/00000.png
        class_labels.txt               images/train/00000.png,2
        image_sizes.txt                images/train/00000.png,96,96
        localization.txt               images/train/00000.png,x0,y0,x1,y1 (one box per image)
        masks.txt                      images/train/00000.png,masks/train/00000.png,
        class_names.txt                one name per line, e.g. red-disk

Boxes are the mask's tight pixel bounds with inclusive corners (``x1`` = last foreground column),
wsolevaluation's convention. Files are byte-identical for equal arguments.

>>> import tempfile, pathlib
>>> from camloc.data.datasets import open_dataset
>>> root = make_synth(pathlib.Path(tempfile.mkdtemp()) / "synth", classes=2, images=8, size=48)
>>> ds = open_dataset(root, split="test")
>>> len(ds), ds.class_names, ds.has_boxes, ds.has_masks
(2, ['red-disk', 'green-square'], True, True)
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from camloc.errors import ConfigError

__all__ = ["make_synth", "render_sample", "class_names", "MAX_CLASSES", "PART_SHAPES",
           "PART_COLORS"]

#: Part shapes, in class order (class ``c`` has shape ``c % 6`` and colour ``c % 7``).
PART_SHAPES = ("disk", "square", "triangle", "cross", "ring", "diamond")
#: Part colours (RGB in [0, 1]); all saturated, unlike the muted body/clutter palette.
PART_COLORS = {
    "red": (0.95, 0.10, 0.10),
    "green": (0.10, 0.85, 0.15),
    "blue": (0.15, 0.25, 1.00),
    "yellow": (1.00, 0.90, 0.05),
    "magenta": (0.95, 0.10, 0.90),
    "cyan": (0.05, 0.90, 0.95),
    "orange": (1.00, 0.50, 0.00),
}
#: Number of distinct (shape, colour) parts: lcm(6, 7).
MAX_CLASSES = 42
#: The largest image side (pixels) and number of images ``make_synth`` writes: a synthetic
#: dataset is for tests and demos, and each image is rendered in memory at full size.
MAX_SIZE = 1024
MAX_IMAGES = 100_000
_FORMAT_VERSION = 1


def class_names(classes: int) -> list[str]:
    """Names of the first ``classes`` part designs, ``"<colour>-<shape>"``.

    >>> class_names(3)
    ['red-disk', 'green-square', 'blue-triangle']
    """
    colors = list(PART_COLORS)
    return [f"{colors[c % len(colors)]}-{PART_SHAPES[c % len(PART_SHAPES)]}"
            for c in range(classes)]


# --------------------------------------------------------------------------------------------------
# drawing
# --------------------------------------------------------------------------------------------------


def _muted_color(rng: np.random.Generator) -> np.ndarray:
    """A low-saturation colour (body, clutter and background palette)."""
    gray = rng.uniform(0.2, 0.8)
    tint = rng.normal(0.0, 0.06, 3)
    return np.clip(gray + tint, 0.05, 0.95).astype(np.float32)


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A full-frame texture (H, W, 3) from one of four families in two muted colours."""
    c1, c2 = _muted_color(rng), _muted_color(rng)
    if np.abs(c1 - c2).mean() < 0.12:  # keep the pattern visible
        c2 = np.clip(c1 + np.where(c1.mean() > 0.5, -0.3, 0.3), 0.05, 0.95).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    u = xx * np.cos(theta) + yy * np.sin(theta)
    v = -xx * np.sin(theta) + yy * np.cos(theta)
    period = rng.uniform(4.0, 9.0) * size / 96.0 + 2.0
    family = int(rng.integers(4))
    if family == 0:  # stripes
        t = (np.sin(2 * np.pi * u / period) > 0).astype(np.float32)
    elif family == 1:  # checker
        t = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    elif family == 2:  # dots
        du = (u / period) % 1.0 - 0.5
        dv = (v / period) % 1.0 - 0.5
        t = (du * du + dv * dv < 0.09).astype(np.float32)
    else:  # blotches: thresholded smooth noise
        import cv2

        n = max(3, size // 8)
        small = rng.standard_normal((n, n)).astype(np.float32)
        t = (cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC) > 0).astype(np.float32)
    return c1 * t[..., None] + c2 * (1.0 - t[..., None])


def _blob_polygon(rng: np.random.Generator, radius: float, aspect: float) -> np.ndarray:
    """Vertices (N, 2) of an irregular closed blob centred on the origin."""
    n = 28
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones(n)
    for k in (2, 3, 5):
        r += rng.uniform(0.0, 0.18 / k * 2) * np.sin(k * ang + rng.uniform(0, 2 * np.pi))
    pts = np.stack([radius * r * np.cos(ang), radius * aspect * r * np.sin(ang)], 1)
    rot = rng.uniform(0, np.pi)
    c, s = np.cos(rot), np.sin(rot)
    return pts @ np.array([[c, s], [-s, c]])


def _fill(mask_shape: tuple[int, int], pts: np.ndarray) -> np.ndarray:
    import cv2

    m = np.zeros(mask_shape, np.uint8)
    cv2.fillPoly(m, [np.round(pts * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return m.astype(bool)


def _part_mask(shape: str, size: int, cx: float, cy: float, h: float, rot: float) -> np.ndarray:
    """Boolean mask of a part of half-size ``h`` centred at ``(cx, cy)``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    c, s = np.cos(rot), np.sin(rot)
    u, v = c * dx + s * dy, -s * dx + c * dy
    if shape == "disk":
        return dx * dx + dy * dy <= h * h
    if shape == "square":
        return (np.abs(u) <= h * 0.85) & (np.abs(v) <= h * 0.85)
    if shape == "triangle":
        # upright-ish triangle in the rotated frame
        return (v <= h * 0.8) & (v >= -h) & (np.abs(u) <= (v + h) * 0.6)
    if shape == "cross":
        w = h * 0.38
        return ((np.abs(u) <= h) & (np.abs(v) <= w)) | ((np.abs(v) <= h) & (np.abs(u) <= w))
    if shape == "ring":
        d2 = dx * dx + dy * dy
        return (d2 <= h * h) & (d2 >= (0.5 * h) ** 2)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= h * 1.1
    raise ValueError(shape)


def render_sample(label: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Render one image: ``(rgb uint8 (size, size, 3), object mask bool (size, size))``.

    ``label`` picks the part design; ``rng`` drives everything else.

    >>> img, mask = render_sample(1, 64, np.random.default_rng(0))
    >>> img.shape, img.dtype, bool(mask.any())
    ((64, 64, 3), dtype('uint8'), True)
    """
    import cv2

    s = int(size)
    # background: smooth colour field
    grid = np.stack([_muted_color(rng) for _ in range(16)]).reshape(4, 4, 3)
    img = cv2.resize(grid, (s, s), interpolation=cv2.INTER_CUBIC).astype(np.float32)

    # body geometry first, so that clutter can keep clear of it
    radius = rng.uniform(0.17, 0.36) * s
    aspect = rng.uniform(0.6, 1.0)
    pts = _blob_polygon(rng, radius, aspect)
    lo, hi = pts.min(0), pts.max(0)
    margin = 2.0
    off = np.array([rng.uniform(margin - lo[0], s - 1 - margin - hi[0]),
                    rng.uniform(margin - lo[1], s - 1 - margin - hi[1])])
    body = _fill((s, s), pts + off)
    keep_out = cv2.dilate(body.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)

    # clutter: body-textured fragments, no parts
    for _ in range(int(rng.integers(3, 8))):
        cpts = _blob_polygon(rng, rng.uniform(0.05, 0.13) * s, rng.uniform(0.4, 1.0))
        tex = _texture(rng, s)
        for _try in range(6):
            centre = rng.uniform(0, s - 1, 2)
            frag = _fill((s, s), cpts + centre)
            if frag.any() and not (frag & keep_out).any():
                img[frag] = tex[frag]
                break

    # body
    tex = _texture(rng, s)
    shade = rng.uniform(0.9, 1.1)
    img[body] = np.clip(tex[body] * shade, 0, 1)

    # class part inside the body
    h = max(2.5, 0.05 * s) * rng.uniform(0.9, 1.1)
    inner = cv2.erode(body.astype(np.uint8), np.ones((3, 3), np.uint8),
                      iterations=int(np.ceil(h + 1))).astype(bool)
    ys, xs = np.nonzero(inner)
    if ys.size:
        k = int(rng.integers(ys.size))
        cy, cx = float(ys[k]), float(xs[k])
    else:  # tiny body: centre of mass
        ys, xs = np.nonzero(body)
        cy, cx = float(ys.mean()), float(xs.mean())
    shape = PART_SHAPES[label % len(PART_SHAPES)]
    color = np.array(list(PART_COLORS.values())[label % len(PART_COLORS)], np.float32)
    color = np.clip(color + rng.normal(0, 0.04, 3), 0, 1).astype(np.float32)
    part = _part_mask(shape, s, cx, cy, h, rng.uniform(0, 2 * np.pi)) & body
    img[part] = color

    # sensor: slight blur and noise
    img = cv2.GaussianBlur(img, (3, 3), 0.6)
    img = img + rng.normal(0, 0.02, img.shape).astype(np.float32)
    out = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    return out, body


# --------------------------------------------------------------------------------------------------
# writer
# --------------------------------------------------------------------------------------------------


def _png(array: np.ndarray) -> bytes:
    import cv2

    if array.ndim == 3:
        array = array[..., ::-1]  # RGB -> BGR for OpenCV
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(array), [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 arrays
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def make_synth(out: str | os.PathLike[str], classes: int = 4, images: int = 400, size: int = 96,
               seed: int = 0, test_fraction: float = 0.25, *, overwrite: bool = False) -> Path:
    """Write the synthetic WSOL dataset to ``out`` and return its root (see the module docstring
    for the layout).

    Image ``i`` has label ``i % classes``; the last ``round(images * test_fraction)`` images form
    the test split. The whole tree is built in a temporary folder beside ``out`` and renamed into
    place. ``overwrite=True`` replaces an earlier synthetic dataset (a folder holding
    ``synth.json``); any other non-empty ``out`` is refused.

    Raises:
        ConfigError: a bad argument, or ``out`` exists and cannot be replaced.
    """
    for arg, value, low, high in (("classes", classes, 2, None), ("images", images, 1, MAX_IMAGES),
                                  ("size", size, 32, MAX_SIZE)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f"{arg} must be an integer >= {low}, got {value!r}")
        if high is not None and value > high:
            raise ConfigError(f"{arg} must be <= {high}, got {value!r}")
    if classes > MAX_CLASSES:
        raise ConfigError(f"classes must be <= {MAX_CLASSES} (distinct part designs), got {classes}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if not 0.0 <= float(test_fraction) < 1.0:
        raise ConfigError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    classes, images, size, seed = int(classes), int(images), int(size), int(seed)
    n_test = int(round(images * float(test_fraction)))
    n_train = images - n_test
    if n_train < 1:
        raise ConfigError(f"test_fraction={test_fraction} leaves no training images")

    out = Path(out).expanduser().resolve()
    if out.exists():
        if not out.is_dir():
            raise ConfigError(f"out={out} exists and is not a folder")
        if any(out.iterdir()):
            if not overwrite:
                raise ConfigError(f"out={out} exists and is not empty; pass overwrite=True "
                                  "(--overwrite) to replace an earlier synthetic dataset")
            if not (out / "synth.json").is_file():
                raise ConfigError(f"out={out} is not a camloc synthetic dataset (no synth.json); "
                                  "refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    names = class_names(classes)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        tmp.chmod(0o755)
        meta: dict[str, dict[str, list[str]]] = {}
        for split in ("train", "test"):
            for sub in ("images", "masks"):
                (tmp / sub / split).mkdir(parents=True)
            meta[split] = {k: [] for k in ("ids", "labels", "sizes", "loc", "masks")}
        for i in range(images):
            split = "train" if i < n_train else "test"
            label = i % classes
            rgb, mask = render_sample(label, size, np.random.default_rng([seed, i]))
            image_id = f"images/{split}/{i:05d}.png"
            mask_id = f"masks/{split}/{i:05d}.png"
            (tmp / image_id).write_bytes(_png(rgb))
            (tmp / mask_id).write_bytes(_png(mask.astype(np.uint8) * 255))
            ys, xs = np.nonzero(mask)
            m = meta[split]
            m["ids"].append(image_id)
            m["labels"].append(f"{image_id},{label}")
            m["sizes"].append(f"{image_id},{size},{size}")
            m["loc"].append(f"{image_id},{xs.min()},{ys.min()},{xs.max()},{ys.max()}")
            m["masks"].append(f"{image_id},{mask_id},")
        for split, m in meta.items():
            d = tmp / "metadata" / split
            d.mkdir(parents=True)
            for fname, key in (("image_ids.txt", "ids"), ("class_labels.txt", "labels"),
                               ("image_sizes.txt", "sizes"), ("localization.txt", "loc"),
                               ("masks.txt", "masks")):
                (d / fname).write_text("".join(line + "\n" for line in m[key]), encoding="utf-8")
            (d / "class_names.txt").write_text("".join(n + "\n" for n in names), encoding="utf-8")
        info = {
            "generator": "camloc.data.synth",
            "format_version": _FORMAT_VERSION,
            "classes": classes,
            "class_names": names,
            "images": images,
            "size": size,
            "seed": seed,
            "test_fraction": float(test_fraction),
            "splits": {"train": n_train, "test": n_test},
        }
        (tmp / "synth.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        if overwrite and out.exists():
            shutil.rmtree(out)
        try:  # renaming onto a folder that is not empty fails: never replace one unasked
            os.replace(tmp, out)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            raise ConfigError(f"out={out} was filled by another run while this one wrote; "
                              "nothing was replaced (pass --overwrite to replace it)") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
