"""The ImageNet-1k class list (synsets and names, in the standard sorted-synset order that
torchvision and timm use): data, not a model, so dataset readers use it without importing
``camloc.models`` (which re-exports both functions).

>>> syns, names = imagenet_synsets(), imagenet_class_names()
>>> len(syns), syns[0], names[0].split(",")[0]
(1000, 'n01440764', 'tench')
"""

from __future__ import annotations

__all__ = ["imagenet_class_names", "imagenet_synsets"]


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names, in the standard sorted-synset order (from timm)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i) for i in range(1000)]


def imagenet_synsets() -> list[str]:
    """The 1000 ImageNet-1k WordNet synset ids (``n01440764``, ...) in class-id order, from timm."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_label_name(i) for i in range(1000)]
