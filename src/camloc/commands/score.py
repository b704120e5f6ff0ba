"""``camloc score``: box and mask metrics for saved maps, no model needed."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("score")
    def score_cmd(
        dataset: str = typer.Argument(..., help="Dataset folder with boxes or masks."),
        maps: Path = typer.Option(..., "--maps", help="Folder of <image_id>.npy score maps."),
        cam_curve_interval: float = typer.Option(0.01, help="Threshold step (0.01 or 0.001)."),
        fixed_threshold: float = typer.Option(0.2),
        normalize: bool = typer.Option(False, help="Min-max normalise maps before scoring."),
        split: str = typer.Option(None),
        fmt: str = typer.Option("auto", "--format"),
        out: Path = typer.Option(Path("camloc-score"), "--out", "-o"),
        workers: int = typer.Option(0, help="Processes scoring shards (0: every CPU, up to 16)."),
        calibrate: str = typer.Option(None, help="Threshold chosen on another split: a number, or "
                                                 "that split's report.json (its best V1 threshold)."),
    ) -> None:
        """Score saved maps (from any tool) against a dataset's boxes or masks; no model.

        MaxBoxAcc V1/V2, GT-known Loc and PxAP into report.json and report.html. Exit code 1 if
        some maps were missing or bad.
        """
        from camloc.commands.common import console, print_failures, progress_bar
        from camloc.data.datasets import open_dataset
        from camloc.evaluate import calibration_threshold
        from camloc.report import figure_rows, write_report
        from camloc.score import build_score_report, check_settings, score_maps

        tau = calibration_threshold(calibrate)
        check_settings(cam_curve_interval, fixed_threshold, workers, calibrate=tau)
        ds = open_dataset(dataset, format=fmt, split=split)
        with progress_bar("score") as upd:
            state = score_maps(maps, ds, cam_curve_interval, fixed_threshold, normalize, progress=upd,
                               workers=workers)
        report = build_score_report(state, ds, maps, cam_curve_interval, fixed_threshold, normalize,
                                    tau)
        ious = [r["iou"] for r in state.localization.per_image] if state.localization else []
        json_path, html_path = write_report(out, report, ious)
        for name, value in figure_rows(report):
            console.print(f"  {name}: [bold]{value}[/bold]")
        print_failures(state.failed, name_key="image_id", where="report.json")
        console.print(f"report: {json_path}  {html_path}")
        if state.failed:
            raise typer.Exit(1)
