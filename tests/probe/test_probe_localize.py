"""End to end: a probe on efficientnet_lite0's generic features classifies and localizes new
classes, and its head round-trips through ``camloc.load_model(..., head=DIR)``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import camloc
from camloc.data.datasets import open_dataset
from camloc.data.images import batch_images, load_image
from camloc.probe import ProbeSettings, read_head, run_probe


@pytest.fixture(scope="module")
def probe_run(default_model, pasted_wsol: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("probe-out")
    settings = ProbeSettings(classifier="logistic", C=0.1, holdout=0.5, seed=0, batch_size=18,
                             cache_dir=out / "cache", interval=0.05)
    return run_probe(default_model, open_dataset(pasted_wsol), out / "head", settings)


def test_probe_classifies_and_localizes_new_classes(probe_run) -> None:
    rep = probe_run.report
    assert rep["split"]["n_train"] == 18 and rep["split"]["n_test"] == 18
    assert rep["heldout"]["accuracy"] >= 0.9
    # the evaluation's own forward pass through the swapped head agrees with the features
    assert rep["evaluation"]["classification"]["top1"] == pytest.approx(
        100 * rep["heldout"]["accuracy"])
    loc, centre = rep["localization"], rep["centre_box_baseline"]["gt_known_loc"]
    assert rep["centre_box_baseline"]["count"] == 18
    # GT-known Loc at its best threshold (= MaxBoxAcc V1) is far above the centre box
    assert loc["gt_known_loc"]["best"] >= centre + 30.0, (loc["gt_known_loc"], centre)
    assert loc["maxboxacc_v2"]["value"] >= centre + 20.0
    saved = json.loads((probe_run.out / "report.json").read_text())
    assert saved["localization"]["maxboxacc_v1"] == loc["maxboxacc_v1"]
    assert "Held-out localization" in (probe_run.out / "report.md").read_text()


def test_saved_head_round_trips_through_load_model(probe_run, pasted_wsol: Path) -> None:
    meta, w, b = read_head(probe_run.out)
    assert meta["class_names"] == ["cat", "coffee", "astronaut"]
    model = camloc.load_model(meta["backbone"], weights=meta["weights"], head=probe_run.out)
    assert model.spec.class_names == meta["class_names"] and model.spec.num_classes == 3
    ds = open_dataset(pasted_wsol)
    feats = probe_run.train_features
    rows = [0, 1, 2, 3]
    by_id = {s.image_id: s.path for s in ds.samples}
    paths = [by_id[feats.ids[r]] for r in rows]
    x, _ = batch_images([load_image(p) for p in paths], model.spec.preprocess)
    with torch.no_grad():
        logits = model.module(x).numpy()
    expected = feats.X[rows] @ w.T + b  # w . pooled + b, from the cached features
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-3)
    # explain works unchanged with the new classes
    [e] = camloc.explain(model, [paths[0]], top_k=1)
    assert e.class_names[0] == meta["class_names"][feats.y[0]]
