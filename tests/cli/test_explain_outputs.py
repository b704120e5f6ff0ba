"""`camloc explain` output safety: unique bounded names, the --out lock, resume keyed on absolute
paths with stored settings, torn lines, symbolic links, strict JSON, bounded overlays."""

from __future__ import annotations

import importlib
import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from camloc.cli import main
from camloc.explain.run import output_name
from camloc.io import NAME_MAX, folder_lock, repair_jsonl


def strict_lines(path: Path) -> list[dict]:
    """Every line parsed by a strict JSON parser (no NaN/Infinity, no torn lines)."""
    def no_constants(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), "torn last line"
    return [json.loads(line, parse_constant=no_constants) for line in text.splitlines()]


def explain(*args: str | Path) -> int:
    return main(["explain", *[str(a) for a in args]])


@pytest.fixture
def run(tiny_model):
    def go(*args: str | Path) -> int:
        return main(["explain", "-m", str(tiny_model), "-k", "3", "--device", "cpu",
                     *[str(a) for a in args]])
    return go


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


# ---- names ------------------------------------------------------------------------------------


def test_output_names_are_unique_bounded_and_safe(tmp_path):
    a, b = tmp_path / "a" / "x.jpg", tmp_path / "a__x.jpg"
    assert output_name(a) != output_name(b)
    assert output_name(a) == output_name(str(a))  # deterministic
    long = tmp_path / ("é" * 120 + ".jpg")  # 244 bytes: a legal name
    for p in (a, b, long, tmp_path / "we ird\n<name>?.png", tmp_path / "..hidden.jpg"):
        n = output_name(p)
        assert len(f".{n}.png.camloc-XXXXXXXX.tmp".encode()) <= NAME_MAX
        assert "/" not in n and "\n" not in n and " " not in n and not n.startswith(".")


def test_relative_and_absolute_paths_give_one_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.jpg").write_bytes(b"")
    assert output_name("x.jpg") == output_name(tmp_path / "x.jpg")


def test_colliding_names_and_two_folders_into_one_out(run, tmp_path, samples_dir):
    d1, d2 = tmp_path / "d1", tmp_path / "d2"
    (d1 / "a").mkdir(parents=True)
    d2.mkdir()
    shutil.copy(samples_dir / "chelsea.jpg", d1 / "a" / "x.jpg")
    shutil.copy(samples_dir / "coffee.jpg", d1 / "a__x.jpg")
    shutil.copy(samples_dir / "rocket.jpg", d2 / "a__x.jpg")  # same name, other folder
    out = tmp_path / "out"
    assert run(d1, "-o", out) == 0
    assert run(d2, "-o", out) == 0
    recs = strict_lines(out / "results.jsonl")
    assert len(recs) == 3
    assert len({r["overlay"] for r in recs}) == 3
    assert len(list((out / "overlays").iterdir())) == 3
    contents = {(out / r["overlay"]).read_bytes() for r in recs}
    assert len(contents) == 3  # three different photos, none overwritten


def test_a_240_byte_file_name_does_not_abort_the_run(run, tmp_path, samples_dir):
    d = tmp_path / "imgs"
    d.mkdir()
    long = d / ("n" * 236 + ".jpg")
    shutil.copy(samples_dir / "chelsea.jpg", long)
    shutil.copy(samples_dir / "coffee.jpg", d / "z_after.jpg")  # sorted after the long one
    out = tmp_path / "out"
    assert run(d, "-o", out, "--save-maps") == 0
    recs = strict_lines(out / "results.jsonl")
    assert sorted(Path(r["path"]).name for r in recs) == sorted([long.name, "z_after.jpg"])
    for r in recs:
        assert (out / r["overlay"]).is_file() and (out / r["maps"]).is_file()


# ---- one bad item never kills the batch ------------------------------------------------------


def test_render_and_write_failures_are_recorded_per_image(run, small_images, tmp_path, monkeypatch):
    import camloc.viz as viz

    real = viz.render_explanation

    def flaky(image, exp, *a, **k):
        if exp.source.endswith("cat.jpg"):
            raise RuntimeError("renderer fell over")
        return real(image, exp, *a, **k)

    monkeypatch.setattr(viz, "render_explanation", flaky)
    out = tmp_path / "out"
    assert run(small_images, "-o", out) == 1
    [err] = strict_lines(out / "errors.jsonl")
    assert err["path"].endswith("cat.jpg") and "renderer fell over" in err["error"]
    [rec] = strict_lines(out / "results.jsonl")
    assert rec["path"].endswith("coffee.jpg")
    # the next run retries the failed image only, and errors.jsonl no longer lists it
    monkeypatch.setattr(viz, "render_explanation", real)
    assert run(small_images, "-o", out) == 0
    assert len(strict_lines(out / "results.jsonl")) == 2
    assert strict_lines(out / "errors.jsonl") == []
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["skipped"] == 1 and manifest["counts"]["explained"] == 1


