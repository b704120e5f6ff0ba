"""Image ids that would leave the dataset folder are refused with their file and line; output
paths derived from ids are safe; unreadable folders are reported."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from camloc.data.datasets import open_dataset
from camloc.data.paths import MAX_NAME_BYTES, id_problem, safe_relpath
from camloc.errors import ConfigError, DatasetError


def at(probs, name: str, line: int) -> str:
    hits = [why for f, n, why in probs if Path(f).name == name and n == line]
    assert hits, probs
    return hits[0]


@pytest.mark.parametrize("image_id,words", [
    ("../x.jpg", "'..'"), ("a/../../x.jpg", "'..'"), ("a\\..\\x.jpg", "'..'"), ("..", "'..'"),
    ("/etc/passwd", "absolute"), ("\\\\server\\x.jpg", "absolute"), ("C:x.jpg", "absolute"),
    ("a\x00b.jpg", "control"), ("a\nb.jpg", "control"), ("", "empty"),
])
def test_id_problem_refuses(image_id: str, words: str) -> None:
    why = id_problem(image_id)
    assert why is not None and words in why


@pytest.mark.parametrize("image_id", ["a.jpg", "a/b/c.JPEG", "a..b.jpg", "...jpg", "~/x.jpg",
                                      "./a.jpg", "a b/ü.png", "img:1.jpg"])
def test_id_problem_accepts(image_id: str) -> None:
    assert id_problem(image_id) is None


# --------------------------------------------------------------------------------------------------
# every reader refuses escaping ids, with file and line, also under an explicit image_root
# --------------------------------------------------------------------------------------------------


def test_wsol_escaping_ids(wsol_root: Path, files, problems_of) -> None:
    outside = files.touch(wsol_root.parent / "outside.jpg")  # exists: refused anyway
    m = wsol_root / "metadata"
    files.write(m / "image_ids.txt", f"images/a.jpg\n../outside.jpg\n{outside}\n")
    files.write(m / "class_labels.txt", f"images/a.jpg,0\n../outside.jpg,1\n{outside},1\n")
    (m / "image_sizes.txt").unlink()
    (m / "localization.txt").unlink()
    for kw in ({}, {"image_root": wsol_root / "images"}):
        probs = problems_of(wsol_root, **kw)
        assert "'..'" in at(probs, "image_ids.txt", 2)
        assert "absolute" in at(probs, "image_ids.txt", 3)


def test_wsol_escaping_mask_path(openimages_root: Path, problems_of) -> None:
    meta = openimages_root / "metadata" / "OpenImages" / "test"
    loc = meta / "localization.txt"
    loc.write_text(loc.read_text().replace("test/cls/img2.jpg,test/cls/img2_m1.png,",
                                           "test/cls/img2.jpg,../../secret.png,"))
    probs = problems_of(openimages_root / "metadata" / "OpenImages", split="test",
                        image_root=openimages_root / "dataset" / "OpenImages")
    assert "'..'" in at(probs, "localization.txt", 3)


def test_cub_escaping_path(cub_root: Path, problems_of) -> None:
    f = cub_root / "CUB_200_2011" / "images.txt"
    f.write_text(f.read_text().replace("5 003.Blackbird/c2.jpg", "5 ../../../etc/hosts"))
    assert "'..'" in at(problems_of(cub_root), "images.txt", 5)


def test_user_csv_and_json_escaping_paths(tmp_path: Path, files, problems_of) -> None:
    files.touch(tmp_path / "a.jpg")
    f = files.write(tmp_path / "d.csv", "path,label,mask\na.jpg,0,\n../b.jpg,0,\n"
                                        "a.jpg,0,/etc/mask.png\n")
    probs = problems_of(f)
    assert "'..'" in at(probs, "d.csv", 3) and "absolute" in at(probs, "d.csv", 4)
    items = [{"path": "a.jpg", "label": 0}, {"path": "/abs/b.jpg", "label": 0},
             {"path": "a2.jpg", "masks": ["../m.png"]}]
    f = files.write(tmp_path / "d.json", json.dumps(items, indent=1))
    probs = problems_of(f, image_root=tmp_path)
    assert "absolute" in at(probs, "d.json", 6) and "'..'" in at(probs, "d.json", 10)


def test_ilsvrc_csv_escaping_image_id(csv_root: Path, problems_of) -> None:
    f = csv_root / "LOC_val_solution.csv"
    f.write_text(f.read_text().replace("ILSVRC2012_val_00000003,", "../../../x,"))
    assert "'..'" in at(problems_of(csv_root), "LOC_val_solution.csv", 4)


def test_symlinked_images_inside_the_dataset_are_read(tmp_path: Path, files) -> None:
    """Links are followed for reading (documented): the id stays the link's own path."""
    store = files.touch(tmp_path / "store" / "real.jpg")
    root = tmp_path / "ds"
    (root / "cat").mkdir(parents=True)
    (root / "cat" / "linked.jpg").symlink_to(store)
    ds = open_dataset(root, format="folder")
    assert [s.image_id for s in ds] == ["cat/linked.jpg"] and ds[0].path.is_file()


