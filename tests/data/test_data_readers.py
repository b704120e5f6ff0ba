"""Each dataset reader on a small tree written by the test (see conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from camloc.data.datasets import Dataset, Sample, detect_format, load_gt_mask, open_dataset
from camloc.errors import ConfigError, DatasetError

# --------------------------------------------------------------------------------------------------
# wsol
# --------------------------------------------------------------------------------------------------


def test_wsol_boxes_sizes_labels(wsol_root: Path) -> None:
    assert detect_format(wsol_root) == "wsol"
    ds = open_dataset(wsol_root)
    assert ds.format == "wsol" and ds.split is None and ds.name == "wsolset"
    assert ds.root == wsol_root.resolve()
    assert [s.image_id for s in ds] == ["images/a.jpg", "images/b.jpg", "images/c.jpg"]
    a, b, c = ds.samples
    assert a.path == wsol_root.resolve() / "images" / "a.jpg" and a.path.is_absolute()
    assert (a.label, b.label, c.label) == (0, 2, 2)
    assert a.size == (100, 80) and b.size == (64, 64)
    # several boxes per image, floats exactly as written, in file order
    assert a.boxes.dtype == np.float64
    np.testing.assert_array_equal(a.boxes, [[1.5, 2.25, 50.75, 60.0], [10, 10, 20, 20]])
    np.testing.assert_array_equal(b.boxes, [[0, 0, 64, 64]])  # touching the border is inside
    assert not a.boxes.flags.writeable
    assert ds.class_names == ["class_0", "class_1", "class_2"] and ds.num_classes == 3
    assert ds.has_boxes and not ds.has_masks and ds.has_labels


def test_wsol_class_names_and_num_classes(wsol_root: Path, files) -> None:
    assert open_dataset(wsol_root, num_classes=10).num_classes == 10
    assert open_dataset(wsol_root, classes=["x", "y", "z"]).class_names == ["x", "y", "z"]
    files.write(wsol_root / "metadata" / "class_names.txt", "cat\ndog\nbird\n")
    assert open_dataset(wsol_root).class_names == ["cat", "dog", "bird"]


def test_wsol_optional_files(wsol_root: Path) -> None:
    (wsol_root / "metadata" / "image_sizes.txt").unlink()
    (wsol_root / "metadata" / "localization.txt").unlink()
    ds = open_dataset(wsol_root)
    assert all(s.size is None and s.boxes.shape == (0, 4) for s in ds)
    assert not ds.has_boxes


def test_wsol_box_outside_unknown_size_is_fine(wsol_root: Path) -> None:
    """Without image_sizes.txt a box cannot be checked against the image."""
    (wsol_root / "metadata" / "image_sizes.txt").unlink()
    loc = wsol_root / "metadata" / "localization.txt"
    loc.write_text(loc.read_text().replace("images/c.jpg,3,4,5,6", "images/c.jpg,3,4,500,600"))
    assert open_dataset(wsol_root)[2].boxes.tolist() == [[3, 4, 500, 600]]


def test_wsolevaluation_layout_with_image_root(tmp_path: Path, files) -> None:
    """metadata/<DATASET>/<split>/ with images under a separate root."""
    meta = tmp_path / "metadata" / "CUB"
    for split, names in (("train", ["001.A/x.jpg", "002.B/y.jpg"]), ("test", ["001.A/z.jpg"])):
        files.write(meta / split / "image_ids.txt", "".join(n + "\n" for n in names))
        files.write(meta / split / "class_labels.txt",
                    "".join(f"{n},{i % 2}\n" for i, n in enumerate(names)))
        files.write(meta / split / "localization.txt", "".join(f"{n},1,2,3,4\n" for n in names))
        for n in names:
            files.touch(tmp_path / "dataset" / "CUB" / n)
    ds = open_dataset(meta, split="train", image_root=tmp_path / "dataset" / "CUB")
    assert ds.split == "train" and ds.name == "CUB" and len(ds) == 2
    assert ds[1].path == (tmp_path / "dataset" / "CUB" / "002.B" / "y.jpg").resolve()
    # relative image_root resolves against the metadata path when not found from the cwd
    assert len(open_dataset(meta, split="test", image_root="../../dataset/CUB")) == 1
    # several splits and no split= -> asks for one
    with pytest.raises(DatasetError, match="split"):
        open_dataset(meta, image_root=tmp_path / "dataset" / "CUB")
    with pytest.raises(DatasetError, match="splits found: test, train"):
        open_dataset(meta, split="val", image_root=tmp_path / "dataset" / "CUB")
    # forgetting image_root: every image is missing, the error says what to do
    with pytest.raises(DatasetError, match="image_root") as err:
        open_dataset(meta, split="train")
    assert len(err.value.problems) == 3


def test_wsol_split_requested_on_unsplit_dataset(wsol_root: Path) -> None:
    with pytest.raises(DatasetError, match="has no splits"):
        open_dataset(wsol_root, split="test")


def test_wsol_proxy_ids(wsol_root: Path, files) -> None:
    files.write(wsol_root / "metadata" / "image_ids_proxy.txt", "images/b.jpg\n")
    ds = open_dataset(wsol_root, proxy=True)
    assert [s.image_id for s in ds] == ["images/b.jpg"]


def test_openimages_masks_and_gt_mask(openimages_root: Path) -> None:
    meta = openimages_root / "metadata" / "OpenImages"
    data = openimages_root / "dataset" / "OpenImages"
    ds = open_dataset(meta, split="test", image_root=data)
    assert ds.has_masks and not ds.has_boxes
    s1, s2 = ds.samples
    assert [p.name for p in s1.mask_paths] == ["img1_m1.png", "img1_m2.png"]
    assert s1.ignore_path == (data / "test" / "cls" / "img1_ignore.png").resolve()
    assert s2.ignore_path is None and len(s2.mask_paths) == 1

    gt = load_gt_mask(s1)
    assert gt.dtype == np.uint8 and gt.shape == (20, 30)
    assert set(np.unique(gt).tolist()) == {0, 1, 255}
    fg = np.zeros((20, 30), bool)
    fg[2:8, 3:10] = True
    fg[10:15, 20:28] = True
    ign = np.zeros((20, 30), bool)
    ign[0:12, 0:15] = True
    np.testing.assert_array_equal(gt == 1, fg)                 # union of the instances
    np.testing.assert_array_equal(gt == 255, ign & ~fg)        # ignore minus foreground
    np.testing.assert_array_equal(gt == 0, ~fg & ~ign)

    # resized with nearest neighbour to (width, height)
    big = load_gt_mask(s1, size=(60, 40))
    assert big.shape == (40, 60)
    np.testing.assert_array_equal(big[::2, ::2], gt)
    assert set(np.unique(load_gt_mask(s2)).tolist()) == {0, 1}

    # mask_root separate from image_root
    ds2 = open_dataset(meta, split="test", image_root=data, mask_root=data)
    assert ds2[0].mask_paths == s1.mask_paths


def test_gt_mask_needs_masks(wsol_root: Path) -> None:
    with pytest.raises(DatasetError, match="no ground-truth masks"):
        load_gt_mask(open_dataset(wsol_root)[0])


def test_wsol_masks_txt_beside_boxes(wsol_root: Path, files) -> None:
    m = np.zeros((80, 100), np.uint8)
    m[2:60, 1:51] = 255
    files.write_png(wsol_root / "masks" / "a.png", m)
    files.write_png(wsol_root / "masks" / "b.png", m)
    files.write_png(wsol_root / "masks" / "c.png", m)
    files.write(wsol_root / "metadata" / "masks.txt",
                "images/a.jpg,masks/a.png,\nimages/b.jpg,masks/b.png,\nimages/c.jpg,masks/c.png,\n")
    ds = open_dataset(wsol_root)
    assert ds.has_boxes and ds.has_masks
    assert int((load_gt_mask(ds[0]) == 1).sum()) == 58 * 50


# --------------------------------------------------------------------------------------------------
# CUB
# --------------------------------------------------------------------------------------------------


def test_cub(cub_root: Path) -> None:
    assert detect_format(cub_root) == "cub"
    ds = open_dataset(cub_root)  # the parent of CUB_200_2011/ also works
    assert ds.format == "cub" and len(ds) == 5 and ds.split is None
    assert ds.class_names == ["001.Albatross", "002.Auklet", "003.Blackbird"]
    assert [s.label for s in ds] == [0, 0, 1, 2, 2]
    assert ds[0].image_id == "001.Albatross/a1.jpg"
    assert ds[0].path == (cub_root / "CUB_200_2011" / "images" / "001.Albatross" / "a1.jpg").resolve()
    np.testing.assert_array_equal(ds[0].boxes, [[60, 27, 385, 331]])      # x, y, w, h -> x1 = x + w
    np.testing.assert_array_equal(ds[1].boxes, [[14.5, 112, 402.5, 298]])
    assert ds[0].size is None
    train = open_dataset(cub_root / "CUB_200_2011", split="train")
    test = open_dataset(cub_root, format="cub", split="test")
    assert [s.image_id for s in train] == ["001.Albatross/a1.jpg", "002.Auklet/b1.jpg",
                                           "003.Blackbird/c2.jpg"]
    assert len(test) == 2 and train.num_classes == test.num_classes == 3
    with pytest.raises(ConfigError, match="train"):
        open_dataset(cub_root, split="val")


# --------------------------------------------------------------------------------------------------
# ILSVRC
# --------------------------------------------------------------------------------------------------


def test_ilsvrc_xml(xml_root: Path, files) -> None:
    assert detect_format(xml_root) == "ilsvrc-xml"
    ds = open_dataset(xml_root)
    assert ds.format == "ilsvrc-xml" and len(ds) == 3
    assert ds.synsets == files.SYNSETS
    assert ds.class_names[0] == "tench, Tinca tinca"
    assert [s.image_id for s in ds] == [f"ILSVRC2012_val_0000000{i}.JPEG" for i in (1, 2, 3)]
    assert [s.label for s in ds] == [2, 0, 1]
    assert all(s.size == (500, 375) for s in ds)
    np.testing.assert_array_equal(ds[1].boxes, [[0, 0, 499, 374], [5.5, 6, 7, 8]])
    assert ds.root == (xml_root / "val").resolve()


def test_ilsvrc_xml_class_order_sources(xml_root: Path, files) -> None:
    (xml_root / "LOC_synset_mapping.txt").unlink()
    ds = open_dataset(xml_root, format="ilsvrc-xml")
    assert ds.synsets == files.SYNSETS and ds.class_names == files.SYNSETS  # sorted synsets seen
    more = ["n00000001"] + files.SYNSETS
    ds = open_dataset(xml_root, synsets=list(reversed(more)))  # always sorted
    assert ds.synsets == more and [s.label for s in ds] == [3, 1, 2]
    files.write(xml_root / "elsewhere" / "syn.txt", "\n".join(more) + "\n")
    assert open_dataset(xml_root, synsets="elsewhere/syn.txt").synsets == more


def test_ilsvrc_xml_kaggle_layout(tmp_path: Path, files) -> None:
    root = tmp_path / "kaggle"
    files.touch(root / "ILSVRC" / "Data" / "CLS-LOC" / "val" / "ILSVRC2012_val_00000009.JPEG")
    files.write(root / "ILSVRC" / "Annotations" / "CLS-LOC" / "val" / "ILSVRC2012_val_00000009.xml",
                files.xml("ILSVRC2012_val_00000009", [("n01443537", (1, 2, 3, 4))]))
    files.write(root / "LOC_synset_mapping.txt", files.MAPPING)
    # a LOC_*_solution.csv would make auto-detection pick ilsvrc-csv, so name the format
    ds = open_dataset(root, format="ilsvrc-xml")
    assert len(ds) == 1 and ds[0].label == 1


def test_ilsvrc_csv(csv_root: Path, files) -> None:
    assert detect_format(csv_root) == "ilsvrc-csv"
    assert detect_format(csv_root / "LOC_val_solution.csv") == "ilsvrc-csv"
    ds = open_dataset(csv_root)
    assert ds.format == "ilsvrc-csv" and len(ds) == 3
    assert [s.image_id for s in ds] == ["ILSVRC2012_val_00000002", "ILSVRC2012_val_00000001",
                                        "ILSVRC2012_val_00000003"]
    assert [s.label for s in ds] == [1, 2, 0]
    np.testing.assert_array_equal(ds[0].boxes, [[11, 12, 100, 120], [1, 2, 3, 4]])
    np.testing.assert_array_equal(ds[1].boxes, [[0, 0, 50.5, 60]])
    assert ds[0].path.name == "ILSVRC2012_val_00000002.JPEG" and ds[0].path.is_file()
    assert ds.synsets == files.SYNSETS
    same = open_dataset(csv_root / "LOC_val_solution.csv")
    assert [s.image_id for s in same] == [s.image_id for s in ds]


# --------------------------------------------------------------------------------------------------
# camloc CSV / JSON, folder
# --------------------------------------------------------------------------------------------------


def test_user_csv(tmp_path: Path, files) -> None:
    for n in ("a.jpg", "b.jpg", "sub/c.png"):
        files.touch(tmp_path / "imgs" / n)
    f = files.write(tmp_path / "mine.csv",
                    "path,label,x0,y0,x1,y1,width,height\n"
                    "imgs/a.jpg,1,10,20,30,40,100,100\n"
                    "imgs/a.jpg,1,0,0,5,5,100,100\n"
                    "imgs/b.jpg,0,,,,,,\n"
                    "imgs/sub/c.png,,1,1,2,2,,\n")
    assert detect_format(f) == "csv"
    ds = open_dataset(f)
    assert ds.format == "csv" and len(ds) == 3
    a, b, c = ds.samples
    np.testing.assert_array_equal(a.boxes, [[10, 20, 30, 40], [0, 0, 5, 5]])
    assert a.size == (100, 100) and a.label == 1
    assert b.boxes.shape == (0, 4) and b.label == 0 and b.size is None
    assert c.label is None and not ds.has_labels
    assert ds.class_names == ["class_0", "class_1"]
    # class names from classes.txt beside the file: labels may be names or ids
    files.write(tmp_path / "classes.txt", "cat\ndog\n")
    f2 = files.write(tmp_path / "named.csv", "path,label\nimgs/a.jpg,dog\nimgs/b.jpg,0\n")
    ds2 = open_dataset(f2)
    assert ds2.class_names == ["cat", "dog"] and [s.label for s in ds2] == [1, 0]


def test_user_csv_names_without_classes_file(tmp_path: Path, files) -> None:
    files.touch(tmp_path / "x.jpg")
    files.touch(tmp_path / "y.jpg")
    files.write(tmp_path / "annotations.csv", "path,label\nx.jpg,zebra\ny.jpg,ant\n")
    assert detect_format(tmp_path) == "csv"
    ds = open_dataset(tmp_path)
    assert ds.class_names == ["ant", "zebra"] and [s.label for s in ds] == [1, 0]


def test_user_json(tmp_path: Path, files) -> None:
    for n in ("a.jpg", "b.jpg"):
        files.touch(tmp_path / n)
    m = np.zeros((10, 10), np.uint8)
    m[2:5, 2:5] = 255
    files.write_png(tmp_path / "a_mask.png", m)
    items = [{"path": "a.jpg", "label": "dog", "boxes": [[1, 2, 3, 4], [0, 0, 9, 9]],
              "size": [10, 10], "masks": ["a_mask.png"]},
             {"path": "b.jpg", "label": 0}]
    f = files.write(tmp_path / "ann.json", json.dumps({"classes": ["cat", "dog"], "images": items},
                                                      indent=1))
    ds = open_dataset(f)
    assert ds.format == "json" and ds.class_names == ["cat", "dog"]
    assert [s.label for s in ds] == [1, 0] and ds[0].size == (10, 10)
    np.testing.assert_array_equal(ds[0].boxes, [[1, 2, 3, 4], [0, 0, 9, 9]])
    assert int((load_gt_mask(ds[0]) == 1).sum()) == 9
    # a bare list works too
    f2 = files.write(tmp_path / "list.json", json.dumps([{"path": "b.jpg", "label": 3}]))
    assert open_dataset(f2, num_classes=5)[0].label == 3


def test_folder(tmp_path: Path, files) -> None:
    for rel in ("train/dog/1.jpg", "train/cat/2.PNG", "train/cat/deep/3.jpeg", "train/.hidden",
                "train/cat/.DS_Store", "val/cat/4.jpg", "val/dog/5.jpg", "README.txt"):
        files.touch(tmp_path / rel)
    assert detect_format(tmp_path / "train") == "folder"
    assert detect_format(tmp_path, split="val") == "folder"
    ds = open_dataset(tmp_path, format="folder", split="train")
    assert ds.class_names == ["cat", "dog"] and ds.split == "train"
    assert [(s.image_id, s.label) for s in ds] == [("cat/2.PNG", 0), ("cat/deep/3.jpeg", 0),
                                                   ("dog/1.jpg", 1)]
    assert not ds.has_boxes
    assert len(open_dataset(tmp_path / "val")) == 2


# --------------------------------------------------------------------------------------------------
# Dataset API
# --------------------------------------------------------------------------------------------------


def _toy(n: int) -> Dataset:
    return Dataset("toy", Path("/d"), "csv", None,
                   [Sample(f"{i}.png", Path(f"/d/{i}.png"), i % 3, [], None) for i in range(n)],
                   ["a", "b", "c"])


@pytest.mark.parametrize("n", [0, 1, 7, 10, 23])
@pytest.mark.parametrize("world", [1, 2, 3, 4, 8])
def test_shard_covers_each_sample_once(n: int, world: int) -> None:
    ds = _toy(n)
    shards = [ds.shard(r, world) for r in range(world)]
    ids = [s.image_id for sh in shards for s in sh]
    assert sorted(ids) == sorted(s.image_id for s in ds) and len(ids) == n
    sizes = [len(sh) for sh in shards]
    assert max(sizes) - min(sizes) <= 1
    assert all(sh.class_names == ds.class_names and sh.name == "toy" for sh in shards)


def test_shard_arguments() -> None:
    ds = _toy(4)
    for rank, world in ((2, 2), (-1, 2), (0, 0), (0.5, 2)):
        with pytest.raises(ConfigError):
            ds.shard(rank, world)  # type: ignore[arg-type]


def test_subset_getitem_index() -> None:
    ds = _toy(6)
    sub = ds.subset([5, 0, 2])
    assert [s.image_id for s in sub] == ["5.png", "0.png", "2.png"] and len(ds) == 6
    assert [s.image_id for s in ds.subset(np.array([True, False] * 3))] == ["0.png", "2.png", "4.png"]
    assert len(ds.subset([])) == 0
    assert [s.image_id for s in ds[1:3]] == ["1.png", "2.png"] and isinstance(ds[1:3], Dataset)
    assert ds[-1].image_id == "5.png" and ds.index("4.png") == 4
    with pytest.raises(KeyError):
        ds.index("nope")
    with pytest.raises(ConfigError):
        ds.subset([6])
    with pytest.raises(ConfigError):
        ds.subset([0.5])
    assert "samples=6" in repr(ds)


def test_sample_equality_and_hash() -> None:
    a = Sample("x", Path("/x"), 1, [[1, 2, 3, 4]], (5, 6))
    b = Sample("x", "/x", 1, np.array([1.0, 2, 3, 4]), [5, 6])  # type: ignore[arg-type]
    assert a == b and hash(a) == hash(b) and a.size == (5, 6)
    assert a != Sample("x", Path("/x"), 1, [[1, 2, 3, 5]], (5, 6))


def test_unknown_format_and_keywords(wsol_root: Path) -> None:
    with pytest.raises(ConfigError, match="unknown dataset format"):
        open_dataset(wsol_root, format="coco")
    with pytest.raises(ConfigError, match="annotations"):
        open_dataset(wsol_root, annotations="x")
    with pytest.raises(DatasetError, match="not found"):
        open_dataset(wsol_root / "nope")


def test_detect_format_failure(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="cannot tell"):
        detect_format(tmp_path)
