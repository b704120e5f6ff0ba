"""The whole ``camloc export`` job from the user's options: :func:`run_onnx_export`.

It resolves the model from the positional source and ``--model`` / ``--weights`` (a weights file
given as the source is the ``--model``'s), checks that the ONNX packages are installed before the
model loads, loads the model on the CPU and exports it (:func:`camloc.export.onnx.to_onnx`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from camloc.defaults import DEFAULT_MODEL, DEFAULT_THRESHOLD
from camloc.errors import ConfigError

__all__ = ["run_onnx_export", "resolve_source"]


def resolve_source(source: str | None, model: str | None, weights: str | None
                   ) -> tuple[str, str | None]:
    """The model name and weights from ``camloc export [SOURCE] --model M --weights W``.

    >>> resolve_source(None, None, "DEFAULT")
    ('efficientnet_lite0', 'DEFAULT')
    """
    name, wts = model, weights
    if source is not None:
        if Path(source).is_file():  # a weights file for --model
            if weights != "DEFAULT":
                raise ConfigError(f"{source}: a weights file given twice (also --weights "
                                  f"{weights})")
            wts = source
        elif model is not None and model != source:
            raise ConfigError(f"{source}: a model given twice (also --model {model})")
        else:
            name = source
    return name or DEFAULT_MODEL, None if wts is None or str(wts).lower() == "none" else wts


def run_onnx_export(source: str | None = None, out: str | os.PathLike[str] | None = None, *,
                    model: str | None = None, weights: str | None = "DEFAULT",
                    head: str | None = None, top_k: int = 5, size: str | None = None,
                    opset: int = 17, dynamic_batch: bool = True, normalization: str = "max",
                    threshold: float = DEFAULT_THRESHOLD, scoremaps: bool = True,
                    class_input: bool = False) -> Any:
    """Export a model's exact CAM as one ONNX graph, as ``camloc export`` does (the options are
    its flags; ``out``: default ``<model>.onnx`` in the working folder). Returns the
    :class:`~camloc.export.onnx.OnnxExport`.

    Raises:
        ConfigError: a model or weights given twice, the ONNX packages missing, a bad option;
            ModelError, WeightsError, UnsupportedHeadError: the model cannot be exported.
    """
    from camloc.export.onnx import require_onnx

    name, w = resolve_source(source, model, weights)
    if out is not None and (Path(out).suffix.lower() != ".onnx" or Path(out).is_dir()):
        raise ConfigError(f"--out {out}: expected the .onnx file to write")
    require_onnx("camloc export", ("onnx",))
    from camloc.export.onnx import to_onnx
    from camloc.models import load_model

    cam_model = load_model(name, weights=w, device="cpu", head=head)
    dest = Path(out) if out is not None else Path(
        "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(name).name) + ".onnx")
    return to_onnx(cam_model, dest, top_k=top_k, input_size=size, opset=opset,
                   dynamic_batch=dynamic_batch, scoremaps=scoremaps,
                   normalization=normalization, threshold=threshold, class_input=class_input)