# --------------------------------------------------------------------------------------------------
# output paths
# --------------------------------------------------------------------------------------------------


def test_safe_relpath_keeps_ordinary_ids() -> None:
    assert safe_relpath("val/ILSVRC2012_val_00000001.JPEG", ".npy") == \
        "val/ILSVRC2012_val_00000001.JPEG.npy"
    assert safe_relpath("a b/ü.png") == "a b/ü.png"


@pytest.mark.parametrize("image_id", ["../../etc/passwd", "/abs/x.jpg", "a//b", "./a", "a/.",
                                      "x" * 400, "é" * 300 + ".jpg", "a:b|c?.jpg", "a\\b.jpg",
                                      "d/" * 600 + "x", "", "x~0123456789"])
def test_safe_relpath_is_safe(image_id: str) -> None:
    out = safe_relpath(image_id, ".npy")
    parts = out.split("/")
    assert not out.startswith("/") and out.endswith(".npy")
    assert all(p not in ("", ".", "..") for p in parts)
    assert all(len(p.encode()) <= MAX_NAME_BYTES for p in parts)
    assert len(out.encode()) <= 1024
    assert not any(c in out for c in '\\:*?"<>|\x00')
    assert out != safe_relpath(image_id + "x", ".npy")


def test_safe_relpath_distinguishes_lookalikes() -> None:
    ids = ["a:b.jpg", "a_b.jpg", "a/b.jpg", "a//b.jpg", "./a/b.jpg", "x" * 300, "x" * 301,
           "y~0123456789", safe_relpath("y:z")]
    outs = [safe_relpath(i, ".npy") for i in ids]
    assert len(set(outs)) == len(outs)
    with pytest.raises(ValueError):
        safe_relpath("a", "/x")


# --------------------------------------------------------------------------------------------------
# unreadable folders, keyword checks
# --------------------------------------------------------------------------------------------------


def deny(monkeypatch, folder: Path) -> None:
    """Make ``folder`` unlistable (tests run as root, so chmod would not do it)."""
    real = os.scandir
    target = str(folder)

    def scandir(path="."):
        if os.fspath(path) == target:
            raise PermissionError(13, "Permission denied", target)
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


def test_folder_dataset_unreadable_subfolder(tmp_path: Path, files, monkeypatch,
                                             problems_of) -> None:
    files.touch(tmp_path / "cat" / "1.jpg")
    files.touch(tmp_path / "cat" / "locked" / "2.jpg")
    files.touch(tmp_path / "dog" / "3.jpg")
    assert len(open_dataset(tmp_path)) == 3
    deny(monkeypatch, tmp_path / "cat" / "locked")
    probs = problems_of(tmp_path, format="folder")
    assert probs == [(str(tmp_path / "cat" / "locked"), 0,
                      "cannot read folder: Permission denied; fix its permissions or move it "
                      "out of the dataset")]


def test_ilsvrc_unreadable_image_folder(xml_root: Path, monkeypatch) -> None:
    real = Path.iterdir

    def iterdir(self):
        if self == xml_root / "val":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    with pytest.raises(DatasetError) as err:
        open_dataset(xml_root, format="ilsvrc-xml", images=xml_root / "val")
    assert any("Permission denied" in why for _, _, why in err.value.problems)


@pytest.mark.parametrize("split", ["../x", "a/b", "..", "", "a\\b", 3])
def test_split_must_be_a_name(wsol_root: Path, split) -> None:
    with pytest.raises(ConfigError, match="split"):
        open_dataset(wsol_root, split=split)


def test_keyword_types(wsol_root: Path, tmp_path: Path) -> None:
    for kw, words in (({"check_images": "no"}, "check_images"), ({"proxy": 1}, "proxy"),
                      ({"image_root": 5}, "image_root"), ({"name": ""}, "name"),
                      ({"classes": 5}, "classes"), ({"synsets": 7}, "synsets")):
        with pytest.raises(ConfigError, match=words):
            open_dataset(wsol_root, **kw)
    with pytest.raises(DatasetError, match="image_root not found"):
        open_dataset(wsol_root, image_root=tmp_path / "nowhere")
    # None is "not given", for every keyword and format
    assert len(open_dataset(wsol_root, image_root=None, synsets=None, num_classes=None,
                            name=None)) == 3
