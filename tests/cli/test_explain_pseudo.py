"""`camloc explain` as a bulk localizer: box files, dataset inputs with their labels, the
probability floor, calibrated thresholds, rank parts merged in input order and resumed.

The rank tests run the ranks of a two-process run one after the other in this process, with a
stand-in for the process group (what torchrun's ranks exchange is two small objects); the real
`torchrun` run is in test_explain_torchrun.py."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from camloc.cli import main
from camloc.explain.run import ExplainSettings, run_explain


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.fixture
def photos(tmp_path, samples_dir) -> Path:
    """Seven photos in two folders (the samples under several names) and one broken file."""
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    names = sorted(samples_dir.glob("*.jpg"))
    for i in range(7):
        dst = (d / "sub" if i % 3 == 0 else d) / f"p{i}.jpg"
        shutil.copy(names[i % len(names)], dst)
    (d / "p9.jpg").write_bytes(b"not a jpeg")
    return d


@pytest.fixture
def run(tiny_model):
    def go(*args) -> int:
        return main(["explain", "-m", str(tiny_model), "--device", "cpu", "-k", "3",
                     *[str(a) for a in args]])
    return go


def test_box_files_from_the_cli(run, photos, tmp_path):
    from pycocotools.coco import COCO

    out = tmp_path / "o"
    assert run(photos, "-o", out, "--format", "coco,yolo,voc", "--no-overlays", "--multi") == 1
    recs = lines(out / "results.jsonl")
    assert len(recs) == 7 and [e["path"] for e in lines(out / "errors.jsonl")] == [
        str(photos / "p9.jpg")]
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(out / "coco" / "instances.json"))
    assert len(coco.getImgIds()) == 7 and len(coco.getCatIds()) == 12
    n_boxes = sum(len([b for b in comps if b[2] > b[0] and b[3] > b[1]])
                  for r in recs for comps in r["component_boxes"])
    assert len(coco.getAnnIds()) == n_boxes
    assert len(list((out / "yolo" / "labels").iterdir())) == 7
    assert len(list((out / "voc").glob("*.xml"))) == 7
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["exports"] == {"coco": "coco", "yolo": "yolo", "voc": "voc"}
    assert manifest["settings"]["formats"] == ["coco", "yolo", "voc"]
    # adding a format later: nothing is explained again, every image is exported
    assert run(photos, "-o", out, "--format", "voc", "--no-overlays", "--multi") == 1
    assert json.loads((out / "manifest.json").read_text())["counts"]["skipped"] == 7


def test_dataset_with_ground_truth_classes(run, tmp_path):
    from camloc.data.datasets import open_dataset
    from camloc.data.synth import make_synth
    from camloc.evaluation.boxes import score_boxes

    root = make_synth(tmp_path / "synth", classes=4, images=16, size=40)
    ds = open_dataset(root, split="test")
    out = tmp_path / "o"
    assert run("--dataset", root, "--split", "test", "--classes", "gt", "-o", out,
               "--format", "coco", "--no-overlays") == 0
    recs = lines(out / "results.jsonl")
    assert [(r["image_id"], r["class_ids"]) for r in recs] == [(s.image_id, [s.label])
                                                                for s in ds]
    assert all(r["path"] == str(s.path.resolve()) for r, s in zip(recs, ds))
    rep = score_boxes(out / "coco" / "instances.json", ds)
    assert rep["counts"]["matched"] == len(ds) and rep["counts"]["no_box_for_label"] == 0
    assert rep["per_image"] == score_boxes(out / "results.jsonl", ds)["per_image"]


def test_dataset_option_errors(run, photos, tmp_path, capsys):
    assert run(photos, "--classes", "gt", "-o", tmp_path / "o") == 2
    assert "--dataset" in capsys.readouterr().err
    assert run(photos, "--split", "test", "-o", tmp_path / "o") == 2
    assert "--dataset" in capsys.readouterr().err
    assert run("-o", tmp_path / "o") == 2
    assert "Missing argument 'PATHS" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_list_file_input(run, photos, tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text("photos/p2.jpg\nphotos/nope.jpg\n\nphotos/sub/p0.jpg\n")
    out = tmp_path / "o"
    assert run("--list", lst, "-o", out, "--no-overlays") == 1
    assert [Path(r["path"]).name for r in lines(out / "results.jsonl")] == ["p2.jpg", "p0.jpg"]
    assert lines(out / "errors.jsonl") == [{"path": str(photos / "nope.jpg"),
                                            "error": f"{lst}:2: no such file"}]


def test_min_prob_drops_classes_everywhere(run, photos, tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert run(photos, "-o", full, "--no-overlays") == 1
    ref = lines(full / "results.jsonl")
    floor = sorted(p for r in ref for p in r["probs"])[len(ref) * 3 // 2]  # about half kept
    assert run(photos, "-o", cut, "--min-prob", floor, "--format", "yolo") == 1
    got = lines(cut / "results.jsonl")
    assert len(got) == len(ref)
    for a, b in zip(ref, got):
        keep = [j for j, p in enumerate(a["probs"]) if p >= floor]
        assert b["class_ids"] == [a["class_ids"][j] for j in keep]
        assert b["boxes"] == [a["boxes"][j] for j in keep]
        assert Image.open(cut / b["overlay"]).size[1] > 0  # drawn, even with no class left
        label = (cut / "yolo" / "labels" / (Path(b["overlay"]).stem + ".txt")).read_text()
        assert len(label.splitlines()) == sum(1 for bx in b["boxes"] if bx[2] > bx[0])
    assert any(len(r["class_ids"]) < 3 for r in got)
    # the floor decides what records hold: a resume must use the same one
    assert run(photos, "-o", cut, "--min-prob", 0.9) == 2


def report(tmp_path: Path, protocol: str, tau: float, model: str = "tiny") -> Path:
    p = tmp_path / f"report-{protocol}-{model}.json"
    p.write_text(json.dumps({
        "dataset": {"name": "labelled-half", "split": "val", "images": 100},
        "protocol": {"name": protocol,
                     "normalization": "minmax" if protocol == "wsol" else "max"},
        "model": {"name": model},
        "localization": {"maxboxacc_v1": {"value": 61.0, "threshold": tau}}}))
    return p


def test_calibrated_threshold_is_applied_and_recorded(run, photos, tmp_path, capsys):
    out = tmp_path / "o"
    rep = report(tmp_path, "paper", 0.35)
    assert run(photos / "sub", "-o", out, "--calibrate", rep, "--no-overlays") == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["threshold"] == 0.35 and m["settings"]["normalization"] == "max"
    src = m["threshold_source"]
    assert (src["kind"], src["report"], src["protocol"], src["value"]) == (
        "calibrated", str(rep), "paper", 61.0)
    recs = lines(out / "results.jsonl")
    assert all(r["threshold"] == 0.35 and r["threshold_source"] == "calibrated" for r in recs)
    # the boxes are those of a plain run at that threshold
    plain = tmp_path / "plain"
    assert run(photos / "sub", "-o", plain, "--threshold", 0.35, "--no-overlays") == 0
    assert [r["boxes"] for r in lines(plain / "results.jsonl")] == [r["boxes"] for r in recs]
    assert lines(plain / "results.jsonl")[0]["threshold_source"] == "given"
    # a wsol report's threshold was chosen on min-max maps
    wsol = tmp_path / "w"
    assert run(photos / "sub", "-o", wsol, "--calibrate", report(tmp_path, "wsol", 0.3),
               "--no-overlays") == 0
    assert json.loads((wsol / "manifest.json").read_text())["settings"]["normalization"] == \
        "minmax"
    capsys.readouterr()
    for bad, why in [(("--calibrate", report(tmp_path, "paper", 0.3, "resnet50")), "resnet50"),
                     (("--calibrate", rep, "--threshold", 0.3), "give one"),
                     (("--calibrate", rep, "--normalization", "minmax"), "normalis"),
                     (("--calibrate", tmp_path / "nope.json"), "cannot read"),
                     (("--calibrate", photos / "p1.jpg"), "not a JSON report")]:
        assert run(photos, "-o", tmp_path / "bad", *bad) == 2
        assert why in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


class FakeGroup:
    """The two calls a rank makes to the process group, for ranks run one after the other:
    rank 0's broadcasts are kept for the later ranks, every rank's gathered object is kept for
    rank 0 (run last)."""

    def __init__(self, world: int) -> None:
        self.world = world
        self.gathered: dict[int, object] = {}
        self.broadcasts: list[object] = []

    def ctx(self, rank: int):
        group = self

        class Ctx:
            world_size = group.world
            distributed = True
            is_main = rank == 0

            def __init__(self) -> None:
                self.rank = rank
                self._b = 0

            def broadcast_object(self, obj, src=0):
                if rank == 0:
                    group.broadcasts.append(obj)
                    return obj
                self._b += 1
                return ("ok", None)

            def gather_objects(self, obj):
                group.gathered[rank] = obj
                return [group.gathered.get(r) for r in range(group.world)]

        return Ctx()


def explain_ranks(model, inputs, out: Path, world: int, ranks=None, **kw) -> object:
    """Run ranks 1..world-1 then rank 0 (which merges); returns rank 0's summary."""
    from camloc.explain.run import _settings_record
    from camloc.io import atomic_write_json

    group = FakeGroup(world)
    out.mkdir(parents=True, exist_ok=True)
    # what rank 0 writes before the other ranks start (they run first here)
    atomic_write_json(out / "manifest.json",
                      {"settings": _settings_record(model, ExplainSettings(**kw), None)})
    for r in (ranks if ranks is not None else range(1, world)):
        run_explain(model, inputs, out, ExplainSettings(**kw), ctx=group.ctx(r))
    return run_explain(model, inputs, out, ExplainSettings(**kw), ctx=group.ctx(0))


