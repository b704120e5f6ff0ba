"""``camloc evaluate``: WSOL metrics of a model on a dataset; also under ``torchrun``."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate_cmd(
        dataset: str = typer.Argument(..., help="Dataset folder (wsol metadata, CUB, ILSVRC, CSV/JSON)."),
        model: str = typer.Option("efficientnet_lite0", "--model", "-m", help="Model name or folder."),
        weights: str = typer.Option("DEFAULT", help="DEFAULT, a weights file, or 'none'."),
        head: str = typer.Option(None, help="A linear-probe head folder from `camloc probe`."),
        protocol: str = typer.Option("wsol", help="wsol (min-max maps) or paper (max-normalised)."),
        cam_curve_interval: float = typer.Option(0.01, help="Threshold step (0.01; 0.001 for fine)."),
        fixed_threshold: float = typer.Option(0.2, help="Threshold for the fixed-tau figures."),
        split: str = typer.Option(None, help="Split to read (e.g. test, val, train)."),
        fmt: str = typer.Option("auto", "--format", help="Dataset format (auto-detected)."),
        out: Path = typer.Option(Path("camloc-eval"), "--out", "-o", help="Output folder."),
        save_maps: bool = typer.Option(False, help="Write scoremaps/<image_id>.npy (wsolevaluation layout)."),
        batch_size: int = typer.Option(32),
        workers: int = typer.Option(2, help="DataLoader workers decoding images."),
        device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N."),
        gallery: int = typer.Option(6, help="Best and worst images shown in report.html."),
        calibrate: str = typer.Option(None, help="Threshold chosen on another split: a number, or "
                                                 "that split's report.json (its best V1 threshold)."),
    ) -> None:
        """Evaluate WSOL metrics of a model on a dataset; write report.json and report.html.

        Top-1/Top-5/GT-known Loc, MaxBoxAcc V1/V2 and PxAP. Exit code 1 if some images failed.
        """
        import torch

        from camloc.commands.common import console, print_failures, progress_bar
        from camloc.data.datasets import open_dataset
        from camloc.distributed import DistContext
        from camloc.evaluate import (EVAL_SIZE, build_report, calibration_threshold, evaluate_state,
                                     prepare_scoremap)
        from camloc.gallery import pick_extremes, render_gallery
        from camloc.models import load_model
        from camloc.report import figure_rows, write_report

        ds = open_dataset(dataset, format=fmt, split=split)
        tau = calibration_threshold(calibrate)
        ctx = DistContext.from_env(device)
        try:
            cam_model = load_model(model, weights=None if weights.lower() == "none" else weights,
                                   device=ctx.device, head=head)
            shard = ds.shard(ctx.rank, ctx.world_size) if ctx.distributed else ds
            maps_dir = out / "scoremaps" if save_maps else None
            args = (cam_model, shard, protocol, cam_curve_interval, fixed_threshold, batch_size,
                    workers, maps_dir)
            if ctx.is_main:
                title = f" (rank 0 of {ctx.world_size})" if ctx.distributed else ""
                with progress_bar(f"evaluate{title}") as upd:
                    state = evaluate_state(*args, upd)
            else:
                state = evaluate_state(*args)
            states = ctx.gather_objects(state)
        finally:
            ctx.close()
        if not ctx.is_main:
            return
        merged = states[0]
        for other in states[1:]:
            merged.merge(other)
        report = build_report(merged, cam_model, ds, protocol, cam_curve_interval,
                              extra={"world_size": ctx.world_size}, calibrate=tau)
        ious, picks = [], []
        if merged.localization is not None:
            recs = merged.localization.per_image
            ious = [r["iou"] for r in recs if r.get("iou") is not None]
            picks = pick_extremes(recs, gallery)

        def scoremap_for(sample):
            from camloc.cams import CAM
            from camloc.data.images import load_image, to_tensor

            pre = cam_model.spec.preprocess.with_(fit="stretch")
            x, _ = to_tensor(load_image(sample.path), pre)
            with torch.inference_mode():
                o = CAM(cam_model)(x[None], classes=[[sample.label]])
            return prepare_scoremap(o.maps[0, 0].cpu().numpy(), EVAL_SIZE, protocol)

        items = render_gallery(picks, ds, scoremap_for, EVAL_SIZE)
        json_path, html_path = write_report(out, report, ious, items)
        for name, value in figure_rows(report):
            console.print(f"  {name}: [bold]{value}[/bold]")
        print_failures(merged.failed, where="report.json")
        console.print(f"report: {json_path}  {html_path}")
        if merged.failed:
            raise typer.Exit(1)
