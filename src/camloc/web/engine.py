"""The web server's only door into the CAM engine.

Everything ``camloc serve`` asks of models and map methods goes through :class:`WebEngine`: which
methods exist (read from :data:`camloc.cams.METHODS` and the catalog's metadata: family, cost,
paper, whether the method needs the GAP head or gradients), which layers can be chosen (any
module whose output the engine reads as a map: conv stages and blocks, transformer token
blocks), a batch of explanations for one (method, layer) built with
:func:`camloc.cams.make_method`, and every class's raw map from one forward pass (for "which
classes are highest at this point"; exact CAM only). When the engine's API changes, this module is
the one to adapt.

>>> import camloc
>>> from PIL import Image
>>> eng = WebEngine(camloc.load_model())
>>> [r] = eng.explain("cam", None, [ExplainJob(Image.new("RGB", (64, 48)), 3, all_maps=True)])
>>> len(r.class_ids), r.maps.shape, r.all_maps.shape
(3, (3, 224, 224), (1000, 7, 7))
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from camloc.errors import CamlocError, ConfigError

if TYPE_CHECKING:
    from PIL import Image

    from camloc.models.loader import CamModel
    from camloc.models.spec import Geometry

__all__ = ["WebEngine", "ExplainJob", "ImageResult", "DEFAULT_LAYER"]

DEFAULT_LAYER = ""  # the engine's own choice (the model's default target layer, CamModel.layers)
_SIMPLE = (str, bool, int, float)


@dataclass
class ExplainJob:
    """One image to explain: ``selection`` is a top-k count or a list of class ids; ``target``
    (a :class:`~camloc.targets.Target`, e.g. a margin), when given, replaces it."""

    image: Image.Image
    selection: int | list[int]
    all_maps: bool = False
    #: a followed request (``camloc.web.jobs.Job``): ``tick()`` before each pass of the network
    progress: Any = None
    target: Any = None


@dataclass
class ImageResult:
    """One image's explanation, as the web layer needs it.

    ``maps``: ``(k, H, W)`` float32 at the network's input resolution, max-normalised (what
    ``camloc explain`` thresholds); ``all_maps``: ``(C, h, w)`` raw maps of every class at feature
    resolution, or ``None`` when not asked for; ``layers``: the target layer(s) the engine used.
    """

    method: str
    class_ids: list[int]
    class_names: list[str]
    probs: list[float]
    logits: list[float]
    maps: np.ndarray
    geometry: Geometry
    all_maps: np.ndarray | None = None
    layers: list[str] = dataclasses.field(default_factory=list)


def _method_class(entry: Any) -> Any:
    """The callable that builds a method from a ``METHODS`` entry (a class, or a record holding one)."""
    if inspect.isclass(entry):
        return entry
    for attr in ("cls", "factory", "method", "impl"):
        if callable(getattr(entry, attr, None)):
            return getattr(entry, attr)
    if callable(entry):
        return entry
    raise ConfigError(f"camloc.cams.METHODS entry {entry!r}: cannot tell how to build it")


def _simple_fields(obj: Any) -> dict[str, Any]:
    """JSON-simple public fields of an object, a dataclass, or a ``to_dict()``-able record."""
    if obj is None:
        return {}
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        items = dict(obj.to_dict()).items()
    elif dataclasses.is_dataclass(obj) and not inspect.isclass(obj):
        items = dataclasses.asdict(obj).items()
    else:
        items = vars(obj).items() if hasattr(obj, "__dict__") else []
    return {k: v for k, v in items if not k.startswith("_") and isinstance(v, _SIMPLE)}


def _metadata(name: str, entry: Any) -> dict[str, Any]:
    """What a METHODS entry says about itself: simple class attributes (``name``, ``needs_grad``,
    ...), its ``info`` record (e.g. family, summary, paper, cost, needs_head) if it has one, and
    the first paragraph of its docstring."""
    meta: dict[str, Any] = {}
    cls = _method_class(entry)
    sources: list[Any] = list(reversed([c for c in cls.__mro__ if c is not object])) \
        if inspect.isclass(cls) else []
    if entry is not cls:
        sources.append(entry)
    for src in sources:
        meta.update(_simple_fields(src))
    for src in (cls, entry):
        meta.update(_simple_fields(getattr(src, "info", None)))
    doc = inspect.getdoc(cls) or ""
    meta["name"] = name
    meta.setdefault("label", name)
    meta.setdefault("description", meta.get("summary") or
                    doc.split("\n\n")[0].replace("\n", " ").strip())
    meta["needs_grad"] = bool(meta.get("needs_grad", False))
    meta["layer_choice"] = _accepts_layer(cls)
    return meta


def _accepts_layer(cls: Any) -> bool:
    """Whether building ``cls`` takes a ``layer`` argument (following ``*args, **kwargs`` up the
    class hierarchy, as subclasses that only add options pass the rest to their base)."""
    for klass in (cls.__mro__ if inspect.isclass(cls) else (cls,)):
        init = klass.__init__ if inspect.isclass(klass) else klass
        if init is object.__init__:
            return False
        try:
            params = inspect.signature(init).parameters
        except (TypeError, ValueError):
            return False
        if "layer" in params:
            return True
        kinds = {p.kind for p in params.values()}
        if not kinds & {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD}:
            return False
    return False


class WebEngine:
    """A loaded model plus what the web server needs from the engine.

    ``fit``: how images become network input (``"stretch"``, ``camloc explain``'s default, or
    ``"crop"``).
    """

    def __init__(self, model: CamModel, fit: str = "stretch", runtime: str = "torch",
                 localizer: Any = None) -> None:
        self.model = model
        #: a :class:`camloc.localizer.Localizer` (or its folder), checked against the model:
        #: requests may ask for its foreground combined into the maps (``localizer=True``)
        self.localizer: Any = None
        if localizer is not None:
            from camloc.localizer.model import Localizer, load_localizer

            loc = localizer if isinstance(localizer, Localizer) else load_localizer(localizer)
            loc.check_model(model)
            self.localizer = loc
        self.preprocess = model.spec.preprocess.with_(fit=fit)
        #: ``torch``, ``onnx`` or an exported ``.onnx`` file: exact CAM on the model's own layer
        #: then runs on onnxruntime (the engine ``camloc explain --runtime`` uses); the other
        #: methods and layers on torch
        self.runtime = str(runtime or "torch").strip()
        self._onnx: Any = None
        if self.runtime.lower() != "torch":
            from camloc.runtime_onnx import make_runtime_engine

            self._onnx = make_runtime_engine(model, self.runtime, "cam",
                                             tuple(self.preprocess.input_size))
        self._layers: list[dict[str, Any]] | None = None
        self._methods: list[dict[str, Any]] | None = None
        self._made: dict[tuple[str, str], Any] = {}
        self._pass_seconds: float | None = None  # one image through the network (dry pass)
        self._shapes: dict[str, list[int]] = {}  # every spatial layer's map shape (dry pass)
        self._factor: dict[str, float] = {}  # measured / estimated seconds, per method
        self._local = threading.local()  # the request being followed in this thread, if any
        self._slow_model: CamModel | None = None
        self._slow_lock = threading.Lock()

    def _model_for(self, method: str) -> CamModel:
        """The model a method runs on: slow methods on their own copy, so that the two lanes'
        layer hooks (added and removed around every pass) never see each other's passes."""
        if not any(m["name"] == method and m.get("slow") for m in self.methods()):
            return self.model
        return self._slow_copy()

    def _slow_copy(self) -> CamModel:
        """The slow lane's own copy of the model (made on first use)."""
        with self._slow_lock:
            if self._slow_model is None:
                import copy

                slow = copy.deepcopy(self.model)
                # Every pass of the copy (a method's perturbed batches included) first asks the
                # request run by this thread whether to go on: progress and Cancel.
                slow.module.register_forward_pre_hook(self._before_pass)
                self._slow_model = slow
            return self._slow_model

    @classmethod
    def load(cls, name: str = "efficientnet_lite0", weights: Any = "DEFAULT", device: str = "auto",
             head: str | None = None, fit: str = "stretch", runtime: str = "torch",
             localizer: Any = None) -> WebEngine:
        """Load a model once (``camloc.load_model``) and wrap it (with ``localizer``, a
        ``camloc localizer fit`` folder fitted on that model)."""
        from camloc.models import load_model

        return cls(load_model(name, weights=weights, device=device, head=head), fit=fit,
                   runtime=runtime, localizer=localizer)

    # ------------------------------------------------------------------ what the model offers
    @property
    def name(self) -> str:
        return self.model.spec.name

    @property
    def device(self) -> str:
        return str(self.model.device)

    @property
    def class_names(self) -> list[str]:
        spec = self.model.spec
        return [spec.class_name(i) for i in range(spec.num_classes)]

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the network input, the resolution of the maps sent."""
        return tuple(self.preprocess.input_size)  # type: ignore[return-value]

    @property
    def has_exact_cam(self) -> bool:
        """Whether every class's map can come from one forward pass (a verified GAP head)."""
        return getattr(self.model, "head", None) is not None

    def methods(self) -> list[dict[str, Any]]:
        """Every method of the engine, with its metadata and whether this model can run it."""
        from camloc.cams import METHODS
        from camloc.cams.catalog import CATALOG

        if self._methods is None:
            out = []
            for name, entry in METHODS.items():
                meta = _metadata(name, entry)
                if name in CATALOG:  # the library's own metadata wins over anything inferred
                    meta.update(CATALOG[name].to_dict())
                needs_head = bool(meta.get("needs_head", meta.get("requires_head", False)))
                meta["needs_head"] = needs_head
                meta["available"] = self.has_exact_cam or not needs_head
                if not meta["available"]:
                    meta["reason"] = self._refusal(name)
                # many whole-network passes per map (one per channel or noise sample): the slow
                # lane, left out of "side by side" unless chosen
                meta["slow"] = bool(meta.get("slow", _is_slow(meta)))
                out.append(meta)
            self._methods = out
        return [dict(m) for m in self._methods]

    def layers(self) -> list[dict[str, Any]]:
        """Layers a user may choose (``name``, ``label``, ``shape``), the engine's default first.

        When some method accepts ``layer=`` (every engine method does), each module at most two
        levels deep whose output the engine reads as a spatial map (``(N, C, h, w)``,
        channels-last, or patch tokens; found by one dry forward pass) is offered, unless the
        engine names its candidates itself. Any other layer name the engine resolves is accepted
        too (:meth:`check`).
        """
        if self._layers is None:
            chosen = [str(n) for n in getattr(self.model, "layers", None) or []]
            label = f"default ({', '.join(chosen)})" if chosen else "default (the pooled features)"
            self._layers = [{"name": DEFAULT_LAYER, "label": label}]
            if any(m["layer_choice"] for m in self.methods()):
                self._layers += self._candidate_layers()
        return self._layers

    def _candidate_layers(self) -> list[dict[str, Any]]:
        default = {str(n) for n in getattr(self.model, "layers", None) or []}
        found = _spatial_layers(self.model.module, self.input_size, self.model.device)
        self._pass_seconds = found.pop(0)["seconds"]
        self._shapes = {e["name"]: e["shape"] for e in found}
        out = []
        for entry in found:
            if entry["name"] in default and len(default) == 1:
                continue
            refused = {}
            for meta in self.methods():  # methods that cannot use this layer (exact CAM: only one)
                if meta["available"] and meta["layer_choice"] and meta["needs_head"]:
                    try:
                        self._make(meta["name"], entry["name"])
                    except CamlocError as exc:
                        refused[meta["name"]] = str(exc)
            entry["refused_by"] = refused
            out.append(entry)
        return out

    def _refusal(self, method: str) -> str:
        """The engine's own reason why ``method`` cannot run on this model (no GAP head)."""
        from camloc.cams import registry

        if method in registry.METHODS:
            try:
                registry.make_method(self.model, method)
            except CamlocError as exc:
                return str(exc)
        return (f"method={method!r} needs a verified GAP -> linear head, and {self.name} has "
                "none; choose another method")

    def check(self, method: str, layer: str = DEFAULT_LAYER) -> None:
        """Raise :class:`ConfigError` unless ``method`` (on ``layer``) can run on this model; the
        message is the engine's reason (no GAP head for exact CAM, no such layer, a layer the
        method cannot use)."""
        self._make(method, layer or None)

    def _make(self, method: str, layer: str | None) -> Any:
        """The method instance for (``method``, ``layer``), built once and kept (building one
        resolves its layers, which is cheap, but a request should not pay for it twice)."""
        from camloc.cams import METHODS, registry

        key = (method, layer or DEFAULT_LAYER)
        made = self._made.get(key)
        if made is not None:
            return made
        if self._onnx is not None and method == "cam" and not layer:
            return self._onnx
        if method not in METHODS:
            raise ConfigError(f"method={method!r}: expected one of {', '.join(METHODS)}")
        meta = next(m for m in self.methods() if m["name"] == method)
        if not meta["available"]:
            raise ConfigError(meta.get("reason") or self._refusal(method))
        if layer and not meta["layer_choice"]:
            raise ConfigError(f"layer={layer!r}: method {method!r} takes no layer choice")
        try:
            model = self._model_for(method)
            if layer:  # the layer exists (plug-ins may not check it themselves)
                from camloc.models.layers import resolve_layers

                resolve_layers(model.module, layer)
            if METHODS[method] is registry.METHODS.get(method):
                made = registry.make_method(model, method, layer or None)
            else:  # an entry added at run time (a plug-in): build it as its class says
                cls = _method_class(METHODS[method])
                made = cls(model, layer=layer) if layer else cls(model)
        except ConfigError as exc:
            if layer and "no such layer" in str(exc):
                raise ConfigError(f"layer={layer!r}: not a layer of {self.name} ({exc}); see "
                                  f"/api/methods for the layers offered") from exc
            raise
        except CamlocError as exc:  # e.g. a layer whose output is not a map
            raise ConfigError(str(exc)) from exc
        self._made[key] = made
        return made

    def _before_pass(self, _module: Any, _args: Any) -> None:
        progress = getattr(self._local, "progress", None)
        if progress is not None:
            progress.tick()

    def _channels(self, layer: str) -> int:
        """Channels of ``layer``'s map ('' = the default layer(s): their sum)."""
        names = [layer] if layer else [str(n) for n in getattr(self.model, "layers", None) or []]
        self.layers()  # traced once, at start-up (never while a request runs)
        shapes = self._shapes
        return sum(int((shapes.get(n) or [512])[0]) for n in names) or 512

    def estimate(self, method: str, layer: str = DEFAULT_LAYER, k: int = 5) -> dict[str, Any]:
        """Before a request runs: ``slow`` (the slow lane), ``passes`` (expected passes of the
        network, when the method's cost says; ``None`` otherwise) and ``seconds`` (estimated from
        the dry pass's time and the method's catalog cost, corrected by what earlier requests of
        this method measured)."""
        from camloc.cams.engine import CPU_PASS_PIXELS

        meta = next((m for m in self.methods() if m["name"] == method), None)
        if meta is None:
            raise ConfigError(f"method={method!r}: expected one of "
                              f"{', '.join(m['name'] for m in self.methods())}")
        self.layers()
        one = self._pass_seconds or 0.05
        h, w = self.input_size
        per_pass = max(1, min(64, CPU_PASS_PIXELS // (h * w))) \
            if self.model.device.type == "cpu" else 64
        passes: int | None = None
        cost = str(meta.get("cost", ""))
        if meta.get("family") == "perturbation" or "K forward" in cost:
            channels = self._channels(layer)
            passes = 2 + math.ceil(channels / per_pass)
            rows = 1 + channels
        elif "n forward" in cost:
            rows = (1 + 8) * (1 + 2 * k)  # 8 noise samples, a backward ~ two forwards per class
        elif meta.get("needs_grad"):
            rows = 1 + 2 * k
        else:
            rows = 1
        seconds = rows * one * 0.6 * self._factor.get(method, 1.0)  # batched rows cost less
        return {"method": method, "slow": bool(meta.get("slow")), "passes": passes,
                "seconds": round(seconds, 2)}

    def learn(self, method: str, layer: str, k: int, seconds: float) -> None:
        """Correct later estimates of ``method`` by a finished request's measured ``seconds``."""
        predicted = self.estimate(method, layer, k)["seconds"] / self._factor.get(method, 1.0)
        if predicted > 0 and seconds > 0:
            ratio = seconds / predicted
            old = self._factor.get(method)
            self._factor[method] = ratio if old is None else 0.5 * old + 0.5 * ratio

    # ------------------------------------------------------------------ explaining
    def tta_method(self, method: str, layer: str | None, tta: str, localizer: bool = False) -> Any:
        """The method for (``method``, ``layer``) wrapped in test-time augmentation
        (:func:`camloc.cams.tta.with_tta`, as ``camloc explain --tta`` wraps it); ``tta`` is a
        canonical ``--tta`` text (:func:`parse_tta`'s ``describe()``), ``""`` for none. On
        torch, also with ``--runtime onnx`` (the exported graph has one input size). With
        ``localizer``, the server's localizer foreground is combined in first (as ``camloc
        explain --localizer`` does)."""
        if localizer and self.localizer is None:
            raise ConfigError("localizer: this server was started without --localizer")
        if not tta and not localizer:
            return self._make(method, layer)
        key = (f"{method}+tta={tta}" + ("+localizer" if localizer else ""), layer or DEFAULT_LAYER)
        made = self._made.get(key)
        if made is None:
            from camloc.cams.tta import with_tta
            from camloc.localizer.model import with_localizer

            base = self._make(method, layer)
            if base is self._onnx:
                base = self._torch_cam()
            if localizer:
                base = with_localizer(base, self.localizer)
            made = self._made[key] = with_tta(base, tta or None)
        return made

    def _torch_cam(self) -> Any:
        from camloc.cams import registry

        return registry.make_method(self.model, "cam", None)

    def explain(self, method: str, layer: str | None, jobs: Sequence[ExplainJob],
                tta: str = "", localizer: bool = False) -> list[ImageResult]:
        """Explain a batch of images with one method on one layer.

        Jobs asking for top-k share one forward pass (the largest k, sliced per image), jobs naming
        classes share another (each row padded to the longest list, then trimmed), a job with a
        ``target`` has its own (:func:`camloc.explain.explain_batch`'s ``target``). A job with a
        ``progress`` tracker, alone in its batch, is followed pass by pass (and can be cancelled).
        With ``localizer`` the maps are the localizer's combination, min-max normalised (the
        normalisation its threshold was chosen with).
        """
        engine = self.tta_method(method, layer, tta, localizer)
        followed = [j.progress for j in jobs if j.progress is not None]
        self._local.progress = followed[0] if len(jobs) == 1 and followed else None
        try:
            return self._explain(self._model_for(method), engine, jobs,
                                 "minmax" if localizer else None)
        finally:
            self._local.progress = None

    def _explain(self, model: CamModel, engine: Any, jobs: Sequence[ExplainJob],
                 normalization: str | None = None) -> list[ImageResult]:
        import torch

        from camloc.explain import explain_batch

        results: list[ImageResult | None] = [None] * len(jobs)
        plain = [(i, j) for i, j in enumerate(jobs) if j.target is None]
        top = {i: j.selection for i, j in plain if isinstance(j.selection, int)}
        named = {i: list(j.selection) for i, j in plain if not isinstance(j.selection, int)}
        groups: list[tuple[list[int], Any]] = [([i], j.target) for i, j in enumerate(jobs)
                                               if j.target is not None]
        if top:
            groups.append((list(top), max(top.values())))
        if named:
            width = max(len(r) for r in named.values())
            rows = [r + r[-1:] * (width - len(r)) for r in named.values()]
            groups.append((list(named), torch.tensor(rows, dtype=torch.long)))
        for idx, selection in groups:
            with torch.inference_mode(not getattr(engine, "needs_grad", True)):
                norm = {"normalization": normalization} if normalization else {}
                exps = explain_batch(model, [jobs[i].image for i in idx], None, selection,
                                     method=engine, preprocess=self.preprocess, **norm)
            for i, e in zip(idx, exps):
                sel = jobs[i].selection
                k = len(e.class_ids) if jobs[i].target is not None else \
                    min(int(sel), len(e.class_ids)) if isinstance(sel, int) else len(sel)
                results[i] = ImageResult(e.method, e.class_ids[:k], e.class_names[:k], e.probs[:k],
                                         e.logits[:k], e.maps[:k], e.geometry,
                                         layers=list(e.layers))
        wanted = [i for i, j in enumerate(jobs) if j.all_maps]
        if wanted:
            every = self.all_class_maps([jobs[i].image for i in wanted])
            for i, m in zip(wanted, every):
                results[i].all_maps = m  # type: ignore[union-attr]
        return results  # type: ignore[return-value]

    def run_folder(self, paths: Sequence[str], out: str, method: str, layer: str | None,
                   top_k: int, threshold: float, progress: Any = None, tta: str = "") -> Any:
        """Explain image files into the run folder ``out`` with the library's
        :func:`camloc.explain.run.run_explain` (the folder ``camloc explain`` writes: overlays,
        maps, ``results.jsonl``, ``errors.jsonl``, manifest), on the slow lane's model copy.
        ``progress``: a followed request (``camloc.web.jobs.Job``): images done of the total,
        and Cancel between images. Returns the :class:`~camloc.explain.run.RunSummary`."""
        from camloc.explain.run import ExplainSettings, run_explain

        def update(done: int, total: int | None) -> None:
            if progress is not None:
                progress.passes = done
                if total is not None:
                    progress.expected_passes = total
                if progress.cancel_event.is_set():
                    progress.tick()  # raises Cancelled: the run stops between images

        model = self._slow_copy()
        settings = ExplainSettings(
            top_k=min(top_k, len(self.class_names)), threshold=threshold, method=method,
            layer=layer or None, preprocess=self.preprocess, batch_size=1, save_maps=True,
            overlays=True, threshold_source={"kind": "given"},
            runtime=self.runtime if method == "cam" and not layer and not tta else "torch",
            tta=tta or None)
        return run_explain(model, list(paths), out, settings, progress=update,
                           source={"model": self.name, "weights": self.model.spec.source,
                                   "head": None})

    def all_class_maps(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Raw maps of every class, ``(N, C, h, w)`` float32, from one forward pass (exact CAM)."""
        import torch

        from camloc.cams import CAM
        from camloc.data.images import batch_images

        if not self.has_exact_cam:
            raise ConfigError("all-class maps need exact CAM, and this model has no GAP -> linear head")
        x, _ = batch_images(list(images), self.preprocess)
        with torch.inference_mode():
            out = CAM(self.model)(x, classes="all")
        return out.maps.float().cpu().numpy()


def _is_slow(meta: dict[str, Any]) -> bool:
    """Whether a method's cost (the catalog's ``cost``) is many whole-network passes per map: one
    per channel (``K forward``) or per noise sample (``n forward``)."""
    import re

    return meta.get("family") == "perturbation" or \
        bool(re.search(r"\b[Kn]\s+forward", str(meta.get("cost", ""))))


def _spatial_layers(module: Any, input_size: tuple[int, int], device: Any) -> list[dict[str, Any]]:
    """Named submodules, at most two levels deep, whose output the engine reads as a spatial map
    larger than 1x1 (:func:`camloc.models.layers.trace_modules`, one dry forward pass, and
    :func:`~camloc.models.layers.infer_layout`); ``shape`` is the map's ``[C, h, w]``. The first
    entry is ``{"seconds": s}``, how long the one-image pass took (for time estimates)."""
    import time

    import torch

    from camloc.models.layers import declared_prefix, infer_layout, is_skipped, trace_modules

    prefix = declared_prefix(module)
    only = [m for n, m in module.named_modules() if n and n.count(".") <= 1 and not is_skipped(m)]
    was_training = module.training
    module.eval()
    try:
        x = torch.zeros(1, 3, *input_size, device=device)
        _, records = trace_modules(module, x, only=only, keep=lambda t: t.dim() in (3, 4))
        times = []
        with torch.inference_mode():
            for _ in range(3):  # the first pass allocates; the best of the others
                t0 = time.perf_counter()
                module(x)
                times.append(time.perf_counter() - t0)
        seconds = min(times[1:])
    finally:
        module.train(was_training)
    found: dict[str, list[int]] = {}
    for rec in records:
        lay = infer_layout(rec.shape, input_size, prefix)
        if rec.name in found or lay is None or rec.value is None:
            continue
        try:
            shape = list(lay.to_map(rec.value[:1], input_size, rec.name).shape[1:])
        except CamlocError:
            continue
        if shape[1] * shape[2] > 1:
            found[rec.name] = shape
    return [{"seconds": seconds}] + [
        {"name": n, "label": f"{n} {'x'.join(map(str, s))}", "shape": s} for n, s in found.items()]