def test_a_failing_batch_is_retried_image_by_image(run, small_images, tmp_path, monkeypatch):
    ex = importlib.import_module("camloc.explain.api")
    real = ex.explain_batch

    def picky(model, images, sources, *a, **k):
        if any(s.endswith("cat.jpg") for s in sources):
            raise RuntimeError("forward failed")
        return real(model, images, sources, *a, **k)

    monkeypatch.setattr(ex, "explain_batch", picky)
    out = tmp_path / "out"
    assert run(small_images, "-o", out, "--batch-size", "4") == 1
    assert [Path(r["path"]).name for r in strict_lines(out / "results.jsonl")] == ["coffee.jpg"]
    assert "forward failed" in strict_lines(out / "errors.jsonl")[0]["error"]


def test_nan_scores_fail_the_image_and_every_line_is_strict_json(run, small_images, tmp_path,
                                                                 monkeypatch):
    ex = importlib.import_module("camloc.explain.api")
    real = ex.explain_batch

    def nan_for_cat(model, images, sources, *a, **k):
        exps = real(model, images, sources, *a, **k)
        for e in exps:
            if e.source.endswith("cat.jpg"):
                e.probs[0] = float("nan")
        return exps

    monkeypatch.setattr(ex, "explain_batch", nan_for_cat)
    out = tmp_path / "out"
    assert run(small_images, "-o", out) == 1
    [rec] = strict_lines(out / "results.jsonl")
    assert rec["path"].endswith("coffee.jpg")
    [err] = strict_lines(out / "errors.jsonl")
    assert err["path"].endswith("cat.jpg") and "non-finite" in err["error"]
    json.loads((out / "manifest.json").read_text(), parse_constant=lambda c: 1 / 0)


def test_jsonl_writer_writes_null_for_nan(tmp_path):
    from camloc.io import JsonlWriter

    with JsonlWriter(tmp_path / "r.jsonl") as w:
        w.write({"p": [0.5, float("nan")], "q": float("-inf")})
    assert strict_lines(tmp_path / "r.jsonl") == [{"p": [0.5, None], "q": None}]


# ---- resume, settings, overwrite -------------------------------------------------------------


