"""``camloc explain``: overlays, boxes, results.jsonl and box files (COCO, YOLO, VOC) for images,
folders, globs, list files and datasets; also under ``torchrun``. Parse -> call
:func:`camloc.explain.job.run_explain_job` -> print."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from camloc.defaults import DEFAULT_BATCH_SIZE, DEFAULT_MODEL

if TYPE_CHECKING:  # pragma: no cover
    from camloc.explain.job import ExplainJobResult

_Paths = Annotated[list[str], typer.Argument(metavar="PATHS...", help=(
    "Image files, folders (recursive) or globs."))]
_ListFiles = Annotated[list[str], typer.Option("--list", help=(
    "A text file with one image path per line (relative paths: relative to the file's folder); '-'"
    " reads standard input. Repeatable."))]
_Dataset = Annotated[str, typer.Option("--dataset", help=(
    "Explain the images of a dataset camloc reads (wsol, CUB, ILSVRC, CSV/JSON, folders)."))]
_DatasetFormat = Annotated[str, typer.Option("--dataset-format", help=(
    "The --dataset's format (auto-detected)."))]
_Split = Annotated[str, typer.Option(help="The --dataset's split (e.g. test, val, train).")]
_ImageRoot = Annotated[str, typer.Option(help=(
    "Folder the --dataset's image paths are relative to (if not the dataset folder)."))]
_Model = Annotated[str, typer.Option("--model", "-m", help=(
    "Model name (torchvision/timm), or a camloc model folder."))]
_Weights = Annotated[str, typer.Option(help="DEFAULT, a weights file, or 'none' (random).")]
_Head = Annotated[str, typer.Option(help="A linear-probe head folder from `camloc probe`.")]
_TopK = Annotated[int, typer.Option("--top-k", "-k", min=1, help=(
    "Explain the k most likely classes (default 5, or every class of a model with fewer)."))]
_Classes = Annotated[str, typer.Option(help=(
    "Comma-separated class ids or names instead of top-k; 'gt': each --dataset image's label."))]
_MinProb = Annotated[float, typer.Option(help=(
    "Drop classes less likely than this (0..1) from results, overlays and box files."))]
_Threshold = Annotated[float, typer.Option(help=(
    "Box threshold, as a fraction of the map maximum (0..1; default 0.2)."))]
_Calibrate = Annotated[Path, typer.Option(help=(
    "Take the threshold (and map normalisation) from a `camloc evaluate` report.json made on "
    "labelled data."))]
_Normalization = Annotated[str, typer.Option(help=(
    "Map normalisation before thresholding: max (default) or minmax."))]
_Multi = Annotated[bool, typer.Option(help=(
    "Also box every connected component (several boxes per class in the box files)."))]
_Method = Annotated[str, typer.Option(help=(
    "Map method: any of `camloc methods` (cam: exact, needs a GAP -> linear head; gradcam, "
    "gradcam++, xgradcam, hirescam, layercam, smoothgradcam++, scorecam, ablationcam, eigencam)."))]
_Layer = Annotated[list[str], typer.Option("--layer", help=(
    "Target layer by name (e.g. layer4, features.28, blocks.11); repeat it or separate names with "
    "commas to fuse several. Default: the model's (reported in results.jsonl)."))]
_Smooth = Annotated[int, typer.Option(min=0, help=(
    "Gradient methods: average the gradients over this many noisy copies of each image "
    "(SmoothGrad)."))]
_MethodBatchSize = Annotated[int, typer.Option(min=1, help=(
    "Rows per forward pass of the masked (scorecam, ablationcam) or noisy (--smooth) inputs; "
    "changes speed and memory, not the maps."))]
_Fit = Annotated[str, typer.Option(help=(
    "stretch: resize the whole image (default); crop: resize + centre crop as the weights' "
    "metadata says."))]
_Formats = Annotated[str, typer.Option("--format", help=(
    "Box files besides results.jsonl: jsonl (only that), coco, yolo, voc; comma-separated."))]
_Out = Annotated[Path, typer.Option("--out", "-o", help=(
    "Output folder (locked while a run writes)."))]
_BatchSize = Annotated[int, typer.Option(min=1, help="Images per forward pass.")]
_Device = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.")]
_SaveMaps = Annotated[bool, typer.Option(help="Also write maps/<name>.npy.")]
_Overlays = Annotated[bool, typer.Option("--overlays/--no-overlays", help=(
    "Write overlay PNGs (--no-overlays: results only)."))]
_OverlaySize = Annotated[int, typer.Option(min=32, help=(
    "Longest side of an overlay PNG in pixels (large photos are drawn smaller)."))]
_OverlayPanels = Annotated[int, typer.Option(min=1, help=(
    "Most classes drawn in one overlay (results.jsonl has all of them)."))]
_Tta = Annotated[str, typer.Option("--tta", help=(
    "Test-time augmentation: flip, scales=224:288, logits (average the logits too), or none."))]
_Localizer = Annotated[str, typer.Option("--localizer", help=(
    "A folder from `camloc localizer fit`: its foreground map, TTA and threshold (options "
    "override)."))]
_Runtime = Annotated[str, typer.Option(help=(
    "torch, onnx (exact CAM on onnxruntime, exported to a cache once), or an exported .onnx file "
    "(camloc export --classes-input)."))]
_Overwrite = Annotated[bool, typer.Option(help=(
    "Redo every image, with these settings (the old results are replaced)."))]


def register(app: typer.Typer) -> None:
    @app.command("explain")
    def explain_cmd(
        paths: _Paths = None, list_files: _ListFiles = None, dataset: _Dataset = None,
        dataset_format: _DatasetFormat = "auto", split: _Split = None,
        image_root: _ImageRoot = None, model: _Model = DEFAULT_MODEL,
        weights: _Weights = "DEFAULT", head: _Head = None, top_k: _TopK = None,
        classes: _Classes = None, min_prob: _MinProb = None, threshold: _Threshold = None,
        calibrate: _Calibrate = None, normalization: _Normalization = None,
        multi: _Multi = False, method: _Method = "cam", layer: _Layer = None,
        smooth: _Smooth = None, method_batch_size: _MethodBatchSize = None,
        fit: _Fit = "stretch", formats: _Formats = "jsonl", out: _Out = Path("camloc-out"),
        batch_size: _BatchSize = DEFAULT_BATCH_SIZE, device: _Device = "auto",
        save_maps: _SaveMaps = False, overlays: _Overlays = True,
        overlay_size: _OverlaySize = 2048, overlay_panels: _OverlayPanels = 8,
        overwrite: _Overwrite = False, tta: _Tta = None, localizer: _Localizer = None,
        runtime: _Runtime = "torch",
    ) -> None:
        """Explain a classifier's decisions: CAM overlays, boxes, results.jsonl and box files.

        Re-running into the same --out resumes (images already done are skipped); settings that
        differ from the stored ones are refused unless --overwrite. Under `torchrun
        --nproc_per_node=N -m camloc explain ...` the inputs are shared out between the
        processes and the results merged in input order. Exit code 0 when every image was
        explained, 1 when some failed (listed in errors.jsonl), 2 on a fatal error.
        """
        from camloc.commands.common import progress_bar
        from camloc.explain.job import run_explain_job

        result = run_explain_job(
            paths or [], out, lists=list_files or [], dataset=dataset,
            dataset_format=dataset_format, split=split, image_root=image_root, model=model,
            weights=weights, head=head, top_k=top_k, classes=classes, min_prob=min_prob,
            threshold=threshold, calibrate=calibrate, normalization=normalization, multi=multi,
            method=method, layer=layer, smooth=smooth, method_batch_size=method_batch_size,
            fit=fit, formats=formats, batch_size=batch_size, device=device,
            save_maps=save_maps, overlays=overlays, overlay_size=overlay_size,
            overlay_panels=overlay_panels, overwrite=overwrite, progress=progress_bar, tta=tta,
            localizer=localizer, runtime=runtime)
        if result is None:  # a torchrun rank other than 0: rank 0 reports for every rank
            return
        _report(result, out)
        if result.exit_code:
            raise typer.Exit(result.exit_code)


def _report(result: ExplainJobResult, out: Path) -> None:
    """The summary lines on stderr."""
    from camloc.commands.common import console, print_failures

    s = result.summary
    rate = s.done / s.seconds if s.seconds > 0 else 0.0
    procs = f" in {result.world_size} processes" if result.world_size > 1 else ""
    console.print(f"[bold]camloc explain[/bold]: {s.done} explained, {s.skipped} skipped "
                  f"(already done), {len(s.failed)} failed, of {s.total} found in "
                  f"{s.seconds:.1f}s ({rate:.1f} images/s) with {result.model_name} on "
                  f"{result.device}{procs}")
    print_failures(s.failed, where="errors.jsonl")
    console.print(f"results: {out / 'results.jsonl'}"
                  + (f"  overlays: {out / 'overlays'}" if result.overlays else "")
                  + "".join(f"  {k}: {out / v}" for k, v in s.exports.items()))
