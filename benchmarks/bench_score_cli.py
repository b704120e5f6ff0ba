"""End to end: `camloc score` (maps on disk -> report) vs the straightforward loop, same maps.

Baseline (named ``wsoleval-loop``, from ``bench_score.py``): read each ``.npy`` map, then per
threshold ``cv2.threshold`` + ``cv2.findContours`` + ``boundingRect`` + IoU in Python, one process.
camloc: :func:`camloc.score.score_maps` (what ``camloc score`` runs) with 1 process and with one
process per CPU. Both read the same files; the script checks that the V1/V2 counts at every
threshold are identical before printing.

    python benchmarks/bench_score_cli.py [--n 240] [--interval 0.001]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from camloc.data.datasets import open_dataset
from camloc.score import score_maps


def _load_bench_score():
    spec = importlib.util.spec_from_file_location("bench_score", Path(__file__).with_name("bench_score.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_score"] = mod
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def write_dataset(root: Path, maps: np.ndarray, gts: list[np.ndarray]) -> None:
    meta = root / "metadata"
    (meta).mkdir(parents=True)
    (root / "maps" / "images").mkdir(parents=True)
    ids = [f"images/{i:06d}.png" for i in range(len(maps))]
    size = maps.shape[1]
    (meta / "image_ids.txt").write_text("".join(f"{i}\n" for i in ids))
    (meta / "class_labels.txt").write_text("".join(f"{i},0\n" for i in ids))
    (meta / "image_sizes.txt").write_text("".join(f"{i},{size},{size}\n" for i in ids))
    (meta / "localization.txt").write_text("".join(
        f"{i},{b[0]},{b[1]},{b[2]},{b[3]}\n" for i, g in zip(ids, gts) for b in g))
    for i, m in zip(ids, maps):
        np.save(root / "maps" / f"{i}.npy", m)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=240)
    ap.add_argument("--interval", type=float, default=0.001)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    bs = _load_bench_score()
    rng = np.random.default_rng(0)
    half = args.n // 2
    maps = np.concatenate([bs.make_maps(rng, half, 224, "blob"),
                           bs.make_maps(rng, args.n - half, 224, "multi")])
    gts = bs.make_gt(rng, args.n, 224)
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_dataset(root, maps, gts)
        ds = open_dataset(root, check_images=False)
        ids = [s.image_id for s in ds.samples]
        flags = np.zeros(args.n, bool)

        def loop():
            loaded = [np.load(root / "maps" / f"{i}.npy") for i in ids]
            return bs.baseline(loaded, gts, flags, flags, args.interval)

        def camloc(workers):
            return lambda: score_maps(root / "maps", ds, args.interval, workers=workers)

        cases = {"wsoleval-loop (1 process)": loop, "camloc score, 1 process": camloc(1),
                 f"camloc score, {cpus} processes": camloc(cpus)}
        best = {k: float("inf") for k in cases}
        results = {}
        for _ in range(args.rounds):
            for name, fn in cases.items():
                t0 = time.perf_counter()
                results[name] = fn()
                best[name] = min(best[name], time.perf_counter() - t0)
        v1, v2, _, _ = results["wsoleval-loop (1 process)"]
        for name in list(cases)[1:]:
            acc = results[name].localization
            assert np.array_equal(acc.v1_correct, v1), name
            assert np.array_equal(acc.v2_correct, v2), name
    base = best["wsoleval-loop (1 process)"]
    print(f"{args.n} maps 224x224 (half one-blob, half multi-blob), interval {args.interval}, "
          f"{cpus} CPUs, best of {args.rounds}; identical counts at every threshold: yes\n")
    print("| method | seconds | maps/s | speed-up vs loop |")
    print("|---|---|---|---|")
    for name, t in best.items():
        print(f"| {name} | {t:.2f} | {args.n / t:.0f} | {base / t:.1f}x |")


if __name__ == "__main__":
    main()
