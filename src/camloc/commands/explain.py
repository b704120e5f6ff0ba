"""``camloc explain``: overlays, boxes and results.jsonl for images, folders and globs."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("explain")
    def explain_cmd(
        paths: list[str] = typer.Argument(..., help="Image files, folders (recursive) or globs."),
        model: str = typer.Option("efficientnet_lite0", "--model", "-m",
                                  help="Model name (torchvision/timm), or a camloc model folder."),
        weights: str = typer.Option("DEFAULT", help="DEFAULT, a weights file, or 'none' (random)."),
        head: str = typer.Option(None, help="A linear-probe head folder from `camloc probe`."),
        top_k: int = typer.Option(5, "--top-k", "-k", help="Explain the k most likely classes."),
        classes: str = typer.Option(None, help="Comma-separated class ids or names instead of top-k."),
        threshold: float = typer.Option(0.2, help="Box threshold, as a fraction of the map maximum."),
        multi: bool = typer.Option(False, help="Also box every connected component."),
        method: str = typer.Option("cam", help="cam (exact) or gradcam."),
        fit: str = typer.Option("stretch", help="stretch: resize the whole image (default); crop: "
                                                "resize + centre crop as the weights' metadata says."),
        out: Path = typer.Option(Path("camloc-out"), "--out", "-o", help="Output folder."),
        batch_size: int = typer.Option(16, help="Images per forward pass."),
        device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N."),
        save_maps: bool = typer.Option(False, help="Also write maps/<name>.npy."),
        overwrite: bool = typer.Option(False, help="Redo images already in results.jsonl."),
    ) -> None:
        """Explain a classifier's decisions: CAM overlays, boxes and results.jsonl.

        Exit code 0 when every image was explained, 1 when some failed (listed in errors.jsonl),
        2 on a fatal error.
        """
        from camloc.commands.common import console, parse_classes, print_failures, progress_bar
        from camloc.explain_run import ExplainSettings, run_explain
        from camloc.models import load_model

        cam_model = load_model(model, weights=None if weights.lower() == "none" else weights,
                               device=device, head=head)
        pre = cam_model.spec.preprocess.with_(fit=fit)
        settings = ExplainSettings(top_k=top_k, classes=parse_classes(classes, cam_model.spec.class_names),
                                   threshold=threshold, multi=multi, method=method,
                                   batch_size=batch_size, save_maps=save_maps, overwrite=overwrite,
                                   preprocess=pre)
        with progress_bar("explain") as update:
            summary = run_explain(cam_model, paths, out, settings, progress=update)
        rate = summary.done / summary.seconds if summary.seconds > 0 else 0.0
        console.print(f"[bold]camloc explain[/bold]: {summary.done} explained, {summary.skipped} "
                      f"skipped (already done), {len(summary.failed)} failed, of {summary.total} found "
                      f"in {summary.seconds:.1f}s ({rate:.1f} images/s) with {cam_model.spec.name} "
                      f"on {cam_model.device}")
        print_failures(summary.failed, where="errors.jsonl")
        console.print(f"results: {out / 'results.jsonl'}  overlays: {out / 'overlays'}")
        if summary.exit_code:
            raise typer.Exit(summary.exit_code)
