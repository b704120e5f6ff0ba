"""compare.json / compare.md / compare.html: the figures of every method, a table, a gallery.

Table columns (per method): MaxBoxAccV2 (threshold-free), Top-1 Loc and GT-known Loc at the
calibrated threshold (``tau``; the fixed 0.2 when no calibration was given), GT-known Loc at the
best threshold *on the test split itself* (optimistic, shown for contrast), PxAP where masks exist,
Average Drop (lower is better) and Increase in Confidence (higher), deletion AUC (lower) and
insertion AUC (higher), ROAD MoRF mean score (lower) and LeRF mean score (higher), and seconds per
image for the maps (all TTA variants included).

The gallery shows the images on which the methods disagree most: per image, the spread
(max - min) of the methods' IoU at their thresholds; columns are methods, each cell the map with
the predicted box (green) and the GT boxes (red).
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from camloc.compare.run import EVAL_SIZE, CompareState, MethodState
from camloc.defaults import DEFAULT_THRESHOLD

__all__ = ["build_compare_report", "markdown_table", "disagreements", "render_html",
           "write_outputs"]


def _method_report(st: MethodState) -> dict[str, Any]:
    out: dict[str, Any] = {"images": st.images, "threshold": st.threshold,
                           "seconds_per_image": {
                               "maps": st.map_seconds / st.images if st.images else None,
                               "faithfulness": (st.faith_seconds / st.faith_images
                                                if st.faith_images else None)},
                           "faithfulness_images": st.faith_images}
    if st.localization is not None and st.localization.count:
        loc = st.localization.compute(threshold=st.threshold)
        loc.pop("curves", None)
        cal = loc.pop("calibrated")
        out["localization"] = {
            "maxboxacc_v2": loc["maxboxacc_v2"],
            "maxboxacc_v1": loc["maxboxacc_v1"],
            "calibrated": cal,
            "best_on_test": {k: {"value": loc[k]["best"], "threshold": loc[k]["best_threshold"]}
                             for k in ("gt_known_loc", "top1_loc", "top5_loc")},
        }
    if st.pxap is not None and st.pxap.count:
        px = st.pxap.compute()
        out["pxap"] = {k: v for k, v in px.items() if k != "curves"}
        out["pxap"]["calibrated"] = st.pxap.evaluate_at(st.threshold)
    if st.average_drop is not None and st.average_drop.count:
        ad = st.average_drop.compute()
        di = st.deletion.compute()
        rd = st.road.compute()
        out["faithfulness"] = {
            "average_drop": ad["average_drop"],
            "increase_in_confidence": ad["increase_in_confidence"],
            "deletion_auc": di["deletion_auc"],
            "insertion_auc": di["insertion_auc"],
            "road_morf": rd["morf"]["mean_score"],
            "road_lerf": rd["lerf"]["mean_score"],
            "road_morf_accuracy": rd["morf"]["mean_accuracy"],
            "road_lerf_accuracy": rd["lerf"]["mean_accuracy"],
            "road_combined": rd["combined"],
            "road_percentiles": rd["percentiles"],
            "deletion_insertion_steps": di["n_steps"],
        }
    return out


def disagreements(state: CompareState, n: int) -> list[dict[str, Any]]:
    """The ``n`` images with the largest spread of the methods' IoUs (ties: by image id)."""
    per: dict[str, dict[str, Any]] = {}
    for name, st in state.methods.items():
        if st.localization is None:
            return []
        for rec in st.localization.per_image:
            per.setdefault(rec["image_id"], {})[name] = rec
    rows = []
    for image_id, recs in per.items():
        if len(recs) != len(state.methods):
            continue
        ious = {m: float(r["iou"]) for m, r in recs.items()}
        rows.append({"image_id": image_id, "spread": max(ious.values()) - min(ious.values()),
                     "iou": ious, "box": {m: r["box"] for m, r in recs.items()}})
    rows.sort(key=lambda r: (-r["spread"], r["image_id"]))
    return rows[:max(0, n)]


