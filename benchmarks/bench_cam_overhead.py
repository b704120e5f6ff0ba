"""What CAM costs on top of the classifier's own forward pass.

Baseline: the plain forward pass of the same model on the same batch (the bundled sample photos,
repeated to fill it). Compared, in the same run and
interleaved round by round (so machine noise hits all three alike):

  forward           model(x) under inference_mode
  top-5 + boxes     one engine pass: logits + top-5 CAMs, upsampled to the input (bicubic),
                    max-normalised, thresholded at 0.2 (on the device), largest-component box
                    each, mapped back to original pixels
  all classes       one engine pass: logits + the CAMs of every class (one matrix product)

Usage: python benchmarks/bench_cam_overhead.py [--model efficientnet_lite0] [--batch 16]
       [--rounds 12] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import camloc
from camloc.data.images import batch_images, load_image
from camloc.cams import CAM, normalize, upsample
from camloc.localize import largest_boxes
from camloc.models.spec import Geometry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = camloc.load_model(args.model, device=args.device)
    pre = model.spec.preprocess
    h, w = pre.input_size
    # real photos (the bundled samples, repeated to fill the batch): CAMs of noise inputs are
    # noise, with many components, which no user explains
    photos = sorted((Path(camloc.__file__).parent / "assets" / "samples").glob("*.jpg"))
    images = [load_image(photos[i % len(photos)]) for i in range(args.batch)]
    x, geoms = batch_images(images, pre)
    x = x.to(model.device)
    engine = CAM(model)
    sync = torch.cuda.synchronize if model.device.type == "cuda" else (lambda: None)

    def plain() -> None:
        with torch.inference_mode():
            model.module(x)
        sync()

    def top5_boxes() -> None:
        with torch.inference_mode():
            out = engine(x, classes=5)
            maps = normalize(upsample(out.maps, (h, w)), "max")
            boxes = largest_boxes(maps, 0.2)
        for i in range(boxes.shape[0]):
            g: Geometry = geoms[i]
            g.to_original_boxes(boxes[i])

    def all_classes() -> None:
        with torch.inference_mode():
            engine(x, classes="all")
        sync()

    cases = {"forward (baseline)": plain, "forward + top-5 CAMs + boxes": top5_boxes,
             "forward + all-class CAMs": all_classes}
    for fn in cases.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.rounds):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["forward (baseline)"])
    base_min = min(times["forward (baseline)"])
    print(f"model={args.model} batch={args.batch} device={model.device} threads="
          f"{torch.get_num_threads()} rounds={args.rounds} (seconds per batch; ratios to the "
          f"forward pass of the same statistic)\n")
    print("| pass | median s / batch | images/s | median ratio | min ratio |")
    print("|---|---|---|---|---|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med:.4f} | {args.batch / med:.1f} | {med / base:.3f}x | "
              f"{min(ts) / base_min:.3f}x |")


if __name__ == "__main__":
    main()
