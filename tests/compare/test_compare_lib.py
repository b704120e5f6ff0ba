"""compare() as a library: cam's localization equals camloc.evaluate's; calibration; TTA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from camloc.compare import (TTA, FaithfulnessSettings, build_methods, compare, load_calibration,
                            parse_tta, tta_maps)
from camloc.compare.calibration import holdout_indices
from camloc.data.datasets import open_dataset
from camloc.errors import ConfigError

NO_FAITH = FaithfulnessSettings(enabled=False)


def test_cam_localization_equals_evaluate(tiny, synth_root):
    from camloc.evaluate import evaluate_model

    ds = open_dataset(synth_root, split="train")
    ev = evaluate_model(tiny, ds, batch_size=5)
    rep = compare(tiny, ds, "cam", faithfulness=NO_FAITH, batch_size=5)
    loc = rep["methods"]["cam"]["localization"]
    assert loc["maxboxacc_v1"] == ev["localization"]["maxboxacc_v1"]
    assert loc["maxboxacc_v2"] == ev["localization"]["maxboxacc_v2"]
    assert loc["calibrated"]["gt_known_loc"] == ev["localization"]["gt_known_loc"]["at_fixed"]
    assert loc["calibrated"]["top1_loc"] == ev["localization"]["top1_loc"]["at_fixed"]
    assert loc["best_on_test"]["top1_loc"]["value"] == ev["localization"]["top1_loc"]["best"]
    # both read the images with camloc.protocol.batches and run the network channels-last on
    # the CPU: every figure is the same, PxAP included
    pxap = rep["methods"]["cam"]["pxap"]
    assert pxap == {k: v for k, v in ev["pxap"].items() if k != "curves"} | {
        "calibrated": pxap["calibrated"]}  # (compare adds the figures at its threshold)
    assert rep["classification"] == ev["classification"]


def test_calibration_from_another_split_or_its_compare_json(tiny, synth_root, tmp_path):
    test = open_dataset(synth_root, split="test")
    train = open_dataset(synth_root, split="train")
    on_test = compare(tiny, test, "cam,eigencam", faithfulness=NO_FAITH, out=tmp_path / "t",
                      gallery=0)
    taus = {m: on_test["methods"][m]["localization"]["maxboxacc_v1"]["threshold"]
            for m in ("cam", "eigencam")}
    a = compare(tiny, train, "cam,eigencam", faithfulness=NO_FAITH, calibration_split="test")
    b = compare(tiny, train, "cam,eigencam", faithfulness=NO_FAITH,
                calibrate_with=str(tmp_path / "t" / "compare.json"))
    for m, tau in taus.items():
        for rep in (a, b):
            cal = rep["methods"][m]["localization"]["calibrated"]
            assert cal["threshold"] == tau
        assert a["methods"][m]["localization"]["calibrated"] == \
            b["methods"][m]["localization"]["calibrated"]
        # best-on-test is never below the calibrated figure (it picks tau on these labels)
        best = a["methods"][m]["localization"]["best_on_test"]["gt_known_loc"]["value"]
        assert best >= a["methods"][m]["localization"]["calibrated"]["gt_known_loc"]
    with pytest.raises(ConfigError, match="gradcam"):
        load_calibration(str(tmp_path / "t" / "compare.json"), ["cam", "gradcam"])
    assert load_calibration("0.35", ["cam"]).threshold("cam") == 0.35


def test_holdout_share_is_disjoint_and_calibrates(tiny, synth_root):
    ds = open_dataset(synth_root, split="train")
    held = holdout_indices(12, 25)
    assert len(held) == 3 and held == [3, 7, 11]
    rep = compare(tiny, ds, "cam", faithfulness=NO_FAITH, calibration_split="25%")
    assert rep["counts"]["scored"] == 9 and rep["calibration"]["images"] == 3


def test_unknown_method_and_headless_cam(tiny):
    import camloc

    with pytest.raises(ConfigError, match="valid methods: cam, gradcam"):
        compare(tiny, None, "cam,nope")
    torch.manual_seed(0)
    headless = camloc.wrap(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                               torch.nn.Flatten(), torch.nn.Linear(4 * 32 * 32, 3)),
                           input_size=(32, 32))
    with pytest.raises(ConfigError, match="methods that work on it: gradcam"):
        build_methods(headless, ["cam", "gradcam"])
    from camloc.compare import resolve_methods

    kept = build_methods(headless, resolve_methods("all"), skip_headless=True)  # --methods all
    assert list(kept) == resolve_methods("all")[1:] and "cam" not in kept


def test_parse_tta():
    assert parse_tta("flip") == TTA(flip=True)
    assert parse_tta(" scales=32:48 , flip") == TTA(flip=True, scales=(32, 48))
    assert parse_tta("none") is None
    for bad in ("flop", "scales=32x48", "scales=", "flip,flip", "scales=32:32", "scales=2"):
        with pytest.raises(ConfigError):
            parse_tta(bad)


def test_flip_tta_is_flip_equivariant_and_symmetric_on_symmetric_input(tiny):
    from camloc.cams.registry import make_method

    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    sym = torch.cat([x[..., :32], torch.flip(x[..., :32], dims=[-1])], dim=-1)
    ids = torch.tensor([0, 2])
    for name in ("gradcam", "cam"):
        meth = make_method(tiny, name)
        _, m_sym = tta_maps(meth, sym, ids, TTA(flip=True))
        # a mirror-symmetric input gives the same map when mirrored
        torch.testing.assert_close(m_sym, torch.flip(m_sym, dims=[-1]), rtol=0, atol=1e-6)
        _, m = tta_maps(meth, x, ids, TTA(flip=True))
        _, m_f = tta_maps(meth, torch.flip(x, dims=[-1]), ids, TTA(flip=True))
        torch.testing.assert_close(m_f, torch.flip(m, dims=[-1]), rtol=0, atol=1e-6)


def test_single_native_scale_is_the_plain_map_and_scales_run(tiny):
    from camloc.cams import normalize, upsample
    from camloc.cams.registry import make_method

    torch.manual_seed(1)
    x = torch.randn(2, 3, 64, 64)
    ids = torch.tensor([1, 0])
    meth = make_method(tiny, "gradcam++")
    logits, m = tta_maps(meth, x, ids, TTA(scales=(64,)))
    plain = meth(x, classes=ids[:, None])
    torch.testing.assert_close(logits, plain.logits)
    want = normalize(upsample(plain.maps, (64, 64), "bicubic"), "minmax")[:, 0]
    torch.testing.assert_close(m, want, rtol=0, atol=1e-6)
    logits2, m2 = tta_maps(meth, x, ids, TTA(flip=True, scales=(48, 96)))
    torch.testing.assert_close(logits2, plain.logits)  # no native variant: one clean forward
    assert m2.shape == (2, 64, 64) and float(m2.min()) >= 0 and float(m2.max()) <= 1
    assert not torch.allclose(m2, m)


def test_tta_and_faithfulness_in_compare(tiny, synth_root):
    ds = open_dataset(synth_root, split="test")
    rep = compare(tiny, ds, "gradcam", tta="flip", faithfulness=FaithfulnessSettings(
        steps=4, road_percentiles=(50.0,), limit=2))
    m = rep["methods"]["gradcam"]
    assert rep["settings"]["tta"] == "flip" and m["faithfulness_images"] == 2
    assert m["localization"]["maxboxacc_v2"]["value"] >= 0
    assert np.isfinite(m["faithfulness"]["deletion_auc"])


def test_shards_merge_to_one_pass(tiny, synth_root):
    """What torchrun does: each rank scores ds.shard(rank, 2); rank 0 merges (exact)."""
    from camloc.compare import compare_state
    from camloc.compare.report import build_compare_report

    ds = open_dataset(synth_root, split="train")
    faith = FaithfulnessSettings(steps=3, road_percentiles=(50.0,))
    ids = {s.image_id for s in ds.samples[:3]}
    meths = build_methods(tiny, ["gradcam"])

    def run(d):
        return compare_state(tiny, d, meths, faithfulness=faith, faith_ids=ids, batch_size=4)

    whole = build_compare_report(run(ds), tiny, ds, {}, None, gallery=0)
    merged_state = run(ds.shard(0, 2)).merge(run(ds.shard(1, 2)))
    merged = build_compare_report(merged_state, tiny, ds, {}, None, gallery=0)
    for m in ("gradcam",):
        a, b = whole["methods"][m], merged["methods"][m]
        assert a["localization"] == b["localization"] and a["pxap"] == b["pxap"]
        assert a["faithfulness_images"] == b["faithfulness_images"] == 3
        for k, v in a["faithfulness"].items():
            assert b["faithfulness"][k] == pytest.approx(v, rel=1e-12, abs=1e-12), k
    assert whole["classification"] == merged["classification"]


def test_a_dataset_of_other_classes_is_refused(tiny, tmp_path):
    """As evaluate: maps of the wrong classes would be scored silently otherwise."""
    from camloc.data.synth import make_synth
    from camloc.errors import DatasetError

    other = make_synth(tmp_path / "four", classes=4, images=8, size=64, seed=1)
    with pytest.raises(DatasetError, match="classes"):
        compare(tiny, open_dataset(other, split="test"), "cam", faithfulness=NO_FAITH)
