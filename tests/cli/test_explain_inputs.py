"""Streamed explain inputs: folder order equals sorted paths (find_images, the listing the
streaming replaced, is the oracle), list files with file:line problems, stdin, datasets."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from camloc.data.images import find_images
from camloc.errors import ConfigError
from camloc.explain.inputs import ExplainInputs, key_of


def touch(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")
    return p


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    for rel in ["a.jpg", "a/z.png", "a/b/y.JPG", "a-b.jpg", "B.jpg", "b/x.jpeg", "b/.hidden.jpg",
                ".h/y.jpg", "notes.txt", "a b/é.webp", "a/b/c/d/e/deep.png", "z.gif"]:
        touch(root / rel)
    (root / "empty").mkdir()
    (root / "link-to-a").symlink_to(root / "a", target_is_directory=True)
    (root / "lnk.jpg").symlink_to(root / "a.jpg")  # the same image twice
    return root


def test_folder_order_equals_sorted_listing(tree):
    items = list(ExplainInputs(paths=[tree]).stream())
    paths, problems = find_images([tree])
    assert not problems
    assert [i.path for i in items] == paths
    assert [i.index for i in items] == list(range(len(items)))
    assert all(i.key == key_of(i.path) for i in items)


def test_several_inputs_globs_and_problems_in_order(tree):
    inputs = [tree / "b", str(tree / "a" / "*.png"), tree / "nope.jpg", tree / "empty",
              str(tree / "*.bmp"), tree / "a.jpg", tree / "B.jpg"]
    items = list(ExplainInputs(paths=inputs).stream())
    paths, problems = find_images(inputs)
    assert [i.path for i in items if i.path is not None] == paths
    assert [(i.key, i.problem) for i in items if i.problem] == problems
    # problems keep their place in the input order
    assert [i.problem or i.path.name for i in items] == [
        "x.jpeg", "z.png", "no such file or folder", "folder contains no images",
        "pattern matched no images", "a.jpg", "B.jpg"]


def test_the_output_folder_is_left_out(tree):
    items = list(ExplainInputs(paths=[tree]).stream(exclude=(tree / "a").resolve()))
    assert not [i for i in items if "/a/" in str(i.path)]
    assert any(i.path.name == "a.jpg" for i in items)


def test_list_file_relative_to_its_folder_with_line_numbers(tree, tmp_path, monkeypatch):
    lst = tree / "lists" / "pick.txt"
    lst.parent.mkdir()
    lst.write_bytes(b"../a.jpg\r\n\n" + str(tree / "B.jpg").encode() + b"\n../missing.jpg\n"
                    b"../a\n../a.jpg\n../notes.txt\nbad\x01name.jpg\n../z.gif")
    monkeypatch.chdir(tmp_path)  # relative to the list, not to the working directory
    items = list(ExplainInputs(lists=[lst]).stream())
    got = [(i.path.name if i.path else None, i.problem) for i in items]
    where = str(lst)
    assert got == [("a.jpg", None), ("B.jpg", None), (None, f"{where}:4: no such file"),
                   (None, f"{where}:5: is a folder; a list names image files, one per line"),
                   ("notes.txt", None),  # listed by name: kept, fails later if not an image
                   (None, f"{where}:8: control character in the path"), ("z.gif", None)]


def test_list_from_stdin_is_relative_to_the_working_directory(tree, monkeypatch):
    monkeypatch.chdir(tree)
    items = list(ExplainInputs(lists=["-"], stdin=io.StringIO("a.jpg\nb/x.jpeg\n")).stream())
    assert [i.path for i in items] == [tree / "a.jpg", tree / "b" / "x.jpeg"]


def test_paths_then_lists_share_one_order_without_duplicates(tree):
    lst = tree / "l.txt"
    lst.write_text("a.jpg\nz.gif\n")
    items = list(ExplainInputs(paths=[tree / "z.gif", tree / "B.jpg"], lists=[lst]).stream())
    assert [i.path.name for i in items] == ["z.gif", "B.jpg", "a.jpg"]
    assert [i.index for i in items] == [0, 1, 2]


def test_bad_list_arguments(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        ExplainInputs(lists=[tmp_path / "nope.txt"]).check()
    with pytest.raises(ConfigError, match="is a folder"):
        ExplainInputs(lists=[tmp_path]).check()
    with pytest.raises(ConfigError, match="once"):
        ExplainInputs(lists=["-", "-"])
    with pytest.raises(ConfigError, match="not both"):
        ExplainInputs(paths=["x"], dataset=object())


def test_dataset_items_carry_ids_and_labels(tmp_path):
    from camloc.data.datasets import open_dataset
    from camloc.data.synth import make_synth

    root = make_synth(tmp_path / "synth", classes=3, images=12, size=32)
    ds = open_dataset(root, split="test")
    items = list(ExplainInputs(dataset=ds).stream())
    assert [(i.path, i.image_id, i.label) for i in items] == [
        (s.path, s.image_id, s.label) for s in ds]
    assert ExplainInputs(dataset=ds).describe()["images"] == len(ds)
    if os.name == "posix":
        assert all(i.key.startswith("/") for i in items)
