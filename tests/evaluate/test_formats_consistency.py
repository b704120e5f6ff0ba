"""Issue #15: the same images converted into every dataset layout camloc reads give identical
`evaluate` and `score` figures.

12 dev-set images (the first ones with a single ground-truth box, which every layout can hold:
CUB has one box per image) are written as wsol, CUB, ILSVRC XML, ILSVRC CSV (Kaggle), CSV and
JSON; evaluated with the default model (maps saved), the saved maps scored by `score`. Layouts
without image sizes (CUB, ILSVRC CSV, CSV) make `evaluate` use the decoded size and `score` the
image header. The folder layout is left out: it has no boxes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

N = 12


def _dev_rows(dev: Path) -> list[dict]:
    meta = dev / "metadata"
    labels = dict(ln.strip().split(",") for ln in (meta / "class_labels.txt").open() if ln.strip())
    sizes = {}
    for ln in (meta / "image_sizes.txt").open():
        if ln.strip():
            i, w, h = ln.strip().split(",")
            sizes[i] = (int(w), int(h))
    boxes: dict[str, list[list[str]]] = {}
    for ln in (meta / "localization.txt").open():
        if ln.strip():
            i, *b = ln.strip().split(",")
            boxes.setdefault(i, []).append(b)
    ids = [ln.strip() for ln in (meta / "image_ids.txt").open() if ln.strip()]
    rows = [{"id": i, "label": int(labels[i]), "size": sizes[i], "box": boxes[i][0]}
            for i in ids if len(boxes.get(i, [])) == 1]
    return rows[:N]


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src)


def _layouts(dev: Path, root: Path) -> dict[str, tuple[Path, dict]]:
    from camloc.models.zoo import imagenet_class_names
    from camloc.models.zoo import imagenet_synsets

    rows = _dev_rows(dev)
    names = imagenet_class_names()
    syns = imagenet_synsets()
    mapping = "".join(f"{s} {n}\n" for s, n in zip(syns, names))
    out: dict[str, tuple[Path, dict]] = {}

    d = root / "wsol"
    (d / "metadata").mkdir(parents=True)
    (d / "metadata" / "image_ids.txt").write_text("".join(f"{r['id']}\n" for r in rows))
    (d / "metadata" / "class_labels.txt").write_text("".join(f"{r['id']},{r['label']}\n" for r in rows))
    (d / "metadata" / "image_sizes.txt").write_text(
        "".join(f"{r['id']},{r['size'][0]},{r['size'][1]}\n" for r in rows))
    (d / "metadata" / "localization.txt").write_text(
        "".join(f"{r['id']},{','.join(r['box'])}\n" for r in rows))
    for r in rows:
        _link(dev / r["id"], d / r["id"])
    out["wsol"] = (d, {})

    d = root / "cub"
    c = d / "CUB_200_2011"
    c.mkdir(parents=True)
    (c / "classes.txt").write_text("".join(f"{k + 1} {n}\n" for k, n in enumerate(names)))
    (c / "images.txt").write_text("".join(f"{k + 1} {Path(r['id']).name}\n"
                                          for k, r in enumerate(rows)))
    (c / "image_class_labels.txt").write_text("".join(f"{k + 1} {r['label'] + 1}\n"
                                                      for k, r in enumerate(rows)))
    (c / "bounding_boxes.txt").write_text("".join(
        f"{k + 1} {r['box'][0]} {r['box'][1]} {float(r['box'][2]) - float(r['box'][0]):.2f} "
        f"{float(r['box'][3]) - float(r['box'][1]):.2f}\n" for k, r in enumerate(rows)))
    for r in rows:
        _link(dev / r["id"], c / "images" / Path(r["id"]).name)
    out["cub"] = (d, {"format": "cub"})

    d = root / "ilsvrc-xml"
    (d / "bbox").mkdir(parents=True)
    (d / "LOC_synset_mapping.txt").write_text(mapping)
    for r in rows:
        stem = Path(r["id"]).stem
        x0, y0, x1, y1 = r["box"]
        (d / "bbox" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}</filename><size><width>{r['size'][0]}</width>"
            f"<height>{r['size'][1]}</height><depth>3</depth></size><object>"
            f"<name>{syns[r['label']]}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
            f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object></annotation>\n")
        _link(dev / r["id"], d / "val" / Path(r["id"]).name)
    out["ilsvrc-xml"] = (d, {"format": "ilsvrc-xml"})

    d = root / "ilsvrc-csv"
    d.mkdir()
    (d / "LOC_synset_mapping.txt").write_text(mapping)
    (d / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "".join(
        f"{Path(r['id']).stem},{syns[r['label']]} {' '.join(r['box'])}\n" for r in rows))
    for r in rows:
        _link(dev / r["id"], d / "ILSVRC" / "Data" / "CLS-LOC" / "val" / Path(r["id"]).name)
    out["ilsvrc-csv"] = (d, {})

    d = root / "csv"
    d.mkdir()
    (d / "annotations.csv").write_text("path,label,x0,y0,x1,y1\n" + "".join(
        f"{Path(r['id']).name},{r['label']},{','.join(r['box'])}\n" for r in rows))
    for r in rows:
        _link(dev / r["id"], d / Path(r["id"]).name)
    out["csv"] = (d, {})

    d = root / "json"
    d.mkdir()
    (d / "annotations.json").write_text(json.dumps({"images": [
        {"path": Path(r["id"]).name, "label": r["label"], "size": list(r["size"]),
         "boxes": [[float(v) for v in r["box"]]]} for r in rows]}))
    for r in rows:
        _link(dev / r["id"], d / Path(r["id"]).name)
    out["json"] = (d, {})
    return out


@pytest.mark.devset
def test_every_layout_gives_identical_evaluate_and_score_reports(dev_set, default_model,
                                                                  tmp_path):
    from camloc.data.open import open_dataset
    from camloc.evaluation.evaluate import build_report, evaluate_state
    from camloc.evaluation.score import fill_sizes, score_maps

    results = {}
    for name, (path, kw) in _layouts(dev_set, tmp_path / "layouts").items():
        ds = open_dataset(path, **kw)
        assert ds.format == name and len(ds.samples) == N, (name, ds.format, len(ds.samples))
        maps = tmp_path / "maps" / name
        st = evaluate_state(default_model, ds, batch_size=N, save_maps=maps)
        ev = build_report(st, default_model, ds, "wsol", 0.01)
        fill_sizes(ds)
        sc = score_maps(maps, ds, workers=1)
        assert not st.failed and not sc.failed, (name, st.failed, sc.failed)
        results[name] = (ev["classification"], ev["localization"],
                         sc.localization.compute())
    ref = results.pop("wsol")
    # score of evaluate's maps == evaluate (score has no classes: no Top-1/Top-5 Loc)
    drop = ("top1_loc", "top5_loc")
    assert {k: v for k, v in ref[1].items() if k not in drop} == \
        {k: v for k, v in ref[2].items() if k not in drop}
    for name, got in results.items():
        assert got[0] == ref[0], name
        assert got[1] == ref[1], name
        assert got[2] == ref[2], name
