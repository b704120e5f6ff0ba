"""``camloc localizer fit``: a few-shot, class-agnostic foreground localizer on a frozen network.
Parse -> call :func:`camloc.localizer.job.run_localizer_fit` -> print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from camloc.commands.options import DEFAULT_MODEL, Device, Format, Weights

_Dataset = Annotated[str, typer.Argument(help=(
    "Images with boxes (any dataset layout camloc reads: wsol, CUB, ILSVRC, CSV/JSON)."))]
_Out = Annotated[Path, typer.Option("--out", "-o", help="Output folder: localizer.json + head.npz.")]
_Model = Annotated[str, typer.Option("--model", "-m", help="Model name or folder.")]
_Kind = Annotated[str, typer.Option(help=(
    "head (a logistic regression on pixel features) or pc1 (first principal component, no "
    "weights)."))]
_Layer = Annotated[list[str], typer.Option("--layer", help=(
    "Feature layer (repeat for several; default: the map layer and the last one at twice its "
    "grid)."))]
_Holdout = Annotated[str, typer.Option(help=(
    "Share of the images left out entirely (seeded by image id; recorded), e.g. 50%."))]
_Seed = Annotated[int, typer.Option(help="Seed of the holdout and fit/choose splits.")]
_Tta = Annotated[list[str], typer.Option("--tta", help=(
    "TTA candidates to choose from (repeat; default none, scales=288, scales=224:288[,logits])."))]
_L2 = Annotated[float, typer.Option(help="L2 penalty of the logistic regression.")]
_Split = Annotated[str, typer.Option(help="Split to read (e.g. val).")]
_BatchSize = Annotated[int, typer.Option()]
_Workers = Annotated[int, typer.Option(help="DataLoader workers decoding images (>= 0).")]


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Few-shot class-agnostic localizer: fit it on images with boxes, use "
                             "it with `camloc evaluate --localizer DIR`.", no_args_is_help=True)
    app.add_typer(group, name="localizer")

    @group.command("fit")
    def fit_cmd(
        dataset: _Dataset, out: _Out, model: _Model = DEFAULT_MODEL,
        weights: Weights = "DEFAULT", kind: _Kind = "head", layer: _Layer = None,
        holdout: _Holdout = "0%", seed: _Seed = 0, tta: _Tta = None, l2: _L2 = 1e-3,
        split: _Split = None, fmt: Format = "auto", batch_size: _BatchSize = 32,
        workers: _Workers = 0, device: Device = "auto",
    ) -> None:
        """Fit a class-agnostic foreground head on the frozen network's features (masks from the
        boxes), and choose how it combines with the class map, the TTA and the box threshold on
        images kept apart from the head's. Writes localizer.json and head.npz to --out."""
        from camloc.commands.common import console
        from camloc.localizer.job import run_localizer_fit

        loc, folder = run_localizer_fit(
            dataset, out, model=model, weights=weights, kind=kind, layers=layer,
            holdout=holdout, seed=seed, ttas=tta, l2=l2, split=split, fmt=fmt,
            batch_size=batch_size, workers=workers, device=device,
            log=lambda m: console.print(m, highlight=False))
        c = loc.fit["chosen"]
        console.print(f"fitted on {len(loc.fit['fit_ids'])} images ({len(loc.fit['heldout_ids'])} "
                      f"held out), {loc.fit['seconds']} s; chosen on {len(loc.fit['choose_ids'])}: "
                      f"{loc.combine} a={loc.alpha}, --tta {loc.tta}, threshold {loc.threshold} "
                      f"(MaxBoxAccV2 {c['maxboxacc_v2']}, Top-1 Loc {c['top1_loc']})")
        console.print(f"localizer: {folder}")
