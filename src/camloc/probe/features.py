"""Pooled features of a frozen network, cached on disk.

The feature of an image is **exactly the vector the model's classifier sees**: the global pool of
the last feature map after the head's exact fold (:meth:`camloc.models.heads.GapHead.folded`), so
that ``logits == W @ x + b`` for the model's own classifier ``W, b``. For a plain GAP network this
is ``f.mean((2, 3))``; for a network with a LayerNorm after pooling (ConvNeXt) it is the
LayerNorm's output ``fprime.mean((2, 3)) + beta``. A linear probe fitted on these vectors can
therefore replace the classifier (``camloc.load_model(name, head=DIR)``) and its rows give exact
CAMs, ``M_c = sum_k w_ck f'_k``.

Features are cached, one ``.npy`` per image, under
``CACHE/<model key>/<hash[:2]>/<hash>.npy`` where the **model key** digests the model's name,
weights source, preprocessing, head layout and every parameter and buffer except the classifier's
(so random-weights models and re-trained weights never collide), and ``hash`` is the SHA-256 of
the image file's bytes (so an edited image is recomputed and an unchanged one is reused wherever
it lives). Images that cannot be read are reported and skipped, never cached.

>>> import camloc, tempfile, pathlib
>>> from PIL import Image
>>> from camloc.data.datasets import open_dataset
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> for c in ("a", "b"):
...     (root / c).mkdir()
...     Image.new("RGB", (32, 32), "red" if c == "a" else "blue").save(root / c / "0.png")
>>> model = camloc.load_model("efficientnet_lite0")
>>> feats = extract_features(model, open_dataset(root), cache_dir=root / ".cache")
>>> feats.X.shape, feats.computed, feats.reused
((2, 1280), 2, 0)
>>> extract_features(model, open_dataset(root), cache_dir=root / ".cache").computed
0
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from camloc.data.batches import decoded_batches, prefetch
from camloc.data.images import check_resized_size, load_image, original_size, to_tensor
from camloc.errors import ConfigError, ModelError
from camloc.io import atomic_save_npy, atomic_write_json
from camloc.models.heads import eval_mode
from camloc.models.loader import CamModel
from camloc.models.pooling import global_pool
from camloc.models.spec import Preprocess

__all__ = ["Features", "FailedImage", "extract_features", "pooled_features", "model_key",
           "default_cache_dir", "file_sha256", "FEATURE_KIND"]

#: What the cached vectors are (part of the model key and of ``head.json``).
FEATURE_KIND = "classifier-input: pool(head.folded(f)) + norm.bias"
_KEY_VERSION = 1

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class FailedImage:
    """An image that could not be used, and why."""

    image_id: str
    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"image_id": self.image_id, "path": self.path, "reason": self.reason}


@dataclass
class Features:
    """Pooled features of a dataset's readable images.

    ``X`` (N, K) float32; ``y`` (N,) int64 labels (``-1`` where a sample has none); ``ids`` the
    image ids and ``indices`` the positions in the dataset of the N rows; ``failed`` the images
    skipped. ``computed`` counts images that went through the network in this call, ``reused``
    those read from the cache, ``batches`` the forward passes run. Unpacks as ``X, y, ids``.
    """

    X: np.ndarray
    y: np.ndarray
    ids: list[str]
    indices: np.ndarray
    failed: list[FailedImage] = field(default_factory=list)
    computed: int = 0
    reused: int = 0
    batches: int = 0
    model_key: str = ""
    cache_dir: Path | None = None
    cache_error: str | None = None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.X, self.y, self.ids))

    def __len__(self) -> int:
        return int(self.X.shape[0])


def default_cache_dir() -> Path:
    """``$CAMLOC_CACHE/features``, else ``$XDG_CACHE_HOME/camloc/features``, else
    ``~/.cache/camloc/features``."""
    if os.environ.get("CAMLOC_CACHE"):
        return Path(os.environ["CAMLOC_CACHE"]).expanduser() / "features"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "camloc" / "features"


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (raises ``OSError`` if it cannot be read)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().to("cpu").contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes()


def model_key(model: CamModel, preprocess: Preprocess | None = None) -> str:
    """A digest identifying the features ``model`` produces under ``preprocess``.

    Covers the model name, weights source, preprocessing, the head's layout and the bytes of every
    parameter and buffer except the classifier's (the probe replaces the classifier; the features
    do not depend on it).
    """
    pre = preprocess or model.spec.preprocess
    head = model.head
    clf = head.classifier
    skip = {id(p) for p in clf.parameters()} | {id(b) for b in clf.buffers()}
    h = hashlib.sha256()
    ident = {
        "version": _KEY_VERSION,
        "feature": FEATURE_KIND,
        "name": model.spec.name,
        "source": model.spec.source,
        "preprocess": pre.to_dict(),
        "head": {"method": head.method, "pool": head.pool, "post_relu": head.post_relu,
                 "norm": head.norm is not None, "channels": head.num_channels},
    }
    h.update(json.dumps(ident, sort_keys=True).encode())
    module = model.module
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        if id(t) in skip:
            continue
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(_tensor_bytes(t))
    return h.hexdigest()


def pooled_features(model: CamModel, x: torch.Tensor, check: bool = True) -> torch.Tensor:
    """The classifier-input vectors ``(N, K)`` of a preprocessed batch ``x`` (one forward pass).

    With ``check`` the model's own logits are recomputed from them (``x @ W.T + b``) and a
    :class:`ModelError` is raised if they disagree, so what is returned is provably the vector the
    classifier sees.
    """
    head, module = model.head, model.module
    with torch.inference_mode(), eval_mode(module):
        logits, f = head.run(module, x.to(model.device))
        fprime, _ = head.folded(f)
        pooled = global_pool(fprime, head.pool)
        if head.norm is not None and getattr(head.norm, "bias", None) is not None:
            pooled = pooled + head.norm.bias.to(pooled.dtype)[None, :]
        if check:
            w = head.classifier.weight.to(pooled.dtype)
            b = head.classifier.bias
            rec = pooled @ w.t() + (b.to(pooled.dtype) if b is not None else 0.0)
            scale = float(logits.abs().max().clamp_min(1e-6))
            err = float((rec - logits).abs().max()) / scale
            if not err <= 1e-3:
                raise ModelError(f"{model.spec.name}: pooled features do not reproduce the "
                                 f"classifier's logits (relative error {err:.2e})")
    return pooled.float().cpu()


class _Cache:
    def __init__(self, root: Path | None, key: str, model: CamModel, pre: Preprocess) -> None:
        self.dir = root / key[:24] if root is not None else None
        self.key = key
        self.model = model
        self.pre = pre
        self._described = False
        self.error: str | None = None

    def path(self, digest: str) -> Path | None:
        if self.dir is None:
            return None
        return self.dir / digest[:2] / f"{digest}.npy"

    def get(self, digest: str, dim: int) -> np.ndarray | None:
        p = self.path(digest)
        if p is None or not p.is_file():
            return None
        try:
            arr = np.load(p, allow_pickle=False)
        except (OSError, ValueError):
            return None  # a damaged entry is recomputed and overwritten
        if arr.shape != (dim,) or arr.dtype != np.float32 or not np.isfinite(arr).all():
            return None
        return arr

    def put(self, digest: str, vec: np.ndarray) -> None:
        p = self.path(digest)
        if p is None or self.dir is None:
            return
        try:
            if not self._described:
                atomic_write_json(self.dir / "model.json", {
                    "model_key": self.key, "name": self.model.spec.name,
                    "source": self.model.spec.source, "preprocess": self.pre.to_dict(),
                    "feature": FEATURE_KIND, "feature_dim": self.model.head.num_channels})
                self._described = True
            atomic_save_npy(p, np.asarray(vec, dtype=np.float32))
        except OSError as exc:  # an unwritable cache must not stop the run: stop caching
            self.error = f"cannot write the feature cache {self.dir}: {exc.strerror or exc}"
            self.dir = None


def extract_features(model: CamModel, dataset: Any, cache_dir: str | os.PathLike[str] | None = None,
                     batch_size: int = 32, preprocess: Preprocess | None = None,
                     progress: ProgressFn | None = None) -> Features:
    """Pooled features of every readable image of ``dataset`` (a
    :class:`~camloc.data.datasets.Dataset`, or anything with ``.samples`` of objects with
    ``image_id``, ``path`` and ``label``).

    Args:
        model: the frozen backbone with its verified head.
        dataset: the images (labels are carried along, not used).
        cache_dir: feature cache root; ``None`` disables caching.
        batch_size: images per forward pass.
        preprocess: overrides ``model.spec.preprocess``.
        progress: called as ``progress(done, total)`` after each image is resolved.

    Images that fail to load (:class:`~camloc.errors.ImageError`) are listed in ``failed`` and
    skipped; they are never cached.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r}: must be an integer >= 1")
    pre = preprocess or model.spec.preprocess
    key = model_key(model, pre)
    root = Path(cache_dir).expanduser() if cache_dir is not None else None
    cache = _Cache(root, key, model, pre)
    dim = model.head.num_channels
    samples = list(dataset.samples)
    total = len(samples)
    rows: dict[int, np.ndarray] = {}
    failed: list[tuple[int, FailedImage]] = []  # (position, image): listed in dataset order
    done = 0
    computed = reused = batches = 0

    def tick(n: int = 1) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    if progress is not None:
        progress(0, total)

    todo: list[tuple[int, str]] = []  # (position, digest) of the images not in the cache
    for pos, s in enumerate(samples):
        try:
            digest = file_sha256(s.path)
        except OSError as exc:
            failed.append((pos, FailedImage(s.image_id, str(s.path),
                                            f"cannot read file: {exc.strerror or exc}")))
            tick()
            continue
        vec = cache.get(digest, dim)
        if vec is not None:
            rows[pos] = vec
            reused += 1
            tick()
            continue
        todo.append((pos, digest))

    def load(item: tuple[int, str]) -> torch.Tensor:
        path = samples[item[0]].path
        image = load_image(path)
        check_resized_size(path, original_size(image), pre)
        return to_tensor(image, pre)[0]

    def fail(item: tuple[int, str], reason: str) -> None:
        s = samples[item[0]]
        failed.append((item[0], FailedImage(s.image_id, str(s.path), reason)))

    # decoded in a thread ahead of the network; batches of batch_size readable images
    for consumed, items, xs in prefetch(decoded_batches(todo, batch_size, load, fail,
                                                        max_pixels=None)):
        if xs:
            vecs = pooled_features(model, torch.stack(xs)).numpy()
            batches += 1
            for (pos, digest), vec in zip(items, vecs):
                vec = np.ascontiguousarray(vec, dtype=np.float32)
                rows[pos] = vec
                cache.put(digest, vec)
            computed += len(items)
        tick(consumed)

    order = sorted(rows)
    X = np.stack([rows[p] for p in order]).astype(np.float32) if order \
        else np.zeros((0, dim), np.float32)
    y = np.array([-1 if samples[p].label is None else int(samples[p].label) for p in order],
                 dtype=np.int64)
    return Features(X=X, y=y, ids=[samples[p].image_id for p in order],
                    indices=np.asarray(order, dtype=np.int64),
                    failed=[f for _, f in sorted(failed, key=lambda pf: pf[0])], computed=computed,
                    reused=reused, batches=batches, model_key=key,
                    cache_dir=cache.dir if cache.error is None else None, cache_error=cache.error)
