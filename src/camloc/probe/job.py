"""The whole ``camloc probe`` job from the user's options: :func:`run_probe_job`.

It checks the options (before anything is loaded), opens the dataset (and the ``test_split``),
checks its classes before the backbone loads, loads the backbone and runs
:func:`camloc.probe.run.run_probe`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from camloc.defaults import DEFAULT_MODEL
from camloc.errors import ConfigError
from camloc.probe.features import default_cache_dir
from camloc.probe.fit import CLASSIFIERS, parse_C
from camloc.probe.run import ProbeResult, ProbeSettings, check_classes, run_probe

__all__ = ["run_probe_job"]


def run_probe_job(dataset: str | os.PathLike[str], out: str | os.PathLike[str], *,
                  model: str = DEFAULT_MODEL, weights: str | None = "DEFAULT",
                  classifier: str = "logistic", C: str = "logspace:-2:3:6",
                  holdout: float = 0.5, split: str | None = None, test_split: str | None = None,
                  dataset_format: str = "auto", cache: str | os.PathLike[str] | None = None,
                  use_cache: bool = True, localization: bool = True, batch_size: int = 32,
                  device: str = "auto", seed: int = 0,
                  progress: Callable[[str], AbstractContextManager[Any]] | None = None,
                  log: Callable[[str], None] | None = None) -> ProbeResult:
    """Fit a linear probe for ``dataset``'s classes on ``model``'s pooled features, as ``camloc
    probe`` does (the options are its flags). ``weights``: ``"none"`` for random weights.
    ``cache``: the feature cache folder (default :func:`default_cache_dir`; ``use_cache=False``:
    none). ``progress(title)``: a context manager yielding ``update(done, total)``.

    Raises:
        ConfigError: a bad option; DatasetError: a dataset without two labelled classes;
        ModelError, WeightsError: the backbone cannot be loaded.
    """
    from camloc.data.datasets import open_dataset
    from camloc.models import load_model

    cs = parse_C(C)  # fail on bad options before loading anything
    if classifier not in CLASSIFIERS:
        raise ConfigError(f"--classifier {classifier!r}: expected one of "
                          f"{', '.join(CLASSIFIERS)}")
    if not 0.0 <= holdout < 1.0:
        raise ConfigError(f"--holdout {holdout}: expected a fraction in [0, 1)")
    w = _weights(weights)
    ds = open_dataset(dataset, format=dataset_format, split=split)
    check_classes(ds, "dataset")  # fail on a bad dataset before loading the model
    test_ds = open_dataset(dataset, format=dataset_format, split=test_split) \
        if test_split else None
    cam_model = load_model(model, weights=w, device=device)
    settings = ProbeSettings(classifier=classifier, C=cs, holdout=holdout, seed=seed,
                             batch_size=batch_size, localization=localization,
                             cache_dir=(cache or default_cache_dir()) if use_cache else None)
    bar = progress("features") if progress is not None else contextlib.nullcontext(None)
    with bar as update:
        return run_probe(cam_model, ds, out, settings, test_dataset=test_ds, weights=w,
                         progress=update, log=log)


def _weights(weights: str | None) -> str | None:
    """``"none"`` -> None; a weights file -> its absolute path (recorded in head.json)."""
    if weights is None or weights.lower() == "none":
        return None
    if weights not in ("DEFAULT", "default") and Path(weights).exists():
        return str(Path(weights).resolve())
    return weights
