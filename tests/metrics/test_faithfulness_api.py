"""Faithfulness accumulators: merging, state, batching cost, model side effects, input errors."""

from __future__ import annotations

import doctest
import pickle

import numpy as np
import pytest
import torch
from torch import nn

import camloc.metrics.faithfulness as faith
from camloc.errors import ConfigError, MetricError, ModelError
from camloc.metrics.faithfulness import (AverageDropAccumulator, DeletionInsertionAccumulator,
                                         ROADAccumulator)


class Linear64(nn.Module):
    def __init__(self, c: int = 3, h: int = 8, w: int = 8, k: int = 5, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(k, c * h * w, generator=g, dtype=torch.float64) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.double().flatten(1) @ self.weight.t()


def data(n: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.normal(size=(n, 3, 8, 8)).astype(np.float32))
    maps = torch.from_numpy(rng.random((n, 8, 8)).astype(np.float32))
    cls = rng.integers(0, 5, n).tolist()
    return x, maps, cls, [f"img{i}" for i in range(n)]


FACTORIES = {
    "average_drop": lambda: AverageDropAccumulator(batch_size=1),
    "deletion_insertion": lambda: DeletionInsertionAccumulator(n_steps=9, batch_size=1),
    "road": lambda: ROADAccumulator(percentiles=(20, 60), noise=0.02, batch_size=1),
}


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_shards_merged_equal_one_pass(kind: str) -> None:
    """Strided shards (as torchrun ranks take them), merged through state_dicts, give exactly the
    one-pass result: records are per image and means are correctly rounded (order-free)."""
    model = Linear64()
    x, maps, cls, ids = data()
    one = FACTORIES[kind]()
    one.update(model, x, maps, cls, image_ids=ids)
    shards = []
    for r in range(2):
        acc = FACTORIES[kind]()
        sel = list(range(r, 6, 2))
        for k in sel:  # one image per update, as a loader might
            acc.update(model, x[k:k + 1], maps[k:k + 1], [cls[k]], image_ids=[ids[k]])
        shards.append(pickle.loads(pickle.dumps(acc.state_dict())))
    merged = type(one).from_state_dict(shards[0]).merge(type(one).from_state_dict(shards[1]))
    assert merged.count == 6
    assert merged.image_ids == ["img0", "img2", "img4", "img1", "img3", "img5"]
    assert merged.compute() == one.compute()
    by_id = {r["image_id"]: r for r in merged.per_image}
    assert [by_id[r["image_id"]] for r in one.per_image] == one.per_image


def test_state_dict_round_trip_and_merge_checks() -> None:
    model = Linear64()
    x, maps, cls, ids = data(3)
    acc = DeletionInsertionAccumulator(pixels_per_step=10, deletion_baseline=(0.1, 0.2, 0.3))
    acc.update(model, x, maps, cls)
    back = DeletionInsertionAccumulator.from_state_dict(pickle.loads(pickle.dumps(acc.state_dict())))
    assert back.compute() == acc.compute()
    assert back.settings() == acc.settings()
    with pytest.raises(MetricError, match="different settings"):
        acc.merge(DeletionInsertionAccumulator(pixels_per_step=11))
    with pytest.raises(MetricError, match="can only merge"):
        acc.merge(AverageDropAccumulator())
    with pytest.raises(MetricError, match="not 'road'"):
        ROADAccumulator.from_state_dict(acc.state_dict())
    with pytest.raises(MetricError, match="missing"):
        ROADAccumulator.from_state_dict({"kind": "road"})
    with pytest.raises(MetricError, match="call update"):
        ROADAccumulator().compute()


def test_mean_curve_absent_when_image_sizes_differ() -> None:
    model_a, model_b = Linear64(h=8, w=8), Linear64(h=6, w=8)
    acc = DeletionInsertionAccumulator(n_steps=4, modes=("deletion",))
    acc.update(model_a, torch.randn(1, 3, 8, 8), torch.rand(1, 8, 8), [0])
    acc.update(model_b, torch.randn(1, 3, 6, 8), torch.rand(1, 6, 8), [0])
    r = acc.compute()
    assert r["curves"] is None and r["count"] == 2


def test_forward_calls_are_batched_across_images() -> None:
    """S steps per curve cost about 2 S / B batched forwards per image; the all-baseline input is
    shared when both curves use the same baseline; logits passed in save the forward on x."""
    base = Linear64()
    calls: list[int] = []

    def fwd(t: torch.Tensor) -> torch.Tensor:
        calls.append(t.shape[0])
        return base(t)

    x, maps, cls, _ = data(5)
    s = 8  # 64 pixels, 8 per step
    acc = DeletionInsertionAccumulator(n_steps=s, insertion_baseline="zero", batch_size=16)
    acc.update(fwd, x, maps, cls)
    jobs = 5 * (2 * s - 1)
    jobs += 5  # the images themselves, in the same batches
    assert calls == [16] * 5 and sum(calls) == jobs
    calls.clear()
    acc2 = DeletionInsertionAccumulator(n_steps=s, batch_size=16)  # zero vs blur: not shared
    acc2.update(fwd, x, maps, cls, logits=base(x))
    assert sum(calls) == 5 * 2 * s and max(calls) == 16
    calls.clear()
    road = ROADAccumulator(percentiles=(10, 50, 90), batch_size=4)
    road.update(fwd, x, maps, cls, logits=base(x))
    assert calls == [4] * 7 + [2]  # 5 images x 2 orders x 3 percentiles = 30 inputs


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_batch_size_and_passed_logits_do_not_change_values(kind: str) -> None:
    model = Linear64()
    x, maps, cls, ids = data(4)
    a = FACTORIES[kind]()
    a.update(model, x, maps, cls, image_ids=ids)
    b = type(a)(**a.settings(), batch_size=5)
    b.update(model, x, maps, cls, image_ids=ids, logits=model(x))
    ra, rb = a.compute(), b.compute()
    for key in ra:
        if isinstance(ra[key], float):
            assert rb[key] == pytest.approx(ra[key], abs=1e-12), key


class TrainFlagged(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                 nn.Dropout(0.5), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(4, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_model_flags_restored_and_no_gradients() -> None:
    torch.manual_seed(0)
    model = TrainFlagged()
    model.train()
    model.net[3].eval()  # a mixed state must come back as it was
    flags = [m.training for m in model.modules()]
    bn_stats = model.net[1].running_mean.clone()
    x, maps, cls, _ = data(3)
    acc = DeletionInsertionAccumulator(n_steps=4)
    out = acc.update(model, x, maps, cls)
    assert [m.training for m in model.modules()] == flags
    assert torch.equal(model.net[1].running_mean, bn_stats)  # eval mode: BN statistics untouched
    assert all(p.grad is None for p in model.parameters())
    ref = DeletionInsertionAccumulator(n_steps=4)
    ref_out = ref.update(model.eval(), x, maps, cls)  # the same as an eval-mode model
    np.testing.assert_allclose(out["deletion"], ref_out["deletion"], rtol=0, atol=1e-7)


def test_input_errors_name_the_argument() -> None:
    model = Linear64()
    x, maps, cls, _ = data(2)
    acc = AverageDropAccumulator()
    with pytest.raises(MetricError, match=r"maps are 4x4 but the inputs are 8x8.*upsample"):
        acc.update(model, x, torch.rand(2, 4, 4), cls)
    with pytest.raises(MetricError, match=r"\[0, 1\]"):
        acc.update(model, x, maps * 2, cls)
    bad = maps.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(MetricError, match="NaN"):
        DeletionInsertionAccumulator().update(model, x, bad, cls)
    with pytest.raises(MetricError, match="class_ids"):
        acc.update(model, x, maps, [0])
    with pytest.raises(MetricError, match=r"class_ids must lie in \[0, 5\)"):
        acc.update(model, x, maps, [0, 7])
    with pytest.raises(MetricError, match="x must be"):
        acc.update(model, x[0], maps, cls)
    with pytest.raises(ModelError, match="logits of shape"):
        acc.update(lambda t: t.sum(), x, maps, cls)
    with pytest.raises(ConfigError, match="forward"):
        acc.update(42, x, maps, cls)
    with pytest.raises(MetricError, match="not positive"):
        AverageDropAccumulator(score="logit").update(lambda t: -torch.ones(t.shape[0], 3), x, maps,
                                                     [0, 1])
    with pytest.raises(MetricError, match="image_ids"):
        acc.update(model, x, maps, cls, image_ids=["a"])
    assert acc.count == 0  # nothing half-added


@pytest.mark.parametrize("make, match", [
    (lambda: DeletionInsertionAccumulator(n_steps=0), "n_steps"),
    (lambda: DeletionInsertionAccumulator(n_steps=5, pixels_per_step=3), "exactly one"),
    (lambda: DeletionInsertionAccumulator(deletion_baseline="black"), "deletion_baseline"),
    (lambda: DeletionInsertionAccumulator(blur_kernel_size=4), "blur_kernel_size"),
    (lambda: DeletionInsertionAccumulator(blur_sigma=0), "blur_sigma"),
    (lambda: DeletionInsertionAccumulator(modes=("delete",)), "modes"),
    (lambda: ROADAccumulator(percentiles=(0, 50)), "percentiles"),
    (lambda: ROADAccumulator(percentiles=(50, 50)), "percentiles"),
    (lambda: ROADAccumulator(orders=("most",)), "orders"),
    (lambda: ROADAccumulator(noise=-1), "noise"),
    (lambda: ROADAccumulator(noise_space="pixels"), "noise_space"),
    (lambda: ROADAccumulator(seed=-3), "seed"),
    (lambda: AverageDropAccumulator(mask_space="rgb"), "mask_space"),
    (lambda: AverageDropAccumulator(std=(0.2, 0.0, 0.2)), "std"),
    (lambda: AverageDropAccumulator(score="prob"), "score"),
    (lambda: AverageDropAccumulator(batch_size=0), "batch_size"),
])
def test_bad_settings_raise_config_errors(make, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make()


def test_channel_mismatch_is_reported() -> None:
    model = Linear64(c=1)
    x = torch.randn(2, 1, 8, 8)
    with pytest.raises(MetricError, match="channels"):
        AverageDropAccumulator().update(model, x, torch.rand(2, 8, 8), [0, 1])
    with pytest.raises(MetricError, match="channels"):
        DeletionInsertionAccumulator(deletion_baseline=(0, 0, 0)).update(model, x, torch.rand(2, 8, 8),
                                                                         [0, 1])
    # input-space variants need no statistics
    AverageDropAccumulator(mask_space="input").update(model, x, torch.rand(2, 8, 8), [0, 1])
    ROADAccumulator(noise_space="input", percentiles=(50,)).update(model, x, torch.rand(2, 8, 8), [0, 1])


def test_camloc_model_is_accepted(default_model) -> None:
    from camloc.models.loader import CamModel

    model = default_model
    assert isinstance(model, CamModel)
    was = model.module.training
    model.module.train()
    x = torch.randn(2, 3, 32, 32)
    out = AverageDropAccumulator().update(model, x, torch.rand(2, 32, 32), [0, 3])
    assert model.module.training
    with torch.no_grad():
        ref = model.module.eval()(x).softmax(1)[[0, 1], [0, 3]].double().numpy()
    model.module.train(was)
    np.testing.assert_allclose(out["score"], ref, rtol=1e-5)


def test_docstring_examples_run() -> None:
    mods = [faith, faith.average_drop, faith.deletion, faith.road, faith.perturb, faith._base]
    for mod in mods:
        res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert res.failed == 0, mod.__name__
    assert sum(doctest.testmod(m).attempted for m in mods) >= 5


def test_docs_example_runs(capsys) -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "faithfulness.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "docs/faithfulness.md lost its example"
    exec(compile(blocks[0], "docs/faithfulness.md", "exec"), {})
    values = [float(v) for v in capsys.readouterr().out.split()]
    assert len(values) == 3 and all(np.isfinite(values))
