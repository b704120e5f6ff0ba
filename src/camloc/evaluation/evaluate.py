"""WSOL evaluation of a model on a dataset: classification, box and mask localization metrics.

Protocols (``protocol=``):

- ``"wsol"`` (default; Choe et al., CVPR 2020, clovaai/wsolevaluation): the image is resized to
  the model's input size (224x224 for ImageNet models) without a crop (the model's mean/std and
  interpolation); the CAM of the ground-truth class
  is resized to 224x224 with OpenCV bicubic interpolation and min-max normalised; GT boxes are
  rescaled to 224x224 with integer truncation; metrics as defined in :mod:`camloc.metrics`.
- ``"paper"`` (Zhou et al., CVPR 2016): the same, but each map is normalised by its maximum
  (the paper's "fraction of the maximum"; negative evidence clipped to 0) instead of min-max.

Memory stays flat: each batch's maps are scored and dropped; accumulators keep counts and one
scalar record per image.

>>> import camloc                                                      # doctest: +SKIP
>>> from camloc.data.datasets import open_dataset                      # doctest: +SKIP
>>> report = evaluate_model(camloc.load_model(), open_dataset("imagenet-val-dev"))  # doctest: +SKIP
>>> report["localization"]["maxboxacc_v2"]["value"]                    # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from camloc.data.images import load_image, to_tensor
from camloc.errors import ConfigError
from camloc.io import atomic_save_npy, versions
from camloc.evaluation.batches import EVAL_SIZE, EvalBatch, eval_batches, labelled_samples
from camloc.evaluation.state import EvalState
from camloc.models.heads import eval_mode
from camloc.models.loader import CamModel
from camloc.runtime import channels_last
from camloc.targets import ClassTarget, ScoreFn, Target

__all__ = ["EvalState", "build_report", "check_calibration_report", "map_engine", "map_settings",
           "check_classes", "check_fits_model", "check_eval_settings",
           "evaluate_model", "evaluate_state", "gt_class_maps", "make_engine", "fit_classes",
           "method_block", "scoremap_of", "write_per_image", "PROTOCOLS", "EVAL_SIZE",
           "prepare_scoremap"]

PROTOCOLS = ("wsol", "paper")


@contextlib.contextmanager
def full_fp32(active: bool = True) -> Iterator[None]:
    """Disable TF32 in cuDNN convolutions and CUDA matmuls for the block (restored after)."""
    if not active:
        yield
        return
    old = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def prepare_scoremap(cam: np.ndarray, size: int = EVAL_SIZE, protocol: str = "wsol") -> np.ndarray:
    """A raw low-resolution CAM -> the ``size x size`` ``[0, 1]`` score map the metrics take.

    wsolevaluation's resize (OpenCV bicubic) and normalisation, kept apart from
    ``cams.postprocess`` on purpose (see there): ``"max"`` here clips negatives to 0."""
    from camloc.metrics import normalize_minmax

    resized = cv2.resize(np.asarray(cam, np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    if protocol == "wsol":
        return normalize_minmax(resized)
    if np.isnan(resized).any():
        return np.zeros_like(resized)
    mx = float(resized.max())
    return (resized.clip(0, None) / mx).astype(np.float32) if mx > 0 else np.zeros_like(resized)


def _model_synsets(model: CamModel) -> list[str] | None:
    """The model's WordNet ids when it is an ImageNet-1k classifier (its class names are
    ImageNet's), else ``None``."""
    if model.spec.num_classes != 1000:
        return None
    try:
        from camloc.data.imagenet import imagenet_class_names, imagenet_synsets

        if list(model.spec.class_names) != list(imagenet_class_names()):
            return None
        return imagenet_synsets()
    except Exception:  # noqa: BLE001 - timm's synset list unavailable: compare names only
        return None


def check_classes(model: CamModel, dataset: Any) -> None:
    """Refuse a dataset whose class ids do not mean the model's classes
    (:func:`camloc.data.classes.check_model_classes`; raises :class:`~camloc.errors.DatasetError`)."""
    from camloc.data.classes import check_model_classes

    check_model_classes(dataset, model.spec.num_classes, model.spec.class_names,
                        synsets=_model_synsets(model))


