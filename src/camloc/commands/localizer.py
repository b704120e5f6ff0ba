"""``camloc localizer fit``: a few-shot, class-agnostic foreground localizer on a frozen network."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Few-shot class-agnostic localizer: fit it on images with boxes, use "
                             "it with `camloc evaluate --localizer DIR`.", no_args_is_help=True)
    app.add_typer(group, name="localizer")

    @group.command("fit")
    def fit_cmd(
        dataset: str = typer.Argument(..., help="Images with boxes (any dataset layout camloc "
                                                "reads: wsol, CUB, ILSVRC, CSV/JSON)."),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder: localizer.json + "
                                                          "head.npz."),
        model: str = typer.Option("efficientnet_lite0", "--model", "-m", help="Model name or "
                                                                              "folder."),
        weights: str = typer.Option("DEFAULT", help="DEFAULT, a weights file, or 'none'."),
        kind: str = typer.Option("head", help="head (a logistic regression on pixel features) or "
                                              "pc1 (first principal component, no weights)."),
        layer: list[str] = typer.Option(None, "--layer", help="Feature layer (repeat for several; "
                                                              "default: the map layer and the "
                                                              "last one at twice its grid)."),
        holdout: str = typer.Option("0%", help="Share of the images left out entirely (seeded by "
                                               "image id; recorded), e.g. 50%."),
        seed: int = typer.Option(0, help="Seed of the holdout and fit/choose splits."),
        tta: list[str] = typer.Option(None, "--tta", help="TTA candidates to choose from (repeat; "
                                                          "default none, scales=288, "
                                                          "scales=224:288[,logits])."),
        l2: float = typer.Option(1e-3, help="L2 penalty of the logistic regression."),
        split: str = typer.Option(None, help="Split to read (e.g. val)."),
        fmt: str = typer.Option("auto", "--format", help="Dataset format (auto-detected)."),
        batch_size: int = typer.Option(32),
        workers: int = typer.Option(0, help="DataLoader workers decoding images (>= 0)."),
        device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N."),
    ) -> None:
        """Fit a class-agnostic foreground head on the frozen network's features (masks from the
        boxes), and choose how it combines with the class map, the TTA and the box threshold on
        images kept apart from the head's. Writes localizer.json and head.npz to --out."""
        from camloc.commands.common import console
        from camloc.errors import ConfigError
        from camloc.evaluation.run import open_eval_dataset
        from camloc.localizer.fit import fit_localizer, parse_share
        from camloc.localizer.model import KINDS, save_localizer
        from camloc.models import load_model
        from camloc.models.loader import resolve_device

        if kind not in KINDS:
            raise ConfigError(f"--kind {kind!r}: expected one of {', '.join(KINDS)}")
        share = parse_share(holdout)
        if not (l2 >= 0):
            raise ConfigError(f"--l2 {l2!r}: expected a number >= 0")
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out}: exists and is not a folder")
        ds = open_eval_dataset(dataset, fmt=fmt, split=split)
        w = None if weights is None or str(weights).lower() == "none" else weights
        cam_model = load_model(model, weights=w, device=resolve_device(device))
        from camloc.evaluation.evaluate import check_fits_model

        check_fits_model(cam_model, ds)
        loc = fit_localizer(cam_model, ds, kind=kind, layers=list(layer) if layer else None,
                            holdout=share, seed=seed, ttas=list(tta) if tta else None, l2=l2,
                            batch_size=batch_size, workers=workers,
                            log=lambda m: console.print(m, highlight=False))
        folder = save_localizer(loc, out)
        c = loc.fit["chosen"]
        console.print(f"fitted on {len(loc.fit['fit_ids'])} images ({len(loc.fit['heldout_ids'])} "
                      f"held out), {loc.fit['seconds']} s; chosen on {len(loc.fit['choose_ids'])}: "
                      f"{loc.combine} a={loc.alpha}, --tta {loc.tta}, threshold {loc.threshold} "
                      f"(MaxBoxAccV2 {c['maxboxacc_v2']}, Top-1 Loc {c['top1_loc']})")
        console.print(f"localizer: {folder}")
