"""Deletion and Insertion (Petsiuk et al., BMVC 2018, "RISE").

Pixels are taken in order of decreasing map value (ties: lower row-major index first; see
:func:`~camloc.metrics.faithfulness.perturb.relevance_order`), ``k`` per step. With ``P = H * W``
pixels, step ``j = 0 .. S`` has ``n_j = min(j * k, P)`` pixels changed (``S = ceil(P / k)``):

* **deletion** replaces the first ``n_j`` pixels of the image by the deletion baseline (default
  zeros of the normalised input, as the RISE code does); its curve starts at the image's score;
* **insertion** starts from the insertion baseline (default the blurred image, as in the paper) and
  puts the first ``n_j`` pixels of the image back; its curve ends at the image's score.

Each curve is the target class's score (softmax probability by default) against the fraction
``n_j / P``; its AUC is the trapezoidal rule over those fractions on ``[0, 1]``. Lower deletion and
higher insertion AUC are better. ``n_steps`` sets ``k = ceil(P / n_steps)`` (torchcam's rule: at
most ``n_steps`` steps); ``pixels_per_step`` sets ``k`` directly (RISE uses 224 for 224 x 224).

Cost per image: ``S`` perturbed inputs per curve (the unperturbed end of each curve is the image's
own score, and when both curves use the same baseline the all-baseline input is shared), i.e.
about ``2 S / B`` batched forwards with batches of ``B = batch_size`` (perturbations of several
images share batches), plus the forward on ``x`` unless its logits are passed.

>>> import torch
>>> from torch import nn
>>> from camloc.metrics.faithfulness import DeletionInsertionAccumulator
>>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5))
>>> acc = DeletionInsertionAccumulator(n_steps=16)
>>> out = acc.update(model, torch.randn(2, 3, 8, 8), torch.rand(2, 8, 8), [0, 3])
>>> r = acc.compute()
>>> r["count"], len(r["curves"]["fractions"]), sorted(k for k in r if k.endswith("_auc"))
(2, 17, ['deletion_auc', 'insertion_auc'])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from camloc.errors import ConfigError, MetricError
from camloc.metrics.faithfulness._base import (RecordAccumulator, Scorer, check_inputs, exact_mean,
                                               model_context, resolve_forward)
from camloc.metrics.faithfulness.perturb import (BaselineSpec, _check_blur, baseline_like,
                                                 check_baseline, relevance_ranks)

__all__ = ["DeletionInsertionAccumulator", "step_counts"]

MODES = ("deletion", "insertion")
DEFAULT_STEPS = 50


def step_counts(num_pixels: int, n_steps: int | None = None,
                pixels_per_step: int | None = None) -> np.ndarray:
    """Pixels changed at each point of the curves: ``0, k, 2k, ..., P`` (the last step may be
    shorter), ``k = pixels_per_step`` or ``ceil(P / n_steps)``."""
    if (n_steps is None) == (pixels_per_step is None):
        raise ConfigError("give exactly one of n_steps and pixels_per_step")
    if pixels_per_step is None:
        k = -(-num_pixels // int(n_steps))  # type: ignore[arg-type]
    else:
        k = int(pixels_per_step)
    return np.append(np.arange(0, num_pixels, k), num_pixels).astype(np.int64)


def _positive_int(v: Any, name: str) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ConfigError(f"{name}={v!r}: expected a positive integer")
    return int(v)


class DeletionInsertionAccumulator(RecordAccumulator):
    """Streaming deletion / insertion AUCs (see the module docstring).

    Parameters: ``n_steps`` or ``pixels_per_step`` (neither: 50 steps); ``deletion_baseline`` /
    ``insertion_baseline``: ``"zero"``, ``"blur"``, a number or one number per channel (input
    units); ``blur_sigma`` / ``blur_kernel_size`` of the blur (RISE: 5 and 11); ``modes``: which
    curves to compute; ``score``; ``batch_size``; ``keep_curves``: keep each image's curves (for
    the mean curve and :attr:`per_image`; about ``16 (S + 1)`` bytes per image).
    Per image it keeps ``score`` (the image's own score) and ``deletion_auc`` / ``insertion_auc``.
    """

    kind = "deletion_insertion"

    def __init__(self, n_steps: int | None = None, pixels_per_step: int | None = None,
                 deletion_baseline: BaselineSpec = "zero", insertion_baseline: BaselineSpec = "blur",
                 blur_sigma: float = 5.0, blur_kernel_size: int = 11,
                 modes: Sequence[str] = MODES, score: str = "softmax", batch_size: int = 64,
                 keep_curves: bool = True) -> None:
        if n_steps is None and pixels_per_step is None:
            n_steps = DEFAULT_STEPS
        self.n_steps = _positive_int(n_steps, "n_steps")
        self.pixels_per_step = _positive_int(pixels_per_step, "pixels_per_step")
        if (self.n_steps is None) == (self.pixels_per_step is None):
            raise ConfigError("give exactly one of n_steps and pixels_per_step")
        if isinstance(modes, str) or not modes or any(m not in MODES for m in modes) or \
                len(set(modes)) != len(modes):
            raise ConfigError(f"modes={modes!r}: expected a non-empty subset of {MODES}")
        self.modes = tuple(m for m in MODES if m in modes)
        self.deletion_baseline = check_baseline(deletion_baseline, "deletion_baseline")
        self.insertion_baseline = check_baseline(insertion_baseline, "insertion_baseline")
        _check_blur(blur_sigma, blur_kernel_size)
        self.blur_sigma = float(blur_sigma)
        self.blur_kernel_size = int(blur_kernel_size)
        self.keep_curves = bool(keep_curves)
        super().__init__(score, batch_size)
        # curves: one (counts, (n, S+1) scores per mode) chunk per update
        self._curves: list[tuple[np.ndarray, dict[str, np.ndarray]]] = []

    def settings(self) -> dict[str, Any]:
        return {"n_steps": self.n_steps, "pixels_per_step": self.pixels_per_step,
                "deletion_baseline": self.deletion_baseline,
                "insertion_baseline": self.insertion_baseline, "blur_sigma": self.blur_sigma,
                "blur_kernel_size": self.blur_kernel_size, "modes": self.modes,
                "score": self.score, "keep_curves": self.keep_curves}

    def field_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"score": (), **{f"{m}_auc": () for m in self.modes}}

    def _baseline(self, x: torch.Tensor, spec: str | float | tuple[float, ...]) -> torch.Tensor:
        return baseline_like(x, spec, self.blur_sigma, self.blur_kernel_size)

    def update(self, forward: Any, x: torch.Tensor, maps: Any, class_ids: Any, *,
               logits: torch.Tensor | None = None,
               image_ids: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Score a batch (arguments as :meth:`AverageDropAccumulator.update
        <camloc.metrics.faithfulness.AverageDropAccumulator.update>`; maps may hold any finite
        values, only their order matters). Returns this batch's per-image ``score``, AUCs
        (``deletion_auc`` / ``insertion_auc``), ``fractions`` and curves (``deletion`` /
        ``insertion``, (N, S + 1))."""
        x, m, target, names = check_inputs(x, maps, class_ids, image_ids, unit_maps=False)
        n, _, h, w = x.shape
        counts = step_counts(h * w, self.n_steps, self.pixels_per_step)
        npts = len(counts)
        fn, module = resolve_forward(forward)
        scorer = Scorer(fn, self.score, self.batch_size, target, n)
        with model_context(module):
            y = scorer.from_logits(logits)[0] if logits is not None else None
            ranks = relevance_ranks(m)
            base = {mode: self._baseline(x, getattr(self, f"{mode}_baseline")) for mode in self.modes}
            shared = len(self.modes) == 2 and self.deletion_baseline == self.insertion_baseline
            # jobs: (image, mode 0 = deletion / 1 = insertion, point, pixels changed)
            jobs: list[tuple[int, int, int, int]] = []
            # without logits the unperturbed end of a curve is scored with the perturbations
            own = 0 if y is None else 1
            for i in range(n):
                if "deletion" in self.modes:
                    jobs += [(i, 0, j, int(counts[j])) for j in range(own, npts)]
                if "insertion" in self.modes:
                    first = 1 if shared else 0  # insertion's start = deletion's end
                    last = npts - 1 if own or "deletion" in self.modes else npts
                    jobs += [(i, 1, j, int(counts[j])) for j in range(first, last)]
            job = torch.tensor(jobs, dtype=torch.long).view(-1, 4)
            img_t = job[:, 0].to(x.device)
            del_t = (job[:, 1] == 0).to(x.device)
            cnt_t = job[:, 3].to(x.device)
            zero = torch.zeros((), dtype=x.dtype, device=x.device)
            b_del = base.get("deletion", zero)
            b_ins = base.get("insertion", zero)

            def make(i: int, j: int) -> torch.Tensor:
                im, dl = img_t[i:j], del_t[i:j]
                changed = (ranks[im] < cnt_t[i:j, None]).view(j - i, 1, h, w)
                xs = x[im]
                if len(self.modes) == 2:
                    bs = torch.where(dl.view(-1, 1, 1, 1), b_del[im], b_ins[im])
                else:
                    bs = (b_del if self.modes == ("deletion",) else b_ins)[im]
                # deletion: changed pixels come from the baseline; insertion: from the image
                return torch.where(changed == dl.view(-1, 1, 1, 1), bs, xs)

            s, _ = scorer.run(make, img_t)
        curves = {mode: np.full((n, npts), np.nan) for mode in self.modes}
        jb = job.numpy()
        for (i, mode, j, _), v in zip(jb, s):
            curves[MODES[mode]][i, j] = v
        if y is None:
            y = (curves["deletion"][:, 0] if "deletion" in curves else curves["insertion"][:, -1]).copy()
        if "deletion" in curves:
            curves["deletion"][:, 0] = y
            if shared:
                curves["insertion"][:, 0] = curves["deletion"][:, -1]
        if "insertion" in curves:
            curves["insertion"][:, -1] = y
        if any(np.isnan(c).any() for c in curves.values()):
            raise MetricError("internal: a curve point was not scored")
        frac = counts / float(h * w)
        aucs = {f"{mode}_auc": np.trapezoid(c, frac, axis=1) for mode, c in curves.items()}
        self._add(names, score=y, **aucs)
        if self.keep_curves:
            self._curves.append((counts, curves))
        return {"score": y, **aucs, "fractions": frac, **curves}

    # ---- reduction (curves travel with the records)
    def merge(self, other: RecordAccumulator) -> DeletionInsertionAccumulator:
        super().merge(other)
        self._curves.extend(other._curves)  # type: ignore[attr-defined]
        return self

    def state_dict(self) -> dict[str, Any]:
        d = super().state_dict()
        d["curves"] = [(c.copy(), {k: v.copy() for k, v in cv.items()}) for c, cv in self._curves]
        return d

    @classmethod
    def from_state_dict(cls, d: dict[str, Any], batch_size: int = 64) -> DeletionInsertionAccumulator:
        acc = super().from_state_dict(d, batch_size)
        acc._curves = [(np.asarray(c, np.int64), {k: np.asarray(v, np.float64) for k, v in cv.items()})
                       for c, cv in d.get("curves", [])]
        return acc

    def mean_curves(self) -> dict[str, Any] | None:
        """``{"fractions", "deletion", "insertion"}``: the mean score at each fraction, when every
        image was scored on the same grid (same image size) and curves were kept; else None."""
        if not self.keep_curves or not self._curves:
            return None
        grid = self._curves[0][0]
        if any(not np.array_equal(c, grid) for c, _ in self._curves):
            return None
        out: dict[str, Any] = {"fractions": (grid / float(grid[-1])).tolist()}
        for mode in self.modes:
            allc = np.concatenate([cv[mode] for _, cv in self._curves])
            out[mode] = [math.fsum(col) / allc.shape[0] for col in allc.T.tolist()]
        return out

    def compute(self) -> dict[str, Any]:
        """Mean ``deletion_auc`` / ``insertion_auc`` (fractions of 1, as the curves), ``count``,
        ``curves`` (:meth:`mean_curves`) and the settings."""
        self._require()
        out: dict[str, Any] = {f"{m}_auc": exact_mean(self.column(f"{m}_auc")) for m in self.modes}
        out.update(count=self.count, curves=self.mean_curves(), **self.settings())
        return out
