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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from camloc.cams.engine import CAMMethod, ClassSelection
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

__all__ = ["Explanation", "explain", "explain_batch", "make_method"]


@dataclass
class Explanation:
    """One image's explanation.

    ``method`` and ``layers`` say which map method made the maps and from which target layer(s).
    ``maps`` are normalised (see ``normalization``) at the network's input resolution;
    :meth:`map_in_original` puts one back on the original pixel grid. ``boxes[j]`` is the largest
    component's box for ``class_ids[j]``; ``component_boxes[j]`` (when asked for) every component's.
    Boxes are ``x0, y0, x1, y1`` continuous pixel edges in original image pixels.
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
            "probs": [round(p, 6) for p in self.probs],
            "boxes": [[round(float(v), 2) for v in b] for b in self.boxes],
        }
        if self.component_boxes is not None:
            rec["component_boxes"] = [[[round(float(v), 2) for v in b] for b in bs]
                                      for bs in self.component_boxes]
        rec.update(self.extra)
        return rec


def explain_batch(model: CamModel, images: Sequence[Image.Image], sources: Sequence[str] | None = None,
                  classes: ClassSelection = DEFAULT_TOP_K, threshold: float = DEFAULT_THRESHOLD,
                  normalization: str = DEFAULT_NORMALIZATION,
                  multi: bool = False, method: str | CAMMethod = "cam",
                  preprocess: Preprocess | None = None, layer: LayerSpec = None,
                  **options: Any) -> list[Explanation]:
    """Explain a batch of already-decoded RGB images with one engine call.

    ``method`` is a registry name (``camloc methods``) or a method instance; ``layer`` the target
    layer(s) (default: the model's); ``options`` go to the method (``batch_size``, ``smooth``, ...).
    """
    pre = preprocess or model.spec.preprocess
    engine = method if _is_wrapper(method) else make_method(model, method, layer, **options)
    x, geoms = batch_images(images, pre)
    out = engine(x, classes=classes)
    maps = normalize(upsample(out.maps, pre.input_size, "bicubic"), normalization)
    input_boxes = largest_boxes(maps, threshold)  # (N, k, 4) in input pixels
    maps_np = maps.cpu().numpy()
    probs = out.probs.gather(1, out.class_ids).cpu().numpy()
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
            class_names=[model.spec.class_name(int(c)) for c in ids[i]],
            probs=[float(p) for p in probs[i]], logits=[float(v) for v in logits[i]],
            boxes=np.asarray(boxes, np.float64).reshape(-1, 4), maps=maps_np[i], geometry=g,
            threshold=threshold, normalization=normalization, method=engine.name,
            component_boxes=comps, layers=list(out.layers)))
    return results


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
            tta: Any = None, localizer: Any = None, **options: Any) -> list[Explanation]:
    """Explain images (paths or PIL images): top-k classes (or the given ``classes``), their
    normalised maps, and their boxes in original pixels.

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
    selection: ClassSelection = list(classes) if classes is not None else top_k
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
        with torch.inference_mode(not engine.needs_grad):
            results.extend(explain_batch(model, pils, srcs, selection, threshold, normalization,
                                         multi, engine, preprocess))
    return results
