"""The compare pass: every method over one dataset, localization and faithfulness side by side.

One pass over the data: each batch of images is decoded and preprocessed once, then every method
computes the ground-truth class's map on it (with :mod:`camloc.compare.tta` when asked). A method's
own forward pass yields the clean logits, which the faithfulness accumulators reuse instead of
running the model on the clean images again; classification figures come from the first method's
logits (every method sees the same inputs, so they are the same logits).

Localization follows ``camloc evaluate``'s ``wsol`` protocol exactly: images stretched to the
model's input size, the map resized to 224 x 224 with OpenCV bicubic interpolation and min-max
normalised, GT boxes rescaled with integer truncation; so ``cam``'s figures here equal
``camloc evaluate``'s on the same data. Faithfulness metrics take the same map at the model's input
resolution (the same resize and normalisation), so they perturb what the localization scored.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch

from camloc.compare.options import resolve_methods
from camloc.cams.tta import TTA, tta_maps
from camloc.defaults import DEFAULT_THRESHOLD
from camloc.errors import ConfigError, UnsupportedHeadError
from camloc.evaluation.batches import EVAL_SIZE, labelled_samples
from camloc.evaluation.calibration import Calibration

__all__ = ["FaithfulnessSettings", "MethodState", "CompareState", "resolve_methods",
           "build_methods", "compare_state", "EVAL_SIZE"]


@dataclass(frozen=True)
class FaithfulnessSettings:
    """What faithfulness to measure and how much of it: ``steps`` of the deletion / insertion
    curves, ``road_percentiles`` (percent of pixels removed), ``limit`` (only the first N images of
    the scored set; None: all), ``batch_size`` of the perturbed forwards; ``enabled=False`` skips
    them (localization only)."""

    enabled: bool = True
    steps: int = 20
    road_percentiles: tuple[float, ...] = (20.0, 40.0, 60.0, 80.0)
    limit: int | None = None
    batch_size: int = 64

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "deletion_insertion_steps": self.steps,
                "road_percentiles": list(self.road_percentiles), "limit": self.limit,
                "batch_size": self.batch_size}


@dataclass
class MethodState:
    """One method's accumulators over (a shard of) the data; :meth:`merge` is exact."""

    method: str
    threshold: float
    localization: Any | None = None
    pxap: Any | None = None
    average_drop: Any | None = None
    deletion: Any | None = None
    road: Any | None = None
    images: int = 0
    faith_images: int = 0
    map_seconds: float = 0.0
    faith_seconds: float = 0.0

    def merge(self, other: MethodState) -> MethodState:
        for name in ("localization", "pxap", "average_drop", "deletion", "road"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine is not None and theirs is not None:
                mine.merge(theirs)
            elif mine is None and theirs is not None:
                setattr(self, name, theirs)
        self.images += other.images
        self.faith_images += other.faith_images
        self.map_seconds += other.map_seconds
        self.faith_seconds += other.faith_seconds
        return self


@dataclass
class CompareState:
    """Every method's state plus classification and failures of (a shard of) the data."""

    classification: Any
    methods: dict[str, MethodState]
    failed: list[dict[str, str]] = field(default_factory=list)
    images: int = 0
    seconds: float = 0.0

    def merge(self, other: CompareState) -> CompareState:
        self.classification.merge(other.classification)
        for name, st in other.methods.items():
            self.methods[name].merge(st)
        self.failed.extend(other.failed)
        self.images += other.images
        self.seconds = max(self.seconds, other.seconds)
        return self


def build_methods(model: Any, names: Sequence[str], layer: Any = None,
                  batch_size: int | None = None, skip_headless: bool = False) -> dict[str, Any]:
    """Construct every method for ``model`` before any work, so a method that cannot run on it
    fails at once. ``"cam"`` on a model without a GAP -> linear head is refused with the methods
    that do work, or left out when ``skip_headless`` (``--methods all``).
    """
    from camloc.cams.registry import make_method

    out: dict[str, Any] = {}
    headless: list[str] = []
    for name in names:
        try:
            out[name] = make_method(model, name, layer, batch_size=batch_size)
        except UnsupportedHeadError:
            headless.append(name)
    if headless and skip_headless and out:
        return out
    if headless:
        reason = getattr(model, "head_reason", None) or "no GAP -> linear head found"
        from camloc.cams.catalog import CATALOG

        working = [n for n, info in CATALOG.items() if not info.needs_head]
        raise ConfigError(f"--methods: {', '.join(headless)} need(s) a verified GAP -> linear head, "
                          f"which this model lacks ({str(reason).rstrip('.')}); methods that work on "
                          f"it: "
                          f"{', '.join(working)}")
    return out


def _scoremap(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """evaluate's ``prepare_scoremap`` (wsol protocol) for any ``(height, width)``."""
    from camloc.metrics import normalize_minmax

    resized = cv2.resize(np.asarray(cam, np.float32), (size[1], size[0]),
                         interpolation=cv2.INTER_CUBIC)
    return normalize_minmax(resized).astype(np.float32)


def _new_state(name: str, tau: float, interval: float, has_boxes: bool, has_masks: bool,
               faith: FaithfulnessSettings, mean: Sequence[float], std: Sequence[float]
               ) -> MethodState:
    from camloc.metrics import LocalizationAccumulator, PxAPAccumulator

    st = MethodState(name, tau)
    if has_boxes:
        st.localization = LocalizationAccumulator(interval=interval, fixed_threshold=tau)
    if has_masks:
        st.pxap = PxAPAccumulator(interval=interval)
    if faith.enabled:
        from camloc.metrics.faithfulness import (
            AverageDropAccumulator,
            DeletionInsertionAccumulator,
            ROADAccumulator,
        )

        st.average_drop = AverageDropAccumulator(mean=mean, std=std, batch_size=faith.batch_size)
        st.deletion = DeletionInsertionAccumulator(n_steps=faith.steps, batch_size=faith.batch_size,
                                                   keep_curves=False)
        st.road = ROADAccumulator(percentiles=faith.road_percentiles, mean=mean, std=std,
                                  batch_size=faith.batch_size)
    return st


def _check_grid(taus: dict[str, float | None], calibration: Calibration | None,
                fixed_threshold: float, interval: float) -> None:
    """Every Loc threshold must be a point of the threshold grid; the error names where the
    threshold came from (``--calibrate 0.305``, a compare.json's method, ``--fixed-threshold``)."""
    from camloc.errors import MetricError
    from camloc.metrics.localization import grid_index

    grid = np.arange(0, 1, interval)
    for name, tau in taus.items():
        where = (f"{calibration.source} (method {name})" if tau is not None and calibration
                 is not None else "--fixed-threshold")
        value = fixed_threshold if tau is None else tau
        try:
            grid_index(grid, value, interval, "threshold")
        except MetricError as exc:
            raise ConfigError(f"{where}: {exc}") from None


def compare_state(model: Any, dataset: Any, methods: dict[str, Any], *, tta: TTA | None = None,
                  calibration: Calibration | None = None,
                  fixed_threshold: float = DEFAULT_THRESHOLD,
                  interval: float = 0.01, batch_size: int = 16, workers: int = 0,
                  faithfulness: FaithfulnessSettings = FaithfulnessSettings(),
                  faith_ids: set[str] | None = None,
                  progress: Callable[[int, int], None] | None = None) -> CompareState:
    """Run every method of ``methods`` (name -> constructed method, see :func:`build_methods`) over
    ``dataset`` and fill the accumulators (no report yet; shards merge with
    :meth:`CompareState.merge`).

    Each method's Loc figures are taken at its calibrated threshold when ``calibration`` gives one,
    else at ``fixed_threshold``. Faithfulness is measured on the images whose ids are in
    ``faith_ids`` when given (a shard of a torchrun job gets the ids chosen over the whole data),
    else on the first ``faithfulness.limit`` images (all when None).

    Images are read as ``evaluate`` reads them (:func:`camloc.evaluation.batches.eval_batches`:
    decoded in ``workers`` DataLoader processes when > 0, unreadable images and images whose
    size disagrees with the metadata recorded as failures).
    """
    from camloc.metrics import ClassificationAccumulator
    from camloc.models.heads import eval_mode

    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}: must be >= 1")
    if workers < 0:
        raise ConfigError(f"workers={workers}: must be >= 0")
    samples = labelled_samples(dataset, "compare needs a class label for every image (maps are "
                                        "of the ground-truth class)")
    has_boxes = any(len(s.boxes) for s in samples)
    has_masks = any(s.mask_paths for s in samples)
    if not has_boxes and not faithfulness.enabled:
        raise ConfigError("the dataset has no boxes and faithfulness is off: nothing to measure")
    pre = model.spec.preprocess.with_(fit="stretch")
    taus = {n: (calibration.threshold(n) if calibration is not None else None) for n in methods}
    _check_grid(taus, calibration, fixed_threshold, interval)
    state = CompareState(ClassificationAccumulator(), {
        n: _new_state(n, fixed_threshold if taus[n] is None else float(taus[n]), interval,
                      has_boxes, has_masks, faithfulness, pre.mean, pre.std)
        for n in methods})

    from camloc.evaluation.batches import eval_batches
    from camloc.runtime import channels_last, to_layout

    t_start = time.perf_counter()
    # weights and batches channels-last on the CPU, as in evaluate (faster convolutions)
    with eval_mode(model.module), channels_last(model.module, model.device.type == "cpu") as cl:

        def forward(x: torch.Tensor) -> torch.Tensor:  # the faithfulness metrics' perturbed inputs
            return model.logits(to_layout(x, cl))

        for batch in eval_batches(samples, pre, batch_size=batch_size, workers=workers,
                                  failed=state.failed, boxes=has_boxes, masks=has_masks,
                                  device=model.device, channels_last=cl, progress=progress):
            ids = batch.image_ids
            faith: list[int] = []
            if faithfulness.enabled:
                if faith_ids is not None:
                    faith = [j for j, image_id in enumerate(ids) if image_id in faith_ids]
                elif faithfulness.limit is None:
                    faith = list(range(len(ids)))
                else:
                    faith = list(range(max(0, min(len(ids), faithfulness.limit - state.images))))
            for k, (name, meth) in enumerate(methods.items()):
                _score_method(state.methods[name], meth, forward, batch.x, batch.labels, ids,
                              batch.boxes, batch.masks, tta, faith, state if k == 0 else None)
            state.images += len(ids)
    state.seconds = time.perf_counter() - t_start
    return state


def _score_method(st: MethodState, meth: Any, forward: Callable[[torch.Tensor], torch.Tensor],
                  x: torch.Tensor, labels: torch.Tensor, ids: list[str], boxes: list[np.ndarray] | None,
                  masks: np.ndarray | None, tta: TTA | None, faith: list[int],
                  state: CompareState | None) -> None:
    h, w = x.shape[-2:]
    t0 = time.perf_counter()
    if tta is not None and tta.active:
        logits, imaps = tta_maps(meth, x, labels.to(x.device), tta)
        cams = imaps.cpu().numpy()  # already in [0, 1] at input size
    else:
        out = meth(x, classes=labels[:, None].to(x.device))
        logits = out.logits
        cams = out.maps[:, 0].cpu().numpy()
    st.map_seconds += time.perf_counter() - t0
    logits_cpu = logits.detach().float().cpu()
    if state is not None:
        state.classification.update(logits_cpu, labels.numpy())
    scoremaps = np.stack([_scoremap(c, (EVAL_SIZE, EVAL_SIZE)) for c in cams])
    if st.localization is not None and boxes is not None:
        top5 = logits_cpu.topk(min(5, logits_cpu.shape[1]), dim=1).indices
        st.localization.update(scoremaps, boxes, top1_correct=(top5[:, 0] == labels).numpy(),
                               top5_correct=(top5 == labels[:, None]).any(dim=1).numpy(),
                               image_ids=ids)
    if st.pxap is not None and masks is not None:
        st.pxap.update(scoremaps, masks)
    st.images += len(ids)
    if not faith:
        return
    t1 = time.perf_counter()
    if (h, w) == (EVAL_SIZE, EVAL_SIZE):
        fmaps = scoremaps[faith]
    else:
        fmaps = np.stack([_scoremap(cams[j], (h, w)) for j in faith])
    fm = torch.from_numpy(fmaps).to(x.device)
    sel = torch.tensor(faith, dtype=torch.long)
    xf, yf = x[sel.to(x.device)], labels[sel]
    lg, fid = logits.detach()[sel.to(logits.device)], [ids[j] for j in faith]
    for acc in (st.average_drop, st.deletion, st.road):
        acc.update(forward, xf, fm, yf, logits=lg, image_ids=fid)
    st.faith_images += len(faith)
    st.faith_seconds += time.perf_counter() - t1


def scoremap_of(model: Any, method: Any, sample: Any, tta: TTA | None = None) -> np.ndarray:
    """The ``224 x 224`` score map of one sample's ground-truth class, as the pass computed it
    (used to draw the gallery's few images again instead of keeping every map)."""
    from camloc.data.images import load_image, to_tensor

    pre = model.spec.preprocess.with_(fit="stretch")
    x, _ = to_tensor(load_image(sample.path), pre)
    x = x[None].to(model.device)
    label = torch.tensor([sample.label], dtype=torch.long)
    from camloc.models.heads import eval_mode

    with eval_mode(model.module):
        if tta is not None and tta.active:
            cam = tta_maps(method, x, label.to(x.device), tta)[1][0].cpu().numpy()
        else:
            cam = method(x, classes=label[:, None].to(x.device)).maps[0, 0].cpu().numpy()
    return _scoremap(cam, (EVAL_SIZE, EVAL_SIZE))