def fit_classes(model: CamModel, dataset: Any) -> Any:
    """``dataset`` numbered as ``model`` numbers its classes: renumbered by WordNet id where both
    have them (an ImageNet subset whose classes are ``n01440764``-style ids, in any layout,
    onto an ImageNet model), else unchanged; raises :class:`~camloc.errors.DatasetError` where
    the classes do not match (:func:`camloc.data.classes.fit_to_model_classes`)."""
    from camloc.data.classes import fit_to_model_classes

    return fit_to_model_classes(dataset, model.spec.num_classes, model.spec.class_names,
                                synsets=_model_synsets(model))


def check_fits_model(model: CamModel, dataset: Any) -> Any:
    """Refuse a dataset that would give silently wrong figures with ``model``: class ids that do not
    mean the model's classes (:func:`fit_classes`), or metadata sizes that disagree with the image
    headers (boxes would be rescaled from the wrong size; ``dataset.check_sizes()``). Raises
    :class:`~camloc.errors.DatasetError` naming the file and line. Returns the dataset to score:
    renumbered into the model's classes where its classes are WordNet ids (:func:`fit_classes`)."""
    dataset = fit_classes(model, dataset)
    if hasattr(dataset, "check_sizes"):
        dataset.check_sizes()
    return dataset


def check_eval_settings(interval: object, fixed_threshold: object, batch_size: object,
                        workers: object, calibrate: float | None = None) -> None:
    """Raise :class:`ConfigError` naming the option unless the settings are usable (the grid
    checks of :func:`camloc.evaluation.options.check_settings`; ``workers`` >= 0, ``batch_size``
    >= 1)."""
    from camloc.evaluation.options import check_settings

    check_settings(interval, fixed_threshold, workers, 1, calibrate)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ConfigError(f"--batch-size must be an integer >= 1, got {batch_size!r}")


def make_engine(model: CamModel, method: str = "cam", layer: Any = None,
                method_options: dict[str, Any] | None = None) -> Any:
    """The map method evaluate runs (:func:`camloc.cams.make_method`); a wrapper such as
    :class:`camloc.cams.tta.TTAMethod` or :class:`camloc.localizer.LocalizedMethod` as it is."""
    from camloc.cams import make_method

    if _is_wrapper(method):
        if layer is not None or any(v is not None for v in (method_options or {}).values()):
            raise ConfigError("layer/options: give them when constructing the method instance")
        return method

    return make_method(model, method, layer, **(method_options or {}))


def map_engine(model: CamModel, method: str | Any = "cam", layer: Any = None,
               method_options: dict[str, Any] | None = None, tta: Any = None,
               localizer: Any = None, base: Any = None) -> tuple[Any, Any, Any]:
    """``(engine, localizer, tta)``: the map method (``base`` when given, e.g. an onnxruntime
    engine) with the localizer's foreground combined in and wrapped in TTA. ``localizer``: a
    folder or a :class:`~camloc.localizer.Localizer` (checked against the model); ``tta``: a
    ``--tta`` text or :class:`~camloc.cams.tta.TTA`; ``None`` takes the localizer's recommended
    TTA (``"none"``: no TTA)."""
    from camloc.cams.tta import parse_tta, with_tta

    loc = None
    if localizer is not None:
        from camloc.localizer.model import Localizer, load_localizer, with_localizer

        loc = localizer if isinstance(localizer, Localizer) else load_localizer(localizer)
        loc.check_model(model)
    spec = parse_tta(tta if tta is not None else (loc.tta if loc is not None else None))
    engine = base if base is not None else make_engine(model, method, layer, method_options)
    if loc is not None:
        engine = with_localizer(engine, loc)
    return with_tta(engine, spec), loc, spec


def map_settings(tta: Any, localizer: Any, dataset: Any, calibrate: float | None,
                 calibrate_source: str | None) -> dict[str, Any]:
    """The report's ``tta``, ``localizer`` and ``calibration`` blocks. ``localizer.scored_fit_images``
    counts the scored images the localizer was fitted on (the figures are not held-out then)."""
    out: dict[str, Any] = {"tta": tta.describe() if tta is not None else "none"}
    if localizer is not None:
        block = localizer.settings()
        fitted = set(localizer.fit.get("fit_ids", []))
        ids = {s.image_id for s in dataset.samples}
        overlap = len(fitted & ids)
        block["scored_fit_images"] = overlap
        block["heldout"] = overlap == 0
        if overlap:
            block["note"] = (f"{overlap} of the {len(ids)} scored images were used to fit the "
                             f"localizer or choose its settings: these figures are not held-out")
        out["localizer"] = block
    if calibrate is not None:
        out["calibration"] = {"threshold": calibrate, "source": calibrate_source}
    return out


