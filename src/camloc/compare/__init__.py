"""``camloc compare``: which map method to trust, on this model and this data.

:func:`compare` runs several map methods over one labelled dataset in one pass and returns, per
method, the WSOL localization figures (MaxBoxAccV2; Top-1 and GT-known Loc at a threshold
calibrated on other data, next to the optimistic best-on-test figure; PxAP where masks exist), the
faithfulness figures (Average Drop / Increase in Confidence, deletion / insertion AUC, ROAD MoRF /
LeRF) and the seconds per image. With ``out`` it also writes ``compare.json``, ``compare.md`` (the
table) and ``compare.html`` (the table and a gallery of the images where the methods disagree
most, PNGs in ``gallery/``). Modules: ``run`` (the pass), ``tta`` (flip / multi-scale maps),
``calibration`` (the held-out share of ``--calibration-split``; thresholds read from a number
or a report: :mod:`camloc.evaluation.calibration`), ``report`` (the outputs), ``job`` (the
whole ``camloc compare`` job from the user's options: :func:`~camloc.compare.job.run_compare_job`).

>>> import camloc                                                             # doctest: +SKIP
>>> from camloc.data import open_dataset                                      # doctest: +SKIP
>>> rep = compare(camloc.load_model(), open_dataset("imagenet-val-dev"), "cam,gradcam",
...               limit=32, out="cmp")                                        # doctest: +SKIP
>>> rep["methods"]["gradcam"]["localization"]["maxboxacc_v2"]["value"]       # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from camloc.compare.calibration import holdout_indices, parse_holdout
from camloc.compare.options import resolve_methods
from camloc.cams.tta import TTA, parse_tta
from camloc.defaults import DEFAULT_THRESHOLD
from camloc.evaluation.calibration import Calibration, load_calibration

__all__ = ["compare", "split_for_calibration", "calibrate", "FaithfulnessSettings", "TTA",
           "parse_tta", "tta_maps", "Calibration", "load_calibration", "resolve_methods",
           "build_methods", "check_inputs", "compare_state", "CompareState"]

_LAZY = {"FaithfulnessSettings": "run", "CompareState": "run", "build_methods": "run",
         "compare_state": "run", "scoremap_of": "run", "tta_maps": "tta"}  # camloc.cams.tta


def __getattr__(name: str) -> Any:  # torch-heavy names load on first use
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'camloc.compare' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"camloc.compare.{module}"), name)
    globals()[name] = value
    return value


def _limit(dataset: Any, limit: int | None) -> Any:
    if limit is None:
        return dataset
    from camloc.errors import ConfigError

    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"limit={limit!r}: expected a positive number of images")
    return dataset.subset(range(min(limit, len(dataset.samples))))


def split_for_calibration(dataset: Any, calibration_split: str, **open_kw: Any) -> tuple[Any, Any]:
    """``(calibration data, scored data)`` for ``--calibration-split``: ``"P%"`` holds out an
    evenly spread P% of ``dataset`` (:func:`~camloc.compare.calibration.holdout_indices`) and
    scores the rest; any other value is a split name of the same dataset folder."""
    pct = parse_holdout(calibration_split)
    if pct is not None:
        held = holdout_indices(len(dataset.samples), pct)
        keep = sorted(set(range(len(dataset.samples))) - set(held))
        from camloc.errors import ConfigError

        if not held or not keep:
            raise ConfigError(f"--calibration-split {calibration_split}: leaves "
                              f"{len(held)} calibration and {len(keep)} scored images")
        return dataset.subset(held), dataset.subset(keep)
    from camloc.data.datasets import open_dataset

    return (open_dataset(dataset.root, format=dataset.format, split=calibration_split, **open_kw),
            dataset)


def _sharded(dist: Any, dataset: Any, run: Callable[[Any], Any]) -> Any:
    """``run(dataset)`` on this rank's shard; the merged state on the main rank, None elsewhere."""
    if dist is None or not dist.distributed:
        return run(dataset)
    states = dist.gather_objects(run(dataset.shard(dist.rank, dist.world_size)))
    if not dist.is_main:
        return None
    merged = states[0]
    for other in states[1:]:
        merged.merge(other)
    return merged


