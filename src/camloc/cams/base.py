"""Deprecated alias: the engine now lives in :mod:`camloc.cams.engine` (methods in ``exact``,
``gradient``, ``perturbation``, ``projection``; ``upsample``/``normalize`` in ``postprocess``)."""

from camloc.cams.engine import CAMMethod, CamOutput, ClassSelection, select_classes
from camloc.cams.exact import CAM
from camloc.cams.gradient import GradCAM
from camloc.cams.postprocess import normalize, upsample

__all__ = ["CAM", "CAMMethod", "CamOutput", "ClassSelection", "GradCAM", "normalize",
           "select_classes", "upsample"]
