"""Batch explanation runs: many files in, overlays + ``results.jsonl`` + ``errors.jsonl`` out.

One bad image never stops a run: it is reported by path and reason in ``errors.jsonl`` and in the
summary, and the rest of the batch completes. Every output file is written atomically, and a run
can be repeated: images already in ``results.jsonl`` (with their overlay on disk) are skipped
unless ``overwrite`` is set.

Output folder layout::

    OUT/overlays/<name>.png     heatmap + box + label (a grid of panels for top-k)
    OUT/maps/<name>.npy         (k, H, W) float32 normalised maps at input resolution (save_maps)
    OUT/results.jsonl           one line per image (see Explanation.to_record)
    OUT/errors.jsonl            one line per failed input: {"path", "error"}
    OUT/manifest.json           model, settings, versions, counts
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from camloc.data.images import find_images, load_image
from camloc.errors import ConfigError, ImageError
from camloc.explain import Explanation, explain_batch
from camloc.io import JsonlWriter, atomic_save_npy, atomic_write_json, read_jsonl, versions
from camloc.models.registry import CamModel
from camloc.models.spec import Preprocess

__all__ = ["ExplainSettings", "RunSummary", "run_explain", "output_name"]


@dataclass
class ExplainSettings:
    top_k: int = 5
    classes: Sequence[int] | None = None
    threshold: float = 0.2
    normalization: str = "max"
    multi: bool = False
    method: str = "cam"
    batch_size: int = 16
    save_maps: bool = False
    overwrite: bool = False
    preprocess: Preprocess | None = None


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


def output_name(path: Path, root: Path | None) -> str:
    """A flat, unique file name for ``path`` (its path relative to ``root``, '/' -> '__')."""
    try:
        rel = path.resolve().relative_to(root) if root else Path(path.name)
    except ValueError:
        rel = Path(path.name)
    return "__".join(rel.parts)


def _common_root(paths: Sequence[Path]) -> Path | None:
    if not paths:
        return None
    parents = [str(p.resolve().parent) for p in paths]
    try:
        return Path(os.path.commonpath(parents))
    except ValueError:
        return None


def _render(image: Any, exp: Explanation) -> Any:
    from camloc.viz import overlay, overlay_grid

    panels = []
    for j in range(len(exp.class_ids)):
        label = f"{exp.class_names[j].split(',')[0]} {exp.probs[j]:.2f}"
        panels.append(overlay(image, exp.map_in_original(j), box=exp.boxes[j], label=label))
    return panels[0] if len(panels) == 1 else overlay_grid(panels)


def run_explain(model: CamModel, inputs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str],
                settings: ExplainSettings | None = None,
                progress: Callable[[int, int], None] | None = None) -> RunSummary:
    """Explain every image found under ``inputs`` and write the run folder ``out``."""
    s = settings or ExplainSettings()
    if s.batch_size < 1:
        raise ConfigError(f"batch_size={s.batch_size}: must be >= 1")
    out = Path(out)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    paths, problems = find_images(inputs)
    summary = RunSummary(out=out, total=len(paths))
    root = _common_root(paths)
    results_path = out / "results.jsonl"
    if s.overwrite and results_path.exists():
        results_path.unlink()
    finished = {r.get("path") for r in read_jsonl(results_path)}
    errors = JsonlWriter(out / "errors.jsonl", append=False)
    for inp, why in problems:
        rec = {"path": inp, "error": why}
        summary.failed.append(rec)
        errors.write(rec)
    todo: list[tuple[Path, str]] = []
    for p in paths:
        name = output_name(p, root)
        if not s.overwrite and str(p) in finished and (out / "overlays" / f"{name}.png").exists():
            summary.skipped += 1
            continue
        todo.append((p, name))
    selection = list(s.classes) if s.classes else s.top_k
    with JsonlWriter(results_path, append=True) as results, errors:
        for start in range(0, len(todo), s.batch_size):
            chunk = todo[start:start + s.batch_size]
            images, ok = [], []
            for p, name in chunk:
                try:
                    images.append(load_image(p))
                    ok.append((p, name))
                except ImageError as exc:
                    rec = {"path": str(p), "error": exc.reason}
                    summary.failed.append(rec)
                    errors.write(rec)
            if images:
                with torch.inference_mode(s.method == "cam"):
                    exps = explain_batch(model, images, [str(p) for p, _ in ok], selection,
                                         s.threshold, s.normalization, s.multi, s.method,
                                         s.preprocess)
                for (p, name), image, exp in zip(ok, images, exps):
                    rendered = _render(image, exp)
                    overlay_path = out / "overlays" / f"{name}.png"
                    from camloc.io import atomic_open

                    with atomic_open(overlay_path, "wb") as fh:
                        rendered.save(fh, format="PNG")
                    rec = exp.to_record()
                    rec["overlay"] = str(overlay_path.relative_to(out))
                    if s.save_maps:
                        map_path = out / "maps" / f"{name}.npy"
                        atomic_save_npy(map_path, exp.maps)
                        rec["maps"] = str(map_path.relative_to(out))
                    results.write(rec)
                    summary.done += 1
            if progress:
                progress(min(start + len(chunk), len(todo)), len(todo))
    summary.seconds = time.perf_counter() - t0
    atomic_write_json(out / "manifest.json", {
        "command": "explain",
        "model": model.spec.name,
        "model_source": model.spec.source,
        "preprocess": (s.preprocess or model.spec.preprocess).to_dict(),
        "settings": {"top_k": s.top_k, "classes": list(s.classes) if s.classes else None,
                     "threshold": s.threshold, "normalization": s.normalization,
                     "multi": s.multi, "method": s.method, "batch_size": s.batch_size},
        "counts": {"found": summary.total, "explained": summary.done, "skipped": summary.skipped,
                   "failed": len(summary.failed)},
        "seconds": round(summary.seconds, 3),
        "versions": versions(),
    })
    return summary
