"""The whole ``camloc score`` job from the user's options: :func:`run_score_job`.

Saved maps (``maps``) are scored with MaxBoxAcc V1/V2, GT-known Loc and PxAP into
``report.json`` and ``report.html``; a box file (``boxes``) with the IoU of its boxes into
``report.json``. Every option is checked before the dataset is read, and the dataset before
``out`` is created; ``out`` is locked while the report is written.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from camloc.defaults import DEFAULT_THRESHOLD
from camloc.errors import ConfigError

__all__ = ["ScoreJobResult", "run_score_job"]


@dataclass
class ScoreJobResult:
    """What a score job wrote: ``kind`` is ``"maps"`` or ``"boxes"``."""

    kind: str
    report: dict[str, Any]
    json_path: Path
    html_path: Path | None = None
    failed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """1 when some maps were missing or could not be scored, else 0."""
        return 1 if self.failed else 0


def run_score_job(dataset: str | os.PathLike[str], out: str | os.PathLike[str], *,
                  maps: str | os.PathLike[str] | None = None,
                  boxes: str | os.PathLike[str] | None = None, interval: float = 0.01,
                  fixed_threshold: float = DEFAULT_THRESHOLD, normalize: bool = False,
                  split: str | None = None, fmt: str = "auto", image_root: str | None = None,
                  synsets: str | None = None, num_classes: int | None = None, workers: int = 0,
                  calibrate: str | float | None = None,
                  progress: Callable[[str], AbstractContextManager[Any]] | None = None,
                  log: Callable[[str], None] | None = None) -> ScoreJobResult:
    """Score ``maps`` (a folder of ``<image_id>.npy``) or ``boxes`` (COCO instances.json or
    explain's results.jsonl) against ``dataset`` into ``out``, as ``camloc score`` does.
    ``progress(title)``: a context manager yielding ``update(done, total)``; ``log``: one-line
    notes (image sizes read from headers).

    Raises:
        ConfigError: neither or both of ``maps`` and ``boxes``, a bad option; DatasetError: a
            dataset that cannot be read.
    """
    from camloc.evaluation.run import open_eval_dataset

    if maps is None and boxes is None:
        raise ConfigError("Missing option '--maps' (or '--boxes'): give a folder of score "
                          "maps, or a box file (COCO instances.json or results.jsonl)")
    if maps is not None and boxes is not None:
        raise ConfigError("--maps and --boxes: give one of them (maps are scored with "
                          "MaxBoxAcc, a box file with the IoU of its boxes)")
    if boxes is not None:
        from camloc.evaluation.boxes import write_box_report

        ds = open_eval_dataset(dataset, fmt=fmt, split=split, image_root=image_root,
                               synsets=synsets, num_classes=num_classes)
        report, json_path = write_box_report(boxes, ds, out)
        return ScoreJobResult("boxes", report, json_path)
    from camloc.evaluation.calibration import calibration_threshold
    from camloc.evaluation.score import check_settings

    tau = calibration_threshold(calibrate)
    check_settings(interval, fixed_threshold, workers, calibrate=tau)
    ds = open_eval_dataset(dataset, fmt=fmt, split=split, image_root=image_root,
                           synsets=synsets, num_classes=num_classes)
    return _score_maps(Path(maps), ds, Path(out), interval, fixed_threshold, normalize, workers,
                       tau, progress, log)


def _score_maps(maps: Path, ds: Any, out: Path, interval: float, fixed_threshold: float,
                normalize: bool, workers: int, tau: float | None,
                progress: Callable[[str], AbstractContextManager[Any]] | None,
                log: Callable[[str], None] | None) -> ScoreJobResult:
    from camloc.evaluation.score import build_score_report, fill_sizes, score_maps
    from camloc.io import out_lock
    from camloc.report import write_report

    filled = fill_sizes(ds)
    if filled.opened and log is not None:
        log(f"  image sizes: read {len(filled.opened)} image header(s) (the metadata gives no "
            f"size), e.g. {filled.opened[0]}")
    bar = progress("score") if progress is not None else contextlib.nullcontext(None)
    with bar as update:
        state = score_maps(maps, ds, interval, fixed_threshold, normalize, progress=update,
                           workers=workers)
    report = build_score_report(state, ds, maps, interval, fixed_threshold, normalize, tau,
                                sizes=filled)
    ious = [r["iou"] for r in state.localization.per_image] if state.localization else []
    with out_lock(out):  # a second run writing into --out meanwhile is refused
        json_path, html_path = write_report(out, report, ious)
    return ScoreJobResult("maps", report, json_path, html_path, list(state.failed))
