"""What ``camloc train`` writes: loadable model folders and the resume state.

A model folder (``spec.json`` + ``model.safetensors``) is what :func:`camloc.load_model` reads.
``train_state.pt`` holds everything ``--resume`` needs (weights, optimizer, schedule, AMP scaler,
RNG states, epoch, step, the epoch's running sums and the history); it contains only tensors and
plain Python values, so it loads with ``torch.load(weights_only=True)``. Every file is written to a
temporary name and renamed into place (:func:`camloc.io.atomic_open`).
"""

from __future__ import annotations

import io
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from camloc.errors import CheckpointError
from camloc.io import atomic_open, atomic_write_bytes, atomic_write_json

__all__ = ["write_model_dir", "save_train_state", "load_train_state", "rng_state",
           "set_rng_state", "unwrap", "STATE_FILE", "WEIGHTS_FILE"]

STATE_FILE = "train_state.pt"
WEIGHTS_FILE = "model.safetensors"
STATE_FORMAT = "camloc-train-state"


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel / DataParallel wrapper."""
    return getattr(model, "module", model) if isinstance(
        model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model


def cpu_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached, contiguous CPU copy of ``model``'s state dict (no shared storage)."""
    return {k: v.detach().to("cpu", copy=True).contiguous()
            for k, v in unwrap(model).state_dict().items()}


def write_model_dir(folder: str | os.PathLike[str], model: nn.Module, spec: dict[str, Any]) -> Path:
    """Write ``model.safetensors`` then ``spec.json`` into ``folder`` (atomically each; under
    an output folder held by :func:`camloc.io.folder_lock`, no link below it is followed)."""
    from safetensors.torch import save

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec = dict(spec)
    spec.setdefault("weights_file", WEIGHTS_FILE)
    atomic_write_bytes(folder / spec["weights_file"], save(cpu_state_dict(model)))
    atomic_write_json(folder / "spec.json", spec)
    return folder


def rng_state() -> dict[str, Any]:
    """Torch (CPU and CUDA), NumPy and Python global RNG states, as tensors and plain values."""
    np_state = np.random.get_state(legacy=False)
    py_version, py_internal, py_gauss = random.getstate()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"bit_generator": str(np_state["bit_generator"]),
                  "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
                  "pos": int(np_state["state"]["pos"]),
                  "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "python": {"version": int(py_version), "internal": list(py_internal), "gauss": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state({"bit_generator": n["bit_generator"],
                         "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def save_train_state(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """``torch.save`` ``state`` to ``path`` atomically."""
    state = dict(state, format=STATE_FORMAT, version=1)
    buf = io.BytesIO()
    torch.save(state, buf)
    with atomic_open(path, "wb") as fh:
        fh.write(buf.getbuffer())


def load_train_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``train_state.pt`` (``weights_only=True``), or raise :class:`CheckpointError`."""
    path = Path(path)
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{path}: cannot read the training state ({type(exc).__name__}: "
                              f"{exc})") from exc
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: not a camloc training state")
    return state
