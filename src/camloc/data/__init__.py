"""Datasets and images.

:mod:`camloc.data.datasets` (``open_dataset``, ``Sample``, ``Dataset``; one reader module per
format under :mod:`camloc.data.formats`), :mod:`camloc.data.images` (decoding, reduced decoding,
network input), :mod:`camloc.data.batches` (the one batch runner every verb reads its images
through: decoded off the main thread, in order, failures reported), :mod:`camloc.data.sizes` and
:mod:`camloc.data.classes` (checks against the images and against a model),
:mod:`camloc.data.paths` (image ids as paths) and :mod:`camloc.data.synth` (the procedural
synthetic dataset). Import from the submodules.
"""