def calibrate(model: Any, dataset: Any, methods: dict[str, Any], *, tta: TTA | None = None,
              interval: float = 0.01, batch_size: int = 16, workers: int = 0, label: str = "",
              progress: Callable[[int, int], None] | None = None, dist: Any = None
              ) -> Calibration:
    """Each method's best largest-contour threshold (MaxBoxAcc V1's, i.e. GT-known Loc's) on
    ``dataset`` (a localization-only pass; under torchrun every rank gets the thresholds)."""
    from camloc.compare.run import FaithfulnessSettings, compare_state
    from camloc.errors import ConfigError

    st = _sharded(dist, dataset, lambda ds: compare_state(
        model, ds, methods, tta=tta, interval=interval, batch_size=batch_size, workers=workers,
        faithfulness=FaithfulnessSettings(enabled=False), progress=progress))
    if st is None:  # a non-main rank: the main rank's thresholds
        return dist.broadcast_object(None)
    taus, figures = {}, {}
    for name, ms in st.methods.items():
        if ms.localization is None or not ms.localization.count:
            raise ConfigError(f"calibration data {label or dataset.name!r} has no boxes to choose "
                              "a threshold with")
        loc = ms.localization.compute()
        taus[name] = loc["maxboxacc_v1"]["threshold"]
        figures[name] = {"gt_known_loc_best": loc["maxboxacc_v1"]["value"],
                         "maxboxacc_v2": loc["maxboxacc_v2"]["value"]}
    cal = Calibration(taus, f"calibration pass on {label or dataset.name} "
                            f"({st.images} images; each method's best V1 threshold there)",
                      split=label or None)
    cal.figures = figures
    return cal if dist is None else dist.broadcast_object(cal)


def _localizer(model: Any, localizer: Any) -> Any:
    """``localizer`` (a folder or a Localizer) loaded and checked against ``model``; None: none."""
    if localizer is None:
        return None
    from camloc.localizer.model import Localizer, load_localizer

    loc = localizer if isinstance(localizer, Localizer) else load_localizer(localizer)
    loc.check_model(model)
    return loc


def check_inputs(model: Any, dataset: Any, methods: str | Sequence[str], layer: Any = None,
                 method_batch_size: int | None = None, check_dataset: bool = True) -> dict[str, Any]:
    """What :func:`compare` refuses before any work, in its order: unknown methods, methods the
    model cannot run (``cam`` without a GAP -> linear head; left out instead under ``"all"``),
    then, with ``check_dataset``, a dataset of other classes or with wrong metadata sizes
    (:func:`camloc.evaluation.evaluate.check_fits_model`). Returns the constructed methods
    (name -> method). The CLI calls it before it creates ``--out``."""
    from camloc.compare.run import build_methods

    names = resolve_methods(methods)
    asked_all = any(str(m).strip().lower() == "all" for m in
                    (methods.split(",") if isinstance(methods, str) else methods))
    built = build_methods(model, names, layer, method_batch_size, skip_headless=asked_all)
    if check_dataset:  # wrong classes or sizes would give silently wrong figures
        from camloc.evaluation.evaluate import check_fits_model

        check_fits_model(model, dataset)
    return built


