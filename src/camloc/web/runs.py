"""The evaluation-runs browser behind ``camloc serve --runs DIR``.

A *run* is a folder under ``DIR`` holding a ``report.json`` written by ``camloc evaluate`` or
``camloc score``. The browser lists them with their headline figures, returns a run's report and
its per-image records (``image_id``, ``iou``, predicted ``box`` at evaluation size, read from
``report["per_image"]``, ``report["localization"]["per_image"]`` or a ``per_image.jsonl`` beside
the report), and one image with its ground-truth and predicted boxes.

What it serves, and nothing else:

- files under ``DIR``: every requested path is resolved (symbolic links followed) and refused
  unless it is still inside ``DIR``; absolute paths, ``..`` parts and NUL bytes are refused before
  that;
- the images of the dataset a report names (``report["dataset"]``), only by image id as listed in
  that dataset's metadata, only when the file resolves inside the dataset's root, decoded as an
  image and re-encoded as JPEG (so nothing but image content leaves).

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> safe_join(root, "../etc/passwd")
Traceback (most recent call last):
...
camloc.web.runs.PathRefused: '..' is not allowed in a path
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
import threading
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = ["PathRefused", "RunsIndex", "safe_join", "REPORT_NAME", "PER_IMAGE_NAME"]

REPORT_NAME = "report.json"
PER_IMAGE_NAME = "per_image.jsonl"
MANIFEST_NAME = "manifest.json"  # an explain run's (``camloc explain``, or a batch upload)
RESULTS_NAME = "results.jsonl"
MAX_RUNS = 1000
MAX_DEPTH = 8
MAX_REPORT_BYTES = 256 * 1024 * 1024
MAX_PER_IMAGE_BYTES = 512 * 1024 * 1024
IOU_CORRECT = 0.5
MAX_MAP_BYTES = 64 * 1024 * 1024


class PathRefused(Exception):
    """A request for something the runs browser does not serve; ``status`` is the HTTP code."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def safe_join(root: Path, rel: str) -> Path:
    """``root / rel`` resolved, or :class:`PathRefused` if it would leave ``root`` or not exist.

    ``root`` must already be resolved. ``rel`` is a relative path with ``/`` separators.
    """
    if not isinstance(rel, str) or "\x00" in rel:
        raise PathRefused(400, "a path may not contain NUL bytes")
    text = rel.replace("\\", "/")
    pure = PurePosixPath(text)
    if pure.is_absolute() or (len(text) >= 2 and text[1] == ":"):
        raise PathRefused(403, "absolute paths are not served")
    if ".." in pure.parts:
        raise PathRefused(403, "'..' is not allowed in a path")
    target = (root / pure).resolve()
    if not _inside(target, root):
        raise PathRefused(403, "the path leaves the runs folder (through a symbolic link)")
    if not target.exists():
        raise PathRefused(404, f"{rel!r}: no such file under the runs folder")
    return target


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _record(raw: dict[str, Any]) -> dict[str, Any]:
    """One per-image record, normalised: ``image_id``, ``iou``, ``box``, ``correct`` + extras."""
    rec = {k: v for k, v in raw.items() if isinstance(v, (str, int, float, bool)) or v is None}
    rec["image_id"] = str(raw.get("image_id", raw.get("id", "")))
    rec["iou"] = _finite(raw.get("iou"))
    box = raw.get("box")
    rec["box"] = [float(v) for v in box] if isinstance(box, (list, tuple)) and len(box) == 4 else None
    if not isinstance(raw.get("correct"), bool):
        rec["correct"] = None if rec["iou"] is None else rec["iou"] >= IOU_CORRECT
    return rec


