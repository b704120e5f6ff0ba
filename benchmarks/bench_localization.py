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

#: name -> (tta, localizer folder name or None, description); a localizer row with a TTA takes the
#: combination and threshold its fit chose for that TTA (on the choosing quarter)
ROWS = {
    "plain": ("none", None, "plain CAM (Zhou et al. 2016)"),
    "tta288": ("scales=288", None, "CAM, TTA one scale 288"),
    "tta224_288": ("scales=224:288", None, "CAM, TTA scales 224+288"),
    "tta224_288_logits": ("scales=224:288,logits", None, "CAM, TTA 224+288, logits averaged"),
    "pc1": ("none", "loc-pc1", "CAM with PC1 of the last features (sign by CAM)"),
    "pc1_tta": (None, "loc-pc1", "CAM with PC1, its chosen TTA"),
    "head_last": ("none", "loc-head-last", "CAM with foreground head, last layer only"),
    "head_last_tta": (None, "loc-head-last", "CAM with foreground head, last layer, chosen TTA"),
    "head_notta": ("none", "loc-head", "CAM with foreground head, 2 layers"),
    "head288": ("scales=288", "loc-head", "CAM with foreground head, 2 layers, TTA 288"),
    "head": (None, "loc-head", "CAM with foreground head, 2 layers, chosen TTA (default fit)"),
}
FITS = {"loc-head": ("head", None), "loc-head-last": ("head", ["bn2"]), "loc-pc1": ("pc1", None)}
FIT_ARGS = {"loc-pc1": "--kind pc1", "loc-head-last": "--layer bn2", "loc-head": ""}


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
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--time-images", type=int, default=16)
    ap.add_argument("--rows", default=",".join(ROWS))
    args = ap.parse_args()
    if not (args.data / "metadata").is_dir():
        print(f"no dataset at {args.data}", file=sys.stderr)
        return 2
    import torch

    import camloc
    from camloc.cams import make_method
    from camloc.cams.tta import with_tta
    from camloc.data.open import open_dataset
    from camloc.cams.tta import parse_tta
    from camloc.localizer import fit_localizer, load_localizer, save_localizer, with_localizer
    from camloc.localizer.fit import _cache, _score

    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    model = camloc.load_model()
    full = open_dataset(args.data)
    fit_ids, report_ids = write_halves(full, args.work, args.seed)
    rep_ds = open_dataset(args.work, split="report", image_root=args.data)
    print(f"# dev set {args.data}: fit half {len(fit_ids)}, report half {len(report_ids)} images "
          f"(seed {args.seed})", flush=True)
    caches: dict = {"layers": ["blocks.4", "bn2"]}
    locs = {}
    t_all = time.perf_counter()
    for folder, (kind, layers) in FITS.items():
        t0 = time.perf_counter()
        loc = fit_localizer(model, full, kind=kind, layers=layers, holdout=0.5, seed=args.seed,
                            caches=caches)
        save_localizer(loc, args.work / folder)
        print(f"fitted {folder} in {time.perf_counter() - t0:.0f} s: {loc.combine} "
              f"a={loc.alpha} tta={loc.tta} thr={loc.threshold}", flush=True)
        if sorted(loc.fit["heldout_ids"]) != sorted(report_ids):
            raise SystemExit(f"{folder}: fitted on another split")
        locs[folder] = load_localizer(args.work / folder)
    base = make_method(model, "cam")
    taps = model.taps(caches["layers"])
    specs = {ROWS[r][0] for r in rows} | {lc.tta for lc in locs.values()}
    variants = lambda hw: sorted({v for t in specs if parse_tta(t) for v in  # noqa: E731
                                  parse_tta(t).variants(hw)} | {(hw[0], hw[1], False)})
    rep_cache = _cache(model, base, rep_ds, taps, variants, 32, 0)
    engines, results = {}, {}
    for r in rows:
        tta, folder, _ = ROWS[r]
        loc = locs.get(folder) if folder else None
        spec = tta if tta is not None else loc.tta
        if loc is not None:  # the combination and threshold chosen for this TTA on the fit half
            trial = max((t for t in loc.fit["trials"] if t["tta"] == (parse_tta(spec).describe()
                         if parse_tta(spec) else "none")), key=lambda t: t["score"])
            loc = loc.with_(combine=trial["combine"], alpha=trial["alpha"])
            tau = float(trial["threshold"])
        else:  # calibrate on the choosing quarter of the fit half, as the localizers do
            tau = float(_score(caches["b"], None, parse_tta(spec))["threshold"])
        engines[r] = with_tta(with_localizer(base, loc), spec)
        res = _score(rep_cache, loc, parse_tta(spec), threshold=tau)
        results[r] = {"tta": spec, "combine": None if loc is None else f"{loc.combine} "
                      f"{loc.alpha}", "threshold": tau, **res["calibrated"],
                      "maxboxacc_v2": res["maxboxacc_v2"]}
        print(f"  {r}: {json.dumps(results[r])}", flush=True)
    print(f"fits and scoring: {time.perf_counter() - t_all:.0f} s", flush=True)
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
        cmd = f"camloc evaluate {args.work} --split report --image-root {args.data}"
        if folder:
            cmd += f" --localizer {args.work / folder}"
            if tta is not None:
                cmd += f" --tta {tta}"
            if res["combine"] and tta is not None:
                cmd += f" --calibrate {res['threshold']:.2f}"
        else:
            if tta != "none":
                cmd += f" --tta {tta}"
            cmd += " --calibrate FIT/report.json"
        comb = f", {res['combine']}" if res["combine"] else ""
        print(f"| {desc} (tta {res['tta']}{comb}, tau {res['threshold']:.2f}) | "
              f"{res['top1_loc']:.2f} | "
              f"{res['gt_known_loc']:.2f} | {res['maxboxacc_v2']:.2f} | n/a | {med:.4f}{ratio} | "
              f"`{cmd}` |")
    print("\nLocalizers: `camloc localizer fit DEV --holdout 50% --out DIR` (+ " +
          "; ".join(f"{k}: {v or 'defaults'}" for k, v in FIT_ARGS.items()) + ").")
    (args.work / "results.json").write_text(json.dumps({"results": results, "times": times},
                                                       indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
