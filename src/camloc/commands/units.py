"""``camloc units``: class-specific units and the image regions they fire on; also under torchrun."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("units")
    def units_cmd(
        dataset: str = typer.Argument(..., help="Dataset folder (wsol, CUB, ILSVRC, CSV/JSON, "
                                                "class folders) or a folder of images."),
        model: str = typer.Option("efficientnet_lite0", "--model", "-m", help="Model name or folder."),
        weights: str = typer.Option("DEFAULT", help="DEFAULT, a weights file, or 'none'."),
        head: str = typer.Option(None, help="A linear-probe head folder from `camloc probe`."),
        layer: str = typer.Option(None, help="Feature layer (module name); only the one the "
                                             "classifier pools has exact contributions."),
        classes: str = typer.Option(None, help="Comma-separated class ids or names (default: the "
                                               "classes the dataset has images of)."),
        all_classes: bool = typer.Option(False, "--all", help="Every class of the model."),
        top_units: int = typer.Option(8, help="Units listed and shown per class (1..256)."),
        top_images: int = typer.Option(12, help="Top-activating images kept per unit (1..100)."),
        quantile: float = typer.Option(0.005, help="Region threshold: a unit's top fraction of "
                                                   "activations over the dataset."),
        purity_classes: int = typer.Option(5, help="Classes weighing a unit most, for its purity."),
        fmt: str = typer.Option("auto", "--format", help="Dataset format (auto-detected), or "
                                                         "'images' for unlabelled images."),
        split: str = typer.Option(None, help="Split to read (e.g. val)."),
        ignore_labels: bool = typer.Option(False, help="Read the images as unlabelled."),
        out: Path = typer.Option(Path("camloc-units"), "--out", "-o", help="Output folder."),
        batch_size: int = typer.Option(32),
        workers: int = typer.Option(2, help="DataLoader workers decoding images (0..64)."),
        device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N."),
        save_every: float = typer.Option(60.0, help="Seconds between saves of the pass's state."),
        overwrite: bool = typer.Option(False, help="Start over instead of continuing a saved run."),
        sheets: bool = typer.Option(True, help="Write PNG sheets (--no-sheets: JSON and HTML only)."),
        tile: int = typer.Option(96, help="Side of one image in the sheets, in pixels (16..256)."),
        gallery_units: int = typer.Option(32, help="Units shown when no class is selected."),
        seed: int = typer.Option(0, help="Seed of the random-unit baselines."),
    ) -> None:
        """Class-specific units: each class's units ranked by contribution, each unit's top
        image regions, purity and part-ness against random units; units.json, units.html and
        PNG sheets.

        Exit code 1 if some images failed (listed in errors.jsonl), 2 on a fatal error.
        """
        from camloc.commands.common import console, print_failures, progress_bar
        from camloc.data.classes import parse_classes
        from camloc.distributed import DistContext
        from camloc.errors import ConfigError
        from camloc.models import load_model
        from camloc.units import UnitsSettings, open_units_data, run_units
        from camloc.units.render import summary_rows

        if classes and all_classes:
            raise ConfigError("--classes and --all: give one of them")
        settings = UnitsSettings(top_units=top_units, top_images=top_images, quantile=quantile,
                                 purity_classes=purity_classes, layer=layer, batch_size=batch_size,
                                 workers=workers, save_every=save_every, overwrite=overwrite,
                                 sheets=sheets, tile=tile, gallery_units=gallery_units, seed=seed)
        settings.check()  # fail on bad options before loading anything
        data = open_units_data(dataset, format=fmt, split=split, ignore_labels=ignore_labels)
        ctx = DistContext.from_env(device)
        try:
            cam_model = load_model(model, weights=None if weights.lower() == "none" else weights,
                                   device=ctx.device, head=head)
            settings.classes = "all" if all_classes else parse_classes(
                classes, list(cam_model.spec.class_names))
            try:
                if ctx.is_main:
                    title = f" (rank 0 of {ctx.world_size})" if ctx.distributed else ""
                    with progress_bar(f"units{title}") as upd:
                        result = run_units(cam_model, data, out, settings, ctx, upd)
                else:
                    result = run_units(cam_model, data, out, settings, ctx)
            except KeyboardInterrupt:
                console.print(f"interrupted: the pass is saved in {out / 'state'}; run the same "
                              f"command again to continue")
                raise typer.Exit(130) from None
        finally:
            ctx.close()
        if not ctx.is_main or result.report is None:
            return
        rep = result.report
        if result.resumed_from:
            console.print(f"continued a saved pass from image {result.resumed_from}")
        console.print(f"[bold]camloc units[/bold]: {rep['counts']['scored']} images, "
                      f"{rep['model']['units']} units, {len(rep['classes'])} classes "
                      f"({rep['dataset']['note'] or 'labels: ' + str(rep['dataset']['labeled'])})")
        for name, value, base in summary_rows(rep):
            console.print(f"  {name}: [bold]{value}[/bold]; random units {base}")
        print_failures(result.failed, where="errors.jsonl")
        console.print(f"units: {result.paths['json']}  {result.paths['html']}")
        if result.exit_code:
            raise typer.Exit(result.exit_code)
