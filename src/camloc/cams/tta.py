"""Test-time augmentation (TTA) for any map method: horizontal flip and several input scales.

A :class:`TTA` lists the variants of each input: every scale in ``scales`` (the input resized to
``s x s``; ``None`` keeps the model's own input size), each also mirrored when ``flip`` is set.
:class:`TTAMethod` wraps a map method (anything called as ``method(x, classes=...)`` returning a
:class:`~camloc.cams.engine.CamOutput`) and is called the same way: it runs the method on every
variant and brings each variant's map back to the input's image space (resized bicubically to the
input's ``H x W``, mirrored back when the variant was mirrored, min-max normalised so that variants
whose maps have different scales count equally); the output's maps are their mean, ``(N, k, H, W)``
in ``[0, 1]``. Its logits are the plain input's (as ``compare --tta`` always did) or, with
``logits``, the mean of the variants' logits; the classes are then chosen from those logits.

The spec text of ``--tta``: comma-separated items ``flip``, ``scales=S1:S2:...`` (input sides in
pixels) and ``logits`` (average the logits too), e.g. ``flip``, ``scales=224:288``,
``flip,scales=224:288,logits``.

>>> parse_tta("flip,scales=224:288")
TTA(flip=True, scales=(224, 288), logits=False)
>>> parse_tta("flip").variants((224, 224))
[(224, 224, False), (224, 224, True)]
>>> parse_tta("scales=224:288,logits").describe()
'scales=224:288,logits'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from camloc.errors import ConfigError

if TYPE_CHECKING:  # torch is imported where maps are made: parsing --tta stays light
    import torch

    from camloc.cams.engine import CamOutput

__all__ = ["TTA", "TTAMethod", "merge_variants", "parse_tta", "tta_maps", "with_tta"]

MIN_SCALE = 16
MAX_SCALE = 4096


@dataclass(frozen=True)
class TTA:
    """Which variants to average: ``flip`` (add mirrored copies), ``scales`` (input sides in
    pixels; ``None``: the model's input size only) and ``logits`` (average the variants' logits
    and choose the classes from the mean, instead of the plain input's logits)."""

    flip: bool = False
    scales: tuple[int, ...] | None = None
    logits: bool = False

    def __post_init__(self) -> None:
        if self.scales is not None:
            if not self.scales:
                raise ConfigError("TTA scales: give at least one input size")
            for s in self.scales:
                if isinstance(s, bool) or not isinstance(s, int) or not MIN_SCALE <= s <= MAX_SCALE:
                    raise ConfigError(f"TTA scales: {s!r} is not an input size in pixels "
                                      f"({MIN_SCALE}..{MAX_SCALE})")
            if len(set(self.scales)) != len(self.scales):
                raise ConfigError(f"TTA scales: {self.scales} repeats a size")

    @property
    def active(self) -> bool:
        """Whether there is more than the plain input to average."""
        return self.flip or (self.scales is not None and len(self.scales) > 0)

    def variants(self, input_hw: tuple[int, int]) -> list[tuple[int, int, bool]]:
        """``(height, width, mirrored)`` of every variant of an input of size ``input_hw``."""
        sizes = [tuple(input_hw)] if self.scales is None else [(s, s) for s in self.scales]
        flips = (False, True) if self.flip else (False,)
        return [(int(h), int(w), f) for (h, w) in sizes for f in flips]

    def describe(self) -> str:
        """The ``--tta`` text for this TTA (``"none"`` when inactive)."""
        parts = (["flip"] if self.flip else []) + \
            ([f"scales={':'.join(map(str, self.scales))}"] if self.scales else [])
        if parts and self.logits:
            parts.append("logits")
        return ",".join(parts) or "none"


def parse_tta(text: str | TTA | None) -> TTA | None:
    """Parse a ``--tta`` value (see the module docstring); ``None``, ``""`` or ``"none"`` -> None.
    A :class:`TTA` is returned as it is (``None`` when inactive).

    Raises:
        ConfigError: an unknown item or a malformed scale list, naming the offending part.
    """
    if isinstance(text, TTA):
        return text if text.active else None
    if text is None or not str(text).strip() or str(text).strip().lower() == "none":
        return None
    flip = logits = False
    scales: tuple[int, ...] | None = None
    for raw in str(text).split(","):
        item = raw.strip()
        low = item.lower()
        if low in ("flip", "logits"):
            if (flip if low == "flip" else logits):
                raise ConfigError(f"--tta {text!r}: {low!r} given twice")
            flip, logits = flip or low == "flip", logits or low == "logits"
        elif low.startswith("scales="):
            if scales is not None:
                raise ConfigError(f"--tta {text!r}: 'scales=' given twice")
            parts = item.split("=", 1)[1].split(":")
            try:
                scales = tuple(int(p) for p in parts)
            except ValueError:
                raise ConfigError(f"--tta {text!r}: scales must be input sides in pixels joined by "
                                  f"':', e.g. scales=224:288 (got {item!r})") from None
        else:
            raise ConfigError(f"--tta {text!r}: unknown item {item!r}; expected 'flip', "
                              f"'scales=S1:S2' and/or 'logits' (e.g. --tta flip,scales=224:288)")
    tta = TTA(flip=flip, scales=scales, logits=logits)
    if logits and not tta.active:
        raise ConfigError(f"--tta {text!r}: 'logits' averages the logits over the variants; add "
                          f"'flip' or 'scales=...' to have variants")
    return tta


def _resize_input(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    from torch.nn import functional as F

    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    down = hw[0] < x.shape[-2] or hw[1] < x.shape[-1]
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=down)


def _explicit(classes: Any) -> bool:
    """Whether a class selection names the classes (it does not depend on the logits)."""
    if isinstance(classes, (str, bool, int)):
        return classes == "all"
    return True


class TTAMethod:
    """A map method run over the variants of a :class:`TTA`, called like the method itself.

    Args:
        method: the base method (a :class:`~camloc.cams.engine.CAMMethod` or another wrapper).
        tta: the variants (a :class:`TTA` or its ``--tta`` text).

    ``__call__(x, classes)`` returns a :class:`~camloc.cams.engine.CamOutput` whose ``maps`` are
    ``(N, k, H, W)`` at the input's size, in ``[0, 1]`` (``bias`` is None). Attributes the callers
    read (``model``, ``name``, ``layers``, ``needs_grad``) are the base method's.
    """

    def __init__(self, method: Any, tta: TTA | str) -> None:
        parsed = parse_tta(tta)
        if parsed is None:
            raise ConfigError(f"tta={tta!r}: no variants to average (give flip and/or scales=)")
        self.method = method
        self.tta = parsed

    def __getattr__(self, name: str) -> Any:  # model, name, layers, needs_grad, taps, ...
        if name in ("method", "tta"):
            raise AttributeError(name)
        return getattr(self.method, name)

    def __repr__(self) -> str:
        return f"TTAMethod({self.method!r}, {self.tta.describe()!r})"

    def _device(self) -> Any:
        return self.method.model.device

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        from camloc.models.heads import eval_mode

        with eval_mode(self.method.model.module), torch.no_grad():
            return self.method.model.logits(x.to(self._device())).float()

    def __call__(self, x: torch.Tensor, classes: Any = 5) -> CamOutput:
        import torch

        from camloc.cams.engine import CamOutput, select_classes

        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ConfigError(f"x: expected a (N, 3, H, W) tensor, got "
                              f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        x = x.to(self._device())
        h, w = int(x.shape[-2]), int(x.shape[-1])
        variants = self.tta.variants((h, w))
        plain = [i for i, (vh, vw, m) in enumerate(variants) if (vh, vw) == (h, w) and not m]
        order = plain + [i for i in range(len(variants)) if i not in plain]
        ids: torch.Tensor | None = None  # explicit classes: the first variant's call resolves them
        if _explicit(classes):
            ids = None
        elif self.tta.logits:  # classes from the mean logits: one cheap pass for them first
            mean = sum(self._logits(self._variant(x, v)) for v in variants) / len(variants)
            ids = select_classes(mean, classes)
        elif not plain:  # classes from the plain input's logits
            ids = select_classes(self._logits(x), classes)
        outs: list[tuple[torch.Tensor, torch.Tensor]] = [None] * len(variants)  # type: ignore[list-item]
        for i in order:
            out = self.method(self._variant(x, variants[i]), classes=classes if ids is None else ids)
            if ids is None:  # the first call chose the classes (explicit, or the plain input's)
                ids = out.class_ids
            outs[i] = (out.maps, out.logits)
        assert ids is not None
        logits, maps = merge_variants(outs, variants, (h, w), self.tta.logits)
        if logits is None:
            logits = self._logits(x)
        return CamOutput(logits.detach(), ids, maps.detach(), None,
                         getattr(self.method, "name", ""), list(getattr(self.method, "layers", [])))

    @staticmethod
    def _variant(x: torch.Tensor, v: tuple[int, int, bool]) -> torch.Tensor:
        import torch

        xv = _resize_input(x, (v[0], v[1]))
        return torch.flip(xv, dims=[-1]) if v[2] else xv


def merge_variants(outs: list[tuple[torch.Tensor, torch.Tensor]],
                   variants: list[tuple[int, int, bool]], hw: tuple[int, int],
                   mean_logits: bool = False) -> tuple[torch.Tensor | None, torch.Tensor]:
    """``(logits, maps)`` of a TTA from each variant's ``(maps (N, k, h, w), logits (N, C))``:
    every map resized (bicubic) to ``hw``, mirrored back where the variant was, min-max normalised,
    then averaged. ``logits``: the variants' mean with ``mean_logits``, else the plain variant's
    (``None`` when no variant is the plain input)."""
    import torch

    from camloc.cams.postprocess import normalize, upsample

    total: torch.Tensor | None = None
    logit_sum: torch.Tensor | None = None
    plain: torch.Tensor | None = None
    for (maps, logits), (vh, vw, mirrored) in zip(outs, variants):
        m = upsample(maps.float(), hw, "bicubic")
        if mirrored:
            m = torch.flip(m, dims=[-1])
        m = normalize(m, "minmax")
        total = m if total is None else total + m
        lg = logits.float()
        logit_sum = lg if logit_sum is None else logit_sum + lg
        if (vh, vw) == tuple(hw) and not mirrored:
            plain = logits
    if total is None or logit_sum is None:
        raise ConfigError("TTA: no variants to merge")
    return (logit_sum / len(outs) if mean_logits else plain), total / len(outs)


def with_tta(method: Any, tta: TTA | str | None) -> Any:
    """``method`` wrapped in a :class:`TTAMethod` when ``tta`` has variants, else ``method``."""
    parsed = parse_tta(tta)
    return method if parsed is None else TTAMethod(method, parsed)


def tta_maps(method: Any, x: torch.Tensor, class_ids: torch.Tensor, tta: TTA
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``method`` on every variant of ``x`` for ``class_ids`` ``(N,)``.

    Returns ``(logits, maps)``: the logits (the plain input's, or the variants' mean with
    ``tta.logits``) and the ``(N, H, W)`` mean of the variants' maps in image space (each min-max
    normalised), on the model's device.
    """
    out = TTAMethod(method, tta)(x, classes=class_ids.view(-1, 1))
    return out.logits, out.maps[:, 0]


def out_device(method: Any) -> Any:
    """The device of the method's model."""
    return method.model.device
