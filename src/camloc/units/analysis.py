"""From the accumulated state to the units report (the data ``units.json`` holds).

Definitions (``W`` the classifier, ``p_k(i)`` unit ``k``'s pooled folded activation on image
``i``, ``I_c`` the images labelled ``c``):

- **contribution** of unit ``k`` to class ``c``: ``W[c, k] * mean_{i in I_c} p_k(i)``. Summed over
  ``k`` and added to the mean bias it is exactly the class's mean logit on its own images;
  ``report["exactness"]`` gives the largest deviation found.
- **share** of unit ``k``: its contribution over ``S_c = sum_k contribution`` (the part of the
  score the units carry; the bias is a constant no unit carries). Shares sum to 1 over all units
  and can be negative. ``top_share``: the sum of the ``top_units`` largest shares.
- **purity** of unit ``k``: among its top images with a label, the fraction labelled with one of
  the ``purity_classes`` classes that weigh it most (largest ``W[c, k]``, among the classes the
  dataset has images of). ``purity_chance``: the fraction of all labelled images in those classes.
- **part-ness** of unit ``k`` (datasets with boxes): the mean, over its top images, of the fraction
  of its region inside the ground-truth boxes (``inside``); ``inside_rate`` counts regions at least
  half inside; ``chance`` is the boxes' mean share of the image.
- **random-unit baselines**: the same figures for sets of units drawn uniformly at random (as
  many as compared, seeded), as the mean and 5th/95th percentiles over ``draws`` sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from camloc.units.data import UnitsData
from camloc.units.regions import unit_regions
from camloc.units.state import UnitsState

__all__ = ["build_report", "select_classes"]


def select_classes(spec: str | Sequence[int] | None, state: UnitsState) -> list[int]:
    """``None``: the classes with images; ``"all"``: every class; or the given ids."""
    if spec is None:
        return [int(c) for c in torch.nonzero(state.class_count > 0).flatten().tolist()]
    if isinstance(spec, str):
        if spec != "all":
            raise ValueError(spec)
        return list(range(state.num_classes))
    return [int(c) for c in spec]


def _stats(values: np.ndarray) -> dict[str, float | None]:
    if values.size == 0 or np.all(np.isnan(values)):
        return {"mean": None, "p05": None, "p95": None}
    v = values[~np.isnan(values)]
    return {"mean": round(float(v.mean()), 5), "p05": round(float(np.percentile(v, 5)), 5),
            "p95": round(float(np.percentile(v, 95)), 5)}


def _random_sets(per_unit: np.ndarray, n: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``per_unit`` over ``draws`` sets of ``n`` units drawn uniformly (with replacement)
    from the units where it is defined (not NaN)."""
    valid = per_unit[~np.isnan(per_unit)]
    if n == 0 or valid.size == 0:
        return np.zeros(0)
    return valid[rng.integers(0, valid.size, size=(draws, n))].mean(axis=1)


def _mean(values: Sequence[float | None]) -> float | None:
    v = [x for x in values if x is not None and not np.isnan(x)]
    return round(float(np.mean(v)), 5) if v else None


