"""A whole units run: resume, one pass (sharded under torchrun), merge, report, sheets, page.

Output folder::

    units.json        the report (see camloc.units.analysis for every definition)
    units.html        classes -> their units -> galleries; units -> the classes using them
    sheets/*.png      one sheet per shown unit and per class
    errors.jsonl      images that could not be read (then the exit code is 1)
    state/            the saved pass (one file per process); a re-run continues from it

The state is saved atomically every ``save_every`` seconds, at the end of the pass, and on
Ctrl-C; a re-run with the same model, data and options continues where it stopped (and, after
a finished pass, only rebuilds the report). ``overwrite=True`` starts over.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from camloc.errors import ConfigError
from camloc.units.data import UnitsData, align_labels
from camloc.units.state import UnitsState

__all__ = ["UnitsSettings", "UnitsResult", "analyze_units", "run_units"]


@dataclass
class UnitsSettings:
    """Options of a units run (the CLI's, one for one)."""

    classes: str | Sequence[int] | None = None  # None: classes with images; "all"; or ids
    top_units: int = 8
    top_images: int = 12
    quantile: float = 0.005
    purity_classes: int = 5
    layer: str | None = None
    batch_size: int = 32
    workers: int = 0
    save_every: float = 60.0
    overwrite: bool = False
    sheets: bool = True
    tile: int = 96
    gallery_units: int = 32
    seed: int = 0
    draws: int = 1000

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the option unless every option is in its range
        (:data:`LIMITS`: the options that size memory or time are bounded)."""
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"--{name.replace('_', '-')}={value!r}: expected an integer "
                                  f"from {low} to {high}")
        try:
            quantile, save_every = float(self.quantile), float(self.save_every)
        except (TypeError, ValueError):
            raise ConfigError(f"--quantile={self.quantile!r} / --save-every="
                              f"{self.save_every!r}: expected numbers") from None
        if not 0.0 < quantile < 1.0:
            raise ConfigError(f"--quantile={self.quantile}: expected a fraction in (0, 1), e.g. "
                              f"0.005 for the top 0.5% of activations")
        if not 0.0 <= save_every <= 86400.0:
            raise ConfigError(f"--save-every={self.save_every}: expected seconds from 0 to 86400")


#: ``(lowest, highest)`` of each whole-number option of a units run. The upper bounds keep
#: memory bounded: ``tile`` x ``top_images`` sizes each unit's sheet (at most 100 x 260 pixels
#: wide), ``top_images`` x ``units`` the kept maps.
LIMITS: dict[str, tuple[int, int]] = {
    "top_units": (1, 256), "top_images": (1, 100), "purity_classes": (1, 1000),
    "batch_size": (1, 4096), "workers": (0, 64), "tile": (16, 256), "gallery_units": (1, 1024),
    "draws": (1, 100_000)}


@dataclass
class UnitsResult:
    """What a run produced (on the main process; other ranks get ``report=None``)."""

    report: dict[str, Any] | None
    paths: dict[str, str] = field(default_factory=dict)
    failed: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int = 0

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def _fingerprint(model: Any, data: UnitsData, settings: UnitsSettings, names: list[str],
                 shape: tuple[int, int], world: int, rank: int) -> dict[str, Any]:
    h = hashlib.sha1()
    for it in data.items:
        h.update(f"{it.image_id}\t{it.label}\n".encode())
    head = model.head
    return {"model": model.spec.name, "source": model.spec.source,
            "head": model.spec.extra.get("head"), "units": int(head.num_channels),
            "classes": int(head.num_classes), "feature_layers": names, "map_shape": list(shape),
            "top_images": settings.top_images, "images": len(data.items),
            "data": h.hexdigest(), "world_size": world, "rank": rank}


def _load_or_start(path: Path, meta: dict[str, Any], settings: UnitsSettings,
                   head: Any) -> UnitsState:
    if path.is_file() and not settings.overwrite:
        state = UnitsState.load(path)
        diff = sorted(k for k in set(meta) | set(state.meta) if meta.get(k) != state.meta.get(k))
        if diff:
            raise ConfigError(f"{path} was saved by a different run ({', '.join(diff)} differ); "
                              f"pass --overwrite to start over, or another --out")
        return state
    return UnitsState.empty(meta, head.num_classes, head.num_channels,
                            tuple(meta["map_shape"]), settings.top_images)  # type: ignore[arg-type]


def _prepare(model: Any, data: UnitsData, settings: UnitsSettings | None
             ) -> tuple[UnitsSettings, Any, list[str], tuple[int, int], UnitsData]:
    from camloc.units.contrib import check_layer, gap_head

    settings = settings or UnitsSettings()
    settings.check()
    head = gap_head(model)
    names, shape = check_layer(model, settings.layer, tuple(model.spec.preprocess.input_size))
    return settings, head, names, shape, align_labels(data, list(model.spec.class_names))


def _report(state: UnitsState, model: Any, data: UnitsData, settings: UnitsSettings,
            names: list[str]) -> dict[str, Any]:
    from camloc.units.analysis import build_report

    report = build_report(state, model, data, settings.classes, settings.top_units,
                          settings.purity_classes, settings.quantile, settings.gallery_units,
                          settings.seed, settings.draws)
    report["model"]["feature_layers"] = names
    return report


def analyze_units(model: Any, data: UnitsData, settings: UnitsSettings | None = None,
                  progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """One pass over ``data`` in this process, then the report (nothing written to disk).

    >>> import camloc                                                      # doctest: +SKIP
    >>> from camloc.units import analyze_units, open_units_data            # doctest: +SKIP
    >>> rep = analyze_units(camloc.load_model(), open_units_data("imagenet-val-dev"))  # doctest: +SKIP
    >>> rep["classes"][0]["by_contribution"][0]                            # doctest: +SKIP
    """
    from camloc.units.collect import collect_units

    settings, head, names, shape, data = _prepare(model, data, settings)
    meta = _fingerprint(model, data, settings, names, shape, 1, 0)
    state = UnitsState.empty(meta, head.num_classes, head.num_channels, shape, settings.top_images)
    collect_units(model, data.items, state, batch_size=settings.batch_size,
                  workers=settings.workers, progress=progress)
    return _report(state.to("cpu"), model, data, settings, names)


def run_units(model: Any, data: UnitsData, out: str | os.PathLike[str],
              settings: UnitsSettings | None = None, ctx: Any = None,
              progress: Callable[[int, int], None] | None = None,
              stop_after: int | None = None) -> UnitsResult:
    """The ``camloc units`` run: resumable pass (this rank's shard when ``ctx`` is a distributed
    :class:`~camloc.distributed.DistContext`), exact merge on rank 0, then ``units.json``,
    ``units.html``, the sheets and ``errors.jsonl`` in ``out``.

    ``stop_after``: stop (state saved) after that many batches, to split a long run.

    Raises:
        UnsupportedHeadError: no GAP -> linear head, or a ``layer`` without exact contributions.
        ConfigError: bad options, labels that are not the model's classes, a saved state from a
            different run.
    """
    from camloc.io import folder_lock, refuse_symlink

    settings, head, names, shape, data = _prepare(model, data, settings)
    rank = int(getattr(ctx, "rank", 0))
    out = Path(out)
    with contextlib.ExitStack() as lock:
        if rank == 0:  # out locked for the run (a second run into it is refused)
            lock.enter_context(folder_lock(out))
            if settings.sheets:  # a link to a folder elsewhere: refused before the pass
                refuse_symlink(out / "sheets")
        return _run_units(model, data, out, settings, head, names, shape, ctx, progress,
                          stop_after)


def _run_units(model: Any, data: UnitsData, out: Path, settings: UnitsSettings, head: Any,
               names: list[str], shape: Any, ctx: Any,
               progress: Callable[[int, int], None] | None,
               stop_after: int | None) -> UnitsResult:
    from camloc.io import atomic_write_json, atomic_write_text
    from camloc.units.collect import collect_units, input_preprocess
    from camloc.units.render import render_html, render_sheets

    rank = int(getattr(ctx, "rank", 0))
    world = int(getattr(ctx, "world_size", 1))
    state_path = out / "state" / f"units-rank{rank}-of{world}.pt"
    meta = _fingerprint(model, data, settings, names, shape, world, rank)
    state = _load_or_start(state_path, meta, settings, head)
    resumed = state.position
    items = data.items[rank::world]
    indices = range(rank, len(data.items), world)
    collect_units(model, items, state, indices=indices, batch_size=settings.batch_size,
                  workers=settings.workers, checkpoint=lambda s: s.save(state_path),
                  checkpoint_every=settings.save_every, progress=progress, stop_after=stop_after)
    state.to("cpu")
    state.save(state_path)
    states = ctx.gather_objects(state) if ctx is not None and world > 1 else [state]
    if rank != 0:
        return UnitsResult(None, failed=list(state.failed), resumed_from=resumed)
    merged = states[0]
    for other in states[1:]:
        merged.merge(other)
    if merged.position < len(data.items):  # stopped early (stop_after): state saved, no report
        return UnitsResult(None, failed=list(merged.failed), resumed_from=resumed)
    report = _report(merged, model, data, settings, names)
    report["world_size"] = world
    paths: dict[str, str] = {}
    sheets: dict[str, list[str]] = {}
    if settings.sheets:
        sheets = render_sheets(report, merged, data.items, input_preprocess(model), out,
                               tile=settings.tile)
    atomic_write_json(out / "units.json", report, indent=None)
    atomic_write_text(out / "units.html", render_html(report, sheets))
    paths.update(json=str(out / "units.json"), html=str(out / "units.html"),
                 sheets=str(out / "sheets"))
    errors = out / "errors.jsonl"
    if merged.failed:
        atomic_write_text(errors, "".join(json.dumps(r) + "\n" for r in merged.failed))
        paths["errors"] = str(errors)
    elif errors.exists():
        errors.unlink()
    return UnitsResult(report, paths, list(merged.failed), resumed)
