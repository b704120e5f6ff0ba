"""The one pass over the images: one forward per image, every accumulator updated from it.

Images are decoded (and resized to the model's input, whole image, no crop) in DataLoader workers
(:func:`camloc.data.batches.loader_batches`);
an unreadable image is recorded and skipped. Each batch then runs the model once
(``logits, f = head.run``), folds the head (``f'``), and feeds:

- the per-class sums of pooled ``f'_k`` (labelled images), logits and biases;
- the sum of every unit's contribution to the predicted class;
- each unit's activation sketch (all ``h x w`` values of ``f'_k``);
- each unit's top-image store (peak of ``f'_k``, its map and the image size).

``checkpoint(state)`` is called after a batch whenever ``checkpoint_every`` seconds have passed
(and the caller saves the state); a run that starts from a saved state continues at
``state.position``, with the same batches as an uninterrupted run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from camloc.data.batches import loader_batches, split_failures, stack_inputs
from camloc.errors import ConfigError
from camloc.units.contrib import gap_head, pool_features
from camloc.units.data import UnitItem
from camloc.units.state import UnitsState

__all__ = ["collect_units", "input_preprocess"]


def input_preprocess(model: Any) -> Any:
    """The model's preprocessing with the whole image stretched to the input (every pixel seen,
    so a unit's region maps back onto the whole original image)."""
    return model.spec.preprocess.with_(fit="stretch")


def collect_units(model: Any, items: Sequence[UnitItem], state: UnitsState,
                  indices: Sequence[int] | None = None, batch_size: int = 32, workers: int = 0,
                  checkpoint: Callable[[UnitsState], None] | None = None,
                  checkpoint_every: float = 60.0,
                  progress: Callable[[int, int], None] | None = None,
                  stop_after: int | None = None) -> UnitsState:
    """Run ``model`` over ``items[state.position:]`` and update ``state`` in place.

    Args:
        model: a :class:`~camloc.models.CamModel` with a GAP -> linear (or probe) head.
        items: this process's images, labels already the model's class ids.
        state: accumulators (fresh from :meth:`UnitsState.empty`, or loaded to resume).
        indices: each item's index in the whole dataset (default ``0..len-1``); shards pass their
            global indices so that top-image ties break the same way in every run.
        batch_size, workers: images per forward pass; DataLoader decoding processes.
        checkpoint: called with the state after a batch once ``checkpoint_every`` seconds passed.
        progress: ``progress(done, total)`` after each batch.
        stop_after: stop after this many batches (for tests of interrupted runs).

    Raises:
        UnsupportedHeadError: the model has no GAP -> linear head.
        ConfigError: bad batch size, or a state that does not fit the model.
    """
    from camloc.models.heads import eval_mode

    head = gap_head(model)
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}: must be >= 1")
    if state.units != head.num_channels or state.num_classes != head.num_classes:
        raise ConfigError(f"the units state has {state.units} units and {state.num_classes} classes;"
                          f" the model has {head.num_channels} and {head.num_classes}")
    idx_all = list(range(len(items))) if indices is None else [int(i) for i in indices]
    if len(idx_all) != len(items):
        raise ConfigError(f"indices: {len(idx_all)} for {len(items)} items")
    run = _Pass(model, head, items, idx_all, state)
    loader = loader_batches(list(items[state.position:]), input_preprocess(model),
                            batch_size=batch_size, workers=workers)
    try:
        with eval_mode(model.module), torch.inference_mode():
            run.loop(loader, checkpoint, checkpoint_every, progress, stop_after)
    except KeyboardInterrupt:
        if checkpoint and run.clean:
            checkpoint(state)
        raise
    return state


class _Pass:
    """One collection pass: the model, the items and the state it updates batch by batch."""

    def __init__(self, model: Any, head: Any, items: Sequence[UnitItem], idx_all: list[int],
                 state: UnitsState) -> None:
        self.model, self.head, self.items, self.idx_all, self.state = (model, head, items,
                                                                       idx_all, state)
        self.device = model.device
        self.weight = head.classifier.weight.detach()
        self.start = state.position
        self.clean = True  # the state is whole between batches; mid-batch it is not
        state.to(self.device)

    def loop(self, loader: Any, checkpoint: Callable[[UnitsState], None] | None,
             checkpoint_every: float, progress: Callable[[int, int], None] | None,
             stop_after: int | None) -> None:
        state, items = self.state, self.items
        t0 = time.perf_counter() - state.seconds
        last_save = time.monotonic()
        if progress:
            progress(state.position, len(items))
        for n_batch, batch in enumerate(loader, start=1):
            self.clean = False
            good = [(self.start + i, x, size)
                    for i, x, size, _ in split_failures(batch, items, state.failed, self.start)]
            if good:
                self.update(good)
            state.position += len(batch)
            state.seconds = time.perf_counter() - t0
            self.clean = True
            if progress:
                progress(state.position, len(items))
            if checkpoint and time.monotonic() - last_save >= checkpoint_every:
                checkpoint(state)
                last_save = time.monotonic()
            if stop_after is not None and n_batch >= stop_after:
                break

    def update(self, good: list[Any]) -> None:
        state, head, device = self.state, self.head, self.device
        pos = [p for p, _, _ in good]
        x = stack_inputs([t for _, t, _ in good], device)
        logits, f = head.run(self.model.module, x)
        fprime, bias = head.folded(f)
        fprime = fprime.float()
        pooled = pool_features(head, fprime)  # (N, K)
        w = self.weight.to(fprime.dtype)
        # every unit's contribution to the predicted class (ranks units without labels)
        pred = logits.argmax(dim=1)
        state.pred_contrib += (w[pred] * pooled).sum(dim=0).double().cpu()
        state.pooled_sum += pooled.sum(dim=0).double().cpu()
        labels = [self.items[p].label for p in pos]
        rows = [j for j, lab in enumerate(labels) if lab is not None]
        if rows:
            r = torch.tensor(rows, device=device)
            lab = torch.tensor([labels[j] for j in rows], device=device, dtype=torch.long)
            lab_cpu = lab.cpu()
            state.class_pooled.index_add_(0, lab_cpu, pooled[r].double().cpu())
            state.class_count.index_add_(0, lab_cpu, torch.ones_like(lab_cpu))
            state.class_logit.index_add_(0, lab_cpu,
                                         logits[r].gather(1, lab[:, None])[:, 0].double().cpu())
            state.class_bias.index_add_(0, lab_cpu,
                                        bias[r].gather(1, lab[:, None])[:, 0].double().cpu())
        n, k, h, w_ = fprime.shape
        state.sketch.update(fprime.permute(1, 0, 2, 3).reshape(k, n * h * w_))
        sizes = torch.tensor([list(s) for _, _, s in good], dtype=torch.int64)
        index = torch.tensor([self.idx_all[p] for p in pos], dtype=torch.int64)
        state.top.update(fprime, index, sizes)
        state.images += len(good)
