"""Compatibility name for :mod:`camloc.evaluation.evaluate` (the code lives in the
:mod:`camloc.evaluation` package; ``from camloc.evaluate import evaluate_model`` keeps working)."""

from camloc.evaluation.evaluate import *  # noqa: F401,F403
from camloc.evaluation.evaluate import __all__  # noqa: F401
