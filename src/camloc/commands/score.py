"""``camloc score``: box and mask metrics for saved maps or a box file, no model needed."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("score")
    def score_cmd(
        dataset: str = typer.Argument(..., help="Dataset folder with boxes or masks."),
        maps: Path = typer.Option(None, "--maps", help="Folder of <image_id>.npy score maps."),
        boxes: Path = typer.Option(None, "--boxes", help="A box file instead of maps: COCO "
                                                         "instances.json or explain's results.jsonl."),
        cam_curve_interval: float = typer.Option(0.01, help="Threshold step (0.01 or 0.001)."),
        fixed_threshold: float = typer.Option(0.2),
        normalize: bool = typer.Option(False, help="Min-max normalise maps before scoring."),
        split: str = typer.Option(None),
        fmt: str = typer.Option("auto", "--format"),
        image_root: str = typer.Option(None, "--image-root", help="Folder the metadata's image "
                                                                  "paths are relative to."),
        synsets: str = typer.Option(None, "--synsets", help="LOC_synset_mapping.txt, or "
                                                            "'imagenet'."),
        num_classes: int = typer.Option(None, "--num-classes", help="The dataset's class count."),
        out: Path = typer.Option(Path("camloc-score"), "--out", "-o"),
        workers: int = typer.Option(0, help="Processes scoring shards (0: every CPU, up to 16)."),
        calibrate: str = typer.Option(None, help="Threshold chosen on another split: a number, or "
                                                 "that split's report.json (its best V1 threshold)."),
    ) -> None:
        """Score saved maps (from any tool), or a box file, against a dataset's boxes or masks.

        With --maps: MaxBoxAcc V1/V2, GT-known Loc and PxAP into report.json and report.html.
        With --boxes: the share of images whose box of the ground-truth class has IoU >= 0.3 /
        0.5 / 0.7, into report.json. Exit code 1 if some maps were missing or bad.
        """
        from camloc.commands.common import console, print_failures, progress_bar
        from camloc.errors import ConfigError
        from camloc.evaluation.calibration import calibration_threshold
        from camloc.evaluation.run import open_eval_dataset
        from camloc.evaluation.score import (build_score_report, check_settings, fill_sizes,
                                             score_maps)

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
            for key in ("top", "any"):
                rates = " / ".join(f"{v:.2f}" for v in report[key].values())
                console.print(f"  box of the GT class, {key} (IoU {'/'.join(report[key])}): "
                              f"[bold]{rates}[/bold]")
            c = report["counts"]
            console.print(f"  images scored / matched / missing: {c['scored']} / {c['matched']} / "
                          f"{c['missing']}")
            console.print(f"report: {json_path}")
            return
        tau = calibration_threshold(calibrate)
        check_settings(cam_curve_interval, fixed_threshold, workers, calibrate=tau)
        ds = open_eval_dataset(dataset, fmt=fmt, split=split, image_root=image_root,
                               synsets=synsets, num_classes=num_classes)
        filled = fill_sizes(ds)
        if filled.opened:
            console.print(f"  image sizes: read {len(filled.opened)} image header(s) (the "
                          f"metadata gives no size), e.g. {filled.opened[0]}")
        from camloc.report import figure_rows, write_report

        with progress_bar("score") as upd:
            state = score_maps(maps, ds, cam_curve_interval, fixed_threshold, normalize, progress=upd,
                               workers=workers)
        report = build_score_report(state, ds, maps, cam_curve_interval, fixed_threshold, normalize,
                                    tau, sizes=filled)
        ious = [r["iou"] for r in state.localization.per_image] if state.localization else []
        from camloc.io import out_lock

        with out_lock(out):  # a second run writing into --out meanwhile is refused
            json_path, html_path = write_report(out, report, ious)
        for name, value in figure_rows(report):
            console.print(f"  {name}: [bold]{value}[/bold]")
        print_failures(state.failed, name_key="image_id", where="report.json")
        console.print(f"report: {json_path}  {html_path}")
        if state.failed:
            raise typer.Exit(1)
