"""Benchmark: CAMs for NEW classes from a linear probe on frozen generic features.

Real data: the 511-photo ImageNet validation subset in ``../shared/data/imagenet-val-dev``
(wsol metadata, boxes). New classes: coarse WordNet groups of the 1000 ImageNet classes
(:mod:`camloc.probe.imagenet_groups`: dog, bird, other_animal, vehicle, food, clothing,
structure; classes under none of them are left out). The probe (``camloc probe``'s library call)
is fitted on one half of the grouped images (seeded, stratified) on efficientnet_lite0's pooled
features; on the other half we report:

* the probe: group accuracy, GT-known Loc (tau = 0.2 and best), MaxBoxAccV2, with ITS OWN weights
  as CAM weights;
* baseline 1, the same network's own 1000-class classifier on the same images with their original
  ImageNet labels (top-1, and CAM localization of the ground-truth class);
* baseline 2, the 1000-way classifier's probabilities summed per group (zero-shot group accuracy);
* baseline 3, the centre box (GT-known Loc of always answering the central half of the image).

Run (about a minute on 2 CPU cores; features are cached, a second run is faster)::

    .venv/bin/python benchmarks/probe_imagenet_groups.py [--data DIR] [--seed 0] [--C ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEV = (REPO / ".." / "shared" / "data" / "imagenet-val-dev").resolve()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEV, help="imagenet-val-dev folder (wsol format)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--holdout", type=float, default=0.5)
    ap.add_argument("--classifier", default="logistic", choices=("logistic", "svm"))
    ap.add_argument("--C", default="logspace:-2:3:6", help="one value, a list, or logspace:LO:HI:N")
    ap.add_argument("--cache", type=Path, default=None,
                    help="feature cache (default: camloc's, ~/.cache/camloc/features)")
    ap.add_argument("--out", type=Path, default=None, help="probe output folder (default: temp)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args(argv)

    import camloc
    from camloc.data.datasets import open_dataset
    from camloc.evaluate import evaluate_model
    from camloc.probe import (ProbeSettings, centre_box_baseline, default_cache_dir,
                              extract_features, run_probe, stratified_split)
    from camloc.probe.imagenet_groups import imagenet_groups

    if not (args.data / "metadata" / "image_ids.txt").is_file():
        print(f"dev set not found at {args.data}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    full = open_dataset(args.data)
    group_names, group_of = imagenet_groups()
    gid = {g: i for i, g in enumerate(group_names)}
    keep = [i for i, s in enumerate(full.samples) if group_of[s.label] is not None]
    grouped = replace(full, name=f"{full.name}-wordnet-groups", class_names=list(group_names),
                      samples=[replace(full.samples[i], label=gid[group_of[full.samples[i].label]])
                               for i in keep])
    counts = np.bincount([s.label for s in grouped.samples], minlength=len(group_names))
    tr, te = stratified_split([s.label for s in grouped.samples], args.holdout, args.seed,
                              group_names)
    train_g, test_g = grouped.subset(tr), grouped.subset(te)
    test_orig = full.subset([keep[i] for i in te])  # same images, original 1000-class labels

    model = camloc.load_model(device=args.device)
    cache = args.cache or default_cache_dir()
    out = args.out or Path(tempfile.mkdtemp(prefix="camloc-probe-bench-"))
    settings = ProbeSettings(classifier=args.classifier, C=args.C, seed=args.seed,
                             batch_size=args.batch_size, cache_dir=cache)
    result = run_probe(model, train_g, out, settings, test_dataset=test_g,
                       log=lambda m: print(m, file=sys.stderr))
    rep = result.report
    own = evaluate_model(model, test_orig, batch_size=args.batch_size)

    # zero-shot groups from the 1000-way classifier, on the (cached) pooled features
    feats = extract_features(model, test_orig, cache, args.batch_size)
    clf = model.head.classifier
    logits = feats.X @ clf.weight.detach().cpu().numpy().T + clf.bias.detach().cpu().numpy()
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    member = np.zeros((1000, len(group_names)))
    for c, g in enumerate(group_of):
        if g is not None:
            member[c, gid[g]] = 1.0
    zero_shot = (probs @ member).argmax(1)
    truth = np.array([gid[group_of[test_orig.samples[i].label]] for i in feats.indices])
    zero_shot_acc = float((zero_shot == truth).mean())
    centre = centre_box_baseline(test_g)

    def loc(d: dict) -> tuple[str, str, str]:
        gk = d["gt_known_loc"]
        return (f"{gk['at_fixed']:.2f}", f"{gk['best']:.2f} (tau {gk['best_threshold']:.2f})",
                f"{d['maxboxacc_v2']['value']:.2f}")

    p_loc, o_loc = loc(rep["localization"]), loc(own["localization"])
    n_test = rep["split"]["n_test"]
    rows = [
        (f"probe ({args.classifier}, C={result.probe.C:g}) on efficientnet_lite0 GAP features",
         f"{len(group_names)} WordNet groups (new)", n_test,
         f"{100 * rep['heldout']['accuracy']:.2f}", *p_loc),
        ("efficientnet_lite0 own classifier", "1000 ImageNet classes", own["counts"]["scored"],
         f"{own['classification']['top1']:.2f}", *o_loc),
        ("efficientnet_lite0 1000-way probabilities summed per group (zero-shot)",
         f"{len(group_names)} WordNet groups", len(feats), f"{100 * zero_shot_acc:.2f}",
         "-", "-", "-"),
        ("centre box (56, 56, 168, 168 at 224)", "-", centre["count"], "-",
         f"{centre['gt_known_loc']:.2f}", "-", "-"),
    ]
    print(f"\nimagenet-val-dev: {len(grouped)} of {len(full)} images fall in a group "
          f"({', '.join(f'{g} {n}' for g, n in zip(group_names, counts))}); "
          f"{rep['split']['n_train']} train / {n_test} held out (seed {args.seed}).\n")
    print("| method | classes | held-out images | top-1 acc (%) | GT-known Loc @0.2 (%) "
          "| GT-known Loc best (%) | MaxBoxAccV2 (%) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print("| " + " | ".join(str(v) for v in r) + " |")
    print(f"\nprobe C chosen by 5-fold CV over {args.C}; cv accuracy "
          f"{json.dumps(rep['probe']['cv_scores'])}; wall time {time.perf_counter() - t0:.1f}s "
          f"(features: {rep['features']['computed']} computed, {rep['features']['reused']} cached)")
    print(f"probe head and report: {out}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "probe_report": str(out / "report.json"),
                                         "group_counts": dict(zip(group_names, counts.tolist()))},
                                        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
