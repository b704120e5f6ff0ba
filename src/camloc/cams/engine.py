"""The map engine: one forward pass, a context for the method, maps for any set of classes.

Every method is a :class:`CAMMethod`. Calling it on a batch runs the model once with hooks on the
target layer(s) and hands the method a :class:`CamContext`: the input, the logits, the target (what
to explain: ``k`` scores per image, see :mod:`camloc.targets`; by default the logits of the selected
classes), each layer's output as a map ``(N, K, h, w)``, gradients of the target scores computed on
first use, and ways to re-run the model on batched perturbed inputs. A method overrides one of two
things:

- :meth:`CAMMethod.channel_weights` -> ``(N, k, K)`` weights; the map is ``sum_K w A`` (Grad-CAM,
  Grad-CAM++, XGrad-CAM, Score-CAM, Ablation-CAM, and exact CAM with the classifier's rows);
- :meth:`CAMMethod.map` -> the whole ``(N, k, h, w)`` map (HiResCAM, LayerCAM, Eigen-CAM).

The engine does the rest and keeps the user's model as it was: hooks are removed in ``finally``,
train/eval flags are restored, parameters' ``.grad`` are never touched (gradients come from
``torch.autograd.grad``), and the network below the first target layer runs without autograd. A
method's ReLU (where its paper has one) is applied per layer; with several layers each map is
min-max normalised, resized (bilinear) to the largest layer's grid and averaged (fusion).

>>> import torch, camloc
>>> from camloc.cams import CAM, GradCAM
>>> model = camloc.load_model("resnet18", weights=None, num_classes=10)
>>> out = CAM(model)(torch.randn(2, 3, 64, 64), classes="all")
>>> out.maps.shape, out.layers
(torch.Size([2, 10, 2, 2]), ['layer4'])
>>> GradCAM(model, layer="layer3")(torch.randn(2, 3, 64, 64), classes=[[1], [2]]).maps.shape
torch.Size([2, 1, 4, 4])

A target other than class logits: any callable on the logits, or a :class:`~camloc.targets.Margin`
(class 3's lead over the best other class):

>>> from camloc.targets import Margin
>>> out = GradCAM(model)(torch.randn(2, 3, 64, 64), classes=Margin(3))
>>> out.maps.shape, out.scores.shape
(torch.Size([2, 1, 2, 2]), torch.Size([2, 1]))
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch.nn import functional as F

from camloc.cams.catalog import MethodInfo
from camloc.cams.postprocess import normalize, upsample
from camloc.errors import ConfigError, ModelError
from camloc.models.heads import eval_mode
from camloc.models.layers import (LayerSpec, LayerTap, Reshape, infer_layout, run_with_replaced,
                                  run_with_taps)
from camloc.models.loader import CamModel
from camloc.targets import ClassSelection, ClassTarget, Target, TargetSpec, resolve_targets, select_classes

__all__ = ["CAMMethod", "CamContext", "CamOutput", "ClassSelection", "TargetSpec", "fuse_maps",
           "select_classes", "smoothgrad_noise"]

#: on the CPU, the most input pixels one pass over perturbed or noisy inputs holds (16 x 224 x 224)
CPU_PASS_PIXELS = 16 * 224 * 224

@dataclass
class CamOutput:
    """What one engine call returns (all tensors on the model's device).

    ``maps`` are the method's maps at the target layer's resolution, before any normalisation or
    upsampling (with the method's ReLU where its paper has one). For exact CAM on a GAP network
    ``maps.mean((2, 3)) + bias == logits.gather(1, class_ids)``; ``bias`` is None for other methods.
    ``layers`` are the resolved target layer names. ``class_ids`` are the classes explained; for a
    target that is not a class's logit (a callable, :class:`~camloc.targets.Margin`) they are the
    target's classes (-1 where it has none) and ``target_scores`` holds its scores.
    """

    logits: torch.Tensor  # (N, C)
    class_ids: torch.Tensor  # (N, k) long
    maps: torch.Tensor  # (N, k, h, w) float32
    bias: torch.Tensor | None = None  # (N, k): exact CAM's per-image effective bias
    method: str = ""
    layers: list[str] = field(default_factory=list)
    target_scores: torch.Tensor | None = None  # (N, k): the scores of a non-class target

    @property
    def probs(self) -> torch.Tensor:
        return self.logits.float().softmax(dim=1)

    @property
    def scores(self) -> torch.Tensor:
        """``(N, k)``: the explained scores (the classes' logits, or the target's scores)."""
        if self.target_scores is not None:
            return self.target_scores
        return self.logits.gather(1, self.class_ids)


def fuse_maps(maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """Fuse per-layer maps: each min-max normalised, resized (bilinear) to the largest grid, averaged."""
    if len(maps) == 1:
        return maps[0]
    size = max((tuple(m.shape[-2:]) for m in maps), key=lambda s: s[0] * s[1])
    scaled = [upsample(normalize(m, "minmax"), size, "bilinear") for m in maps]  # type: ignore[arg-type]
    return torch.stack(scaled).mean(dim=0)


class CamContext:
    """What a method sees: input, logits, classes, per-layer maps, and lazily computed gradients.

    Attributes:
        model: the :class:`~camloc.models.loader.CamModel`.
        x: the input batch ``(N, 3, H, W)`` on the model's device.
        logits: ``(N, C)`` detached logits of the clean input.
        target: the :class:`~camloc.targets.Target`: ``k`` scores per image, from any logits.
        class_ids: ``(N, k)`` the target's classes per image (-1 where a target has none).
        taps: the resolved target layers.
        features: per layer, its output as an ``(N, K, h, w)`` float32 map (detached).
        raws: per layer, its raw output (tokens or channels-last, as the model computes it).
    """

    def __init__(self, method: CAMMethod, x: torch.Tensor, logits: torch.Tensor, target: Target,
                 taps: list[LayerTap], raws: list[torch.Tensor], graph_logits: torch.Tensor | None) -> None:
        self.method = method
        self.model = method.model
        self.x = x
        self.logits = logits.detach()
        self.target = target
        self.class_ids = _class_ids_of(target, self.logits)
        self.taps = taps
        self.input_hw = (int(x.shape[-2]), int(x.shape[-1]))
        self.raws = [r.detach() for r in raws]
        self.features = [t.to_map(r, self.input_hw).float() for t, r in zip(taps, self.raws)]
        self._graph = (graph_logits, raws) if graph_logits is not None else None
        self._powers: dict[tuple[int, int], torch.Tensor] = {}
        self.bias: torch.Tensor | None = None  # set by exact CAM
        self._trunk_ok: dict[int, bool] = {}

    @property
    def batch_size(self) -> int:
        return self.method.batch_size

    @property
    def rows_per_pass(self) -> int:
        """Rows of whole-network passes over perturbed or noisy inputs: ``batch_size``, capped on the
        CPU at :data:`CPU_PASS_PIXELS` input pixels (16 rows of 224 x 224), where larger batches
        run slower per row (their activations no longer fit the caches)."""
        if self.x.device.type != "cpu":
            return self.batch_size
        return max(1, min(self.batch_size, CPU_PASS_PIXELS // (self.input_hw[0] * self.input_hw[1])))

    # -- gradients ---------------------------------------------------------------------------------

    def grads(self, i: int = 0) -> torch.Tensor:
        """``(N, k, K, h, w)``: gradients of each target score w.r.t. layer ``i``'s map
        (their average over the noisy inputs for SmoothGrad variants)."""
        return self.grad_power(i, 1)

    def grad_power(self, i: int, p: int) -> torch.Tensor:
        """The ``p``-th power of the gradients, ``E[g^p]`` over noise samples when smoothing."""
        key = (i, p)
        if key not in self._powers:
            if self.method.smooth > 0:  # powers are averaged over the samples: one pass for all
                self._smooth_powers(sorted(set(self.method.grad_powers) | {p}
                                           | {q for (_, q) in self._powers}))
            else:
                if (i, 1) not in self._powers:
                    self._plain_grads()
                self._powers[key] = self._powers[(i, 1)].pow(p)
        return self._powers[key]

    def _plain_grads(self) -> None:
        if self._graph is None:
            raise ModelError("internal: gradients asked of a pass run without autograd")
        logits, raws = self._graph
        grads = _class_grads(logits, raws, self.target, None, self.taps, self.input_hw)
        self._graph = None  # the graph was freed by the last backward pass
        for i, g in enumerate(grads):
            self._powers[(i, 1)] = g

    def _smooth_powers(self, powers: Sequence[int]) -> None:
        m = self.method
        n = self.class_ids.shape[0]
        samples = m.smooth
        x = self.x
        span = (x.flatten(1).amax(1) - x.flatten(1).amin(1)).clamp_min(0)  # per-image input range
        sums: dict[tuple[int, int], torch.Tensor] = {}
        rows = torch.arange(n * samples, device=x.device) // samples  # image index of each sample
        step = self.rows_per_pass
        for start in range(0, n * samples, step):
            idx = rows[start:start + step]
            noise = smoothgrad_noise(m.seed, range(start, start + len(idx)), tuple(x.shape[1:]))
            xin = x[idx] + noise.to(device=x.device, dtype=x.dtype) * (m.noise * span[idx]).view(-1, 1, 1, 1)
            logits, raws = run_with_taps(self.model.module, xin, self.taps, grad=True,
                                         output=self.model.output)
            grads = _class_grads(logits, raws, self.target, idx, self.taps, self.input_hw)
            for i, g in enumerate(grads):
                for p in powers:
                    term = g if p == 1 else g.pow(p)
                    acc = sums.get((i, p))
                    if acc is None:
                        acc = sums[(i, p)] = torch.zeros((n, *g.shape[1:]), device=g.device, dtype=g.dtype)
                    acc.index_add_(0, idx, term)
        for key, acc in sums.items():
            self._powers[key] = acc / samples

    # -- re-running the model ----------------------------------------------------------------------

    def logits_of(self, make_batch: Callable[[int, int], torch.Tensor], total: int,
                  pick: Callable[[torch.Tensor, int, int], torch.Tensor] | None = None) -> torch.Tensor:
        """Run the model on ``total`` perturbed inputs built chunk by chunk by
        ``make_batch(start, stop)`` (at most :attr:`rows_per_pass` rows each), without autograd.

        Returns the ``(total, C)`` logits, or the concatenation of ``pick(logits, start, stop)``
        per chunk (to keep only the scores a method needs).
        """
        out = []
        step = self.rows_per_pass
        for start in range(0, total, step):
            stop = min(total, start + step)
            with torch.no_grad():
                logits = self.model.logits(make_batch(start, stop)).float()
            out.append(logits if pick is None else pick(logits, start, stop))
        return torch.cat(out)

    def logits_with_layer(self, i: int, image: int, values: torch.Tensor) -> torch.Tensor:
        """Logits of image ``image`` when layer ``i``'s raw output is replaced by each of ``values``
        (``(B, ...)``, one replacement per row). The layers below run once on the single image when
        that gives the same numbers as running them on ``B`` copies (checked once per call)."""
        tap = self.taps[i]
        module, output = self.model.module, self.model.output
        one = self.x[image:image + 1]
        ok = self._trunk_ok.get(i)
        if ok is None:  # first use: compare the single-image run with a full-batch run on 2 rows
            fast: torch.Tensor | None = None
            try:
                fast = run_with_replaced(module, one, tap, values, output)
            except RuntimeError:
                pass
            probe = values[:2]
            full = run_with_replaced(module, one.expand(len(probe), *one.shape[1:]), tap, probe, output)
            ok = fast is not None and fast.shape[0] == len(values) and bool(torch.allclose(
                fast[:len(probe)], full, rtol=1e-4, atol=1e-5 * float(full.abs().max().clamp_min(1.0))))
            self._trunk_ok[i] = ok
            if ok:
                return fast.float()  # type: ignore[union-attr]
        xin = one if ok else one.expand(len(values), *one.shape[1:])
        return run_with_replaced(module, xin, tap, values, output).float()

    def to_raw(self, i: int, maps: torch.Tensor) -> torch.Tensor:
        """The transpose of layer ``i``'s map reading: scatter ``(B, K, h, w)`` map values back into
        the layer's raw layout (zeros elsewhere, e.g. at class tokens)."""
        tap, raw = self.taps[i], self.raws[i]
        layout = tap.layout or (infer_layout(raw.shape, self.input_hw, tap.prefix)
                                if tap.reshape is None else None)
        shape = (maps.shape[0], *raw.shape[1:])
        if layout is not None and layout.kind == "nchw":
            return maps.to(raw.dtype)
        if layout is not None and layout.kind == "nhwc":
            return maps.permute(0, 2, 3, 1).to(raw.dtype)
        if layout is not None:  # tokens
            out = torch.zeros(shape, device=raw.device, dtype=raw.dtype)
            out[:, layout.prefix:] = maps.flatten(2).transpose(1, 2).to(raw.dtype)
            return out
        # a custom reshape: its transpose through autograd (it only selects and rearranges)
        with torch.inference_mode(False), torch.enable_grad():
            probe = torch.zeros(shape, device=raw.device, dtype=raw.dtype, requires_grad=True)
            mapped = tap.to_map(probe, self.input_hw)
            (out,) = torch.autograd.grad(mapped, probe, grad_outputs=maps.clone().to(mapped.dtype))
        return out


def smoothgrad_noise(seed: int, rows: Sequence[int], shape: tuple[int, ...]) -> torch.Tensor:
    """Standard normal noise for SmoothGrad rows (row ``r`` = image ``r // n``, sample ``r % n``),
    each row from its own seeded generator, so results do not depend on ``batch_size``."""
    out = torch.empty((len(rows), *shape))
    for j, r in enumerate(rows):
        out[j] = torch.randn(shape, generator=torch.Generator().manual_seed(seed * 1_000_003 + int(r)))
    return out


def _class_grads(logits: torch.Tensor, raws: list[torch.Tensor], target: Target,
                 rows: torch.Tensor | None, taps: list[LayerTap], input_hw: tuple[int, int]
                 ) -> list[torch.Tensor]:
    """Per layer ``(B, k, K, h, w)`` gradients of the target's scores of the rows of ``logits``
    (``rows``: each row's image; one backward per score j)."""
    with torch.enable_grad():
        scores = target.scores(logits, rows)
    k = scores.shape[1]
    per_layer: list[list[torch.Tensor]] = [[] for _ in raws]
    for j in range(k):
        with torch.enable_grad():
            score = scores[:, j].sum()
        if not score.requires_grad:
            raise ConfigError(f"target {target!r}: its scores do not depend on the logits' "
                              "graph (compute them with torch operations on the logits)")
        gs = torch.autograd.grad(score, raws, retain_graph=j < k - 1, allow_unused=True)
        for i, g in enumerate(gs):
            if g is None:
                raise ModelError(f"layer {taps[i].name!r}: the logits do not depend on it; choose a "
                                 f"layer the prediction is computed from")
            per_layer[i].append(taps[i].to_map(g, input_hw).float())
    return [torch.stack(gs, dim=1) for gs in per_layer]


def _class_ids_of(target: Target, logits: torch.Tensor) -> torch.Tensor:
    """``(N, k)`` class ids of a target: its own, or -1 where it has none."""
    ids = target.class_ids
    n, k = logits.shape[0], target.k
    if ids is None:
        return torch.full((n, k), -1, dtype=torch.long, device=logits.device)
    ids = ids.to(logits.device)
    return ids.expand(n, k) if ids.shape[0] == 1 else ids


@contextlib.contextmanager
def _autograd_allowed() -> Iterator[None]:
    """Leave inference mode (if the caller is in it) so gradients can be taken inside."""
    if torch.is_inference_mode_enabled():
        with torch.inference_mode(False):
            yield
    else:
        yield


class CAMMethod:
    """Base of every map method; see the module docstring for the two override points.

    Args:
        model: a :class:`~camloc.models.loader.CamModel` (``camloc.load_model`` / ``camloc.wrap``).
        layer: target layer(s) by name or module (default: ``model.layers``); several are fused.
        reshape: a custom ``f(layer_output) -> (N, C, h, w)`` (default: the model's, else automatic).
        relu: apply a ReLU to each layer's map (default: as the method's paper does).
        batch_size: rows per forward pass for perturbed or noisy inputs (on the CPU at most
            16 rows of 224 x 224, see :attr:`CamContext.rows_per_pass`).
        smooth: gradient methods only: average the gradients over this many noisy copies of each
            image (SmoothGrad); 0 disables.
        noise: SmoothGrad noise standard deviation, as a fraction of each image's value range.
        seed: seed of the SmoothGrad noise (results are reproducible).
    """

    info: ClassVar[MethodInfo]
    #: whether the paper applies a ReLU to the map
    relu_default: ClassVar[bool] = True
    #: the gradient powers the method reads (the context computes them in one pass)
    grad_powers: ClassVar[tuple[int, ...]] = ()
    default_smooth: ClassVar[int] = 0

    def __init__(self, model: CamModel, layer: LayerSpec = None, *, reshape: Reshape | None = None,
                 relu: bool | None = None, batch_size: int = 64, smooth: int | None = None,
                 noise: float = 0.15, seed: int = 0) -> None:
        if not isinstance(model, CamModel):
            raise ConfigError("model: expected a camloc CamModel (use camloc.load_model or camloc.wrap)")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size={batch_size!r}: must be an integer >= 1")
        smooth = self.default_smooth if smooth is None else smooth
        if isinstance(smooth, bool) or not isinstance(smooth, int) or smooth < 0:
            raise ConfigError(f"smooth={smooth!r}: the number of noise samples must be an integer >= 0")
        if smooth and not self.info.needs_grad:
            raise ConfigError(f"smooth={smooth}: only gradient methods average over noisy inputs; "
                              f"{self.name} is a {self.info.family} method")
        if not (noise >= 0.0):
            raise ConfigError(f"noise={noise!r}: must be >= 0 (a fraction of the input range)")
        self.model = model
        self.batch_size = batch_size
        self.smooth = smooth
        self.noise = float(noise)
        self.seed = int(seed)
        self.relu = self.relu_default if relu is None else bool(relu)
        self.taps = self._resolve_taps(layer, reshape)

    # -- metadata ----------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def needs_grad(self) -> bool:
        return self.info.needs_grad

    @property
    def layers(self) -> list[str]:
        """The resolved target layer names."""
        return [t.name for t in self.taps]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(layers={self.layers})"

    def _resolve_taps(self, layer: LayerSpec, reshape: Reshape | None) -> list[LayerTap]:
        return self.model.taps(layer, reshape)

    # -- the two override points -------------------------------------------------------------------

    def channel_weights(self, ctx: CamContext, i: int) -> torch.Tensor:
        """``(N, k, K)`` (or ``(k, K)`` shared by every image) weights of layer ``i``'s channels."""
        raise NotImplementedError(f"{type(self).__name__} must override channel_weights or map")

    def map(self, ctx: CamContext, i: int) -> torch.Tensor:
        """Layer ``i``'s ``(N, k, h, w)`` map (before the method's ReLU). Default: weighted sum."""
        w = self.channel_weights(ctx, i)
        feats = ctx.features[i]
        if w.dim() == 2:
            return torch.einsum("ck,nkhw->nchw", w.to(feats.dtype), feats)
        return torch.einsum("nck,nkhw->nchw", w.to(feats.dtype), feats)

    # -- the engine --------------------------------------------------------------------------------

    def __call__(self, x: torch.Tensor, classes: TargetSpec = 5) -> CamOutput:
        """Run the model on the batch ``x`` and compute maps for ``classes``: a class selection
        (:func:`~camloc.targets.select_classes`: ``5``, ``"top5"``, ``"all"``, ids for every image
        or per image), a :class:`~camloc.targets.Target` or a callable on the logits returning a
        score per image (see :mod:`camloc.targets`)."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ConfigError(f"x: expected a (N, 3, H, W) tensor, got "
                              f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        module = self.model.module
        graph = self.needs_grad and self.smooth == 0
        with eval_mode(module), (_autograd_allowed() if self.needs_grad else contextlib.nullcontext()):
            x = x.to(self.model.device)
            if x.is_inference() and self.needs_grad:
                x = x.clone()
            if graph:
                logits, raws = run_with_taps(module, x, self.taps, grad=True, output=self.model.output)
            else:
                with torch.no_grad():
                    logits, raws = run_with_taps(module, x, self.taps, output=self.model.output)
            target = resolve_targets(classes, logits.detach())
            ctx = CamContext(self, x, logits, target, self.taps, raws, logits if graph else None)
            maps = []
            with torch.no_grad():
                for i in range(len(self.taps)):
                    m = self.map(ctx, i)
                    maps.append(F.relu(m) if self.relu else m)
                fused = fuse_maps(maps).float()
            scores = None if isinstance(target, ClassTarget) else target.scores(ctx.logits).detach()
        return CamOutput(ctx.logits, ctx.class_ids, fused.detach(), ctx.bias, self.name, self.layers,
                         scores)

