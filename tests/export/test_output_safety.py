"""The output-folder rules of camloc.io and the export writers, in process: no link below a
locked --out is followed, only camloc's own temporary files and export folders are removed or
replaced, every writer encodes names that are not UTF-8, and a write that finds no room fails
with an errno and the file's name. (The CLI cases are in tests/reliability.)"""

from __future__ import annotations

import errno
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from camloc.errors import ConfigError
from camloc.export import check_export_targets, export_results
from camloc.export._files import MARKER, staged_folder
from camloc.export.voc import voc_xml
from camloc.export.records import detections
from camloc.io import (atomic_save_npy, atomic_write_text, clean_text, folder_lock, is_temp_file,
                       make_out_dir, remove_stale_temps)

ODD = b"/x/caf\xe9.jpg".decode("utf-8", "surrogateescape")


def _results(d: Path, path: str, names: list[str]) -> Path:
    rec = {"path": path, "width": 100, "height": 50, "class_ids": list(range(len(names))),
           "class_names": names, "probs": [0.9] * len(names),
           "boxes": [[10, 5, 60, 45]] * len(names)}
    p = d / "results.jsonl"
    p.write_text(json.dumps(rec) + "\n")  # ensure_ascii: lone surrogates as \\udcXX escapes
    return p


def test_make_out_dir_refuses_links_and_files(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "maps").symlink_to(elsewhere)
    (out / "afile").write_text("x")
    with pytest.raises(ConfigError, match="maps is a symbolic link"):
        make_out_dir(out, "maps", "sub")
    with pytest.raises(ConfigError, match="afile is not a folder"):
        make_out_dir(out, "afile")
    assert make_out_dir(out, "a/b", "c").is_dir()
    assert list(elsewhere.iterdir()) == []


def test_writes_under_a_locked_out_never_follow_a_link(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "scoremaps").symlink_to(elsewhere)
    with folder_lock(out):
        with pytest.raises(ConfigError, match="symbolic link"):
            atomic_save_npy(out / "scoremaps" / "a" / "b.npy", np.zeros(3))
        atomic_write_text(out / "new" / "x.txt", "ok")  # ordinary folders are made
    assert list(elsewhere.iterdir()) == []
    assert (out / "new" / "x.txt").read_text() == "ok"
    # outside a lock the plain rule applies (the final file itself is still never followed)
    atomic_write_text(tmp_path / "free" / "y.txt", "ok")


def test_only_camloc_temp_files_are_cleaned(tmp_path):
    (tmp_path / ".notes.tmp").write_text("mine")
    (tmp_path / ".x.12345678.tmp").write_text("mine too")
    (tmp_path / ".r.json.camloc-ab12cd34.tmp").write_text("camloc's")
    removed = remove_stale_temps(tmp_path)
    assert [p.name for p in removed] == [".r.json.camloc-ab12cd34.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".notes.tmp", ".x.12345678.tmp"]
    assert not is_temp_file(".camloc-.tmp")


def test_long_names_keep_the_mark(tmp_path):
    name = "n" * 250
    p = tmp_path / name
    atomic_write_text(p, "x")
    assert p.read_text() == "x" and list(tmp_path.iterdir()) == [p]


def test_no_room_is_an_oserror_with_errno_and_name(tmp_path, monkeypatch):
    def short_write(fh, arr, *a, **k):  # NumPy's message on a short write, without errno
        raise OSError("50176 requested and 12256 written")

    monkeypatch.setattr(np, "save", short_write)
    target = tmp_path / "m.npy"
    with pytest.raises(OSError) as info:
        atomic_save_npy(target, np.zeros((112, 112), np.float32))
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert list(tmp_path.iterdir()) == []


def test_a_users_folder_is_never_replaced(tmp_path):
    mine = tmp_path / "yolo"
    (mine / "labels").mkdir(parents=True)
    (mine / "labels" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    res = _results(tmp_path, "/x/a.jpg", ["cat"])
    with pytest.raises(ConfigError, match="not written by camloc"):
        check_export_targets(tmp_path, ["yolo"])
    with pytest.raises(ConfigError, match="not written by camloc"):
        export_results(res, tmp_path, ["yolo"])
    assert (mine / "labels" / "a.txt").read_text() == "0 0.5 0.5 0.1 0.1\n"
    # camloc's own export (marked) is replaced, and so is one of an earlier camloc (its index)
    export_results(res, tmp_path, ["voc"])
    assert (tmp_path / "voc" / MARKER).is_file()
    (tmp_path / "voc" / MARKER).unlink()
    export_results(res, tmp_path, ["voc"])
    assert (tmp_path / "voc" / MARKER).is_file()


def test_a_failed_export_leaves_the_old_one(tmp_path):
    with staged_folder(tmp_path / "voc") as stage:
        (stage / "a.xml").write_text("<a/>")
    with pytest.raises(RuntimeError), staged_folder(tmp_path / "voc") as stage:
        raise RuntimeError("boom")
    assert (tmp_path / "voc" / "a.xml").read_text() == "<a/>"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["voc"]


def test_exports_of_names_that_are_not_utf8(tmp_path):
    names = ["a\ud800b", "c\ufffed\uffff", "e\x01f"]
    res = _results(tmp_path, ODD, names)
    export_results(res, tmp_path, ["coco", "yolo", "voc"], class_names=names)
    coco = json.loads((tmp_path / "coco" / "instances.json").read_bytes().decode("utf-8"))
    assert coco["images"][0]["camloc_path"] == "/x/caf\ufffd.jpg"
    assert [c["name"] for c in coco["categories"]] == [clean_text(n) for n in names]
    text = (tmp_path / "yolo" / "classes.txt").read_bytes().decode("utf-8")
    assert text.splitlines()[0] == "a\ufffdb"
    [xml] = (tmp_path / "voc").glob("*.xml")
    root = ET.fromstring(xml.read_bytes())
    assert [o.findtext("name") for o in root.iter("object")] == ["a\ufffdb", "cd", "ef"]
    assert root.findtext("filename") == "caf\ufffd.jpg"


def test_voc_xml_is_well_formed_for_any_name():
    rec = {"path": "/p/\ufffe\uffff\x00\x1f.jpg", "width": 10, "height": 10,
           "class_ids": [0], "class_names": ["\ufffe"], "probs": [0.5], "boxes": [[1, 1, 5, 5]]}
    root = ET.fromstring(voc_xml(rec, detections(rec)))
    assert root.find("object/name").text == "0"  # nothing left of the name: the class id


def test_synth_never_replaces_a_folder_filled_meanwhile(tmp_path, monkeypatch):
    """Two synth runs into one folder: the one that finishes second is refused (its rename
    onto the other's dataset fails), instead of silently replacing it."""
    import camloc.data.synth as synth

    out = tmp_path / "ds"
    real = synth.render_sample

    def render(label, size, rng):  # another run finishes while this one renders
        if not out.exists():
            monkeypatch.setattr(synth, "render_sample", real)
            synth.make_synth(out, classes=2, images=4, size=32)
        return real(label, size, rng)

    monkeypatch.setattr(synth, "render_sample", render)
    with pytest.raises(ConfigError, match="filled by another run"):
        synth.make_synth(out, classes=3, images=6, size=32)
    assert json.loads((out / "synth.json").read_text())["classes"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no staging left
