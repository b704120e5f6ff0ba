"""GAP vs GMP for localization (Zhou et al., CVPR 2016, Sec. 3.1), on the CPU in a few minutes.

The paper's claim: with global *average* pooling the network is rewarded for finding all of an
object's discriminative parts, so its CAMs cover more of the object and localize better than with
global *max* pooling, which only needs the single most discriminative spot; classification is
about the same.

This benchmark trains the same small network (``tiny-cnn``) twice on the synthetic WSOL set
(:func:`camloc.data.synth.make_synth`: the class is a small coloured part, the box/mask is the
whole object), once with ``--pool gap`` and once with ``--pool gmp``, with the same seed, data
order, schedule and number of steps. The last checkpoint of each is evaluated on the held-out test
split with :func:`camloc.evaluate.evaluate_model` (wsolevaluation protocol): top-1, GT-known Loc
(IoU >= 0.5 at the fixed CAM threshold 0.2), MaxBoxAccV2, PxAP and PIoU. Named baseline in the same
run: the **centre box**, a box covering the central 50% of each side of every image
(``[W/4, H/4, 3W/4, 3H/4]``), scored by the same accumulators.

    python benchmarks/bench_gap_vs_gmp.py                 # ~3-6 minutes on 2 cores
    python benchmarks/bench_gap_vs_gmp.py --epochs 4 --images 300   # a quick smoke run

Prints a markdown table (and writes ``<out>/results.json``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np


def centre_box_baseline(dataset, interval: float) -> dict[str, float]:
    """Score the central box (half of each side) as a binary score map on every image."""
    from camloc.data.datasets import load_gt_mask
    from camloc.evaluate import EVAL_SIZE
    from camloc.metrics import LocalizationAccumulator, PxAPAccumulator, rescale_gt_boxes

    s = EVAL_SIZE
    box_map = np.zeros((s, s), np.float32)
    box_map[s // 4: s - s // 4, s // 4: s - s // 4] = 1.0
    loc = LocalizationAccumulator(interval=interval)
    pxap = PxAPAccumulator(interval=interval) if dataset.has_masks else None
    samples = list(dataset.samples)
    for k in range(0, len(samples), 64):
        chunk = samples[k:k + 64]
        maps = np.repeat(box_map[None], len(chunk), axis=0)
        boxes = []
        for smp in chunk:
            if smp.size is None:
                from PIL import Image

                with Image.open(smp.path) as im:
                    size = im.size
            else:
                size = smp.size
            boxes.append(rescale_gt_boxes(smp.boxes, size, (s, s)))
        loc.update(maps, boxes)
        if pxap is not None:
            pxap.update(maps, np.stack([load_gt_mask(smp, (s, s)) for smp in chunk]))
    lr = loc.compute()
    out = {"top1": None, "gt_known": lr["gt_known_loc"]["at_fixed"],
           "maxboxacc_v2": lr["maxboxacc_v2"]["value"]}
    if pxap is not None:
        pr = pxap.compute()
        out.update(pxap=pr["pxap"], piou=pr["piou"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("bench-out/gap-vs-gmp"))
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--images", type=int, default=800, help="total; a quarter is the test split")
    ap.add_argument("--size", type=int, default=96, help="synthetic image size")
    ap.add_argument("--width", type=int, default=16, help="tiny-cnn width")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--warmup-epochs", type=float, default=1.0)
    ap.add_argument("--crop-scale", type=float, default=0.35)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--interval", type=float, default=0.01, help="CAM threshold step")
    args = ap.parse_args()

    import torch

    import camloc
    from camloc.data.datasets import open_dataset
    from camloc.data.synth import make_synth
    from camloc.evaluate import evaluate_model
    from camloc.train import TrainConfig, train

    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / f"synth-c{args.classes}-n{args.images}-s{args.size}-seed{args.seed}"
    if not (data / "synth.json").is_file():
        make_synth(data, classes=args.classes, images=args.images, size=args.size, seed=args.seed)
    test = open_dataset(data, split="test")

    rows: dict[str, dict] = {}
    for pool in ("gap", "gmp"):
        run = args.out / pool
        shutil.rmtree(run, ignore_errors=True)
        cfg = TrainConfig(dataset=data, arch="tiny-cnn", arch_kwargs={"width": args.width},
                          pool=pool, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          warmup_epochs=args.warmup_epochs, input_size=args.size,
                          crop_scale=(args.crop_scale, 1.0), out=run, workers=args.workers,
                          seed=args.seed, val_split="none", device="cpu")
        t0 = time.perf_counter()
        res = train(cfg)
        secs = time.perf_counter() - t0
        # evaluate_model scores at 224x224; the network sees its training size (args.size)
        model = camloc.load_model(run / "last", device="cpu")
        rep = evaluate_model(model, test, interval=args.interval, batch_size=64)
        rows[pool.upper()] = {
            "top1": rep["classification"]["top1"],
            "gt_known": rep["localization"]["gt_known_loc"]["at_fixed"],
            "maxboxacc_v2": rep["localization"]["maxboxacc_v2"]["value"],
            "pxap": rep["pxap"]["pxap"], "piou": rep["pxap"]["piou"],
            "train_loss": res.history[-1]["train_loss"], "train_acc": res.history[-1]["train_acc"],
            "train_seconds": secs,
        }
    rows["centre box (baseline)"] = centre_box_baseline(test, args.interval)

    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    n_train = len(open_dataset(data, split="train"))
    print(f"\nGAP vs GMP, tiny-cnn (width {args.width}), synthetic WSOL set: {args.classes} "
          f"classes, "
          f"{n_train} train / {len(test)} test images of {args.size}x{args.size}; "
          f"{args.epochs} epochs, batch {args.batch_size}, lr {args.lr}, seed {args.seed}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads\n")
    print("| pooling | top-1 | GT-known Loc (IoU 0.5, tau 0.2) | MaxBoxAccV2 | PxAP | PIoU | "
          "train s |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {f(r['top1'])} | {f(r['gt_known'])} | {f(r['maxboxacc_v2'])} | "
              f"{f(r.get('pxap'))} | {f(r.get('piou'))} | {f(r.get('train_seconds'))} |")
    (args.out / "results.json").write_text(json.dumps({"args": {k: str(v) for k, v in
                                                                vars(args).items()},
                                                       "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
