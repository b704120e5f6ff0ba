"""``camloc synth``: write the procedural WSOL dataset (small class part, large shared body).
Parse -> call :func:`camloc.data.synth.make_synth` -> print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

_Out = Annotated[Path, typer.Argument(help="Folder to write the dataset to (created).")]
_Classes = Annotated[int, typer.Option("--classes", help="Number of classes (2..42).")]
_Images = Annotated[int, typer.Option("--images", help="Total number of images (1..100000).")]
_Size = Annotated[int, typer.Option("--size", help="Image side in pixels (32..1024).")]
_Seed = Annotated[int, typer.Option("--seed", help=(
    "Random seed; equal seeds give identical files."))]
_TestFraction = Annotated[float, typer.Option("--test-fraction", help=(
    "Share of the images in the test split."))]
_Overwrite = Annotated[bool, typer.Option("--overwrite", help=(
    "Replace an earlier synthetic dataset at OUT."))]


def register(app: typer.Typer) -> None:
    """Add the ``synth`` command to ``app``."""

    @app.command("synth")
    def synth(
        out: _Out, classes: _Classes = 4, images: _Images = 400, size: _Size = 96,
        seed: _Seed = 0, test_fraction: _TestFraction = 0.25, overwrite: _Overwrite = False,
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
