"""Dev-set MaxBoxAccV2 of every map method: ``camloc evaluate DATASET --method M`` per method.

Each method runs as the CLI runs it (a subprocess, default model efficientnet_lite0, wsol protocol,
interval 0.01). Methods listed in ``--subset-methods`` (default: the perturbation methods, which
need one forward pass per channel of the target layer: 1,280 per image for efficientnet_lite0) run
on the first ``--subset`` images of the dataset only, together with ``cam`` on the same images
for reference. Prints a Markdown table (method, images, top-1, MaxBoxAccV2 and its IoU 0.3/0.5/0.7
parts, GT-known Loc at 0.2, wall seconds) and writes the reports under ``--out``.

Usage::

    flock /tmp/bench.lock python benchmarks/bench_evaluate_methods.py /work/shared/data/imagenet-val-dev \\
        --out /tmp/methods --subset-methods scorecam:8,ablationcam:8
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ALL = ["cam", "gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "smoothgradcam++",
       "eigencam", "scorecam", "ablationcam"]


def subset(dataset: Path, dst: Path, n: int) -> Path:
    """The first ``n`` images of a wsol-format dataset, as a wsol dataset in ``dst`` (images
    linked, not copied)."""
    meta = dataset / "metadata"
    ids = [ln.strip() for ln in (meta / "image_ids.txt").open() if ln.strip()][:n]
    keep = set(ids)
    (dst / "metadata").mkdir(parents=True, exist_ok=True)
    for name in ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt"):
        lines = [ln for ln in (meta / name).open() if ln.split(",")[0].strip() in keep]
        (dst / "metadata" / name).write_text("".join(lines))
    for i in ids:
        (dst / i).parent.mkdir(parents=True, exist_ok=True)
        if not (dst / i).exists():
            os.symlink(dataset / i, dst / i)
    return dst


def run(dataset: Path, method: str, out: Path, workers: int) -> dict:
    cmd = [sys.executable, "-m", "camloc", "evaluate", str(dataset), "--method", method,
           "--device", "cpu", "--workers", str(workers), "--gallery", "0", "-o", str(out)]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        print(f"# {' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}", flush=True)
        return {}
    rep = json.loads((out / "report.json").read_text())
    loc = rep["localization"]
    return {"method": method, "images": rep["counts"]["scored"],
            "top1": rep["classification"]["top1"], "v2": loc["maxboxacc_v2"]["value"],
            "per_iou": {k: v["value"] for k, v in loc["maxboxacc_v2"]["per_iou"].items()},
            "gt_known": loc["gt_known_loc"]["at_fixed"], "wall": wall,
            "layers": rep["method"]["layers"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--out", type=Path, default=Path("/tmp/camloc-methods"))
    ap.add_argument("--methods", default=",".join(ALL))
    ap.add_argument("--subset-methods", default="scorecam:8,ablationcam:8",
                    help="METHOD:N,...: run METHOD on the first N images only (with cam on them)")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    print(f"# load average at start: {os.getloadavg()[0]:.2f} (1 min), cpus {os.cpu_count()}")
    methods = [m for m in a.methods.split(",") if m]
    small: dict[int, list[str]] = {}
    for item in a.subset_methods.split(","):
        if ":" in item and item.split(":")[0] in methods:
            small.setdefault(int(item.split(":")[1]), []).append(item.split(":")[0])
    in_subset = {m for ms in small.values() for m in ms}
    rows = []
    for m in methods:
        if m in in_subset:
            continue
        rows.append(run(a.dataset, m, a.out / m, a.workers))
        print(json.dumps(rows[-1]), flush=True)
    for n, ms in sorted(small.items()):
        sub = a.out / f"subset{n}"
        shutil.rmtree(sub, ignore_errors=True)
        subset(a.dataset, sub / "data", n)
        for m in ["cam", *ms]:
            rows.append(run(sub / "data", m, sub / m, a.workers))
            print(json.dumps(rows[-1]), flush=True)
    rows = [r for r in rows if r]
    print("\n| method | layer | images | top-1 | MaxBoxAccV2 | IoU 0.3 / 0.5 / 0.7 | GT-known Loc @0.2 | wall s |")
    print("|---|---|---:|---:|---:|---|---:|---:|")
    for r in rows:
        parts = " / ".join(f"{r['per_iou'][k]:.2f}" for k in ("30", "50", "70"))
        print(f"| {r['method']} | {','.join(r['layers'])} | {r['images']} | {r['top1']:.2f} | "
              f"{r['v2']:.2f} | {parts} | {r['gt_known']:.2f} | {r['wall']:.0f} |")


if __name__ == "__main__":
    main()
