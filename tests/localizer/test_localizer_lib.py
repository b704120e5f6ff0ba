"""camloc.localizer as a library: the honest splits, the head, the folder, the checks, evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from camloc.data.datasets import open_dataset
from camloc.errors import ConfigError
from camloc.localizer import (Localizer, LocalizedMethod, fit_head, fit_localizer, load_localizer,
                              save_localizer, split_ids)
from camloc.localizer.fit import parse_share

FAST = dict(combines=[("product", 1.0), ("mix", 0.5)], ttas=["none", "flip"], batch_size=8)


def test_split_ids_is_seeded_disjoint_and_order_free():
    ids = [f"img{i}" for i in range(101)]
    kept, held = split_ids(ids, 0.5, seed=3)
    assert len(held) == 50 and len(kept) == 51 and not set(kept) & set(held)
    assert set(kept) | set(held) == set(ids)
    assert split_ids(list(reversed(ids)), 0.5, seed=3) == (kept, held)
    assert split_ids(ids, 0.5, seed=4) != (kept, held)
    assert split_ids(ids, 0.0)[1] == []
    assert parse_share("50%") == 0.5 and parse_share("0.25") == 0.25
    with pytest.raises(ConfigError, match="--holdout"):
        parse_share("100%")


def test_fit_head_learns_a_foreground_channel():
    g = torch.Generator().manual_seed(0)
    feats, targets = [], []
    for _ in range(6):
        t = (torch.rand(7, 7, generator=g) > 0.6).float()
        f = torch.randn(5, 7, 7, generator=g)
        f[2] = 3 * t - 1 + 0.3 * torch.randn(7, 7, generator=g)  # channel 2 carries the box
        feats.append(f)
        targets.append(t)
    h = fit_head(feats, targets, l2=1e-4)
    assert int(np.argmax(np.abs(h["weight"]))) == 2 and h["weight"][2] > 0
    loc = Localizer(kind="head", layers=["x"], model={"name": "m"}, mean=h["mean"], std=h["std"],
                    weight=h["weight"], bias=h["bias"])
    fg = loc.foreground([torch.stack(feats)])[:, 0]
    y = torch.stack(targets)
    assert ((fg > 0.5).float() == y).float().mean() > 0.95


def test_fit_save_load_check_and_evaluate(tiny, loc_synth, other_tiny_dir, tmp_path):
    import camloc
    from camloc.evaluate import evaluate_model

    ds = open_dataset(loc_synth, split="train")
    loc = fit_localizer(tiny, ds, holdout=0.25, seed=1, **FAST)
    n = len(ds.samples)
    fit, held = loc.fit["fit_ids"], loc.fit["heldout_ids"]
    assert len(held) == round(0.25 * n) and len(fit) + len(held) == n and not set(fit) & set(held)
    assert set(loc.fit["head_ids"]) | set(loc.fit["choose_ids"]) == set(fit)
    assert not set(loc.fit["head_ids"]) & set(loc.fit["choose_ids"])
    assert loc.layers and loc.tta in ("none", "flip") and 0 <= loc.threshold < 1
    assert len(loc.fit["trials"]) == 4 and loc.fit["chosen"] in loc.fit["trials"]
    folder = save_localizer(loc, tmp_path / "loc")
    back = load_localizer(folder)
    assert back.key == loc.key and back.threshold == loc.threshold and back.tta == loc.tta
    assert np.array_equal(back.weight, loc.weight)
    # one forward: maps on the finer grid, classes and logits as the base method's
    meth = LocalizedMethod(camloc.cams.make_method(tiny, "cam"), back)
    x = torch.randn(2, 3, 64, 64)
    out, plain = meth(x, classes=[[0], [2]]), camloc.cams.make_method(tiny, "cam")(x, [[0], [2]])
    assert torch.equal(out.class_ids, plain.class_ids) and torch.allclose(out.logits, plain.logits)
    assert out.maps.min() >= 0 and out.maps.max() <= 1
    # other weights under the same name are refused, naming the folder
    other = camloc.load_model(str(other_tiny_dir), device="cpu")
    with pytest.raises(ConfigError, match="other weights"):
        back.check_model(other)
    # evaluate: the localizer's threshold and TTA apply; the report says which images it saw
    rep = evaluate_model(tiny, ds, batch_size=8, localizer=folder)
    assert rep["tta"] == loc.tta
    assert rep["localization"]["calibrated"]["threshold"] == pytest.approx(loc.threshold)
    assert rep["calibration"]["source"] == "localizer"
    block = rep["localizer"]
    assert block["scored_fit_images"] == len(fit) and not block["heldout"] and "not held-out" in \
        block["note"]
    held_ds = ds.subset([i for i, s in enumerate(ds.samples) if s.image_id in set(held)])
    rep2 = evaluate_model(tiny, held_ds, batch_size=8, localizer=folder, tta="none",
                          calibrate=0.3)
    assert rep2["localizer"]["heldout"] and rep2["localizer"]["scored_fit_images"] == 0
    assert rep2["tta"] == "none" and rep2["localization"]["calibrated"]["threshold"] == 0.3
    # a calibration report made with another TTA (or without the localizer) is refused
    (tmp_path / "r.json").write_text(json.dumps(rep))
    with pytest.raises(ConfigError, match="--tta"):
        evaluate_model(tiny, ds, batch_size=8, localizer=folder, tta="scales=64:80",
                       calibrate=str(tmp_path / "r.json"))
    with pytest.raises(ConfigError, match="localizer"):
        evaluate_model(tiny, ds, batch_size=8, tta=loc.tta, calibrate=str(tmp_path / "r.json"))


def test_pc1_localizer_needs_no_weights(tiny, loc_synth, tmp_path):
    ds = open_dataset(loc_synth, split="train")
    loc = fit_localizer(tiny, ds, kind="pc1", **FAST)
    assert loc.weight is None and loc.layers == list(tiny.layers)
    back = load_localizer(save_localizer(loc, tmp_path / "pc1"))
    assert back.kind == "pc1" and not (tmp_path / "pc1" / "head.npz").exists()


def test_bad_localizer_folders_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="localizer.json"):
        load_localizer(tmp_path)
    (tmp_path / "localizer.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a readable"):
        load_localizer(tmp_path)


def test_pc1_recovers_a_rank_one_pattern_with_the_class_maps_sign():
    from camloc.localizer.model import _pc1

    g = torch.Generator().manual_seed(0)
    pat = torch.rand(1, 1, 7, 7, generator=g)
    f = pat * torch.randn(1, 64, 1, 1, generator=g) + 0.01 * torch.randn(1, 64, 7, 7, generator=g)
    want = (pat - pat.min()) / (pat.max() - pat.min())
    assert torch.allclose(_pc1(f, pat), want, atol=0.01)
    assert torch.allclose(_pc1(f, -pat), 1 - want, atol=0.01)  # the sign follows the class map
