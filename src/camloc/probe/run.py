"""A whole probe run: split, extract (cached), fit, write the head, evaluate, report.

Output folder layout (``OUT``)::

    OUT/head.safetensors   the probe as a linear head: weight (C, K) float32, bias (C,)
    OUT/head.json          format camloc-head v1: backbone, weights, class names, C, preprocess
    OUT/report.json        split, probe choice, held-out accuracy, confusion, localization
    OUT/report.md          the same, short, for people
    OUT/confusion.png      held-out confusion matrix (when there is a held-out set)
    OUT/errors.jsonl       images that could not be read (one JSON line each), when any

``OUT`` is itself a head folder: ``camloc.load_model(backbone, head=OUT)`` or
``camloc explain --head OUT``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from camloc.errors import ConfigError, DatasetError
from camloc.io import JsonlWriter, atomic_write_json, atomic_write_text, out_lock, versions
from camloc.models.loader import CamModel
from camloc.probe.features import Features, extract_features
from camloc.probe.fit import ProbeFit, fit_probe, save_head
from camloc.probe.report import plot_confusion, render_markdown

__all__ = ["ProbeSettings", "ProbeResult", "run_probe", "stratified_split", "check_classes",
           "apply_head", "heldout_metrics", "centre_box_baseline", "CENTRE_BOX"]

#: The centre-box baseline of the wsol protocol: x0 = y0 = 56, x1 = y1 = 168 at 224 x 224.
CENTRE_BOX = (56, 56, 168, 168)


@dataclass
class ProbeSettings:
    """Options of a probe run (the CLI's flags)."""

    classifier: str = "logistic"
    C: str | float | Sequence[float] = "logspace:-2:3:6"
    holdout: float = 0.5
    seed: int = 0
    batch_size: int = 32
    cache_dir: str | Path | None = None  # None: no cache (the CLI uses default_cache_dir())
    localization: bool = True
    interval: float = 0.01
    cv: int = 5


@dataclass
class ProbeResult:
    """What :func:`run_probe` produced."""

    out: Path
    probe: ProbeFit
    report: dict[str, Any]
    train_features: Features
    test_features: Features | None = None
    failed: list[dict[str, str]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """1 when some images could not be read (the run still finished), else 0."""
        return 1 if self.failed else 0


def check_classes(dataset: Any, what: str = "dataset", every_class: bool = True) -> np.ndarray:
    """Per-class image counts; raise :class:`DatasetError` for unlabeled images, fewer than two
    classes, or (with ``every_class``) classes without images (each named)."""
    names = list(dataset.class_names)
    labels = [s.label for s in dataset.samples]
    unlabeled = [s.image_id for s in dataset.samples if s.label is None]
    if unlabeled:
        raise DatasetError(f"{what}: {len(unlabeled)} image(s) have no class label; a probe needs "
                           f"labels", [(i, 0, "no class label") for i in unlabeled])
    if len(names) < 2:
        raise DatasetError(f"{what}: a probe needs at least two classes, found {len(names)} "
                           f"({', '.join(map(repr, names)) or 'none'}). Add a folder per class")
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(names)) if labels \
        else np.zeros(len(names), np.int64)
    empty = [names[i] for i in np.flatnonzero(counts == 0)]
    if empty and every_class:
        raise DatasetError(
            f"{what}: {len(empty)} of {len(names)} classes have no images: "
            f"{', '.join(map(repr, empty[:10]))}{' ...' if len(empty) > 10 else ''}. Add images "
            "or remove the empty classes",
            [(n, 0, "class has no images") for n in empty])
    return counts


def stratified_split(labels: Sequence[int], holdout: float, seed: int = 0,
                     class_names: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of positions ``0..N-1`` into ``(train, test)`` index arrays, with
    about ``holdout`` of each class held out (at least one image of each class on each side).

    >>> tr, te = stratified_split([0, 0, 0, 0, 1, 1, 1, 1], 0.5, seed=0)
    >>> len(tr), len(te), sorted(np.asarray([0, 0, 0, 0, 1, 1, 1, 1])[te].tolist())
    (4, 4, [0, 0, 1, 1])
    """
    if not 0.0 < holdout < 1.0:
        raise ConfigError(f"holdout={holdout}: expected a fraction strictly between 0 and 1")
    y = np.asarray(labels, dtype=np.int64)
    names = list(class_names) if class_names is not None else None
    rng = np.random.default_rng(seed)
    train: list[int] = []
    test: list[int] = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if idx.size < 2:
            name = names[c] if names is not None and c < len(names) else f"class {c}"
            raise DatasetError(f"class {name!r} has {idx.size} image; holding some out needs at "
                               "least 2 per class (add images, or pass --holdout 0)")
        idx = rng.permutation(idx)
        k = int(np.clip(np.round(holdout * idx.size), 1, idx.size - 1))
        test.extend(idx[:k].tolist())
        train.extend(idx[k:].tolist())
    return np.sort(np.asarray(train, np.int64)), np.sort(np.asarray(test, np.int64))


def apply_head(model: CamModel, head_dir: str | Path) -> CamModel:
    """A copy of ``model`` whose classifier is the probe in ``head_dir`` (``model`` is untouched).

    Same as ``camloc.load_model(name, weights, head=head_dir)`` without reloading the backbone.
    """
    from camloc.models.loader import apply_head_dir

    new = copy.deepcopy(model)
    apply_head_dir(new.module, new.spec, new.head, Path(head_dir))
    return new


def heldout_metrics(probe: ProbeFit, X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Accuracy, per-class accuracy and the confusion matrix (rows: truth, columns: prediction)."""
    n = probe.num_classes
    pred = probe.predict(X) if len(y) else np.zeros(0, np.int64)
    cm = np.zeros((n, n), np.int64)
    np.add.at(cm, (y, pred), 1)
    support = cm.sum(1)
    per_class = {name: (float(cm[i, i] / support[i]) if support[i] else None)
                 for i, name in enumerate(probe.class_names)}
    return {"n": int(len(y)), "accuracy": float((pred == y).mean()) if len(y) else None,
            "per_class_accuracy": per_class, "confusion_matrix": cm.tolist(),
            "support": support.tolist()}


def centre_box_baseline(dataset: Any, eval_size: int = 224) -> dict[str, Any]:
    """GT-known Loc (%) of always answering the centre box :data:`CENTRE_BOX` (half the image's
    width and height, centred), with the wsol protocol's box rescaling and IoU (>= 0.5 with some
    ground-truth box). Images without boxes are not counted."""
    from PIL import Image

    from camloc.metrics import box_iou, rescale_gt_boxes

    c = eval_size / 224.0
    centre = np.array([[int(v * c) for v in CENTRE_BOX]], np.int64)
    hits = n = 0
    for s in dataset.samples:
        if not len(s.boxes):
            continue
        size = s.size
        if size is None:
            with Image.open(s.path) as im:
                size = im.size
        gt = rescale_gt_boxes(s.boxes, size, eval_size)
        hits += int(box_iou(centre, gt).max() >= 0.5)
        n += 1
    return {"gt_known_loc": 100.0 * hits / n if n else None, "count": n,
            "box": [int(v * c) for v in CENTRE_BOX], "eval_size": eval_size}


def _evaluate_localization(model: CamModel, dataset: Any, interval: float,
                           batch_size: int) -> dict[str, Any] | None:
    try:
        from camloc.evaluation.evaluate import evaluate_model

        return evaluate_model(model, dataset, interval=interval, batch_size=batch_size)
    except ImportError:  # an install without the evaluation module
        return None


def run_probe(model: CamModel, dataset: Any, out: str | Path, settings: ProbeSettings | None = None,
              test_dataset: Any = None, weights: str | None = "DEFAULT",
              progress: Callable[[int, int], None] | None = None,
              log: Callable[[str], None] | None = None) -> ProbeResult:
    """Fit a linear probe for ``dataset``'s classes on ``model``'s pooled features and report.

    Args:
        model: the frozen backbone (``camloc.load_model``).
        dataset: a labelled :class:`~camloc.data.datasets.Dataset` (``open_dataset``).
        out: output folder (see the module docstring); it becomes a head folder.
        settings: classifier, C, hold-out fraction, seed, cache...
        test_dataset: a separate held-out set with the same classes (then ``holdout`` is unused).
        weights: how ``load_model`` rebuilds the backbone (recorded in ``head.json``).
        progress: ``progress(done, total)`` over all images whose features are needed.
        log: receives one-line status messages.

    Raises:
        DatasetError: unlabeled images, fewer than two classes, a class without (readable) images.
        ConfigError: bad settings.
    """
    s = settings or ProbeSettings()
    t0 = time.perf_counter()
    say = log or (lambda _msg: None)
    out = Path(out).expanduser()
    names = list(dataset.class_names)
    check_classes(dataset, "dataset")
    if test_dataset is not None:
        if list(test_dataset.class_names) != names:
            raise DatasetError("the held-out set's classes differ from the training set's: "
                               f"{list(test_dataset.class_names)[:5]} vs {names[:5]}")
        check_classes(test_dataset, "held-out set", every_class=False)
        train_ds, test_ds = dataset, test_dataset
        split_info: dict[str, Any] = {"kind": "separate held-out set"}
    elif s.holdout > 0:
        tr, te = stratified_split([smp.label for smp in dataset.samples], s.holdout, s.seed, names)
        train_ds, test_ds = dataset.subset(tr), dataset.subset(te)
        split_info = {"kind": "stratified", "holdout": s.holdout, "seed": s.seed}
    elif s.holdout == 0:
        train_ds, test_ds = dataset, None
        split_info = {"kind": "none (fit on every image)"}
    else:
        raise ConfigError(f"holdout={s.holdout}: expected a fraction in [0, 1)")

    total = len(train_ds) + (len(test_ds) if test_ds is not None else 0)
    offset = 0

    def prog(done: int, _n: int) -> None:
        if progress is not None:
            progress(offset + done, total)

    ftr = extract_features(model, train_ds, s.cache_dir, s.batch_size, progress=prog)
    offset = len(train_ds)
    fte = extract_features(model, test_ds, s.cache_dir, s.batch_size, progress=prog) \
        if test_ds is not None else None
    for err in {f.cache_error for f in (ftr, fte) if f is not None and f.cache_error}:
        say(f"warning: {err}; features were not cached")
    failed = [f.to_dict() for f in ftr.failed] + ([f.to_dict() for f in fte.failed] if fte else [])
    say(f"features: {ftr.computed + (fte.computed if fte else 0)} computed, "
        f"{ftr.reused + (fte.reused if fte else 0)} from cache, {len(failed)} unreadable")
    with out_lock(out):  # creates out; a second run writing into it meanwhile is refused
        if failed:
            with JsonlWriter(out / "errors.jsonl", append=False) as w:
                for rec in failed:
                    w.write(rec)
        elif (out / "errors.jsonl").exists():
            (out / "errors.jsonl").unlink()

        probe = fit_probe(ftr.X, ftr.y, s.classifier, s.C, class_names=names, seed=s.seed, cv=s.cv)
        say(f"probe: {s.classifier} C={probe.C:g}, train accuracy {probe.train_accuracy:.3f}")
        backbone = str(model.info.get("name", model.spec.name))
        if Path(backbone).is_dir():  # a camloc checkpoint folder: record where it is
            backbone = str(Path(backbone).resolve())
        save_head(out, probe, backbone, weights, model.spec.preprocess.to_dict(), extra={
            "weights_source": model.spec.source,
            "feature": "classifier input (GAP of the folded last feature map)",
            "model_key": ftr.model_key,
            "cv_scores": probe.summary()["cv_scores"],
            "train_accuracy": probe.train_accuracy,
        })

        report: dict[str, Any] = {
            "dataset": {"name": getattr(dataset, "name", None),
                        "root": str(getattr(dataset, "root", "")),
                        "format": getattr(dataset, "format", None),
                        "split": getattr(dataset, "split", None),
                        "images": len(dataset), "class_names": names,
                        "held_out_set": None if test_dataset is None else
                        {"root": str(getattr(test_dataset, "root", "")),
                         "split": getattr(test_dataset, "split", None),
                         "images": len(test_dataset)}},
            "model": {"name": backbone, "weights": weights, "source": model.spec.source,
                      "feature_dim": model.head.num_channels, "model_key": ftr.model_key,
                      "preprocess": model.spec.preprocess.to_dict()},
            "split": {**split_info, "n_train": len(ftr), "n_test": len(fte) if fte else 0},
            "probe": probe.summary(),
            "features": {"computed": ftr.computed + (fte.computed if fte else 0),
                         "reused": ftr.reused + (fte.reused if fte else 0),
                         "cache_dir": str(ftr.cache_dir) if ftr.cache_dir else None,
                         "failed": failed},
            "heldout": None,
            "localization": None,
            "head": str(out),
            "versions": versions(),
        }
        if fte is not None and len(fte):
            report["heldout"] = heldout_metrics(probe, fte.X, fte.y)
            say(f"held-out accuracy {report['heldout']['accuracy']:.3f} on {len(fte)} images")
            plot_confusion(np.asarray(report["heldout"]["confusion_matrix"]), names,
                           out / "confusion.png",
                           title=f"probe on {backbone}: held-out accuracy "
                                 f"{report['heldout']['accuracy']:.1%}")
            usable = test_ds.subset(fte.indices)
            if s.localization and getattr(usable, "has_boxes", False):
                loc = _evaluate_localization(apply_head(model, out), usable, s.interval,
                                             s.batch_size)
                if loc is None:
                    report["localization_note"] = "camloc.evaluate is not available in this install"
                else:
                    report["localization"] = loc.get("localization")
                    report["evaluation"] = {k: v for k, v in loc.items()
                                            if k not in ("localization", "versions", "dataset")}
                    report["centre_box_baseline"] = centre_box_baseline(usable)
                    gk = (report["localization"] or {}).get("gt_known_loc", {})
                    cb = report["centre_box_baseline"]["gt_known_loc"]
                    if gk.get("at_fixed") is not None and cb is not None:
                        say(f"held-out GT-known Loc {gk['at_fixed']:.2f}% at tau "
                            f"{gk['fixed_threshold']} (best {gk['best']:.2f}% at "
                            f"{gk['best_threshold']}); centre box {cb:.2f}%")
        report["seconds"] = round(time.perf_counter() - t0, 3)
        atomic_write_json(out / "report.json", report)
        atomic_write_text(out / "report.md", render_markdown(report))
        return ProbeResult(out=out, probe=probe, report=report, train_features=ftr,
                           test_features=fte, failed=failed)
