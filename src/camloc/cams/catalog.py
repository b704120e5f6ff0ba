"""What every map method is, in one table that needs no torch (``camloc methods`` and CLI help read it).

Each entry: the method's registry name, family, paper, the cost of one call in passes through the
network, whether it needs the verified GAP -> linear head (only exact ``cam``) and gradients, and a
one-line summary. The method classes (``camloc.cams``) take their metadata from here.

>>> CATALOG["gradcam"].family, CATALOG["cam"].needs_head
('gradient', True)
>>> [m.name for m in CATALOG.values() if m.needs_head]
['cam']
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["CATALOG", "FAMILIES", "MethodInfo", "method_names"]

FAMILIES = ("exact", "gradient", "perturbation", "projection")


@dataclass(frozen=True)
class MethodInfo:
    """Metadata of one map method."""

    name: str
    family: str
    summary: str
    paper: str
    cost: str
    needs_head: bool = False
    needs_grad: bool = False
    class_specific: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_ENTRIES = (
    MethodInfo("cam", "exact", "classifier weights x the pooled layer's maps; mean + bias = logit",
               "Zhou et al., CVPR 2016, arXiv:1512.04150", "1 forward (all classes: one matrix product)",
               needs_head=True),
    MethodInfo("gradcam", "gradient", "spatially averaged gradients weigh the channels, then ReLU",
               "Selvaraju et al., ICCV 2017, arXiv:1610.02391",
               "1 forward + k backward from the layer", needs_grad=True),
    MethodInfo("gradcam++", "gradient", "positive gradients weighted by second/third-order alphas",
               "Chattopadhay et al., WACV 2018, arXiv:1710.11063",
               "1 forward + k backward from the layer", needs_grad=True),
    MethodInfo("xgradcam", "gradient", "gradients weighted by each channel's normalised activations",
               "Fu et al., BMVC 2020, arXiv:2008.02312",
               "1 forward + k backward from the layer", needs_grad=True),
    MethodInfo("hirescam", "gradient", "element-wise gradient x activation summed over channels",
               "Draelos & Carin, 2020, arXiv:2011.08891",
               "1 forward + k backward from the layer", needs_grad=True),
    MethodInfo("layercam", "gradient", "positive gradients weigh every location of every channel",
               "Jiang et al., IEEE TIP 2021, doi:10.1109/TIP.2021.3089943",
               "1 forward + k backward from the layer", needs_grad=True),
    MethodInfo("smoothgradcam++", "gradient", "Grad-CAM++ with gradients averaged over noisy inputs",
               "Omeiza et al., 2019, arXiv:1908.01224",
               "1 + n forward + n*k backward from the layer (n noise samples, default 8)",
               needs_grad=True),
    MethodInfo("scorecam", "perturbation", "softmax of the class score of the input masked by each "
               "upsampled channel", "Wang et al., CVPR-W 2020, arXiv:1910.01279",
               "1 + K forward (K = the layer's channels), batched"),
    MethodInfo("ablationcam", "perturbation", "relative score drop when each channel is zeroed",
               "Desai & Ramaswamy, WACV 2020, doi:10.1109/WACV45572.2020.9093360",
               "1 forward + K forward above the layer (K channels), batched"),
    MethodInfo("eigencam", "projection", "projection on the first principal component of the "
               "layer's activations (class-agnostic)", "Muhammad & Yeasin, IJCNN 2020, "
               "arXiv:2008.00299", "1 forward + one SVD per image", class_specific=False),
)

#: name -> :class:`MethodInfo`, in the order ``camloc methods`` lists them.
CATALOG: dict[str, MethodInfo] = {m.name: m for m in _ENTRIES}


def method_names(needs_head: bool | None = None) -> list[str]:
    """Registered method names (optionally only those that do / do not need the GAP head)."""
    return [m.name for m in CATALOG.values() if needs_head is None or m.needs_head == needs_head]
