"""Cost of `camloc compare`'s shared pass against one separate pass per method (the baseline).

Baseline ("separate"): what a user does without compare: for each method, decode and preprocess
every image again, compute the maps, and run the faithfulness accumulators without the logits
(each runs its own clean forward). Shared ("compare"): camloc.compare.compare_state: images decoded
once per batch, the method's own forward reused as the clean logits, the network channels-last on
the CPU. Same images, maps and metric settings; the script checks that both give the same figures
(to 1e-4: the memory layouts differ) and prints seconds for each.

    PYTHONPATH=src python benchmarks/bench_compare.py --images 8 --methods cam,gradcam,eigencam
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEV = (REPO / ".." / "shared" / "data" / "imagenet-val-dev").resolve()


def separate(model, ds, names, faith, batch_size):
    """One independent pass per method (the baseline)."""
    from camloc.cams.registry import make_method
    from camloc.compare.run import EVAL_SIZE, _scoremap
    from camloc.data.images import load_image, to_tensor
    from camloc.metrics.faithfulness import (AverageDropAccumulator, DeletionInsertionAccumulator,
                                             ROADAccumulator)
    from camloc.models.heads import eval_mode

    pre = model.spec.preprocess.with_(fit="stretch")
    out = {}
    for name in names:
        meth = make_method(model, name)
        accs = (AverageDropAccumulator(mean=pre.mean, std=pre.std, batch_size=faith.batch_size),
                DeletionInsertionAccumulator(n_steps=faith.steps, batch_size=faith.batch_size,
                                             keep_curves=False),
                ROADAccumulator(percentiles=faith.road_percentiles, mean=pre.mean, std=pre.std,
                                batch_size=faith.batch_size))
        with eval_mode(model.module):
            for s in range(0, len(ds.samples), batch_size):
                chunk = ds.samples[s:s + batch_size]
                x = torch.stack([to_tensor(load_image(smp.path), pre)[0] for smp in chunk])
                labels = torch.tensor([smp.label for smp in chunk])
                cams = meth(x, classes=labels[:, None]).maps[:, 0].numpy()
                fm = torch.from_numpy(np.stack([_scoremap(c, (EVAL_SIZE, EVAL_SIZE)) for c in cams]))
                ids = [smp.image_id for smp in chunk]
                for acc in accs:
                    acc.update(model.logits, x, fm, labels, image_ids=ids)
        out[name] = (accs[0].compute()["average_drop"], accs[1].compute()["deletion_auc"],
                     accs[2].compute()["combined"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--methods", default="cam,gradcam,eigencam")
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    import camloc
    from camloc.compare import build_methods, compare_state, resolve_methods
    from camloc.compare.run import FaithfulnessSettings
    from camloc.data.datasets import open_dataset

    if not (DEV / "metadata").is_dir():
        raise SystemExit(f"dev set not found at {DEV}")
    model = camloc.load_model("efficientnet_lite0", device="cpu")
    ds = open_dataset(DEV).subset(range(args.images))
    names = resolve_methods(args.methods)
    faith = FaithfulnessSettings(steps=args.steps, road_percentiles=(25.0, 75.0), batch_size=64)
    bs = min(16, args.images)
    t0 = time.perf_counter()
    st = compare_state(model, ds, build_methods(model, names), faithfulness=faith, batch_size=bs)
    t_shared = time.perf_counter() - t0
    t0 = time.perf_counter()
    base = separate(model, ds, names, faith, bs)
    t_sep = time.perf_counter() - t0
    for name in names:
        m = st.methods[name]
        got = (m.average_drop.compute()["average_drop"], m.deletion.compute()["deletion_auc"],
               m.road.compute()["combined"])
        # compare runs the network channels-last on the CPU (logits equal to ~1e-5), the plain
        # loop does not: the figures agree to that precision, not bit for bit
        if not np.allclose(got, base[name], rtol=1e-4, atol=1e-6):
            raise SystemExit(f"{name}: shared {got} != separate {base[name]}")
    print(f"{args.images} images x {len(names)} methods ({args.methods}), steps {args.steps}, "
          f"ROAD 25/75, torch threads {torch.get_num_threads()}")
    print(f"compare (shared pass): {t_shared:8.2f} s")
    print(f"separate passes      : {t_sep:8.2f} s   (same figures; ratio {t_sep / t_shared:.2f}x)")


if __name__ == "__main__":
    main()
