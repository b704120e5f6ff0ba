"""Fitting a linear probe on pooled features and writing it as a camloc head.

:func:`fit_probe` standardises the features, fits scikit-learn's ``LogisticRegression`` or
``LinearSVC`` (cross-validating ``C`` when several values are given) and folds the
standardisation back into the weights, so that ``X @ weight.T + bias`` is the decision function on
the **raw** pooled features, which is what the network computes once the head replaces its
classifier. With two classes scikit-learn fits one decision ``z``; the head gets the two rows
``-w/2`` and ``+w/2`` (biases ``-b/2``, ``+b/2``), whose softmax is exactly the logistic
probability and whose CAMs are each other's negatives.

:func:`save_head` writes ``head.safetensors`` (``weight`` (C, K) float32, ``bias`` (C,)) and
``head.json``, the folder ``camloc.load_model(name, head=DIR)`` reads.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = np.concatenate([rng.normal(0, 1, (20, 5)), rng.normal(2, 1, (20, 5))]).astype(np.float32)
>>> y = np.repeat([0, 1], 20)
>>> probe = fit_probe(X, y, "logistic", C=[0.1, 1.0], class_names=["a", "b"])
>>> probe.weight.shape, probe.train_accuracy > 0.9
((2, 5), True)
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from camloc.errors import CheckpointError, ConfigError, DatasetError
from camloc.io import atomic_open, atomic_write_json

__all__ = ["ProbeFit", "fit_probe", "save_head", "read_head", "parse_C", "CLASSIFIERS",
           "HEAD_FORMAT", "HEAD_VERSION"]

CLASSIFIERS = ("logistic", "svm")
HEAD_FORMAT = "camloc-head"
HEAD_VERSION = 1


@dataclass
class ProbeFit:
    """A fitted probe: the linear head on raw pooled features and how it was chosen.

    ``weight`` (C, K) float32 and ``bias`` (C,) float32; ``decision(X) = X @ weight.T + bias``.
    ``cv_scores`` maps each candidate ``C`` to its mean cross-validated accuracy (``None`` when a
    single ``C`` was given).
    """

    weight: np.ndarray
    bias: np.ndarray
    class_names: list[str]
    classifier: str
    C: float
    cv_scores: dict[float, float] | None = None
    cv_folds: int = 0
    train_accuracy: float = float("nan")
    n_train: int = 0
    class_counts: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return int(self.weight.shape[0])

    @property
    def feature_dim(self) -> int:
        return int(self.weight.shape[1])

    def decision(self, X: np.ndarray) -> np.ndarray:
        """Scores ``(N, C)`` of raw pooled features ``X`` (N, K)."""
        X = np.asarray(X, dtype=np.float64)
        return X @ self.weight.astype(np.float64).T + self.bias.astype(np.float64)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class ids ``(N,)``."""
        return self.decision(X).argmax(axis=1)

    def summary(self) -> dict[str, Any]:
        return {
            "classifier": self.classifier,
            "C": self.C,
            "cv_scores": None if self.cv_scores is None
            else {repr(float(c)): float(s) for c, s in self.cv_scores.items()},
            "cv_folds": self.cv_folds,
            "train_accuracy": self.train_accuracy,
            "n_train": self.n_train,
            "class_counts": list(self.class_counts),
            "warnings": list(self.warnings),
        }


