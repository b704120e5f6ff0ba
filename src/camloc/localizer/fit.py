"""Fitting a :class:`~camloc.localizer.model.Localizer` on images with boxes, honestly.

:func:`split_ids` splits a dataset's images by a seeded hash of their ids: ``holdout`` of them are
never looked at (report figures on those), the rest are the *fit* images. The fit images are split
again in two halves: the foreground head is fitted on the first, the way it is combined with the
class map (``combine``/``alpha``), the TTA and the box threshold are chosen on the second (scored as
``camloc evaluate`` scores: MaxBoxAccV2 + Top-1 Loc at the best GT-known threshold); then the head
is fitted again on all fit images. The network stays frozen: per-pixel features of the chosen
layers are read once, and the head is a logistic regression on them (L-BFGS on the CPU), its
targets the share of each feature cell covered by a ground-truth box.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from camloc.errors import ConfigError, DatasetError
from camloc.localizer.model import Localizer, model_fingerprint, stack_features

__all__ = ["DEFAULT_COMBINES", "DEFAULT_TTAS", "auto_layers", "fit_head", "fit_localizer",
           "split_ids"]

#: (combine, alpha) candidates tried on the choosing half
DEFAULT_COMBINES: tuple[tuple[str, float], ...] = (
    ("product", 0.5), ("product", 1.0), ("product", 2.0), ("mix", 0.3), ("mix", 0.5), ("mix", 0.7),
    ("foreground", 1.0))
#: TTA candidates tried on the choosing half (each at most ~2.7x the plain input's pixels)
DEFAULT_TTAS: tuple[str, ...] = ("none", "scales=288", "scales=224:288", "scales=224:288,logits")


def _rank(seed: int, image_id: str) -> str:
    return hashlib.sha256(f"{seed}:{image_id}".encode()).hexdigest()


def split_ids(ids: Sequence[str], holdout: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """``(kept, held out)``: the ids ordered by a seeded hash, the last ``round(holdout * n)`` held
    out (``holdout`` in ``[0, 1)``). Independent of the ids' order."""
    if not 0.0 <= holdout < 1.0:
        raise ConfigError(f"--holdout {holdout!r}: expected a share in [0%, 100%)")
    order = sorted(ids, key=lambda i: _rank(seed, i))
    n_out = int(round(holdout * len(order)))
    kept = order[:len(order) - n_out]
    return kept, order[len(order) - n_out:]


def parse_share(text: str | float) -> float:
    """``"50%"``, ``"0.5"`` or ``0.5`` -> 0.5."""
    try:
        s = str(text).strip()
        v = float(s[:-1]) / 100.0 if s.endswith("%") else float(s)
    except ValueError:
        raise ConfigError(f"--holdout {text!r}: expected a share such as 50% or 0.5") from None
    if not 0.0 <= v < 1.0:
        raise ConfigError(f"--holdout {text!r}: expected a share in [0%, 100%)")
    return v


def auto_layers(model: Any) -> list[str]:
    """The default layers: the model's map layer plus the last module whose output has twice its
    resolution (a finer, still semantic grid), when there is one."""
    from camloc.models.layers import run_with_taps

    base = list(model.layers)
    hw = tuple(model.spec.preprocess.input_size)
    x = torch.zeros(1, 3, int(hw[0]), int(hw[1]), device=model.device)
    seen: list[tuple[str, tuple[int, ...]]] = []
    handles = []
    for name, mod in model.module.named_modules():
        if not name or name.count(".") > 1 or len(list(mod.children())) == 0:
            continue
        handles.append(mod.register_forward_hook(
            lambda _m, _i, out, n=name: seen.append((n, tuple(out.shape)))
            if isinstance(out, torch.Tensor) else None))
    try:
        taps = model.taps(base)
        with torch.no_grad():
            _, raws = run_with_taps(model.module, x, taps, output=model.output)
    finally:
        for h in handles:
            h.remove()
    fm = taps[-1].to_map(raws[-1], (int(hw[0]), int(hw[1])))
    g = tuple(fm.shape[-2:])
    finer = [n for n, s in seen if len(s) == 4 and tuple(s[-2:]) == (2 * g[0], 2 * g[1])]
    return ([finer[-1]] if finer else []) + base


