"""Exact CAM on onnxruntime against its baselines, in one process, same inputs, same threads.

Cases (efficientnet_lite0 at 224x224, random normalised inputs, batch 1 and 16):
  ort-cam      the graph of ``camloc export`` (logits, top-5 classes, raw maps, scoremaps, boxes)
  ort-plain    the plain classifier exported the same way (logits only): the baseline
  torch-cam    camloc's torch path, ``CAM(model)(x, classes=5)`` in inference mode, channels-last
               (as explain and evaluate run it)
  torch-plain  ``model.logits(x)`` the same way
and, with the dev set present, ``evaluate`` on its first ``--images`` photos (decode included)
with the torch CAM engine and with ``OnnxCAM`` (``--runtime onnx``).

The cases run in turn, ``--rounds`` times (noise hits all alike); the best round of each (the
least disturbed on a shared machine; ``--median`` for the median) is reported, as images per
second and as ratios: ort-cam / ort-plain (goal <= 1.05) and torch-cam / ort-cam.

Usage: python benchmarks/bench_onnx.py [--rounds 5] [--images 64] [--threads N]
Nothing is written inside the repository (the graphs go to a temporary folder).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEV = REPO.parent / "shared" / "data" / "imagenet-val-dev"


def _subset(n: int, dst: Path) -> Path:
    import shutil

    meta = DEV / "metadata"
    ids = (meta / "image_ids.txt").read_text().split()[:n]
    keep = set(ids)
    (dst / "metadata").mkdir(parents=True)
    for name in ("image_ids.txt", "class_labels.txt", "image_sizes.txt", "localization.txt"):
        lines = [ln for ln in (meta / name).open() if ln.split(",")[0].strip() in keep]
        (dst / "metadata" / name).write_text("".join(lines))
    for i in ids:
        (dst / i).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(DEV / i, dst / i)
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--images", type=int, default=64, help="dev photos for the evaluate case "
                                                            "(0: skip it)")
    ap.add_argument("--threads", type=int, default=0, help="threads (default: torch's)")
    ap.add_argument("--median", action="store_true", help="report medians, not best rounds")
    args = ap.parse_args()

    import numpy as np
    import torch

    import camloc
    from camloc.cams import CAM
    from camloc.runtime_onnx import OnnxCAM, make_session
    from camloc.export import to_onnx
    from camloc.runtime import channels_last

    if args.threads:
        torch.set_num_threads(args.threads)
    pick = statistics.median if args.median else min
    model = camloc.load_model("efficientnet_lite0")
    tmp = Path(tempfile.mkdtemp(prefix="bench-onnx-"))
    cam_graph = to_onnx(model, tmp / "cam.onnx").path
    plain_graph = to_onnx(model, tmp / "plain.onnx", maps=False).path
    s_cam, s_plain = make_session(cam_graph), make_session(plain_graph)
    engine = CAM(model)

    cases = {
        "ort-cam": lambda x, xn: s_cam.run(None, {"images": xn}),
        "ort-plain": lambda x, xn: s_plain.run(None, {"images": xn}),
        "torch-cam": lambda x, xn: engine(x, classes=5),
        "torch-plain": lambda x, xn: model.logits(x),
    }
    print(f"threads: torch {torch.get_num_threads()}, onnxruntime {torch.get_num_threads()}; "
          f"{args.rounds} rounds; {'median' if args.median else 'best round'}, images/s")
    with torch.inference_mode(), channels_last(model.module, True) as cl:
        for batch in (1, 16):
            g = torch.Generator().manual_seed(0)
            x = torch.randn(batch, 3, 224, 224, generator=g)
            xn = np.ascontiguousarray(x.numpy())
            xt = x.contiguous(memory_format=torch.channels_last) if cl else x
            reps = 16 if batch == 1 else 2
            times: dict[str, list[float]] = {k: [] for k in cases}
            for fn in cases.values():
                fn(xt, xn)  # warm-up
            for _ in range(args.rounds):
                for name, fn in cases.items():
                    t0 = time.perf_counter()
                    for _ in range(reps):
                        fn(xt, xn)
                    times[name].append((time.perf_counter() - t0) / (reps * batch))
            med = {k: pick(v) for k, v in times.items()}
            row = ", ".join(f"{k} {1 / v:.1f}" for k, v in med.items())
            print(f"batch {batch:2d}: {row}")
            print(f"          ort-cam / ort-plain time {med['ort-cam'] / med['ort-plain']:.3f}x"
                  f" (goal <= 1.05); torch-cam / ort-cam time "
                  f"{med['torch-cam'] / med['ort-cam']:.2f}x; torch-cam / torch-plain "
                  f"{med['torch-cam'] / med['torch-plain']:.3f}x")

    if args.images and (DEV / "metadata" / "image_ids.txt").is_file():
        from camloc.data.open import open_dataset
        from camloc.evaluation.evaluate import evaluate_state

        ds = open_dataset(_subset(args.images, tmp / "dev"))
        engines = {"torch": CAM(model), "onnx": OnnxCAM(model, cache=tmp / "cache")}
        secs: dict[str, list[float]] = {k: [] for k in engines}
        for _ in range(max(1, args.rounds // 2)):
            for name, eng in engines.items():
                st = evaluate_state(model, ds, batch_size=32, workers=1, method=eng)
                secs[name].append(st.seconds)
        med = {k: pick(v) for k, v in secs.items()}
        print(f"evaluate ({args.images} dev photos, decode included): "
              + ", ".join(f"{k} {args.images / v:.1f} images/s" for k, v in med.items())
              + f"; torch / onnx time {med['torch'] / med['onnx']:.2f}x")


if __name__ == "__main__":
    main()
