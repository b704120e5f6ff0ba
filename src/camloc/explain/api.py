"""High-level explanation API: images in, classes + maps + boxes (in original pixels) out.

>>> import camloc, numpy as np
>>> from PIL import Image
>>> model = camloc.load_model("efficientnet_lite0")
>>> img = Image.fromarray(np.full((120, 160, 3), 127, np.uint8))
>>> [e] = camloc.explain(model, [img], top_k=2)
>>> len(e.class_ids), e.boxes.shape
(2, (2, 4))
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from camloc.cams.engine import CAMMethod
from camloc.cams.postprocess import normalize, upsample
from camloc.cams.registry import make_method
from camloc.data.batches import decoded_batches, prefetch
from camloc.data.images import batch_images, load_image
from camloc.defaults import (DEFAULT_BATCH_SIZE, DEFAULT_NORMALIZATION, DEFAULT_THRESHOLD,
                             DEFAULT_TOP_K)
from camloc.errors import ConfigError
from camloc.localize import boxes_from_map, largest_boxes
from camloc.models.layers import LayerSpec
from camloc.models.loader import CamModel
from camloc.models.spec import Geometry, Preprocess
from camloc.targets import ClassTarget, Margin, Target, TargetSpec

__all__ = ["Explanation", "explain", "explain_batch", "make_method"]


@dataclass
class Explanation:
    """One image's explanation.

    ``method`` and ``layers`` say which map method made the maps and from which target layer(s).
    ``maps`` are normalised (see ``normalization``) at the network's input resolution;
    :meth:`map_in_original` puts one back on the original pixel grid. ``boxes[j]`` is the largest
    component's box for ``class_ids[j]``; ``component_boxes[j]`` (when asked for) every component's.
    Boxes are ``x0, y0, x1, y1`` continuous pixel edges in original image pixels.

    For a ``target`` other than class ids (:mod:`camloc.targets`), map ``j`` explains the target's
    score ``j``: ``logits[j]`` is that score (a :class:`~camloc.targets.Margin`'s lead), and
    ``class_ids[j]`` / ``class_names[j]`` / ``probs[j]`` are the class it is about (a margin of
    class ``c``: ``c``); a score with no class (a plain callable) has class id ``-1``, the name
    ``"target"`` and the probability ``nan`` (``None`` in :meth:`to_record`). ``extra["target"]``
    then says which kind of target it was (``"margin"``, ``"score"``, ...).
    """

    source: str
    width: int
    height: int
    class_ids: list[int]
    class_names: list[str]
    probs: list[float]
    logits: list[float]
    boxes: np.ndarray
    maps: np.ndarray
    geometry: Geometry
    threshold: float
    normalization: str
    method: str = "cam"
    component_boxes: list[np.ndarray] | None = None
    layers: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def map_in_original(self, j: int = 0) -> np.ndarray:
        """Map ``j`` resampled onto the original ``height x width`` pixel grid (bilinear); pixels the
        network did not see (outside a centre crop) are 0."""
        g = self.geometry
        m = self.maps[j].astype(np.float32)
        if g.offset_x == 0 and g.offset_y == 0:
            return cv2.resize(m, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        # original pixel centre (x + .5) -> input coordinate (x + .5) * s - o - .5
        mat = np.array([[g.scale_x, 0, 0.5 * g.scale_x - g.offset_x - 0.5],
                        [0, g.scale_y, 0.5 * g.scale_y - g.offset_y - 0.5]], np.float64)
        return cv2.warpAffine(m, mat, (self.width, self.height),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)

    def to_record(self) -> dict[str, Any]:
        """A JSON-serialisable summary (what ``results.jsonl`` holds)."""
        rec: dict[str, Any] = {
            "path": self.source,
            "width": self.width,
            "height": self.height,
            "method": self.method,
            "layers": list(self.layers),
            "threshold": self.threshold,
            "class_ids": self.class_ids,
            "class_names": self.class_names,
            "probs": [None if p != p else round(p, 6) for p in self.probs],  # nan: no class
            "boxes": [[round(float(v), 2) for v in b] for b in self.boxes],
        }
        if self.component_boxes is not None:
            rec["component_boxes"] = [[[round(float(v), 2) for v in b] for b in bs]
                                      for bs in self.component_boxes]
        rec.update(self.extra)
        return rec


def explain_batch(model: CamModel, images: Sequence[Image.Image], sources: Sequence[str] | None = None,
                  classes: TargetSpec = DEFAULT_TOP_K, threshold: float = DEFAULT_THRESHOLD,
                  normalization: str = DEFAULT_NORMALIZATION,
                  multi: bool = False, method: str | CAMMethod = "cam",
                  preprocess: Preprocess | None = None, layer: LayerSpec = None,
                  target: Target | Callable[[torch.Tensor], torch.Tensor] | None = None,
                  **options: Any) -> list[Explanation]:
    """Explain a batch of already-decoded RGB images with one engine call.

    ``method`` is a registry name (``camloc methods``) or a method instance; ``layer`` the target
    layer(s) (default: the model's); ``options`` go to the method (``batch_size``, ``smooth``, ...).
    ``classes`` is anything the engine takes (:data:`camloc.targets.TargetSpec`); ``target``, when
    given, replaces it (see :func:`explain`).
    """
    pre = preprocess or model.spec.preprocess
    if target is not None:
        classes = _check_target(target)
    engine = method if _is_wrapper(method) else make_method(model, method, layer, **options)
    x, geoms = batch_images(images, pre)
    out = engine(x, classes=classes)
    maps = normalize(upsample(out.maps, pre.input_size, "bicubic"), normalization)
    input_boxes = largest_boxes(maps, threshold)  # (N, k, 4) in input pixels
    maps_np = maps.cpu().numpy()
    known = out.class_ids >= 0  # -1: a score no class stands for (a plain callable)
    probs = out.probs.gather(1, out.class_ids.clamp(min=0)).masked_fill(~known, float("nan"))
    probs = probs.cpu().numpy()
    kind = None if classes is None or isinstance(classes, ClassTarget) or \
        not (isinstance(classes, Target) or callable(classes)) else _target_kind(classes)
    logits = out.scores.float().cpu().numpy()
    ids = out.class_ids.cpu().numpy()
    srcs = list(sources) if sources is not None else [f"<image {i}>" for i in range(len(images))]
    results = []
    for i, (im, g) in enumerate(zip(images, geoms)):
        boxes, comps = [], [] if multi else None
        for j in range(ids.shape[1]):
            boxes.append(g.to_original_boxes(input_boxes[i, j])[0])
            if comps is not None:
                comps.append(g.to_original_boxes(boxes_from_map(maps_np[i, j], threshold, multi=True)))
        results.append(Explanation(
            source=srcs[i], width=im.size[0], height=im.size[1],
            class_ids=[int(c) for c in ids[i]],
            class_names=[model.spec.class_name(int(c)) if c >= 0 else "target" for c in ids[i]],
            probs=[float(p) for p in probs[i]], logits=[float(v) for v in logits[i]],
            boxes=np.asarray(boxes, np.float64).reshape(-1, 4), maps=maps_np[i], geometry=g,
            threshold=threshold, normalization=normalization, method=engine.name,
            component_boxes=comps, layers=list(out.layers),
            extra={} if kind is None else {"target": kind}))
    return results


def _check_target(target: Any) -> Target | Callable[[torch.Tensor], torch.Tensor]:
    if isinstance(target, Target) or (callable(target) and not isinstance(target, torch.Tensor)):
        return target
    raise ConfigError(f"target: expected a Target (ClassTarget, Margin, ScoreTarget) or a "
                      f"callable on the logits, got {type(target).__name__}; class ids go in "
                      f"classes= (or top_k=)")


def _target_kind(target: Any) -> str:
    """The short name of a target's kind, for ``Explanation.extra["target"]``."""
    if isinstance(target, Margin):
        return "margin"
    if isinstance(target, Target) and type(target).__name__ != "ScoreTarget":
        return type(target).__name__
    return "score"


def _target_rows(target: Any, start: int, stop: int) -> Any:
    """The part of a per-image target for images ``start:stop`` of a run (the same target when
    it is not per image). A per-image target of another kind cannot be cut: refused."""
    if isinstance(target, ClassTarget):
        return ClassTarget(target.class_ids[start:stop])
    if isinstance(target, Margin):
        cut = [None if ids is None else (ids if len(ids) == 1 else ids[start:stop])
               for ids in (target.cls, target.against)]
        return Margin(cut[0], against=cut[1])  # type: ignore[arg-type]
    return target


def _is_wrapper(method: Any) -> bool:
    """A TTA or localizer wrapper around a method (called like one, made elsewhere)."""
    from camloc.cams.tta import TTAMethod
    from camloc.localizer.model import LocalizedMethod

    return isinstance(method, (TTAMethod, LocalizedMethod))


def explain(model: CamModel, images: Sequence[str | os.PathLike[str] | Image.Image] | str | os.PathLike[str],
            top_k: int = DEFAULT_TOP_K, classes: Sequence[int] | None = None,
            threshold: float | None = DEFAULT_THRESHOLD, normalization: str = DEFAULT_NORMALIZATION,
            multi: bool = False, method: str | CAMMethod = "cam",
            batch_size: int = DEFAULT_BATCH_SIZE, preprocess: Preprocess | None = None, layer: LayerSpec = None,
            tta: Any = None, localizer: Any = None,
            target: Target | Callable[[torch.Tensor], torch.Tensor] | None = None,
            **options: Any) -> list[Explanation]:
    """Explain images (paths or PIL images): top-k classes (or the given ``classes``, or the
    ``target``), their normalised maps, and their boxes in original pixels.

    ``target``: instead of classes, what the maps explain (:mod:`camloc.targets`): a
    :class:`~camloc.targets.Margin` (``Margin(c)``: how far class ``c`` leads the best other
    class; ``Margin(c, against=d)``), a :class:`~camloc.targets.ClassTarget` (per-image ids, one
    row per image in input order) or any callable ``f(logits) -> scores``; ``top_k`` and
    ``classes`` are then unused (both given: :class:`ConfigError`). What the
    :class:`Explanation` reports for it: see there (a margin of ``c`` reports ``c``; a plain
    callable, class id ``-1`` named ``"target"``). Per-image data (a list of classes for a
    :class:`~camloc.targets.Margin`, a :class:`~camloc.targets.ClassTarget`) is cut per batch.

    ``method``: any name from ``camloc methods`` (default exact ``"cam"``) or a method instance;
    ``layer``: target layer(s) by name or module (default: the model's, reported in
    ``Explanation.layers``); ``options``: passed to the method (e.g. ``smooth=8``). ``batch_size``
    here is images per engine call; for a perturbation method's own ``batch_size`` pass an instance,
    ``method=make_method(model, "scorecam", batch_size=128)``.
    ``tta``: a ``--tta`` text (:mod:`camloc.cams.tta`); ``localizer``: a folder from ``camloc
    localizer fit`` or a :class:`~camloc.localizer.Localizer` (checked against the model; its
    TTA applies unless ``tta`` is given; ``threshold=None`` takes its threshold, on min-max maps).
    Raises :class:`ImageError` for an image that cannot be read (the CLI instead reports and
    continues), :class:`UnsupportedHeadError` for ``"cam"`` on a model without a GAP head."""
    if isinstance(images, (str, os.PathLike, Image.Image)):
        images = [images]
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}: must be >= 1")
    if target is not None and classes is not None:
        raise ConfigError("target and classes: give one of them")
    selection: TargetSpec = list(classes) if classes is not None else top_k
    if target is not None:
        selection = _check_target(target)
        if isinstance(selection, Target):  # per-image data for every image, ids in range
            selection.check(len(images), model.spec.num_classes)
    engine = make_method(model, method, layer, **options)  # fail early, build it once
    if localizer is not None or tta is not None:
        from camloc.cams.tta import with_tta
        from camloc.localizer.model import Localizer, load_localizer, with_localizer

        loc = localizer if isinstance(localizer, Localizer) or localizer is None else \
            load_localizer(localizer)
        if loc is not None:
            loc.check_model(model)
            if threshold is None and loc.threshold is not None:
                threshold, normalization = loc.threshold, "minmax"
        engine = with_tta(with_localizer(engine, loc),
                          tta if tta is not None else (loc.tta if loc is not None else None))
    if threshold is None:
        threshold = DEFAULT_THRESHOLD
    results: list[Explanation] = []

    def load(item: Any) -> tuple[Image.Image, str]:
        if isinstance(item, Image.Image):
            return item.convert("RGB"), getattr(item, "filename", "") or "<image>"
        return load_image(item), str(Path(item))

    # decoded in a thread ahead of the network, batch_size images per engine call
    for _, _, loaded in prefetch(decoded_batches(images, batch_size, load, None,
                                                 max_pixels=None)):
        pils, srcs = [im for im, _ in loaded], [src for _, src in loaded]
        start = len(results)  # every image so far was explained (a bad one raises)
        part = _target_rows(selection, start, start + len(pils)) if target is not None \
            else selection
        with torch.inference_mode(not engine.needs_grad):
            results.extend(explain_batch(model, pils, srcs, part, threshold, normalization,
                                         multi, engine, preprocess))
    return results
