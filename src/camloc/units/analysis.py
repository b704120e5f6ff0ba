"""From the accumulated state to the units report (the data ``units.json`` holds).

Definitions (``W`` the classifier, ``p_k(i)`` unit ``k``'s pooled folded activation on image
``i``, ``I_c`` the images labelled ``c``):

- **contribution** of unit ``k`` to class ``c``: ``W[c, k] * mean_{i in I_c} p_k(i)``. Summed over
  ``k`` and added to the mean bias it is exactly the class's mean logit on its own images;
  ``report["exactness"]`` gives the largest deviation found.
- **share** of unit ``k``: its contribution over ``S_c = sum_k contribution`` (the part of the
  score the units carry; the bias is a constant no unit carries). Shares sum to 1 over all units
  and can be negative. ``top_share``: the sum of the ``top_units`` largest shares.
- **top images** of unit ``k``: the images with the highest peak ``max_xy f'_k``; its **region** in
  each: see :mod:`camloc.units.regions` (threshold ``T_k``: the lower edge of the sketch bucket
  holding the unit's top-``quantile`` activation).
- **purity** of unit ``k``: among its top images with a label, the fraction labelled with one of
  the ``purity_classes`` classes that weigh it most (largest ``W[c, k]``, among the classes the
  dataset has images of). ``purity_chance``: the fraction of all labelled images in those classes.
- **class hits** of unit ``k`` for class ``c``: how many of its top images are labelled ``c``;
  ``class_purity`` divides by the number of top images (chance: ``|I_c| / N``).
- **part-ness** of unit ``k`` (datasets with boxes): the mean, over its top images, of the fraction
  of its region inside the ground-truth boxes (``inside``); ``inside_rate`` counts regions at least
  half inside; ``chance`` is the boxes' mean share of the image.
- **random-unit baselines**: the same figures for units drawn uniformly at random (as many as
  compared, seeded), as the mean and 5th/95th percentiles over ``draws`` random sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from camloc.errors import ConfigError
from camloc.units.data import UnitsData
from camloc.units.regions import unit_regions
from camloc.units.state import UnitsState

__all__ = ["build_report", "select_classes"]


def select_classes(spec: str | Sequence[int] | None, state: UnitsState) -> list[int]:
    """``None``: the classes with images; ``"all"``: every class; or the given ids.

    Raises:
        ConfigError: an unknown selection or an id out of range.
    """
    if spec is None:
        return [int(c) for c in torch.nonzero(state.class_count > 0).flatten().tolist()]
    if isinstance(spec, str):
        if spec != "all":
            raise ConfigError(f"classes={spec!r}: expected None, 'all' or a list of class ids")
        return list(range(state.num_classes))
    ids = [int(c) for c in spec]
    bad = [c for c in ids if not 0 <= c < state.num_classes]
    if bad:
        raise ConfigError(f"classes: id {bad[0]} is out of range (the model has "
                          f"{state.num_classes} classes)")
    return ids


def _r(v: float, nd: int = 6) -> float:
    return round(float(v), nd)


def _stats(values: np.ndarray) -> dict[str, float | None]:
    v = values[~np.isnan(values)] if values.size else values
    if v.size == 0:
        return {"mean": None, "p05": None, "p95": None}
    return {"mean": _r(v.mean(), 5), "p05": _r(np.percentile(v, 5), 5),
            "p95": _r(np.percentile(v, 95), 5)}


def _mean(values: Sequence[float | None]) -> float | None:
    v = [x for x in values if x is not None and not np.isnan(x)]
    return _r(np.mean(v), 5) if v else None


def _random_sets(per_unit: np.ndarray, n: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``per_unit`` over ``draws`` sets of ``n`` units drawn uniformly (with replacement)
    from the units where it is defined (not NaN)."""
    valid = per_unit[~np.isnan(per_unit)]
    if n == 0 or valid.size == 0:
        return np.zeros(0)
    return valid[rng.integers(0, valid.size, size=(draws, n))].mean(axis=1)


