"""Batch explanation runs: many files in, overlays + ``results.jsonl`` + ``errors.jsonl`` out.

One bad image never stops a run: any failure of one image (decode, forward, non-finite scores,
render, write) is reported by path and reason in ``errors.jsonl`` and in the summary, and the rest
of the batch completes. Every output file is written atomically, and never through a symbolic
link.

Output folder layout::

    OUT/overlays/<name>.png     heatmap + box + label (a grid of at most ``max_panels`` panels)
    OUT/maps/<name>.npy         (k, H, W) float32 normalised maps at input resolution (save_maps)
    OUT/results.jsonl           one line per image (see Explanation.to_record), strict JSON
    OUT/errors.jsonl            one line per failed input: {"path", "error"}
    OUT/manifest.json           model, settings, versions, counts, status
    OUT/.camloc.lock            advisory lock held while a run writes

``<name>`` comes from :func:`output_name`: the file's name made filesystem-safe and cut to a bounded
length, plus a hash of its resolved absolute path, so two inputs never share an output (``a/x.jpg``
and ``a__x.jpg``; two runs over different folders into one ``OUT``).

Re-running into the same ``OUT`` resumes: images already in ``results.jsonl`` (matched by resolved
absolute path, so ``x.jpg`` and ``/abs/x.jpg`` are the same image) with their files on disk are
skipped. The settings that determine the results are stored in ``manifest.json``; a re-run with
different settings is refused (pass ``overwrite`` to redo everything with the new settings, or
choose another ``OUT``). A second run into an ``OUT`` that a run is writing is refused at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from camloc.errors import CamlocError, ConfigError, ImageError
from camloc.io import (JsonlWriter, atomic_open, atomic_save_npy, atomic_write_json, dumps,
                       folder_lock, read_jsonl, refuse_symlink, remove_stale_temps, versions)

__all__ = ["ExplainSettings", "RunSummary", "run_explain", "output_name", "RESUME_KEYS"]

#: Settings that change what an image's record says; a resumed run must match them all.
RESUME_KEYS = ("model", "weights", "head", "top_k", "classes", "threshold", "normalization",
               "multi", "method", "layer", "preprocess")

#: Budget for one batch's maps (images x classes x H x W x 4 bytes); larger top-k runs use
#: smaller batches instead of more memory.
MAP_BYTES_PER_BATCH = 512 * 2**20
#: Budget for one batch's decoded photos (about 200 MB of RGB): a batch of huge photos is cut
#: short rather than holding ``batch_size`` of them at once.
PIXELS_PER_BATCH = 64_000_000

_NAME_BYTES = 100  # readable part of an output name (the hash keeps names unique)


@dataclass
class ExplainSettings:
    """Options of an explain run (the CLI's flags).

    ``overlay_size`` bounds the longest side of an overlay PNG (huge photos are drawn smaller);
    ``max_panels`` bounds the number of classes drawn in one overlay (``results.jsonl`` still has
    every class)."""

    top_k: int = 5
    classes: Sequence[int] | None = None
    threshold: float = 0.2
    normalization: str = "max"
    multi: bool = False
    method: str = "cam"
    layer: str | None = None
    batch_size: int = 16
    save_maps: bool = False
    overwrite: bool = False
    preprocess: Any = None  # camloc.models.spec.Preprocess; None: the model's
    overlays: bool = True
    overlay_size: int = 2048
    max_panels: int = 8

    def check(self, num_classes: int) -> None:
        """Raise :class:`ConfigError` naming the first bad setting (nothing is touched)."""
        def whole(name: str, value: Any, low: int, high: int | None = None) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value < low or (
                    high is not None and value > high):
                rng = f">= {low}" if high is None else f"in {low}..{high}"
                raise ConfigError(f"{name}={value!r}: expected a whole number {rng}")

        if self.classes is None:
            whole("top_k", self.top_k, 1, num_classes)
        else:
            if not len(self.classes):
                raise ConfigError("classes: empty list (give class ids or names, or use top_k)")
            for c in self.classes:
                whole("classes", c, 0, num_classes - 1)
        whole("batch_size", self.batch_size, 1)
        whole("overlay_size", self.overlay_size, 32)
        whole("max_panels", self.max_panels, 1)
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) \
                or not 0.0 <= t <= 1.0:
            raise ConfigError(f"threshold={t!r}: expected a fraction of the map maximum in [0, 1]")
        if self.normalization not in ("max", "minmax"):
            raise ConfigError(f"normalization={self.normalization!r}: expected max or minmax")


@dataclass
class RunSummary:
    out: Path
    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def output_name(path: str | os.PathLike[str]) -> str:
    """The flat output name (without extension) for the image at ``path``.

    The file's own name with anything but letters, digits, ``.``, ``_`` and ``-`` replaced by ``_``,
    cut to 100 bytes, then ``-`` and 16 hex digits of the SHA-256 of the resolved absolute path.
    It depends on the file alone (not on the other inputs of the run), so resuming with fewer or
    more inputs finds the same names; every name (with its extension and the temporary-file
    affixes of :func:`camloc.io.atomic_open`) stays far below the 255-byte limit.

    >>> output_name("/data/a/x.jpg") != output_name("/data/a__x.jpg")
    True
    >>> output_name("/data/a/x.jpg")[:6]
    'x.jpg-'
    """
    key = _key(path)
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    readable = re.sub(r"[^\w.\-]+", "_", Path(key).name, flags=re.UNICODE).lstrip(".-") or "image"
    raw = readable.encode("utf-8", "surrogateescape")[:_NAME_BYTES]
    readable = raw.decode("utf-8", "ignore") or "image"
    return f"{readable}-{digest}"


def _key(path: str | os.PathLike[str]) -> str:
    """An image's identity across runs: its resolved absolute path."""
    return str(Path(path).expanduser().resolve())


def _settings_record(model: Any, s: ExplainSettings, source: dict[str, Any] | None) -> dict[str, Any]:
    src = dict(source or {})
    pre = s.preprocess or model.spec.preprocess
    return {
        "model": src.get("model", model.spec.name),
        "weights": src.get("weights", model.spec.source),
        "head": src.get("head"),
        "top_k": None if s.classes else s.top_k,
        "classes": list(s.classes) if s.classes else None,
        "threshold": s.threshold, "normalization": s.normalization, "multi": s.multi,
        "method": s.method, "layer": s.layer,
        "preprocess": pre.to_dict(),
        "batch_size": s.batch_size, "save_maps": s.save_maps, "overlays": s.overlays,
        "overlay_size": s.overlay_size, "max_panels": s.max_panels,
    }


def _settings_differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    # compare through JSON, so tuples and lists (and ints and floats) compare as stored
    a = json.loads(dumps({k: saved.get(k) for k in RESUME_KEYS}))
    b = json.loads(dumps({k: now.get(k) for k in RESUME_KEYS}))
    return [f"{k} {a[k]!r} -> {b[k]!r}" for k in RESUME_KEYS if a[k] != b[k]]


def _finite_result(exp: Any) -> bool:
    import numpy as np

    return bool(np.isfinite(np.asarray(exp.probs, np.float64)).all()
                and np.isfinite(np.asarray(exp.logits, np.float64)).all()
                and np.isfinite(exp.maps).all())


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ImageError):
        return exc.reason
    if isinstance(exc, CamlocError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
    return f"{type(exc).__name__}: {exc}"


def _prepare_out(out: Path) -> None:
    """Create ``out`` and refuse what camloc must not write into (no touching of results)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot create the folder ({exc.strerror or exc})") from exc
    if not os.access(out, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: the folder is not writable")
    for name in ("results.jsonl", "errors.jsonl", "manifest.json", "overlays", "maps"):
        refuse_symlink(out / name)
    for name in ("overlays", "maps"):
        if (out / name).exists() and not (out / name).is_dir():
            raise ConfigError(f"--out {out}: {out / name} exists and is not a folder")


def _read_manifest(out: Path) -> dict[str, Any] | None:
    p = out / "manifest.json"
    if not p.exists():
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _load_results(path: Path) -> tuple[dict[str, dict[str, Any]], bool]:
    """Records by key (last one wins) and whether the file held duplicates."""
    records: dict[str, dict[str, Any]] = {}
    dup = False
    for rec in read_jsonl(path):
        if not isinstance(rec, dict) or not isinstance(rec.get("path"), str):
            continue
        k = _key(rec["path"])
        dup = dup or k in records
        records.pop(k, None)
        records[k] = rec
    return records, dup


def _open_results(out: Path, overwrite: bool, now: dict[str, Any]
                  ) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """The records already in ``out`` (by key) and its earlier errors, after checking that they
    were made with the settings ``now`` (else :class:`ConfigError`); duplicates left by a crash
    are removed. With ``overwrite`` both start empty (results.jsonl is emptied: call this only
    once everything is validated and the lock is held)."""
    results_path = out / "results.jsonl"
    if overwrite:
        if results_path.exists():
            _rewrite_results(results_path, {})
        return {}, []
    records, dup = _load_results(results_path)
    manifest = _read_manifest(out)
    saved = manifest.get("settings") if manifest else None
    if records and not isinstance(saved, dict):
        raise ConfigError(f"{out} holds results.jsonl but no readable manifest.json, so the "
                          f"settings that made them are unknown; pass --overwrite to redo them, "
                          f"or choose another --out")
    if records and isinstance(saved, dict):
        diffs = _settings_differences(saved, now)
        if diffs:
            raise ConfigError(f"{out} holds results made with other settings ("
                              + "; ".join(diffs) + "); pass --overwrite to redo them with the new "
                              "settings, or choose another --out")
    if dup:
        _rewrite_results(results_path, records)
    errors = [e for e in read_jsonl(out / "errors.jsonl") if isinstance(e, dict)]
    return records, errors


def _rewrite_results(path: Path, records: dict[str, dict[str, Any]]) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write("".join(dumps(r) + "\n" for r in records.values()).encode("utf-8"))


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder)
        return True
    except ValueError:
        return False


def run_explain(model: Any, inputs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str],
                settings: ExplainSettings | None = None,
                progress: Callable[[int, int], None] | None = None,
                source: dict[str, Any] | None = None) -> RunSummary:
    """Explain every image found under ``inputs`` and write the run folder ``out``.

    ``source`` describes how the model was loaded (``{"model", "weights", "head"}`` as the user
    gave them); it is stored in the manifest and compared on resume. Everything is validated
    before ``out`` is touched.

    Raises:
        ConfigError: a bad setting, an ``out`` that cannot be written, holds symbolic links, is
            in use by another run, or holds results made with different settings.
    """
    import torch

    from camloc.data.images import find_images, load_image
    from camloc.explain import explain_batch, make_method

    s = settings or ExplainSettings()
    s.check(int(model.spec.num_classes))
    engine = make_method(model, s.method)  # validates the method before anything is written
    out = Path(out)
    now = _settings_record(model, s, source)
    t0 = time.perf_counter()
    paths, problems = find_images(inputs)
    _prepare_out(out)
    out_real = out.resolve()
    summary = RunSummary(out=out)
    failed_keys: set[str] = set()

    def fail(path_text: str, reason: str) -> None:
        summary.failed.append({"path": path_text, "error": reason})
        failed_keys.add(path_text)

    with folder_lock(out):
        for folder in (out, out / "overlays", out / "maps"):
            remove_stale_temps(folder)
        results_path = out / "results.jsonl"
        records, old_errors = _open_results(out, s.overwrite, now)

        def write_manifest(status: str) -> None:
            atomic_write_json(out / "manifest.json", {
                "command": "explain", "status": status,
                "model": model.spec.name, "model_source": model.spec.source,
                "preprocess": now["preprocess"], "settings": now,
                "counts": {"found": summary.total, "explained": summary.done,
                           "skipped": summary.skipped, "failed": len(summary.failed),
                           "in_results": len(records)},
                "seconds": round(time.perf_counter() - t0, 3), "versions": versions(),
            })

        # inputs: skip our own outputs, resolve every path once
        todo: list[tuple[Path, str, str]] = []  # (path, key, output name)
        for inp, why in problems:
            fail(inp, why)
        seen: set[str] = set()
        for p in paths:
            if _is_within(p, out_real):
                continue  # never explain the run's own overlays
            k = _key(p)
            if k in seen:
                continue
            seen.add(k)
            summary.total += 1
            name = output_name(k)
            rec = records.get(k)
            if rec is not None and _outputs_present(out, rec, s):
                summary.skipped += 1
                continue
            todo.append((p, k, name))
        summary.total += len(problems)
        write_manifest("running")

        k_out = len(s.classes) if s.classes else s.top_k
        ih, iw = (s.preprocess or model.spec.preprocess).input_size
        per_image = max(1, k_out * ih * iw * 4)
        bs = max(1, min(s.batch_size, MAP_BYTES_PER_BATCH // per_image))
        selection: Any = list(s.classes) if s.classes else s.top_k
        redone = False
        status = "interrupted"

        def explain_images(images: list[Any], keys: list[str]) -> list[Any]:
            with torch.inference_mode(s.method == "cam"):
                return explain_batch(model, images, keys, selection, s.threshold,
                                     s.normalization, s.multi, engine, s.preprocess)

        if progress:
            progress(0, len(todo))
        try:
            with JsonlWriter(results_path, append=True) as results:
                consumed = 0
                for n_read, ok, images in _decoded_batches(todo, bs, load_image, fail):
                    consumed += n_read
                    exps = _explain_each(explain_images, images, [k for _, k, _ in ok])
                    for (p, k, name), image, exp in zip(ok, images, exps):
                        if isinstance(exp, BaseException):
                            fail(k, _reason(exp))
                            continue
                        if not _finite_result(exp):
                            fail(k, "the model gave non-finite scores (NaN or infinity) for this "
                                    "image; check the model's weights")
                            continue
                        try:
                            rec = _write_outputs(out, name, image, exp, s)
                        except Exception as exc:  # noqa: BLE001
                            fail(k, f"cannot write its outputs: {_reason(exc)}")
                            continue
                        results.write(rec)
                        redone = redone or k in records
                        records.pop(k, None)
                        records[k] = rec
                        summary.done += 1
                    images.clear()
                    if progress:
                        progress(consumed, len(todo))
            status = "complete"
        finally:
            summary.seconds = time.perf_counter() - t0
            with contextlib.suppress(Exception):
                if redone:
                    _rewrite_results(results_path, records)
                # errors.jsonl: this run's failures, plus earlier ones for inputs this run did
                # not look at (replaced atomically, never written through a link)
                keep = [e for e in old_errors if isinstance(e.get("path"), str)
                        and e["path"] not in seen and e["path"] not in failed_keys
                        and e["path"] not in records]
                with JsonlWriter(out / "errors.jsonl", append=False) as ew:
                    for e in keep + summary.failed:
                        ew.write(e)
            write_manifest(status)
    return summary


def _decoded_batches(todo: list[tuple[Path, str, str]], batch_size: int, load: Callable[[Path], Any],
                     fail: Callable[[str, str], None]) -> Any:
    """Decode ``todo`` in batches of at most ``batch_size`` images and at most
    :data:`PIXELS_PER_BATCH` decoded pixels (a folder of huge photos is explained a few at a
    time); yields ``(inputs consumed, [(path, key, name)], [image])``. An image that cannot be
    decoded is reported through ``fail`` and left out."""
    ok: list[tuple[Path, str, str]] = []
    images: list[Any] = []
    pixels = consumed = 0
    for item in todo:
        consumed += 1
        try:
            im = load(item[0])
        except Exception as exc:  # noqa: BLE001 - one bad image never kills the run
            fail(item[1], _reason(exc))
            continue
        ok.append(item)
        images.append(im)
        pixels += im.size[0] * im.size[1]
        if len(images) >= batch_size or pixels >= PIXELS_PER_BATCH:
            yield consumed, ok, images
            ok, images, pixels, consumed = [], [], 0, 0
    if images or consumed:
        yield consumed, ok, images


def _explain_each(explain_images: Callable[[list[Any], list[str]], list[Any]], images: list[Any],
                  keys: list[str]) -> list[Any]:
    """Explain a batch; if the batch fails, each image alone (so only the image at fault fails).
    Returns one Explanation or exception per image."""
    if not images:
        return []
    try:
        return list(explain_images(images, keys))
    except Exception:  # noqa: BLE001 - find the image(s) at fault
        out: list[Any] = []
        for im, k in zip(images, keys):
            try:
                out.extend(explain_images([im], [k]))
            except Exception as exc:  # noqa: BLE001
                out.append(exc)
        return out


def _outputs_present(out: Path, rec: dict[str, Any], s: ExplainSettings) -> bool:
    needed = []
    if s.overlays:
        needed.append(rec.get("overlay"))
    if s.save_maps:
        needed.append(rec.get("maps"))
    return all(isinstance(n, str) and (out / n).is_file() for n in needed)


def _write_outputs(out: Path, name: str, image: Any, exp: Any, s: ExplainSettings) -> dict[str, Any]:
    rec = exp.to_record()
    if s.overlays:
        from camloc.viz import render_explanation

        rendered = render_explanation(image, exp, s.overlay_size, s.max_panels)
        rel = f"overlays/{name}.png"
        with atomic_open(out / rel, "wb") as fh:
            rendered.save(fh, format="PNG")
        rec["overlay"] = rel
    if s.save_maps:
        rel = f"maps/{name}.npy"
        atomic_save_npy(out / rel, exp.maps)
        rec["maps"] = rel
    return rec
