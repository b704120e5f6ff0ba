"""Batch explanation runs: many images in, overlays + ``results.jsonl`` + box files out.

One bad image never stops a run: any failure of one image (decode, forward, non-finite scores,
render, write) is reported by path and reason in ``errors.jsonl`` and in the summary, and the rest
of the batch completes. Every output file is written atomically, and never through a symbolic
link.

Output folder layout::

    OUT/overlays/<name>.png     heatmap + box + label (a grid of at most ``max_panels`` panels)
    OUT/maps/<name>.npy         (k, H, W) float32 normalised maps at input resolution (save_maps)
    OUT/results.jsonl           one line per image (see Explanation.to_record), strict JSON
    OUT/errors.jsonl            one line per failed input: {"path", "error"}
    OUT/coco/, yolo/, voc/      box files made from results.jsonl (``formats``; camloc.export)
    OUT/manifest.json           model, settings, inputs, threshold source, counts, status
    OUT/parts/                  rank record files while a torchrun run writes (merged at the end)
    OUT/.camloc.lock            advisory lock held while a run writes

``<name>`` comes from :func:`output_name`: the file's name made filesystem-safe and cut to a bounded
length, plus a hash of its resolved absolute path, so two inputs never share an output (``a/x.jpg``
and ``a__x.jpg``; two runs over different folders into one ``OUT``).

Inputs (:class:`camloc.explain.inputs.ExplainInputs`) are streamed in *input order*; the records
of ``results.jsonl`` end up in that order (after any records of earlier runs over other inputs),
whatever the number of processes (see :mod:`camloc.explain.parts`).

Re-running into the same ``OUT`` resumes: images already in ``results.jsonl`` (or in the rank parts
a killed ``torchrun`` run left; matched by resolved absolute path, so ``x.jpg`` and ``/abs/x.jpg``
are the same image) with their files on disk are skipped. The settings that determine the
results are stored in ``manifest.json``; a re-run with different settings is refused (pass
``overwrite`` to redo everything with the new settings, or choose another ``OUT``). A second run
into an ``OUT`` that a run is writing is refused at once.

Under ``torchrun`` (pass a :class:`camloc.distributed.DistContext`): rank 0 takes the ``OUT``
lock, checks the folder and the stored settings, and tells the other ranks; every rank walks the
same input listing and explains the blocks of ``batch_size`` consecutive inputs numbered
``rank, rank + world_size, ...``, writing its overlays and maps directly and its records to
``OUT/parts/results.rank<r>.jsonl``; when all are done, rank 0 merges the parts into
``results.jsonl``, writes ``errors.jsonl``, the box files and the manifest, and releases the lock.
A single process cuts its batches at the same block boundaries
(:func:`camloc.data.batches.decoded_batches`, decoding in a thread ahead of the network), so
every image shares its forward pass with the same images whatever the number of processes, and
every output file is byte for byte what one process writes.

Memory does not grow with the number of images beyond a few 64-bit hashes per image (duplicate
detection, resume, merge order); records, maps and images live for one batch.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from camloc.data.batches import decoded_batches, prefetch
from camloc.data.batches import failure_reason as _reason
from camloc.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_NORMALIZATION,
    DEFAULT_THRESHOLD,
    DEFAULT_TOP_K,
)
from camloc.errors import CamlocError, ConfigError
from camloc.explain.inputs import OUTPUT_FOLDERS, ExplainInputs, InputItem, key_hash, key_of
from camloc.export.names import output_name
from camloc.io import (
    JsonlWriter,
    atomic_open,
    atomic_save_npy,
    atomic_write_json,
    dumps,
    folder_lock,
    read_jsonl,
    refuse_symlink,
    remove_stale_temps,
    versions,
)

__all__ = ["ExplainSettings", "RunSummary", "run_explain", "output_name", "RESUME_KEYS"]

#: Settings that change what an image's record says; a resumed run must match them all.
RESUME_KEYS = ("model", "weights", "head", "top_k", "classes", "threshold", "normalization",
               "multi", "method", "layers", "method_options", "preprocess", "min_prob", "tta",
               "localizer")


#: Budget for one batch's maps (images x classes x H x W x 4 bytes); larger top-k runs use
#: smaller batches instead of more memory.
MAP_BYTES_PER_BATCH = 512 * 2**20
#: zlib level of overlay PNGs: 1 writes several times faster than Pillow's default 6, for
#: files about a third larger.
PNG_COMPRESSION = 1


@dataclass
class ExplainSettings:
    """Options of an explain run (the CLI's flags).

    ``classes``: class ids to explain in every image, ``"gt"`` for each image's ground-truth
    label (dataset inputs), or ``None`` for the ``top_k`` most likely. ``min_prob`` drops the
    classes whose probability is below it (from the records, overlays and box files).
    ``overlay_size`` bounds the longest side of an overlay PNG (huge photos are drawn smaller);
    ``max_panels`` bounds the number of classes drawn in one overlay (``results.jsonl`` still has
    every class). ``formats``: box files to make besides ``results.jsonl`` (``coco``, ``yolo``,
    ``voc``). ``threshold_source`` says where ``threshold`` came from (the manifest keeps it;
    see :func:`camloc.evaluation.calibration.read_calibration`). ``method`` is any name of
    ``camloc methods`` (case-insensitive: :meth:`check` lower-cases it); ``layer`` the
    target layer name(s) (``None``: the model's default, which the manifest and every record
    report as resolved by the engine); ``method_options`` go to the method's constructor
    (``smooth``, ``noise``, ``seed``, ``batch_size``; see :func:`camloc.cams.make_method`)."""

    top_k: int = DEFAULT_TOP_K
    classes: Sequence[int] | str | None = None
    threshold: float = DEFAULT_THRESHOLD
    normalization: str = DEFAULT_NORMALIZATION
    multi: bool = False
    method: str = "cam"
    layer: str | Sequence[str] | None = None
    method_options: dict[str, Any] = field(default_factory=dict)
    batch_size: int = DEFAULT_BATCH_SIZE
    save_maps: bool = False
    overwrite: bool = False
    preprocess: Any = None  # camloc.models.spec.Preprocess; None: the model's
    runtime: str = "torch"  # "onnx" or an exported .onnx file: exact CAM on onnxruntime
    overlays: bool = True
    overlay_size: int = 2048
    max_panels: int = 8
    min_prob: float | None = None
    formats: Sequence[str] = ()
    threshold_source: dict[str, Any] | None = None
    tta: str | None = None  # a --tta text (camloc.cams.tta)
    localizer: Any = None  # a camloc.localizer.Localizer

    def make_engine(self, model: Any) -> Any:
        """The map method of these settings: the method, with the localizer's foreground map
        combined in and wrapped in the TTA; or, with ``runtime`` onnx, the onnxruntime engine."""
        from camloc.cams.registry import make_method
        from camloc.cams.tta import parse_tta, with_tta
        from camloc.localizer.model import with_localizer

        onnx = _runtime_engine(model, self)
        if onnx is not None:
            if self.localizer is not None or parse_tta(self.tta) is not None:
                raise ConfigError(f"--runtime {self.runtime}: the exported graph gives exact CAM "
                                  "at one size; leave out --tta and --localizer (or use --runtime "
                                  "torch)")
            return onnx
        engine = make_method(model, self.method, self.layer, **self.method_options)
        return with_tta(with_localizer(engine, self.localizer), self.tta)

    def check(self, num_classes: int | None = None) -> None:
        """Raise :class:`ConfigError` naming the first bad setting; lower-cases ``method`` and
        parses ``formats``. With ``num_classes`` (the model's) also the class ids and ``top_k``
        against it; without, only what needs no model (the CLI's job checks that much before
        it loads the model; :func:`run_explain` checks everything)."""
        def whole(name: str, value: Any, low: int, high: int | None = None) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value < low or (
                    high is not None and value > high):
                rng = f">= {low}" if high is None else f"in {low}..{high}"
                raise ConfigError(f"{name}={value!r}: expected a whole number {rng}")

        def fraction(name: str, t: Any) -> None:
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) \
                    or not 0.0 <= t <= 1.0:
                raise ConfigError(f"{name}={t!r}: expected a number in [0, 1]")

        if self.classes is None:
            whole("top_k", self.top_k, 1)
            if num_classes is not None and self.top_k > num_classes:
                raise ConfigError(f"--top-k {self.top_k}: the model has only {num_classes} "
                                  "classes")
        elif isinstance(self.classes, str):
            if self.classes != "gt":
                raise ConfigError(f"classes={self.classes!r}: expected class ids, 'gt' or None")
        else:
            if not len(self.classes):
                raise ConfigError("classes: empty list (give class ids or names, or use top_k)")
            for c in self.classes:
                whole("classes", c, 0, None if num_classes is None else num_classes - 1)
        whole("batch_size", self.batch_size, 1)
        whole("overlay_size", self.overlay_size, 32)
        whole("max_panels", self.max_panels, 1)
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) \
                or not 0.0 <= t <= 1.0:
            raise ConfigError(f"threshold={t!r}: expected a fraction of the map maximum in [0, 1]")
        if self.min_prob is not None:
            fraction("min_prob", self.min_prob)
        if self.normalization not in ("max", "minmax"):
            raise ConfigError(f"normalization={self.normalization!r}: expected max or minmax")
        self._check_method()
        from camloc.export import parse_formats

        self.formats = parse_formats(list(self.formats))

    def _check_method(self) -> None:
        from camloc.cams.catalog import CATALOG

        if not isinstance(self.method, str):
            raise ConfigError(f"--method {self.method!r}: expected a method name")
        name = self.method.strip().lower()
        info = CATALOG.get(name)
        if info is None:
            raise ConfigError(f"--method {self.method!r}: expected one of {', '.join(CATALOG)} "
                              "(`camloc methods` lists them)")
        self.method = name
        smooth = self.method_options.get("smooth")
        if smooth and not info.needs_grad:
            raise ConfigError(f"--smooth {smooth}: only gradient methods average over noisy "
                              f"inputs; {info.name} is a {info.family} method")


@dataclass
class RunSummary:
    """What a run did (on rank 0 of a torchrun run: all ranks together)."""

    out: Path
    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    exports: dict[str, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


# --------------------------------------------------------------------------------------------------
# The run folder
# --------------------------------------------------------------------------------------------------


def _settings_record(model: Any, s: ExplainSettings, source: dict[str, Any] | None,
                     engine: Any = None) -> dict[str, Any]:
    src = dict(source or {})
    opts = {k: v for k, v in sorted(s.method_options.items()) if v is not None}
    if engine is None:
        engine = s.make_engine(model)
    # the options that change the maps, as the engine took them (defaults included, so that
    # `--smooth 0` and no --smooth compare equal): only SmoothGrad's, when it is on
    smooth = int(getattr(engine, "smooth", 0) or 0)
    map_options = {"smooth": smooth, "noise": engine.noise, "seed": engine.seed} if smooth else {}
    pre = s.preprocess or model.spec.preprocess
    return {
        "model": src.get("model", model.spec.name),
        "weights": src.get("weights", model.spec.source),
        "head": src.get("head"),
        "top_k": None if s.classes else s.top_k,
        "classes": s.classes if isinstance(s.classes, str) else (
            list(s.classes) if s.classes else None),
        "threshold": s.threshold, "normalization": s.normalization, "multi": s.multi,
        "method": s.method,
        "layer": s.layer if s.layer is None or isinstance(s.layer, str) else list(s.layer),
        "layers": list(engine.layers),
        "method_options": map_options,
        "method_batch_size": opts.get("batch_size"),
        "preprocess": pre.to_dict(), "min_prob": s.min_prob,
        "batch_size": s.batch_size, "save_maps": s.save_maps, "overlays": s.overlays,
        "overlay_size": s.overlay_size, "max_panels": s.max_panels,
        "formats": list(s.formats),
        "threshold_source": s.threshold_source or {"kind": "given"},
        "tta": _tta_text(s.tta),
        "localizer": None if s.localizer is None else s.localizer.settings(),
    }


def _tta_text(tta: Any) -> str:
    from camloc.cams.tta import parse_tta

    spec = parse_tta(tta)
    return "none" if spec is None else spec.describe()


def _resume_value(record: dict[str, Any], key: str) -> Any:
    """A setting as resumes compare it: a run from before TTA / localizers had none; a localizer
    by the id of the maps it makes."""
    if key == "tta":
        return record.get("tta") or "none"
    if key == "localizer":
        loc = record.get("localizer")
        return loc.get("key") if isinstance(loc, dict) else None
    return record.get(key)


def _settings_differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    import json

    # compare through JSON, so tuples and lists (and ints and floats) compare as stored
    a = json.loads(dumps({k: _resume_value(saved, k) for k in RESUME_KEYS}))
    b = json.loads(dumps({k: _resume_value(now, k) for k in RESUME_KEYS}))
    return [f"{k} {a[k]!r} -> {b[k]!r}" for k in RESUME_KEYS if a[k] != b[k]]


def _finite_result(exp: Any) -> bool:
    import numpy as np

    return bool(np.isfinite(np.asarray(exp.probs, np.float64)).all()
                and np.isfinite(np.asarray(exp.logits, np.float64)).all()
                and np.isfinite(exp.maps).all())


_OWN = ("results.jsonl", "errors.jsonl", "manifest.json", *OUTPUT_FOLDERS)


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
    for name in _OWN:
        refuse_symlink(out / name)
    for name in OUTPUT_FOLDERS:
        if (out / name).exists() and not (out / name).is_dir():
            raise ConfigError(f"--out {out}: {out / name} exists and is not a folder")


def _read_manifest(out: Path) -> dict[str, Any] | None:
    import json

    p = out / "manifest.json"
    if not p.exists():
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _check_stored_settings(out: Path, overwrite: bool, now: dict[str, Any]) -> None:
    """Refuse an ``out`` holding records made with other settings (:class:`ConfigError`); with
    ``overwrite``, empty ``results.jsonl`` and drop leftover rank parts instead (call this only
    once everything is validated and the lock is held)."""
    from camloc.explain.parts import record_files, remove_parts

    results_path = out / "results.jsonl"
    if overwrite:
        if results_path.exists():
            with atomic_open(results_path, "wb"):
                pass
        remove_parts(out)
        return
    has_records = any(p.stat().st_size > 0 for p in record_files(out))
    manifest = _read_manifest(out)
    saved = manifest.get("settings") if manifest else None
    if has_records and not isinstance(saved, dict):
        raise ConfigError(f"{out} holds results.jsonl but no readable manifest.json, so the "
                          f"settings that made them are unknown; pass --overwrite to redo them, "
                          f"or choose another --out")
    if has_records and isinstance(saved, dict):
        diffs = _settings_differences(saved, now)
        if diffs:
            raise ConfigError(f"{out} holds results made with other settings ("
                              + "; ".join(diffs) + "); pass --overwrite to redo them with the new "
                              "settings, or choose another --out")


def _on_main(ctx: Any, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on rank 0 only; every rank returns its result, or raises its camloc error
    (the other ranks wait for it: this is also a barrier)."""
    if ctx is None or not ctx.distributed:
        return fn()
    if ctx.is_main:
        try:
            value = fn()
        except CamlocError as exc:
            ctx.broadcast_object(("error", str(exc)))
            raise
        except BaseException:
            ctx.broadcast_object(("error", "rank 0 failed; see its message"))
            raise
        ctx.broadcast_object(("ok", value))
        return value
    kind, value = ctx.broadcast_object(None)
    if kind == "error":
        raise ConfigError(value)
    return value


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


@dataclass
class _Shard:
    """One rank's share of the run: counters and failures (with their input positions)."""

    total: int = 0
    skipped: int = 0
    done: int = 0
    redone: int = 0
    failed: list[tuple[int, dict[str, str]]] = field(default_factory=list)

    def fail(self, item: InputItem, reason: str) -> None:
        self.failed.append((item.index, {"path": item.key, "error": reason}))


def run_explain(model: Any, inputs: Sequence[str | os.PathLike[str]] | ExplainInputs,
                out: str | os.PathLike[str], settings: ExplainSettings | None = None,
                progress: Callable[[int, int | None], None] | None = None,
                source: dict[str, Any] | None = None, ctx: Any = None) -> RunSummary:
    """Explain every image of ``inputs`` (paths, folders and globs, or an
    :class:`~camloc.explain.inputs.ExplainInputs`) and write the run folder ``out``.

    ``source`` describes how the model was loaded (``{"model", "weights", "head"}`` as the user
    gave them); it is stored in the manifest and compared on resume. ``ctx``: the
    :class:`~camloc.distributed.DistContext` of a ``torchrun`` run (see the module docstring).
    ``progress(done, total)`` is called after each batch (``total`` is ``None`` while the
    inputs are still being listed). Everything is validated before ``out`` is touched.

    Raises:
        ConfigError: a bad setting, an ``out`` that cannot be written, holds symbolic links, is
            in use by another run, or holds results made with different settings.
    """

    s = settings or ExplainSettings()
    s.check(int(model.spec.num_classes))
    # validates the method, layer and options before anything is written
    engine = s.make_engine(model)
    inp = inputs if isinstance(inputs, ExplainInputs) else ExplainInputs(paths=list(inputs))
    rank, world = (ctx.rank, ctx.world_size) if ctx is not None else (0, 1)
    if inp.empty:
        raise ConfigError("Missing argument 'PATHS...': give image files, folders or globs, "
                          "--list FILE, or --dataset DIR")
    if s.classes == "gt" and not inp.has_labels:
        raise ConfigError("--classes gt explains each image's ground-truth label, which only a "
                          "dataset has: use it with --dataset")
    if s.classes == "gt" and inp.dataset.num_classes > model.spec.num_classes:
        raise ConfigError(f"--classes gt: the dataset has {inp.dataset.num_classes} classes but "
                          f"{model.spec.name} only {model.spec.num_classes}; the labels must be "
                          f"the model's class ids")
    if world > 1 and "-" in inp.lists:
        raise ConfigError("--list -: under torchrun every process reads the list; give a file")
    inp.check()
    out = Path(out)
    now = _settings_record(model, s, source, engine)
    t0 = time.perf_counter()
    summary = RunSummary(out=out)
    shard = _Shard()

    def write_manifest(status: str, in_results: int | None = None) -> None:
        atomic_write_json(out / "manifest.json", {
            "command": "explain", "status": status,
            "model": model.spec.name, "model_source": model.spec.source,
            "method": engine.name, "layers": list(engine.layers),
            "preprocess": now["preprocess"], "settings": now, "inputs": inp.describe(),
            "threshold": s.threshold, "threshold_source": now["threshold_source"],
            "world_size": world,
            "counts": {"found": summary.total, "explained": summary.done,
                       "skipped": summary.skipped, "failed": len(summary.failed),
                       "in_results": in_results},
            "exports": summary.exports,
            "seconds": round(time.perf_counter() - t0, 3), "versions": versions(),
        })

    with contextlib.ExitStack() as stack:
        def setup() -> None:
            _prepare_out(out)
            # a user's own yolo/ or voc/ (or a link) is refused before any image is explained
            from camloc.export import check_export_targets

            check_export_targets(out, s.formats)
            stack.enter_context(folder_lock(out))
            for folder in (out, out / "overlays", out / "maps", out / "parts", out / "coco"):
                remove_stale_temps(folder)
            _check_stored_settings(out, s.overwrite, now)
            write_manifest("running")  # before any rank writes a record

        _on_main(ctx, setup)
        from camloc.explain.parts import RecordIndex, part_path, record_files

        start_files = record_files(out)
        index = RecordIndex(start_files)
        done_before: set[int] = set(index.where)
        fresh = not done_before and not any(p.name != "results.jsonl" for p in start_files)
        del index
        old_errors = [e for e in read_jsonl(out / "errors.jsonl") if isinstance(e, dict)] \
            if rank == 0 else []

        seen: set[int] = set()
        order = array("Q")
        target = out / "results.jsonl" if world == 1 else part_path(out, rank)
        status = "interrupted"

        def finish(others: list[Any]) -> None:
            _finish_rank0(out, summary, shard, others, world, status, fresh, order, seen,
                          done_before, old_errors, s, model, now, write_manifest, t0)

        try:
            from camloc.runtime import channels_last

            # convolution weights channels-last on the CPU for the run (faster oneDNN kernels)
            with JsonlWriter(target, append=True) as results, \
                    channels_last(model.module, model.device.type == "cpu"):
                _explain_shard(model, engine, s, inp, out, rank, world, done_before, seen, order,
                               shard, results, progress)
            status = "complete"
        finally:
            if status != "complete" and rank == 0:
                finish([])
        others = ctx.gather_objects((shard.total, shard.skipped, shard.done, shard.redone,
                                     shard.failed))[1:] if world > 1 else []
        if rank == 0:
            finish(others)
        else:
            summary.total, summary.skipped, summary.done = shard.total, shard.skipped, shard.done
            summary.failed = [f for _, f in shard.failed]
            summary.seconds = time.perf_counter() - t0
    return summary


def _finish_rank0(out: Path, summary: RunSummary, shard: _Shard, others: list[Any], world: int,
                  status: str, fresh: bool, order: array, seen: set[int], done_before: set[int],
                  old_errors: list[dict[str, Any]], s: ExplainSettings, model: Any,
                  now: dict[str, Any], write_manifest: Callable[..., None], t0: float) -> None:
    """Rank 0's end of a run: counts of every rank, ``results.jsonl`` in canonical order,
    ``errors.jsonl``, the box files and the manifest."""
    from camloc.explain.parts import merge_results, remove_parts

    failed = list(shard.failed)
    summary.total, summary.skipped, summary.done = shard.total, shard.skipped, shard.done
    redone = shard.redone
    for total, skipped, done, re, fails in others:
        summary.total += total
        summary.skipped += skipped
        summary.done += done
        redone += re
        failed.extend(fails)
    failed.sort(key=lambda f: f[0])
    summary.failed = [f for _, f in failed]
    summary.seconds = time.perf_counter() - t0
    in_results = None
    try:
        if status == "complete":
            if world == 1 and fresh:
                in_results = summary.done  # appended in input order: already canonical
            else:
                in_results = merge_results(out, order, seen)
                remove_parts(out)
        _write_errors(out, summary.failed, old_errors, seen, done_before)
        if status == "complete" and s.formats:
            from camloc.export import export_results

            info = {"description": "camloc explain boxes", "model": model.spec.name,
                    "threshold": s.threshold, "normalization": s.normalization,
                    "threshold_source": now["threshold_source"], "multi": s.multi,
                    "classes": now["classes"], "top_k": now["top_k"], "min_prob": s.min_prob}
            done = export_results(out / "results.jsonl", out, s.formats,
                                  list(model.spec.class_names), info)
            summary.exports = {k: str(v.relative_to(out)) for k, v in done.items()}
    except Exception:
        status = "failed"
        raise
    finally:
        with contextlib.suppress(Exception):
            write_manifest(status, in_results)


def _write_errors(out: Path, failed: list[dict[str, str]], old_errors: list[dict[str, Any]],
                  seen: set[int], done_before: set[int]) -> None:
    """``errors.jsonl``: this run's failures in input order, after the earlier ones of inputs
    this run did not look at (replaced atomically, never written through a link)."""
    failed_paths = {f["path"] for f in failed}

    def stale(e: dict[str, Any]) -> bool:
        p = e.get("path")
        if not isinstance(p, str) or p in failed_paths:
            return True
        try:
            h = key_hash(key_of(p))
        except (OSError, ValueError, RuntimeError):
            return False
        return h in seen or h in done_before

    with JsonlWriter(out / "errors.jsonl", append=False) as ew:
        for e in old_errors:
            if not stale(e):
                ew.write(e)
        for e in failed:
            ew.write(e)


def _explain_shard(model: Any, engine: Any, s: ExplainSettings, inp: ExplainInputs, out: Path,
                   rank: int, world: int, done_before: set[int], seen: set[int], order: array,
                   shard: _Shard, results: JsonlWriter,
                   progress: Callable[[int, int | None], None] | None) -> None:
    """Explain this rank's inputs, appending records to ``results``."""
    import torch

    from camloc.data.images import load_image_for

    pre = s.preprocess or model.spec.preprocess
    k_out = 1 if s.classes == "gt" else (len(s.classes) if s.classes else s.top_k)
    ih, iw = pre.input_size
    per_image = max(1, k_out * ih * iw * 4)
    bs = max(1, min(s.batch_size, MAP_BYTES_PER_BATCH // per_image))
    listing = {"complete": False}

    def owned() -> Iterator[InputItem]:
        """This rank's inputs still to do; counts the rest."""
        for item in inp.stream(exclude=out.resolve()):
            if item.path is not None:
                h = key_hash(item.key)
                seen.add(h)
                if rank == 0:
                    order.append(h)
            if (item.index // bs) % world != rank:
                continue
            shard.total += 1
            if item.problem is not None:
                shard.fail(item, item.problem)
                continue
            if h in done_before and _outputs_present(out, output_name(item.key), s):
                shard.skipped += 1
                continue
            if s.classes == "gt" and item.label is None:
                shard.fail(item, "no ground-truth label to explain (--classes gt)")
                continue
            yield item
        listing["complete"] = True

    def explain_images(images: list[Any], items: list[InputItem]) -> list[Any]:
        from camloc.explain.api import explain_batch

        selection: Any
        if s.classes == "gt":
            selection = torch.tensor([[it.label] for it in items], dtype=torch.long)
        else:
            selection = list(s.classes) if s.classes else s.top_k
        with torch.inference_mode(not engine.needs_grad):  # gradient methods need autograd
            return explain_batch(model, images, [it.key for it in items], selection, s.threshold,
                                 s.normalization, s.multi, engine, s.preprocess)

    def load(item: InputItem) -> Any:
        return load_image_for(item.path, pre)

    if progress:
        progress(0, None)
    batches = decoded_batches(owned(), bs, load, shard.fail, block=lambda it: it.index // bs)
    for _, items, images in prefetch(batches):
        exps = _explain_each(explain_images, images, items)
        for item, image, exp in zip(items, images, exps):
            if isinstance(exp, BaseException):
                shard.fail(item, _reason(exp))
                continue
            if not _finite_result(exp):
                shard.fail(item, "the model gave non-finite scores (NaN or infinity) for this "
                                 "image; check the model's weights")
                continue
            exp = _fit_explanation(exp, s.min_prob)
            try:
                rec = _write_outputs(out, output_name(item.key), image, item, exp, s)
            except Exception as exc:  # noqa: BLE001
                shard.fail(item, f"cannot write its outputs: {_reason(exc)}")
                continue
            results.write(rec)
            shard.done += 1
            shard.redone += key_hash(item.key) in done_before
        images.clear()
        if progress:
            progress(shard.done + len(shard.failed),
                     shard.total - shard.skipped if listing["complete"] else None)
    if progress:
        progress(shard.done + len(shard.failed), shard.total - shard.skipped)


def _fit_explanation(exp: Any, min_prob: float | None) -> Any:
    """``exp`` with its size set to the original image's (the geometry's: a reduced decode has
    fewer pixels) and, with ``min_prob``, without the classes below it."""
    g = exp.geometry
    exp.width, exp.height = int(g.width), int(g.height)
    if min_prob is None:
        return exp
    keep = [j for j, p in enumerate(exp.probs) if p >= min_prob]
    if len(keep) == len(exp.probs):
        return exp
    return replace(
        exp, class_ids=[exp.class_ids[j] for j in keep],
        class_names=[exp.class_names[j] for j in keep], probs=[exp.probs[j] for j in keep],
        logits=[exp.logits[j] for j in keep], boxes=exp.boxes[keep].reshape(-1, 4),
        maps=exp.maps[keep],
        component_boxes=None if exp.component_boxes is None else [exp.component_boxes[j]
                                                                   for j in keep])


def _explain_each(explain_images: Callable[[list[Any], list[Any]], list[Any]], images: list[Any],
                  items: list[Any]) -> list[Any]:
    """Explain a batch; if the batch fails, each image alone (so only the image at fault fails).
    Returns one Explanation or exception per image."""
    if not images:
        return []
    try:
        return list(explain_images(images, items))
    except Exception:  # noqa: BLE001 - find the image(s) at fault
        out: list[Any] = []
        for im, it in zip(images, items):
            try:
                out.extend(explain_images([im], [it]))
            except Exception as exc:  # noqa: BLE001
                out.append(exc)
        return out


def _outputs_present(out: Path, name: str, s: ExplainSettings) -> bool:
    needed = []
    if s.overlays:
        needed.append(out / "overlays" / f"{name}.png")
    if s.save_maps:
        needed.append(out / "maps" / f"{name}.npy")
    return all(p.is_file() for p in needed)


def _write_outputs(out: Path, name: str, image: Any, item: InputItem, exp: Any,
                   s: ExplainSettings) -> dict[str, Any]:
    rec = exp.to_record()
    rec["threshold_source"] = (s.threshold_source or {}).get("kind", "given")
    if item.image_id is not None:
        rec["image_id"] = item.image_id
    if s.overlays:
        from camloc.viz import render_explanation
        from camloc.viz.overlay import overlay_size

        dw, dh = overlay_size(exp, s.overlay_size, s.max_panels)
        if (image.size[0] < dw or image.size[1] < dh) and item.path is not None:
            from camloc.data.images import load_image

            image = load_image(item.path, min_size=(dw, dh))  # decoded reduced for the network
        rendered = render_explanation(image, exp, s.overlay_size, s.max_panels)
        rel = f"overlays/{name}.png"
        with atomic_open(out / rel, "wb") as fh:
            fh.write(_png_bytes(rendered))
        rec["overlay"] = rel
    if s.save_maps:
        rel = f"maps/{name}.npy"
        atomic_save_npy(out / rel, exp.maps)
        rec["maps"] = rel
    return rec


def _png_bytes(image: Any) -> bytes:
    """PNG of an RGB image at :data:`PNG_COMPRESSION` (OpenCV's encoder releases the GIL)."""
    import cv2
    import numpy as np

    ok, buf = cv2.imencode(".png", np.asarray(image)[:, :, ::-1],
                           [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:
        raise OSError("PNG encoding failed")
    return buf.tobytes()


def _runtime_engine(model: Any, s: ExplainSettings) -> Any:
    """``--runtime onnx`` (or an exported ``.onnx`` file): the onnxruntime engine
    (:class:`camloc.runtime_onnx.OnnxCAM`) at the run's input size; ``torch``: None."""
    if s.runtime is None or str(s.runtime).strip().lower() == "torch":
        return None
    if s.layer is not None or any(v is not None for v in s.method_options.values()):
        raise ConfigError(f"--runtime {s.runtime}: the exported graph reads the head's layer "
                          f"with no method options; leave out --layer and the method's options")
    from camloc.runtime_onnx import make_runtime_engine

    pre = s.preprocess or model.spec.preprocess
    return make_runtime_engine(model, s.runtime, s.method, tuple(pre.input_size))
