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
        method: str = typer.Option("cam", "--method", help="Map method (see `camloc methods`)."),
        layer: list[str] = typer.Option(None, "--layer", help="Target layer by name (repeat to "
                                                              "fuse several); default: the model's."),
        protocol: str = typer.Option("wsol", help="wsol (min-max maps) or paper (max-normalised)."),
        cam_curve_interval: float = typer.Option(0.01, help="Threshold step (0.01; 0.001 for fine)."),
        fixed_threshold: float = typer.Option(0.2, help="Threshold for the fixed-tau figures."),
        split: str = typer.Option(None, help="Split to read (e.g. test, val, train)."),
        fmt: str = typer.Option("auto", "--format", help="Dataset format (auto-detected)."),
        image_root: str = typer.Option(None, "--image-root", help="Folder the metadata's image "
                                                                  "paths are relative to."),
        synsets: str = typer.Option(None, "--synsets", help="LOC_synset_mapping.txt (class ids in "
                                                            "the model's synset order), or "
                                                            "'imagenet' (the 1000 ImageNet-1k "
                                                            "classes)."),
        num_classes: int = typer.Option(None, "--num-classes", help="The dataset's class count."),
        out: Path = typer.Option(Path("camloc-eval"), "--out", "-o", help="Output folder."),
        save_maps: bool = typer.Option(False, help="Write scoremaps/<image_id>.npy (wsolevaluation layout)."),
        batch_size: int = typer.Option(32),
        workers: int = typer.Option(2, help="DataLoader workers decoding images (>= 0)."),
        device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N."),
        gallery: int = typer.Option(6, help="Best and worst images shown in report.html."),
        calibrate: str = typer.Option(None, help="Threshold chosen on another split: a number, or "
                                                 "that split's report.json (its best V1 threshold)."),
        runtime: str = typer.Option("torch", help="torch, onnx (exact CAM on onnxruntime, exported "
                                                  "to a cache once), or an exported .onnx file."),
        tta: str = typer.Option(None, "--tta", help="Test-time augmentation: flip, scales=224:288, "
                                                    "logits (average the logits too), or none."),
        localizer: Path = typer.Option(None, "--localizer", help="A folder from `camloc localizer "
                                                                 "fit`: its foreground map, TTA "
                                                                 "and threshold (options override)."),
    ) -> None:
        """Evaluate WSOL metrics of a model on a dataset; write report.json, per_image.jsonl
        and report.html.

        Top-1/Top-5/GT-known Loc, MaxBoxAcc V1/V2 and PxAP of any map method (--method). Exit
        code 1 if some images failed.
        """
        from camloc.commands.common import console, print_failures, progress_bar
        from camloc.evaluation.run import open_eval_dataset, run_evaluation

        ds = open_eval_dataset(dataset, fmt=fmt, split=split, image_root=image_root,
                               synsets=synsets, num_classes=num_classes)
        layers = list(layer) if layer else None
        with progress_bar("evaluate") as upd:
            result = run_evaluation(
                ds, out, model=model, weights=weights, head=head, method=method,
                layer=layers[0] if layers and len(layers) == 1 else layers, protocol=protocol,
                interval=cam_curve_interval, fixed_threshold=fixed_threshold,
                batch_size=batch_size, workers=workers, device=device, save_maps=save_maps,
                gallery=gallery, calibrate=calibrate, progress=upd, runtime=runtime, tta=tta,
                localizer=localizer)
        if result is None:  # a torchrun rank other than 0
            return
        from camloc.report import figure_rows

        for name, value in figure_rows(result.report):
            console.print(f"  {name}: [bold]{value}[/bold]")
        note = (result.report.get("localizer") or {}).get("note")
        if note:
            console.print(f"[yellow]note:[/yellow] {note}")
        print_failures(result.state.failed, where="report.json")
        console.print(f"report: {result.json_path}  {result.html_path}  {result.per_image_path}")
        if result.state.failed:
            raise typer.Exit(1)
