"""Threshold calibration the WSOL way: a threshold chosen on one split, applied to another.

Choe et al. (CVPR 2020) showed that picking the box threshold on the split you report inflates the
figure: the best of 100 thresholds is chosen *with* the test labels. The fair figure uses a
threshold chosen on held-out data. camloc takes that threshold from:

* a number (every method);
* a camloc ``evaluate`` ``report.json`` (its best largest-contour threshold,
  ``localization.maxboxacc_v1.threshold``; every method: that report is for one method);
* a camloc ``compare.json`` (each method's own best threshold on that run's split);
* a calibration pass over another split or a held-out share of the data (``--calibration-split``,
  see :func:`holdout_indices`), which chooses each method's best threshold there.

>>> holdout_indices(10, 20)
[4, 9]
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from camloc.errors import ConfigError

__all__ = ["Calibration", "load_calibration", "holdout_indices", "parse_holdout"]


class Calibration:
    """Per-method thresholds and where they came from (``source``: text for the report)."""

    def __init__(self, thresholds: dict[str, float], source: str, default: float | None = None,
                 split: str | None = None) -> None:
        self.thresholds = dict(thresholds)
        self.default = default
        self.source = source
        self.split = split

    def threshold(self, method: str) -> float | None:
        """The threshold for ``method`` (its own, else the one shared by all), or None."""
        return self.thresholds.get(method, self.default)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"source": self.source, "thresholds": dict(self.thresholds)}
        if self.default is not None:
            d["all_methods"] = self.default
        if self.split is not None:
            d["split"] = self.split
        return d


def _grid(tau: float, where: str) -> float:
    if not (0.0 <= tau < 1.0):
        raise ConfigError(f"{where}: threshold {tau!r} is not in [0, 1)")
    return round(tau, 6)


def load_calibration(value: str | float | None, methods: Sequence[str]) -> Calibration | None:
    """``--calibrate``: a number, an ``evaluate`` report.json or a ``compare.json`` (see the
    module docstring). A compare.json must hold every method in ``methods``.

    Raises:
        ConfigError: an unreadable file, or one without the thresholds, naming the file and key.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        tau = float(value)
    except (TypeError, ValueError):
        pass
    else:
        return Calibration({}, f"--calibrate {tau}", default=_grid(tau, "--calibrate"))
    path = Path(str(value)).expanduser()
    try:
        rep = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"--calibrate {value}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ConfigError(f"--calibrate {value}: not JSON ({exc})") from None
    if not isinstance(rep, dict):
        raise ConfigError(f"--calibrate {value}: expected a JSON object (a camloc report.json or "
                          "compare.json)")
    if isinstance(rep.get("methods"), dict):  # compare.json
        found: dict[str, float] = {}
        missing = []
        for m in methods:
            try:
                t = float(rep["methods"][m]["localization"]["maxboxacc_v1"]["threshold"])
            except (KeyError, TypeError, ValueError):
                missing.append(m)
                continue
            found[m] = _grid(t, f"--calibrate {value}: methods.{m}")
        if missing:
            have = ", ".join(sorted(rep["methods"])) or "none"
            raise ConfigError(f"--calibrate {value}: no localization.maxboxacc_v1.threshold for "
                              f"method(s) {', '.join(missing)} (the file has: {have})")
        split = (rep.get("dataset") or {}).get("split")
        return Calibration(found, f"compare.json {path}", split=split)
    try:
        t = float(rep["localization"]["maxboxacc_v1"]["threshold"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"--calibrate {value}: neither a compare.json (methods.<name>...) nor an "
                          "evaluate report.json with localization.maxboxacc_v1.threshold") from None
    split = (rep.get("dataset") or {}).get("split")
    return Calibration({}, f"report.json {path}", default=_grid(t, f"--calibrate {value}"),
                       split=split)


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
