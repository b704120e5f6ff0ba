"""camloc: Class Activation Mapping and weakly-supervised object localization.

Three lines from an image to maps and boxes::

    import camloc
    model = camloc.load_model("efficientnet_lite0")          # offline ImageNet weights
    result = camloc.explain(model, "photo.jpg", top_k=3)      # logits, CAMs and boxes
"""

from __future__ import annotations

from camloc.errors import (
    CamlocError,
    CheckpointError,
    ConfigError,
    DatasetError,
    ImageError,
    MetricError,
    ModelError,
    UnsupportedHeadError,
    WeightsError,
)

__version__ = "0.1.0"

from camloc.models import CamModel, load_model, wrap  # noqa: E402
from camloc.explain import Explanation, explain  # noqa: E402

__all__ = [
    "__version__",
    "CamModel",
    "Explanation",
    "explain",
    "load_model",
    "wrap",
    "CamlocError",
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "ImageError",
    "MetricError",
    "ModelError",
    "UnsupportedHeadError",
    "WeightsError",
]
