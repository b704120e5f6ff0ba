"""``camloc export``: a model's exact CAM as one ONNX graph (logits, top-k classes, maps, boxes).
Parse -> call :func:`camloc.export.job.run_onnx_export` -> print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from camloc.commands.options import DEFAULT_THRESHOLD, Head, Weights

_Source = Annotated[str, typer.Argument(metavar="[DIR_OR_FILE]", help=(
    "A model name or camloc model folder, or a weights file for --model (default: --model)."))]
_Model = Annotated[str, typer.Option("--model", "-m", help=(
    "Model name or folder (default efficientnet_lite0)."))]
_TopK = Annotated[int, typer.Option("--top-k", help="Maps per image (the top-k classes).")]
_Size = Annotated[str, typer.Option("--size", help="Input size HxW (default: the model's).")]
_Opset = Annotated[int, typer.Option("--opset", help="ONNX opset (13..23).")]
_DynamicBatch = Annotated[bool, typer.Option("--dynamic-batch/--static-batch", help=(
    "A free batch axis, or exactly one image."))]
_Normalization = Annotated[str, typer.Option(help="Scoremap normalisation: max or minmax.")]
_Threshold = Annotated[float, typer.Option(help=(
    "Box threshold, a fraction of each scoremap's maximum (0..1)."))]
_Scoremaps = Annotated[bool, typer.Option("--scoremaps/--no-scoremaps", help=(
    "Add input-size scoremaps and boxes to the outputs."))]
_ClassesInput = Annotated[bool, typer.Option("--classes-input", help=(
    "Add an optional 'classes' input (maps of given classes; -1 = top)."))]
_Out = Annotated[Path, typer.Option("--out", "-o", help=(
    "The .onnx file to write (default <model>.onnx); its spec goes beside it as .json."))]


def register(app: typer.Typer) -> None:
    """Add the ``export`` command to ``app``."""

    @app.command("export")
    def export_cmd(
        source: _Source = None, model: _Model = None, weights: Weights = "DEFAULT",
        head: Head = None, top_k: _TopK = 5, size: _Size = None, opset: _Opset = 17,
        dynamic_batch: _DynamicBatch = True, normalization: _Normalization = "max",
        threshold: _Threshold = DEFAULT_THRESHOLD, scoremaps: _Scoremaps = True,
        classes_input: _ClassesInput = False, out: _Out = None,
    ) -> None:
        """Export exact CAM as one ONNX graph: input `images` (N, 3, H, W, normalised), outputs
        logits, top_classes, top_probs, maps (and scoremaps, boxes). Needs a verified GAP ->
        linear head (as --method cam). See docs/deploy.md."""
        from camloc.commands.common import console
        from camloc.export.job import run_onnx_export

        result = run_onnx_export(
            source, out, model=model, weights=weights, head=head, top_k=top_k, size=size,
            opset=opset, dynamic_batch=dynamic_batch, normalization=normalization,
            threshold=threshold, scoremaps=scoremaps, class_input=classes_input)
        hw = result.spec["preprocess"]["input_size"]
        console.print(f"wrote {result.path} ({result.path.stat().st_size / 1e6:.1f} MB) and "
                      f"{result.spec_path}", highlight=False, soft_wrap=True)
        console.print(f"  input: images (N, 3, {hw[0]}, {hw[1]}); outputs: "
                      f"{', '.join(result.outputs)}", highlight=False, soft_wrap=True)
