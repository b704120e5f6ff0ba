"""``camloc export``: a model's exact CAM as one ONNX graph (logits, top-k classes, maps, boxes)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the ``export`` command to ``app``."""

    @app.command("export")
    def export_cmd(
        source: str = typer.Argument(None, metavar="[DIR_OR_FILE]",
                                     help="A model name or camloc model folder, or a weights file "
                                          "for --model (default: --model)."),
        model: str = typer.Option(None, "--model", "-m", help="Model name or folder "
                                                              "(default efficientnet_lite0)."),
        weights: str = typer.Option("DEFAULT", help="DEFAULT, a weights file, or 'none'."),
        head: str = typer.Option(None, help="A linear-probe head folder from `camloc probe`."),
        top_k: int = typer.Option(5, "--top-k", help="Maps per image (the top-k classes)."),
        size: str = typer.Option(None, "--size", help="Input size HxW (default: the model's)."),
        opset: int = typer.Option(17, "--opset", help="ONNX opset (13..23)."),
        dynamic_batch: bool = typer.Option(True, "--dynamic-batch/--static-batch",
                                           help="A free batch axis, or exactly one image."),
        normalization: str = typer.Option("max", help="Scoremap normalisation: max or minmax."),
        threshold: float = typer.Option(0.2, help="Box threshold, a fraction of each scoremap's "
                                                  "maximum (0..1)."),
        scoremaps: bool = typer.Option(True, "--scoremaps/--no-scoremaps",
                                       help="Add input-size scoremaps and boxes to the outputs."),
        classes_input: bool = typer.Option(False, "--classes-input", help="Add an optional "
                                           "'classes' input (maps of given classes; -1 = top)."),
        out: Path = typer.Option(None, "--out", "-o", help="The .onnx file to write (default "
                                                           "<model>.onnx); its spec goes beside "
                                                           "it as .json."),
    ) -> None:
        """Export exact CAM as one ONNX graph: input `images` (N, 3, H, W, normalised), outputs
        logits, top_classes, top_probs, maps (and scoremaps, boxes). Needs a verified GAP ->
        linear head (as --method cam). See docs/deploy.md."""
        from camloc.errors import ConfigError

        name, wts = model, weights
        if source is not None:
            src = Path(source)
            if src.is_file():  # a weights file for --model
                if weights != "DEFAULT":
                    raise ConfigError(f"{source}: a weights file given twice (also --weights "
                                      f"{weights})")
                wts = source
            elif model is not None and model != source:
                raise ConfigError(f"{source}: a model given twice (also --model {model})")
            else:
                name = source
        name = name or "efficientnet_lite0"
        if out is not None and (out.suffix.lower() != ".onnx" or out.is_dir()):
            raise ConfigError(f"--out {out}: expected the .onnx file to write")
        from camloc.export.onnx import require_onnx

        require_onnx("camloc export", ("onnx",))
        from camloc.commands.common import console
        from camloc.export import to_onnx
        from camloc.models import load_model

        w = None if wts is None or str(wts).lower() == "none" else wts
        cam_model = load_model(name, weights=w, device="cpu", head=head)
        dest = out if out is not None else Path(
            "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(name).name) + ".onnx")
        result = to_onnx(cam_model, dest, top_k=top_k, input_size=size, opset=opset,
                         dynamic_batch=dynamic_batch, scoremaps=scoremaps,
                         normalization=normalization, threshold=threshold,
                         class_input=classes_input)
        hw = result.spec["preprocess"]["input_size"]
        console.print(f"wrote {result.path} ({result.path.stat().st_size / 1e6:.1f} MB) and "
                      f"{result.spec_path}", highlight=False, soft_wrap=True)
        console.print(f"  input: images (N, 3, {hw[0]}, {hw[1]}); outputs: "
                      f"{', '.join(result.outputs)}", highlight=False, soft_wrap=True)
