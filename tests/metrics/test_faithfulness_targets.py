"""Faithfulness metrics scoring a target (camloc.targets) instead of class ids: a callable or a
ClassTarget gives exactly the records of the class ids it stands for; a Margin's records are the
difference of its two classes' records on the same perturbed inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from camloc.errors import ConfigError, MetricError
from camloc.metrics.faithfulness import (AverageDropAccumulator, DeletionInsertionAccumulator,
                                         ROADAccumulator)
from camloc.targets import ClassTarget, Margin


class Linear(nn.Module):
    def __init__(self, k: int = 5) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(k, 3 * 8 * 8, generator=g, dtype=torch.float64) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.double().flatten(1) @ self.weight.t()


def _data(n: int = 4):
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(size=(n, 3, 8, 8)).astype(np.float32))
    maps = torch.from_numpy(rng.random((n, 8, 8)).astype(np.float32))
    return x, maps, [f"img{i}" for i in range(n)]


FACTORIES = {
    "average_drop": lambda: AverageDropAccumulator(batch_size=3),
    "deletion_insertion": lambda: DeletionInsertionAccumulator(n_steps=6, batch_size=5),
    "road": lambda: ROADAccumulator(percentiles=(20, 60), noise=0.02, batch_size=4),
}


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_a_callable_or_class_target_equals_the_class_ids(kind):
    model, (x, maps, ids) = Linear(), _data()
    labels = [2, 2, 2, 2]
    by_ids = FACTORIES[kind]().update(model, x, maps, labels, image_ids=ids)
    by_fn = FACTORIES[kind]().update(model, x, maps, lambda p: p[:, 2], image_ids=ids)  # softmax
    by_target = FACTORIES[kind]().update(model, x, maps, ClassTarget(labels), image_ids=ids)
    for rec in (by_fn, by_target):
        for key, value in by_ids.items():
            if key.endswith("_correct") and rec is by_fn:  # no class behind a callable's score
                assert np.isnan(rec[key]).all()
                continue
            np.testing.assert_array_equal(rec[key], value, err_msg=key)


def test_margin_scores_are_the_difference_of_the_two_classes_on_the_same_perturbations():
    model, (x, maps, ids) = Linear(), _data()
    cls, other = torch.tensor([0, 3, 1, 4]), torch.tensor([2, 2, 0, 1])

    def road():
        return ROADAccumulator(percentiles=(20, 60), noise=0.02, batch_size=4, score="logit")

    c = road().update(model, x, maps, cls, image_ids=ids)
    d = road().update(model, x, maps, other, image_ids=ids)
    m = road().update(model, x, maps, Margin(cls, against=other), image_ids=ids)
    for key in ("score", "morf_score", "lerf_score"):
        np.testing.assert_allclose(m[key], c[key] - d[key], rtol=1e-12, atol=1e-12, err_msg=key)
    np.testing.assert_array_equal(m["morf_correct"], c["morf_correct"])  # about cls
    # with logits passed in, the unperturbed score is read from them
    logits = model(x).detach()
    deletion = DeletionInsertionAccumulator(n_steps=6, score="logit")
    rec = deletion.update(model, x, maps, Margin(cls, against=other), logits=logits, image_ids=ids)
    np.testing.assert_allclose(rec["score"], (logits.gather(1, cls[:, None])
                                              - logits.gather(1, other[:, None]))[:, 0].numpy())


def test_targets_that_do_not_fit_are_refused():
    model, (x, maps, _) = Linear(), _data()
    acc = DeletionInsertionAccumulator(n_steps=4)
    with pytest.raises(MetricError, match="one target per image"):
        acc.update(model, x, maps, lambda z: z[:, :2])
    with pytest.raises(MetricError, match="one target per image"):
        acc.update(model, x, maps, ClassTarget([[0, 1]] * 4))
    with pytest.raises(ConfigError, match="Margin\\(cls\\)"):
        acc.update(model, x, maps, Margin([0, 1]))
    with pytest.raises(ConfigError, match="ids must be in"):
        acc.update(model, x, maps, Margin(7))
    assert acc.count == 0  # nothing recorded from the refused batches
