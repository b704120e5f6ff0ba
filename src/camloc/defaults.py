"""camloc's default values, in one place (import-light: plain Python constants).

The library's signatures, the CLI's options and the documentation take their defaults from here,
so that changing one changes it everywhere.
"""

from __future__ import annotations

__all__ = ["DEFAULT_MODEL", "DEFAULT_THRESHOLD", "DEFAULT_NORMALIZATION", "DEFAULT_TOP_K",
           "DEFAULT_BATCH_SIZE", "IMAGENET_MEAN", "IMAGENET_STD", "CALIBRATION_MAX_BYTES"]

#: The model ``camloc.load_model()`` and every verb use when none is named.
DEFAULT_MODEL = "efficientnet_lite0"
#: Box threshold, as a fraction of the map maximum, when none is given or calibrated (the WSOL
#: literature's usual fixed threshold).
DEFAULT_THRESHOLD = 0.2
#: Map normalisation before thresholding in ``camloc explain`` ("max": divide by the maximum).
DEFAULT_NORMALIZATION = "max"
#: Classes explained per image when none are named.
DEFAULT_TOP_K = 5
#: Images per forward pass of ``camloc explain``.
DEFAULT_BATCH_SIZE = 16
#: ImageNet's per-channel mean and standard deviation of RGB values in [0, 1].
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: Largest report file ``--calibrate`` reads (a camloc report is a few kB to a few MB).
CALIBRATION_MAX_BYTES = 64 * 2**20
