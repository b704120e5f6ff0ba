"""`camloc explain` throughput against the plain classification loop (issues #11, #19).

Baseline, "plain forward": the straightforward classification loop a user would write: decode
each photo with PIL, resize it to the model's input (bicubic, no crop), normalise, stack a batch,
one forward pass under ``inference_mode``; no maps, no boxes, nothing written. Its weights and
activations stay in PyTorch's default (contiguous) layout, while ``camloc explain`` runs the
network channels-last on the CPU (:func:`camloc.runtime.channels_last`): part of explain's lead
is that layout, not less work. Both run in this one process with glibc's default allocator (the
``camloc`` command would also apply :func:`camloc.runtime.tune_cpu_allocator`, to both alike).

Compared, in the same run, at the same batch size, round by round (each round runs every case
once, in turn, so machine noise hits them alike), through the library entry point of the CLI
(:func:`camloc.explain.run.run_explain`, a fresh output folder each time):

  top-1 + overlays     ``camloc explain -k 1``          (overlay PNG, results.jsonl)
  top-5 + overlays     ``camloc explain -k 5``
  top-5, no overlays   ``camloc explain --no-overlays`` (results.jsonl only: the bulk localizer)

Reported: median images/s of each case and its ratio to the baseline's median (issue #19's goals:
top-1 + overlays >= 1.1, top-5 + overlays >= 0.9, top-5 --no-overlays >= 1.4); also the CPU time
of this process (all its threads) per image and its ratio to the baseline's: on a machine shared
with other jobs the wall-clock ratios favour the side with more threads (it gets a larger share
of the cores), so there compare the CPU figures too. Also, each in a fresh ``python -m camloc explain`` process (interpreter start,
imports and model load included), its wall time and peak resident memory (``ru_maxrss`` of that
process): a first explain of one dev photo, and one 8,000 x 8,000 JPEG with its overlay (goal:
peak < 1.5 GB; the photo is decoded reduced, JPEG draft mode, for the network).

``--memory``: peak resident memory (``VmHWM``) of ``run_explain`` over 1,000 and over 10,000
inputs (hard links to a few small generated photos), each in a fresh process, top-1 with
overlays, a tiny random network at a 32 x 32 input (so the run's own bookkeeping, not the
network, is what is measured), with the ``camloc`` command's allocator setting: the two peaks
should be the same ("memory flat"); ``--memory-sizes`` changes the counts.

Usage: python benchmarks/bench_explain.py [--images 128] [--batch 16] [--rounds 3]
       [--source DIR] [--threads N] [--json FILE] [--profile CASE]
       python benchmarks/bench_explain.py --memory [--memory-sizes 1000,10000]
``--source`` defaults to the dev set's photos (../shared/data/imagenet-val-dev/images), else the
bundled samples repeated. Nothing is written inside the repository (a temporary folder is used).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEV_IMAGES = (REPO / ".." / "shared" / "data" / "imagenet-val-dev" / "images").resolve()


def photo_folder(source: Path | None, n: int, tmp: Path) -> Path:
    """A folder of ``n`` photos (symbolic links to ``source``'s, repeated if it has fewer)."""
    src = source or (DEV_IMAGES if DEV_IMAGES.is_dir() else REPO / "src" / "camloc" / "assets" / "samples")
    exts = {".jpg", ".jpeg", ".png"}
    photos = sorted(p for p in src.iterdir() if p.suffix.lower() in exts)
    if not photos:
        raise SystemExit(f"no photos in {src}")
    folder = tmp / "photos"
    folder.mkdir()
    for i in range(n):
        p = photos[i % len(photos)]
        (folder / f"{i:06d}{p.suffix.lower()}").symlink_to(p)
    return folder


def plain_forward(model, paths: list[Path], batch: int) -> None:
    """The baseline loop (see the module docstring)."""
    import numpy as np
    import torch
    from PIL import Image

    pre = model.spec.preprocess
    h, w = pre.input_size
    mean = np.asarray(pre.mean, np.float32)
    std = np.asarray(pre.std, np.float32)
    for start in range(0, len(paths), batch):
        xs = []
        for p in paths[start:start + batch]:
            with Image.open(p) as im:
                rgb = im.convert("RGB").resize((w, h), Image.Resampling.BICUBIC)
            a = (np.asarray(rgb, np.float32) / 255.0 - mean) / std
            xs.append(torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))))
        with torch.inference_mode():
            model.module(torch.stack(xs).to(model.device))


