"""Datasets and images: readers for WSOL metadata formats (:mod:`camloc.data.datasets`) and the
procedural synthetic dataset (:mod:`camloc.data.synth`). Import from the submodules."""