def folder_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name not in ("manifest.json", ".camloc.lock")}


@pytest.mark.parametrize("world", [2, 3])
def test_rank_parts_merge_to_the_single_process_bytes(tiny_model, photos, tmp_path, world):
    import camloc

    model = camloc.load_model(str(tiny_model), device="cpu")
    kw = {"top_k": 3, "formats": ["coco", "yolo"], "batch_size": 2}
    one = tmp_path / "one"
    s1 = run_explain(model, [photos], one, ExplainSettings(**kw))
    many = tmp_path / "many"
    s2 = explain_ranks(model, [photos], many, world, **kw)
    assert (s2.total, s2.done, s2.skipped, s2.failed) == (s1.total, s1.done, s1.skipped,
                                                          s1.failed)
    assert folder_bytes(many) == folder_bytes(one)
    assert not (many / "parts").exists()
    m = json.loads((many / "manifest.json").read_text())
    assert m["world_size"] == world and m["counts"]["in_results"] == 7


def test_a_killed_runs_parts_are_resumed_by_any_number_of_ranks(tiny_model, photos, tmp_path):
    import camloc

    model = camloc.load_model(str(tiny_model), device="cpu")
    kw = {"top_k": 3, "overlays": False, "batch_size": 2}
    ref = tmp_path / "ref"
    run_explain(model, [photos], ref, ExplainSettings(**kw))
    # a 2-rank run killed before its merge: rank 1 finished, rank 0 never ran
    out = tmp_path / "out"
    group = FakeGroup(2)
    (out / "parts").mkdir(parents=True)
    from camloc.io import atomic_write_json

    atomic_write_json(out / "manifest.json", {"settings": json.loads(
        (ref / "manifest.json").read_text())["settings"]})
    run_explain(model, [photos], out, ExplainSettings(**kw), ctx=group.ctx(1))
    part = out / "parts" / "results.rank1.jsonl"
    done_by_rank1 = len(lines(part))
    assert done_by_rank1 == 4 and not (out / "results.jsonl").exists()
    # resumed by one process: rank 1's images are skipped, the rest explained, all merged
    s = run_explain(model, [photos], out, ExplainSettings(**kw))
    assert (s.skipped, s.done) == (done_by_rank1, 7 - done_by_rank1)
    assert (out / "results.jsonl").read_bytes() == (ref / "results.jsonl").read_bytes()
    assert not part.exists()
    # a resume with other settings is refused while parts are waiting
    run_explain(model, [photos], tmp_path / "x", ExplainSettings(**kw), ctx=FakeGroup(2).ctx(1))
    shutil.copy(ref / "manifest.json", tmp_path / "x" / "manifest.json")
    from camloc.errors import ConfigError

    with pytest.raises(ConfigError, match="other settings"):
        run_explain(model, [photos], tmp_path / "x", ExplainSettings(top_k=2, overlays=False))


def test_records_of_other_inputs_stay_first_and_redone_images_keep_input_order(
        tiny_model, photos, tmp_path):
    import camloc

    model = camloc.load_model(str(tiny_model), device="cpu")
    out = tmp_path / "o"
    s = ExplainSettings(top_k=2)
    run_explain(model, [photos / "sub"], out, s)  # p0, p3, p6
    run_explain(model, [photos], out, s)  # p1, p2, p4, p5 (+ p9 broken); sub already done
    (out / "overlays" / next((out / "overlays").iterdir()).name).unlink()  # one to redo
    run_explain(model, [photos / "p2.jpg", photos / "p1.jpg"], out, s)
    names = [Path(r["path"]).name for r in lines(out / "results.jsonl")]
    # earlier runs' images this run did not name keep their order; p2, p1 come last, as listed
    assert names[-2:] == ["p2.jpg", "p1.jpg"]
    assert sorted(names) == ["p0.jpg", "p1.jpg", "p2.jpg", "p3.jpg", "p4.jpg", "p5.jpg", "p6.jpg"]
    assert [e["path"] for e in lines(out / "errors.jsonl")] == [str(photos / "p9.jpg")]
