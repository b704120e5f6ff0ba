"""GPU checks (run on a CUDA machine): engine parity with the CPU, and CUDA throughput.

    python benchmarks/gpu_check.py --dev PATH/TO/imagenet-val-dev

1. CAM engine on CUDA vs CPU on the same batch (default model): logits and maps agree, the exact
   identity score == mean(map) + bias holds on CUDA, hooks/flags as on CPU.
2. `evaluate_model` on the dev set on CUDA: the reference numbers (as on CPU) and images/s.
3. The CAM overhead benchmark on CUDA (batch 16 and 64).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import camloc
from camloc.cams import CAM


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dev", required=True)
    args = ap.parse_args()
    out: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    cpu = camloc.load_model(device="cpu")
    gpu = camloc.load_model(device="cuda")
    x = torch.randn(8, 3, 224, 224)
    a = CAM(cpu)(x, classes="all")
    b = CAM(gpu)(x.cuda(), classes="all")
    out["max_abs_logit_diff"] = float((a.logits - b.logits.cpu()).abs().max())
    out["max_abs_map_diff"] = float((a.maps - b.maps.cpu()).abs().max())
    out["map_scale"] = float(a.maps.abs().max())
    out["cuda_identity_err"] = float((b.maps.mean((2, 3)) + b.bias - b.logits).abs().max())
    out["top5_equal"] = bool(torch.equal(a.logits.topk(5, 1).indices, b.logits.topk(5, 1).indices.cpu()))
    from camloc.data.datasets import open_dataset
    from camloc.evaluate import evaluate_model

    ds = open_dataset(args.dev)
    evaluate_model(gpu, ds.subset(range(64)), batch_size=64, workers=4)  # warm-up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    rep = evaluate_model(gpu, ds, batch_size=128, workers=8)
    out["evaluate_seconds"] = time.perf_counter() - t0
    out["evaluate_images_per_s"] = rep["images_per_second"]
    loc = rep["localization"]
    out["figures"] = {"top1": rep["classification"]["top1"], "top5": rep["classification"]["top5"],
                      "gt_known@0.2": loc["gt_known_loc"]["at_fixed"],
                      "top1_loc@0.2": loc["top1_loc"]["at_fixed"],
                      "top5_loc@0.2": loc["top5_loc"]["at_fixed"],
                      "maxboxacc_v1": loc["maxboxacc_v1"], "maxboxacc_v2": loc["maxboxacc_v2"]["value"]}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
