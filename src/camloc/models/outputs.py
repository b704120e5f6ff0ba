"""Picking the logits out of whatever a model's ``forward`` returns.

Most classifiers return a ``(N, num_classes)`` tensor. Others return a tuple (GoogLeNet and
Inception with auxiliary heads), a dict, or a Hugging Face ``ModelOutput``. ``output=`` says which
part holds the logits: a key (``"logits"``), an index (``0``), or a callable ``f(out) -> tensor``.
Without it, a tensor is used as is, a tuple/list gives its first element, and an object or dict with
a ``logits`` entry gives that.

>>> import torch
>>> select_output({"logits": torch.zeros(2, 3), "aux": 1}).shape
torch.Size([2, 3])
>>> select_output((torch.zeros(2, 3), torch.ones(2, 3)), 1).sum().item()
6.0
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from camloc.errors import ConfigError, ModelError

__all__ = ["OutputSelector", "select_output", "check_output_selector"]

OutputSelector = str | int | Callable[[Any], torch.Tensor] | None


def check_output_selector(output: OutputSelector) -> None:
    """Raise :class:`ConfigError` for a selector that is not a key, an index or a callable."""
    if output is None or callable(output) or isinstance(output, str):
        return
    if isinstance(output, int) and not isinstance(output, bool):
        return
    raise ConfigError(f"output={output!r}: expected a key (str), an index (int) or a callable "
                      f"returning the logits tensor")


def _describe(out: Any) -> str:
    if isinstance(out, torch.Tensor):
        return f"a tensor of shape {tuple(out.shape)}"
    if isinstance(out, Mapping):
        return f"a mapping with keys {list(out.keys())[:8]}"
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)} items"
    return f"a {type(out).__name__}"


def select_output(out: Any, output: OutputSelector = None) -> torch.Tensor:
    """The ``(N, C)`` logits tensor inside a model's output ``out`` (see the module docstring).

    Raises:
        ModelError: the selected part is missing or is not a 2-D tensor (the message describes
            what the model returned and how to choose with ``output=``).
    """
    picked: Any
    try:
        if output is None:
            picked = out
            if isinstance(picked, (tuple, list)) and picked:
                picked = picked[0]
            elif isinstance(picked, Mapping) and "logits" in picked:
                picked = picked["logits"]
            elif not isinstance(picked, torch.Tensor) and hasattr(picked, "logits"):
                picked = picked.logits
        elif callable(output):
            picked = output(out)
        elif isinstance(output, str):
            picked = out[output] if isinstance(out, Mapping) else getattr(out, output)
        else:
            picked = out[output]
    except (KeyError, IndexError, AttributeError, TypeError) as exc:
        raise ModelError(f"output={output!r}: cannot select it from the model's output, "
                         f"{_describe(out)} ({type(exc).__name__}: {exc})") from exc
    if not isinstance(picked, torch.Tensor) or picked.dim() != 2:
        hint = "" if output is not None else " Choose the logits with output= (a key, an index or a callable)."
        raise ModelError(f"the model's output ({_describe(out)}) does not give (N, num_classes) logits "
                         f"with output={output!r}: got {_describe(picked)}.{hint}")
    return picked
