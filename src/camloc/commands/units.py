"""``camloc units``: class-specific units and the image regions they fire on; also under torchrun.
Parse -> call :func:`camloc.units.job.run_units_job` -> print."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from camloc.commands.options import (DEFAULT_MODEL, Device, Head, Model, Out, Split,
                                     Weights)

if TYPE_CHECKING:  # pragma: no cover
    from camloc.units.run import UnitsResult

_Dataset = Annotated[str, typer.Argument(help=(
    "Dataset folder (wsol, CUB, ILSVRC, CSV/JSON, class folders) or a folder of images."))]
_Layer = Annotated[str, typer.Option(help=(
    "Feature layer (module name); only the one the classifier pools has exact contributions."))]
_Classes = Annotated[str, typer.Option(help=(
    "Comma-separated class ids or names (default: the classes the dataset has images of)."))]
_All = Annotated[bool, typer.Option("--all", help="Every class of the model.")]
_TopUnits = Annotated[int, typer.Option(help="Units listed and shown per class (1..256).")]
_TopImages = Annotated[int, typer.Option(help="Top-activating images kept per unit (1..100).")]
_Quantile = Annotated[float, typer.Option(help=(
    "Region threshold: a unit's top fraction of activations over the dataset."))]
_PurityClasses = Annotated[int, typer.Option(help="Classes weighing a unit most, for its purity.")]
_Format = Annotated[str, typer.Option("--format", help=(
    "Dataset format (auto-detected), or 'images' for unlabelled images."))]
_IgnoreLabels = Annotated[bool, typer.Option(help="Read the images as unlabelled.")]
_BatchSize = Annotated[int, typer.Option()]
_Workers = Annotated[int, typer.Option(help="DataLoader workers decoding images (0..64).")]
_SaveEvery = Annotated[float, typer.Option(help="Seconds between saves of the pass's state.")]
_Overwrite = Annotated[bool, typer.Option(help="Start over instead of continuing a saved run.")]
_Sheets = Annotated[bool, typer.Option(help="Write PNG sheets (--no-sheets: JSON and HTML only).")]
_Tile = Annotated[int, typer.Option(help="Side of one image in the sheets, in pixels (16..256).")]
_GalleryUnits = Annotated[int, typer.Option(help="Units shown when no class is selected.")]
_Seed = Annotated[int, typer.Option(help="Seed of the random-unit baselines.")]


def register(app: typer.Typer) -> None:
    @app.command("units")
    def units_cmd(
        dataset: _Dataset, model: Model = DEFAULT_MODEL, weights: Weights = "DEFAULT",
        head: Head = None, layer: _Layer = None, classes: _Classes = None,
        all_classes: _All = False, top_units: _TopUnits = 8, top_images: _TopImages = 12,
        quantile: _Quantile = 0.005, purity_classes: _PurityClasses = 5, fmt: _Format = "auto",
        split: Split = None, ignore_labels: _IgnoreLabels = False,
        out: Out = Path("camloc-units"), batch_size: _BatchSize = 32, workers: _Workers = 2,
        device: Device = "auto", save_every: _SaveEvery = 60.0, overwrite: _Overwrite = False,
        sheets: _Sheets = True, tile: _Tile = 96, gallery_units: _GalleryUnits = 32,
        seed: _Seed = 0,
    ) -> None:
        """Class-specific units: each class's units ranked by contribution, each unit's top
        image regions, purity and part-ness against random units; units.json, units.html and
        PNG sheets.

        Exit code 1 if some images failed (listed in errors.jsonl), 2 on a fatal error.
        """
        from camloc.commands.common import console, progress_bar
        from camloc.units.job import run_units_job

        try:
            result = run_units_job(
                dataset, out, model=model, weights=weights, head=head, classes=classes,
                all_classes=all_classes, dataset_format=fmt, split=split,
                ignore_labels=ignore_labels, device=device, progress=progress_bar,
                top_units=top_units, top_images=top_images, quantile=quantile,
                purity_classes=purity_classes, layer=layer, batch_size=batch_size,
                workers=workers, save_every=save_every, overwrite=overwrite, sheets=sheets,
                tile=tile, gallery_units=gallery_units, seed=seed)
        except KeyboardInterrupt:
            console.print(f"interrupted: the pass is saved in {out / 'state'}; run the same "
                          f"command again to continue")
            raise typer.Exit(130) from None
        if result is None:  # a torchrun rank other than 0: rank 0 reports
            return
        _report(result)
        if result.exit_code:
            raise typer.Exit(result.exit_code)


def _report(result: UnitsResult) -> None:
    """The summary and the figures against random units, on stderr."""
    from camloc.commands.common import console, print_failures
    from camloc.units.render import summary_rows

    rep = result.report or {}
    if result.resumed_from:
        console.print(f"continued a saved pass from image {result.resumed_from}")
    console.print(f"[bold]camloc units[/bold]: {rep['counts']['scored']} images, "
                  f"{rep['model']['units']} units, {len(rep['classes'])} classes "
                  f"({rep['dataset']['note'] or 'labels: ' + str(rep['dataset']['labeled'])})")
    for name, value, base in summary_rows(rep):
        console.print(f"  {name}: [bold]{value}[/bold]; random units {base}")
    print_failures(result.failed, where="errors.jsonl")
    console.print(f"units: {result.paths['json']}  {result.paths['html']}")