# The child reports its own peak resident set (VmHWM). Not ru_maxrss: Linux carries a forked
# parent's peak into the child's ru_maxrss across exec, so it would report the benchmark's own.
_CHILD = ("import sys\n"
          "from camloc.cli import main\n"
          "rc = main(sys.argv[1:])\n"
          "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')]\n"
          "print('MAXRSS_KB', hwm[0].split()[1])\n"
          "sys.exit(rc)\n")


def fresh_explain(photo: Path, tmp: Path, model: str, *extra: str) -> tuple[float, float]:
    """``camloc explain PHOTO`` in a fresh process: (wall seconds, peak resident MB)."""
    out = tmp / "fresh-out"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, "explain", str(photo), "-o", str(out),
                           "--device", "cpu", "--model", model, *extra],
                          env=dict(os.environ), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"explain {photo} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    shutil.rmtree(out, ignore_errors=True)
    kb = next(int(x.split()[1]) for x in proc.stdout.splitlines() if x.startswith("MAXRSS_KB"))
    return wall, kb / 1024.0


def big_photo(tmp: Path, side: int = 8000) -> Path:
    """An ``side x side`` JPEG of smooth colour blobs (made by upscaling random noise)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    path = tmp / f"big{side}.jpg"
    small.resize((side, side), Image.Resampling.BILINEAR).save(path, quality=90)
    return path


def memory_one(n: int) -> None:
    """One ``run_explain`` over ``n`` inputs (see the module docstring); prints a JSON line."""
    import numpy as np
    import torch
    from PIL import Image

    import camloc
    from camloc.explain_run import ExplainSettings, run_explain
    from camloc.models.archs import build_arch
    from camloc.runtime import tune_cpu_allocator

    tune_cpu_allocator()  # as the camloc command does
    tmp = Path(tempfile.mkdtemp(prefix="camloc-bench-explain-mem-"))
    try:
        rng = np.random.default_rng(0)
        src = tmp / "src"
        src.mkdir()
        for k in range(8):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(src / f"{k}.png")
        folder = tmp / "photos"  # hard links: distinct paths (a run skips repeats of one file)
        folder.mkdir()
        for i in range(n):
            os.link(src / f"{i % 8}.png", folder / f"{i:06d}.png")
        torch.manual_seed(0)
        model = camloc.wrap(build_arch("tiny-cnn", num_classes=3, width=8),
                            preprocess={"input_size": [32, 32], "fit": "stretch"})
        t0 = time.perf_counter()
        summary = run_explain(model, [folder], tmp / "out", ExplainSettings(top_k=1, batch_size=64))
        seconds = time.perf_counter() - t0
        hwm = next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:"))
        print(json.dumps({"inputs": n, "explained": summary.done, "failed": len(summary.failed),
                          "seconds": round(seconds, 1),
                          "peak_rss_mb": round(int(hwm.split()[1]) / 1024, 1)}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def memory(args: argparse.Namespace) -> None:
    """``--memory``: :func:`memory_one` for each size, each in a fresh process."""
    print(f"load average at start {os.getloadavg()[0]:.1f} ({os.cpu_count()} cpus)")
    rows = []
    for n in (int(x) for x in args.memory_sizes.split(",")):
        proc = subprocess.run([sys.executable, __file__, "--memory-one", str(n)],
                              capture_output=True, text=True, env=dict(os.environ))
        if proc.returncode != 0:
            raise SystemExit(f"memory run of {n} failed: {proc.stderr[-2000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{row['inputs']:>6} inputs: peak RSS {row['peak_rss_mb']:.1f} MB "
              f"({row['explained']} explained in {row['seconds']} s)")
    if args.json:
        args.json.write_text(json.dumps({"memory": rows}, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--source", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--no-first", action="store_true", help="skip the fresh-process timing")
    ap.add_argument("--fresh-only", action="store_true",
                    help="only the fresh-process cases (first explain, 8000x8000 photo)")
    ap.add_argument("--profile", default=None,
                    help="profile one case (plain, top1, top5, bulk) with cProfile instead")
    ap.add_argument("--memory", action="store_true",
                    help="peak memory of runs over 1,000 and 10,000 inputs (fresh processes)")
    ap.add_argument("--memory-sizes", default="1000,10000", help=argparse.SUPPRESS)
    ap.add_argument("--memory-one", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    if args.memory_one is not None:
        return memory_one(args.memory_one)
    if args.memory:
        return memory(args)

    import torch

    import camloc
    from camloc.explain.run import ExplainSettings, run_explain

    if args.threads:
        torch.set_num_threads(args.threads)
    model = camloc.load_model(args.model, device="cpu")
    tmp = Path(tempfile.mkdtemp(prefix="camloc-bench-explain-"))
    try:
        folder = photo_folder(args.source, args.images, tmp)
        paths = sorted(folder.iterdir())
        runs = 0

        def explain_case(**kw):
            def go() -> None:
                nonlocal runs
                runs += 1
                out = tmp / f"out{runs}"
                s = ExplainSettings(batch_size=args.batch, **kw)
                summary = run_explain(model, [folder], out, s)
                if summary.done != len(paths):
                    raise SystemExit(f"explain did {summary.done} of {len(paths)}: "
                                     f"{summary.failed[:3]}")
                shutil.rmtree(out, ignore_errors=True)
            return go

        cases = {
            "plain forward (baseline)": lambda: plain_forward(model, paths, args.batch),
            "explain top-1 + overlays": explain_case(top_k=1),
            "explain top-5 + overlays": explain_case(top_k=5),
            "explain top-5 --no-overlays": explain_case(top_k=5, overlays=False),
        }
        short = dict(zip(("plain", "top1", "top5", "bulk"), cases))
        if args.profile:
            import cProfile
            import pstats

            fn = cases[short[args.profile]]
            fn()
            prof = cProfile.Profile()
            prof.enable()
            fn()
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(30)
            return
        if args.fresh_only:
            cases = {}
        # warm-up: one small pass of each (model caches, page cache, lazy imports)
        for fn in cases.values():
            fn()
        times: dict[str, list[float]] = {k: [] for k in cases}
        cpu: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.rounds):
            for name, fn in cases.items():
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
        base = len(paths) / statistics.median(times["plain forward (baseline)"]) if cases else 1.0
        rows = []
        print(f"{len(paths)} images, batch {args.batch}, {args.rounds} rounds, torch threads "
              f"{torch.get_num_threads()}, {args.model} on cpu, load average at start "
              f"{load0:.1f} ({os.cpu_count()} cpus)")
        print("images/s: images / wall seconds of one pass over all of them (photo decoding "
              "included); ratio: to the plain forward (contiguous layout; explain runs "
              "channels-last)")
        if cases:
            print(f"{'case':32s} {'images/s':>9s} {'ratio':>6s} {'cpu ms/img':>10s} "
                  f"{'cpu ratio':>9s}  (medians of rounds)")
        base_cpu = statistics.median(cpu["plain forward (baseline)"]) if cases else 1.0
        goals = {"explain top-1 + overlays": 1.1, "explain top-5 + overlays": 0.9,
                 "explain top-5 --no-overlays": 1.4}
        for name, ts in times.items():
            rate = len(paths) / statistics.median(ts)
            goal = goals.get(name)
            c = statistics.median(cpu[name])
            rows.append({"case": name, "images_per_s": round(rate, 2),
                         "ratio": round(rate / base, 3), "goal": goal,
                         "seconds": [round(t, 3) for t in ts],
                         "cpu_ms_per_image": round(1000 * c / len(paths), 2),
                         "cpu_ratio": round(c / base_cpu, 3)})
            print(f"{name:32s} {rate:9.1f} {rate / base:6.2f} {1000 * c / len(paths):10.1f} "
                  f"{c / base_cpu:9.2f}" + (f"  (goal >= {goal})" if goal else ""))
        result = {"images": len(paths), "batch": args.batch, "rounds": args.rounds,
                  "threads": torch.get_num_threads(), "cases": rows}
        if not args.no_first:
            first, first_mb = fresh_explain(paths[0], tmp, args.model)
            result["first_explain_s"] = round(first, 2)
            result["first_explain_peak_mb"] = round(first_mb)
            print(f"first explain of one image in a fresh process (model load included): "
                  f"{first:.2f} s wall, peak {first_mb:.0f} MB")
            big = big_photo(tmp)
            big_s, big_mb = fresh_explain(big, tmp, args.model)
            result["big_photo"] = {"side": 8000, "seconds": round(big_s, 2),
                                   "peak_mb": round(big_mb), "goal_mb": 1536}
            print(f"8000x8000 JPEG, top-5 + overlay, fresh process: {big_s:.2f} s wall, peak "
                  f"{big_mb:.0f} MB (goal < 1536 MB)")
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
