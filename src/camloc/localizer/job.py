"""The whole ``camloc localizer fit`` job from the user's options: :func:`run_localizer_fit`.

It checks the options before anything is loaded, opens the dataset, loads the model, checks the
dataset's classes against it, fits (:func:`camloc.localizer.fit.fit_localizer`) and saves the
localizer (:func:`camloc.localizer.model.save_localizer`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from camloc.defaults import DEFAULT_MODEL
from camloc.errors import ConfigError
from camloc.localizer.model import Localizer

__all__ = ["run_localizer_fit"]


def run_localizer_fit(dataset: str | os.PathLike[str], out: str | os.PathLike[str], *,
                      model: str = DEFAULT_MODEL, weights: str | None = "DEFAULT",
                      kind: str = "head", layers: Sequence[str] | None = None,
                      holdout: str | float = "0%", seed: int = 0,
                      ttas: Sequence[str] | None = None, l2: float = 1e-3,
                      split: str | None = None, fmt: str = "auto", batch_size: int = 32,
                      workers: int = 0, device: str = "auto",
                      log: Callable[[str], None] | None = None) -> tuple[Localizer, Path]:
    """Fit a class-agnostic localizer on ``dataset`` and save it to ``out``, as ``camloc
    localizer fit`` does (the options are its flags; ``holdout``: a share such as ``"50%"``).
    Returns the localizer and the folder written.

    Raises:
        ConfigError: a bad option, an ``out`` that is not a folder; DatasetError: too few images
            with boxes; ModelError, WeightsError: the model cannot be loaded.
    """
    from camloc.protocol.datasets import check_fits_model, open_eval_dataset
    from camloc.localizer.fit import fit_localizer, parse_share
    from camloc.localizer.model import KINDS, save_localizer
    from camloc.models import load_model
    from camloc.models.loader import resolve_device

    if kind not in KINDS:
        raise ConfigError(f"--kind {kind!r}: expected one of {', '.join(KINDS)}")
    share = parse_share(holdout)
    if not (l2 >= 0):
        raise ConfigError(f"--l2 {l2!r}: expected a number >= 0")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    ds = open_eval_dataset(dataset, fmt=fmt, split=split)
    w = None if weights is None or str(weights).lower() == "none" else weights
    cam_model = load_model(model, weights=w, device=resolve_device(device))
    ds = check_fits_model(cam_model, ds)  # renumbered as the model's classes where needed
    loc = fit_localizer(cam_model, ds, kind=kind, layers=list(layers) if layers else None,
                        holdout=share, seed=seed, ttas=list(ttas) if ttas else None, l2=l2,
                        batch_size=batch_size, workers=workers, log=log)
    return loc, save_localizer(loc, out)
