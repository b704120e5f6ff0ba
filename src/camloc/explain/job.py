"""The whole ``camloc explain`` job from the user's options: one function, :func:`run_explain_job`.

It owns what the command line used to do around :func:`camloc.explain.run.run_explain`: the
checks of the options that only the job sees (which combinations make sense, ``--layer`` names,
``--calibrate`` with ``--threshold`` or ``--normalization``), the ``--calibrate`` report
(:func:`camloc.evaluation.calibration.read_calibration`), the inputs (files, folders, globs, lists
or a dataset), loading the model (and its ``--head``), ``--classes`` by name or id, the default
``top_k`` of a model with fewer classes, and the ``torchrun`` ranks (every rank explains its
share; rank 0 merges, writes and reports). The settings' own values are checked by
:meth:`ExplainSettings.check <camloc.explain.run.ExplainSettings.check>`: once before the model
loads (what needs no model), and in full by ``run_explain``, the library's entry, which also
takes the output folder's lock.

>>> from camloc.explain.job import run_explain_job                           # doctest: +SKIP
>>> result = run_explain_job(["photos/"], "out", top_k=3)                    # doctest: +SKIP
>>> result.summary.done, result.summary.failed                               # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from camloc.defaults import DEFAULT_BATCH_SIZE, DEFAULT_MODEL, DEFAULT_THRESHOLD, DEFAULT_TOP_K
from camloc.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from camloc.evaluation.calibration import ExplainCalibration
    from camloc.explain.inputs import ExplainInputs
    from camloc.explain.run import ExplainSettings, RunSummary

__all__ = ["ExplainJobResult", "run_explain_job", "ProgressFactory"]

#: ``progress(title)`` -> a context manager yielding ``update(done, total)`` (``total`` is None
#: while the inputs are still being listed), e.g. ``camloc.commands.common.progress_bar``.
ProgressFactory = Callable[[str], AbstractContextManager[Callable[[int, "int | None"], None]]]


@dataclass
class ExplainJobResult:
    """What an explain job did (on rank 0 of a torchrun job: all ranks together)."""

    summary: RunSummary
    model_name: str
    device: str
    world_size: int
    overlays: bool

    @property
    def exit_code(self) -> int:
        """0: every image explained (or skipped as done); 1: some failed (``errors.jsonl``)."""
        return self.summary.exit_code


def run_explain_job(
    paths: Sequence[str | os.PathLike[str]] = (), out: str | os.PathLike[str] = "camloc-out", *,
    lists: Sequence[str | os.PathLike[str]] = (), dataset: str | os.PathLike[str] | None = None,
    dataset_format: str = "auto", split: str | None = None, image_root: str | None = None,
    model: str = DEFAULT_MODEL, weights: str | None = "DEFAULT", head: str | None = None,
    top_k: int | None = None, classes: str | None = None, min_prob: float | None = None,
    threshold: float | None = None, calibrate: str | os.PathLike[str] | None = None,
    normalization: str | None = None, multi: bool = False, method: str = "cam",
    layer: str | Sequence[str] | None = None, smooth: int | None = None,
    method_batch_size: int | None = None, fit: str = "stretch",
    formats: str | Sequence[str] = "jsonl", batch_size: int = DEFAULT_BATCH_SIZE,
    device: str = "auto", save_maps: bool = False, overlays: bool = True,
    overlay_size: int = 2048, overlay_panels: int = 8, overwrite: bool = False,
    progress: ProgressFactory | None = None, tta: str | None = None,
    localizer: str | os.PathLike[str] | None = None, runtime: str = "torch",
) -> ExplainJobResult | None:
    """Explain ``paths`` (files, folders, globs), ``lists`` (list files; ``"-"``: standard
    input) or a ``dataset`` folder into the run folder ``out``, as ``camloc explain`` does (the
    options are its flags; ``None``: not given). ``layer``: names, or one string of
    comma-separated names. ``classes``: ids or names, comma-separated, or ``"gt"`` (each
    dataset image's label). ``tta``: a ``--tta`` text; ``localizer``: a folder from ``camloc
    localizer fit`` (its TTA, and its threshold on min-max maps, apply unless ``tta`` /
    ``threshold`` / ``calibrate`` / ``normalization`` are given). ``runtime``: ``"torch"``,
    ``"onnx"`` or an exported ``.onnx`` file (exact CAM on onnxruntime; no TTA or localizer).
    Under ``torchrun`` every rank calls this; rank 0 returns the
    result, the other ranks ``None``.

    Raises:
        ConfigError: a bad option or combination of options, a bad ``--calibrate`` report, an
            ``out`` that cannot be used (see :func:`camloc.explain.run.run_explain`).
        ModelError, WeightsError, DatasetError: the model or dataset cannot be loaded.
    """
    is_gt = classes is not None and classes.strip().lower() == "gt"
    _check_combinations(paths, lists, dataset, dataset_format, split, image_root, is_gt,
                        threshold, calibrate)
    cal = _read_calibration(calibrate, normalization)
    from camloc.cams.tta import parse_tta

    parse_tta(tta)  # a bad --tta is refused before the model loads
    loc = None
    if localizer is not None:
        from camloc.localizer.model import load_localizer

        loc = load_localizer(localizer)
    settings = _settings(top_k, threshold, cal, normalization, multi, method, layer, smooth,
                         method_batch_size, batch_size, save_maps, overwrite, overlays,
                         overlay_size, overlay_panels, min_prob, formats, is_gt)
    settings.runtime = runtime
    settings.localizer = loc
    settings.tta = tta if tta is not None else (loc.tta if loc is not None else None)
    if loc is not None and loc.threshold is not None and threshold is None and cal is None \
            and normalization in (None, "minmax"):
        settings.threshold, settings.normalization = loc.threshold, "minmax"
        settings.threshold_source = {"kind": "localizer", "path": loc.path}
    settings.check()  # what needs no model: refused before the model loads
    inputs = _inputs(paths, lists, dataset, dataset_format, split, image_root)
    from camloc.distributed import DistContext

    ctx = DistContext.from_env(device)
    try:
        cam_model = _load_model(model, weights, head, ctx.device)
        if loc is not None:
            loc.check_model(cam_model)
        if cal is not None:
            from camloc.evaluation.calibration import check_model

            check_model(str(calibrate), cal.source.get("model"), cam_model.spec.name)
        _fit_to_model(settings, cam_model, classes if not is_gt else None, top_k is None, fit)
        summary = _run(cam_model, inputs, out, settings, ctx, progress,
                       {"model": _as_given(model), "weights": _as_given(weights),
                        "head": _as_given(head)})
    finally:
        ctx.close()
    if not ctx.is_main:
        return None  # rank 0 reports for every rank
    return ExplainJobResult(summary, cam_model.spec.name, str(cam_model.device), ctx.world_size,
                            overlays)


def _check_combinations(paths: Sequence[Any], lists: Sequence[Any], dataset: Any,
                        dataset_format: str, split: str | None, image_root: str | None,
                        is_gt: bool, threshold: float | None, calibrate: Any) -> None:
    """The combinations of options that make no sense (each option's value is checked where it
    is used)."""
    if threshold is not None and calibrate is not None:
        raise ConfigError("--threshold and --calibrate both set the box threshold; give one")
    if dataset is None and (split or image_root or dataset_format != "auto"):
        raise ConfigError("--split, --image-root and --dataset-format describe a --dataset; "
                          "give --dataset DIR")
    if is_gt and dataset is None:
        raise ConfigError("--classes gt explains each image's ground-truth label, which only "
                          "a dataset has: use it with --dataset DIR")
    if not paths and not lists and dataset is None:
        raise ConfigError("Missing argument 'PATHS...': give image files, folders or globs, "
                          "--list FILE, or --dataset DIR")


def _read_calibration(calibrate: Any, normalization: str | None) -> ExplainCalibration | None:
    if calibrate is None:
        return None
    from camloc.evaluation.calibration import read_calibration

    cal = read_calibration(calibrate)
    if normalization is not None and normalization != cal.normalization:
        raise ConfigError(f"--normalization {normalization}: the --calibrate report's threshold "
                          f"was chosen on {cal.normalization}-normalised maps "
                          f"({cal.source.get('protocol')} protocol); leave --normalization out")
    return cal


def _layers(layer: str | Sequence[str] | None) -> str | list[str] | None:
    """``--layer`` values (repeated, or comma-separated) -> one name, a list, or None."""
    items = [layer] if isinstance(layer, str) else list(layer or [])
    names = [n.strip() for item in items for n in str(item).split(",")]
    if any(not n for n in names):
        raise ConfigError(f"--layer {','.join(map(str, items))!r}: an empty layer name")
    return (names[0] if len(names) == 1 else names) or None


def _settings(top_k: int | None, threshold: float | None, cal: ExplainCalibration | None,
              normalization: str | None, multi: bool, method: str, layer: Any,
              smooth: int | None, method_batch_size: int | None, batch_size: int,
              save_maps: bool, overwrite: bool, overlays: bool, overlay_size: int,
              overlay_panels: int, min_prob: float | None, formats: str | Sequence[str],
              is_gt: bool) -> ExplainSettings:
    """The options as :class:`ExplainSettings` (the model's share is filled in later)."""
    from camloc.explain.run import ExplainSettings

    options = {"smooth": smooth, "batch_size": method_batch_size}
    if cal is not None:
        tau, norm, source = cal.threshold, cal.normalization, cal.source
    else:
        tau = DEFAULT_THRESHOLD if threshold is None else threshold
        norm = normalization or "max"
        source = {"kind": "default" if threshold is None else "given"}
    return ExplainSettings(
        top_k=DEFAULT_TOP_K if top_k is None else top_k, threshold=tau, normalization=norm,
        multi=multi, method=method, layer=_layers(layer),
        method_options={k: v for k, v in options.items() if v is not None},
        batch_size=batch_size, save_maps=save_maps, overwrite=overwrite, overlays=overlays,
        overlay_size=overlay_size, max_panels=overlay_panels, min_prob=min_prob,
        formats=formats.split(",") if isinstance(formats, str) else list(formats),
        classes="gt" if is_gt else None, threshold_source=source)


def _inputs(paths: Sequence[Any], lists: Sequence[Any], dataset: Any, dataset_format: str,
            split: str | None, image_root: str | None) -> ExplainInputs:
    from camloc.explain.inputs import ExplainInputs

    ds = None
    if dataset is not None:
        from camloc.data.datasets import open_dataset

        ds = open_dataset(dataset, format=dataset_format, split=split, image_root=image_root)
    return ExplainInputs(paths=list(paths), lists=list(lists), dataset=ds)


def _load_model(model: str, weights: str | None, head: str | None, device: Any) -> Any:
    from camloc.models import load_model

    w = None if weights is None or str(weights).lower() == "none" else weights
    return load_model(model, weights=w, device=device, head=head)


def _fit_to_model(settings: ExplainSettings, model: Any, classes: str | None,
                  default_top_k: bool, fit: str) -> None:
    """The settings' share that depends on the model: ``--fit``, ``--classes`` by name or id,
    and the default ``top_k`` of a model with fewer classes than it."""
    from camloc.data.classes import parse_classes

    settings.preprocess = model.spec.preprocess.with_(fit=fit)
    if classes is not None:
        settings.classes = parse_classes(classes, model.spec.class_names)
    if default_top_k:  # the default asks for at most the classes the model has
        settings.top_k = min(settings.top_k, model.spec.num_classes)


def _run(model: Any, inputs: ExplainInputs, out: Any, settings: ExplainSettings, ctx: Any,
         progress: ProgressFactory | None, source: dict[str, Any]) -> RunSummary:
    """:func:`run_explain` on this rank, with a progress display on rank 0."""
    from camloc.explain.run import run_explain

    title = "explain" + (f" (rank 0 of {ctx.world_size})" if ctx.distributed else "")
    shown = progress(title) if progress is not None and ctx.is_main else None
    with shown if shown is not None else contextlib.nullcontext() as update:
        return run_explain(model, inputs, Path(out), settings, progress=update, source=source,
                           ctx=ctx)


def _as_given(value: str | None) -> str | None:
    """A model/weights/head argument as stored in the manifest: existing paths made absolute
    (so a resume from another working directory compares equal), names kept."""
    if value is None:
        return None
    p = Path(value).expanduser()
    return str(p.resolve()) if p.exists() else value
