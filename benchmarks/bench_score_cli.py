"""End to end: `camloc score` (maps on disk -> accumulators) vs the straightforward loop, same maps.

Baseline (named ``wsoleval-loop``, from ``bench_score.py``): read each ``.npy`` map, then per
threshold ``cv2.threshold`` + ``cv2.findContours`` + ``boundingRect`` + IoU in Python, one process.
camloc: :func:`camloc.score.score_maps` (what ``camloc score`` runs: reading and checking each map,
rescaling its boxes, scoring) in one process with the compiled engine (``CAMLOC_NUMBA=1``: the
per-process steady state, compiled code already loaded) and with the NumPy engine
(``CAMLOC_NO_NUMBA=1``), and with one process per CPU. All read the same files, at intervals 0.01
and 0.001; the script checks that the V1/V2 counts at every threshold are identical to the loop's
before printing. The first-call cost of the compiled engine (imports, numba's cache) is measured by
``bench_score.py``.

    python benchmarks/bench_score_cli.py [--n 120] [--rounds 2]
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
    ap.add_argument("--n", type=int, default=120, help="maps per family (default 120)")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    bs = _load_bench_score()
    cpus = os.cpu_count() or 1
    env0 = {k: os.environ.get(k) for k in ("CAMLOC_NUMBA", "CAMLOC_NO_NUMBA")}

    def engine(name: str) -> None:
        for k in env0:
            os.environ.pop(k, None)
        os.environ["CAMLOC_NUMBA" if name == "compiled" else "CAMLOC_NO_NUMBA"] = "1"

    rows = []
    for kind in ("blob", "multi"):
        rng = np.random.default_rng(0 if kind == "blob" else 1)
        maps = bs.make_maps(rng, args.n, 224, kind)
        gts = bs.make_gt(rng, args.n, 224)
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            write_dataset(root, maps, gts)
            ds = open_dataset(root, check_images=False)
            ids = [s.image_id for s in ds.samples]
            flags = np.zeros(args.n, bool)
            engine("compiled")
            score_maps(root / "maps", ds, 0.01, workers=1)  # compile or load before timing
            for interval in (0.01, 0.001):
                def loop():
                    loaded = [np.load(root / "maps" / f"{i}.npy") for i in ids]
                    return bs.baseline(loaded, gts, flags, flags, interval)

                def camloc(workers, eng):
                    def run():
                        engine(eng)
                        return score_maps(root / "maps", ds, interval, workers=workers)
                    return run

                cases = {"loop": loop, "compiled": camloc(1, "compiled"),
                         "numpy": camloc(1, "numpy"), "parallel": camloc(cpus, "compiled")}
                best = {k: float("inf") for k in cases}
                for r in range(args.rounds):
                    for name, fn in cases.items():
                        if name == "numpy" and r > 0:
                            continue
                        t0 = time.perf_counter()
                        out = fn()
                        best[name] = min(best[name], time.perf_counter() - t0)
                        if name == "loop":
                            v1, v2 = out[0], out[1]
                        elif not (np.array_equal(out.localization.v1_correct, v1)
                                  and np.array_equal(out.localization.v2_correct, v2)):
                            raise SystemExit(f"MISMATCH: {name} at {interval} ({kind})")
                rows.append((interval, kind, best))
    for k, v in env0.items():
        os.environ.pop(k, None)
        if v is not None:
            os.environ[k] = v
    print(f"{args.n} maps 224x224 per family, read from .npy files; {cpus} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}, best of {args.rounds}; identical counts at every threshold: "
          f"yes\n")
    print(f"| interval | maps | wsoleval-loop s | camloc score, 1 process, compiled s (speed-up) | "
          f"NumPy engine s (speed-up) | {cpus} processes s (speed-up) |")
    print("|---|---|---|---|---|---|")
    for interval in (0.01, 0.001):
        sel = [r for r in rows if r[0] == interval]
        both = {m: sum(r[2][m] for r in sel) for m in ("loop", "compiled", "numpy", "parallel")}
        for kind, best in [(r[1], r[2]) for r in sel] + [("both", both)]:
            lw = best["loop"]
            print(f"| {interval} | {kind} | {lw:.2f} | " + " | ".join(
                f"{best[m]:.2f} ({lw / best[m]:.1f}x)" for m in ("compiled", "numpy", "parallel"))
                  + " |")


if __name__ == "__main__":
    main()