@dataclass
class _Tables:
    """The dense per-class and per-unit numbers every part of the report reads."""

    names: list[str]
    W: np.ndarray  # (C, K)
    count: np.ndarray  # (C,) images per class
    present: np.ndarray  # ids of classes with images
    mean_pooled: np.ndarray  # (C, K)
    contrib: np.ndarray  # (C, K)
    score_units: np.ndarray  # (C,)
    mean_logit: np.ndarray  # (C,)
    mean_bias: np.ndarray  # (C,)
    top_labels: np.ndarray  # (K, m) labels of the top images (-1: none / empty)
    top_size: np.ndarray  # (K,) non-empty top slots

    @classmethod
    def build(cls, state: UnitsState, W: np.ndarray, names: list[str],
              data: UnitsData) -> _Tables:
        C, K = W.shape
        count = state.class_count.numpy()
        present = np.flatnonzero(count > 0)
        mean_pooled = np.zeros((C, K))
        mean_pooled[present] = state.class_pooled.numpy()[present] / count[present, None]
        contrib = W * mean_pooled
        n = np.maximum(count, 1)
        mean_logit = np.where(count > 0, state.class_logit.numpy() / n, np.nan)
        mean_bias = np.where(count > 0, state.class_bias.numpy() / n, np.nan)
        idx = state.top.index.numpy()
        lab = np.array([-1 if it.label is None else it.label for it in data.items] + [-1])
        top_labels = lab[np.where(idx >= 0, idx, len(data.items))]
        return cls(names, W, count, present, mean_pooled, contrib, contrib.sum(axis=1),
                   mean_logit, mean_bias, top_labels, (idx >= 0).sum(axis=1))


def _unit_record(t: _Tables, k: int, rows: list[dict[str, Any]], threshold: float,
                 act_mean: float, pred_mean: float, purity_classes: int) -> dict[str, Any]:
    W, names = t.W, t.names
    for r in rows:
        r["label_name"] = names[r["label"]] if r["label"] is not None else None
    rec: dict[str, Any] = {
        "unit": k, "threshold": _r(threshold), "mean_activation": _r(act_mean),
        "mean_contribution_to_prediction": _r(pred_mean),
        "classes_by_weight": [{"class": int(c), "name": names[c], "weight": _r(W[c, k])}
                              for c in np.argsort(-W[:, k], kind="stable")[:5]],
    }
    if t.present.size:
        by_c = t.present[np.argsort(-t.contrib[t.present, k], kind="stable")[:5]]
        rec["classes_by_contribution"] = [
            {"class": int(c), "name": names[c], "contribution": _r(t.contrib[c, k]),
             "share": _r(t.contrib[c, k] / t.score_units[c]) if t.score_units[c] else None}
            for c in by_c]
        labels = [r["label"] for r in rows if r["label"] is not None]
        if labels:
            strongest = t.present[np.argsort(-W[t.present, k], kind="stable")[:purity_classes]]
            wanted = set(strongest.tolist())
            rec["purity"] = _r(sum(lab in wanted for lab in labels) / len(labels), 5)
            rec["purity_chance"] = _r(t.count[strongest].sum() / t.count.sum(), 5)
            rec["purity_classes"] = [int(c) for c in strongest]
            vals, cnts = np.unique(labels, return_counts=True)
            rec["top_image_labels"] = [{"class": int(vals[o]), "name": names[int(vals[o])],
                                        "count": int(cnts[o])}
                                       for o in np.argsort(-cnts, kind="stable")[:5]]
    inside = [r for r in rows if r.get("inside") is not None]
    if inside:
        frac = [r["inside"] for r in inside]
        rec["partness"] = {"inside": _r(np.mean(frac), 5),
                           "inside_rate": _r(np.mean([v >= 0.5 for v in frac]), 5),
                           "coverage": _mean([r["coverage"] for r in inside]),
                           "chance": _mean([r["box_area"] for r in inside]),
                           "images": len(inside)}
    rec["top_images"] = rows
    return rec


