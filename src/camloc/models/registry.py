"""Deprecated alias of :mod:`camloc.models.loader` (and :mod:`camloc.models.zoo`).

``camloc.models.registry`` was the loader's old name; import from ``camloc.models`` (or
``camloc.models.loader`` / ``camloc.models.zoo``) instead. Kept so existing imports keep working.
"""

from camloc.models.loader import CamModel, apply_head_dir, load_model, resolve_device, wrap
from camloc.models.zoo import (DEFAULT_MODEL, imagenet_class_names, load_state_dict_file,
                               resolve_zoo_name)

_apply_head = apply_head_dir  # old private name, used by camloc.probe.run

__all__ = ["CamModel", "DEFAULT_MODEL", "apply_head_dir", "imagenet_class_names", "load_model",
           "load_state_dict_file", "resolve_device", "resolve_zoo_name", "wrap"]