def parse_C(value: str | float | Sequence[float]) -> list[float]:
    """``"1"`` / ``"0.01,0.1,1"`` / ``"logspace:-3:2:6"`` / a number / a list -> positive floats.

    >>> parse_C("0.1,1"), parse_C("logspace:-2:0:3"), parse_C(0.5)
    ([0.1, 1.0], [0.01, 0.1, 1.0], [0.5])
    """
    if isinstance(value, bool):
        raise ConfigError("C must be a positive number or a list of them, not a bool")
    if isinstance(value, (int, float)):
        values = [float(value)]
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("logspace:"):
            parts = text.split(":")
            try:
                lo, hi, n = float(parts[1]), float(parts[2]), int(parts[3])
            except (IndexError, ValueError):
                raise ConfigError(f"C={value!r}: expected logspace:LOW:HIGH:COUNT, e.g. "
                                  "logspace:-3:2:6") from None
            if n < 1:
                raise ConfigError(f"C={value!r}: COUNT must be >= 1")
            values = [float(v) for v in np.logspace(lo, hi, n)]
        else:
            try:
                values = [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
            except ValueError:
                raise ConfigError(f"C={value!r}: expected a number or comma-separated numbers, "
                                  "e.g. 1 or 0.01,0.1,1") from None
    else:
        try:
            values = [float(v) for v in value]
        except (TypeError, ValueError):
            raise ConfigError(f"C={value!r}: expected numbers") from None
    if not values:
        raise ConfigError("C: no value given")
    bad = [v for v in values if not (math.isfinite(v) and v > 0)]
    if bad:
        raise ConfigError(f"C={value!r}: every value must be a positive finite number, "
                          f"got {bad[0]}")
    return sorted(set(values))


def _check_xy(X: Any, y: Any, class_names: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray,
                                                                          list[str], np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2:
        raise ConfigError(f"X: expected (N, K) features, got shape {X.shape}")
    if y.shape != (X.shape[0],):
        raise ConfigError(f"y: expected ({X.shape[0]},) labels, got shape {y.shape}")
    if X.shape[0] == 0:
        raise DatasetError("no usable training images: nothing to fit the probe on")
    if not np.isfinite(X).all():
        raise ConfigError("X: features contain NaN or infinite values")
    if not np.issubdtype(y.dtype, np.integer):
        raise ConfigError(f"y: expected integer class ids, got dtype {y.dtype}")
    if (y < 0).any():
        raise DatasetError(f"{int((y < 0).sum())} training image(s) have no class label; a probe "
                           "needs a label for every training image")
    n_classes = len(class_names) if class_names is not None else int(y.max()) + 1
    names = list(class_names) if class_names is not None \
        else [f"class_{i}" for i in range(n_classes)]
    if (y >= n_classes).any():
        raise DatasetError(f"label {int(y.max())} is out of range for {n_classes} classes")
    if n_classes < 2:
        raise DatasetError(f"a probe needs at least two classes; the data has {n_classes} "
                           f"({', '.join(map(repr, names)) or 'none'})")
    counts = np.bincount(y, minlength=n_classes)
    empty = [names[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        raise DatasetError(
            f"{len(empty)} of {n_classes} classes have no training images: "
            f"{', '.join(map(repr, empty[:10]))}{' ...' if len(empty) > 10 else ''}. Every class "
            "needs images (add them, or remove the empty class folders)")
    return X, y.astype(np.int64), names, counts


def fit_probe(X: Any, y: Any, classifier: str = "logistic", C: float | str | Sequence[float] = 1.0,
              class_names: Sequence[str] | None = None, seed: int = 0, cv: int = 5,
              max_iter: int = 5000) -> ProbeFit:
    """Fit a linear classifier on raw pooled features and fold it into one linear head.

    Args:
        X: ``(N, K)`` pooled features (raw, as :func:`~camloc.probe.extract_features` returns).
        y: ``(N,)`` class ids ``0..C-1``; every class must occur.
        classifier: ``"logistic"`` (multinomial logistic regression) or ``"svm"`` (LinearSVC,
            one-vs-rest).
        C: inverse regularisation strength; several values (a list or ``"0.01,0.1,1"``) are
            cross-validated (stratified ``cv``-fold, accuracy) and the best is refitted on all data.
        class_names: names of the classes (index == class id); default ``class_<i>``.
        seed: seeds the cross-validation folds and the solvers.
        cv: folds for cross-validation (reduced to the smallest class size, at least 2).
        max_iter: solver iteration limit (non-convergence is reported in ``warnings``).

    Raises:
        DatasetError: fewer than two classes, a class without images, unlabeled images.
        ConfigError: bad arguments, or too few images per class to cross-validate.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if classifier not in CLASSIFIERS:
        raise ConfigError(f"classifier={classifier!r}: expected one of {', '.join(CLASSIFIERS)}")
    Cs = parse_C(C)
    X64, y64, names, counts = _check_xy(X, y, class_names)
    if classifier == "logistic":
        est: Any = LogisticRegression(C=Cs[0], max_iter=max_iter, random_state=seed)
    else:
        est = LinearSVC(C=Cs[0], max_iter=max_iter, random_state=seed)
    pipe = Pipeline([("scale", StandardScaler()), ("clf", est)])
    caught: list[str] = []
    cv_scores: dict[float, float] | None = None
    folds = 0
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always", ConvergenceWarning)
        if len(Cs) > 1:
            folds = int(min(cv, counts.min()))
            if folds < 2:
                small = names[int(counts.argmin())]
                raise ConfigError(f"cross-validating C needs at least 2 training images per class; "
                                  f"class {small!r} has {int(counts.min())}. Give a single C")
            search = GridSearchCV(pipe, {"clf__C": Cs}, scoring="accuracy", refit=True,
                                  cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
            search.fit(X64, y64)
            fitted = search.best_estimator_
            best_C = float(search.best_params_["clf__C"])
            res = search.cv_results_
            cv_scores = {float(c): float(s)
                         for c, s in zip(res["param_clf__C"], res["mean_test_score"])}
        else:
            fitted = pipe.fit(X64, y64)
            best_C = Cs[0]
        for w in record:
            if issubclass(w.category, ConvergenceWarning):
                msg = f"{classifier} did not converge in {max_iter} iterations (C={best_C:g})"
                if msg not in caught:
                    caught.append(msg)
    if cv_scores is not None and best_C in (Cs[0], Cs[-1]):
        tied = [c for c, v in cv_scores.items() if v == cv_scores[best_C]]
        if len(tied) < len(Cs):
            end = "low" if best_C == Cs[0] else "high"
            caught.append(f"the cross-validated C={best_C:g} is at the {end} end of the grid "
                          f"{Cs[0]:g}..{Cs[-1]:g}; consider extending it")
    scaler, clf = fitted.named_steps["scale"], fitted.named_steps["clf"]
    coef = np.asarray(clf.coef_, dtype=np.float64)
    intercept = np.broadcast_to(np.asarray(clf.intercept_, dtype=np.float64), (coef.shape[0],))
    if coef.shape[0] == 1:  # binary: one decision z -> rows (-z/2, +z/2)
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    scale = np.asarray(scaler.scale_ if scaler.scale_ is not None else np.ones(X64.shape[1]))
    mean = np.asarray(scaler.mean_)
    w_raw = coef / scale[None, :]
    b_raw = intercept - w_raw @ mean
    # The folded head must reproduce scikit-learn's decision on the raw features.
    ref = np.asarray(fitted.decision_function(X64), dtype=np.float64)
    mine = X64 @ w_raw.T + b_raw
    if ref.ndim == 1:
        mine = mine[:, 1] - mine[:, 0]
    err = float(np.abs(mine - ref).max() / max(1.0, float(np.abs(ref).max())))
    if err > 1e-6:  # pragma: no cover - a bug, not a user error
        raise RuntimeError(f"folding the standardisation changed the decision (error {err:.2e})")
    pred = mine.argmax(1) if mine.ndim == 2 else (mine > 0).astype(np.int64)
    return ProbeFit(weight=w_raw.astype(np.float32), bias=b_raw.astype(np.float32),
                    class_names=names, classifier=classifier, C=best_C, cv_scores=cv_scores,
                    cv_folds=folds, train_accuracy=float((pred == y64).mean()),
                    n_train=int(X64.shape[0]), class_counts=[int(c) for c in counts],
                    warnings=caught)


def save_head(directory: str | os.PathLike[str], probe: ProbeFit, backbone: str,
              weights: str | None, preprocess: dict[str, Any] | None = None,
              extra: dict[str, Any] | None = None) -> Path:
    """Write ``head.safetensors`` + ``head.json`` into ``directory`` (created; files atomic).

    ``backbone`` and ``weights`` are what ``camloc.load_model`` needs to rebuild the backbone
    (``camloc.load_model(backbone, weights=weights, head=directory)``).
    """
    from safetensors.numpy import save

    d = Path(directory).expanduser()
    d.mkdir(parents=True, exist_ok=True)
    data = save({"weight": np.ascontiguousarray(probe.weight, dtype=np.float32),
                 "bias": np.ascontiguousarray(probe.bias, dtype=np.float32)},
                metadata={"format": HEAD_FORMAT})
    with atomic_open(d / "head.safetensors", "wb") as fh:
        fh.write(data)
    meta: dict[str, Any] = {
        "format": HEAD_FORMAT,
        "version": HEAD_VERSION,
        "backbone": backbone,
        "weights": weights,
        "class_names": list(probe.class_names),
        "num_classes": probe.num_classes,
        "feature_dim": probe.feature_dim,
        "classifier": probe.classifier,
        "C": probe.C,
        "standardization": "folded into weight and bias",
        "preprocess": preprocess,
    }
    meta.update(extra or {})
    atomic_write_json(d / "head.json", meta)
    return d


def read_head(directory: str | os.PathLike[str]) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Read a head folder: ``(meta, weight (C, K), bias (C,))``; raises :class:`CheckpointError`."""
    from safetensors.numpy import load_file

    d = Path(directory).expanduser()
    try:
        meta = json.loads((d / "head.json").read_text(encoding="utf-8"))
        tensors = load_file(str(d / "head.safetensors"))
    except Exception as exc:  # noqa: BLE001 - many ways a folder can be wrong
        raise CheckpointError(f"{d}: not a camloc head folder "
                              f"({type(exc).__name__}: {exc})") from exc
    if meta.get("format") != HEAD_FORMAT:
        raise CheckpointError(f"{d / 'head.json'}: format is {meta.get('format')!r}, expected "
                              f"{HEAD_FORMAT!r}")
    w, b = tensors.get("weight"), tensors.get("bias")
    if w is None or w.ndim != 2 or b is None or b.shape != (w.shape[0],):
        raise CheckpointError(f"{d / 'head.safetensors'}: needs weight (C, K) and bias (C,)")
    return meta, w, b
