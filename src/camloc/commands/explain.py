"""``camloc explain``: overlays, boxes and results.jsonl for images, folders and globs."""

from __future__ import annotations

from pathlib import Path

import typer


def _as_given(value: str | None) -> str | None:
    """A model/weights/head argument as stored in the manifest: existing paths made absolute
    (so a resume from another working directory compares equal), names kept."""
    if value is None:
        return None
    p = Path(value).expanduser()
    return str(p.resolve()) if p.exists() else value


def register(app: typer.Typer) -> None:
    @app.command("explain")
    def explain_cmd(
        paths: list[str] = typer.Argument(..., help="Image files, folders (recursive) or globs."),
        model: str = typer.Option("efficientnet_lite0", "--model", "-m",
                                  help="Model name (torchvision/timm), or a camloc model folder."),
        weights: str = typer.Option("DEFAULT", help="DEFAULT, a weights file, or 'none' (random)."),
        head: str = typer.Option(None, help="A linear-probe head folder from `camloc probe`."),
        top_k: int = typer.Option(5, "--top-k", "-k", min=1,
                                  help="Explain the k most likely classes."),
        classes: str = typer.Option(None, help="Comma-separated class ids or names instead of "
                                               "top-k."),
        threshold: float = typer.Option(0.2, help="Box threshold, as a fraction of the map "
                                                  "maximum (0..1)."),
        multi: bool = typer.Option(False, help="Also box every connected component."),
        method: str = typer.Option("cam", help="cam (exact) or gradcam."),
        fit: str = typer.Option("stretch", help="stretch: resize the whole image (default); crop: "
                                                "resize + centre crop as the weights' metadata "
                                                "says."),
        out: Path = typer.Option(Path("camloc-out"), "--out", "-o", help="Output folder (locked "
                                                                         "while a run writes)."),
        batch_size: int = typer.Option(16, min=1, help="Images per forward pass."),
        device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N."),
        save_maps: bool = typer.Option(False, help="Also write maps/<name>.npy."),
        overlays: bool = typer.Option(True, "--overlays/--no-overlays",
                                      help="Write overlay PNGs (--no-overlays: results only)."),
        overlay_size: int = typer.Option(2048, min=32, help="Longest side of an overlay PNG in "
                                                            "pixels (large photos are drawn "
                                                            "smaller)."),
        overlay_panels: int = typer.Option(8, min=1, help="Most classes drawn in one overlay "
                                                          "(results.jsonl has all of them)."),
        overwrite: bool = typer.Option(False, help="Redo every image, with these settings (the "
                                                   "old results are replaced)."),
    ) -> None:
        """Explain a classifier's decisions: CAM overlays, boxes and results.jsonl.

        Re-running into the same --out resumes (images already done are skipped); settings that
        differ from the stored ones are refused unless --overwrite. Exit code 0 when every image
        was explained, 1 when some failed (listed in errors.jsonl), 2 on a fatal error.
        """
        from camloc.errors import ConfigError
        from camloc.explain_run import ExplainSettings

        settings = ExplainSettings(top_k=top_k, threshold=threshold, multi=multi, method=method,
                                   batch_size=batch_size, save_maps=save_maps,
                                   overwrite=overwrite, overlays=overlays,
                                   overlay_size=overlay_size, max_panels=overlay_panels)
        settings.check(num_classes=2**62)  # cheap checks before the model is loaded
        from camloc.cams import METHODS

        if method not in METHODS:
            raise ConfigError(f"--method {method!r}: expected one of {', '.join(sorted(METHODS))}")

        from camloc.commands.common import console, parse_classes, print_failures, progress_bar
        from camloc.explain_run import run_explain
        from camloc.models import load_model

        cam_model = load_model(model, weights=None if weights.lower() == "none" else weights,
                               device=device, head=head)
        settings.preprocess = cam_model.spec.preprocess.with_(fit=fit)
        settings.classes = parse_classes(classes, cam_model.spec.class_names)
        if settings.classes is None and top_k > cam_model.spec.num_classes:
            raise ConfigError(f"--top-k {top_k}: {cam_model.spec.name} has only "
                              f"{cam_model.spec.num_classes} classes")
        source = {"model": _as_given(model), "weights": _as_given(weights), "head": _as_given(head)}
        with progress_bar("explain") as update:
            summary = run_explain(cam_model, paths, out, settings, progress=update, source=source)
        rate = summary.done / summary.seconds if summary.seconds > 0 else 0.0
        console.print(f"[bold]camloc explain[/bold]: {summary.done} explained, {summary.skipped} "
                      f"skipped (already done), {len(summary.failed)} failed, of {summary.total} "
                      f"found in {summary.seconds:.1f}s ({rate:.1f} images/s) with "
                      f"{cam_model.spec.name} on {cam_model.device}")
        print_failures(summary.failed, where="errors.jsonl")
        console.print(f"results: {out / 'results.jsonl'}"
                      + (f"  overlays: {out / 'overlays'}" if overlays else ""))
        if summary.exit_code:
            raise typer.Exit(summary.exit_code)