def _class_record(t: _Tables, c: int, top_units: int, draws: int,
                  rng: np.random.Generator) -> tuple[dict[str, Any], np.ndarray | None]:
    """One class's record, and the top-share of ``draws`` random unit sets (None: no images)."""
    K = t.W.shape[1]
    has = t.count[c] > 0
    s = t.score_units[c]
    hits = (t.top_labels == c).sum(axis=1) if has else None

    def entry(k: int) -> dict[str, Any]:
        e: dict[str, Any] = {"unit": int(k), "weight": _r(t.W[c, k])}
        if has:
            e.update(mean_activation=_r(t.mean_pooled[c, k]), contribution=_r(t.contrib[c, k]),
                     share=_r(t.contrib[c, k] / s) if s else None, class_hits=int(hits[k]))
        return e

    by_w = np.argsort(-t.W[c], kind="stable")[:top_units]
    rec: dict[str, Any] = {"class": int(c), "name": t.names[c], "images": int(t.count[c]),
                           "by_weight": [entry(k) for k in by_w]}
    if not has:
        return rec, None
    by_c = np.argsort(-t.contrib[c], kind="stable")[:top_units]
    rec.update(mean_logit=_r(t.mean_logit[c]), mean_bias=_r(t.mean_bias[c]),
               score_from_units=_r(s), by_contribution=[entry(k) for k in by_c])
    if not s:
        return rec, None
    share = t.contrib[c] / s
    rand = share[np.argsort(rng.random((draws, K)), axis=1)[:, :top_units]].sum(axis=1)
    rec.update(top_share=_r(share[by_c].sum(), 5), top_share_by_weight=_r(share[by_w].sum(), 5),
               random_share=_stats(rand))
    return rec, rand


def _summary(t: _Tables, class_recs: list[dict[str, Any]], rand_shares: list[np.ndarray],
             units: list[dict[str, Any]], purity: np.ndarray, partness: np.ndarray,
             top_units: int, draws: int, rng: np.random.Generator) -> dict[str, Any]:
    K = t.W.shape[1]
    with_images = [c for c in class_recs if "by_contribution" in c]
    out: dict[str, Any] = {"classes": len(class_recs), "classes_with_images": len(with_images)}
    shared = [c for c in with_images if "top_share" in c]
    if shared:
        out["top_share"] = {
            "top_units": top_units, "mean": _mean([c["top_share"] for c in shared]),
            "by_weight_mean": _mean([c["top_share_by_weight"] for c in shared]),
            "random_units": _stats(np.mean(np.stack(rand_shares), axis=0)),
            "random_expected": _r(top_units / K, 5)}
    compared = np.array([e["unit"] for c in with_images for e in c["by_contribution"]], dtype=int)
    if compared.size == 0:
        return out
    # class purity: the class's own images among its units' top images
    pairs = [(c["class"], e["unit"]) for c in with_images for e in c["by_contribution"]]
    own = np.array([(t.top_labels[k] == c).sum() / max(int(t.top_size[k]), 1) for c, k in pairs])
    rand = np.zeros((draws, len(pairs)))
    for j, (c, _) in enumerate(pairs):
        picks = rng.integers(0, K, size=draws)
        rand[:, j] = (t.top_labels[picks] == c).sum(axis=1) / np.maximum(t.top_size[picks], 1)
    n_lab = max(int(t.count.sum()), 1)
    out["class_purity"] = {"units": len(pairs), "mean": _r(own.mean(), 5),
                           "chance": _r(np.mean([t.count[c] / n_lab for c, _ in pairs]), 5),
                           "random_units": _stats(rand.mean(axis=1))}
    if not np.all(np.isnan(purity)):
        out["purity"] = {"units": int(compared.size), "mean": _mean(purity[compared].tolist()),
                         "chance": _mean([units[k].get("purity_chance") for k in compared]),
                         "random_units": _stats(_random_sets(purity, compared.size, draws, rng)),
                         "all_units_mean": _mean(purity.tolist())}
    if not np.all(np.isnan(partness)):
        cover = np.array([(u.get("partness") or {}).get("coverage") or np.nan for u in units],
                         dtype=float)
        out["partness"] = {
            "units": int(compared.size), "inside": _mean(partness[compared].tolist()),
            "chance": _mean([(units[k].get("partness") or {}).get("chance") for k in compared]),
            "random_units": _stats(_random_sets(partness, compared.size, draws, rng)),
            "all_units_mean": _mean(partness.tolist()),
            "coverage": _mean(cover[compared].tolist()),
            "coverage_random_units": _stats(_random_sets(cover, compared.size, draws, rng))}
    return out


