"""PNG sheets of units and classes, and the ``units.html`` page that links them.

- ``sheets/unit_KKKK.png``: one column per top image: the image (stretched to the network input)
  with everything outside the unit's region darkened and the ground-truth boxes in red, above the
  crop at the peak (from the original image).
- ``sheets/class_CCCC.png``: one row per top unit of the class (by contribution, or by weight when
  the dataset has no image of the class): its share of the class score and its first top images.
- ``units.html``: the summary figures with their random-unit baselines, each class with its units
  and their sheets, each unit with the classes that use it most (the reverse view). Images are
  files beside it (``sheets/``), so the page stays small for thousands of units.

Sheets are 256-colour PNGs (a quarter of the bytes of RGB ones).
"""

from __future__ import annotations

import html
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from camloc.units.state import UnitsState

__all__ = ["render_sheets", "render_html", "CLASS_SHEET_IMAGES"]

CLASS_SHEET_IMAGES = 6
_BG = (255, 255, 255)
_TEXT = (20, 20, 20)


class _LRU:
    """A small bounded cache: ``get(key, make)``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.data: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any, make: Any) -> Any:
        if key in self.data:
            self.data.move_to_end(key)
            return self.data[key]
        value = self.data[key] = make()
        if len(self.data) > self.size:
            self.data.popitem(last=False)
        return value


def _short(name: str, n: int = 18) -> str:
    first = name.split(",")[0].strip()
    return first if len(first) <= n else first[: n - 1] + "."


def _region_tile(base: np.ndarray, mask: np.ndarray, boxes: np.ndarray, geom: Any,
                 tile: int) -> Any:
    """``base``: the image at the tile size (uint8); ``mask`` at the input size."""
    from PIL import Image, ImageDraw

    hin, win = mask.shape
    small = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(
        (tile, tile), Image.Resampling.BILINEAR)) >= 128
    out = Image.fromarray(np.where(small[:, :, None], base, (base * 0.3).astype(np.uint8)))
    if len(boxes):
        draw = ImageDraw.Draw(out)
        sx, sy = tile / win, tile / hin
        for x0, y0, x1, y1 in geom.to_input_boxes(boxes):
            draw.rectangle([x0 * sx, y0 * sy, x1 * sx - 1, y1 * sy - 1], outline=(230, 30, 30))
    return out


def _crop_tile(img: Any, crop: list[float], tile: int) -> Any:
    from PIL import Image

    x0, y0, x1, y1 = crop
    return img.crop((int(x0), int(y0), max(int(round(x1)), int(x0) + 1),
                     max(int(round(y1)), int(y0) + 1))).resize((tile, tile),
                                                              Image.Resampling.BICUBIC)


def _unit_masks(state: UnitsState, k: int, thr: float, size: tuple[int, int]) -> np.ndarray:
    from camloc.cams import upsample

    up = upsample(state.top.maps[k][None].float(), size, "bicubic")[0]
    return (up > thr).cpu().numpy()


def _text_strip(text: str, width: int, height: int = 16) -> Any:
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (width, height), _BG)
    ImageDraw.Draw(strip).text((3, 2), text, fill=_TEXT)
    return strip


def render_sheets(report: dict[str, Any], state: UnitsState, items: list[Any], preprocess: Any,
                  out: str | os.PathLike[str], tile: int = 96) -> dict[str, list[str]]:
    """Write the sheets of ``report["gallery_units"]`` and of every class of the report into
    ``out/sheets``; return the relative paths written. Memory is bounded (small caches of decoded
    images and of units' tiles)."""
    from PIL import Image

    from camloc.data.images import load_image
    from camloc.errors import ImageError
    from camloc.io import atomic_open, make_out_dir

    make_out_dir(out, "sheets")  # a link there (to a folder elsewhere) is refused
    units = report["units"]
    size = tuple(preprocess.input_size)
    images = _LRU(512)  # index -> (original, its stretch to the tile) or None
    unit_rows = _LRU(256)  # unit -> [(region tile, crop tile, record)]
    gallery = set(report["gallery_units"])
    written: dict[str, list[str]] = {"units": [], "classes": []}

    def image(index: int) -> Any:
        def make() -> Any:
            try:
                img = load_image(items[index].path)
            except ImageError:
                return None
            return img, np.asarray(img.resize((tile, tile), Image.Resampling.BILINEAR))
        return images.get(index, make)

    def save(img: Any, rel: str) -> None:
        # 256 adaptive colours: a quarter of the bytes of RGB, and faster to encode
        pal = img.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
        with atomic_open(Path(out) / rel, "wb") as fh:
            pal.save(fh, format="PNG", compress_level=6)

    def rows_of(k: int) -> list[tuple[Any, Any, dict[str, Any]]]:
        def make() -> list[tuple[Any, Any, dict[str, Any]]]:
            recs = units[k]["top_images"]
            masks = _unit_masks(state, k, units[k]["threshold"], size)  # (m, H, W)
            got = []
            for j, r in enumerate(recs):
                loaded = image(r["index"])
                if loaded is None:
                    continue
                img, base = loaded
                geom = preprocess.geometry(*img.size)
                got.append((_region_tile(base, masks[j], items[r["index"]].boxes, geom, tile),
                            _crop_tile(img, r["crop_box"], tile), r))
            if k in gallery and got:
                save(_unit_sheet(units[k], got, tile), f"sheets/unit_{k:04d}.png")
                written["units"].append(f"sheets/unit_{k:04d}.png")
            return got
        return unit_rows.get(k, make)

    for c in report["classes"]:
        ranked = c.get("by_contribution") or c["by_weight"]
        rows = [(e, [t for t, _, _ in rows_of(e["unit"])[:CLASS_SHEET_IMAGES]]) for e in ranked]
        save(_class_sheet(c, rows, tile), f"sheets/class_{c['class']:04d}.png")
        written["classes"].append(f"sheets/class_{c['class']:04d}.png")
    done = set(written["units"])
    for k in report["gallery_units"]:
        if f"sheets/unit_{k:04d}.png" not in done:
            rows_of(k)
    return written


def _unit_sheet(u: dict[str, Any], got: list[tuple[Any, Any, dict[str, Any]]], tile: int) -> Any:
    from PIL import Image

    head = f"unit {u['unit']}  T={u['threshold']:.3g}"
    if u.get("purity") is not None:
        head += f"  purity {u['purity']:.2f}"
    if u.get("partness"):
        head += f"  inside box {u['partness']['inside']:.2f}"
    sheet = Image.new("RGB", (len(got) * (tile + 4) + 4, 2 * tile + 48), _BG)
    sheet.paste(_text_strip(head, sheet.width), (0, 0))
    for j, (region, crop, r) in enumerate(got):
        x = 4 + j * (tile + 4)
        sheet.paste(region, (x, 16))
        sheet.paste(crop, (x, 18 + tile))
        name = r.get("label_name")
        cap = f"#{r['rank']} " + (_short(name, 12) if name else f"peak {r['peak']:.2f}")
        sheet.paste(_text_strip(cap, tile, 14), (x, 20 + 2 * tile))
    return sheet


def _class_sheet(c: dict[str, Any], rows: list[tuple[dict[str, Any], list[Any]]],
                 tile: int) -> Any:
    from PIL import Image

    label_w = 116
    width = label_w + CLASS_SHEET_IMAGES * (tile + 4) + 4
    sheet = Image.new("RGB", (width, 18 + len(rows) * (tile + 4)), _BG)
    sheet.paste(_text_strip(f"{c['name'][:60]} ({c['class']}), {c['images']} images", width, 18),
                (0, 0))
    for i, (e, row_tiles) in enumerate(rows):
        y = 18 + i * (tile + 4)
        lines = [f"unit {e['unit']}", f"w {e['weight']:.3f}"]
        if e.get("share") is not None:
            lines.append(f"share {100 * e['share']:.1f}%")
        if e.get("class_hits") is not None:
            lines.append(f"own images {e['class_hits']}")
        for li, text in enumerate(lines):
            sheet.paste(_text_strip(text, label_w - 4, 14), (2, y + 4 + 15 * li))
        for j, t in enumerate(row_tiles):
            sheet.paste(t, (label_w + j * (tile + 4), y))
    return sheet


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _baseline(d: dict[str, Any] | None) -> str:
    if not d or d.get("mean") is None:
        return "n/a"
    return f"{_pct(d['mean'])} (90% of random sets: {_pct(d['p05'])} to {_pct(d['p95'])})"


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, value, random-unit baseline) rows for the page and the terminal."""
    s = report.get("summary", {})
    rows = []
    if "top_share" in s:
        t = s["top_share"]
        rows.append((f"share of the class score carried by its top {t['top_units']} units "
                     f"(mean over {s['classes_with_images']} classes)",
                     f"{_pct(t['mean'])} (ranked by weight alone: {_pct(t['by_weight_mean'])})",
                     _baseline(t["random_units"])))
    if "class_purity" in s:
        p = s["class_purity"]
        rows.append((f"class purity: the class's own images among its units' top images "
                     f"({p['units']} class-unit pairs)", _pct(p["mean"]),
                     f"{_baseline(p['random_units'])}; chance {_pct(p['chance'])}"))
    if "purity" in s:
        p = s["purity"]
        rows.append((f"unit purity ({p['units']} class-top units)", _pct(p["mean"]),
                     f"{_baseline(p['random_units'])}; chance {_pct(p['chance'])}"))
    if "partness" in s:
        p = s["partness"]
        rows.append((f"region inside the object box ({p['units']} class-top units)",
                     _pct(p["inside"]),
                     f"{_baseline(p['random_units'])}; box share of image {_pct(p['chance'])}"))
        if p.get("coverage") is not None:
            rows.append(("share of the object box the region covers", _pct(p["coverage"]),
                         _baseline(p["coverage_random_units"])))
    return rows


def render_html(report: dict[str, Any], sheets: dict[str, list[str]]) -> str:
    """The ``units.html`` page (links the sheets written by :func:`render_sheets`)."""
    esc = html.escape
    m, d = report["model"], report["dataset"]
    have = set(sheets.get("units", [])) | set(sheets.get("classes", []))
    shown = set(report["gallery_units"])
    title = f"camloc units: {m['name']} on {d['name']}"
    p = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>",
         "<style>body{font-family:system-ui,sans-serif;margin:24px;max-width:1300px}"
         "table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ccc;padding:3px 8px;"
         "text-align:left;font-size:13px}.k{color:#555;font-size:13px}img{max-width:100%}"
         "h3{margin-bottom:4px}</style>", f"</head><body><h1>{esc(title)}</h1>"]
    p.append(f"<p class='k'>{d['images']} images ({report['counts']['scored']} scored, "
             f"{report['counts']['failed']} failed); {m['units']} units of a {m['map_size'][0]}x"
             f"{m['map_size'][1]} map; region = upsampled map above the unit's top "
             f"{100 * report['settings']['quantile']:.2g}% activation over the dataset. "
             f"{esc(d.get('note') or '')}</p>")
    rows = summary_rows(report)
    if rows:
        p.append("<table><tr><th>figure</th><th>value</th><th>random units</th></tr>")
        for a, b, c in rows:
            p.append(f"<tr><td>{esc(a)}</td><td>{esc(b)}</td><td>{esc(c)}</td></tr>")
        p.append("</table>")
    if report["classes"]:
        p.append("<h2>Classes</h2><p>" + " &middot; ".join(
            f"<a href='#class-{c['class']}'>{esc(_short(c['name'], 30))}</a>"
            for c in report["classes"]) + "</p>")
    for c in report["classes"]:
        p.append(f"<h3 id='class-{c['class']}'>{esc(c['name'])} (class {c['class']}, "
                 f"{c['images']} images)</h3>")
        if "top_share" in c:
            p.append(f"<p class='k'>mean logit {c['mean_logit']:.3f} = units "
                     f"{c['score_from_units']:.3f} + bias {c['mean_bias']:.3f}; top units carry "
                     f"{_pct(c['top_share'])} of the units' part (random units "
                     f"{_baseline(c['random_share'])})</p>")
        ranked = c.get("by_contribution") or c["by_weight"]
        p.append("<table><tr><th>unit</th><th>weight</th><th>mean activation</th>"
                 "<th>contribution</th><th>share</th><th>own images in its top images</th></tr>")
        for e in ranked:
            p.append(f"<tr><td><a href='#unit-{e['unit']}'>{e['unit']}</a></td>"
                     f"<td>{e['weight']:.4f}</td><td>{e.get('mean_activation', '')}</td>"
                     f"<td>{e.get('contribution', '')}</td><td>{_pct(e.get('share'))}</td>"
                     f"<td>{e.get('class_hits', '')}</td></tr>")
        p.append("</table>")
        if "by_contribution" in c:
            p.append("<p class='k'>by weight alone: " + ", ".join(
                (f"<a href='#unit-{e['unit']}'>{e['unit']}</a>" if e["unit"] in shown
                 else str(e["unit"])) + f" ({_pct(e.get('share'))})"
                for e in c["by_weight"]) + "</p>")
        rel = f"sheets/class_{c['class']:04d}.png"
        if rel in have:
            p.append(f"<img src='{rel}' loading='lazy'>")
    p.append("<h2>Units</h2>")
    units = report["units"]
    for k in report["gallery_units"]:
        u = units[k]
        p.append(f"<h3 id='unit-{k}'>unit {k}</h3><p class='k'>threshold {u['threshold']:.4g}")
        if u.get("purity") is not None:
            p.append(f"; purity {_pct(u['purity'])} (chance {_pct(u['purity_chance'])})")
        if u.get("partness"):
            q = u["partness"]
            p.append(f"; region inside the box {_pct(q['inside'])} (box share {_pct(q['chance'])})")
        p.append("</p><table><tr><th>classes by weight</th><th>classes by contribution</th>"
                 "<th>labels of its top images</th></tr><tr>")
        for key, val in (("classes_by_weight", "weight"), ("classes_by_contribution", "share"),
                         ("top_image_labels", "count")):
            cells = [f"{esc(_short(e['name'], 24))} ({e[val] if val != 'share' else _pct(e[val])})"
                     for e in u.get(key, [])]
            p.append("<td>" + "<br>".join(cells) + "</td>")
        p.append("</tr></table>")
        rel = f"sheets/unit_{k:04d}.png"
        if rel in have:
            p.append(f"<img src='{rel}' loading='lazy'>")
    p.append("<h2>Settings and versions</h2><pre>")
    keep = {key: report[key] for key in ("model", "dataset", "settings", "exactness", "versions")}
    p.append(esc(json.dumps(keep, indent=2, default=str)))
    p.append("</pre></body></html>")
    return "".join(p)

