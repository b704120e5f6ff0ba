"""Malformed metadata: every problem is reported with its file and line, all at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from camloc.data.datasets import open_dataset
from camloc.errors import DatasetError


def where(probs: list[tuple[str, int, str]]) -> list[tuple[str, int]]:
    return [(Path(f).name, n) for f, n, _ in probs]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


# --------------------------------------------------------------------------------------------------
# wsol: one case per kind of problem
# --------------------------------------------------------------------------------------------------

WSOL_CASES = [
    # (file, old, new, expected (file, line), words in the reason)
    ("class_labels.txt", "images/b.jpg,2", "images/b.jpg 2", ("class_labels.txt", 2), "malformed"),
    ("class_labels.txt", "images/b.jpg,2", "images/b.jpg,two", ("class_labels.txt", 2), "not an integer"),
    ("class_labels.txt", "images/b.jpg,2", "images/b.jpg,-1", ("class_labels.txt", 2), "unknown class id"),
    ("class_labels.txt", "images/c.jpg,2\n", "images/c.jpg,2\nimages/c.jpg,1\n",
     ("class_labels.txt", 4), "duplicate"),
    ("class_labels.txt", "images/c.jpg,2\n", "", ("image_ids.txt", 3), "no entry in class_labels"),
    ("class_labels.txt", "images/c.jpg,2\n", "images/c.jpg,2\nimages/zzz.jpg,1\n",
     ("class_labels.txt", 4), "not listed in image_ids"),
    ("image_ids.txt", "images/b.jpg\n", "images/b.jpg\nimages/a.jpg\n", ("image_ids.txt", 3),
     "duplicate image id"),
    ("image_sizes.txt", "images/b.jpg,64,64", "images/b.jpg,64", ("image_sizes.txt", 2), "malformed"),
    ("image_sizes.txt", "images/b.jpg,64,64", "images/b.jpg,64,0", ("image_sizes.txt", 2), "positive"),
    ("image_sizes.txt", "images/c.jpg,50,40\n", "", ("image_ids.txt", 3), "no entry in image_sizes"),
    ("localization.txt", "images/c.jpg,3,4,5,6", "images/c.jpg,3,4,5", ("localization.txt", 4),
     "malformed"),
    ("localization.txt", "images/c.jpg,3,4,5,6", "images/c.jpg,3,4,5,x", ("localization.txt", 4),
     "finite numbers"),
    ("localization.txt", "images/c.jpg,3,4,5,6", "images/c.jpg,3,4,5,nan", ("localization.txt", 4),
     "finite numbers"),
    ("localization.txt", "images/c.jpg,3,4,5,6", "images/c.jpg,5,4,3,6", ("localization.txt", 4),
     "inverted"),
    ("localization.txt", "images/c.jpg,3,4,5,6", "images/c.jpg,3,4,5,41", ("localization.txt", 4),
     "outside the 50x40 image"),
    ("localization.txt", "images/c.jpg,3,4,5,6", "images/c.jpg,-1,4,5,6", ("localization.txt", 4),
     "outside"),
    ("localization.txt", "images/c.jpg,3,4,5,6", "images/q.jpg,3,4,5,6", ("localization.txt", 4),
     "not listed"),
]


@pytest.mark.parametrize("fname,old,new,expected,words", WSOL_CASES,
                         ids=[f"{c[0]}-{c[4]}-{i}" for i, c in enumerate(WSOL_CASES)])
def test_wsol_malformed(wsol_root: Path, fname, old, new, expected, words, problems_of) -> None:
    edit(wsol_root / "metadata" / fname, old, new)
    probs = problems_of(wsol_root)
    assert expected in where(probs), probs
    assert any(words in why for f, n, why in probs if (Path(f).name, n) == expected), probs


def test_wsol_unknown_class_with_num_classes(wsol_root: Path, problems_of) -> None:
    probs = problems_of(wsol_root, num_classes=2)
    assert where(probs) == [("class_labels.txt", 2), ("class_labels.txt", 3)]
    assert "unknown class id 2" in probs[0][2]
    probs = problems_of(wsol_root, classes=["a", "b"])
    assert len(probs) == 2


def test_wsol_missing_files_and_images(wsol_root: Path, problems_of) -> None:
    (wsol_root / "metadata" / "class_labels.txt").unlink()
    assert where(problems_of(wsol_root)) == [("class_labels.txt", 0)]
    (wsol_root / "metadata" / "image_ids.txt").unlink()
    with pytest.raises(DatasetError, match="missing file"):
        open_dataset(wsol_root, format="wsol")


def test_wsol_missing_image(wsol_root: Path, problems_of) -> None:
    (wsol_root / "images" / "b.jpg").unlink()
    probs = problems_of(wsol_root)
    assert where(probs) == [("image_ids.txt", 2)] and "image not found" in probs[0][2]
    # check_images=False skips the existence check
    assert len(open_dataset(wsol_root, check_images=False)) == 3


def test_wsol_no_box_for_an_image(wsol_root: Path, problems_of) -> None:
    edit(wsol_root / "metadata" / "localization.txt", "images/c.jpg,3,4,5,6\n", "")
    probs = problems_of(wsol_root)
    assert where(probs) == [("image_ids.txt", 3)] and "no box" in probs[0][2]


def test_wsol_all_problems_at_once(wsol_root: Path) -> None:
    m = wsol_root / "metadata"
    edit(m / "localization.txt", "images/c.jpg,3,4,5,6", "images/c.jpg,9,4,5,6")
    edit(m / "class_labels.txt", "images/b.jpg,2", "images/b.jpg;2")
    edit(m / "image_sizes.txt", "images/a.jpg,100,80", "images/a.jpg,100")
    (wsol_root / "images" / "a.jpg").unlink()
    with pytest.raises(DatasetError) as err:
        open_dataset(wsol_root)
    got = set(where(err.value.problems))
    assert {("localization.txt", 4), ("class_labels.txt", 2), ("image_sizes.txt", 1),
            ("image_ids.txt", 1)} <= got
    assert len(err.value.problems) >= 5


def test_error_message_truncates_long_lists(wsol_root: Path) -> None:
    lines = "".join(f"images/a.jpg,{i},0,0,0\n" for i in range(1, 13))  # 12 inverted boxes
    (wsol_root / "metadata" / "localization.txt").write_text(
        lines + "images/b.jpg,0,0,1,1\nimages/c.jpg,0,0,1,1\n")
    with pytest.raises(DatasetError) as err:
        open_dataset(wsol_root)
    text = str(err.value)
    assert "(12 problems)" in text and "... and 7 more" in text
    assert "localization.txt:1:" in text and "localization.txt:6:" not in text
    assert len(err.value.problems) == 12


def test_openimages_malformed(openimages_root: Path, problems_of) -> None:
    meta = openimages_root / "metadata" / "OpenImages" / "test"
    data = openimages_root / "dataset" / "OpenImages"
    edit(meta / "localization.txt", "test/cls/img2.jpg,test/cls/img2_m1.png,",
         "test/cls/img2.jpg,test/cls/img2_nope.png,")
    edit(meta / "localization.txt", "test/cls/img1.jpg,test/cls/img1_m2.png,",
         "test/cls/img1.jpg,test/cls/img1_m2.png,test/cls/other_ignore.png")
    probs = problems_of(openimages_root / "metadata" / "OpenImages", split="test", image_root=data)
    got = where(probs)
    assert ("localization.txt", 3) in got and ("localization.txt", 2) in got
    reasons = " | ".join(p[2] for p in probs)
    assert "mask not found" in reasons and "different ignore mask" in reasons


def test_openimages_line_with_two_fields(openimages_root: Path, problems_of) -> None:
    meta = openimages_root / "metadata" / "OpenImages" / "test"
    edit(meta / "localization.txt", "test/cls/img2.jpg,test/cls/img2_m1.png,",
         "test/cls/img2.jpg,test/cls/img2_m1.png")
    probs = problems_of(openimages_root / "metadata" / "OpenImages", split="test",
                        image_root=openimages_root / "dataset" / "OpenImages")
    assert ("localization.txt", 3) in where(probs)


# --------------------------------------------------------------------------------------------------
# CUB
# --------------------------------------------------------------------------------------------------

CUB_CASES = [
    ("bounding_boxes.txt", "3 0.0 0.0 10.0 10.0", "3 0.0 0.0 10.0", ("bounding_boxes.txt", 3), "malformed"),
    ("bounding_boxes.txt", "3 0.0 0.0 10.0 10.0", "3 0.0 0.0 -10.0 10.0", ("bounding_boxes.txt", 3),
     "negative"),
    ("bounding_boxes.txt", "3 0.0 0.0 10.0 10.0\n", "", ("images.txt", 3), "no box"),
    ("image_class_labels.txt", "4 3", "4 7", ("image_class_labels.txt", 4), "unknown class id 7"),
    ("image_class_labels.txt", "4 3", "4 x", ("image_class_labels.txt", 4), "not an integer"),
    ("image_class_labels.txt", "4 3\n", "", ("images.txt", 4), "no entry"),
    ("train_test_split.txt", "2 0", "2 2", ("train_test_split.txt", 2), "0 or 1"),
    ("train_test_split.txt", "2 0\n", "", ("images.txt", 2), "train_test_split"),
    ("images.txt", "5 003.Blackbird/c2.jpg", "4 003.Blackbird/c2.jpg", ("images.txt", 5), "duplicate"),
    ("images.txt", "5 003.Blackbird/c2.jpg", "5 003.Blackbird/missing.jpg", ("images.txt", 5),
     "image not found"),
    ("classes.txt", "2 002.Auklet", "5 002.Auklet", ("classes.txt", 2), "1, 2, 3"),
]


@pytest.mark.parametrize("fname,old,new,expected,words", CUB_CASES,
                         ids=[f"{c[0]}-{c[4]}" for c in CUB_CASES])
def test_cub_malformed(cub_root: Path, fname, old, new, expected, words, problems_of) -> None:
    edit(cub_root / "CUB_200_2011" / fname, old, new)
    probs = problems_of(cub_root, split="train" if "split" in fname else None)
    assert expected in where(probs), probs
    assert any(words in why for f, n, why in probs if (Path(f).name, n) == expected), probs


# --------------------------------------------------------------------------------------------------
# ILSVRC
# --------------------------------------------------------------------------------------------------


def test_xml_malformed(xml_root: Path, files, problems_of) -> None:
    bb = xml_root / "bbox"
    (bb / "ILSVRC2012_val_00000001.xml").write_text("<annotation>\n<filename>x</filename>\n<size>\n")
    edit(bb / "ILSVRC2012_val_00000002.xml", "<xmax>7</xmax>", "<xmax>2</xmax>")
    edit(bb / "ILSVRC2012_val_00000003.xml", "n01443537", "n09999999")
    files.touch(xml_root / "val" / "ILSVRC2012_val_00000004.JPEG")
    files.write(bb / "ILSVRC2012_val_00000005.xml",
                files.xml("ILSVRC2012_val_00000005", [("n01440764", (1, 1, 2, 2))]))
    files.touch(xml_root / "val" / "ILSVRC2012_val_00000005.JPEG")
    files.write(bb / "ILSVRC2012_val_00000006.xml",
                files.xml("ILSVRC2012_val_00000006",
                          [("n01440764", (1, 1, 2, 2)), ("n01443537", (1, 1, 600, 2))]))
    files.touch(xml_root / "val" / "ILSVRC2012_val_00000006.JPEG")
    probs = problems_of(xml_root)
    got = where(probs)
    reasons = {(Path(f).name, n): why for f, n, why in probs}
    assert got[0] == ("ILSVRC2012_val_00000001.xml", 4)                 # unclosed XML
    assert "malformed XML" in probs[0][2]
    # the inverted box of the second object: its <bndbox> starts on line 20
    assert "inverted" in reasons[("ILSVRC2012_val_00000002.xml", 20)]
    assert "unknown synset n09999999" in reasons[("ILSVRC2012_val_00000003.xml", 10)]
    assert "no XML annotation" in reasons[("ILSVRC2012_val_00000004.JPEG", 0)]
    assert "outside the 500x375 image" in reasons[("ILSVRC2012_val_00000006.xml", 20)]
    assert ("ILSVRC2012_val_00000005.xml", 0) not in reasons


def test_xml_objects_of_two_classes(xml_root: Path, files, problems_of) -> None:
    files.write(xml_root / "bbox" / "ILSVRC2012_val_00000003.xml",
                files.xml("ILSVRC2012_val_00000003",
                          [("n01440764", (1, 1, 2, 2)), ("n01443537", (1, 1, 2, 2))]))
    probs = problems_of(xml_root)
    assert where(probs) == [("ILSVRC2012_val_00000003.xml", 19)] and "several classes" in probs[0][2]


def test_ilsvrc_csv_malformed(csv_root: Path, problems_of) -> None:
    f = csv_root / "LOC_val_solution.csv"
    edit(f, "n01484850 0 0 50.5 60 ", "n01484850 0 0 50.5")
    edit(f, "ILSVRC2012_val_00000003,n01440764 5 5 6 6",
         "ILSVRC2012_val_00000003,n01440764 5 5 6 6\r\nILSVRC2012_val_00000002,n01443537 1 1 2 2\r\n"
         "ILSVRC2012_val_00000007,n01443537 1 1 2 2\r\nILSVRC2012_val_00000008,n01443537 9 1 2 2\r\n"
         "ILSVRC2012_val_00000009,n01443537 1 1 2 2 n01440764 1 1 2 2\r\n"
         "ILSVRC2012_val_00000010,n08888888 1 1 2 2")
    probs = problems_of(csv_root)
    reasons = {n: why for f, n, why in probs}
    assert all(Path(p[0]).name == "LOC_val_solution.csv" for p in probs)
    assert "groups" in reasons[3]
    assert "duplicate ImageId" in reasons[5]
    assert "image not found" in reasons[6]
    assert "inverted" in reasons[7]
    assert "several classes" in reasons[8]
    assert "unknown synset" in reasons[9]


def test_ilsvrc_csv_bad_header(csv_root: Path, problems_of) -> None:
    edit(csv_root / "LOC_val_solution.csv", "ImageId,PredictionString", "Id,Pred")
    assert where(problems_of(csv_root, format="ilsvrc-csv")) == [("LOC_val_solution.csv", 1)]


# --------------------------------------------------------------------------------------------------
# camloc CSV / JSON, folder
# --------------------------------------------------------------------------------------------------


def test_user_csv_malformed(tmp_path: Path, files, problems_of) -> None:
    files.touch(tmp_path / "a.jpg")
    files.touch(tmp_path / "b.jpg")
    f = files.write(tmp_path / "d.csv",
                    "path,label,x0,y0,x1,y1,width,height\n"
                    "a.jpg,1,0,0,5,5,10,10\n"
                    "a.jpg,2,0,0,5,5,10,10\n"          # label conflict
                    "b.jpg,1,0,0,5\n"                  # short row
                    "b.jpg,1,0,0,50,5,10,10\n"         # outside
                    "b.jpg,1,0,0,,5,,\n"               # partial box
                    "c.jpg,1,,,,,,\n")                 # missing image
    probs = problems_of(f)
    reasons = {n: why for _, n, why in probs}
    assert "differs" in reasons[3] and "expected 8 fields" in reasons[4]
    assert "outside the 10x10 image" in reasons[5] and "finite numbers" in reasons[6]
    assert "image not found" in reasons[7]


def test_user_csv_bad_header(tmp_path: Path, files, problems_of) -> None:
    f = files.write(tmp_path / "d.csv", "file,label\nx.jpg,1\n")
    assert where(problems_of(f)) == [("d.csv", 1)]
    f = files.write(tmp_path / "e.csv", "path,label,x0,y0\nx.jpg,1,2,3\n")
    assert "all four box columns" in problems_of(f)[0][2]


def test_user_csv_unknown_class_name(tmp_path: Path, files, problems_of) -> None:
    files.touch(tmp_path / "a.jpg")
    f = files.write(tmp_path / "d.csv", "path,label\na.jpg,cow\n")
    probs = problems_of(f, classes=["cat", "dog"])
    assert where(probs) == [("d.csv", 2)] and "unknown class" in probs[0][2]


def test_user_json_syntax_error_line(tmp_path: Path, files, problems_of) -> None:
    f = files.write(tmp_path / "d.json", '[\n  {"path": "a.jpg"},\n  {"path": "b.jpg",}\n]\n')
    assert where(problems_of(f)) == [("d.json", 3)]


def test_user_json_item_lines(tmp_path: Path, files, problems_of) -> None:
    files.touch(tmp_path / "a.jpg")
    files.touch(tmp_path / "b.jpg")
    items = [{"path": "a.jpg", "label": 0, "boxes": [[5, 0, 1, 1]]},
             {"path": "b.jpg", "label": 0, "size": [4, 4], "boxes": [[0, 0, 5, 1], [1, 2]]},
             {"path": "a.jpg"},
             {"path": "c.jpg", "colour": "red"}]
    text = json.dumps({"classes": ["x"], "images": items}, indent=2)
    f = files.write(tmp_path / "d.json", text)
    lines = text.split("\n")
    starts = [i + 1 for i, line in enumerate(lines) if line.startswith("    {")]
    probs = problems_of(f)
    got = [(n, why) for _, n, why in probs]
    assert got[0][0] == starts[0] and "inverted" in got[0][1]
    assert {n for n, _ in got[1:3]} == {starts[1]}
    assert got[3][0] == starts[2] and "duplicate path" in got[3][1]
    assert got[4][0] == starts[3] and "unknown key" in got[4][1]


def test_folder_non_image_file(tmp_path: Path, files, problems_of) -> None:
    files.touch(tmp_path / "cat" / "1.jpg")
    files.touch(tmp_path / "cat" / "notes.txt")
    probs = problems_of(tmp_path, format="folder")
    assert where(probs) == [("notes.txt", 0)]
