"""``camloc synth``: write the procedural WSOL dataset (small class part, large shared body)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the ``synth`` command to ``app``."""

    @app.command("synth")
    def synth(
        out: Path = typer.Argument(..., help="Folder to write the dataset to (created)."),
        classes: int = typer.Option(4, "--classes", help="Number of classes (2..42)."),
        images: int = typer.Option(400, "--images", help="Total number of images (1..100000)."),
        size: int = typer.Option(96, "--size", help="Image side in pixels (32..1024)."),
        seed: int = typer.Option(0, "--seed", help="Random seed; equal seeds give identical files."),
        test_fraction: float = typer.Option(0.25, "--test-fraction",
                                            help="Share of the images in the test split."),
        overwrite: bool = typer.Option(False, "--overwrite",
                                       help="Replace an earlier synthetic dataset at OUT."),
    ) -> None:
        """Write a synthetic WSOL dataset (wsol format, boxes and masks) to OUT.

        Read it back with open_dataset(OUT, split="train") or split="test".
        """
        import json

        from camloc.data.synth import make_synth

        root = make_synth(out, classes=classes, images=images, size=size, seed=seed,
                          test_fraction=test_fraction, overwrite=overwrite)
        info = json.loads((root / "synth.json").read_text(encoding="utf-8"))
        counts = info["splits"]
        typer.echo(f"wrote {root}")
        typer.echo(f"  train: {counts['train']} images, test: {counts['test']} images "
                   f"({classes} classes, {size}x{size} px, seed {seed})")
        typer.echo(f"  classes: {', '.join(info['class_names'])}")