def build_report(state: UnitsState, model: Any, data: UnitsData,
                 classes: str | Sequence[int] | None = None, top_units: int = 8,
                 purity_classes: int = 5, quantile: float = 0.005, gallery_units: int = 32,
                 seed: int = 0, draws: int = 1000) -> dict[str, Any]:
    """The units report of a finished (merged) pass; see the module docstring for definitions."""
    from camloc.io import versions
    from camloc.units.collect import input_preprocess
    from camloc.units.contrib import gap_head

    head = gap_head(model)
    names = list(model.spec.class_names)
    W = head.classifier.weight.detach().double().cpu().numpy()  # (C, K)
    C, K = W.shape
    count = state.class_count.numpy()
    present = np.flatnonzero(count > 0)
    mean_pooled = np.zeros((C, K))
    mean_pooled[present] = state.class_pooled.numpy()[present] / count[present, None]
    contrib = W * mean_pooled  # (C, K); rows of absent classes are 0
    score_units = contrib.sum(axis=1)
    mean_logit = np.where(count > 0, state.class_logit.numpy() / np.maximum(count, 1), np.nan)
    mean_bias = np.where(count > 0, state.class_bias.numpy() / np.maximum(count, 1), np.nan)
    exact_err = float(np.max(np.abs(score_units[present] + mean_bias[present]
                                    - mean_logit[present]))) if present.size else None
    rng = np.random.default_rng(seed)

    # ---- per unit: thresholds, regions, purity, part-ness, reverse view
    thresholds = state.sketch.quantile(1.0 - quantile)
    pre = input_preprocess(model)
    regions = unit_regions(state.top.maps, state.top.index, state.top.sizes, thresholds,
                           data.items, pre)
    labeled_total = int(count.sum())
    purity = np.full(K, np.nan)
    partness = np.full(K, np.nan)
    units: list[dict[str, Any]] = []
    n_img = max(state.images, 1)
    pred_mean = state.pred_contrib.numpy() / n_img
    act_mean = state.pooled_sum.numpy() / n_img
    for k in range(K):
        rows = regions[k]
        by_w = np.argsort(-W[:, k], kind="stable")[:5]
        rec: dict[str, Any] = {
            "unit": k, "threshold": round(float(thresholds[k]), 6),
            "mean_activation": round(float(act_mean[k]), 6),
            "mean_contribution_to_prediction": round(float(pred_mean[k]), 6),
            "classes_by_weight": [{"class": int(c), "name": names[c], "weight": round(float(W[c, k]), 6)}
                                  for c in by_w],
        }
        if present.size:
            by_c = present[np.argsort(-contrib[present, k], kind="stable")[:5]]
            rec["classes_by_contribution"] = [
                {"class": int(c), "name": names[c], "contribution": round(float(contrib[c, k]), 6),
                 "share": round(float(contrib[c, k] / score_units[c]), 6)
                 if score_units[c] != 0 else None} for c in by_c]
            strongest = present[np.argsort(-W[present, k], kind="stable")[:purity_classes]]
            labels = [r["label"] for r in rows if r["label"] is not None]
            if labels:
                wanted = set(strongest.tolist())
                hits = sum(1 for lab in labels if lab in wanted)
                purity[k] = hits / len(labels)
                rec["purity"] = round(float(purity[k]), 5)
                rec["purity_chance"] = round(float(count[strongest].sum()) / labeled_total, 5)
                rec["purity_classes"] = [int(c) for c in strongest]
                vals, cnts = np.unique(labels, return_counts=True)
                order = np.argsort(-cnts, kind="stable")[:5]
                rec["top_image_labels"] = [{"class": int(vals[o]), "name": names[int(vals[o])],
                                            "count": int(cnts[o])} for o in order]
        inside = [r["inside"] for r in rows if r.get("inside") is not None]
        if inside:
            partness[k] = float(np.mean(inside))
            rec["partness"] = {
                "inside": round(float(partness[k]), 5),
                "inside_rate": round(float(np.mean([v >= 0.5 for v in inside])), 5),
                "coverage": _mean([r["coverage"] for r in rows if r.get("inside") is not None]),
                "chance": _mean([r["box_area"] for r in rows if r.get("inside") is not None]),
                "images": len(inside)}
        rec["top_images"] = rows
        units.append(rec)

    # ---- per class
    chosen = select_classes(classes, state)
    class_recs = []
    compared: list[int] = []
    shares, shares_w, shares_rand = [], [], []
    for c in chosen:
        has = count[c] > 0
        s = score_units[c]

        def entry(k: int, c: int = c, has: bool = has, s: float = s) -> dict[str, Any]:
            e: dict[str, Any] = {"unit": int(k), "weight": round(float(W[c, k]), 6)}
            if has:
                e["mean_activation"] = round(float(mean_pooled[c, k]), 6)
                e["contribution"] = round(float(contrib[c, k]), 6)
                e["share"] = round(float(contrib[c, k] / s), 6) if s != 0 else None
            return e

        by_w = np.argsort(-W[c], kind="stable")[:top_units]
        rec = {"class": int(c), "name": names[c], "images": int(count[c]),
               "by_weight": [entry(k) for k in by_w]}
        if has:
            by_c = np.argsort(-contrib[c], kind="stable")[:top_units]
            compared.extend(int(k) for k in by_c)
            rec.update({
                "mean_logit": round(float(mean_logit[c]), 6),
                "mean_bias": round(float(mean_bias[c]), 6),
                "score_from_units": round(float(s), 6),
                "by_contribution": [entry(k) for k in by_c],
            })
            if s != 0:
                share = contrib[c] / s
                top = float(share[by_c].sum())
                top_w = float(share[by_w].sum())
                rand = share[np.argsort(rng.random((draws, K)), axis=1)[:, :top_units]].sum(axis=1)
                rec.update({"top_share": round(top, 5), "top_share_by_weight": round(top_w, 5),
                            "random_share": _stats(rand)})
                shares.append(top)
                shares_w.append(top_w)
                shares_rand.append(rand)
        class_recs.append(rec)

    summary: dict[str, Any] = {"classes": len(chosen),
                               "classes_with_images": int(sum(count[c] > 0 for c in chosen))}
    if shares:
        summary["top_share"] = {
            "top_units": top_units, "mean": round(float(np.mean(shares)), 5),
            "by_weight_mean": round(float(np.mean(shares_w)), 5),
            "random_units": _stats(np.mean(np.stack(shares_rand), axis=0)),
            "random_expected": round(top_units / K, 5)}
    if compared:
        cmp = np.asarray(compared)
        if not np.all(np.isnan(purity)):
            chance = [units[k].get("purity_chance") for k in compared]
            summary["purity"] = {
                "units": len(compared), "mean": _mean(purity[cmp].tolist()),
                "chance": _mean(chance),
                "random_units": _stats(_random_sets(purity, len(compared), draws, rng)),
                "all_units_mean": _mean(purity.tolist())}
        if not np.all(np.isnan(partness)):
            summary["partness"] = {
                "units": len(compared), "inside": _mean(partness[cmp].tolist()),
                "chance": _mean([(units[k].get("partness") or {}).get("chance") for k in compared]),
                "random_units": _stats(_random_sets(partness, len(compared), draws, rng)),
                "all_units_mean": _mean(partness.tolist())}

    gallery: list[int] = []
    for rec in class_recs:
        for key in ("by_contribution", "by_weight"):
            for e in rec.get(key, []):
                if e["unit"] not in gallery:
                    gallery.append(e["unit"])
    if not gallery:
        gallery = [int(k) for k in np.argsort(-pred_mean, kind="stable")[:gallery_units]]

    seconds = state.seconds
    return {
        "model": {"name": model.spec.name, "source": model.spec.source,
                  "head": model.spec.extra.get("head"), "units": K, "classes": C,
                  "pool": getattr(head, "pool", "avg"),
                  "map_size": list(state.top.map_shape), "input_size": list(pre.input_size)},
        "dataset": {"name": data.name, "root": data.root, "format": data.format,
                    "images": len(data.items), "labeled": data.labeled,
                    "has_boxes": data.has_boxes, "note": data.note},
        "settings": {"top_units": top_units, "top_images": state.top.capacity,
                     "quantile": quantile, "purity_classes": purity_classes,
                     "sketch_rel_accuracy": state.sketch.rel_accuracy, "seed": seed,
                     "draws": draws, "image_rank": "peak of f'_k, then its mean, then index",
                     "region": "bicubic upsampling to the input, > per-unit dataset quantile"},
        "counts": {"scored": state.images, "failed": len(state.failed)},
        "seconds": round(seconds, 3),
        "images_per_second": round(state.images / seconds, 2) if seconds > 0 else None,
        "exactness": {"max_abs_error": exact_err,
                      "what": "max over classes |sum_k contribution + mean bias - mean logit|"},
        "summary": summary,
        "classes": class_recs,
        "gallery_units": gallery,
        "units": units,
        "failed": list(state.failed),
        "versions": versions(),
    }
