"""``camloc compare``: every map method on one dataset, localization and faithfulness side by side.
Parse -> call :func:`camloc.compare.job.run_compare_job` -> print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from camloc.defaults import DEFAULT_MODEL, DEFAULT_THRESHOLD


_Dataset = Annotated[str, typer.Argument(help="Dataset folder (wsol metadata, CUB, ILSVRC, "
                                               "CSV/JSON).")]
_Methods = Annotated[str, typer.Option("--methods", help="Comma-separated methods, or 'all' (see "
                                                         "`camloc methods`).")]
_Model = Annotated[str, typer.Option("--model", "-m", help="Model name or folder.")]
_Weights = Annotated[str, typer.Option(help="DEFAULT, a weights file, or 'none'.")]
_Layer = Annotated[str, typer.Option(help="Target layer for every method (default: the model's).")]
_Split = Annotated[str, typer.Option(help="Split to score (e.g. test).")]
_Format = Annotated[str, typer.Option("--format", help="Dataset format (auto-detected).")]
_Calibrate = Annotated[str, typer.Option(help="Thresholds chosen elsewhere: a number, an evaluate "
                                              "report.json or a compare.json.")]
_CalibrationSplit = Annotated[str, typer.Option(help="Choose each method's threshold on this "
                                                     "split, or on a held-out share ('20%').")]
_Tta = Annotated[str, typer.Option(help="Test-time augmentation: flip and/or scales=224:288.")]
_Limit = Annotated[int, typer.Option(help="Score only the first N images.")]
_FaithLimit = Annotated[int, typer.Option(help="Faithfulness on the first N scored images only.")]
_NoFaithfulness = Annotated[bool, typer.Option("--no-faithfulness", help="Localization only.")]
_Steps = Annotated[int, typer.Option(help="Deletion / insertion curve steps.")]
_Road = Annotated[str, typer.Option(help="ROAD percentages of pixels removed.")]
_FixedThreshold = Annotated[float, typer.Option(help="Loc threshold when nothing is calibrated.")]
_BatchSize = Annotated[int, typer.Option(help="Images per batch.")]
_Workers = Annotated[int, typer.Option(help="DataLoader workers decoding images (>= 0).")]
_FaithBatchSize = Annotated[int, typer.Option(help="Perturbed inputs per forward.")]
_Gallery = Annotated[int, typer.Option(help="Rows of the disagreement gallery.")]
_Device = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.")]
_Localizer = Annotated[str, typer.Option(help="A `camloc localizer fit` folder: its foreground "
                                              "combined into every method's maps (and its TTA "
                                              "unless --tta).")]
_Out = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]


def register(app: typer.Typer) -> None:
    """Add the ``compare`` command to ``app``."""

    @app.command("compare")
    def compare_cmd(
        dataset: _Dataset, methods: _Methods = "all", model: _Model = DEFAULT_MODEL,
        weights: _Weights = "DEFAULT", layer: _Layer = None, split: _Split = None,
        fmt: _Format = "auto", calibrate: _Calibrate = None,
        calibration_split: _CalibrationSplit = None, tta: _Tta = None, limit: _Limit = None,
        faith_limit: _FaithLimit = None, no_faithfulness: _NoFaithfulness = False,
        steps: _Steps = 20, road: _Road = "20,40,60,80",
        fixed_threshold: _FixedThreshold = DEFAULT_THRESHOLD, batch_size: _BatchSize = 16,
        workers: _Workers = 2, faith_batch_size: _FaithBatchSize = 64, gallery: _Gallery = 6,
        device: _Device = "auto", out: _Out = Path("camloc-compare"),
        localizer: _Localizer = None,
    ) -> None:
        """Compare map methods on a dataset: MaxBoxAccV2, calibrated Top-1 / GT-known Loc, PxAP,
        Average Drop / Increase, deletion / insertion AUC, ROAD, seconds per image.

        Writes compare.json, compare.md (the table) and compare.html (table + gallery) to --out.
        Exit code 1 if some images failed.
        """
        from camloc.commands.common import console, print_failures, progress_bar
        from camloc.compare.job import run_compare_job

        report = run_compare_job(
            dataset, out, methods=methods, model=model, weights=weights, layer=layer,
            split=split, fmt=fmt, calibrate=calibrate, calibration_split=calibration_split,
            tta=tta, limit=limit, faith_limit=faith_limit, faithfulness=not no_faithfulness,
            steps=steps, road=road, fixed_threshold=fixed_threshold, batch_size=batch_size,
            workers=workers, faith_batch_size=faith_batch_size, gallery=gallery, device=device,
            progress=progress_bar, localizer=localizer)
        if report is None:  # a torchrun rank other than 0: rank 0 reports
            return
        from camloc.compare.report import markdown_table

        typer.echo(markdown_table(report))
        failed = report.get("failed", [])
        print_failures(failed, where="compare.json")
        console.print(f"report: {out / 'compare.json'}  {out / 'compare.md'}  "
                      f"{out / 'compare.html'}")
        if failed:
            raise typer.Exit(1)