def build_compare_report(state: CompareState, model: Any, dataset: Any, settings: dict[str, Any],
                         calibration: dict[str, Any] | None, gallery: int = 6) -> dict[str, Any]:
    """The compare.json dict: dataset, model, settings, calibration, per-method figures, the
    gallery's image list, failures and versions."""
    from camloc.io import versions

    report: dict[str, Any] = {
        "dataset": {"name": getattr(dataset, "name", ""), "root": str(getattr(dataset, "root", "")),
                    "format": getattr(dataset, "format", ""),
                    "split": getattr(dataset, "split", None), "images": len(dataset.samples),
                    "num_classes": dataset.num_classes},
        "model": ({"name": model.spec.name, "source": model.spec.source} if model is not None
                  else None),
        "protocol": {"name": "wsol", "eval_size": EVAL_SIZE, "resize": "stretch, no crop",
                     "cam_resize": "cv2 INTER_CUBIC", "normalization": "minmax",
                     "faithfulness_maps": "the same map at the model's input size"},
        "settings": settings,
        "calibration": calibration or {"source": "none: Loc figures at the fixed threshold "
                                                 f"{settings.get('fixed_threshold', DEFAULT_THRESHOLD)}"},
        "counts": {"scored": state.images, "failed": len(state.failed)},
        "seconds": round(state.seconds, 3),
        "methods": {name: _method_report(st) for name, st in state.methods.items()},
        "versions": versions(),
    }
    if state.classification.count:
        report["classification"] = state.classification.compute()
    report["gallery"] = disagreements(state, gallery)
    if state.failed:
        report["failed"] = state.failed[:100]
    return report


def _f(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    return f"{float(v):.{digits}f}"


COLUMNS = ("method", "MaxBoxAccV2", "Top-1 Loc", "GT-known Loc", "tau", "GT-known (best on test)",
           "PxAP", "Avg Drop ↓", "Increase ↑", "Deletion ↓", "Insertion ↑", "ROAD MoRF ↓",
           "ROAD LeRF ↑", "s/img")


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    """One row of strings per method, in :data:`COLUMNS` order."""
    rows = []
    for name, r in report["methods"].items():
        loc = r.get("localization") or {}
        cal = loc.get("calibrated") or {}
        best = (loc.get("best_on_test") or {}).get("gt_known_loc") or {}
        fa = r.get("faithfulness") or {}
        px = r.get("pxap") or {}
        rows.append([
            name, _f((loc.get("maxboxacc_v2") or {}).get("value")), _f(cal.get("top1_loc")),
            _f(cal.get("gt_known_loc")), _f(cal.get("threshold")),
            f"{_f(best.get('value'))} @ {_f(best.get('threshold'))}" if best else "-",
            _f(px.get("pxap")), _f(fa.get("average_drop")), _f(fa.get("increase_in_confidence")),
            _f(fa.get("deletion_auc"), 3), _f(fa.get("insertion_auc"), 3), _f(fa.get("road_morf"), 3),
            _f(fa.get("road_lerf"), 3), _f(r["seconds_per_image"]["maps"], 3)])
    return rows


def markdown_table(report: dict[str, Any]) -> str:
    """compare.md: a header naming the data, calibration and TTA, then the table."""
    s = report["settings"]
    cal = report["calibration"]
    lines = [f"# camloc compare: {report['dataset']['name']}"
             f"{' (' + str(report['dataset']['split']) + ')' if report['dataset']['split'] else ''}",
             "",
             f"- model: {(report.get('model') or {}).get('name', '?')}; images scored: "
             f"{report['counts']['scored']} (failed {report['counts']['failed']}); "
             f"faithfulness on the first {_faith_n(report)} image(s)",
             f"- TTA: {s.get('tta', 'none')}; layer: {s.get('layer') or 'default'}"
             + (f"; left out (they need a GAP -> linear head): {', '.join(s['skipped_methods'])}"
                if s.get("skipped_methods") else ""),
             f"- threshold calibration: {cal.get('source')}",
             "- Top-1 / GT-known Loc at the calibrated threshold tau; 'best on test' picks tau on the "
             "scored images themselves (optimistic, see docs/compare.md)",
             ""]
    if "classification" in report:
        c = report["classification"]
        lines.insert(3, f"- classification top-1 / top-5: {_f(c.get('top1'))} / {_f(c.get('top5'))}")
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "---|" * len(COLUMNS))
    for row in table_rows(report):
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    return "\n".join(lines)


