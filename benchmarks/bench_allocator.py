"""What :func:`camloc.runtime.tune_cpu_allocator` buys on the CPU, against glibc's defaults.

Baseline: the same Python process without the setting (``CAMLOC_ALLOCATOR=system``), i.e. what a
plain ``torch`` script gets. Each case runs in a fresh subprocess, in turn, ``--rounds`` times
(machine noise hits both alike); the median is reported.

Cases:
  forward        efficientnet_lite0, ``--passes`` forward passes of a random batch of ``--batch``
                 under ``no_grad`` (weights and input contiguous, then channels-last): ms per image,
                 user and system CPU seconds, peak resident memory;
  evaluate       ``camloc evaluate DATASET`` (the CLI, dev set by default): wall seconds and peak
                 memory of the whole command (only with a dataset present).

Usage: python benchmarks/bench_allocator.py [--batch 16] [--passes 20] [--rounds 3]
       [--dataset ../shared/data/imagenet-val-dev | --no-evaluate]
Nothing is written inside the repository (evaluate writes into a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEV = REPO.parent / "shared" / "data" / "imagenet-val-dev"

_FORWARD = r"""
import json, resource, sys, time
import torch
import camloc, camloc.runtime
tuned = camloc.runtime.tune_cpu_allocator()
batch, passes, layout = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
m = camloc.load_model("efficientnet_lite0")
m.module.eval()
x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
if layout == "channels_last":
    m.module.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
with torch.no_grad():
    m.logits(x)  # warm-up
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    for _ in range(passes):
        m.logits(x)
    dt = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"tuned": tuned, "ms_per_image": 1000 * dt / (batch * passes),
                  "user_s": r1.ru_utime - r0.ru_utime, "sys_s": r1.ru_stime - r0.ru_stime,
                  "peak_mb": r1.ru_maxrss / 1024}))
"""


def _env(system: bool) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("CAMLOC_ALLOCATOR", None)
    if system:
        env["CAMLOC_ALLOCATOR"] = "system"
    return env


def forward_case(system: bool, batch: int, passes: int, layout: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", _FORWARD, str(batch), str(passes), layout],
                         env=_env(system), capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def evaluate_case(system: bool, dataset: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "camloc", "evaluate", str(dataset), "--out",
                        str(Path(tmp) / "ev")], env=_env(system), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the largest child so far: only meaningful when it grew
    return {"wall_s": wall, "peak_mb": max(peak, before) / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--passes", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dataset", type=Path, default=DEV)
    ap.add_argument("--no-evaluate", action="store_true")
    args = ap.parse_args()

    rows: dict[str, list[dict[str, float]]] = {}
    cases = [(f"forward {layout}, {'glibc defaults' if system else 'tuned'}", system, layout)
             for layout in ("contiguous", "channels_last") for system in (True, False)]
    do_eval = not args.no_evaluate and args.dataset.is_dir()
    for r in range(args.rounds):
        for name, system, layout in cases:
            rows.setdefault(name, []).append(forward_case(system, args.batch, args.passes, layout))
        if do_eval:
            for system in (True, False):
                name = f"camloc evaluate, {'glibc defaults' if system else 'tuned'}"
                rows.setdefault(name, []).append(evaluate_case(system, args.dataset))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    def med(name: str, key: str) -> float:
        return statistics.median(row[key] for row in rows[name])

    print(f"efficientnet_lite0, batch {args.batch}, {args.passes} passes, median of {args.rounds} "
          f"rounds; load average at the end {os.getloadavg()[0]:.2f}")
    print(f"{'case':44s} {'ms/img':>8s} {'user s':>8s} {'sys s':>8s} {'peak MB':>8s}")
    for name, _, _ in cases:
        print(f"{name:44s} {med(name, 'ms_per_image'):8.2f} {med(name, 'user_s'):8.2f} "
              f"{med(name, 'sys_s'):8.2f} {med(name, 'peak_mb'):8.0f}")
    for layout in ("contiguous", "channels_last"):
        base = med(f"forward {layout}, glibc defaults", "ms_per_image")
        new = med(f"forward {layout}, tuned", "ms_per_image")
        print(f"forward {layout}: tuned is {base / new:.2f}x faster than glibc defaults")
    if do_eval:
        base, new = (med(f"camloc evaluate, {k}", "wall_s") for k in ("glibc defaults", "tuned"))
        print(f"camloc evaluate {args.dataset.name}: {base:.1f} s with glibc defaults, {new:.1f} s "
              f"tuned ({base / new:.2f}x)")


if __name__ == "__main__":
    main()
