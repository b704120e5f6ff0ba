"""Models: loading or wrapping classifiers, their target layers, and their GAP -> linear head.

``zoo`` builds named networks, ``loader`` turns them (or any ``nn.Module``, via ``wrap``) into a
:class:`CamModel`, ``layers`` resolves target layers and reads their outputs as maps, ``heads``
finds and verifies the GAP -> linear head exact CAM needs, ``spec`` holds preprocessing and class
names, ``pooling`` the one global pooling (GAP/GMP), ``gapnet``/``archs`` are the networks
camloc trains.
"""

from camloc.models.gapnet import GapNet
from camloc.models.heads import GapHead, discover_gap_head, find_gap_head
from camloc.models.layers import LayerTap, MapLayout, resolve_layers
from camloc.models.loader import CamModel, load_model, resolve_device, wrap
from camloc.models.spec import Geometry, ModelSpec, Preprocess
from camloc.models.zoo import DEFAULT_MODEL

__all__ = ["CamModel", "DEFAULT_MODEL", "GapHead", "GapNet", "Geometry", "LayerTap", "MapLayout",
           "ModelSpec", "Preprocess", "discover_gap_head", "find_gap_head", "load_model",
           "resolve_device", "resolve_layers", "wrap"]