def _masks(boxes: list[np.ndarray], size: int, grid: tuple[int, int]) -> torch.Tensor:
    """``(N, 1, gh, gw)`` share of each cell covered by a box (boxes on a ``size`` grid)."""
    m = torch.zeros(len(boxes), 1, size, size)
    for i, bs in enumerate(boxes):
        for x0, y0, x1, y1 in np.asarray(bs, dtype=np.int64).reshape(-1, 4):
            m[i, 0, max(0, y0):min(size, y1 + 1), max(0, x0):min(size, x1 + 1)] = 1.0
    return F.adaptive_avg_pool2d(m, grid)


def _cache(model: Any, base: Any, dataset: Any, taps: list[Any],
           variants: Callable[[tuple[int, int]], list[tuple[int, int, bool]]], batch_size: int,
           workers: int) -> list[dict[str, Any]]:
    """One pass over ``dataset``: per batch, for every input variant, the base method's maps of
    the ground-truth class, the taps' features and the logits (on the CPU), plus ids, labels,
    boxes (on the evaluation grid) and the input size."""
    import contextlib

    from camloc.cams.tta import TTAMethod
    from camloc.evaluation.batches import eval_batches, labelled_samples
    from camloc.localizer.model import run_capturing
    from camloc.models.heads import eval_mode

    samples = labelled_samples(dataset, "fitting a localizer needs labelled images")
    pre = model.spec.preprocess.with_(fit="stretch")
    out: list[dict[str, Any]] = []
    failed: list[dict] = []
    mode = contextlib.nullcontext() if base.needs_grad else torch.inference_mode()
    with eval_mode(model.module), mode:
        for batch in eval_batches(samples, pre, batch_size=batch_size, workers=workers,
                                  failed=failed, boxes=True):
            x = batch.x.to(model.device)
            hw = (int(x.shape[-2]), int(x.shape[-1]))
            ids = batch.labels[:, None].to(model.device)
            per = {}
            for v in variants(hw):
                o, feats = run_capturing(base, taps, TTAMethod._variant(x, v), ids)
                per[v] = (o.maps.float().cpu(), {t.name: f.cpu() for t, f in zip(taps, feats)},
                          o.logits.float().cpu())
            out.append({"ids": batch.image_ids, "labels": batch.labels, "boxes": batch.boxes,
                        "hw": hw, "per": per})
    return out