def _faith_n(report: dict[str, Any]) -> str:
    ns = {r.get("faithfulness_images") for r in report["methods"].values()}
    return ", ".join(str(n) for n in sorted(ns))


def render_html(report: dict[str, Any], cells: dict[str, dict[str, str]]) -> str:
    """compare.html: the table, then the gallery (``cells[image_id][method]`` = PNG file name)."""
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>"
                   for row in table_rows(report))
    md_head = markdown_table(report).split("| method")[0]
    notes = "".join(f"<li>{esc(line[2:])}</li>" for line in md_head.splitlines()
                    if line.startswith("- "))
    methods = list(report["methods"])
    gal = ""
    if report.get("gallery") and cells:
        ghead = "<th>image</th>" + "".join(f"<th>{esc(m)}</th>" for m in methods)
        grows = []
        for row in report["gallery"]:
            files = cells.get(row["image_id"], {})
            tds = "".join(
                f"<td><img src='{esc(files[m])}' width='{EVAL_SIZE}'><br>IoU {row['iou'][m]:.2f}</td>"
                if m in files else "<td>-</td>" for m in methods)
            grows.append(f"<tr><td>{esc(row['image_id'])}<br>spread {row['spread']:.2f}</td>{tds}"
                         "</tr>")
        gal = ("<h2>Where the methods disagree most</h2><p>Rows: the images with the largest spread "
               "of IoU between methods; green: the method's box at its threshold; red: GT.</p>"
               f"<table><tr>{ghead}</tr>{''.join(grows)}</table>")
    title = esc(f"camloc compare: {report['dataset']['name']}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>"
            "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 6px;text-align:right;font-size:13px}"
            "th{background:#f3f3f3}img{display:block}</style></head><body>"
            f"<h1>{title}</h1><ul>{notes}</ul><table><tr>{head}</tr>{body}</table>{gal}"
            "</body></html>\n")


def render_cells(report: dict[str, Any], dataset: Any, scoremap_for: Callable[[Any, str], np.ndarray],
                 folder: Path) -> dict[str, dict[str, str]]:
    """Write one PNG per gallery image and method under ``folder``; returns the relative names."""
    from camloc.evaluation.gallery import readable_samples
    from camloc.io import atomic_open, make_out_dir
    from camloc.metrics import rescale_gt_boxes
    from camloc.viz import overlay

    cells: dict[str, dict[str, str]] = {}
    if report.get("gallery"):
        make_out_dir(folder, "gallery")  # a link there (to a folder elsewhere) is refused
    for r, row, sample, image in readable_samples(report.get("gallery") or [], dataset):
        size = sample.size if sample.size is not None else image.size
        gt = rescale_gt_boxes(sample.boxes, size, (EVAL_SIZE, EVAL_SIZE))
        gt_boxes = [(b[0], b[1], b[2] + 1, b[3] + 1) for b in gt.tolist()]
        small = image.convert("RGB").resize((EVAL_SIZE, EVAL_SIZE))
        for method, box in row["box"].items():
            sm = scoremap_for(sample, method)
            x0, y0, x1, y1 = box
            img = overlay(small, sm, box=(x0, y0, x1 + 1, y1 + 1), gt_boxes=gt_boxes)
            name = f"gallery/{r:02d}_{_safe(method)}.png"
            with atomic_open(folder / name) as fh:
                img.save(fh, format="PNG")
            cells.setdefault(row["image_id"], {})[method] = name
    return cells


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def write_outputs(out: str | os.PathLike[str], report: dict[str, Any],
                  cells: dict[str, dict[str, str]]) -> tuple[Path, Path, Path]:
    """Write compare.json, compare.md and compare.html into ``out`` (atomically)."""
    from camloc.io import atomic_write_json, atomic_write_text

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "compare.json", folder / "compare.md", folder / "compare.html"
    atomic_write_json(paths[0], report)
    atomic_write_text(paths[1], markdown_table(report))
    atomic_write_text(paths[2], render_html(report, cells))
    return paths
