"""``camloc probe``: a linear classifier for new classes on a frozen network's pooled features."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("probe")
    def probe_cmd(
        dataset: str = typer.Argument(..., help="Dataset folder (a folder per class, or any format "
                                                "open_dataset reads: wsol, cub, csv, json, ...)."),
        model: str = typer.Option("efficientnet_lite0", "--model", "-m",
                                  help="Backbone: model name (torchvision/timm) or camloc folder."),
        weights: str = typer.Option("DEFAULT", help="DEFAULT, a weights file, or 'none' (random "
                                                    "weights: for testing only)."),
        classifier: str = typer.Option("logistic", help="logistic (multinomial logistic "
                                                        "regression) or svm (linear SVM)."),
        C: str = typer.Option("logspace:-2:3:6", "--C", "-C",
                              help="Inverse regularisation: one value, a comma-separated list or "
                                   "logspace:LOW:HIGH:N (several values are cross-validated)."),
        holdout: float = typer.Option(0.5, help="Fraction of each class held out (seeded, "
                                                "stratified) for accuracy and localization; 0 fits "
                                                "on everything."),
        split: str = typer.Option(None, help="Dataset split to read (e.g. train)."),
        test_split: str = typer.Option(None, help="Evaluate on this split of the same dataset "
                                                  "instead of holding images out."),
        dataset_format: str = typer.Option("auto", "--format",
                                           help="Dataset format (auto-detected)."),
        out: Path = typer.Option(Path("camloc-probe"), "--out", "-o",
                                 help="Output folder: head.safetensors + head.json, report.json, "
                                      "report.md, confusion.png."),
        cache: Path = typer.Option(None, help="Feature cache folder (default "
                                              "~/.cache/camloc/features or "
                                              "$CAMLOC_CACHE/features)."),
        no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the cache."),
        localization: bool = typer.Option(True, help="Evaluate held-out localization where the "
                                                     "dataset has boxes."),
        batch_size: int = typer.Option(32, min=1, help="Images per forward pass."),
        device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N."),
        seed: int = typer.Option(0, help="Seed of the split, the CV folds and the solver."),
    ) -> None:
        """Fit a linear classifier for new classes on a frozen network's pooled features.

        Its weights give CAMs for those classes: pass the output folder as --head.

        Exit code 0 when every image was used, 1 when some could not be read (listed in
        errors.jsonl), 2 on a fatal error.
        """
        from camloc.commands.common import console, print_failures, progress_bar
        from camloc.data.datasets import open_dataset
        from camloc.models import load_model
        from camloc.errors import ConfigError
        from camloc.probe import (CLASSIFIERS, ProbeSettings, check_classes, default_cache_dir,
                                  parse_C, run_probe)

        cs = parse_C(C)  # fail on bad options before loading anything
        if classifier not in CLASSIFIERS:
            raise ConfigError(f"--classifier {classifier!r}: expected one of "
                              f"{', '.join(CLASSIFIERS)}")
        if not 0.0 <= holdout < 1.0:
            raise ConfigError(f"--holdout {holdout}: expected a fraction in [0, 1)")
        w = None if weights.lower() == "none" else weights
        if w is not None and w not in ("DEFAULT", "default") and Path(w).exists():
            w = str(Path(w).resolve())
        ds = open_dataset(dataset, format=dataset_format, split=split)
        check_classes(ds, "dataset")  # fail on a bad dataset before loading the model
        test_ds = open_dataset(dataset, format=dataset_format, split=test_split) \
            if test_split else None
        cam_model = load_model(model, weights=w, device=device)
        settings = ProbeSettings(classifier=classifier, C=cs, holdout=holdout, seed=seed,
                                 batch_size=batch_size, localization=localization,
                                 cache_dir=None if no_cache else (cache or default_cache_dir()))
        with progress_bar("features") as update:
            result = run_probe(cam_model, ds, out, settings, test_dataset=test_ds, weights=w,
                               progress=update, log=lambda m: console.print(m))
        rep = result.report
        ho = rep.get("heldout")
        line = (f"[bold]camloc probe[/bold]: {len(ds.class_names)} classes, "
                f"{rep['split']['n_train']} training images, {result.probe.classifier} "
                f"C={result.probe.C:g}")
        if ho:
            line += f"; held-out accuracy {100 * ho['accuracy']:.2f}% on {ho['n']} images"
        loc = rep.get("localization") or {}
        gk = (loc.get("gt_known_loc") or {}).get("at_fixed")
        v2 = (loc.get("maxboxacc_v2") or {}).get("value")
        cb = (rep.get("centre_box_baseline") or {}).get("gt_known_loc")
        if gk is not None:
            line += f"; GT-known Loc {gk:.2f}"
        if v2 is not None:
            line += f", MaxBoxAccV2 {v2:.2f}"
        if cb is not None:
            line += f" (centre box {cb:.2f})"
        console.print(line)
        print_failures(result.failed, reason_key="reason", where="errors.jsonl", label="unreadable")
        console.print(f"head: {out}  (camloc explain --model {model} --head {out} IMAGES)  "
                      f"report: {out / 'report.json'}")
        if result.exit_code:
            raise typer.Exit(result.exit_code)
