"""What travels with a model: preprocessing and class names.

:class:`Preprocess` and :class:`Geometry` live in :mod:`camloc.preprocess` (below the models, so
data and metrics use them without importing ``camloc.models``) and are re-exported here.
A :class:`Preprocess` describes how an image becomes the network's input and, just as important,
how to go back: :meth:`Preprocess.geometry` returns the affine map between original pixels and
input pixels, which camloc uses to put maps and boxes back on the original image.

>>> p = Preprocess(input_size=(224, 224), fit="stretch")
>>> g = p.geometry(width=448, height=224)
>>> g.to_original_boxes([[0, 0, 224, 224]]).tolist()
[[0.0, 0.0, 448.0, 224.0]]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from camloc.preprocess import FIT_MODES, INTERPOLATIONS, Geometry, Preprocess

__all__ = ["Preprocess", "Geometry", "ModelSpec", "FIT_MODES", "INTERPOLATIONS"]


@dataclass
class ModelSpec:
    """Everything about a model that is not its weights."""

    name: str
    num_classes: int
    class_names: list[str]
    preprocess: Preprocess = field(default_factory=Preprocess)
    source: str = ""  # where the weights came from (file path, package, URL)
    extra: dict[str, Any] = field(default_factory=dict)

    def class_name(self, idx: int) -> str:
        return self.class_names[idx] if 0 <= idx < len(self.class_names) else f"class_{idx}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "preprocess": self.preprocess.to_dict(),
            "source": self.source,
            "extra": self.extra,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)
