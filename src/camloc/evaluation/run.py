"""The whole ``camloc evaluate`` run as one pipeline: open the dataset, load the model, score
(one process or the ranks of ``torchrun``), merge the shards, and write ``report.json``,
``per_image.jsonl`` and ``report.html`` into ``--out``.

Everything the user gives is checked before ``--out`` is created: the options, the dataset's
metadata, its classes against the model's, and the metadata's image sizes against the image
headers, and the ``--tta`` / ``--localizer`` / ``--runtime`` choices. Then ``--out`` is
locked (:func:`camloc.io.folder_lock`: a second run into it is refused) until the run's files
are written; ``scoremaps/`` is never a link (:func:`camloc.io.make_out_dir`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camloc.evaluation.state import EvalState, merge_states
from camloc.protocol.datasets import open_eval_dataset

__all__ = ["EvalResult", "open_eval_dataset", "run_evaluation", "PER_IMAGE_NAME"]

PER_IMAGE_NAME = "per_image.jsonl"


@dataclass
class EvalResult:
    """What :func:`run_evaluation` wrote, with the merged state and the report."""

    report: dict[str, Any]
    state: EvalState
    json_path: Path
    html_path: Path
    per_image_path: Path


def run_evaluation(dataset: Any, out: str | os.PathLike[str], *, model: str = "efficientnet_lite0",
                   weights: str | None = "DEFAULT", head: str | None = None, method: str = "cam",
                   layer: Any = None, method_options: dict[str, Any] | None = None,
                   protocol: str = "wsol", interval: float = 0.01, fixed_threshold: float = 0.2,
                   batch_size: int = 32, workers: int = 2, device: str = "auto",
                   save_maps: bool = False, gallery: int = 6, calibrate: str | float | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   runtime: str = "torch", tta: Any = None,
                   localizer: Any = None) -> EvalResult | None:
    """Evaluate a model (by name or folder) on ``dataset`` and write the run's files to ``out``.

    ``runtime``: ``"torch"``, ``"onnx"`` (exact CAM run by onnxruntime, exported to a cache on
    first use) or an exported ``.onnx`` file (:class:`camloc.runtime_onnx.OnnxCAM`).
    ``tta``: a ``--tta`` text (:mod:`camloc.cams.tta`); ``localizer``: a folder from ``camloc
    localizer fit``, whose recommended TTA and threshold apply unless ``tta`` / ``calibrate`` are
    given (``tta="none"`` turns its TTA off). All three are recorded in the report.

    Under ``torchrun`` every rank scores its shard; rank 0 merges, writes and returns the result,
    the other ranks return ``None``.
    """
    from camloc.cams.tta import parse_tta
    from camloc.evaluation.calibration import calibration_threshold
    from camloc.evaluation.evaluate import check_eval_settings

    tau = calibration_threshold(calibrate)
    parse_tta(tta)  # a bad --tta is refused before any work
    if _is_onnx(runtime) and (localizer is not None or parse_tta(tta) is not None):
        from camloc.errors import ConfigError

        raise ConfigError(f"--runtime {runtime}: the exported graph gives exact CAM at one size; "
                          "leave out --tta and --localizer (or use --runtime torch)")
    if localizer is not None:
        from camloc.localizer.model import load_localizer

        localizer = load_localizer(localizer)
        if tau is None and localizer.threshold is not None:
            tau = localizer.threshold
    cal_source = None if tau is None else (
        str(calibrate) if calibrate is not None and calibrate != "" else "localizer")
    check_eval_settings(interval, fixed_threshold, batch_size, workers, tau)
    job = _Job(model, weights, head, method, layer, method_options, protocol, interval,
               fixed_threshold, batch_size, workers, device, save_maps, gallery, calibrate, tau,
               cal_source, progress, runtime, tta, localizer)
    with contextlib.ExitStack() as lock:
        return _run(dataset, Path(out), lock, job)


@dataclass
class _Job:
    """The checked options of one evaluate run."""

    model: str
    weights: str | None
    head: str | None
    method: str
    layer: Any
    method_options: dict[str, Any] | None
    protocol: str
    interval: float
    fixed_threshold: float
    batch_size: int
    workers: int
    device: str | None
    save_maps: bool
    gallery: int
    calibrate: Any
    tau: float | None
    cal_source: str | None
    progress: Callable[[int, int], None] | None
    runtime: str | None
    tta: Any
    localizer: Any


def _run(dataset: Any, out: Path, lock: contextlib.ExitStack, job: _Job) -> EvalResult | None:
    from camloc.distributed import DistContext
    from camloc.protocol.batches import labelled_samples
    from camloc.evaluation.evaluate import (NEEDS_LABELS, build_report, check_calibration_report,
                                            check_fits_model, evaluate_state, map_engine,
                                            map_settings, scoremap_of, write_per_image)
    from camloc.evaluation.gallery import pick_extremes, render_gallery
    from camloc.io import folder_lock, make_out_dir
    from camloc.models import load_model
    from camloc.report import write_report

    ctx = DistContext.from_env(job.device)
    try:
        w = None if job.weights is None or str(job.weights).lower() == "none" else job.weights
        cam_model = load_model(job.model, weights=w, device=ctx.device, head=job.head)
        base = _runtime_engine(cam_model, job.runtime, job.method, job.layer, job.method_options)
        engine, loc, tta_spec = map_engine(cam_model, job.method, job.layer, job.method_options,
                                           job.tta, job.localizer, base=base)
        check_calibration_report(job.calibrate, tta_spec, loc)
        # the whole dataset is checked (and numbered as the model's classes) once, on every
        # rank alike, before --out is created; the report, per-image records and gallery use the
        # same numbering
        dataset = check_fits_model(cam_model, dataset)
        labelled_samples(dataset, NEEDS_LABELS)
        shard = dataset.shard(ctx.rank, ctx.world_size) if ctx.distributed else dataset
        if ctx.is_main:
            lock.enter_context(folder_lock(out))
        maps_dir = None
        if job.save_maps:  # OUT/scoremaps a link to a folder elsewhere: refused, nothing written
            maps_dir = make_out_dir(out, "scoremaps") if ctx.is_main else out / "scoremaps"
        ctx.barrier()  # under torchrun: no rank writes a map before the check
        state = evaluate_state(cam_model, shard, job.protocol, job.interval, job.fixed_threshold,
                               job.batch_size, job.workers, maps_dir,
                               job.progress if ctx.is_main else None, method=engine,
                               check_dataset=False)
        states = ctx.gather_objects(state)
    finally:
        ctx.close()
    if not ctx.is_main:
        return None
    merged = merge_states(states)
    report = build_report(merged, cam_model, dataset, job.protocol, job.interval,
                          extra={"world_size": ctx.world_size,
                                 **map_settings(tta_spec, loc, dataset, job.tau, job.cal_source)},
                          calibrate=job.tau,
                          method=_method_block(engine, job.method_options, job.runtime))
    ious, picks = [], []
    if merged.localization is not None:
        recs = merged.localization.per_image
        ious = [r["iou"] for r in recs if r.get("iou") is not None]
        picks = pick_extremes(recs, job.gallery)
    items = render_gallery(picks, dataset, lambda s: scoremap_of(engine, s, job.protocol))
    json_path, html_path = write_report(out, report, ious, items)
    per_image_path = out / PER_IMAGE_NAME
    write_per_image(per_image_path, merged, dataset)
    return EvalResult(report, merged, Path(json_path), Path(html_path), per_image_path)


def _is_onnx(runtime: str | None) -> bool:
    return runtime is not None and str(runtime).strip().lower() != "torch"


def _runtime_engine(model: Any, runtime: str | None, method: str, layer: Any,
                    options: dict[str, Any] | None) -> Any:
    """``--runtime onnx`` (or a ``.onnx`` file): the onnxruntime engine; ``torch``: None."""
    if not _is_onnx(runtime):
        return None
    from camloc.runtime_onnx import make_runtime_engine
    from camloc.errors import ConfigError

    if layer is not None or any(v is not None for v in (options or {}).values()):
        raise ConfigError(f"--runtime {runtime}: the exported graph reads the head's layer with "
                          f"no method options; leave out --layer and the method's options")
    return make_runtime_engine(model, runtime, method)


def _method_block(engine: Any, options: dict[str, Any] | None, runtime: str | None) -> Any:
    from camloc.evaluation.evaluate import method_block

    block = method_block(engine, options)
    path = getattr(engine, "path", None)
    if path is not None:
        block["runtime"] = {"name": "onnxruntime", "graph": str(path)}
    return block