def read_regular(path: Path, cap: int) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``cap`` bytes, else
    :class:`OSError` saying why. Opened without blocking: a FIFO or a device named like a report
    is refused at once, never waited on."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path.name} is not a regular file")
        if st.st_size > cap:
            raise OSError(f"{path.name} is larger than {cap} bytes")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > cap:
                raise OSError(f"{path.name} is larger than {cap} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


class RunsIndex:
    """Runs under one folder (``root``), read on demand; dataset listings cached."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            from camloc.errors import ConfigError

            raise ConfigError(f"--runs {root}: not a folder")
        self._datasets: dict[tuple[str, str, str | None], Any] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ listing
    def list_runs(self) -> list[dict[str, Any]]:
        """Every run under the folder (at most ``MAX_RUNS``, ``MAX_DEPTH`` levels, no symlinked
        folders followed), with its headline figures."""
        runs = []
        base_depth = len(self.root.parts)
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            if len(here.parts) - base_depth >= MAX_DEPTH:
                dirnames[:] = []
            rel = here.relative_to(self.root).as_posix()
            if REPORT_NAME not in filenames:
                if MANIFEST_NAME in filenames:
                    summary = self._explain_summary(rel)
                    if summary is not None:
                        runs.append(summary)
                        dirnames[:] = []  # its own overlays/, maps/, inputs/
                continue
            try:
                report = self.report(rel)
            except PathRefused:
                continue
            try:
                runs.append(self._summary(rel, report))
            except Exception as exc:  # noqa: BLE001 - one odd report never hides the others
                runs.append({"id": rel, "error": f"report.json has unexpected content "
                                                  f"({type(exc).__name__}: {exc})"})
            if len(runs) >= MAX_RUNS:
                break
        return runs

    def _summary(self, run_id: str, report: dict[str, Any]) -> dict[str, Any]:
        from camloc.report import figure_rows

        if "error" in report and len(report) == 1:
            return {"id": run_id, "error": report["error"]}
        loc = report.get("localization") or {}
        folder = self.root / run_id
        return {
            "id": run_id,
            "model": (report.get("model") or {}).get("name") or report.get("maps") or "",
            "method": (report.get("method") or {}).get("name", "")
            if isinstance(report.get("method"), dict) else str(report.get("method") or ""),
            "dataset": (report.get("dataset") or {}).get("name", ""),
            "split": (report.get("dataset") or {}).get("split"),
            "images": (report.get("counts") or {}).get("scored"),
            "protocol": (report.get("protocol") or {}).get("name"),
            "maxboxacc_v2": (loc.get("maxboxacc_v2") or {}).get("value"),
            "gt_known_loc": (loc.get("gt_known_loc") or {}).get("at_fixed"),
            "figures": [list(r) for r in _safe_rows(figure_rows, report)],
            "has_html": (folder / "report.html").is_file(),
            "has_per_image": self._has_per_image(run_id, report),
        }

    def _has_per_image(self, run_id: str, report: dict[str, Any]) -> bool:
        try:
            return bool(self._raw_per_image(run_id, report))
        except PathRefused:
            return False

    # ------------------------------------------------------------------ explain runs
    def manifest(self, run_id: str) -> dict[str, Any] | None:
        """An explain run's manifest.json (``command: explain``), or ``None``."""
        rel = MANIFEST_NAME if run_id in ("", ".") else f"{run_id}/{MANIFEST_NAME}"
        try:
            data = json.loads(read_regular(safe_join(self.root, rel), MAX_REPORT_BYTES))
        except (PathRefused, OSError, UnicodeDecodeError, ValueError, RecursionError):
            return None
        return data if isinstance(data, dict) and data.get("command") == "explain" else None

    def _explain_only(self, run_id: str) -> dict[str, Any] | None:
        """The manifest of an explain run that has no report.json (else ``None``)."""
        try:
            safe_join(self.root, REPORT_NAME if run_id in ("", ".") else f"{run_id}/{REPORT_NAME}")
            return None
        except PathRefused as exc:
            if exc.status != 404:
                raise
        return self.manifest(run_id)

    def _explain_summary(self, run_id: str) -> dict[str, Any] | None:
        man = self.manifest(run_id)
        if man is None:
            return None
        counts = man.get("counts") or {}
        return {"id": run_id, "kind": "explain", "model": str(man.get("model") or ""),
                "method": str(man.get("method") or ""), "dataset": "explain run",
                "split": man.get("status"), "images": counts.get("explained"),
                "protocol": None, "maxboxacc_v2": None, "gt_known_loc": None,
                "figures": _explain_rows(man), "has_html": False, "has_per_image": True}

    def _results(self, run_id: str) -> list[dict[str, Any]]:
        """An explain run's ``results.jsonl`` records (``image_id``: the overlay's or maps' file
        stem, unique in the run)."""
        try:
            data = read_regular(safe_join(self.root, f"{run_id}/{RESULTS_NAME}"),
                                MAX_PER_IMAGE_BYTES)
        except PathRefused:
            return []
        except OSError as exc:
            raise PathRefused(422, f"run {run_id!r}: {RESULTS_NAME} cannot be read: "
                                   f"{exc}") from None
        out = []
        for line in data.splitlines():
            try:
                rec = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                continue
            if not isinstance(rec, dict):
                continue
            ref = rec.get("overlay") or rec.get("maps") or rec.get("path") or ""
            rec["image_id"] = PurePosixPath(str(ref)).stem or str(len(out))
            out.append(rec)
        return out

    def _explain_run(self, run_id: str, man: dict[str, Any]) -> dict[str, Any]:
        rows = []
        for rec in self._results(run_id):
            names, probs = rec.get("class_names") or [], rec.get("probs") or []
            boxes = rec.get("boxes") or []
            rows.append({"image_id": rec["image_id"],
                         "name": PurePosixPath(str(rec.get("path") or "")).name,
                         "class_name": str(names[0]) if names else None,
                         "prob": _finite(probs[0]) if probs else None,
                         "box": boxes[0] if boxes else None, "iou": None, "correct": None})
        return {"id": run_id, "kind": "explain", "report": {"manifest": man},
                "figures": _explain_rows(man), "per_image": rows, "iou_correct": IOU_CORRECT,
                "has_html": False}

    def _explain_image(self, run_id: str, image_id: str) -> dict[str, Any]:
        rec = next((r for r in self._results(run_id) if r["image_id"] == image_id), None)
        if rec is None:
            raise PathRefused(404, f"image {image_id!r} is not in run {run_id!r}")
        prefix = "/runs/files/" + ("" if run_id in ("", ".") else run_id + "/")
        maps = []
        rel = rec.get("overlay")
        if isinstance(rel, str):
            try:
                safe_join(self.root, f"{run_id}/{rel}")
                maps.append({"kind": "overlay", "url": prefix + rel})
            except PathRefused:
                pass
        if self._map_file(run_id, image_id) is not None:
            maps.append({"kind": "maps", "url": None})  # the app fills in /api/runs/map.png
        path = str(rec.get("path") or "")
        source = None
        try:
            source_rel = Path(path).resolve().relative_to(self.root).as_posix()
            safe_join(self.root, source_rel)
            source = "/runs/files/" + source_rel
        except (ValueError, OSError, PathRefused):
            pass  # a photo outside the runs folder is never served
        classes = [{"id": c, "name": n, "prob": p, "box": b} for c, n, p, b in zip(
            rec.get("class_ids") or [], rec.get("class_names") or [], rec.get("probs") or [],
            rec.get("boxes") or [])]
        return {"image_id": image_id, "kind": "explain",
                "name": PurePosixPath(str(rec.get("path") or "")).name,
                "width": rec.get("width"), "height": rec.get("height"),
                "method": rec.get("method"), "layers": rec.get("layers"),
                "class_name": classes[0]["name"] if classes else None, "classes": classes,
                "saved_maps": maps, "source_url": source, "gt_boxes": [], "pred_box": None,
                "iou": None, "correct": None}

    def _map_file(self, run_id: str, image_id: str) -> Path | None:
        """The saved map of one image: an explain run's ``maps/<name>.npy``, an evaluation run's
        ``scoremaps/<image_id>.npy`` (``camloc evaluate --save-maps``); ``None`` if not saved."""
        prefix = "" if run_id in ("", ".") else f"{run_id}/"
        if self._explain_only(run_id) is not None:
            rec = next((r for r in self._results(run_id) if r["image_id"] == image_id), None)
            rel = rec.get("maps") if rec else None
            if not isinstance(rel, str):
                return None
        else:
            from camloc.data.paths import safe_relpath

            try:
                rel = "scoremaps/" + safe_relpath(image_id, ".npy")
            except Exception:  # noqa: BLE001 - an id that cannot name a file has no map
                return None
        try:
            return safe_join(self.root, prefix + rel)
        except PathRefused as exc:
            if exc.status == 404:
                return None
            raise

    def map_png(self, run_id: str, image_id: str) -> bytes:
        """An image's saved map (the first class's, for an explain run) as a colour PNG (jet,
        0 = the map's minimum, 255 = its maximum)."""
        import cv2
        import numpy as np

        path = self._map_file(run_id, image_id)
        if path is None:
            raise PathRefused(404, f"run {run_id!r} saved no map for image {image_id!r}")
        try:
            arr = np.load(io.BytesIO(read_regular(path, MAX_MAP_BYTES)), allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise PathRefused(422, f"the saved map of {image_id!r} cannot be read: {exc}") from None
        arr = np.asarray(arr, dtype=np.float32)
        while arr.ndim > 2:
            arr = arr[0]
        if arr.ndim != 2 or not arr.size:
            raise PathRefused(422, f"the saved map of {image_id!r} is not a 2-D array")
        arr = np.nan_to_num(arr)
        lo, hi = float(arr.min()), float(arr.max())
        gray = np.uint8(np.round(255 * (arr - lo) / (hi - lo))) if hi > lo else \
            np.zeros(arr.shape, np.uint8)
        ok, buf = cv2.imencode(".png", cv2.applyColorMap(gray, cv2.COLORMAP_JET))
        if not ok:
            raise PathRefused(422, "the map cannot be encoded")
        return buf.tobytes()

    # ------------------------------------------------------------------ one run
    def report(self, run_id: str) -> dict[str, Any]:
        """The run's report.json (a dict with only ``error`` when it cannot be read)."""
        rel = REPORT_NAME if run_id in ("", ".") else f"{run_id}/{REPORT_NAME}"
        path = safe_join(self.root, rel)
        try:
            data = json.loads(read_regular(path, MAX_REPORT_BYTES).decode("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            return {"error": f"report.json cannot be read: {exc}"}
        return data if isinstance(data, dict) else {"error": "report.json is not a JSON object"}

    def _raw_per_image(self, run_id: str, report: dict[str, Any]) -> list[dict[str, Any]]:
        for recs in (report.get("per_image"), (report.get("localization") or {}).get("per_image")):
            if isinstance(recs, list):
                return [r for r in recs if isinstance(r, dict)]
        try:
            path = safe_join(self.root, f"{run_id}/{PER_IMAGE_NAME}")
        except PathRefused:
            return []
        try:
            data = read_regular(path, MAX_PER_IMAGE_BYTES)
        except OSError as exc:
            raise PathRefused(422, f"run {run_id!r}: {PER_IMAGE_NAME} cannot be read: "
                                   f"{exc}") from None
        out = []
        for line in data.splitlines():
            try:
                rec = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                continue  # a torn last line, or bytes that are not UTF-8 JSON: that record only
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def run(self, run_id: str) -> dict[str, Any]:
        """A run's report, figures and normalised per-image records."""
        from camloc.report import figure_rows

        man = self._explain_only(run_id)
        if man is not None:
            return self._explain_run(run_id, man)
        report = self.report(run_id)
        if "error" in report and len(report) == 1:
            raise PathRefused(422, f"run {run_id!r}: {report['error']}")
        records = []
        for raw in self._raw_per_image(run_id, report):
            try:
                records.append(_record(raw))
            except (TypeError, ValueError):
                continue  # a record with a box that is not four numbers, ...
        return {"id": run_id, "report": report,
                "figures": [list(r) for r in _safe_rows(figure_rows, report)],
                "per_image": records, "iou_correct": IOU_CORRECT,
                "has_html": (self.root / run_id / "report.html").is_file()}

    def compare(self, a: str, b: str) -> dict[str, Any]:
        """Two evaluation runs side by side: their figures and curves, and the per-image IoU of
        the images both scored, ``diff = iou_b - iou_a``, largest change first."""
        runs = [self.run(a), self.run(b)]
        for r in runs:
            if r.get("kind") == "explain":
                raise PathRefused(422, f"run {r['id']!r} is an explain run (no IoU to compare): "
                                       f"choose evaluation runs")
        ious = [{rec["image_id"]: rec["iou"] for rec in r["per_image"]} for r in runs]
        common = [i for i in ious[0] if i in ious[1]]
        rows = []
        for i in common:
            x, y = ious[0][i], ious[1][i]
            diff = None if x is None or y is None else y - x
            rows.append({"image_id": i, "iou_a": x, "iou_b": y, "diff": diff})
        rows.sort(key=lambda r: (r["diff"] is None, -abs(r["diff"] or 0.0), r["image_id"]))
        return {"a": a, "b": b, "figures": [r["figures"] for r in runs],
                "curves": [(r["report"].get("localization") or {}).get("curves") for r in runs],
                "per_image": rows, "common": len(common),
                "only_a": len(ious[0]) - len(common), "only_b": len(ious[1]) - len(common),
                "better": sum(1 for r in rows if (r["diff"] or 0) > 0),
                "worse": sum(1 for r in rows if (r["diff"] or 0) < 0)}

    # ------------------------------------------------------------------ images of a run
    def _dataset(self, report: dict[str, Any]) -> Any:
        from camloc.data.datasets import open_dataset
        from camloc.errors import CamlocError

        ds_info = report.get("dataset") or {}
        root = str(ds_info.get("root") or "")
        if not root or not Path(root).is_dir():
            raise PathRefused(404, f"the dataset this run names ({root or 'none'}) is not on this "
                                   f"machine")
        key = (str(Path(root).resolve()), str(ds_info.get("format") or "auto"), ds_info.get("split"))
        with self._lock:
            if key not in self._datasets:
                try:
                    ds = open_dataset(key[0], format=key[1], split=key[2])
                except CamlocError as exc:
                    raise PathRefused(404, f"the dataset cannot be read: {exc}") from None
                names = [str(n) for n in (getattr(ds, "class_names", None) or [])]
                self._datasets[key] = (Path(key[0]), {s.image_id: s for s in ds.samples}, names)
            return self._datasets[key]

    def image_info(self, run_id: str, image_id: str) -> dict[str, Any]:
        """Ground-truth boxes (original pixels), the predicted box scaled from evaluation size to
        original pixels (inclusive corners: the last pixel ends at ``x1 + 1``, as the gallery
        draws it), the IoU and whether it counts as correct."""
        if self._explain_only(run_id) is not None:
            return self._explain_image(run_id, image_id)
        report = self.report(run_id)
        records = {str(r.get("image_id", r.get("id", ""))): r
                   for r in self._raw_per_image(run_id, report)}
        rec = _record(records[image_id]) if image_id in records else None
        sample, image = self._load(report, image_id)
        names = self._dataset(report)[2]
        label = sample.label
        class_name = names[label] if isinstance(label, int) and 0 <= label < len(names) else None
        w, h = image.size
        eval_size = float((report.get("protocol") or {}).get("eval_size") or 224)
        pred = None
        if rec and rec["box"] is not None:
            from camloc.evaluation.gallery import eval_box_to_pixels

            pred = list(eval_box_to_pixels(rec["box"], w, h, eval_size))
        return {"image_id": image_id, "width": w, "height": h,
                "gt_boxes": [[float(v) for v in b] for b in sample.boxes],
                "label": sample.label, "class_name": class_name, "pred_box": pred,
                "saved_maps": [{"kind": "scoremap", "url": None}]
                if self._map_file(run_id, image_id) is not None else [],
                "iou": rec["iou"] if rec else None, "correct": rec["correct"] if rec else None,
                "eval_size": eval_size}

    def image_jpeg(self, run_id: str, image_id: str) -> bytes:
        """The image as camloc decodes it (upright RGB), re-encoded as JPEG."""
        _, image = self._load(self.report(run_id), image_id)
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=90)
        return buf.getvalue()

    def _load(self, report: dict[str, Any], image_id: str) -> tuple[Any, Any]:
        from camloc.data.images import load_image
        from camloc.errors import ImageError

        root, samples, _names = self._dataset(report)
        sample = samples.get(image_id)
        if sample is None:
            raise PathRefused(404, f"image {image_id!r} is not in the dataset this run names")
        path = Path(sample.path).resolve()
        if not _inside(path, root):
            raise PathRefused(403, f"image {image_id!r} lies outside its dataset's folder")
        try:
            return sample, load_image(path)
        except ImageError as exc:
            raise PathRefused(404, f"image {image_id!r}: {exc.reason}") from None


def _explain_rows(man: dict[str, Any]) -> list[list[str]]:
    """An explain run's manifest as figure rows (what, value)."""
    counts = man.get("counts") or {}
    rows = [("kind", "explain run (camloc explain)"), ("status", man.get("status")),
            ("model", man.get("model")), ("method", man.get("method")),
            ("layers", ", ".join(str(x) for x in man.get("layers") or [])),
            ("threshold", man.get("threshold")), ("images explained", counts.get("explained")),
            ("images failed", counts.get("failed")), ("seconds", man.get("seconds"))]
    return [[k, "" if v is None else str(v)] for k, v in rows]


def _safe_rows(fn: Any, report: dict[str, Any]) -> list[tuple[str, str]]:
    try:
        return fn(report)
    except (KeyError, TypeError, ValueError, AttributeError):
        return []
