"""Class-specific units and the patterns they detect (Zhou et al., CVPR 2016, section 5).

Behind a GAP -> linear head the class score is a sum over the units of the last feature map:
``logit_c = sum_k W[c, k] * mean_xy f'_k + b_c``. So ``W[c, k]`` (and ``W[c, k]`` times the unit's
mean activation on the class's images) ranks the units a class relies on, and each unit's map
shows where its pattern is. This package finds, in one pass over a dataset:

- per class: its units ranked by contribution and by weight, with each unit's share of the score;
- per unit: its top-activating images and the region where it fires (network-dissection
  threshold), the classes that use it most, its purity and, with boxes, how much of its region
  lies on the object; random-unit baselines for each figure.

>>> import camloc                                                          # doctest: +SKIP
>>> from camloc.units import analyze_units, open_units_data                # doctest: +SKIP
>>> report = analyze_units(camloc.load_model(), open_units_data("imagenet-val-dev"))  # doctest: +SKIP

``camloc units DATASET`` runs the same and writes ``units.json``, ``units.html`` and PNG sheets
(see :mod:`camloc.units.run`). Definitions: :mod:`camloc.units.analysis`.
"""

from camloc.units.analysis import build_report
from camloc.units.collect import collect_units
from camloc.units.contrib import (Contributions, check_layer, feature_layer_names, gap_head,
                                  unit_contributions)
from camloc.units.data import UnitItem, UnitsData, align_labels, open_units_data
from camloc.units.run import UnitsResult, UnitsSettings, analyze_units, run_units
from camloc.units.sketch import QuantileSketch
from camloc.units.state import UnitsState
from camloc.units.topk import TopImages

__all__ = ["Contributions", "QuantileSketch", "TopImages", "UnitItem", "UnitsData", "UnitsResult",
           "UnitsSettings", "UnitsState", "align_labels", "analyze_units", "build_report",
           "check_layer", "collect_units", "feature_layer_names", "gap_head", "open_units_data",
           "run_units", "unit_contributions"]
