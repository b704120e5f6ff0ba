"""Benchmark: camloc's LocalizationAccumulator vs the straightforward wsolevaluation-style loop.

Baseline (named ``wsoleval-loop``): for every image and every threshold, ``cv2.threshold``,
``cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)``, ``cv2.boundingRect`` per contour and
``max(contours, key=cv2.contourArea)``, then one ``calculate_multiple_iou``-style NumPy IoU per image
and a Python loop over thresholds, as clovaai/wsolevaluation's ``BoxEvaluator`` does. It computes the
same numbers as the accumulator in one pass (V1 at IoU 0.5, V2 at 30/50/70, GT-known / Top-1 / Top-5
counts per threshold); the script checks that both camloc engines agree with it exactly, at every
threshold, before printing timings. With ``--two-pass`` it also times what wsolevaluation itself
runs for MaxBoxAcc and MaxBoxAccV2 (one ``BoxEvaluator`` pass per contour mode).

camloc is timed with its compiled engine (numba, ``engine="numba"``, after a warm-up call: the
per-process steady state) and with its NumPy/OpenCV engine (the fallback). The compiled engine's
first-call cost is measured separately in fresh processes: compiling into an empty numba cache
(``NUMBA_CACHE_DIR`` set to a new folder: what the first run after installing pays) and loading
from that warm cache (what every later process pays), each including ``import numba``.

Maps: 224x224 synthetic CAM-like maps, each a 7x7 map upsampled with ``cv2.INTER_CUBIC`` and min-max
normalised: ``blob`` maps are one Gaussian bump plus weak noise (a typical CAM), ``multi`` maps are
uniform 7x7 noise (several blobs, holes). GT boxes are random.

Timings: per process (one core), the best of ``--rounds`` interleaved rounds of each method, wall
time and CPU time (``time.process_time``: less sensitive to other jobs on a shared machine). Ratios
are what to compare across machines.

Memory: scoring 1,000 vs 20,000 maps (64x64, generated batch by batch) in fresh subprocesses; peak RSS
(``resource.getrusage``) must stay within 1.2x, since the accumulator keeps counts, not maps.

Run:  python benchmarks/bench_score.py            (a few minutes on 2 cores)
      python benchmarks/bench_score.py --quick    (smaller, for a smoke test)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

from camloc.metrics import LocalizationAccumulator, normalize_minmax

IOUS = (30, 50, 70)


def make_maps(rng: np.random.Generator, n: int, size: int, kind: str) -> np.ndarray:
    out = np.empty((n, size, size), np.float32)
    yy, xx = np.mgrid[0:7, 0:7]
    for i in range(n):
        if kind == "blob":
            cy, cx = rng.uniform(1, 5, 2)
            s = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / rng.uniform(1.0, 4.0))
            s = s + 0.15 * rng.random((7, 7))
        else:
            s = rng.random((7, 7))
        m = cv2.resize(s.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
        out[i] = normalize_minmax(m)
    return out


def make_gt(rng: np.random.Generator, n: int, size: int) -> list[np.ndarray]:
    gts = []
    for _ in range(n):
        nb = int(rng.integers(1, 3))
        x0 = rng.integers(0, size // 2, nb)
        y0 = rng.integers(0, size // 2, nb)
        x1 = np.minimum(size - 1, x0 + rng.integers(size // 8, size // 2 + 1, nb))
        y1 = np.minimum(size - 1, y0 + rng.integers(size // 8, size // 2 + 1, nb))
        gts.append(np.stack([x0, y0, x1, y1], 1).astype(np.int64))
    return gts


# ----------------------------------------------------------------------------- baseline
def _multiple_iou(box_a: np.ndarray, box_b: np.ndarray) -> np.ndarray:
    a = box_a[:, None, :]
    b = box_b[None, :, :]
    iw = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    ih = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    den = area_a + area_b - inter
    deg = den <= 0
    den[deg] = 1
    iou = inter / den
    iou[deg] = 0
    return iou


def baseline(maps, gts, top1, top5, interval):
    thresholds = list(np.arange(0, 1, interval))
    nt = len(thresholds)
    v1 = np.zeros(nt, np.int64)
    v2 = {d: np.zeros(nt, np.int64) for d in IOUS}
    t1 = np.zeros(nt, np.int64)
    t5 = np.zeros(nt, np.int64)
    for i, scoremap in enumerate(maps):
        scoremap = scoremap.astype(np.float64)
        height, width = scoremap.shape
        img = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
        v1_boxes, all_boxes, counts = [], [], []
        for threshold in thresholds:
            _, thr = cv2.threshold(src=img, thresh=int(threshold * np.max(img)), maxval=255,
                                   type=cv2.THRESH_BINARY)
            contours = cv2.findContours(image=thr, mode=cv2.RETR_TREE,
                                        method=cv2.CHAIN_APPROX_SIMPLE)[0]
            if len(contours) == 0:
                v1_boxes.append([0, 0, 0, 0])
                all_boxes.append([[0, 0, 0, 0]])
                counts.append(1)
                continue
            boxes = []
            for c in contours:
                x, y, w, h = cv2.boundingRect(c)
                boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
            c = max(contours, key=cv2.contourArea)
            x, y, w, h = cv2.boundingRect(c)
            v1_boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
            all_boxes.append(boxes)
            counts.append(len(boxes))
        gt = np.asarray(gts[i])
        iou1 = _multiple_iou(np.asarray(v1_boxes), gt).max(1)
        iou_all = _multiple_iou(np.concatenate([np.asarray(b) for b in all_boxes]), gt).max(1)
        sliced, idx = [], 0
        for nb in counts:
            sliced.append(max(iou_all[idx:idx + nb]))
            idx += nb
        sliced = np.asarray(sliced)
        ok = iou1 >= 0.5
        v1[np.where(ok)[0]] += 1
        for d in IOUS:
            v2[d][np.where(sliced >= d / 100)[0]] += 1
        if top1[i]:
            t1[np.where(ok)[0]] += 1
        if top5[i]:
            t5[np.where(ok)[0]] += 1
    return v1, np.stack([v2[d] for d in IOUS]), t1, t5


def wsoleval_two_pass(maps, gts, interval):
    """wsolevaluation as shipped: one BoxEvaluator pass per contour mode (V1, then V2)."""
    thresholds = list(np.arange(0, 1, interval))
    out = {}
    for multi in (False, True):
        ious = (50,) if not multi else IOUS
        counts = {d: np.zeros(len(thresholds), np.int64) for d in ious}
        for scoremap, gt in zip(maps, gts):
            scoremap = scoremap.astype(np.float64)
            height, width = scoremap.shape
            img = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
            boxes_at, nums = [], []
            for threshold in thresholds:
                _, thr = cv2.threshold(src=img, thresh=int(threshold * np.max(img)), maxval=255,
                                       type=cv2.THRESH_BINARY)
                contours = cv2.findContours(image=thr, mode=cv2.RETR_TREE,
                                            method=cv2.CHAIN_APPROX_SIMPLE)[0]
                if len(contours) == 0:
                    boxes_at.append(np.asarray([[0, 0, 0, 0]]))
                    nums.append(1)
                    continue
                if not multi:
                    contours = [max(contours, key=cv2.contourArea)]
                est = []
                for c in contours:
                    x, y, w, h = cv2.boundingRect(c)
                    est.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
                boxes_at.append(np.asarray(est))
                nums.append(len(contours))
            iou = _multiple_iou(np.concatenate(boxes_at, axis=0), np.asarray(gt))
            sliced, idx = [], 0
            for nb in nums:
                sliced.append(max(iou.max(1)[idx:idx + nb]))
                idx += nb
            for d in ious:
                counts[d][np.where(np.asarray(sliced) >= d / 100)[0]] += 1
        out[multi] = counts
    return out[False][50], np.stack([out[True][d] for d in IOUS])


def camloc_scores(maps, gts, top1, top5, interval, engine="numba", batch=64):
    acc = LocalizationAccumulator(interval=interval, iou_thresholds=IOUS, engine=engine)
    for s in range(0, len(maps), batch):
        acc.update(maps[s:s + batch], gts[s:s + batch], top1[s:s + batch], top5[s:s + batch])
    return acc


def same_counts(acc, ref) -> bool:
    return all(np.array_equal(a, b) for a, b in zip(
        (acc.v1_correct, acc.v2_correct, acc.top1_correct, acc.top5_correct), ref))


# ----------------------------------------------------------------------------- first call
_FIRST_CALL = """
import time
t0 = time.perf_counter()
import numpy as np
from camloc.metrics import LocalizationAccumulator
acc = LocalizationAccumulator(interval=0.01, engine="numba")
acc.update(np.zeros((1, 224, 224)), [np.array([[0, 0, 9, 9]])])
print(time.perf_counter() - t0)
"""


def first_call_seconds(cache_dir: str, engine: str = "numba") -> float:
    """Wall seconds of a fresh process scoring one map with ``engine`` (imports, numba's cache or
    compilation, the call), with numba's cache in ``cache_dir``."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    env.pop("CAMLOC_NO_NUMBA", None)
    res = subprocess.run([sys.executable, "-c", _FIRST_CALL.replace('"numba"', f'"{engine}"')],
                         env=env, check=True, capture_output=True, text=True)
    return float(res.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- memory
def _memory_child(n: int, size: int) -> None:
    import tracemalloc

    tracemalloc.start()
    rng = np.random.default_rng(0)
    acc = LocalizationAccumulator(interval=0.01)
    batch = 250
    for s in range(0, n, batch):
        k = min(batch, n - s)
        maps = make_maps(rng, k, size, "multi" if s % 2 else "blob")
        acc.update(maps, make_gt(rng, k, size))
    acc.compute()
    traced_peak = tracemalloc.get_traced_memory()[1]
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"n": n, "peak_rss_mib": rss_kib / 1024.0, "traced_peak_mib": traced_peak / 2**20,
                      "count": acc.count}))


