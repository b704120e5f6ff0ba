"""Exact per-unit contributions to class scores, and the feature layer they are defined on.

For a model whose logits are ``W @ pool(f') + bias`` (a verified GAP -> linear head, LayerNorm
folded, or a linear probe in its place), the score of class ``c`` splits exactly over the units
``k`` of the pooled feature map::

    logit_c = sum_k W[c, k] * pool_xy f'_k + bias_c

``pool`` is the head's own pooling: the spatial mean (GAP), or the maximum for a GMP head. The
term ``W[c, k] * pool f'_k`` is unit ``k``'s *contribution* to class ``c``. Nothing else in the
network has this property, so :func:`check_layer` accepts ``--layer`` only where the named module
outputs exactly those features.

>>> import torch, camloc
>>> model = camloc.load_model("resnet18", weights=None, num_classes=5)
>>> c = unit_contributions(model, torch.randn(2, 3, 64, 64))
>>> bool(torch.allclose(c.contributions.sum(-1) + c.bias, c.logits, atol=1e-4))
True
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import torch

from camloc.errors import ConfigError, UnsupportedHeadError

__all__ = ["Contributions", "check_layer", "feature_layer_names", "gap_head", "pool_features",
           "unit_contributions"]

NO_HEAD = ("class-specific units need a GAP -> linear head (exact contributions W[c, k] x "
           "pooled unit k) or a linear-probe head on pooled features (`camloc probe`, then "
           "--head DIR); {name} has neither")


def gap_head(model: Any) -> Any:
    """The model's verified GAP -> linear head, or :class:`UnsupportedHeadError`."""
    head = getattr(model, "head", None)
    if head is None or not hasattr(head, "classifier") or not hasattr(head, "folded"):
        name = getattr(getattr(model, "spec", None), "name", type(model).__name__)
        raise UnsupportedHeadError(NO_HEAD.format(name=name))
    return head


def pool_features(head: Any, f: torch.Tensor) -> torch.Tensor:
    """``(N, K, h, w) -> (N, K)`` with the head's pooling (mean for GAP, max for GMP)."""
    from camloc.models.pooling import global_pool

    return global_pool(f, getattr(head, "pool", "avg"))


@dataclass
class Contributions:
    """One batch's exact decomposition of the logits over units.

    ``contributions[n, c, k] = W[c, k] * pooled[n, k]``; ``contributions.sum(-1) + bias == logits``
    up to float rounding. ``features`` are the folded maps ``f'`` (N, K, h, w).
    """

    logits: torch.Tensor  # (N, C)
    features: torch.Tensor  # (N, K, h, w)
    pooled: torch.Tensor  # (N, K)
    weight: torch.Tensor  # (C, K)
    bias: torch.Tensor  # (N, C)

    @property
    def contributions(self) -> torch.Tensor:
        """``(N, C, K)`` unit contributions to every class score."""
        return self.pooled[:, None, :] * self.weight[None, :, :]


def unit_contributions(model: Any, x: torch.Tensor) -> Contributions:
    """One forward pass of ``model`` (a :class:`~camloc.models.CamModel`) on the batch ``x``.

    Raises:
        UnsupportedHeadError: the model has no GAP -> linear (or probe) head.
        ConfigError: ``x`` is not an ``(N, 3, H, W)`` tensor.
    """
    from camloc.models.heads import eval_mode

    head = gap_head(model)
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ConfigError(f"x: expected a (N, 3, H, W) tensor, got "
                          f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    with eval_mode(model.module), torch.inference_mode():
        logits, f = head.run(model.module, x.to(model.device))
        fprime, bias = head.folded(f)
        pooled = pool_features(head, fprime)
        weight = head.classifier.weight.detach().to(fprime.dtype)
    return Contributions(logits, fprime, pooled, weight, bias)


def feature_layer_names(model: Any, input_size: tuple[int, int]
                        ) -> tuple[list[str], tuple[int, int]]:
    """Names of the modules whose output *is* the head's feature map (on a probe input), and the
    map's ``(h, w)`` at ``input_size``."""
    from camloc.models.heads import eval_mode

    head = gap_head(model)
    module = model.module
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    for name, m in module.named_modules():
        if not name:
            continue

        def hook(_m: Any, _inp: Any, out: Any, name: str = name) -> None:
            if isinstance(out, torch.Tensor) and out.dim() == 4:
                outputs[name] = out.detach().clone()

        handles.append(m.register_forward_hook(hook))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, *input_size, generator=g).to(model.device)
    try:
        with eval_mode(module), torch.inference_mode():
            _, f = head.run(module, x)
    finally:
        for h in handles:
            h.remove()
    scale = float(f.abs().max().clamp_min(1e-6))
    names = [name for name, out in outputs.items()
             if out.shape == f.shape and float((out - f).abs().max()) <= 1e-5 * scale]
    return names, (int(f.shape[2]), int(f.shape[3]))


def check_layer(model: Any, layer: str | None, input_size: tuple[int, int]
                ) -> tuple[list[str], tuple[int, int]]:
    """Validate ``--layer``; return the module names that hold the head's features and the
    feature map's ``(h, w)``.

    ``layer=None`` (the default) means the head's own features. A named module is accepted only
    when its output equals those features; any other layer has no exact per-unit contribution
    to the class scores, and is refused.

    Raises:
        ConfigError: ``layer`` names no module of the model.
        UnsupportedHeadError: ``layer`` exists but is not the pooled feature map.
    """
    names, shape = feature_layer_names(model, input_size)
    if layer is None or layer == "":
        return names, shape
    all_names = [n for n, _ in model.module.named_modules() if n]
    if layer not in all_names:
        close = difflib.get_close_matches(layer, all_names, n=5)
        hint = f"; close names: {', '.join(close)}" if close else ""
        raise ConfigError(f"--layer {layer!r}: the model has no module of that name{hint}")
    if layer in names:
        return names, shape
    where = ", ".join(names) if names else "the head's feature map (no single module outputs it)"
    raise UnsupportedHeadError(
        f"--layer {layer!r}: unit contributions W[c, k] x pooled f_k add up to the class score "
        f"only for the features the classifier pools ({where}); {layer!r} outputs something else, "
        f"so its units have no exact share of any class score. Omit --layer to use the pooled "
        f"features.")
