"""Class ids and class lists: huge ids, counts that are not numbers, lists of the wrong length,
and datasets whose ids do not mean the model's classes."""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path

import pytest

from camloc.data.classes import check_model_classes, map_to_model_classes
from camloc.data.datasets import Dataset, Sample, open_dataset
from camloc.errors import ConfigError, DatasetError


def where(probs) -> list[tuple[str, int]]:
    return [(Path(f).name, n) for f, n, _ in probs]


# --------------------------------------------------------------------------------------------------
# huge class ids
# --------------------------------------------------------------------------------------------------


def test_huge_class_id_is_refused_quickly(wsol_root: Path, problems_of) -> None:
    f = wsol_root / "metadata" / "class_labels.txt"
    f.write_text(f.read_text().replace("images/b.jpg,2", "images/b.jpg,99999999999"))
    tracemalloc.start()
    t0 = time.perf_counter()
    probs = problems_of(wsol_root)
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert where(probs) == [("class_labels.txt", 2)]
    assert "99999999999 is too large" in probs[0][2] and "num_classes=" in probs[0][2]
    assert elapsed < 5 and peak < 50 * 2**20
    # with a class count the id is simply unknown
    probs = problems_of(wsol_root, num_classes=1000)
    assert where(probs) == [("class_labels.txt", 2)] and "unknown class id" in probs[0][2]


def test_inferred_class_count_limit(tmp_path: Path, files, problems_of) -> None:
    files.touch(tmp_path / "a.jpg")
    files.touch(tmp_path / "b.jpg")
    # ids up to 999 need no names (ImageNet's 1000 classes), beyond that 100 per distinct label
    files.write(tmp_path / "annotations.csv", "path,label\na.jpg,999\nb.jpg,3\n")
    assert open_dataset(tmp_path).num_classes == 1000
    files.write(tmp_path / "annotations.csv", "path,label\na.jpg,1000\nb.jpg,3\n")
    assert where(problems_of(tmp_path)) == [("annotations.csv", 2)]
    assert open_dataset(tmp_path, num_classes=1001).num_classes == 1001
    files.write(tmp_path / "annotations.json", json.dumps([{"path": "a.jpg", "label": 10**30}]))
    assert "too large" in problems_of(tmp_path / "annotations.json")[0][2]


@pytest.mark.parametrize("value", ["abc", 0, -3, 1.5, True, 10**7, "1e3", None.__class__, [3]])
def test_num_classes_must_be_a_count(wsol_root: Path, value) -> None:
    with pytest.raises(ConfigError, match="num_classes"):
        open_dataset(wsol_root, num_classes=value)


def test_num_classes_from_text(wsol_root: Path) -> None:
    assert open_dataset(wsol_root, num_classes="12").num_classes == 12


# --------------------------------------------------------------------------------------------------
# class lists of the wrong length are refused, never padded or cut
# --------------------------------------------------------------------------------------------------


def test_wsol_class_names_wrong_length(wsol_root: Path, files, problems_of) -> None:
    names = files.write(wsol_root / "metadata" / "class_names.txt", "cat\ndog\nbird\n")
    assert open_dataset(wsol_root, num_classes=3).class_names == ["cat", "dog", "bird"]
    probs = problems_of(wsol_root, num_classes=4)
    assert probs[0][:2] == (str(names), 0) and "num_classes=4" in probs[0][2]
    probs = problems_of(wsol_root, classes=["a", "b", "c", "d"])
    assert "4 class names, but class_names.txt has 3" in probs[0][2]
    with pytest.raises(ConfigError, match="num_classes=4"):
        names.unlink()
        open_dataset(wsol_root, classes=["a", "b", "c"], num_classes=4)


def test_wsol_synsets(wsol_root: Path, files, problems_of) -> None:
    mapping = files.write(wsol_root / "LOC_synset_mapping.txt", files.MAPPING)
    ds = open_dataset(wsol_root, synsets=mapping)
    assert ds.synsets == files.SYNSETS and ds.class_names[0] == "tench, Tinca tinca"
    assert ds.class_source == "synsets"
    files.write(wsol_root / "metadata" / "class_names.txt", "cat\ndog\n")
    assert "but synsets= has 3" in problems_of(wsol_root, synsets=mapping)[0][2]


def test_user_formats_class_lists_must_agree(tmp_path: Path, files, problems_of) -> None:
    files.touch(tmp_path / "a.jpg")
    files.write(tmp_path / "classes.txt", "cat\ndog\n")
    f = files.write(tmp_path / "d.csv", "path,label\na.jpg,dog\n")
    assert open_dataset(f).class_names == ["cat", "dog"]
    assert "classes.txt has 2" in problems_of(f, classes=["cat", "dog", "cow"])[0][2]
    j = files.write(tmp_path / "d.json", json.dumps({"classes": ["x"], "images": [{"path": "a.jpg"}]}))
    assert "classes.txt has 2" in problems_of(j)[0][2]
    j.write_text(json.dumps({"classes": ["x", "x"], "images": [{"path": "a.jpg"}]}))
    assert "duplicate" in problems_of(j)[0][2]


def test_cub_and_ilsvrc_class_lists(cub_root: Path, xml_root: Path, problems_of) -> None:
    assert "classes.txt has 3" in problems_of(cub_root, classes=["a", "b"])[0][2]
    assert where(problems_of(cub_root, num_classes=4)) == [("classes.txt", 0)]
    assert open_dataset(cub_root, num_classes=3).num_classes == 3
    assert "the synset list" in problems_of(xml_root, classes=["a", "b"])[0][2]