def memory_check(sizes: tuple[int, ...], size: int) -> list[dict]:
    out = []
    for n in sizes:
        res = subprocess.run([sys.executable, os.path.abspath(__file__), "--memory-child", str(n),
                              "--size", str(size)], check=True, capture_output=True, text=True)
        out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


# ----------------------------------------------------------------------------- main
def _timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=60, help="maps per family (default 60)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds; the best of each is kept")
    ap.add_argument("--quick", action="store_true", help="12 maps per family, 2k/4k maps for memory")
    ap.add_argument("--two-pass", action="store_true", help="also time wsolevaluation's two passes")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory check")
    ap.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child is not None:
        _memory_child(args.memory_child, args.size)
        return
    n = 12 if args.quick else args.n
    if args.quick:
        args.rounds = 1
    rng = np.random.default_rng(2020)
    families = {kind: make_maps(rng, n, args.size, kind) for kind in ("blob", "multi")}
    print(f"maps: {n} per family, {args.size}x{args.size}; cv2 {cv2.__version__}, numpy "
          f"{np.__version__}, cv2 threads {cv2.getNumThreads()}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; best of {args.rounds} interleaved rounds, one process")
    with tempfile.TemporaryDirectory() as cache:
        bare = first_call_seconds(cache, "numpy")
        cold = first_call_seconds(cache)
        warm = first_call_seconds(cache)
    camloc_scores(families["blob"][:1], make_gt(np.random.default_rng(1), 1, args.size),
                  np.zeros(1, bool), np.zeros(1, bool), 0.01)  # compile or load here, not below
    rows = []
    for interval in (0.01, 0.001):
        for kind, maps in families.items():
            gts = make_gt(np.random.default_rng(7), n, args.size)
            top1 = np.random.default_rng(8).random(n) < 0.7
            top5 = top1 | (np.random.default_rng(9).random(n) < 0.5)
            best = {m: [float("inf"), float("inf")] for m in ("loop", "numba", "numpy")}
            for r in range(args.rounds):
                for method in ("loop", "numba", "numpy"):
                    if method == "numpy" and r > 0 and interval == 0.001:
                        continue  # the NumPy engine's cost does not depend on the interval
                    if method == "loop":
                        out, t, c = _timed(lambda: baseline(maps, gts, top1, top5, interval))
                        ref = out
                    else:
                        out, t, c = _timed(lambda: camloc_scores(maps, gts, top1, top5, interval,
                                                                 method))
                        if not same_counts(out, ref):
                            raise SystemExit(f"MISMATCH: {method} engine at interval {interval} "
                                             f"({kind})")
                    best[method] = [min(best[method][0], t), min(best[method][1], c)]
            t_two = None
            if args.two_pass:
                two, t_two, _ = _timed(lambda: wsoleval_two_pass(maps, gts, interval))
                if not (np.array_equal(two[0], ref[0]) and np.array_equal(two[1], ref[1])):
                    raise SystemExit(f"MISMATCH with the two-pass evaluator at {interval} ({kind})")
            rows.append((interval, kind, n, best, t_two))
    print("\nidentical counts: yes (both engines = the loop: V1, V2 at 30/50/70, Top-1 / Top-5 "
          "Loc, every threshold)\n")
    print("| interval | maps | n | wsoleval-loop s | camloc s (compiled) | ms/map loop / camloc "
          "| speed-up wall | speed-up CPU | camloc NumPy engine s (speed-up wall) |"
          + (" two-pass wsolevaluation s |" if args.two_pass else ""))
    print("|---|---|---|---|---|---|---|---|---|" + ("---|" if args.two_pass else ""))
    for interval in (0.01, 0.001):
        sel = [r for r in rows if r[0] == interval]
        both = {m: [sum(r[3][m][i] for r in sel) for i in (0, 1)] for m in ("loop", "numba", "numpy")}
        two = sum(r[4] for r in sel) if args.two_pass else None
        for kind, nn, best, t2 in [(r[1], r[2], r[3], r[4]) for r in sel] + [("both", 2 * n, both, two)]:
            lw, lc = best["loop"]
            fw, fc = best["numba"]
            nw = best["numpy"][0]
            line = (f"| {interval} | {kind} | {nn} | {lw:.2f} | {fw:.3f} | {1e3 * lw / nn:.1f} / "
                    f"{1e3 * fw / nn:.2f} | {lw / fw:.1f}x | {lc / fc:.1f}x | {nw:.2f} ({lw / nw:.1f}x) |")
            if args.two_pass:
                line += f" {t2:.2f} |"
            print(line)
    print(f"\nfirst call in a fresh process (import camloc + numba, one 224x224 map at 0.01): "
          f"{cold:.1f} s compiling into an empty numba cache, {warm:.2f} s with the cache warm; "
          f"the same with the NumPy engine: {bare:.2f} s")
    extra_cold, extra_warm = max(cold - bare, 0.0), max(warm - bare, 0.0)
    print(f"  compiled engine's extra first-call cost over the NumPy engine's: {extra_cold:.1f} s "
          f"cold (once per install), {extra_warm:.2f} s warm (once per process)")
    for interval in (0.01, 0.001):
        sel = [r for r in rows if r[0] == interval]
        lw = sum(r[3]["loop"][0] for r in sel)
        fw = sum(r[3]["numba"][0] for r in sel)
        gain = max(lw / (2 * n) - fw / (2 * n), 1e-9)
        print(f"  interval {interval}, these {2 * n} maps with that cost counted: "
              f"{lw / (fw + extra_cold):.1f}x the loop cold, {lw / (fw + extra_warm):.1f}x warm; "
              f"break-even after {extra_cold / gain:.0f} maps cold, {extra_warm / gain:.0f} warm")
    if not args.no_memory:
        mem_n = (2000, 4000) if args.quick else (1000, 20000)
        mem = memory_check(mem_n, 64)
        print("\npeak memory scoring 64x64 maps at interval 0.01, batches of 250, per-image records "
              "kept (no ids) (fresh process each):")
        for m in mem:
            print(f"  {m['n']:>6} maps: peak RSS {m['peak_rss_mib']:.1f} MiB, peak traced "
                  f"(tracemalloc) {m['traced_peak_mib']:.2f} MiB")
        r_rss = mem[1]["peak_rss_mib"] / mem[0]["peak_rss_mib"]
        r_tr = mem[1]["traced_peak_mib"] / mem[0]["traced_peak_mib"]
        print(f"  ratio {mem_n[1]} / {mem_n[0]}: RSS {r_rss:.3f}, traced {r_tr:.3f} (limit 1.2) -> "
              f"{'ok' if max(r_rss, r_tr) <= 1.2 else 'FAIL'}")
    print("\ntargets (compiled engine, wall and CPU, both families): >= 5x at 0.01, >= 20x at 0.001")
    for interval, target in ((0.01, 5), (0.001, 20)):
        sel = [r for r in rows if r[0] == interval]
        for label, part in [(r[1], [r]) for r in sel] + [("both", sel)]:
            wall = sum(r[3]["loop"][0] for r in part) / sum(r[3]["numba"][0] for r in part)
            cpu = sum(r[3]["loop"][1] for r in part) / sum(r[3]["numba"][1] for r in part)
            print(f"  {interval} {label:>5}: {wall:.1f}x wall, {cpu:.1f}x CPU -> "
                  f"{'ok' if min(wall, cpu) >= target else f'below {target}x'}")


if __name__ == "__main__":
    main()
