"""Rendering a probe report: confusion-matrix PNG and a short markdown summary."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from camloc.io import atomic_write_bytes, clean_text

__all__ = ["plot_confusion", "render_markdown"]


def plot_confusion(cm: np.ndarray, class_names: Sequence[str], path: str | os.PathLike[str],
                   title: str = "confusion matrix") -> Path:
    """Write a confusion matrix (rows: truth, columns: prediction; cells: counts, coloured by
    row-normalised rate) as a PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    cm = np.asarray(cm, dtype=np.int64)
    n = cm.shape[0]
    rates = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    side = float(np.clip(1.0 + 0.45 * n, 4.0, 16.0))
    fig = Figure(figsize=(side + 1.5, side))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    # clean_text: a class folder whose name is not UTF-8 (lone surrogates) would crash the renderer
    labels = [clean_text(str(c))[:24] for c in class_names]
    ax.set_xticks(range(n), labels, rotation=45 if n > 3 else 0, ha="right" if n > 3 else "center",
                  fontsize=8 if n > 10 else 10)
    ax.set_yticks(range(n), labels, fontsize=8 if n > 10 else 10)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(clean_text(title), fontsize=10)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if rates[i, j] > 0.5 else "black")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100.0 * float(v):.2f}"


def render_markdown(report: dict[str, Any]) -> str:
    """A short human summary of a probe report."""
    ds, m, sp, pr = report["dataset"], report["model"], report["split"], report["probe"]
    lines = [
        f"# camloc probe: {ds.get('name')}",
        "",
        f"- backbone: `{m['name']}` (weights: {m['weights']}, features: {m['feature_dim']})",
        f"- classes ({len(ds['class_names'])}): {', '.join(ds['class_names'][:20])}"
        f"{' ...' if len(ds['class_names']) > 20 else ''}",
        f"- split: {sp['kind']}; {sp['n_train']} training / {sp['n_test']} held-out images",
        f"- probe: {pr['classifier']}, C = {pr['C']:g}"
        + (f" (cross-validated over {len(pr['cv_scores'])} values, {pr['cv_folds']} folds)"
           if pr.get("cv_scores") else ""),
        f"- training accuracy: {_pct(pr['train_accuracy'])}%",
    ]
    feats = report["features"]
    lines.append(f"- features: {feats['computed']} computed, {feats['reused']} from cache"
                 + (f", {len(feats['failed'])} unreadable images skipped (errors.jsonl)"
                    if feats["failed"] else ""))
    for w in pr.get("warnings") or []:
        lines.append(f"- warning: {w}")
    ho = report.get("heldout")
    if ho:
        lines += ["", "## Held-out classification", "",
                  f"Accuracy: **{_pct(ho['accuracy'])}%** on {ho['n']} images "
                  "(confusion matrix: `confusion.png`).", "",
                  "| class | images | accuracy (%) |", "|---|---:|---:|"]
        for (name, acc), sup in zip(ho["per_class_accuracy"].items(), ho["support"]):
            lines.append(f"| {name} | {sup} | {_pct(acc)} |")
    loc = report.get("localization")
    if loc:
        lines += ["", "## Held-out localization (probe CAMs of the ground-truth class)", "",
                  "wsol protocol (224 x 224, min-max maps, IoU with the +1 convention); %.", "",
                  "| metric | value | threshold |", "|---|---:|---:|"]
        for key, label in (("gt_known_loc", "GT-known Loc"), ("top1_loc", "Top-1 Loc")):
            d = loc.get(key) or {}
            if d.get("at_fixed") is not None:
                lines.append(f"| {label} (fixed) | {d['at_fixed']:.2f} | {d['fixed_threshold']} |")
                lines.append(f"| {label} (best) | {d['best']:.2f} | {d['best_threshold']} |")
        for key, label in (("maxboxacc_v1", "MaxBoxAcc (V1)"), ("maxboxacc_v2", "MaxBoxAccV2")):
            d = loc.get(key) or {}
            if d.get("value") is not None:
                lines.append(f"| {label} | {d['value']:.2f} | {d.get('threshold', '')} |")
        cb = report.get("centre_box_baseline") or {}
        if cb.get("gt_known_loc") is not None:
            lines.append(f"| centre-box baseline, GT-known Loc | {cb['gt_known_loc']:.2f} | |")
    elif report.get("localization_note"):
        lines += ["", f"Localization: {report['localization_note']}."]
    lines += ["", f"Head: `{report['head']}` — use it with "
                  f"`camloc explain --model {m['name']} --head {report['head']} IMAGES`.", ""]
    return "\n".join(lines)
