"""What ``camloc units`` costs over the plain forward pass, and how its memory grows with the data.

Baseline: the model's plain forward pass over the same images, decoded by the same loader with
the same batch size, in the same run. Compared:

  forward     model(x) under inference_mode, every image once (the baseline)
  units pass  the one pass of ``camloc units`` (collect_units): forward + fold + per-class sums +
              activation sketches + per-unit top-image stores
  report      build_report on the merged state (thresholds, every unit's regions, rankings,
              baselines): a fixed cost, independent of the number of images

Each measurement runs in its own child process, so each peak RSS (``ru_maxrss``) is that phase's
alone; forward and units alternate round by round so machine noise hits both alike. Two dataset
sizes (``--subset`` and all images) show which costs grow with the data: the state's bytes do not.

Usage: python benchmarks/bench_units.py [DATASET] [--model efficientnet_lite0] [--batch 32]
       [--rounds 2] [--subset 128] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "imagenet-val-dev"


def _child(args: argparse.Namespace) -> None:
    import torch

    import camloc
    from camloc.units import UnitsState, build_report, collect_units, open_units_data
    from camloc.data.batches import loader_batches
    from camloc.units.collect import input_preprocess
    from camloc.units.contrib import check_layer

    if args.threads:
        torch.set_num_threads(args.threads)
    model = camloc.load_model(args.model, device="cpu")
    data = open_units_data(args.data)
    data.items = data.items[: args.n]
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out: dict[str, float] = {"images": len(data.items)}
    if args.child == "forward":
        loader = loader_batches(data.items, input_preprocess(model), batch_size=args.batch)
        t0 = time.perf_counter()
        with torch.inference_mode():
            for batch in loader:
                model.module.eval()(torch.stack([x for _, x, _, _ in batch]))
        out["seconds"] = time.perf_counter() - t0
    else:
        _, shape = check_layer(model, None, tuple(model.spec.preprocess.input_size))
        head = model.head
        state = UnitsState.empty({}, head.num_classes, head.num_channels, shape, args.top_images)
        t0 = time.perf_counter()
        collect_units(model, data.items, state, batch_size=args.batch)
        out["seconds"] = time.perf_counter() - t0
        sd = state.state_dict()
        out["state_bytes"] = sum(v.numel() * v.element_size() for v in _tensors(sd))
        t1 = time.perf_counter()
        build_report(state.to("cpu"), model, data, classes=None)
        out["report_seconds"] = time.perf_counter() - t1
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["rss_after_load_mb"] = rss0 / 1024
    print("RESULT " + json.dumps(out))


def _tensors(obj: object) -> list:
    import torch

    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors(v)]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors(v)]
    return []


def _run(args: argparse.Namespace, phase: str, n: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, str(args.data), "--child", phase, "--n", str(n),
           "--model", args.model, "--batch", str(args.batch), "--threads", str(args.threads),
           "--top-images", str(args.top_images)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[7:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", default=str(DEFAULT_DATA))
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--subset", type=int, default=128)
    ap.add_argument("--top-images", type=int, default=12)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=10**9, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args)
        return
    rows: dict[tuple[str, int], list[dict[str, float]]] = {}
    sizes = [args.subset, 10**9]
    for _ in range(args.rounds):
        for n in sizes:
            for phase in ("forward", "units"):
                rows.setdefault((phase, n), []).append(_run(args, phase, n))
    print(f"model {args.model}, batch {args.batch}, {args.rounds} rounds, CPU")
    print("| pass | images | median s | s / image | ratio vs forward | peak RSS MB | "
          "state MB | report s |")
    print("|---|---|---|---|---|---|---|---|")
    for n in sizes:
        fw = statistics.median(r["seconds"] for r in rows[("forward", n)])
        for phase in ("forward", "units"):
            rs = rows[(phase, n)]
            sec = statistics.median(r["seconds"] for r in rs)
            imgs = int(rs[0]["images"])
            rss = max(r["peak_rss_mb"] for r in rs)
            state = f"{rs[0]['state_bytes'] / 2**20:.1f}" if "state_bytes" in rs[0] else "-"
            rep = (f"{statistics.median(r['report_seconds'] for r in rs):.1f}"
                   if "report_seconds" in rs[0] else "-")
            print(f"| {phase} | {imgs} | {sec:.2f} | {sec / imgs:.4f} | {sec / fw:.2f}x | "
                  f"{rss:.0f} | {state} | {rep} |")
    full = rows[("units", 10**9)]
    per_img = statistics.median(r["seconds"] for r in full) / full[0]["images"]
    rep = statistics.median(r["report_seconds"] for r in full)
    print(f"projected per 50,000 images: pass {per_img * 50000 / 60:.1f} min + report {rep:.0f} s "
          f"(fixed); state {full[0]['state_bytes'] / 2**20:.1f} MB whatever the size")


if __name__ == "__main__":
    main()
