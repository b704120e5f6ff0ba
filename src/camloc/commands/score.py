"""``camloc score``: box and mask metrics for saved maps or a box file, no model needed.
Parse -> call :func:`camloc.evaluation.score_run.run_score_job` -> print."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from camloc.commands.options import (DEFAULT_THRESHOLD, Calibrate, ImageRoot, NumClasses, Out)

if TYPE_CHECKING:  # pragma: no cover
    from camloc.evaluation.score_run import ScoreJobResult

_Dataset = Annotated[str, typer.Argument(help="Dataset folder with boxes or masks.")]
_Maps = Annotated[Path, typer.Option("--maps", help="Folder of <image_id>.npy score maps.")]
_Boxes = Annotated[Path, typer.Option("--boxes", help=(
    "A box file instead of maps: COCO instances.json or explain's results.jsonl."))]
_Interval = Annotated[float, typer.Option(help="Threshold step (0.01 or 0.001).")]
_FixedThreshold = Annotated[float, typer.Option()]
_Normalize = Annotated[bool, typer.Option(help="Min-max normalise maps before scoring.")]
_Split = Annotated[str, typer.Option()]
_Format = Annotated[str, typer.Option("--format")]
_Synsets = Annotated[str, typer.Option("--synsets", help=(
    "LOC_synset_mapping.txt, or 'imagenet'."))]
_Workers = Annotated[int, typer.Option(help="Processes scoring shards (0: every CPU, up to 16).")]


def register(app: typer.Typer) -> None:
    @app.command("score")
    def score_cmd(
        dataset: _Dataset, maps: _Maps = None, boxes: _Boxes = None,
        cam_curve_interval: _Interval = 0.01, fixed_threshold: _FixedThreshold = DEFAULT_THRESHOLD,
        normalize: _Normalize = False, split: _Split = None, fmt: _Format = "auto",
        image_root: ImageRoot = None, synsets: _Synsets = None, num_classes: NumClasses = None,
        out: Out = Path("camloc-score"), workers: _Workers = 0, calibrate: Calibrate = None,
    ) -> None:
        """Score saved maps (from any tool), or a box file, against a dataset's boxes or masks.

        With --maps: MaxBoxAcc V1/V2, GT-known Loc and PxAP into report.json and report.html.
        With --boxes: the share of images whose box of the ground-truth class has IoU >= 0.3 /
        0.5 / 0.7, into report.json. Exit code 1 if some maps were missing or bad.
        """
        from camloc.commands.common import console, progress_bar
        from camloc.evaluation.score_run import run_score_job

        result = run_score_job(
            dataset, out, maps=maps, boxes=boxes, interval=cam_curve_interval,
            fixed_threshold=fixed_threshold, normalize=normalize, split=split, fmt=fmt,
            image_root=image_root, synsets=synsets, num_classes=num_classes, workers=workers,
            calibrate=calibrate, progress=progress_bar, log=console.print)
        _report(result)
        if result.exit_code:
            raise typer.Exit(result.exit_code)


def _report(result: ScoreJobResult) -> None:
    """The figures and the report's paths on stderr."""
    from camloc.commands.common import console, print_failures

    report = result.report
    if result.kind == "boxes":
        for key in ("top", "any"):
            rates = " / ".join(f"{v:.2f}" for v in report[key].values())
            console.print(f"  box of the GT class, {key} (IoU {'/'.join(report[key])}): "
                          f"[bold]{rates}[/bold]")
        c = report["counts"]
        console.print(f"  images scored / matched / missing: {c['scored']} / {c['matched']} / "
                      f"{c['missing']}")
        console.print(f"report: {result.json_path}")
        return
    from camloc.report import figure_rows

    for name, value in figure_rows(report):
        console.print(f"  {name}: [bold]{value}[/bold]")
    print_failures(result.failed, name_key="image_id", where="report.json")
    console.print(f"report: {result.json_path}  {result.html_path}")