def test_resume_is_keyed_on_the_absolute_path(run, small_images, tmp_path, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.chdir(small_images)
    assert run("cat.jpg", "-o", out) == 0
    assert run(small_images / "cat.jpg", small_images / "sub", "-o", out) == 0
    recs = strict_lines(out / "results.jsonl")
    assert sorted(Path(r["path"]).name for r in recs) == ["cat.jpg", "coffee.jpg"]
    assert all(os.path.isabs(r["path"]) for r in recs)
    assert json.loads((out / "manifest.json").read_text())["counts"]["skipped"] == 1


def test_changed_settings_are_refused_and_overwrite_redoes(run, small_images, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(small_images, "-o", out) == 0
    before = (out / "results.jsonl").read_bytes()
    for extra in (["-k", "2"], ["--threshold", "0.5"], ["--multi"], ["--fit", "crop"],
                  ["--classes", "1,2"]):
        capsys.readouterr()
        assert run(small_images, "-o", out, *extra) == 2, extra
        err = capsys.readouterr().err
        assert "other settings" in err and "--overwrite" in err, err
        assert (out / "results.jsonl").read_bytes() == before
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["top_k"] == 3 and manifest["settings"]["threshold"] == 0.2
    assert run(small_images, "-o", out, "--threshold", "0.5", "--overwrite") == 0
    recs = strict_lines(out / "results.jsonl")
    assert len(recs) == 2 and {r["threshold"] for r in recs} == {0.5}
    assert json.loads((out / "manifest.json").read_text())["settings"]["threshold"] == 0.5
    # presentation-only settings do not block a resume
    assert run(small_images, "-o", out, "--threshold", "0.5", "--batch-size", "1",
               "--overlay-size", "64") == 0


def test_overwrite_with_a_bad_option_keeps_the_results(run, small_images, tmp_path):
    out = tmp_path / "out"
    assert run(small_images, "-o", out) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for bad in (["--classes", "nope"], ["--method", "bogus"], ["--threshold", "2"],
                ["--threshold", "nan"], ["--fit", "squash"], ["-k", "500"],
                ["--weights", str(tmp_path / "missing.safetensors")], ["--classes", "crane"]):
        assert run(small_images, "-o", out, "--overwrite", *bad) == 2, bad
        assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before, bad


def test_adding_save_maps_later_redoes_without_duplicates(run, small_images, tmp_path):
    out = tmp_path / "out"
    assert run(small_images, "-o", out) == 0
    assert run(small_images, "-o", out, "--save-maps") == 0
    recs = strict_lines(out / "results.jsonl")
    assert len(recs) == 2 and all((out / r["maps"]).is_file() for r in recs)


def test_a_torn_last_line_is_cut_not_glued(run, small_images, tmp_path):
    out = tmp_path / "out"
    assert run(small_images / "cat.jpg", "-o", out) == 0
    with open(out / "results.jsonl", "ab") as fh:
        fh.write(b'{"path": "/gone.jpg", "class_ids": [1, ')  # a crash mid-write
    assert run(small_images, "-o", out) == 0
    recs = strict_lines(out / "results.jsonl")
    assert sorted(Path(r["path"]).name for r in recs) == ["cat.jpg", "coffee.jpg"]


def test_repair_jsonl_keeps_every_complete_line(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_bytes(b'{"a": 1}\n{"a": 2}\n{"a": ')
    assert repair_jsonl(p) == 6
    assert p.read_bytes() == b'{"a": 1}\n{"a": 2}\n'
    assert repair_jsonl(p) == 0
    p.write_bytes(b"no newline at all")
    repair_jsonl(p)
    assert p.read_bytes() == b""
    assert repair_jsonl(tmp_path / "missing.jsonl") == 0


def test_stale_temp_files_are_removed(run, small_images, tmp_path):
    out = tmp_path / "out"
    (out / "overlays").mkdir(parents=True)
    (out / "overlays" / ".cat.png.camloc-abcd1234.tmp").write_bytes(b"half")
    (out / ".results.jsonl.camloc-abcd1234.tmp").write_bytes(b"half")
    assert run(small_images, "-o", out) == 0
    assert no_temp_files(out)


def test_own_outputs_are_not_explained(run, small_images, tmp_path):
    out = small_images / "run"  # --out inside the input folder
    assert run(small_images, "-o", out) == 0
    assert run(small_images, "-o", out) == 0
    assert len(strict_lines(out / "results.jsonl")) == 2


# ---- symbolic links and the lock -------------------------------------------------------------


@pytest.mark.parametrize("name", ["errors.jsonl", "results.jsonl", "manifest.json", "overlays"])
def test_outputs_that_are_links_are_refused(run, small_images, tmp_path, capsys, name):
    target = tmp_path / "precious"
    target.mkdir() if name == "overlays" else target.write_text("keep me\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / name).symlink_to(target)
    assert run(small_images, "-o", out) == 2
    assert "symbolic link" in capsys.readouterr().err
    assert target.is_dir() if name == "overlays" else target.read_text() == "keep me\n"
    assert not (tmp_path / "precious").is_dir() or not list(target.iterdir())


def test_a_linked_overlay_file_is_replaced_not_written_through(run, small_images, tmp_path):
    out = tmp_path / "out"
    assert run(small_images / "cat.jpg", "-o", out) == 0
    [rec] = strict_lines(out / "results.jsonl")
    target = tmp_path / "precious.png"
    target.write_bytes(b"keep me")
    (out / rec["overlay"]).unlink()
    (out / rec["overlay"]).symlink_to(target)
    assert run(small_images / "cat.jpg", "-o", out, "--overwrite") == 0
    assert target.read_bytes() == b"keep me"
    assert not (out / rec["overlay"]).is_symlink()


def test_a_locked_out_is_refused_and_left_alone(run, small_images, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(small_images, "-o", out) == 0
    before = (out / "results.jsonl").read_bytes()
    with folder_lock(out):
        assert run(small_images, "-o", out, "--overwrite") == 2
    err = capsys.readouterr().err
    assert "in use by another camloc run" in err and f"pid {os.getpid()}" in err
    assert (out / "results.jsonl").read_bytes() == before
    assert run(small_images, "-o", out) == 0  # released


@pytest.mark.parametrize("kind", ["file", "under-a-file"])
def test_an_out_that_cannot_be_a_folder(run, small_images, tmp_path, capsys, kind):
    f = tmp_path / "plain"
    f.write_text("x")
    out = f if kind == "file" else f / "sub"
    assert run(small_images, "-o", out) == 2
    assert "--out" in capsys.readouterr().err
    assert f.read_text() == "x"


# ---- classes, top-k, overlay size ------------------------------------------------------------


def test_a_shared_class_name_is_refused_with_both_ids(run, small_images, tmp_path, capsys):
    assert run(small_images, "-o", tmp_path / "o", "--classes", "crane") == 2
    err = capsys.readouterr().err
    assert "10 (crane)" in err and "11 (crane)" in err
    assert run(small_images, "-o", tmp_path / "o", "--classes", "11") == 0


def test_parse_classes_on_imagenet_names():
    from camloc.data.classes import parse_classes
    from camloc.errors import ConfigError

    names = ["tench, Tinca tinca"] * 0 + [f"c{i}" for i in range(134)] + ["crane"] + \
        [f"d{i}" for i in range(382)] + ["crane"]
    assert names[134] == names[517] == "crane"
    with pytest.raises(ConfigError, match=r"134 \(crane\), 517 \(crane\)"):
        parse_classes("crane", names)
    assert parse_classes("517;c3", names) == [517, 3]
    with pytest.raises(ConfigError, match="out of range"):
        parse_classes("518", names)
    with pytest.raises(ConfigError, match="no class ids"):
        parse_classes(" , ", names)


def test_top_k_is_checked_against_the_model(run, small_images, tmp_path, capsys):
    assert run(small_images, "-o", tmp_path / "o", "-k", "5000") == 2
    assert "12 classes" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_overlay_grid_is_capped_but_results_keep_every_class(tiny_model, small_images, tmp_path):
    out = tmp_path / "o"
    assert explain(small_images / "cat.jpg", "-m", tiny_model, "-o", out, "-k", "12",
                   "--overlay-panels", "3") == 0
    [rec] = strict_lines(out / "results.jsonl")
    assert len(rec["class_ids"]) == 12 and len(rec["boxes"]) == 12
    w, h = Image.open(out / rec["overlay"]).size
    assert h == 300 and w == 3 * 451 + 2 * 4  # three panels, 4-pixel gaps


def test_huge_photo_overlay_is_bounded(tiny_model, tmp_path):
    big = tmp_path / "wide.png"
    Image.new("RGB", (3000, 1200), (30, 160, 90)).save(big)
    out = tmp_path / "o"
    assert explain(big, "-m", tiny_model, "-o", out, "-k", "1", "--overlay-size", "600") == 0
    [rec] = strict_lines(out / "results.jsonl")
    assert Image.open(out / rec["overlay"]).size == (600, 240)
    assert rec["width"] == 3000 and rec["boxes"][0][2] <= 3000  # boxes stay in original pixels
    assert explain(big, "-m", tiny_model, "-o", tmp_path / "o5", "-k", "5",
                   "--overlay-size", "600") == 0
    [rec] = strict_lines(tmp_path / "o5" / "results.jsonl")
    assert max(Image.open(tmp_path / "o5" / rec["overlay"]).size) <= 600


def test_overlay_map_matches_map_in_original(tiny_model, samples_dir):
    """The display-size map equals the original-size map scaled down (crop geometry too)."""
    import cv2
    import numpy as np

    import camloc
    from camloc.viz import map_at_size

    model = camloc.load_model(str(tiny_model))
    for fit in ("stretch", "crop"):
        pre = model.spec.preprocess.with_(fit=fit)
        [e] = camloc.explain(model, samples_dir / "chelsea.jpg", top_k=1, preprocess=pre)
        full = e.map_in_original(0)
        small = map_at_size(e, 0, e.width, e.height)
        np.testing.assert_allclose(small, full, atol=1e-5)
        half = map_at_size(e, 0, e.width // 2, e.height // 2)
        ref = cv2.resize(full, (e.width // 2, e.height // 2), interpolation=cv2.INTER_AREA)
        assert np.abs(half - ref).mean() < 0.02


def test_batches_of_huge_photos_are_cut_short():
    """A batch holds at most max_pixels decoded pixels; unreadable images are reported."""
    from camloc.data.batches import decoded_batches

    sizes = {"a": (40, 40), "b": (40, 40), "bad": None, "c": (10, 10), "d": (10, 10)}

    def load(p):
        if sizes[p] is None:
            raise OSError(5, "I/O error")
        return Image.new("RGB", sizes[p])

    from camloc.explain.inputs import InputItem

    failed = []
    todo = [InputItem(i, k, k) for i, k in enumerate(sizes)]
    batches = [(n, [i.path for i in ok]) for n, ok, _ in
               decoded_batches(todo, 16, lambda it: load(it.path),
                               lambda it, why: failed.append((it.key, why)), max_pixels=2500)]
    assert batches == [(2, ["a", "b"]), (3, ["c", "d"])]
    assert failed == [("bad", "I/O error")]
