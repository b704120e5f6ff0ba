"""``camloc probe``: a linear classifier for new classes on a frozen network's pooled features.
Parse -> call :func:`camloc.probe.job.run_probe_job` -> print."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from camloc.commands.options import DEFAULT_MODEL, Device, Format, Model, Split

if TYPE_CHECKING:  # pragma: no cover
    from camloc.probe.run import ProbeResult

_Dataset = Annotated[str, typer.Argument(help=(
    "Dataset folder (a folder per class, or any format open_dataset reads: wsol, cub, csv, json, "
    "...)."))]
_Weights = Annotated[str, typer.Option(help=(
    "DEFAULT, a weights file, or 'none' (random weights: for testing only)."))]
_Classifier = Annotated[str, typer.Option(help=(
    "logistic (multinomial logistic regression) or svm (linear SVM)."))]
_C = Annotated[str, typer.Option("--C", "-C", help=(
    "Inverse regularisation: one value, a comma-separated list or logspace:LOW:HIGH:N (several "
    "values are cross-validated)."))]
_Holdout = Annotated[float, typer.Option(help=(
    "Fraction of each class held out (seeded, stratified) for accuracy and localization; 0 fits "
    "on everything."))]
_TestSplit = Annotated[str, typer.Option(help=(
    "Evaluate on this split of the same dataset instead of holding images out."))]
_Out = Annotated[Path, typer.Option("--out", "-o", help=(
    "Output folder: head.safetensors + head.json, report.json, report.md, confusion.png."))]
_Cache = Annotated[Path, typer.Option(help=(
    "Feature cache folder (default ~/.cache/camloc/features or $CAMLOC_CACHE/features)."))]
_NoCache = Annotated[bool, typer.Option("--no-cache", help="Do not read or write the cache.")]
_Localization = Annotated[bool, typer.Option(help=(
    "Evaluate held-out localization where the dataset has boxes."))]
_BatchSize = Annotated[int, typer.Option(min=1, help="Images per forward pass.")]
_Seed = Annotated[int, typer.Option(help="Seed of the split, the CV folds and the solver.")]


def register(app: typer.Typer) -> None:
    @app.command("probe")
    def probe_cmd(
        dataset: _Dataset, model: Model = DEFAULT_MODEL, weights: _Weights = "DEFAULT",
        classifier: _Classifier = "logistic", C: _C = "logspace:-2:3:6",
        holdout: _Holdout = 0.5, split: Split = None, test_split: _TestSplit = None,
        dataset_format: Format = "auto", out: _Out = Path("camloc-probe"), cache: _Cache = None,
        no_cache: _NoCache = False, localization: _Localization = True,
        batch_size: _BatchSize = 32, device: Device = "auto", seed: _Seed = 0,
    ) -> None:
        """Fit a linear classifier for new classes on a frozen network's pooled features.

        Its weights give CAMs for those classes: pass the output folder as --head.

        Exit code 0 when every image was used, 1 when some could not be read (listed in
        errors.jsonl), 2 on a fatal error.
        """
        from camloc.commands.common import console, progress_bar
        from camloc.probe.job import run_probe_job

        result = run_probe_job(
            dataset, out, model=model, weights=weights, classifier=classifier, C=C,
            holdout=holdout, split=split, test_split=test_split, dataset_format=dataset_format,
            cache=cache, use_cache=not no_cache, localization=localization,
            batch_size=batch_size, device=device, seed=seed, progress=progress_bar,
            log=lambda m: console.print(m))
        _report(result, model, out)
        if result.exit_code:
            raise typer.Exit(result.exit_code)


def _report(result: ProbeResult, model: str, out: Path) -> None:
    """The summary line, the unreadable images and the head's use, on stderr."""
    from camloc.commands.common import console, print_failures

    rep = result.report
    ho = rep.get("heldout")
    line = (f"[bold]camloc probe[/bold]: {len(result.probe.class_names)} classes, "
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
