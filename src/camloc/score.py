"""Compatibility name for :mod:`camloc.evaluation.score` (the code lives in the
:mod:`camloc.evaluation` package; ``from camloc.score import score_maps`` keeps working)."""

from camloc.evaluation.score import *  # noqa: F401,F403
from camloc.evaluation.score import __all__  # noqa: F401