def check_calibration_report(value: str | float | None, tta: Any, localizer: Any) -> None:
    """Refuse a ``--calibrate`` report made with another TTA or another localizer (its threshold
    belongs to other maps). A number, or a report without these keys (``"none"``), passes
    when this run has neither."""
    from camloc.evaluation.calibration import read_report

    if value is None or value == "":
        return
    try:
        float(value)
        return
    except (TypeError, ValueError):
        pass
    try:
        rep, _ = read_report(str(value))
    except ConfigError:
        return  # calibration_threshold names the problem
    theirs = str(rep.get("tta", "none"))
    ours = tta.describe() if tta is not None else "none"
    if theirs != ours:
        raise ConfigError(f"--calibrate {value}: that report was made with --tta {theirs}, this run "
                          f"uses --tta {ours}; its threshold is for other maps (calibrate with the "
                          f"same --tta)")
    their_key = _loc_key(rep.get("localizer"))
    our_key = None if localizer is None else _loc_key(localizer.settings())
    if their_key != our_key:
        raise ConfigError(f"--calibrate {value}: that report was made "
                          f"{'without a localizer' if their_key is None else 'with localizer ' + str(their_key)}"
                          f", this run uses "
                          f"{'none' if our_key is None else 'localizer ' + str(our_key)}; its "
                          f"threshold is for other maps")


def _loc_key(block: Any) -> str | None:
    if not isinstance(block, dict):
        return None
    return block.get("key")


def _is_wrapper(method: Any) -> bool:
    from camloc.cams import CAMMethod

    return not isinstance(method, (str, CAMMethod)) and callable(method) \
        and hasattr(method, "model") and hasattr(method, "needs_grad")


