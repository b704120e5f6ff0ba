"""Faithfulness metrics: camloc vs torchcam and pytorch-grad-cam on the same work.

Same model, same images (the bundled sample photos, then the dev set's photos if present), same
maps (camloc's exact CAM of the top-1 class, upsampled bicubically to the input and min-max
normalised), same steps and batch size, on the CPU. Compared, interleaved round by round so machine
noise hits every library alike:

  Average Drop / Increase   camloc AverageDropAccumulator (mask_space="input")
                            vs torchcam ClassificationMetric and pytorch-grad-cam
                            CamMultImageConfidenceChange (one call gives both numbers)
  Deletion / Insertion      camloc DeletionInsertionAccumulator (zero baseline for both curves,
                            --steps steps) vs torchcam DeletionInsertionMetric (same steps, batch)
  ROAD MoRF + LeRF          camloc ROADAccumulator (percentiles 10..90, noise 0.01)
                            vs pytorch-grad-cam ROADCombined (the same 18 imputations per image)
  ROAD imputation alone     camloc noisy_linear_impute vs pytorch-grad-cam NoisyLinearImputer,
                            noise 0, the first image's 10 / 50 / 90 % most relevant pixels
                            (seconds per call)

The values of each pair are printed too (they agree to 1e-4 where the definitions agree; ROAD's
noise differs by construction, its noise-free parity is in tests/metrics/test_faithfulness_parity.py).
Quantus' ROAD is not timed: on RGB inputs it fails (docs/faithfulness.md).

Usage: python benchmarks/bench_faithfulness.py [--models resnet18,efficientnet_lite0] [--n 4]
       [--steps 20] [--batch 32] [--rounds 3] [--threads N] [--skip ad,di,road,impute]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import camloc
from camloc.cams import CAM, normalize, upsample
from camloc.data.images import batch_images, load_image
from camloc.metrics.faithfulness import (AverageDropAccumulator, DeletionInsertionAccumulator,
                                         ROADAccumulator, noisy_linear_impute, relevance_order)

DEV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "imagenet-val-dev"


class FixedMaps:
    """A torchcam CAM extractor returning given maps, so torchcam scores exactly these maps."""

    def __init__(self, model: torch.nn.Module, maps: torch.Tensor) -> None:
        self.model, self.maps = model, maps

    def __call__(self, class_idx: Any = None, scores: Any = None, normalized: bool = True,
                 **kwargs: Any) -> list[torch.Tensor]:
        return [self.maps]

    def fuse_cams(self, cams: list[torch.Tensor]) -> torch.Tensor:
        return cams[0]

    @contextlib.contextmanager
    def _hooks_off(self):  # noqa: ANN202
        yield


def photo_paths(n: int) -> list[Path]:
    paths = sorted((Path(camloc.__file__).parent / "assets" / "samples").glob("*.jpg"))
    if len(paths) < n and (DEV / "images").is_dir():
        paths += sorted((DEV / "images").rglob("*.JPEG"))[: n - len(paths)]
    if len(paths) < n:
        paths = [paths[i % len(paths)] for i in range(n)]
    return paths[:n]


def inputs(model_name: str, n: int) -> tuple[Any, torch.Tensor, torch.Tensor, list[int]]:
    if model_name == "resnet18":
        torch.manual_seed(0)
        model = camloc.load_model("resnet18", weights=None, device="cpu")  # random weights
    else:
        model = camloc.load_model(model_name, device="cpu")
    images = [load_image(p) for p in photo_paths(n)]
    x, _ = batch_images(images, model.spec.preprocess)
    with torch.inference_mode():
        out = CAM(model)(x, classes=1)
        maps = normalize(upsample(out.maps, tuple(x.shape[2:])), "minmax")[:, 0].clone()
    return model, x, maps, out.class_ids[:, 0].tolist()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    value = fn()
    return time.perf_counter() - t, value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet18,efficientnet_lite0")
    ap.add_argument("--n", type=int, default=4, help="images")
    ap.add_argument("--steps", type=int, default=20, help="deletion / insertion steps")
    ap.add_argument("--batch", type=int, default=32, help="forward batch size (camloc, torchcam)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--skip", default="", help="comma list of: ad, di, road, impute")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer, ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
    from torchcam.metrics import ClassificationMetric, DeletionInsertionMetric

    skip = set(filter(None, args.skip.split(",")))
    sm = functools.partial(torch.softmax, dim=-1)
    rows: list[tuple[str, str, str, float, str, str]] = []
    for name in args.models.split(","):
        cm, x, maps, cls = inputs(name, args.n)
        module = cm.module.eval()
        targets = [ClassifierOutputSoftmaxTarget(c) for c in cls]
        cams_np = maps.numpy()

        def ad_camloc() -> float:
            a = AverageDropAccumulator(mask_space="input", batch_size=args.batch)
            a.update(cm, x, maps, cls)
            return a.compute()["average_drop"] / 100

        def ad_torchcam() -> float:
            m = ClassificationMetric(FixedMaps(module, maps), sm)
            m.update(x, class_idx=cls)
            return m.summary()["avg_drop"]

        def ad_pgc() -> float:
            with torch.inference_mode():
                y = module(x).softmax(1)[range(len(cls)), cls].numpy()
            diff = CamMultImageConfidenceChange()(x, cams_np, targets, module)
            return float(np.mean(np.maximum(0, -diff) / y))

        def di_camloc() -> float:
            a = DeletionInsertionAccumulator(n_steps=args.steps, insertion_baseline="zero",
                                             batch_size=args.batch)
            a.update(cm, x, maps, cls)
            return a.compute()["deletion_auc"]

        def di_torchcam() -> float:
            m = DeletionInsertionMetric(FixedMaps(module, maps), sm, steps=args.steps,
                                        batch_size=args.batch)
            m.update(x, class_idx=cls)
            return m.summary()["deletion_auc"]

        def road_camloc() -> float:
            a = ROADAccumulator(noise_space="input", batch_size=args.batch)
            a.update(cm, x, maps, cls)
            return a.compute()["combined"]

        def road_pgc() -> float:
            return float(np.mean(ROADCombined()(x, cams_np, targets, module)))

        img = x[0].double().numpy()
        first = relevance_order(maps[:1])[0].numpy()

        def removed(pct: int) -> np.ndarray:
            r = np.zeros(first.size, bool)
            r[first[: first.size * pct // 100]] = True
            return r.reshape(img.shape[1:])

        def impute_camloc(pct: int) -> float:
            return float(noisy_linear_impute(img, removed(pct)).mean())

        def impute_pgc(pct: int) -> float:
            keep = torch.from_numpy((~removed(pct)).astype(np.float32))
            return float(NoisyLinearImputer(noise=0)(torch.from_numpy(img).float(), keep).mean())

        cases = {"ad": ("Average Drop", ad_camloc, [("torchcam", ad_torchcam), ("grad-cam", ad_pgc)]),
                 "di": (f"Deletion/Insertion ({args.steps} steps)", di_camloc,
                        [("torchcam", di_torchcam)]),
                 "road": ("ROAD MoRF+LeRF (9 percentiles)", road_camloc, [("grad-cam", road_pgc)])}
        if "impute" not in skip:
            for pct in (10, 50, 90):
                cases[f"impute{pct}"] = (f"ROAD imputation, {pct} % removed (s / call)",
                                         functools.partial(impute_camloc, pct),
                                         [("grad-cam", functools.partial(impute_pgc, pct))])
        for key, (label, ours, peers) in cases.items():
            if key in skip:
                continue
            fns = [("camloc", ours), *peers]
            for _, fn in fns:  # warm-up
                fn()
            times: dict[str, list[float]] = {lib: [] for lib, _ in fns}
            values: dict[str, float] = {}
            per = 1 if key.startswith("impute") else args.n
            for _ in range(args.rounds):
                for lib, fn in fns:
                    t, v = timed(fn)
                    times[lib].append(t / per)
                    values[lib] = v
            med = {lib: statistics.median(ts) for lib, ts in times.items()}
            for lib, _ in fns:
                ratio = "1.00 (camloc)" if lib == "camloc" else f"{med['camloc'] / med[lib]:.2f}"
                rows.append((name, label, lib, med[lib], ratio, f"{values[lib]:.6f}"))
            print(f"{name} {label}: " + ", ".join(f"{k} {v:.4f} s/img" for k, v in med.items()),
                  flush=True)
    print(f"\n{args.n} images at the model's input size, batch {args.batch}, "
          f"{torch.get_num_threads()} torch threads, {args.rounds} rounds (median)\n")
    print("| model | metric | library | s / image | camloc / library | value |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.4f} | {r[4]} | {r[5]} |")


if __name__ == "__main__":
    main()
