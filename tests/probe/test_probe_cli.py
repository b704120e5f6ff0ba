"""``camloc probe``: outputs, cache reuse across runs, exit codes and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import camloc.models
from camloc.cli import main


@pytest.fixture
def use_default_model(default_model, monkeypatch: pytest.MonkeyPatch):
    """Serve the session's already-loaded default model instead of loading it per command."""
    calls = []

    def fake_load_model(name="efficientnet_lite0", weights="DEFAULT", device="cpu", head=None,
                        num_classes=None):
        calls.append((name, weights, device, head))
        assert name == "efficientnet_lite0" and head is None
        return default_model

    monkeypatch.setattr(camloc.models, "load_model", fake_load_model)
    return calls


def _probe(ds: Path, out: Path, cache: Path, *extra: str) -> int:
    return main(["probe", str(ds), "--out", str(out), "--cache", str(cache), "--device", "cpu",
                 "--batch-size", "8", *extra])


def test_probe_cli_outputs_and_cache_reuse(tmp_path: Path, probe_data, use_default_model) -> None:
    ds = probe_data.write_folder(tmp_path / "ds", per_class=4, size=64)
    out, cache = tmp_path / "out", tmp_path / "cache"
    assert _probe(ds, out, cache, "--C", "0.1,1", "--holdout", "0.5", "--seed", "1") == 0
    for name in ("head.safetensors", "head.json", "report.json", "report.md", "confusion.png"):
        assert (out / name).is_file(), name
    assert not (out / "errors.jsonl").exists()
    head = json.loads((out / "head.json").read_text())
    assert head["format"] == "camloc-head" and head["backbone"] == "efficientnet_lite0"
    assert head["class_names"] == ["astronaut", "cat", "coffee"] and head["feature_dim"] == 1280
    assert head["weights"] == "DEFAULT" and head["preprocess"]["input_size"] == [224, 224]
    rep = json.loads((out / "report.json").read_text())
    assert rep["split"]["n_train"] == 6 and rep["split"]["n_test"] == 6
    assert rep["heldout"]["accuracy"] >= 5 / 6
    assert rep["features"]["computed"] == 12 and rep["features"]["reused"] == 0
    assert rep["probe"]["C"] in (0.1, 1.0) and set(rep["probe"]["cv_scores"]) == {"0.1", "1.0"}
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Held-out classification" in (out / "report.md").read_text()
    # a second run (other options, other output) does no forward pass
    assert _probe(ds, tmp_path / "out2", cache, "--classifier", "svm", "--C", "1") == 0
    rep2 = json.loads((tmp_path / "out2" / "report.json").read_text())
    assert rep2["features"]["computed"] == 0 and rep2["features"]["reused"] == 12
    assert rep2["probe"]["classifier"] == "svm"


def test_probe_cli_reports_unreadable_images(tmp_path: Path, probe_data, use_default_model) -> None:
    ds = probe_data.write_folder(tmp_path / "ds", per_class=3, size=64)
    (ds / "cat" / "zz-broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "out"
    assert _probe(ds, out, tmp_path / "cache", "--C", "1", "--holdout", "0") == 1
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [e["image_id"] for e in errors] == ["cat/zz-broken.jpg"] and errors[0]["reason"]
    assert (out / "head.safetensors").is_file()  # the run still finished
    rep = json.loads((out / "report.json").read_text())
    assert rep["split"]["n_train"] == 9 and rep["heldout"] is None


def test_probe_cli_clear_errors(tmp_path: Path, probe_data, use_default_model,
                                capsys: pytest.CaptureFixture[str]) -> None:
    one = probe_data.write_folder(tmp_path / "one", per_class=2, size=48, classes=("cat",))
    assert _probe(one, tmp_path / "o1", tmp_path / "c") == 2
    assert "at least two classes" in capsys.readouterr().err

    empty = probe_data.write_folder(tmp_path / "empty", per_class=2, size=48,
                                    classes=("cat", "coffee"))
    (empty / "zebra").mkdir()
    assert _probe(empty, tmp_path / "o2", tmp_path / "c") == 2
    err = capsys.readouterr().err
    assert "no images" in err and "'zebra'" in err

    single = probe_data.write_folder(tmp_path / "single", per_class=2, size=48,
                                     classes=("cat", "coffee"))
    (single / "coffee" / "001.png").unlink()
    assert _probe(single, tmp_path / "o3", tmp_path / "c", "--holdout", "0.5") == 2
    assert "'coffee' has 1 image" in capsys.readouterr().err

    assert _probe(single, tmp_path / "o4", tmp_path / "c", "--C", "-1") == 2
    assert "C=" in capsys.readouterr().err
    assert _probe(single, tmp_path / "o5", tmp_path / "c", "--classifier", "tree",
                  "--holdout", "0") == 2
    assert "classifier" in capsys.readouterr().err
    assert not use_default_model or all(c[0] == "efficientnet_lite0" for c in use_default_model)
