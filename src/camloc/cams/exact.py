"""Exact class activation maps (Zhou et al., CVPR 2016).

On a network whose logits are ``W mean_xy(f) + b`` (a verified GAP -> linear head, see
:mod:`camloc.models.heads`), the map of class ``c`` is ``M_c = sum_k W[c, k] f_k`` over the pooled
layer's features (after the head's exact LayerNorm fold), so ``mean_xy M_c + bias_c`` *is* the
logit. All classes' maps are one matrix product. Defined only at the head's layer, and only for
models that have such a head: anything else raises :class:`~camloc.errors.UnsupportedHeadError`
naming the methods that do work.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from camloc.cams.catalog import CATALOG, method_names
from camloc.cams.engine import CAMMethod, CamContext
from camloc.errors import ConfigError, UnsupportedHeadError
from camloc.models.layers import LayerSpec, LayerTap, Reshape, resolve_layers
from camloc.targets import ClassTarget

__all__ = ["CAM"]


class CAM(CAMMethod):
    """Exact CAM: the classifier's rows are the channel weights. Needs the verified GAP head."""

    info = CATALOG["cam"]
    relu_default = False

    def _resolve_taps(self, layer: LayerSpec, reshape: Reshape | None) -> list[LayerTap]:
        head = self.model.head
        if head is None:
            from camloc.models.archs import list_archs

            others = ", ".join(method_names(needs_head=False))
            why = f" ({self.model.head_reason})" if self.model.head_reason else ""
            gap = f"{self.model.spec.name}-gap"
            train = (f"`camloc train --arch {gap}`" if gap in list_archs()
                     else "`camloc train --arch` with a -gap architecture, e.g. vgg16-gap")
            raise UnsupportedHeadError(
                f"{self.model.spec.name}: exact CAM needs global average pooling followed by one "
                f"linear layer, and this model has none{why}. Methods that work on it: {others} "
                f"(method='gradcam', or --method gradcam; `camloc methods` lists them). Or convert "
                f"the head to GAP and fine-tune it ({train}), or fit a "
                f"linear probe on pooled features (`camloc probe`).")
        if layer is not None:
            chosen = resolve_layers(self.model.module, layer)
            if len(chosen) != 1 or chosen[0][1] is not head.feature_module:
                raise ConfigError(
                    f"layer={layer!r}: exact CAM is defined only at the layer feeding the GAP head "
                    f"({head.feature_name!r}); for other layers use a gradient method such as "
                    f"'gradcam' or 'hirescam'")
        if reshape is not None:
            raise ConfigError("reshape: exact CAM reads its layer with the layout verified with the head")
        return [head.tap]

    def map(self, ctx: CamContext, i: int) -> torch.Tensor:
        head = self.model.head
        if head is None:  # pragma: no cover - refused in _resolve_taps
            raise UnsupportedHeadError(f"{self.model.spec.name}: no GAP head")
        f = F.relu(ctx.features[0]) if head.post_relu else ctx.features[0]
        fprime, bias_all = head.folded(f)
        w = head.classifier.weight.to(fprime.dtype)
        if not isinstance(ctx.target, ClassTarget):
            raise ConfigError(f"classes={ctx.target!r}: exact CAM maps a class's logit through the "
                              "classifier's rows; use class ids, or a gradient or perturbation "
                              "method for other targets")
        ids = ctx.class_ids
        n, k = ids.shape
        ctx.bias = bias_all.gather(1, ids).to(fprime.dtype)
        if n > 0 and k == w.shape[0] and bool((ids == torch.arange(k, device=ids.device)).all()):
            return torch.einsum("ck,nkhw->nchw", w, fprime)  # all classes: one matrix product
        return torch.einsum("nck,nkhw->nchw", w[ids], fprime)