def compare(model: Any, dataset: Any, methods: str | Sequence[str] = "all", *, layer: Any = None,
            tta: TTA | str | None = None,
            calibrate_with: str | float | Calibration | None = None,
            calibration_split: str | None = None, limit: int | None = None,
            faithfulness: Any = None,
            fixed_threshold: float = DEFAULT_THRESHOLD, interval: float = 0.01, batch_size: int = 16,
            workers: int = 0, method_batch_size: int | None = None, gallery: int = 6,
            out: str | os.PathLike[str] | None = None,
            progress: Callable[[str, int, int], None] | None = None,
            dist: Any = None, check_dataset: bool = True,
            localizer: Any = None) -> dict[str, Any] | None:
    """Compare map ``methods`` on ``dataset`` with ``model``; returns the compare.json dict.

    Under torchrun pass ``dist`` (a :class:`camloc.distributed.DistContext`): every rank scores
    its shard, the states are merged exactly on rank 0, which writes the outputs and returns the
    report; the other ranks return None.

    Args:
        model: a camloc ``CamModel`` (``camloc.load_model``).
        dataset: a labelled camloc ``Dataset`` (``camloc.data.open_dataset``) with boxes
            (localization) and/or used for faithfulness only.
        methods: names (``"cam,gradcam"``, a list, or ``"all"``).
        layer: target layer for every method (default: the model's).
        tta: a :class:`TTA` or its ``--tta`` text (``"flip,scales=224:288"``).
        calibrate_with: a threshold, an ``evaluate`` report.json or a ``compare.json``
            (:func:`~camloc.evaluation.calibration.load_calibration`), or what that read.
        calibration_split: a split name of the dataset's folder, or ``"P%"`` held out of
            ``dataset`` (not scored); each method's best threshold there is applied here.
        limit: score only the first ``limit`` images (after the hold-out).
        faithfulness: what faithfulness to measure (:class:`FaithfulnessSettings`; None: its
            defaults).
        fixed_threshold: the Loc threshold when there is no calibration.
        batch_size: images per batch; ``workers``: DataLoader processes decoding images
            (0: in this process); ``method_batch_size``: rows per forward of Score-CAM /
            Ablation-CAM's perturbed inputs.
        gallery: rows of the disagreement gallery (with ``out``).
        out: folder for compare.json / compare.md / compare.html / gallery PNGs (None: none).
        progress: ``progress(stage, done, total)``.
        check_dataset: first refuse a dataset whose class ids do not mean the model's classes,
            or whose metadata sizes disagree with the image headers (as ``camloc evaluate``
            does); with ``False``, such an image is a failed image, not scored.
        localizer: a localizer folder or :class:`~camloc.localizer.Localizer` (checked against
            ``model``): its foreground is combined into every method's maps, and its recommended
            TTA applies unless ``tta`` is given; recorded in the report's ``settings.localizer``.

    Raises:
        DatasetError: the dataset's classes do not match the model's (count, names or synsets).
        ConfigError: unknown methods (listing the valid ones), ``cam`` on a model without a GAP
            head (listing the methods that work), bad TTA text, both calibration sources.
    """
    from camloc.compare.run import FaithfulnessSettings, compare_state, scoremap_of
    from camloc.errors import ConfigError

    if faithfulness is None:
        faithfulness = FaithfulnessSettings()
    names = resolve_methods(methods)
    tta_given = tta is not None  # "none" too: it overrides a localizer's recommended TTA
    if isinstance(tta, str):
        tta = parse_tta(tta)
    if calibrate_with is not None and calibration_split is not None:
        raise ConfigError("give either --calibrate or --calibration-split, not both")
    built = check_inputs(model, dataset, methods, layer, method_batch_size, False)
    loc = _localizer(model, localizer)
    if loc is not None:
        from camloc.localizer.model import with_localizer

        built = {n: with_localizer(m, loc) for n, m in built.items()}
        if not tta_given:
            tta = parse_tta(loc.tta)
    if check_dataset:  # refused, or numbered as the model's classes (WordNet ids)
        from camloc.evaluation.evaluate import check_fits_model

        dataset = check_fits_model(model, dataset)
    skipped = [n for n in names if n not in built]
    names = list(built)
    cal = calibrate_with if isinstance(calibrate_with, Calibration) or calibrate_with is None \
        else load_calibration(calibrate_with, names)
    scored = dataset
    cal_info: dict[str, Any] | None = cal.to_dict() if cal is not None else None

    def stage(name: str) -> Callable[[int, int], None] | None:
        return None if progress is None else (lambda d, t: progress(name, d, t))

    if calibration_split is not None:
        cal_ds, scored = split_for_calibration(dataset, calibration_split)
        cal_ds = _limit(cal_ds, limit)
        cal = calibrate(model, cal_ds, built, tta=tta, interval=interval, batch_size=batch_size,
                        workers=workers, label=calibration_split, progress=stage("calibrate"), dist=dist)
        cal_info = cal.to_dict()
        cal_info["images"] = len(cal_ds.samples)
        cal_info["figures_there"] = cal.figures
    scored = _limit(scored, limit)
    faith_ids = None
    if faithfulness.enabled and faithfulness.limit is not None:
        faith_ids = {s.image_id for s in scored.samples[:faithfulness.limit]}
    state = _sharded(dist, scored, lambda ds: compare_state(
        model, ds, built, tta=tta, calibration=cal, fixed_threshold=fixed_threshold,
        interval=interval, batch_size=batch_size, workers=workers, faithfulness=faithfulness,
        faith_ids=faith_ids, progress=stage("compare")))
    if state is None:
        return None
    settings = {"methods": names, "skipped_methods": skipped,
                "layer": layer if isinstance(layer, (str, type(None))) else str(layer),
                "tta": tta.describe() if tta is not None else "none", "limit": limit,
                "fixed_threshold": fixed_threshold, "cam_curve_interval": interval,
                "batch_size": batch_size, "workers": workers, "faithfulness": faithfulness.to_dict(),
                "calibration_split": calibration_split,
                "world_size": dist.world_size if dist is not None else 1}
    if loc is not None:
        settings["localizer"] = loc.settings()
    from camloc.compare.report import build_compare_report, render_cells, write_outputs

    report = build_compare_report(state, model, scored, settings, cal_info, gallery)
    if out is not None:
        folder = Path(out)
        cells = render_cells(report, scored,
                             lambda s, m: scoremap_of(model, built[m], s, tta), folder)
        write_outputs(folder, report, cells)
    return report
