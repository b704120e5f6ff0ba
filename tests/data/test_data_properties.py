"""Property-based tests of the metadata readers: random valid metadata reads back exactly what
was written; random corruptions always end in one DatasetError naming the file and line, never
another exception."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from camloc.data.datasets import open_dataset
from camloc.data.paths import MAX_NAME_BYTES, safe_relpath
from camloc.errors import DatasetError

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------------------------------

_NAME = st.text(alphabet="abcdefghijkXYZ0123456789_-", min_size=1, max_size=10)


@st.composite
def image_records(draw, min_boxes: int = 0, max_images: int = 6) -> list[dict]:
    """Images with unique relative ids, labels, sizes and boxes inside the image."""
    stems = draw(st.lists(_NAME, min_size=1, max_size=max_images, unique=True))
    out = []
    for stem in stems:
        folder = draw(st.sampled_from(["", "a/", "b/c/"]))
        w, h = draw(st.integers(1, 4000)), draw(st.integers(1, 4000))
        boxes = []
        for _ in range(draw(st.integers(min_boxes, 3))):
            x0 = draw(st.floats(0, w, allow_nan=False))
            y0 = draw(st.floats(0, h, allow_nan=False))
            x1 = draw(st.floats(x0, w, allow_nan=False))
            y1 = draw(st.floats(y0, h, allow_nan=False))
            boxes.append((x0, y0, x1, y1))
        out.append({"id": f"{folder}{stem}.jpg", "label": draw(st.integers(0, 30)),
                    "size": (w, h), "boxes": boxes})
    return out


def touch_all(root: Path, records: list[dict], base: str = "") -> None:
    for r in records:
        p = root / base / r["id"]
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"\xff\xd8")


def check_same(ds, records: list[dict], boxes_of=None) -> None:
    assert [s.image_id for s in ds] == [r["id"] for r in records]
    for s, r in zip(ds, records):
        assert s.label == r["label"]
        want = boxes_of(r) if boxes_of else r["boxes"]
        np.testing.assert_array_equal(s.boxes, np.asarray(want, np.float64).reshape(-1, 4))


def write_wsol(root: Path, records: list[dict]) -> Path:
    m = root / "metadata"
    m.mkdir(parents=True)
    (m / "image_ids.txt").write_text("".join(r["id"] + "\n" for r in records))
    (m / "class_labels.txt").write_text("".join(f"{r['id']},{r['label']}\n" for r in records))
    (m / "image_sizes.txt").write_text("".join(f"{r['id']},{r['size'][0]},{r['size'][1]}\n"
                                               for r in records))
    (m / "localization.txt").write_text("".join(
        f"{r['id']},{','.join(repr(v) for v in b)}\n" for r in records for b in r["boxes"]))
    touch_all(root, records)
    return root


# --------------------------------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------------------------------


@FAST
@given(image_records(min_boxes=1))
def test_wsol_round_trip(records) -> None:
    with tempfile.TemporaryDirectory() as d:
        ds = open_dataset(write_wsol(Path(d) / "ds", records))
        check_same(ds, records)
        assert [s.size for s in ds] == [r["size"] for r in records]
        assert ds.num_classes == max(r["label"] for r in records) + 1


@FAST
@given(image_records())
def test_user_csv_round_trip(records) -> None:
    lines = ["path,label,x0,y0,x1,y1,width,height"]
    for r in records:
        w, h = r["size"]
        for b in r["boxes"] or [None]:
            coords = ",".join(repr(v) for v in b) if b else ",,,"
            lines.append(f"{r['id']},{r['label']},{coords},{w},{h}")
    with tempfile.TemporaryDirectory() as d:
        touch_all(Path(d), records)
        (Path(d) / "annotations.csv").write_text("\n".join(lines) + "\n")
        ds = open_dataset(d)
        check_same(ds, records)
        assert [s.size for s in ds] == [r["size"] for r in records]


@FAST
@given(image_records(), st.booleans())
def test_user_json_round_trip(records, wrapped) -> None:
    items = [{"path": r["id"], "label": r["label"], "size": list(r["size"]),
              "boxes": [list(b) for b in r["boxes"]]} for r in records]
    data = {"classes": [f"c{i}" for i in range(31)], "images": items} if wrapped else items
    with tempfile.TemporaryDirectory() as d:
        touch_all(Path(d), records)
        (Path(d) / "annotations.json").write_text(json.dumps(data, indent=1))
        ds = open_dataset(d)
        check_same(ds, records)
        assert ds.num_classes == (31 if wrapped else max(r["label"] for r in records) + 1)


@FAST
@given(image_records(min_boxes=1))
def test_cub_round_trip(records) -> None:
    # CUB: one box per image, x y w h, 1-based classes
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "CUB_200_2011"
        touch_all(root, records, "images")
        (root / "images.txt").write_text("".join(f"{k} {r['id']}\n" for k, r in enumerate(records, 1)))
        (root / "image_class_labels.txt").write_text(
            "".join(f"{k} {r['label'] + 1}\n" for k, r in enumerate(records, 1)))
        (root / "classes.txt").write_text("".join(f"{i} class{i}\n" for i in range(1, 32)))
        (root / "bounding_boxes.txt").write_text("".join(
            f"{k} {r['boxes'][0][0]!r} {r['boxes'][0][1]!r} "
            f"{r['boxes'][0][2] - r['boxes'][0][0]!r} {r['boxes'][0][3] - r['boxes'][0][1]!r}\n"
            for k, r in enumerate(records, 1)))

        def boxes_of(r):
            x0, y0, x1, y1 = r["boxes"][0]
            return [(x0, y0, x0 + (x1 - x0), y0 + (y1 - y0))]

        check_same(open_dataset(Path(d)), records, boxes_of)


@FAST
@given(image_records(min_boxes=1), st.lists(st.integers(0, 99), min_size=31, max_size=31,
                                            unique=True))
def test_ilsvrc_csv_round_trip(records, synset_numbers) -> None:
    synsets = [f"n{n:08d}" for n in synset_numbers]
    ids = [r["id"].replace("/", "_")[:-4] for r in records]

    def prediction(r: dict) -> str:
        syn = synsets[r["label"]]
        return " ".join(syn + " " + " ".join(repr(v) for v in b) for b in r["boxes"])

    rows = [f"{i},{prediction(r)}" for i, r in zip(ids, records)]
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "images").mkdir()
        for i in ids:
            (root / "images" / f"{i}.JPEG").write_bytes(b"x")
        (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows))
        (root / "LOC_synset_mapping.txt").write_text("".join(f"{s} name {s}\n" for s in synsets))
        ds = open_dataset(root)
        order = sorted(synsets)
        assert [s.image_id for s in ds] == ids
        assert [s.label for s in ds] == [order.index(synsets[r["label"]]) for r in records]
        for s, r in zip(ds, records):
            np.testing.assert_array_equal(s.boxes, np.asarray(r["boxes"], np.float64))


# --------------------------------------------------------------------------------------------------
# corruptions: one DatasetError naming the file and line
# --------------------------------------------------------------------------------------------------

_NOT_INT = st.text(min_size=1, max_size=8).filter(
    lambda t: t.strip() and "\n" not in t and "," not in t and not t.strip().lstrip("+-").isdigit())
_LINE = st.text(min_size=1, max_size=30).filter(lambda t: t.strip() and "\n" not in t)
CORRUPTIONS = ["bad_label", "bad_size", "nan_box", "few_columns", "duplicate", "missing_image",
               "escape", "absolute", "huge_id", "garbage_line", "bad_utf8", "inverted"]


def assert_reported(root: Path, file: str, line: int, **kw) -> None:
    with pytest.raises(DatasetError) as err:
        open_dataset(root, **kw)
    probs = err.value.problems
    assert probs and all(isinstance(f, str) and isinstance(n, int) and n >= 0 and why
                         for f, n, why in probs)
    f, n, why = probs[0]
    assert (f"{f}:{n}: {why}" if n > 0 else f"{f}: {why}") in str(err.value)
    assert (file, line) in [(Path(f).name, n) for f, n, _ in probs], probs


@FAST
@given(image_records(min_boxes=1), st.sampled_from(CORRUPTIONS), st.data())
def test_wsol_corruptions_are_reported(records, kind, data) -> None:
    k = data.draw(st.integers(0, len(records) - 1), label="image")
    with tempfile.TemporaryDirectory() as d:
        root = write_wsol(Path(d) / "ds", records)
        m = root / "metadata"

        def lines(name):
            return (m / name).read_text().splitlines()

        def put(name, rows):
            (m / name).write_text("\n".join(rows) + "\n")

        rid = records[k]["id"]
        box_line = next(i for i, t in enumerate(lines("localization.txt")) if t.startswith(rid + ","))
        if kind == "bad_label":
            rows = lines("class_labels.txt")
            rows[k] = f"{rid},{data.draw(_NOT_INT)}"
            put("class_labels.txt", rows)
            expected = ("class_labels.txt", k + 1)
        elif kind == "bad_size":
            rows = lines("image_sizes.txt")
            rows[k] = f"{rid},{data.draw(st.sampled_from(['0', '-3', 'x', '1.5', '']))},5"
            put("image_sizes.txt", rows)
            expected = ("image_sizes.txt", k + 1)
        elif kind in ("nan_box", "few_columns", "inverted"):
            rows = lines("localization.txt")
            x0, y0, x1, y1 = records[k]["boxes"][0]
            rows[box_line] = {
                "nan_box": f"{rid},{data.draw(st.sampled_from(['nan', 'inf', '-inf', '1e999']))},0,1,1",
                "few_columns": f"{rid},1,2,3",
                "inverted": f"{rid},{x1 + 1!r},{y0!r},{x1!r},{y1!r}",
            }[kind]
            put("localization.txt", rows)
            expected = ("localization.txt", box_line + 1)
        elif kind == "duplicate":
            put("image_ids.txt", lines("image_ids.txt") + [rid])
            expected = ("image_ids.txt", len(records) + 1)
        elif kind == "missing_image":
            (root / rid).unlink()
            expected = ("image_ids.txt", k + 1)
        elif kind in ("escape", "absolute", "huge_id"):
            bad = {"escape": "../" + rid, "absolute": "/" + rid, "huge_id": rid}[kind]
            for name in ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt"):
                put(name, [bad + t[len(rid):] if t == rid or t.startswith(rid + ",") else t
                           for t in lines(name)])
            if kind == "huge_id":
                rows = lines("class_labels.txt")
                rows[k] = f"{rid},{data.draw(st.integers(10**6, 10**40))}"
                put("class_labels.txt", rows)
            expected = ("class_labels.txt" if kind == "huge_id" else "image_ids.txt", k + 1)
        elif kind == "garbage_line":
            name = data.draw(st.sampled_from(["image_ids.txt", "class_labels.txt",
                                              "image_sizes.txt", "localization.txt"]))
            rows = lines(name)
            at = data.draw(st.integers(0, len(rows)))
            rows.insert(at, data.draw(_LINE))
            put(name, rows)
            expected = (name, at + 1)
        else:  # bad_utf8
            name = data.draw(st.sampled_from(["image_ids.txt", "class_labels.txt",
                                              "image_sizes.txt", "localization.txt"]))
            rows = lines(name)
            (m / name).write_bytes("\n".join(rows[:k]).encode() + (b"\n" if k else b"")
                                   + b"\xff\xfe bad\n" + "\n".join(rows[k:]).encode())
            expected = (name, k + 1)
        assert_reported(root, *expected)


@FAST
@given(image_records(), st.sampled_from(["few_columns", "bad_label", "escape", "bad_box",
                                         "bad_size", "missing_image", "garbage_line"]), st.data())
def test_user_csv_corruptions_are_reported(records, kind, data) -> None:
    lines = ["path,label,x0,y0,x1,y1,width,height"]
    first = {}
    for r in records:
        w, h = r["size"]
        for b in r["boxes"] or [None]:
            first.setdefault(r["id"], len(lines) + 1)
            coords = ",".join(repr(v) for v in b) if b else ",,,"
            lines.append(f"{r['id']},{r['label']},{coords},{w},{h}")
    row = data.draw(st.integers(1, len(lines) - 1), label="row")
    rid = lines[row].split(",")[0]
    expected = row + 1
    if kind == "few_columns":
        lines[row] = ",".join(lines[row].split(",")[:data.draw(st.integers(1, 7))])
    elif kind == "bad_label":
        lines[row] = ",".join([rid, "-1"] + lines[row].split(",")[2:])
    elif kind == "escape":
        lines[row] = "../" + lines[row]
    elif kind == "bad_box":
        parts = lines[row].split(",")
        parts[2:6] = ["nan", "0", "1", "1"]
        lines[row] = ",".join(parts)
    elif kind == "bad_size":
        parts = lines[row].split(",")
        parts[6] = data.draw(st.sampled_from(["0", "x", "-2", "1.5"]))
        lines[row] = ",".join(parts)
    elif kind == "garbage_line":
        lines.insert(row, data.draw(_LINE).replace(",", ";"))
    with tempfile.TemporaryDirectory() as d:
        touch_all(Path(d), records)
        if kind == "missing_image":
            (Path(d) / rid).unlink()
            expected = first[rid]
        (Path(d) / "annotations.csv").write_text("\n".join(lines) + "\n")
        assert_reported(Path(d), "annotations.csv", expected)


# --------------------------------------------------------------------------------------------------
# fuzz: anything in a metadata file ends in a Dataset or a DatasetError
# --------------------------------------------------------------------------------------------------

_TARGETS = {"wsol": ("metadata/image_ids.txt", "metadata/class_labels.txt",
                     "metadata/image_sizes.txt", "metadata/localization.txt"),
            "csv": ("annotations.csv",), "json": ("annotations.json",),
            "cub": ("images.txt", "image_class_labels.txt", "classes.txt", "bounding_boxes.txt",
                    "train_test_split.txt"),
            "ilsvrc-csv": ("LOC_val_solution.csv", "LOC_synset_mapping.txt")}

_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                     lambda kids: st.lists(kids, max_size=3)
                     | st.dictionaries(st.sampled_from(["path", "label", "boxes", "size", "masks",
                                                        "ignore", "images", "classes", "x"]),
                                       kids, max_size=4), max_leaves=12)


def minimal(root: Path, fmt: str) -> None:
    (root / "a.jpg").write_bytes(b"x")
    (root / "images").mkdir()
    (root / "images" / "a.jpg").write_bytes(b"x")
    (root / "a.JPEG").write_bytes(b"x")
    if fmt == "wsol":
        (root / "metadata").mkdir()
        for name, text in (("image_ids.txt", "a.jpg\n"), ("class_labels.txt", "a.jpg,0\n"),
                           ("image_sizes.txt", "a.jpg,5,5\n"), ("localization.txt", "a.jpg,0,0,1,1\n")):
            (root / "metadata" / name).write_text(text)
    elif fmt == "cub":
        for name, text in (("images.txt", "1 a.jpg\n"), ("image_class_labels.txt", "1 1\n"),
                           ("classes.txt", "1 x\n"), ("bounding_boxes.txt", "1 0 0 1 1\n"),
                           ("train_test_split.txt", "1 1\n")):
            (root / name).write_text(text)
    elif fmt == "ilsvrc-csv":
        (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\na,n1 0 0 1 1\n")
        (root / "LOC_synset_mapping.txt").write_text("n1 one\n")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(_TARGETS)), st.data())
def test_fuzzed_metadata_never_escapes_as_another_exception(fmt, data) -> None:
    name = data.draw(st.sampled_from(_TARGETS[fmt]))
    if fmt == "json":
        content = json.dumps(data.draw(_JSON)).encode()
    else:
        lines = data.draw(st.lists(st.text(max_size=20) | st.binary(max_size=20).map(
            lambda b: b.decode("latin-1")), max_size=5))
        content = "\n".join(lines).encode("utf-8", "surrogatepass") \
            if data.draw(st.booleans()) else data.draw(st.binary(max_size=60))
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        minimal(root, fmt)
        (root / name).write_bytes(content)
        try:
            ds = open_dataset(root, format=fmt)
        except DatasetError as err:
            assert err.problems and all(isinstance(n, int) and n >= 0 for _, n, _ in err.problems)
        else:
            assert all(os.path.commonpath([str(ds.root), str(s.path)]) == str(ds.root)
                       or fmt == "cub" for s in ds)


# --------------------------------------------------------------------------------------------------
# output paths
# --------------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.text(max_size=300))
def test_safe_relpath_properties(a, b) -> None:
    pa, pb = safe_relpath(a, ".npy"), safe_relpath(b, ".npy")
    for p in (pa, pb):
        parts = p.split("/")
        assert p.endswith(".npy") and not p.startswith("/")
        assert all(x not in ("", ".", "..") and len(x.encode("utf-8", "surrogatepass"))
                   <= MAX_NAME_BYTES for x in parts)
        assert not any(c in p for c in '\\:*?"<>|') and not any(ord(c) < 32 for c in p)
    assert (pa == pb) == (a == b)
