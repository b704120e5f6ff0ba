"""The command-line options that several verbs share, declared once as ``Annotated`` aliases.

A verb writes ``model: Model = DEFAULT_MODEL`` instead of repeating a ``typer.Option(...)`` with
its own wording; the default stays in the verb's signature (taken from :mod:`camloc.defaults`
where camloc has one), because verbs differ in them. Options that only one verb has stay in that
verb's module. Import-light: typer and plain constants only (see ``tests/cli/test_startup.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from camloc.defaults import DEFAULT_BATCH_SIZE, DEFAULT_MODEL, DEFAULT_THRESHOLD

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_MODEL", "DEFAULT_THRESHOLD", "BatchSize", "Calibrate",
           "CamCurveInterval", "Classes", "DatasetArg", "DatasetFormat", "Device",
           "FixedThreshold", "Format", "Head", "ImageRoot", "Layer", "Method", "Model",
           "NumClasses", "Out", "Overwrite", "SaveMaps", "Seed", "Split", "Synsets", "Weights",
           "Workers"]

# -- the model ------------------------------------------------------------------------------
Model = Annotated[str, typer.Option("--model", "-m", help=(
    "Model name (torchvision/timm), or a camloc model folder."))]
Weights = Annotated[str, typer.Option(help="DEFAULT, a weights file, or 'none' (random).")]
Head = Annotated[str, typer.Option(help="A linear-probe head folder from `camloc probe`.")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N.")]
Method = Annotated[str, typer.Option("--method", help="Map method (see `camloc methods`).")]
Layer = Annotated[list[str], typer.Option("--layer", help=(
    "Target layer by name (repeat it to fuse several); default: the model's."))]

# -- the dataset ----------------------------------------------------------------------------
DatasetArg = Annotated[str, typer.Argument(help=(
    "Dataset folder (wsol metadata, CUB, ILSVRC, CSV/JSON, class folders)."))]
Format = Annotated[str, typer.Option("--format", help="Dataset format (auto-detected).")]
#: ``explain``'s name for :data:`Format` (its positional arguments are images, not a dataset)
DatasetFormat = Annotated[str, typer.Option("--dataset-format", help=(
    "The --dataset's format (auto-detected)."))]
Split = Annotated[str, typer.Option(help="Split to read (e.g. test, val, train).")]
ImageRoot = Annotated[str, typer.Option("--image-root", help=(
    "Folder the metadata's image paths are relative to (if not the dataset folder)."))]
Synsets = Annotated[str, typer.Option("--synsets", help=(
    "LOC_synset_mapping.txt (class ids in the model's synset order), or 'imagenet' (the 1000 "
    "ImageNet-1k classes)."))]
NumClasses = Annotated[int, typer.Option("--num-classes", help="The dataset's class count.")]
Classes = Annotated[str, typer.Option(help="Comma-separated class ids or names.")]

# -- scoring --------------------------------------------------------------------------------
CamCurveInterval = Annotated[float, typer.Option(help=(
    "Threshold step (0.01; 0.001 for fine)."))]
FixedThreshold = Annotated[float, typer.Option(help=(
    f"Threshold for the fixed-tau figures (default {DEFAULT_THRESHOLD})."))]
Calibrate = Annotated[str, typer.Option(help=(
    "Threshold chosen on another split: a number, or that split's report.json (its best V1 "
    "threshold)."))]

# -- the run --------------------------------------------------------------------------------
Out = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
BatchSize = Annotated[int, typer.Option(help="Images per forward pass.")]
Workers = Annotated[int, typer.Option(help="DataLoader workers decoding images (>= 0).")]
SaveMaps = Annotated[bool, typer.Option(help=(
    "Also write the score maps as .npy files (scoremaps/<image_id>.npy)."))]
Overwrite = Annotated[bool, typer.Option(help="Start over instead of continuing a saved run.")]
Seed = Annotated[int, typer.Option(help="Random seed.")]
