"""compare --localizer: the localizer's foreground in every method's maps, as evaluate has it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from camloc.compare import FaithfulnessSettings, compare
from camloc.data.datasets import open_dataset
from camloc.errors import ConfigError

sys.path.insert(0, str(Path(__file__).parent))
from test_compare_cli import run_cli  # noqa: E402

NO_FAITH = FaithfulnessSettings(enabled=False)


@pytest.fixture(scope="module")
def loc(tiny, synth_root):
    from camloc.localizer import fit_localizer

    ds = open_dataset(synth_root, split="train")
    fitted = fit_localizer(tiny, ds, combines=[("product", 1.0)], ttas=["none"], batch_size=8)
    return fitted.with_(tta="flip")  # a recommended TTA compare must take up


@pytest.fixture(scope="module")
def loc_dir(loc, tmp_path_factory):
    from camloc.localizer import save_localizer

    return save_localizer(loc, tmp_path_factory.mktemp("cmp-loc") / "loc")


def test_compare_with_a_localizer_scores_what_evaluate_scores(tiny, synth_root, loc):
    from camloc.evaluate import evaluate_model

    ds = open_dataset(synth_root, split="test")
    ev = evaluate_model(tiny, ds, batch_size=4, localizer=loc)
    rep = compare(tiny, ds, "cam,gradcam", faithfulness=NO_FAITH, batch_size=4, localizer=loc,
                  fixed_threshold=loc.threshold)
    plain = compare(tiny, ds, "cam", faithfulness=NO_FAITH, batch_size=4)
    got = rep["methods"]["cam"]["localization"]
    assert got["maxboxacc_v2"] == ev["localization"]["maxboxacc_v2"]
    assert got["calibrated"]["top1_loc"] == ev["localization"]["top1_loc"]["at_fixed"]
    assert got["maxboxacc_v2"] != plain["methods"]["cam"]["localization"]["maxboxacc_v2"]
    assert rep["settings"]["tta"] == ev["tta"] != "none"  # the localizer's TTA, as evaluate
    assert rep["settings"]["localizer"]["key"] == loc.key
    assert "localizer" not in plain["settings"]
    # an explicit TTA wins over the localizer's
    rep = compare(tiny, ds, "cam", faithfulness=NO_FAITH, batch_size=4, localizer=loc, tta="none")
    assert rep["settings"]["tta"] == "none"


def test_compare_refuses_a_localizer_of_other_weights(tiny, synth_root, loc):
    ds = open_dataset(synth_root, split="test")
    other = loc.with_(model={**loc.model, "fingerprint": "0" * 16})
    with pytest.raises(ConfigError, match="other weights"):
        compare(tiny, ds, "cam", faithfulness=NO_FAITH, localizer=other)


def test_cli_compare_localizer_recorded_and_checked(synth_root, tiny_dir, loc, loc_dir,
                                                    tmp_path):
    out = tmp_path / "cmp"
    r = run_cli(str(synth_root), "--split", "test", "--model", str(tiny_dir), "--methods", "cam",
                "--no-faithfulness", "--gallery", "1", "--localizer", str(loc_dir), "--out",
                str(out), "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / "compare.json").read_text())
    assert rep["settings"]["localizer"]["path"] and rep["settings"]["tta"] != "none"
    # a localizer fitted on other weights: a usage error naming it, before --out is made
    from camloc.localizer import save_localizer

    bad = save_localizer(loc.with_(model={**loc.model, "fingerprint": "0" * 16}), tmp_path / "bad")
    r = run_cli(str(synth_root), "--split", "test", "--model", str(tiny_dir), "--methods", "cam",
                "--localizer", str(bad), "--out", str(tmp_path / "cmp2"), "--device", "cpu",
                cwd=tmp_path)
    assert r.returncode == 2 and "other weights" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "cmp2").exists()
    # --tta none overrides the localizer's recommended TTA
    r = run_cli(str(synth_root), "--split", "test", "--model", str(tiny_dir), "--methods", "cam",
                "--no-faithfulness", "--gallery", "0", "--localizer", str(loc_dir), "--tta", "none",
                "--out", str(out), "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "compare.json").read_text())["settings"]["tta"] == "none"
