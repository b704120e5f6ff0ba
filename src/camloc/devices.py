"""Where and how a network runs: :func:`resolve_device` and :func:`eval_mode`.

Below ``camloc.models`` (which re-exports both) so that ``camloc.distributed`` and the metrics can
use them without importing the model layer.

>>> resolve_device("cpu")
device(type='cpu')
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from camloc.errors import ConfigError

__all__ = ["resolve_device", "eval_mode"]

_DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"``/``None`` -> CUDA when available, else CPU; otherwise ``torch.device(device)``.

    Raises:
        ConfigError: an unknown device type or index, or one this machine does not have.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, torch.device):
        dev = device
    else:
        text = str(device).strip().lower()
        kind, _, index = text.partition(":")
        if kind not in _DEVICE_TYPES or (index and not index.isdigit()):
            raise ConfigError(f"device={device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N' "
                              f"(also 'mps' on Apple silicon)")
        dev = torch.device(text)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={device!r}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device={device!r}: this machine has {torch.cuda.device_count()} CUDA "
                              f"device(s) (cuda:0..cuda:{torch.cuda.device_count() - 1})")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"device={device!r}: MPS is not available on this machine")
    elif dev.type == "xpu" and not (hasattr(torch, "xpu") and torch.xpu.is_available()):
        raise ConfigError(f"device={device!r}: XPU is not available on this machine")
    return dev


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block and restore every submodule's flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag
