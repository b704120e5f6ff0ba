"""``compare --calibration-split``: the held-out share of a dataset a calibration pass chooses
each method's threshold on (thresholds read from a number or a file: see
:mod:`camloc.evaluation.calibration`, the one reader of ``--calibrate`` for every verb).

>>> holdout_indices(10, 20)
[4, 9]
"""

from __future__ import annotations

import re

from camloc.errors import ConfigError

__all__ = ["holdout_indices", "parse_holdout"]


_HOLDOUT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def parse_holdout(text: str) -> float | None:
    """``"20%"`` -> 20.0 (a held-out share of the data); a split name -> None."""
    m = _HOLDOUT.match(text)
    if m is None:
        return None
    pct = float(m.group(1))
    if not 0 < pct < 100:
        raise ConfigError(f"--calibration-split {text!r}: the held-out share must be in (0%, 100%)")
    return pct


def holdout_indices(n: int, percent: float) -> list[int]:
    """Evenly spread indices of ``percent`` % of ``n`` items: item ``i`` is held out when
    ``floor((i + 1) p / 100) > floor(i p / 100)`` (deterministic, no random state)."""
    return [i for i in range(n) if int((i + 1) * percent // 100) > int(i * percent // 100)]
