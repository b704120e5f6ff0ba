"""``report.html``: the evaluation figures, curves, an IoU histogram and a best/worst gallery.

Self-contained (plots are embedded PNGs), written atomically next to ``report.json``.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from camloc.io import atomic_write_json, atomic_write_text

__all__ = ["write_report", "render_html", "figure_rows"]


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _img_png(image: Any) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def figure_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(figure, value) rows of the headline numbers, for HTML and the terminal alike."""
    rows: list[tuple[str, str]] = []
    cls = report.get("classification") or {}
    if cls:
        rows.append(("Top-1 / Top-5 classification", f"{cls.get('top1', float('nan')):.2f} / "
                                                     f"{cls.get('top5', float('nan')):.2f}"))
    loc = report.get("localization") or {}
    for key, name in (("gt_known_loc", "GT-known Loc"), ("top1_loc", "Top-1 Loc"),
                      ("top5_loc", "Top-5 Loc")):
        if key in loc and loc[key].get("at_fixed") is not None:
            d = loc[key]
            rows.append((f"{name} (IoU 0.5)",
                         f"{d['at_fixed']:.2f} at tau={d['fixed_threshold']:.2f}; best "
                         f"{d['best']:.2f} at tau={d['best_threshold']:.2f}"))
    if "maxboxacc_v1" in loc:
        d = loc["maxboxacc_v1"]
        rows.append(("MaxBoxAcc (V1, IoU 0.5)", f"{d['value']:.2f} at tau={d['threshold']:.2f}"))
    if "maxboxacc_v2" in loc:
        d = loc["maxboxacc_v2"]
        per = d.get("per_iou", {})
        parts = " / ".join(f"{per[k]['value']:.2f}" for k in sorted(per, key=lambda s: int(s)))
        taus = " / ".join(f"{per[k]['threshold']:.2f}" for k in sorted(per, key=lambda s: int(s)))
        rows.append(("MaxBoxAccV2 (IoU 0.3/0.5/0.7)", f"{d['value']:.2f} ({parts}; best tau {taus})"))
    cal = loc.get("calibrated")
    if cal:
        parts = [f"GT-known {cal['gt_known_loc']:.2f}"]
        if cal.get("top1_loc") is not None:
            parts.append(f"Top-1 {cal['top1_loc']:.2f}")
        if cal.get("top5_loc") is not None:
            parts.append(f"Top-5 {cal['top5_loc']:.2f}")
        parts.append(f"BoxAccV2 {cal['boxacc_v2']['value']:.2f}")
        rows.append((f"Calibrated tau={cal['threshold']:.2f} (from another split)", ", ".join(parts)))
    px = report.get("pxap") or {}
    if px:
        rows.append(("PxAP", f"{px.get('pxap', float('nan')):.2f}"))
        if "piou" in px:
            rows.append(("PIoU", f"{px['piou']:.2f} at tau={px.get('piou_threshold', float('nan')):.2f}"))
    counts = report.get("counts") or {}
    if counts:
        rows.append(("Images scored / failed", f"{counts.get('scored')} / {counts.get('failed')}"))
    if report.get("images_per_second"):
        rows.append(("Throughput", f"{report['images_per_second']:.1f} images/s"))
    return rows


def _curves(report: dict[str, Any]) -> str | None:
    loc = report.get("localization") or {}
    curves = loc.get("curves")
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thr = np.asarray(curves["thresholds"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, key, title in ((axes[0], "v1", "largest contour (V1)"), (axes[1], "v2", "all contours (V2)")):
        for iou, ys in sorted((curves.get(key) or {}).items(), key=lambda kv: int(kv[0])):
            ax.plot(thr, ys, label=f"IoU >= {int(iou) / 100:.1f}")
        ax.set_title(f"Box accuracy vs CAM threshold: {title}")
        ax.set_xlabel("CAM threshold tau")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("box accuracy (%)")
    return _png(fig)


def _histogram(ious: Sequence[float], fixed: float | None) -> str | None:
    if not len(ious):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(np.asarray(ious, float), bins=np.linspace(0, 1, 21), color="#3b7dd8", edgecolor="white")
    ax.axvline(0.5, color="k", ls="--", lw=1)
    ax.set_xlabel("IoU of the predicted box with the best GT box")
    ax.set_ylabel("images")
    ax.set_title(f"IoU histogram (V1 box at tau = {fixed})" if fixed is not None else "IoU histogram")
    return _png(fig)


def render_html(report: dict[str, Any], ious: Sequence[float] = (),
                gallery: Sequence[dict[str, Any]] = ()) -> str:
    """Build the HTML page. ``gallery`` items: {"image": PIL.Image, "title": str}."""
    esc = html.escape
    title = f"camloc report: {report.get('model', {}).get('name', 'maps')} on " \
            f"{report.get('dataset', {}).get('name', '')}"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
             "<style>body{font-family:system-ui,sans-serif;margin:24px;max-width:1200px}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px;"
             "text-align:left}.g{display:flex;flex-wrap:wrap;gap:10px}.g figure{margin:0}"
             "figcaption{font-size:12px;max-width:300px}.k{color:#555;font-size:13px}</style>",
             f"</head><body><h1>{esc(title)}</h1>"]
    proto = report.get("protocol", {})
    parts.append(f"<p class='k'>protocol: {esc(str(proto.get('name')))}, threshold interval "
                 f"{esc(str(proto.get('cam_curve_interval')))}, {esc(str(proto.get('resize', '')))}; "
                 f"GT boxes red, predicted boxes green.</p>")
    parts.append("<table><tr><th>figure</th><th>value</th></tr>")
    for name, value in figure_rows(report):
        parts.append(f"<tr><td>{esc(name)}</td><td>{esc(value)}</td></tr>")
    parts.append("</table>")
    curves = _curves(report)
    if curves:
        parts.append(f"<h2>Accuracy vs threshold</h2><img src='{curves}'>")
    loc = report.get("localization") or {}
    hist = _histogram(ious, (loc.get("gt_known_loc") or {}).get("fixed_threshold"))
    if hist:
        parts.append(f"<h2>IoU distribution</h2><img src='{hist}'>")
    for heading, items in (("Best localizations", [g for g in gallery if g.get("group") == "best"]),
                           ("Worst localizations", [g for g in gallery if g.get("group") == "worst"])):
        if items:
            parts.append(f"<h2>{heading}</h2><div class='g'>")
            for g in items:
                parts.append(f"<figure><img src='{_img_png(g['image'])}' width='300'>"
                             f"<figcaption>{esc(g['title'])}</figcaption></figure>")
            parts.append("</div>")
    parts.append("<h2>Settings and versions</h2><pre>")
    keep = {k: report[k] for k in ("model", "dataset", "protocol", "counts", "versions") if k in report}
    import json

    parts.append(esc(json.dumps(keep, indent=2, default=str)))
    parts.append("</pre></body></html>")
    return "".join(parts)


def write_report(out: str | os.PathLike[str], report: dict[str, Any], ious: Sequence[float] = (),
                 gallery: Sequence[dict[str, Any]] = ()) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``out`` (atomically)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.html", render_html(report, ious, gallery))
    return out / "report.json", out / "report.html"
