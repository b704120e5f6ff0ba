"""Better boxes than plain CAM on the dev photos, measured honestly: fit and choose on one half,
report on the other.

The dev set's images are split by a seeded hash of their ids (:func:`camloc.localizer.fit.split_ids`,
the split ``camloc localizer fit --holdout 50%`` makes): the *fit* half is all that any choice
sees (localizer weights, combination, TTA, thresholds: a plain/TTA row's threshold is its best
GT-known threshold on the fit half, the ``--calibrate`` protocol; a localizer row's is the one the
localizer recommends), the *report* half gives every figure. The halves are written as wsol
metadata splits into ``--work`` (``metadata/fit``, ``metadata/report``; images read from the dev
folder through ``--image-root``), so each row's CLI command, printed with it, reproduces it.

Timing: the maps of ``--time-images`` report images (already decoded, one batch of 32 at a time),
each configuration in turn, ``--rounds`` rounds interleaved, median; reported as a multiple of
plain CAM's time measured in the same rounds (the machine may be shared).

Usage: python benchmarks/bench_localization.py [--data DEV] [--work /tmp/camloc-bench-loc]
       [--seed 0] [--rounds 3] [--time-images 64] [--rows plain,tta288,...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEV = REPO.parent / "shared" / "data" / "imagenet-val-dev"

#: name -> (tta, localizer folder name or None, description)
ROWS = {
    "plain": ("none", None, "plain CAM (Zhou et al. 2016)"),
    "flip": ("flip", None, "CAM, TTA flip"),
    "tta288": ("scales=288", None, "CAM, TTA one scale 288"),
    "tta224_288": ("scales=224:288", None, "CAM, TTA scales 224+288"),
    "tta224_288_logits": ("scales=224:288,logits", None, "CAM, TTA 224+288, logits averaged"),
    "pc1": (None, "loc-pc1", "CAM x PC1 of the last features (sign by CAM)"),
    "head_last": (None, "loc-head-last", "CAM x foreground head, last layer only"),
    "head_last_notta": ("none", "loc-head-last", "CAM x foreground head, last layer, no TTA"),
    "head": (None, "loc-head", "CAM x foreground head, 2 layers (default fit)"),
    "head_notta": ("none", "loc-head", "CAM x foreground head, 2 layers, no TTA"),
}
FITS = {"loc-pc1": ["--kind", "pc1"], "loc-head-last": ["--layer", "bn2"], "loc-head": []}


def write_halves(ds, work: Path, seed: int) -> tuple[list[str], list[str]]:
    from camloc.localizer.fit import split_ids

    ids = [s.image_id for s in ds.samples if len(s.boxes)]
    fit, report = split_ids(ids, 0.5, seed)
    by = {s.image_id: s for s in ds.samples}
    for name, part in (("fit", fit), ("report", report)):
        meta = work / "metadata" / name
        meta.mkdir(parents=True, exist_ok=True)
        part = sorted(part)
        (meta / "image_ids.txt").write_text("".join(f"{i}\n" for i in part))
        (meta / "class_labels.txt").write_text("".join(f"{i},{by[i].label}\n" for i in part))
        (meta / "image_sizes.txt").write_text("".join(
            f"{i},{by[i].size[0]},{by[i].size[1]}\n" for i in part if by[i].size))
        (meta / "localization.txt").write_text("".join(
            f"{i},{','.join(str(float(v)) for v in b)}\n" for i in part for b in by[i].boxes))
    return fit, report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEV)
    ap.add_argument("--work", type=Path, default=Path("/tmp/camloc-bench-loc"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--time-images", type=int, default=64)
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--refit", action="store_true", help="fit the localizers again")
    args = ap.parse_args()
    if not (args.data / "metadata").is_dir():
        print(f"no dataset at {args.data}", file=sys.stderr)
        return 2
    import torch

    import camloc
    from camloc.cams import make_method
    from camloc.cams.tta import with_tta
    from camloc.data.open import open_dataset
    from camloc.evaluation.evaluate import evaluate_state
    from camloc.localizer import fit_localizer, load_localizer, save_localizer, with_localizer

    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    model = camloc.load_model()
    full = open_dataset(args.data)
    fit_ids, report_ids = write_halves(full, args.work, args.seed)
    fit_ds = open_dataset(args.work, split="fit", image_root=args.data)
    rep_ds = open_dataset(args.work, split="report", image_root=args.data)
    print(f"# dev set {args.data}: fit half {len(fit_ids)}, report half {len(report_ids)} images "
          f"(seed {args.seed})", flush=True)
    cli = "camloc"
    locs = {}
    for folder, extra in FITS.items():
        if not any(ROWS[r][1] == folder for r in rows):
            continue
        path = args.work / folder
        if args.refit or not (path / "localizer.json").is_file():
            kind = "pc1" if "--kind" in extra else "head"
            layers = ["bn2"] if "--layer" in extra else None
            t0 = time.perf_counter()
            loc = fit_localizer(model, full, kind=kind, layers=layers, holdout=0.5, seed=args.seed,
                                log=lambda m: print("   ", m, flush=True))
            save_localizer(loc, path)
            print(f"fitted {folder} in {time.perf_counter() - t0:.0f} s: {loc.combine} "
                  f"a={loc.alpha} tta={loc.tta} thr={loc.threshold}", flush=True)
        loc = load_localizer(path)
        if sorted(loc.fit["heldout_ids"]) != sorted(report_ids):
            raise SystemExit(f"{path}: fitted on another split; rerun with --refit")
        locs[folder] = loc
    base = make_method(model, "cam")
    engines, taus, results = {}, {}, {}
    for r in rows:
        tta, folder, _ = ROWS[r]
        loc = locs.get(folder) if folder else None
        spec = tta if tta is not None else (loc.tta if loc else "none")
        engines[r] = with_tta(with_localizer(base, loc), spec)
        if loc is not None:
            taus[r] = loc.threshold
        else:  # calibrate on the fit half
            st = evaluate_state(model, fit_ds, method=engines[r], check_dataset=False)
            taus[r] = float(st.localization.compute()["maxboxacc_v1"]["threshold"])
        st = evaluate_state(model, rep_ds, method=engines[r], check_dataset=False)
        lc = st.localization.compute(threshold=taus[r])
        results[r] = {"tta": spec, "threshold": taus[r],
                      "top1_loc": lc["calibrated"]["top1_loc"],
                      "gt_known_loc": lc["calibrated"]["gt_known_loc"],
                      "maxboxacc_v2": lc["maxboxacc_v2"]["value"],
                      "top1": st.classification.compute()["top1"]}
        print(f"  {r}: {json.dumps(results[r])}", flush=True)
    # timing: maps only, decoded images, interleaved rounds
    from camloc.data.images import load_image, to_tensor

    pre = model.spec.preprocess.with_(fit="stretch")
    samples = rep_ds.samples[:args.time_images]
    x = torch.stack([to_tensor(load_image(s.path), pre)[0] for s in samples])
    y = torch.tensor([s.label for s in samples])[:, None]
    times: dict[str, list[float]] = {r: [] for r in rows}
    with torch.inference_mode():
        for _ in range(args.rounds):
            for r in rows:
                t0 = time.perf_counter()
                for i in range(0, len(x), 32):
                    engines[r](x[i:i + 32], classes=y[i:i + 32])
                times[r].append((time.perf_counter() - t0) / len(x))
    plain = statistics.median(times["plain"]) if "plain" in times else None
    print("\n| config | Top-1 Loc (calibrated) | GT-known Loc (calibrated) | MaxBoxAccV2 | PxAP | "
          "s/image (x plain CAM) | command |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        res = results[r]
        med = statistics.median(times[r])
        ratio = f" ({med / plain:.2f}x)" if plain else ""
        tta, folder, desc = ROWS[r]
        cmd = f"{cli} evaluate {args.work} --split report --image-root {args.data}"
        if folder:
            cmd += f" --localizer {args.work / folder}"
            if tta is not None:
                cmd += f" --tta {tta}"
        else:
            if tta != "none":
                cmd += f" --tta {tta}"
            cmd += " --calibrate FIT/report.json"
        print(f"| {desc} (tta {res['tta']}, tau {res['threshold']:.2f}) | {res['top1_loc']:.2f} | "
              f"{res['gt_known_loc']:.2f} | {res['maxboxacc_v2']:.2f} | n/a | {med:.4f}{ratio} | "
              f"`{cmd}` |")
    print("\nFIT/report.json: the same command with `--split fit` and no --calibrate. "
          "Localizers: `camloc localizer fit DEV --holdout 50% --out DIR` (+ " +
          "; ".join(f"{k}: {' '.join(v) or 'defaults'}" for k, v in FITS.items()) + ").")
    (args.work / "results.json").write_text(json.dumps({"results": results, "times": times},
                                                       indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
