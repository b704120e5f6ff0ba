"""Speed of camloc's map methods against torchcam and pytorch-grad-cam, same models, same inputs.

For each model, batch size and method, the three libraries run interleaved round by round (so
machine noise hits all alike) and the median (and min) seconds per call are reported with the
ratios camloc / torchcam and camloc / pytorch-grad-cam. One call = the maps of one class per image
(each image's top-1) from an input batch:

  camloc             engine(x, classes=1), then upsample (bilinear) to the input and min-max
                     normalise (so its output matches pytorch-grad-cam's)
  torchcam           model(x) + extractor(class_idx, scores) (maps at the layer's resolution)
  pytorch-grad-cam   cam(x, targets) (maps at the input's resolution, min-max normalised)

Score-CAM and Ablation-CAM use every channel of the layer as a mask in all libraries (the same
number of forward passes), batched 64 rows at a time (torchcam/pytorch-grad-cam: their batch_size
set to 64 too).

Usage: python benchmarks/bench_methods.py [--models resnet18 efficientnet_lite0] [--batches 1 16]
       [--methods gradcam gradcam++ ...] [--rounds 5] [--size 224] [--perturbation-size 112]
       [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's progress bars

import torch  # noqa: E402

import camloc  # noqa: E402
from camloc.cams import make_method, normalize, upsample  # noqa: E402

GRADIENT = ["gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "smoothgradcam++"]
PERTURBATION = ["scorecam", "ablationcam"]
TORCHCAM = {"gradcam": "GradCAM", "gradcam++": "GradCAMpp", "xgradcam": "XGradCAM",
            "layercam": "LayerCAM", "smoothgradcam++": "SmoothGradCAMpp", "scorecam": "ScoreCAM"}
GRADCAM_LIB = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "xgradcam": "XGradCAM",
               "layercam": "LayerCAM", "hirescam": "HiResCAM", "scorecam": "ScoreCAM",
               "ablationcam": "AblationCAM"}
SMOOTH_SAMPLES = 4  # torchcam's default number of noise samples
CHUNK = 64


def build(name: str) -> tuple[camloc.CamModel, str]:
    torch.manual_seed(0)
    model = camloc.load_model() if name == "efficientnet_lite0" else camloc.load_model(name, weights=None)
    return model, model.layers[0]


def runners(model: camloc.CamModel, layer: str, method: str, x: torch.Tensor
            ) -> dict[str, Callable[[], object]]:
    """One zero-argument callable per library computing the maps of each image's top-1 class.

    Each call builds the library's extractor and removes its hooks afterwards (cheap for all
    three), so no library's hooks run during another's passes.
    """
    net = model.module.eval()
    with torch.no_grad():
        top1 = net(x).argmax(1).tolist()
    module = net.get_submodule(layer)
    out: dict[str, Callable[[], object]] = {}
    opts = {"smooth": SMOOTH_SAMPLES} if method == "smoothgradcam++" else {}

    def run_camloc() -> object:
        engine = make_method(model, method, batch_size=CHUNK, **opts)
        maps = engine(x, classes=torch.tensor(top1)[:, None]).maps
        return normalize(upsample(maps, (x.shape[-2], x.shape[-1]), "bilinear"), "minmax")

    out["camloc"] = run_camloc
    if method in TORCHCAM:
        import torchcam.methods as tc

        kwargs: dict[str, object] = {}
        if method == "smoothgradcam++":
            kwargs["num_samples"] = SMOOTH_SAMPLES
        if method == "scorecam":
            kwargs["batch_size"] = CHUNK
        cls = getattr(tc, TORCHCAM[method])

        def run_torchcam() -> object:
            with cls(net, layer, **kwargs) as extractor:
                if method == "scorecam":
                    with torch.no_grad():
                        net(x)
                    return extractor(top1)
                if method == "smoothgradcam++":
                    net(x)
                    maps = extractor(top1)
                else:
                    maps = extractor(top1, net(x))
            net.zero_grad(set_to_none=True)
            return maps

        out["torchcam"] = run_torchcam
    if method in GRADCAM_LIB:
        import pytorch_grad_cam as gc
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        kwargs = {"batch_size": CHUNK} if method == "ablationcam" else {}
        gcls = getattr(gc, GRADCAM_LIB[method])
        targets = [ClassifierOutputTarget(c) for c in top1]

        def run_gradcam_lib() -> object:
            with gcls(net, [module], **kwargs) as cam:
                if method == "scorecam":
                    cam.batch_size = CHUNK
                maps = cam(x, targets)
            net.zero_grad(set_to_none=True)
            return maps

        out["pytorch-grad-cam"] = run_gradcam_lib
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet18", "efficientnet_lite0"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    ap.add_argument("--methods", nargs="+", default=GRADIENT + PERTURBATION)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--perturbation-rounds", type=int, default=2)
    ap.add_argument("--size", type=int, default=224, help="input side for gradient methods")
    ap.add_argument("--perturbation-size", type=int, default=112,
                    help="input side for Score-CAM / Ablation-CAM (K forward passes per image)")
    ap.add_argument("--perturbation-batches", nargs="+", type=int, default=[1])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, CPU; seconds per call "
          f"(median of rounds; min in brackets); ratios of medians\n")
    print("| model | batch | input | method | camloc s | torchcam s | grad-cam s | camloc / torchcam "
          "| camloc / grad-cam |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        model, layer = build(name)
        for method in args.methods:
            perturb = method in PERTURBATION
            size = args.perturbation_size if perturb else args.size
            for batch in (args.perturbation_batches if perturb else args.batches):
                gen = torch.Generator().manual_seed(batch)
                x = torch.randn(batch, 3, size, size, generator=gen)
                fns = runners(model, layer, method, x)
                for fn in fns.values():  # warm-up
                    fn()
                times: dict[str, list[float]] = {k: [] for k in fns}
                for _ in range(args.perturbation_rounds if perturb else args.rounds):
                    for lib, fn in fns.items():
                        t0 = time.perf_counter()
                        fn()
                        times[lib].append(time.perf_counter() - t0)
                med = {k: statistics.median(v) for k, v in times.items()}

                def cellv(lib: str) -> str:
                    return f"{med[lib]:.3f} [{min(times[lib]):.3f}]" if lib in med else "-"

                def ratio(lib: str) -> str:
                    return f"{med['camloc'] / med[lib]:.2f}x" if lib in med else "-"

                print(f"| {name} ({layer}) | {batch} | {size} | {method} | {cellv('camloc')} | "
                      f"{cellv('torchcam')} | {cellv('pytorch-grad-cam')} | {ratio('torchcam')} | "
                      f"{ratio('pytorch-grad-cam')} |", flush=True)


if __name__ == "__main__":
    main()
