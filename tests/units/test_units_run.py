"""Units runs on tiny data: the report against an independent oracle, exact shard merges,
resuming, folders without labels, probe heads and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from camloc.errors import ConfigError
from camloc.units import (UnitsSettings, UnitsState, analyze_units, collect_units,
                          open_units_data, run_units)


def _features(model, data):
    """Oracle: folded features of every image, one image at a time."""
    from camloc.data.images import load_image, to_tensor

    pre = model.spec.preprocess.with_(fit="stretch")
    out = []
    with torch.no_grad():
        for it in data.items:
            x, _ = to_tensor(load_image(it.path), pre)
            out.append(model.module.eval().forward_features(x[None])[0])
    return torch.stack(out)  # (N, K, h, w)


def test_report_matches_independent_oracle(tiny_model, tiny_wsol):
    data = open_units_data(tiny_wsol)
    rep = analyze_units(tiny_model, data, UnitsSettings(top_units=4, top_images=5, batch_size=7,
                                                        purity_classes=2, draws=200))
    f = _features(tiny_model, data)
    n, k = f.shape[:2]
    w = tiny_model.module.classifier.weight.detach().double()
    labels = np.array([it.label for it in data.items])
    pooled = f.mean((2, 3)).double()
    assert rep["exactness"]["max_abs_error"] < 1e-6
    assert rep["counts"] == {"scored": n, "failed": 0}
    for c in rep["classes"]:
        cid = c["class"]
        mean = pooled[torch.from_numpy(labels == cid)].mean(0)
        contrib = (w[cid] * mean).numpy()
        order = np.argsort(-contrib, kind="stable")[:4]
        assert [e["unit"] for e in c["by_contribution"]] == order.tolist()
        np.testing.assert_allclose([e["contribution"] for e in c["by_contribution"]],
                                   contrib[order], atol=2e-6)
        share = contrib / contrib.sum()
        assert c["top_share"] == pytest.approx(share[order].sum(), abs=1e-4)
        assert [e["unit"] for e in c["by_weight"]] == np.argsort(-w[cid].numpy(),
                                                                kind="stable")[:4].tolist()
        # the class's mean logit is carried by the units plus the bias, exactly
        logit = (pooled[torch.from_numpy(labels == cid)] @ w.T)[:, cid].mean()
        assert c["mean_logit"] == pytest.approx(float(logit) + c["mean_bias"], abs=1e-5)
    peak = f.amax((2, 3))
    for u in rep["units"]:
        kk = u["unit"]
        want = sorted(range(n), key=lambda i: (-float(peak[i, kk]),
                                               -float(f[i, kk].mean()), i))[:5]
        assert [r["index"] for r in u["top_images"]] == want
        exact = np.quantile(f[:, kk].numpy(), 0.995, method="lower")
        if exact < 1e-4:  # a unit silent on 99.5% of the positions: it must be positive
            assert u["threshold"] == 0.0
        else:
            assert exact * (1 - 0.0202) - 1e-6 <= u["threshold"] <= exact + 1e-6
        # purity: top images labelled with one of the 2 classes weighing the unit most
        strongest = set(np.argsort(-w[:, kk].numpy(), kind="stable")[:2].tolist())
        hits = np.mean([labels[i] in strongest for i in want])
        assert u["purity"] == pytest.approx(hits, abs=1e-5)
        assert u["purity_chance"] == pytest.approx(np.mean([lab in strongest for lab in labels]),
                                                abs=1e-5)
    tops = {u["unit"]: [r["index"] for r in u["top_images"]] for u in rep["units"]}
    for c in rep["classes"]:
        for e in c["by_contribution"]:
            assert e["class_hits"] == sum(labels[i] == c["class"] for i in tops[e["unit"]])
    cp = rep["summary"]["class_purity"]
    assert cp["mean"] == pytest.approx(np.mean([e["class_hits"] / 5 for c in rep["classes"]
                                                for e in c["by_contribution"]]), abs=1e-5)
    assert cp["chance"] == pytest.approx(1 / 3, abs=1e-5)
    # a region cut by hand: bicubic upsampling, threshold, pixel centres in the GT boxes
    u = rep["units"][3]
    r = u["top_images"][0]
    up = F.interpolate(f[r["index"], 3][None, None], size=(32, 32), mode="bicubic",
                       align_corners=False)[0, 0]
    mask = (up > u["threshold"]).numpy()
    item = data.items[r["index"]]
    centre = (np.arange(32) + 0.5) * 40 / 32  # input pixel centres in original (40 px) pixels
    box = np.zeros((32, 32), bool)
    for x0, y0, x1, y1 in item.boxes:
        box |= ((centre >= y0) & (centre <= y1))[:, None] & ((centre >= x0) & (centre <= x1))[None]
    assert r["region_area"] == pytest.approx(mask.mean(), abs=1e-5)
    if mask.any():
        assert r["inside"] == pytest.approx((mask & box).sum() / mask.sum(), abs=1e-5)
    assert r["coverage"] == pytest.approx((mask & box).sum() / box.sum(), abs=1e-5)
    assert rep["summary"]["partness"]["units"] == 12
    assert set(rep["summary"]["purity"]) >= {"mean", "chance", "random_units"}


def _collect(model, items, indices, batch):
    from camloc.units.contrib import check_layer

    _, shape = check_layer(model, None, (32, 32))
    st = UnitsState.empty({}, 3, 16, shape, top_images=6)
    return collect_units(model, items, st, indices=indices, batch_size=batch)


def test_shard_merge_equals_single_pass(tiny_model, tiny_wsol):
    items = open_units_data(tiny_wsol).items
    single = _collect(tiny_model, items, None, 5)
    shards = [_collect(tiny_model, items[r::3], list(range(r, len(items), 3)), 2) for r in range(3)]
    merged = shards[1].merge(shards[0]).merge(shards[2])
    assert torch.equal(merged.top.index, single.top.index)
    torch.testing.assert_close(merged.top.maps, single.top.maps, rtol=1e-5, atol=1e-6)
    assert torch.equal(merged.sketch.counts, single.sketch.counts) or \
        int((merged.sketch.counts - single.sketch.counts).abs().sum()) <= 2  # a bucket edge
    torch.testing.assert_close(merged.class_pooled, single.class_pooled)
    assert torch.equal(merged.class_count, single.class_count)
    assert merged.images == single.images == len(items) and merged.position == len(items)


def _strip(rep: dict) -> dict:
    rep = dict(rep)
    for key in ("seconds", "images_per_second"):
        rep.pop(key)
    return rep


def test_resume_equals_uninterrupted_run(tiny_model, tiny_wsol, tmp_path):
    data = open_units_data(tiny_wsol)
    s = UnitsSettings(top_images=4, batch_size=4, sheets=False, draws=100)
    full = run_units(tiny_model, data, tmp_path / "full", s)
    # stopped after one batch: the state is saved, no report yet
    part = run_units(tiny_model, data, tmp_path / "part", s, stop_after=1)
    assert part.report is None and not (tmp_path / "part" / "units.json").exists()
    assert UnitsState.load(tmp_path / "part" / "state" / "units-rank0-of1.pt").position == 4

    # interrupted by Ctrl-C after the second batch: saved on the way out
    def interrupt(done, total):
        if done >= 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_units(tiny_model, data, tmp_path / "part", s, progress=interrupt)
    again = run_units(tiny_model, data, tmp_path / "part", s)
    assert again.resumed_from == 8
    assert _strip(again.report) == _strip(full.report)
    on_disk = json.loads((tmp_path / "part" / "units.json").read_text())
    assert on_disk["units"] == json.loads((tmp_path / "full" / "units.json").read_text())["units"]
    # a finished pass: a re-run only rebuilds the report
    assert run_units(tiny_model, data, tmp_path / "part", s).resumed_from == len(data.items)
    # other options: refused unless --overwrite
    with pytest.raises(ConfigError, match="top_images"):
        run_units(tiny_model, data, tmp_path / "part", UnitsSettings(top_images=5, sheets=False))
    s2 = UnitsSettings(top_images=5, sheets=False, overwrite=True)
    assert run_units(tiny_model, data, tmp_path / "part", s2).resumed_from == 0


def test_folder_without_labels_and_a_bad_image(tiny_model, tmp_path, units_data):
    folder = tmp_path / "photos"
    units_data.write_images(folder, 7)
    (folder / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    data = open_units_data(folder)
    assert data.format == "images" and not data.labeled
    res = run_units(tiny_model, data, tmp_path / "out", UnitsSettings(top_images=3, batch_size=3,
                                                                      gallery_units=5))
    rep = res.report
    assert res.exit_code == 1 and [f["image_id"] for f in res.failed] == ["zz_broken.png"]
    assert rep["counts"] == {"scored": 7, "failed": 1}
    assert rep["classes"] == [] and "purity" not in rep["summary"]
    assert len(rep["gallery_units"]) == 5
    assert all(len(u["top_images"]) == 3 and "purity" not in u for u in rep["units"])
    out = tmp_path / "out"
    sheets = sorted(p.name for p in (out / "sheets").iterdir())
    assert sheets == [f"unit_{k:04d}.png" for k in sorted(rep["gallery_units"])]
    assert (out / "sheets" / sheets[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "units.html").read_text()
    assert f"sheets/{sheets[0]}" in html and "unit-" in html
    assert json.loads((out / "errors.jsonl").read_text().splitlines()[0])["image_id"] == \
        "zz_broken.png"


def _class_folders(root: Path, names: list[str], units_data) -> Path:
    for i, name in enumerate(names):
        units_data.write_images(root / name, 4, seed=i)
    return root


def test_probe_head_units(tiny_model_dir, tmp_path, units_data):
    """A probe head replaces the classifier: its classes get their units, exactly."""
    import camloc
    from safetensors.torch import save_file

    head = tmp_path / "head"
    head.mkdir()
    g = torch.Generator().manual_seed(5)
    save_file({"weight": torch.randn(2, 16, generator=g), "bias": torch.tensor([0.5, -0.25])},
              str(head / "head.safetensors"))
    (head / "head.json").write_text(json.dumps({"format": "camloc-head",
                                                "class_names": ["zebra", "disk"]}))
    model = camloc.load_model(str(tiny_model_dir), head=str(head))
    # a class-folder dataset: folders sorted (disk=0, zebra=1), mapped to the head's order by name
    data = open_units_data(_class_folders(tmp_path / "ds", ["zebra", "disk"], units_data))
    assert data.class_names == ["disk", "zebra"]
    rep = analyze_units(model, data, UnitsSettings(top_units=3, top_images=4, draws=50))
    assert [(c["class"], c["name"], c["images"]) for c in rep["classes"]] == \
        [(0, "zebra", 4), (1, "disk", 4)]
    assert rep["exactness"]["max_abs_error"] < 1e-6
    assert rep["classes"][0]["mean_bias"] == pytest.approx(0.5)
    w = model.head.classifier.weight.detach()
    assert [e["unit"] for e in rep["classes"][1]["by_weight"]] == \
        torch.argsort(-w[1], stable=True)[:3].tolist()
    assert rep["model"]["head"] == str(head)


def test_labels_must_be_the_models_classes(tiny_model, tmp_path, units_data):
    data = open_units_data(_class_folders(tmp_path / "ds", ["cat", "disk"], units_data))
    with pytest.raises(ConfigError, match="'cat'.*--ignore-labels"):
        analyze_units(tiny_model, data)
    ignored = open_units_data(tmp_path / "ds", ignore_labels=True)
    rep = analyze_units(tiny_model, ignored, UnitsSettings(top_images=2, draws=10))
    assert rep["classes"] == [] and rep["counts"]["scored"] == 8
    with pytest.raises(ConfigError, match="top_units|top-units"):
        analyze_units(tiny_model, ignored, UnitsSettings(top_units=0))


def test_class_without_images_is_ranked_by_weight(tiny_model, tiny_wsol, tmp_path):
    import dataclasses

    data = open_units_data(tiny_wsol)
    data = dataclasses.replace(data, items=[it for it in data.items if it.label != 2])
    res = run_units(tiny_model, data, tmp_path / "o", UnitsSettings(classes="all", top_units=3,
                                                                    top_images=3, draws=20))
    rec = {c["class"]: c for c in res.report["classes"]}
    assert rec[2]["images"] == 0 and "by_contribution" not in rec[2] and "top_share" not in rec[2]
    w = tiny_model.head.classifier.weight.detach()
    assert [e["unit"] for e in rec[2]["by_weight"]] == torch.argsort(-w[2], stable=True)[:3].tolist()
    assert res.report["summary"]["classes_with_images"] == 2
    assert {e["unit"] for e in rec[2]["by_weight"]} <= set(res.report["gallery_units"])
    assert (tmp_path / "o" / "sheets" / "class_0002.png").is_file()
    with pytest.raises(ConfigError, match="out of range"):
        analyze_units(tiny_model, data, UnitsSettings(classes=[3]))
