"""Every method on every model family: a map where the method makes sense, a clear refusal where not.

The test runs each family at a small input (64x64; the timm transformers built for that size) and
runs Score-CAM (one forward pass of the whole network per channel) only on the families whose
passes are cheap; the script runs every cell. Run it for the table in docs/methods.md, at the
models' own input sizes::

    PYTHONPATH=src python tests/cams/test_model_matrix.py            # native sizes (slow on CPU)
    PYTHONPATH=src python tests/cams/test_model_matrix.py --small    # the test's sizes

Score-CAM runs one forward pass of the whole network per channel of the layer (512 to 1280 here),
which takes minutes per cell on a small CPU at 224 px; ``--scorecam-size vgg16=64 swin_tiny=128``
runs those cells at a smaller stated input (timm models are rebuilt for that size, Swin with
windows of size / 32), marked ``@Npx`` in the table.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import torch

MODELS = ["resnet18", "vgg16", "mobilenet_v3_large", "vit_tiny", "swin_t", "swin_tiny", "convnext_tiny",
          "efficientnet_lite0"]
#: the cells that must be refused: exact CAM on models without a GAP -> linear head
REFUSED = {("vgg16", "cam"), ("mobilenet_v3_large", "cam"), ("vit_tiny", "cam")}
#: Score-CAM in the test only where K full forward passes are quick (the script runs all)
SCORECAM_IN_TEST = {"resnet18", "mobilenet_v3_large", "vit_tiny", "efficientnet_lite0"}
SAMPLE = Path(__file__).resolve().parents[2] / "src" / "camloc" / "assets" / "samples" / "chelsea.jpg"


def build(name: str, small: bool, size: int | None = None):
    """``(CamModel, input size)``; random weights (seeded) except efficientnet_lite0's real ones.

    ``size`` overrides the input side (``small``: 64; otherwise 224, the models' own)."""
    import camloc

    torch.manual_seed(0)
    size = size or (64 if small else 224)
    if name == "efficientnet_lite0":
        return camloc.load_model(), size
    if name in ("vit_tiny", "swin_tiny"):
        import timm

        arch = {"vit_tiny": "vit_tiny_patch16_224", "swin_tiny": "swin_tiny_patch4_window7_224"}[name]
        if size == 224:
            return camloc.load_model(f"timm:{arch}", weights=None), 224
        extra = {"window_size": size // 32} if name == "swin_tiny" else {}
        net = timm.create_model(arch, img_size=size, **extra)
        return camloc.wrap(net, input_size=(size, size), name=name), size
    return camloc.load_model(name, weights=None), size


def photo(model, size: int) -> torch.Tensor:
    from camloc.data.images import batch_images, load_image

    pre = model.spec.preprocess.with_(input_size=(size, size), fit="stretch")
    x, _ = batch_images([load_image(SAMPLE)], pre)
    return x


def cell(model, method: str, x: torch.Tensor, **options) -> dict:
    """Run one method: ``{"status": "map", ...}`` or ``{"status": "refused", ...}``."""
    from camloc.cams import make_method
    from camloc.errors import UnsupportedHeadError

    t0 = time.perf_counter()
    try:
        out = make_method(model, method, batch_size=256, **options)(x, classes=1)
    except UnsupportedHeadError as exc:
        return {"status": "refused", "error": type(exc).__name__, "message": str(exc)}
    return {"status": "map", "maps": out.maps, "layers": out.layers,
            "seconds": time.perf_counter() - t0}


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_every_method_on_every_family(name):
    from camloc.cams import METHODS

    model, size = build(name, small=True)
    x = photo(model, size)
    for method in METHODS:
        if method == "scorecam" and name not in SCORECAM_IN_TEST:
            continue
        got = cell(model, method, x, smooth=2 if method == "smoothgradcam++" else None)
        if (name, method) in REFUSED:
            assert got["status"] == "refused", (name, method)
            assert got["error"] == "UnsupportedHeadError"
            assert "exact CAM needs global average pooling followed by one linear layer" in got["message"]
            assert "Methods that work on it: gradcam, gradcam++, xgradcam" in got["message"]
            continue
        assert got["status"] == "map", (name, method, got.get("message"))
        maps = got["maps"]
        assert maps.shape[:2] == (1, 1) and maps.shape[2] * maps.shape[3] >= 2, (name, method)
        assert torch.isfinite(maps).all(), (name, method)
        assert got["layers"] == model.layers
        if name == "efficientnet_lite0":  # real weights, a real photo: a map with content
            assert float(maps.abs().max()) > 0, method


def main() -> None:
    import argparse

    from camloc.cams import METHODS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="the test's small inputs")
    ap.add_argument("--models", nargs="*", default=MODELS)
    ap.add_argument("--methods", nargs="*", default=list(METHODS))
    ap.add_argument("--scorecam-size", nargs="*", default=[], metavar="MODEL=SIZE",
                    help="run Score-CAM on MODEL at SIZE x SIZE (K full forward passes per image)")
    args = ap.parse_args()
    methods = args.methods
    score_size = {k: int(v) for k, v in (item.split("=") for item in args.scorecam_size)}
    torch.set_grad_enabled(True)
    print("| model (input) | target layer | " + " | ".join(methods) + " |")
    print("|---|---|" + "---|" * len(methods))
    messages = {}
    for name in args.models:
        model, size = build(name, small=args.small)
        x = photo(model, size)
        row = []
        for method in methods:
            at = ""
            if method == "scorecam" and score_size.get(name, size) != size:
                small_model, small_size = build(name, args.small, score_size[name])
                got = cell(small_model, method, photo(small_model, small_size))
                at = f" @{small_size}px"
            else:
                got = cell(model, method, x)
            if got["status"] == "refused":
                row.append("refused")
                messages[name] = got["message"]
            else:
                h, w = got["maps"].shape[-2:]
                row.append(f"{h}x{w}, {got['seconds']:.1f}s{at}")
            print(f"  {name} {method}: {row[-1]}", file=sys.stderr, flush=True)
        print(f"| {name} ({size}) | {', '.join(model.layers)} | " + " | ".join(row) + " |", flush=True)
    for name, msg in messages.items():
        print(f"\n{name} / cam: UnsupportedHeadError: {msg}")


if __name__ == "__main__":
    main()
