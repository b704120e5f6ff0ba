"""Map methods: exact CAM and the gradient family, sharing one engine."""

from camloc.cams.base import (CAM, CAMMethod, CamOutput, GradCAM, normalize, select_classes,
                              upsample)

METHODS = {"cam": CAM, "gradcam": GradCAM}

__all__ = ["CAM", "CAMMethod", "CamOutput", "GradCAM", "METHODS", "normalize", "select_classes",
           "upsample"]