def method_block(engine: Any, method_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report's ``method`` block: name, resolved target layers, options, autograd use."""
    return {"name": engine.name, "layers": list(engine.layers),
            "options": {k: v for k, v in (method_options or {}).items() if v is not None},
            "needs_grad": bool(engine.needs_grad)}


def gt_class_maps(engine: Any, x: torch.Tensor, labels: torch.Tensor | Target | ScoreFn
                  ) -> tuple[torch.Tensor, np.ndarray]:
    """Logits ``(N, C)`` and the raw ``(N, h, w)`` maps of each image's ground-truth class
    (``labels`` ``(N,)``), or of another target with one score per image (a
    :class:`~camloc.targets.Target`, e.g. ``Margin(labels)``, or a callable on the logits; see
    :mod:`camloc.targets`).

    Gradient methods run with autograd (outside inference mode, from the target layer up);
    the others in inference mode."""
    target = labels if isinstance(labels, Target) or callable(labels) else ClassTarget(labels)
    ctx = contextlib.nullcontext() if engine.needs_grad else torch.inference_mode()
    with ctx:
        out = engine(x, classes=target)
    return out.logits.detach().float().cpu(), out.maps[:, 0].detach().cpu().numpy()


NEEDS_LABELS = ("evaluation needs a class label for every image (GT-known localization uses the "
                "ground-truth class's map)")


def evaluate_state(model: CamModel, dataset: Any, protocol: str = "wsol", interval: float = 0.01,
                   fixed_threshold: float = 0.2, batch_size: int = 32, workers: int = 0,
                   save_maps: str | os.PathLike[str] | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   tf32: bool = False, *, method: str | Any = "cam", layer: Any = None,
                   method_options: dict[str, Any] | None = None,
                   check_dataset: bool = True) -> EvalState:
    """Run the model over ``dataset`` and fill the accumulators (no report yet).

    Args:
        method, layer, method_options: the map method (any name of :data:`camloc.cams.METHODS`,
            or an instance), its target layer(s) and constructor options
            (:func:`camloc.cams.make_method`); default exact CAM on the model's layer.
        save_maps: a folder; each score map is written to
            ``<save_maps>/<safe_relpath(image_id, ".npy")>`` (never outside it).
        check_dataset: first refuse (:class:`~camloc.errors.DatasetError`) a dataset whose
            classes are not the model's, or whose metadata sizes disagree with the image headers.

    On CUDA, TF32 matrix maths is switched off for the run unless ``tf32=True``: with it the
    H200 gave MaxBoxAcc 66.14 instead of the CPU's 66.34 on the dev set (one image flips).
    """
    from camloc.metrics import ClassificationAccumulator, LocalizationAccumulator, PxAPAccumulator

    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol={protocol!r}: expected one of {PROTOCOLS}")
    check_eval_settings(interval, fixed_threshold, batch_size, workers)
    if check_dataset:
        dataset = check_fits_model(model, dataset)
    samples = labelled_samples(dataset, NEEDS_LABELS)
    engine = make_engine(model, method, layer, method_options)
    has_boxes = any(len(s.boxes) for s in samples)
    has_masks = any(s.mask_paths for s in samples)
    # The network sees the whole image at its own input size (224 for ImageNet models); maps
    # are then resized to the 224x224 evaluation grid.
    pre = model.spec.preprocess.with_(fit="stretch")
    state = EvalState(
        classification=ClassificationAccumulator(),
        localization=LocalizationAccumulator(interval=interval, fixed_threshold=fixed_threshold)
        if has_boxes else None,
        pxap=PxAPAccumulator(interval=interval) if has_masks else None,
    )
    t0 = time.perf_counter()
    with eval_mode(model.module), full_fp32(model.device.type == "cuda" and not tf32), \
            channels_last(model.module, model.device.type == "cpu") as cl:
        for batch in eval_batches(samples, pre, batch_size=batch_size, workers=workers,
                                  failed=state.failed, boxes=state.localization is not None,
                                  masks=state.pxap is not None, channels_last=cl,
                                  progress=progress):
            _score_batch(engine, batch, state, protocol, save_maps)
    state.seconds = time.perf_counter() - t0
    return state


def _score_batch(engine: Any, batch: EvalBatch, state: EvalState, protocol: str,
                 save_maps: Any) -> None:
    from camloc.data.paths import safe_relpath

    labels = batch.labels
    logits, cams = gt_class_maps(engine, batch.x, labels)
    state.classification.update(logits, labels.numpy())
    top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
    top1_ok = (top5[:, 0] == labels).numpy()
    top5_ok = (top5 == labels[:, None]).any(dim=1).numpy()
    scoremaps = np.stack([prepare_scoremap(c, EVAL_SIZE, protocol) for c in cams])
    ids = batch.image_ids
    if state.localization is not None:
        state.localization.update(scoremaps, batch.boxes, top1_correct=top1_ok,
                                  top5_correct=top5_ok, image_ids=ids)
    if state.pxap is not None:
        state.pxap.update(scoremaps, batch.masks)
    if save_maps is not None:
        root = Path(save_maps)
        for image_id, sm in zip(ids, scoremaps):
            atomic_save_npy(root / safe_relpath(image_id, ".npy"), sm)
    state.add_images(ids, labels.tolist(), top1_ok, top5_ok)
    state.images += len(batch)


def scoremap_of(engine: Any, sample: Any, protocol: str = "wsol") -> np.ndarray:
    """One sample's ``EVAL_SIZE`` score map, recomputed as :func:`evaluate_state` does (for
    report galleries)."""
    pre = engine.model.spec.preprocess.with_(fit="stretch")
    x, _ = to_tensor(load_image(sample.path), pre)
    _, cams = gt_class_maps(engine, x[None], torch.tensor([int(sample.label)]))
    return prepare_scoremap(cams[0], EVAL_SIZE, protocol)


def build_report(state: EvalState, model: CamModel | None, dataset: Any, protocol: str,
                 interval: float, extra: dict[str, Any] | None = None,
                 calibrate: float | None = None, method: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """The JSON report: every figure, the best thresholds, counts, settings and versions.

    ``method``: the map method's block (:func:`method_block`); a model's report without one
    names exact ``cam`` on the model's default layer.

    ``calibrate``: a threshold chosen on another split (the WSOL protocol); the figures at that
    threshold are added under ``localization.calibrated`` (and ``pxap.calibrated``).
    """
    report: dict[str, Any] = {
        "dataset": {"name": getattr(dataset, "name", ""), "root": str(getattr(dataset, "root", "")),
                    "format": getattr(dataset, "format", ""), "split": getattr(dataset, "split", None),
                    "images": len(dataset.samples), "num_classes": dataset.num_classes},
        "protocol": {"name": protocol, "eval_size": EVAL_SIZE, "cam_curve_interval": interval,
                     "resize": "stretch to 224x224, no crop", "cam_resize": "cv2 INTER_CUBIC",
                     "normalization": "minmax" if protocol == "wsol" else "max"},
        "counts": {"scored": state.images, "failed": len(state.failed)},
        "seconds": round(state.seconds, 3),
        "images_per_second": round(state.images / state.seconds, 2) if state.seconds > 0 else None,
        "versions": versions(),
    }
    if state.classification.count:
        report["classification"] = state.classification.compute()
    if model is not None:
        report["model"] = {"name": model.spec.name, "source": model.spec.source,
                           "preprocess": model.spec.preprocess.to_dict()}
        report["method"] = method if method is not None else {
            "name": "cam", "layers": list(getattr(model, "layers", []) or []), "options": {},
            "needs_grad": False}
    if state.localization is not None and state.images:
        report["localization"] = state.localization.compute(threshold=calibrate)
    if state.pxap is not None and state.images:
        report["pxap"] = state.pxap.compute()
        if calibrate is not None:
            report["pxap"]["calibrated"] = state.pxap.evaluate_at(calibrate)
    if state.failed:
        report["failed"] = state.failed[:100]
    if extra:
        report.update(extra)
    return report


def evaluate_model(model: CamModel, dataset: Any, protocol: str = "wsol", interval: float = 0.01,
                   fixed_threshold: float = 0.2, batch_size: int = 32, workers: int = 0,
                   save_maps: str | os.PathLike[str] | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   tf32: bool = False, *, method: str = "cam", layer: Any = None,
                   method_options: dict[str, Any] | None = None,
                   check_dataset: bool = True, tta: Any = None, localizer: Any = None,
                   calibrate: str | float | None = None) -> dict[str, Any]:
    """Evaluate ``model`` on ``dataset`` and return the report dict (see :func:`build_report`).

    ``method``/``layer``/``method_options``: the map method, as :func:`evaluate_state` takes them.
    ``tta``/``localizer``/``calibrate``: as ``camloc evaluate`` takes them (:func:`map_engine`;
    the localizer's TTA and threshold apply unless given).

    Keys: ``classification`` {top1, top5}, ``localization`` (MaxBoxAcc V1/V2, GT-known/Top-1/Top-5
    Loc at the fixed and best thresholds, curves) when the dataset has boxes, ``pxap`` when it has
    masks, plus counts, protocol, model and versions.
    """
    from camloc.cams.tta import parse_tta
    from camloc.evaluation.calibration import calibration_threshold

    tau = calibration_threshold(calibrate)
    parse_tta(tta)
    engine, loc, spec = map_engine(model, method, layer, method_options, tta, localizer)
    check_calibration_report(calibrate, spec, loc)
    if tau is None and loc is not None:
        tau = loc.threshold
    source = None if tau is None else (str(calibrate) if calibrate not in (None, "") else
                                       "localizer")
    if check_dataset:  # the report names the classes the images were scored against
        dataset = check_fits_model(model, dataset)
    state = evaluate_state(model, dataset, protocol, interval, fixed_threshold, batch_size, workers,
                           save_maps, progress, tf32, method=engine, check_dataset=False)
    return build_report(state, model, dataset, protocol, interval, calibrate=tau,
                        method=method_block(engine, method_options),
                        extra=map_settings(spec, loc, dataset, tau, source))


def write_per_image(path: str | os.PathLike[str], state: EvalState, dataset: Any) -> int:
    """Write ``per_image.jsonl`` atomically: one JSON line per scored image (the fields of
    :meth:`EvalState.records` plus ``gt_boxes`` in original pixels and ``correct``: IoU >= 0.5),
    then one per failed image (``image_id``, ``error``). Returns the number of lines.

    ``camloc serve --runs`` reads this file (:mod:`camloc.web.runs`)."""
    from camloc.io import atomic_open, dumps

    by_id = {s.image_id: s for s in dataset.samples}
    n = 0
    with atomic_open(path, "wb") as fh:
        for rec in state.records():
            s = by_id.get(rec["image_id"])
            if s is not None:
                rec["gt_boxes"] = [[float(v) for v in b] for b in s.boxes]
            if "iou" in rec:
                rec["correct"] = bool(rec["iou"] >= 0.5)
            fh.write((dumps(rec) + "\n").encode("utf-8"))
            n += 1
        for f in state.failed:
            fh.write((dumps({"image_id": f.get("image_id"), "error": f.get("error")}) + "\n")
                     .encode("utf-8"))
            n += 1
    return n
