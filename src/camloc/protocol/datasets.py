"""Datasets as the WSOL verbs read them: opened with the command line's options
(:func:`open_eval_dataset`) and checked against the model that scores them
(:func:`check_fits_model`: class ids that mean the model's classes, renumbered by WordNet id where
both have them; metadata sizes that agree with the image headers). Shared by ``evaluate``,
``compare``, ``score`` and the localizer's fit.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from camloc.models.loader import CamModel

__all__ = ["check_classes", "check_fits_model", "fit_classes", "open_eval_dataset"]


def open_eval_dataset(path: str | os.PathLike[str], fmt: str = "auto", split: str | None = None,
                      image_root: str | os.PathLike[str] | None = None,
                      synsets: str | os.PathLike[str] | None = None,
                      num_classes: int | None = None) -> Any:
    """:func:`camloc.data.open.open_dataset` with the CLI's ``--image-root``, ``--synsets`` and
    ``--num-classes`` (``None``: not given; passed only when given, so a format that does not
    take one refuses it by name)."""
    from camloc.data.open import open_dataset

    kw: dict[str, Any] = {}
    if image_root is not None:
        kw["image_root"] = str(image_root)
    if synsets is not None:
        kw["synsets"] = str(synsets)
    if num_classes is not None:
        kw["num_classes"] = num_classes
    return open_dataset(path, format=fmt, split=split, **kw)


def _model_synsets(model: CamModel) -> list[str] | None:
    """The model's WordNet ids when it is an ImageNet-1k classifier (its class names are
    ImageNet's), else ``None``."""
    if model.spec.num_classes != 1000:
        return None
    try:
        from camloc.data.imagenet import imagenet_class_names, imagenet_synsets

        if list(model.spec.class_names) != list(imagenet_class_names()):
            return None
        return imagenet_synsets()
    except Exception:  # noqa: BLE001 - timm's synset list unavailable: compare names only
        return None


def check_classes(model: CamModel, dataset: Any) -> None:
    """Refuse a dataset whose class ids do not mean the model's classes
    (:func:`camloc.data.classes.check_model_classes`; raises :class:`~camloc.errors.DatasetError`)."""
    from camloc.data.classes import check_model_classes

    check_model_classes(dataset, model.spec.num_classes, model.spec.class_names,
                        synsets=_model_synsets(model))


def fit_classes(model: CamModel, dataset: Any) -> Any:
    """``dataset`` numbered as ``model`` numbers its classes: renumbered by WordNet id where both
    have them (an ImageNet subset whose classes are ``n01440764``-style ids, in any layout,
    onto an ImageNet model), else unchanged; raises :class:`~camloc.errors.DatasetError` where
    the classes do not match (:func:`camloc.data.classes.fit_to_model_classes`)."""
    from camloc.data.classes import fit_to_model_classes

    return fit_to_model_classes(dataset, model.spec.num_classes, model.spec.class_names,
                                synsets=_model_synsets(model))


def check_fits_model(model: CamModel, dataset: Any) -> Any:
    """Refuse a dataset that would give silently wrong figures with ``model``: class ids that do not
    mean the model's classes (:func:`fit_classes`), or metadata sizes that disagree with the image
    headers (boxes would be rescaled from the wrong size; ``dataset.check_sizes()``). Raises
    :class:`~camloc.errors.DatasetError` naming the file and line. Returns the dataset to score:
    renumbered into the model's classes where its classes are WordNet ids (:func:`fit_classes`)."""
    dataset = fit_classes(model, dataset)
    if hasattr(dataset, "check_sizes"):
        dataset.check_sizes()
    return dataset