# --------------------------------------------------------------------------------------------------
# dataset classes vs model classes
# --------------------------------------------------------------------------------------------------

ALL_SYNSETS = sorted({f"n{i:08d}" for i in range(997)} | {"n01440764", "n01443537", "n01484850"})


def test_ilsvrc_without_mapping_is_refused_for_a_1000_class_model(xml_root: Path, files,
                                                                  problems_of) -> None:
    """The issue's silent wrong result: ids numbered by the 3 synsets present."""
    (xml_root / "LOC_synset_mapping.txt").unlink()
    ds = open_dataset(xml_root)
    assert ds.class_source == "synsets-seen" and ds.num_classes == 3
    with pytest.raises(DatasetError, match="synsets=") as err:
        check_model_classes(ds, 1000)
    assert "3 synsets found in the annotations" in str(err.value)
    # the fix the message names
    ds = open_dataset(xml_root, synsets=ALL_SYNSETS)
    assert ds.class_source == "synsets" and ds[0].label == ALL_SYNSETS.index("n01484850")
    check_model_classes(ds, 1000, synsets=ALL_SYNSETS)
    # asking for 1000 classes without the mapping fails at reading already
    probs = problems_of(xml_root, num_classes=1000)
    assert "no LOC_synset_mapping.txt" in probs[0][2]
    # all the classes present and confirmed by num_classes: the ids are the standard ones
    assert open_dataset(xml_root, num_classes=3).class_source == "synsets"


def test_counts_names_and_synsets(tmp_path: Path, files) -> None:
    for rel in ("cat/1.jpg", "dog/2.jpg"):
        files.touch(tmp_path / rel)
    ds = open_dataset(tmp_path)
    with pytest.raises(DatasetError, match="the dataset has 2 classes, the model 1000"):
        check_model_classes(ds, 1000)
    check_model_classes(ds, 2)                                     # model without names
    check_model_classes(ds, 2, ["class_0", "class_1"])             # placeholders: no names
    check_model_classes(ds, 2, ["Cat", "dog, domestic dog"])       # case, first lemma
    with pytest.raises(DatasetError, match="class 0 is 'cat' here, 'dog' in the model"):
        check_model_classes(ds, 2, ["dog", "cat"])
    syn = Dataset("s", tmp_path, "ilsvrc-xml", None, ds.samples, ["a", "b"], synsets=["n1", "n2"],
                  class_source="synsets")
    check_model_classes(syn, 2, ["x", "y"], synsets=["n1", "n2"])  # synsets decide
    with pytest.raises(DatasetError, match="class 1 is n2 here, n3 in the model"):
        check_model_classes(syn, 2, synsets=["n1", "n3"])
    with pytest.raises(ConfigError):
        check_model_classes(ds, 2, ["a"])
    with pytest.raises(ConfigError):
        check_model_classes(ds, "two")  # type: ignore[arg-type]


def test_ids_only_datasets_are_checked_for_range(wsol_root: Path) -> None:
    ds = open_dataset(wsol_root)                       # labels 0, 2, 2; no names
    assert ds.class_source == "max-id"
    check_model_classes(ds, 1000, [f"name{i}" for i in range(1000)])
    with pytest.raises(DatasetError, match="2 image\\(s\\) have class ids the model does not have"):
        check_model_classes(ds, 2)
    explicit = open_dataset(wsol_root, num_classes=10)  # the user said 10 classes
    assert explicit.class_source == "num_classes"
    with pytest.raises(DatasetError, match="10 classes, the model 1000"):
        check_model_classes(explicit, 1000)


def test_devset_against_imagenet_classes(dev_set: Path) -> None:
    names = [f"imagenet {i}" for i in range(1000)]
    check_model_classes(open_dataset(dev_set), 1000, names)
    check_model_classes(open_dataset(dev_set, num_classes=1000), 1000, names)


def test_map_to_model_classes(tmp_path: Path, files) -> None:
    # ImageNet's folder-per-synset layout with two of the classes
    for rel in ("n01484850/a.JPEG", "n01443537/b.JPEG"):
        files.touch(tmp_path / rel)
    ds = open_dataset(tmp_path)
    assert [s.label for s in ds] == [0, 1]                 # positions among 2 folders
    with pytest.raises(DatasetError):
        check_model_classes(ds, 1000, synsets=ALL_SYNSETS)
    mapped = map_to_model_classes(ds, synsets=ALL_SYNSETS)
    assert [s.label for s in mapped] == [ALL_SYNSETS.index("n01443537"),
                                         ALL_SYNSETS.index("n01484850")]
    check_model_classes(mapped, 1000, synsets=ALL_SYNSETS)
    assert len(ds) == 2 and [s.label for s in ds] == [0, 1]  # the original is unchanged
    # by name; an ambiguous name is refused
    named = Dataset("n", tmp_path, "csv", None, ds.samples, ["goldfish", "crane"])
    assert [s.label for s in map_to_model_classes(named, ["crane", "x", "goldfish"])] == [2, 0]
    with pytest.raises(DatasetError, match="several model classes match"):
        map_to_model_classes(named, ["crane", "goldfish", "crane"])  # ImageNet has two
    with pytest.raises(DatasetError, match="no model class"):
        map_to_model_classes(named, ["x", "y"])
    with pytest.raises(ConfigError):
        map_to_model_classes(named)


def test_sample_lines_keep_equality() -> None:
    a = Sample("x", "/x", 0, [], (3, 4), size_source=("sizes.txt", 3))
    assert a == Sample("x", "/x", 0, [], (3, 4)) and a.size_source == ("sizes.txt", 3)