def build_report(state: UnitsState, model: Any, data: UnitsData,
                 classes: str | Sequence[int] | None = None, top_units: int = 8,
                 purity_classes: int = 5, quantile: float = 0.005, gallery_units: int = 32,
                 seed: int = 0, draws: int = 1000) -> dict[str, Any]:
    """The units report of a finished (merged) pass; see the module docstring for definitions."""
    from camloc.io import versions
    from camloc.units.collect import input_preprocess
    from camloc.units.contrib import gap_head
    from camloc.units.regions import region_preprocess

    head = gap_head(model)
    W = head.classifier.weight.detach().double().cpu().numpy()  # (C, K)
    K = W.shape[1]
    t = _Tables.build(state, W, list(model.spec.class_names), data)
    rng = np.random.default_rng(seed)
    chosen = select_classes(classes, state)

    thresholds = state.sketch.quantile(1.0 - quantile, edge="lower")
    pre = input_preprocess(model)
    regions = unit_regions(state.top.maps, state.top.index, state.top.sizes, thresholds,
                           data.items, pre)
    n_img = max(state.images, 1)
    pred_mean = state.pred_contrib.numpy() / n_img
    act_mean = state.pooled_sum.numpy() / n_img
    units = [_unit_record(t, k, regions[k], float(thresholds[k]), act_mean[k], pred_mean[k],
                          purity_classes) for k in range(K)]
    purity = np.array([u.get("purity", np.nan) for u in units], dtype=float)
    partness = np.array([(u.get("partness") or {}).get("inside", np.nan) for u in units],
                        dtype=float)

    class_recs, rand_shares = [], []
    for c in chosen:
        rec, rand = _class_record(t, c, top_units, draws, rng)
        class_recs.append(rec)
        if rand is not None:
            rand_shares.append(rand)
    summary = _summary(t, class_recs, rand_shares, units, purity, partness, top_units, draws, rng)

    gallery: list[int] = []
    for rec in class_recs:  # the units each class is shown with
        for e in rec.get("by_contribution") or rec["by_weight"]:
            if e["unit"] not in gallery:
                gallery.append(e["unit"])
    if not gallery:
        gallery = [int(k) for k in np.argsort(-pred_mean, kind="stable")[:gallery_units]]
    exact = (np.abs(t.score_units + t.mean_bias - t.mean_logit)[t.present].max()
             if t.present.size else None)
    seconds = state.seconds
    return {
        "model": {"name": model.spec.name, "source": model.spec.source,
                  "head": model.spec.extra.get("head"), "units": K, "classes": W.shape[0],
                  "pool": getattr(head, "pool", "avg"), "map_size": list(state.top.map_shape),
                  "input_size": list(pre.input_size),
                  "region_grid": list(region_preprocess(pre).input_size)},
        "dataset": {"name": data.name, "root": data.root, "format": data.format,
                    "images": len(data.items), "labeled": data.labeled,
                    "has_boxes": data.has_boxes, "note": data.note},
        "settings": {"top_units": top_units, "top_images": state.top.capacity,
                     "quantile": quantile, "purity_classes": purity_classes,
                     "sketch_rel_accuracy": state.sketch.rel_accuracy, "seed": seed,
                     "draws": draws, "image_rank": "peak of f'_k, then its mean, then index",
                     "region": "bicubic upsampling, above the lower edge of the sketch "
                               "bucket holding the unit's top-quantile activation"},
        "counts": {"scored": state.images, "failed": len(state.failed)},
        "seconds": round(seconds, 3),
        "images_per_second": round(state.images / seconds, 2) if seconds > 0 else None,
        "exactness": {"max_abs_error": None if exact is None else float(exact),
                      "what": "max over classes |sum_k contribution + mean bias - mean logit|"},
        "summary": summary,
        "classes": class_recs,
        "gallery_units": gallery,
        "units": units,
        "failed": list(state.failed),
        "versions": versions(),
    }
