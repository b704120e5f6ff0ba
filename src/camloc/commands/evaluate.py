"""``camloc evaluate``: WSOL metrics of a model on a dataset; also under ``torchrun``.
Parse -> call :func:`camloc.evaluation.run.run_evaluation` -> print."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from camloc.commands.options import (DEFAULT_MODEL, DEFAULT_THRESHOLD, Calibrate,
                                     CamCurveInterval, DatasetArg, Device, FixedThreshold,
                                     Format, Head, ImageRoot, Layer, Method, Model, NumClasses, Out,
                                     Split, Synsets, Weights, Workers)

if TYPE_CHECKING:  # pragma: no cover
    from camloc.evaluation.run import EvalResult

_Protocol = Annotated[str, typer.Option(help="wsol (min-max maps) or paper (max-normalised).")]
_SaveMaps = Annotated[bool, typer.Option(help=(
    "Write scoremaps/<image_id>.npy (wsolevaluation layout)."))]
_Gallery = Annotated[int, typer.Option(help="Best and worst images shown in report.html.")]
_Runtime = Annotated[str, typer.Option(help=(
    "torch, onnx (exact CAM on onnxruntime, exported to a cache once), or an exported .onnx "
    "file."))]
_Tta = Annotated[str, typer.Option("--tta", help=(
    "Test-time augmentation: flip, scales=224:288, logits (average the logits too), or none."))]
_Localizer = Annotated[Path, typer.Option("--localizer", help=(
    "A folder from `camloc localizer fit`: its foreground map, TTA and threshold (options "
    "override)."))]
_BatchSize = Annotated[int, typer.Option()]


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate_cmd(
        dataset: DatasetArg, model: Model = DEFAULT_MODEL, weights: Weights = "DEFAULT",
        head: Head = None, method: Method = "cam", layer: Layer = None,
        protocol: _Protocol = "wsol", cam_curve_interval: CamCurveInterval = 0.01,
        fixed_threshold: FixedThreshold = DEFAULT_THRESHOLD, split: Split = None,
        fmt: Format = "auto", image_root: ImageRoot = None, synsets: Synsets = None,
        num_classes: NumClasses = None, out: Out = Path("camloc-eval"),
        save_maps: _SaveMaps = False, batch_size: _BatchSize = 32, workers: Workers = 2,
        device: Device = "auto", gallery: _Gallery = 6, calibrate: Calibrate = None,
        runtime: _Runtime = "torch", tta: _Tta = None, localizer: _Localizer = None,
    ) -> None:
        """Evaluate WSOL metrics of a model on a dataset; write report.json, per_image.jsonl
        and report.html.

        Top-1/Top-5/GT-known Loc, MaxBoxAcc V1/V2 and PxAP of any map method (--method). Exit
        code 1 if some images failed.
        """
        from camloc.commands.common import progress_bar
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
        _report(result)
        if result.state.failed:
            raise typer.Exit(1)


def _report(result: EvalResult) -> None:
    """The figures and the report's paths on stderr."""
    from camloc.commands.common import console, print_failures
    from camloc.report import figure_rows

    for name, value in figure_rows(result.report):
        console.print(f"  {name}: [bold]{value}[/bold]")
    note = (result.report.get("localizer") or {}).get("note")
    if note:
        console.print(f"[yellow]note:[/yellow] {note}")
    print_failures(result.state.failed, where="report.json")
    console.print(f"report: {result.json_path}  {result.html_path}  {result.per_image_path}")
