"""``camloc compare``: every map method on one dataset, localization and faithfulness side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer


def register(app: typer.Typer) -> None:
    """Add the ``compare`` command to ``app``."""

    @app.command("compare")
    def compare_cmd(
        dataset: str = typer.Argument(..., help="Dataset folder (wsol metadata, CUB, ILSVRC, CSV/JSON)."),
        methods: str = typer.Option("all", "--methods", help="Comma-separated methods, or 'all' "
                                                            "(see `camloc methods`)."),
        model: str = typer.Option("efficientnet_lite0", "--model", "-m", help="Model name or folder."),
        weights: str = typer.Option("DEFAULT", help="DEFAULT, a weights file, or 'none'."),
        layer: str = typer.Option(None, help="Target layer for every method (default: the model's)."),
        split: str = typer.Option(None, help="Split to score (e.g. test)."),
        fmt: str = typer.Option("auto", "--format", help="Dataset format (auto-detected)."),
        calibrate: str = typer.Option(None, help="Thresholds chosen elsewhere: a number, an "
                                                 "evaluate report.json or a compare.json."),
        calibration_split: str = typer.Option(None, help="Choose each method's threshold on this "
                                                         "split, or on a held-out share ('20%')."),
        tta: str = typer.Option(None, help="Test-time augmentation: flip and/or scales=224:288."),
        limit: int = typer.Option(None, help="Score only the first N images."),
        faith_limit: int = typer.Option(None, help="Faithfulness on the first N scored images only."),
        no_faithfulness: bool = typer.Option(False, "--no-faithfulness",
                                             help="Localization only."),
        steps: int = typer.Option(20, help="Deletion / insertion curve steps."),
        road: str = typer.Option("20,40,60,80", help="ROAD percentages of pixels removed."),
        fixed_threshold: float = typer.Option(0.2, help="Loc threshold when nothing is calibrated."),
        batch_size: int = typer.Option(16, help="Images per batch."),
        workers: int = typer.Option(2, help="DataLoader workers decoding images (>= 0)."),
        faith_batch_size: int = typer.Option(64, help="Perturbed inputs per forward."),
        gallery: int = typer.Option(6, help="Rows of the disagreement gallery."),
        device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N."),
        out: Path = typer.Option(Path("camloc-compare"), "--out", "-o", help="Output folder."),
    ) -> None:
        """Compare map methods on a dataset: MaxBoxAccV2, calibrated Top-1 / GT-known Loc, PxAP,
        Average Drop / Increase, deletion / insertion AUC, ROAD, seconds per image.

        Writes compare.json, compare.md (the table) and compare.html (table + gallery) to --out.
        Exit code 1 if some images failed.
        """
        from camloc.compare import parse_tta, resolve_methods  # torch-free
        from camloc.errors import ConfigError

        names = resolve_methods(methods)  # usage errors before loading anything heavy
        tta_spec = parse_tta(tta)
        if calibrate is not None and calibration_split is not None:
            raise ConfigError("give either --calibrate or --calibration-split, not both")
        try:
            percents = tuple(float(p) for p in road.split(",") if p.strip())
        except ValueError:
            raise ConfigError(f"--road {road!r}: expected percentages like 20,40,60,80") from None
        for opt, v in (("--limit", limit), ("--faith-limit", faith_limit)):
            if v is not None and v < 1:
                raise ConfigError(f"{opt} {v}: expected a positive number of images")
        if steps < 1:
            raise ConfigError(f"--steps {steps}: expected a positive number of steps")
        if workers < 0:
            raise ConfigError(f"--workers {workers}: expected 0 or more")
        from camloc.compare import compare
        from camloc.compare.run import FaithfulnessSettings

        faith = FaithfulnessSettings(enabled=not no_faithfulness, steps=steps,
                                     road_percentiles=percents, limit=faith_limit,
                                     batch_size=faith_batch_size)
        from camloc.commands.common import console, print_failures
        from camloc.data.datasets import open_dataset
        from camloc.distributed import DistContext
        from camloc.models import load_model

        ds = open_dataset(dataset, format=fmt, split=split)
        kw = dict(layer=layer, tta=tta_spec, calibrate_with=calibrate,
                  calibration_split=calibration_split, limit=limit, faithfulness=faith,
                  fixed_threshold=fixed_threshold, batch_size=batch_size, workers=workers,
                  gallery=gallery)
        ctx = DistContext.from_env(device)
        try:
            cam_model = load_model(model, weights=None if weights.lower() == "none" else weights,
                                   device=ctx.device)
            # refuse what compare() would refuse before --out is created (constructing the
            # methods once more inside compare() costs no forward pass)
            from camloc.compare import check_inputs

            check_inputs(cam_model, ds, methods, layer)
            kw["check_dataset"] = False
            if not ctx.is_main:  # a torchrun worker: scores its shard; rank 0 merges and writes
                compare(cam_model, ds, names, dist=ctx, **kw)
                return
            report = _on_main(cam_model, ds, names, out, ctx, kw)
        finally:
            ctx.close()
        from camloc.compare.report import markdown_table

        typer.echo(markdown_table(report))
        failed = report.get("failed", [])
        print_failures(failed, where="compare.json")
        console.print(f"report: {out / 'compare.json'}  {out / 'compare.md'}  {out / 'compare.html'}")
        if failed:
            raise typer.Exit(1)


def _on_main(model: Any, ds: Any, names: list[str], out: Path, ctx: Any, kw: dict[str, Any]
             ) -> dict[str, Any]:
    """Rank 0 (or the only process): the pass with one progress bar per stage, under --out's lock."""
    import contextlib

    from camloc.commands.common import progress_bar
    from camloc.compare import compare
    from camloc.io import folder_lock, refuse_symlink

    with folder_lock(out), contextlib.ExitStack() as stack:
        refuse_symlink(out / "gallery")  # a link to a folder elsewhere: refused before the pass
        current: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in current:  # a new stage: close the previous bar
                stack.close()
                current.clear()
                current[stage] = stack.enter_context(progress_bar(stage))
            current[stage](done, total)

        report = compare(model, ds, names, out=out, progress=progress, dist=ctx, **kw)
        stack.close()
    assert report is not None  # rank 0 always gets the merged report
    return report
