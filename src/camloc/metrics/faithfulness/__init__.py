"""Faithfulness metrics: does a map point at what the model actually uses?

Streaming accumulators with the same shape as camloc's WSOL ones (``update`` / ``merge`` /
``state_dict`` / ``from_state_dict`` / ``compute``; merging shards, e.g. one per torchrun rank, is
exact because the state is a few numbers per image):

* :class:`AverageDropAccumulator`: Average Drop and Increase in Confidence (Chattopadhyay et al.,
  WACV 2018);
* :class:`DeletionInsertionAccumulator`: deletion and insertion AUCs (Petsiuk et al., BMVC 2018);
* :class:`ROADAccumulator`: ROAD MoRF / LeRF with noisy linear imputation (Rong et al., ICML 2022).

Every ``update(forward, x, maps, class_ids, *, logits=None, image_ids=None)`` takes the model as a
``torch.nn.Module``, a camloc ``CamModel`` or any function ``x -> logits (N, C)``; ``x`` the
normalised inputs ``(N, C, H, W)``; ``maps`` ``(N, H, W)`` at input resolution (a map of another
size is refused with the call that resizes it); ``class_ids`` ``(N,)``, or a target with one
score per image (:mod:`camloc.targets`: ``Margin(labels)``, a callable on the logits or
probabilities). Perturbed inputs of
several images share forward batches of ``batch_size``. Definitions, costs and how camloc differs
from torchcam, pytorch-grad-cam and Quantus: docs/faithfulness.md.

>>> import torch
>>> from torch import nn
>>> from camloc.metrics.faithfulness import DeletionInsertionAccumulator
>>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 5))
>>> x, maps = torch.randn(4, 3, 8, 8), torch.rand(4, 8, 8)
>>> a, b = DeletionInsertionAccumulator(n_steps=8), DeletionInsertionAccumulator(n_steps=8)
>>> _ = a.update(model, x[:2], maps[:2], [0, 1]); _ = b.update(model, x[2:], maps[2:], [2, 3])
>>> a.merge(DeletionInsertionAccumulator.from_state_dict(b.state_dict())).count
4
"""

from camloc.metrics.faithfulness.average_drop import AverageDropAccumulator
from camloc.metrics.faithfulness.deletion import DeletionInsertionAccumulator, step_counts
from camloc.metrics.faithfulness.perturb import (gaussian_blur, noisy_linear_impute, relevance_order,
                                                 relevance_ranks, removal_count)
from camloc.metrics.faithfulness.road import ROADAccumulator

__all__ = [
    "AverageDropAccumulator",
    "DeletionInsertionAccumulator",
    "ROADAccumulator",
    "step_counts",
    "gaussian_blur",
    "noisy_linear_impute",
    "relevance_order",
    "relevance_ranks",
    "removal_count",
]
