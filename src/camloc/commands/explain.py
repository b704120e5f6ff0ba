"""``camloc explain``: overlays, boxes, results.jsonl and box files (COCO, YOLO, VOC) for images,
folders, globs, list files and datasets; also under ``torchrun``."""

from __future__ import annotations

from pathlib import Path

import typer


def _as_given(value: str | None) -> str | None:
    """A model/weights/head argument as stored in the manifest: existing paths made absolute
    (so a resume from another working directory compares equal), names kept."""
    if value is None:
        return None
    p = Path(value).expanduser()
    return str(p.resolve()) if p.exists() else value


def register(app: typer.Typer) -> None:
    @app.command("explain")
    def explain_cmd(
        paths: list[str] = typer.Argument(None, metavar="PATHS...",
                                          help="Image files, folders (recursive) or globs."),
        list_files: list[str] = typer.Option(None, "--list", help="A text file with one image "
                                             "path per line (relative paths: relative to the "
                                             "file's folder); '-' reads standard input. "
                                             "Repeatable."),
        dataset: str = typer.Option(None, "--dataset", help="Explain the images of a dataset "
                                    "camloc reads (wsol, CUB, ILSVRC, CSV/JSON, folders)."),
        dataset_format: str = typer.Option("auto", "--dataset-format",
                                           help="The --dataset's format (auto-detected)."),
        split: str = typer.Option(None, help="The --dataset's split (e.g. test, val, train)."),
        image_root: str = typer.Option(None, help="Folder the --dataset's image paths are "
                                                  "relative to (if not the dataset folder)."),
        model: str = typer.Option("efficientnet_lite0", "--model", "-m",
                                  help="Model name (torchvision/timm), or a camloc model folder."),
        weights: str = typer.Option("DEFAULT", help="DEFAULT, a weights file, or 'none' (random)."),
        head: str = typer.Option(None, help="A linear-probe head folder from `camloc probe`."),
        top_k: int = typer.Option(None, "--top-k", "-k", min=1,
                                  help="Explain the k most likely classes (default 5, or every "
                                       "class of a model with fewer)."),
        classes: str = typer.Option(None, help="Comma-separated class ids or names instead of "
                                               "top-k; 'gt': each --dataset image's label."),
        min_prob: float = typer.Option(None, help="Drop classes less likely than this (0..1) "
                                                  "from results, overlays and box files."),
        threshold: float = typer.Option(None, help="Box threshold, as a fraction of the map "
                                                   "maximum (0..1; default 0.2)."),
        calibrate: Path = typer.Option(None, help="Take the threshold (and map normalisation) "
                                                  "from a `camloc evaluate` report.json made "
                                                  "on labelled data."),
        normalization: str = typer.Option(None, help="Map normalisation before thresholding: "
                                                     "max (default) or minmax."),
        multi: bool = typer.Option(False, help="Also box every connected component (several "
                                               "boxes per class in the box files)."),
        method: str = typer.Option("cam", help="Map method: any of `camloc methods` (cam: exact, "
                                               "needs a GAP -> linear head; gradcam, gradcam++, "
                                               "xgradcam, hirescam, layercam, smoothgradcam++, "
                                               "scorecam, ablationcam, eigencam)."),
        layer: list[str] = typer.Option(None, "--layer", help="Target layer by name (e.g. "
                                        "layer4, features.28, blocks.11); repeat it or separate "
                                        "names with commas to fuse several. Default: the "
                                        "model's (reported in results.jsonl)."),
        smooth: int = typer.Option(None, min=0, help="Gradient methods: average the gradients "
                                   "over this many noisy copies of each image (SmoothGrad)."),
        method_batch_size: int = typer.Option(None, min=1, help="Rows per forward pass of the "
                                              "masked (scorecam, ablationcam) or noisy (--smooth) "
                                              "inputs; changes speed and memory, not the maps."),
        fit: str = typer.Option("stretch", help="stretch: resize the whole image (default); crop: "
                                                "resize + centre crop as the weights' metadata "
                                                "says."),
        formats: str = typer.Option("jsonl", "--format", help="Box files besides results.jsonl: "
                                    "jsonl (only that), coco, yolo, voc; comma-separated."),
        out: Path = typer.Option(Path("camloc-out"), "--out", "-o", help="Output folder (locked "
                                                                         "while a run writes)."),
        batch_size: int = typer.Option(16, min=1, help="Images per forward pass."),
        device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N."),
        save_maps: bool = typer.Option(False, help="Also write maps/<name>.npy."),
        overlays: bool = typer.Option(True, "--overlays/--no-overlays",
                                      help="Write overlay PNGs (--no-overlays: results only)."),
        overlay_size: int = typer.Option(2048, min=32, help="Longest side of an overlay PNG in "
                                                            "pixels (large photos are drawn "
                                                            "smaller)."),
        overlay_panels: int = typer.Option(8, min=1, help="Most classes drawn in one overlay "
                                                          "(results.jsonl has all of them)."),
        overwrite: bool = typer.Option(False, help="Redo every image, with these settings (the "
                                                   "old results are replaced)."),
    ) -> None:
        """Explain a classifier's decisions: CAM overlays, boxes, results.jsonl and box files.

        Re-running into the same --out resumes (images already done are skipped); settings that
        differ from the stored ones are refused unless --overwrite. Under `torchrun
        --nproc_per_node=N -m camloc explain ...` the inputs are shared out between the
        processes and the results merged in input order. Exit code 0 when every image was
        explained, 1 when some failed (listed in errors.jsonl), 2 on a fatal error.
        """
        from camloc.errors import ConfigError
        from camloc.explain_run import ExplainSettings

        if threshold is not None and calibrate is not None:
            raise ConfigError("--threshold and --calibrate both set the box threshold; give one")
        is_gt = classes is not None and classes.strip().lower() == "gt"
        layers = [n.strip() for item in (layer or []) for n in item.split(",")]
        if any(not n for n in layers):
            raise ConfigError(f"--layer {','.join(layer or [])!r}: an empty layer name")
        options = {"smooth": smooth, "batch_size": method_batch_size}
        settings = ExplainSettings(top_k=5 if top_k is None else top_k,
                                   threshold=0.2 if threshold is None else threshold,
                                   multi=multi, method=method.strip().lower(),
                                   layer=(layers[0] if len(layers) == 1 else layers) or None,
                                   method_options={k: v for k, v in options.items()
                                                   if v is not None},
                                   batch_size=batch_size,
                                   save_maps=save_maps, overwrite=overwrite, overlays=overlays,
                                   overlay_size=overlay_size, max_panels=overlay_panels,
                                   min_prob=min_prob, formats=formats.split(","),
                                   normalization=normalization or "max",
                                   classes="gt" if is_gt else None,
                                   threshold_source={"kind": "default" if threshold is None
                                                     else "given"})
        settings.check(num_classes=2**62)  # cheap checks before the model is loaded
        from camloc.cams.catalog import CATALOG

        info = CATALOG.get(settings.method)
        if info is None:
            raise ConfigError(f"--method {method!r}: expected one of {', '.join(CATALOG)} "
                              "(`camloc methods` lists them)")
        if smooth and not info.needs_grad:
            raise ConfigError(f"--smooth {smooth}: only gradient methods average over noisy "
                              f"inputs; {info.name} is a {info.family} method")
        if dataset is None and (split or image_root or dataset_format != "auto"):
            raise ConfigError("--split, --image-root and --dataset-format describe a --dataset; "
                              "give --dataset DIR")
        if is_gt and dataset is None:
            raise ConfigError("--classes gt explains each image's ground-truth label, which only "
                              "a dataset has: use it with --dataset DIR")
        if not paths and not list_files and dataset is None:
            raise ConfigError("Missing argument 'PATHS...': give image files, folders or globs, "
                              "--list FILE, or --dataset DIR")
        from camloc.explain_run import read_calibration

        cal = read_calibration(calibrate) if calibrate is not None else None
        if cal is not None:
            if normalization is not None and normalization != cal.normalization:
                raise ConfigError(f"--normalization {normalization}: the --calibrate report's "
                                  f"threshold was chosen on {cal.normalization}-normalised maps "
                                  f"({cal.source.get('protocol')} protocol); leave "
                                  "--normalization out")
            settings.threshold, settings.normalization = cal.threshold, cal.normalization
            settings.threshold_source = cal.source
        from camloc.explain_inputs import ExplainInputs

        ds = None
        if dataset is not None:
            if paths or list_files:
                raise ConfigError("--dataset: give a dataset or image paths/--list, not both")
            from camloc.data.datasets import open_dataset

            ds = open_dataset(dataset, format=dataset_format, split=split, image_root=image_root)
        inputs = ExplainInputs(paths=paths or [], lists=list_files or [], dataset=ds)
        inputs.check()

        from camloc.commands.common import console, print_failures, progress_bar
        from camloc.data.classes import parse_classes
        from camloc.distributed import DistContext
        from camloc.explain_run import run_explain
        from camloc.models import load_model

        ctx = DistContext.from_env(device)
        try:
            cam_model = load_model(model, weights=None if weights.lower() == "none" else weights,
                                   device=ctx.device, head=head)
            if cal is not None and cal.source.get("model") not in (None, cam_model.spec.name):
                raise ConfigError(f"--calibrate {calibrate}: the report was made with "
                                  f"{cal.source['model']}, but this run explains with "
                                  f"{cam_model.spec.name}; a threshold is only good for the "
                                  "model it was chosen for")
            settings.preprocess = cam_model.spec.preprocess.with_(fit=fit)
            if not is_gt:
                settings.classes = parse_classes(classes, cam_model.spec.class_names)
            if top_k is None:  # the default asks for at most the classes the model has
                settings.top_k = min(settings.top_k, cam_model.spec.num_classes)
            elif settings.classes is None and top_k > cam_model.spec.num_classes:
                raise ConfigError(f"--top-k {top_k}: {cam_model.spec.name} has only "
                                  f"{cam_model.spec.num_classes} classes")
            source = {"model": _as_given(model), "weights": _as_given(weights),
                      "head": _as_given(head)}
            if ctx.is_main:
                with progress_bar("explain" + (f" (rank 0 of {ctx.world_size})"
                                               if ctx.distributed else "")) as update:
                    summary = run_explain(cam_model, inputs, out, settings, progress=update,
                                          source=source, ctx=ctx)
            else:
                summary = run_explain(cam_model, inputs, out, settings, source=source, ctx=ctx)
        finally:
            ctx.close()
        if not ctx.is_main:
            return  # rank 0 reports for every rank
        rate = summary.done / summary.seconds if summary.seconds > 0 else 0.0
        procs = f" in {ctx.world_size} processes" if ctx.distributed else ""
        console.print(f"[bold]camloc explain[/bold]: {summary.done} explained, {summary.skipped} "
                      f"skipped (already done), {len(summary.failed)} failed, of {summary.total} "
                      f"found in {summary.seconds:.1f}s ({rate:.1f} images/s) with "
                      f"{cam_model.spec.name} on {cam_model.device}{procs}")
        print_failures(summary.failed, where="errors.jsonl")
        console.print(f"results: {out / 'results.jsonl'}"
                      + (f"  overlays: {out / 'overlays'}" if overlays else "")
                      + "".join(f"  {k}: {out / v}" for k, v in summary.exports.items()))
        if summary.exit_code:
            raise typer.Exit(summary.exit_code)