def _head_data(cache: list[dict[str, Any]], layers: Sequence[str]
               ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Stacked features and box-coverage targets of the plain variant of every cached image."""
    from camloc.evaluation.batches import EVAL_SIZE

    feats, targets = [], []
    for b in cache:
        got = b["per"][(b["hw"][0], b["hw"][1], False)][1]
        f = stack_features([got[n] for n in layers])
        y = _masks(b["boxes"], EVAL_SIZE, tuple(f.shape[-2:]))
        for j in range(f.shape[0]):
            if len(b["boxes"][j]):
                feats.append(f[j])
                targets.append(y[j, 0])
    return feats, targets


def fit_head(feats: Sequence[torch.Tensor], targets: Sequence[torch.Tensor], l2: float = 1e-3,
             iters: int = 200) -> dict[str, Any]:
    """A logistic regression of the targets (``(g, g)`` shares in ``[0, 1]``) on the standardised
    per-pixel features (``(D, g, g)``). Returns ``mean``, ``std``, ``weight``, ``bias``, ``loss``."""
    from scipy.optimize import minimize

    x = torch.cat([f.float().flatten(1).t() for f in feats]).numpy()  # (P, D)
    y = torch.cat([t.float().flatten() for t in targets]).numpy().astype(np.float64)
    mean = x.mean(0)
    std = np.maximum(x.std(0), 1e-4)
    x = ((x - mean) / std).astype(np.float32)
    p = float(len(y))

    def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:-1].astype(np.float32), theta[-1]
        z = (x @ w).astype(np.float64) + b
        # mean binary cross-entropy with soft targets, computed stably, plus the L2 penalty
        loss = np.mean(np.logaddexp(0.0, z) - y * z) + l2 * float(np.dot(w, w))
        r = (1.0 / (1.0 + np.exp(-z)) - y) / p
        g = np.empty_like(theta)
        g[:-1] = (x.T @ r.astype(np.float32)).astype(np.float64) + 2.0 * l2 * w
        g[-1] = r.sum()
        return float(loss), g

    res = minimize(loss_grad, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B",
                   options={"maxiter": iters})
    theta = res.x
    z = x @ theta[:-1].astype(np.float32) + theta[-1]
    loss = float(np.mean(np.logaddexp(0.0, z) - y * z))
    return {"mean": mean.astype(np.float32), "std": std.astype(np.float32),
            "weight": theta[:-1].astype(np.float32), "bias": float(theta[-1]), "loss": loss}


def _score(cache: list[dict[str, Any]], loc: Localizer | None, tta: Any,
           threshold: float | None = None) -> dict[str, Any]:
    """Figures of ``loc`` (``None``: the class map alone) with ``tta`` on cached outputs, computed
    as ``camloc evaluate`` does: MaxBoxAccV2, and GT-known / Top-1 Loc at the best GT-known
    threshold (under ``calibrated``: at ``threshold``), top-1 classification."""
    from camloc.cams.tta import merge_variants
    from camloc.evaluation.batches import EVAL_SIZE
    from camloc.evaluation.evaluate import prepare_scoremap
    from camloc.metrics import LocalizationAccumulator

    acc = LocalizationAccumulator()
    top1s = []
    for b in cache:
        hw = b["hw"]
        plain = (hw[0], hw[1], False)
        variants = tta.variants(hw) if tta is not None else [plain]
        outs = []
        for v in variants:
            cam, feats, lg = b["per"][v]
            if loc is None:
                outs.append((cam, lg))
            else:
                fs = [feats[n] for n in loc.layers]
                outs.append((loc.combine_maps(cam, loc.foreground(fs, cam)), lg))
        if tta is not None:
            logits, maps = merge_variants(outs, variants, hw, tta.logits)
            if logits is None:
                logits = b["per"][plain][2] if plain in b["per"] else outs[0][1]
        else:
            maps, logits = outs[0]
        labels = b["labels"]
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
        top1s.extend((top5[:, 0] == labels).tolist())
        sm = np.stack([prepare_scoremap(c, EVAL_SIZE) for c in maps[:, 0].numpy()])
        acc.update(sm, b["boxes"], top1_correct=(top5[:, 0] == labels).numpy(),
                   top5_correct=(top5 == labels[:, None]).any(dim=1).numpy(), image_ids=b["ids"])
    res = acc.compute()
    thr = float(res["maxboxacc_v1"]["threshold"])
    at = acc.evaluate_at(thr)
    v2 = float(res["maxboxacc_v2"]["value"])
    top1 = float(at["top1_loc"] or 0.0)
    out: dict[str, Any] = {"maxboxacc_v2": round(v2, 3), "top1_loc": round(top1, 3),
                           "gt_known_loc": round(float(at["gt_known_loc"]), 3), "threshold": thr,
                           "score": round(v2 + top1, 3)}
    if threshold is not None:
        cal = acc.evaluate_at(threshold)
        out["calibrated"] = {"threshold": float(cal["threshold"]), "top1_loc": cal["top1_loc"],
                             "gt_known_loc": cal["gt_known_loc"],
                             "top1": 100.0 * float(np.mean(top1s))}
    return out


def fit_localizer(model: Any, dataset: Any, *, kind: str = "head", layers: Sequence[str] | None = None,
                  holdout: float = 0.0, seed: int = 0, method: str = "cam",
                  combines: Sequence[tuple[str, float]] | None = None,
                  ttas: Sequence[str] | None = None, l2: float = 1e-3, batch_size: int = 32,
                  workers: int = 0, log: Callable[[str], None] | None = None,
                  caches: dict[str, Any] | None = None) -> Localizer:
    """Fit a localizer for ``model`` on ``dataset`` (its images with boxes; see the module
    docstring for the protocol). ``holdout``: the share of images left out entirely (their ids
    are recorded, as are the fit images', so evaluate can tell held-out figures from others).

    ``caches``: a dict to share the network's outputs between fits on the same data (benchmarks):
    filled on first use (with the features of ``caches["layers"]`` too, when it names them),
    reused when it holds them.

    Raises:
        DatasetError: fewer than 4 fit images with boxes.
        ConfigError: an unknown kind or combination.
    """
    from camloc.cams import make_method
    from camloc.cams.tta import parse_tta

    say = log or (lambda _m: None)
    t0 = time.perf_counter()
    samples = [s for s in dataset.samples if len(s.boxes) and s.label is not None]
    kept, held = split_ids([s.image_id for s in samples], holdout, seed)
    if len(kept) < 4:
        raise DatasetError(f"{getattr(dataset, 'root', dataset)}: {len(kept)} images with boxes "
                           f"and labels to fit on; a localizer needs at least 4")
    half_a, half_b = split_ids(kept, 0.5, seed + 1)
    index = {s.image_id: i for i, s in enumerate(dataset.samples)}
    sub = lambda ids: dataset.subset(sorted(index[i] for i in ids))  # noqa: E731
    layers = list(layers) if layers else (auto_layers(model) if kind == "head" else
                                          list(model.layers))
    ident = {"name": model.spec.name, "fingerprint": model_fingerprint(model)}
    base = make_method(model, method)
    combines = list(combines or DEFAULT_COMBINES)
    specs = {t: parse_tta(t) for t in (ttas or DEFAULT_TTAS)}  # bad text refused before any work
    want = list(dict.fromkeys(list((caches or {}).get("layers", [])) + layers))
    taps = model.taps(want)

    def all_variants(hw: tuple[int, int]) -> list[tuple[int, int, bool]]:
        vs = {(hw[0], hw[1], False)}
        for spec in specs.values():
            vs |= set(spec.variants(hw)) if spec is not None else set()
        return sorted(vs)

    key = (tuple(kept), method)
    if caches is not None and caches.get("key") == key:
        cache_a, cache_b = caches["a"], caches["b"]
    else:
        say(f"reading {len(kept)} images: features at {', '.join(want)}")
        cache_a = _cache(model, base, sub(half_a), taps, lambda hw: [(hw[0], hw[1], False)],
                         batch_size, workers)
        cache_b = _cache(model, base, sub(half_b), taps, all_variants, batch_size, workers)
        if caches is not None:
            caches.update(key=key, a=cache_a, b=cache_b)
    weights: dict[str, Any] = {}
    if kind == "head":
        head_a = fit_head(*_head_data(cache_a, layers), l2=l2)
        say(f"head fitted on {len(half_a)} images (loss {head_a['loss']:.4f})")
        weights = {k: head_a[k] for k in ("mean", "std", "weight", "bias")}
    loc = Localizer(kind=kind, layers=layers, model=ident, **weights)
    trials: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    for t, spec in specs.items():
        for comb, alpha in combines:
            r = _score(cache_b, loc.with_(combine=comb, alpha=float(alpha)), spec)
            trials.append({"combine": comb, "alpha": float(alpha),
                           "tta": spec.describe() if spec else "none", **r})
            say(f"  {comb} a={alpha} tta={t}: MaxBoxAccV2 {r['maxboxacc_v2']}, Top-1 Loc "
                f"{r['top1_loc']} at {r['threshold']}")
            if best is None or r["score"] > best["score"]:
                best = trials[-1]
    assert best is not None
    if kind == "head":  # the final head: all fit images
        fa, ya = _head_data(cache_a, layers)
        fb, yb = _head_data(cache_b, layers)
        full = fit_head(fa + fb, ya + yb, l2=l2)
        weights = {k: full[k] for k in ("mean", "std", "weight", "bias")}
    fit = {"dataset": str(getattr(dataset, "root", "")), "images": len(samples),
           "holdout": holdout, "seed": seed, "fit_ids": sorted(kept), "heldout_ids": sorted(held),
           "head_ids": sorted(half_a), "choose_ids": sorted(half_b), "method": method,
           "l2": l2, "trials": trials, "chosen": best,
           "seconds": round(time.perf_counter() - t0, 1)}
    return Localizer(kind=kind, layers=layers, model=ident, combine=best["combine"],
                     alpha=float(best["alpha"]), threshold=float(best["threshold"]),
                     tta=str(best["tta"]), fit=fit, **weights)
