"""Models: loading classifiers with their preprocessing, and finding their GAP -> linear head."""

from camloc.models.gapnet import GapNet
from camloc.models.heads import GapHead, find_gap_head
from camloc.models.registry import DEFAULT_MODEL, CamModel, load_model, resolve_device
from camloc.models.spec import Geometry, ModelSpec, Preprocess

__all__ = ["CamModel", "DEFAULT_MODEL", "GapHead", "GapNet", "Geometry", "ModelSpec", "Preprocess",
           "find_gap_head", "load_model", "resolve_device"]
