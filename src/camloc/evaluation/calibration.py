"""Box thresholds chosen on labelled data, read by every verb that takes ``--calibrate``.

Choe et al. (CVPR 2020) showed that picking the box threshold on the split you report inflates
the figure: the best of 100 thresholds is chosen *with* the test labels. The fair figure uses a
threshold chosen on held-out data. camloc takes that threshold from:

* a number (``evaluate``, ``score``, ``compare``: every method);
* a camloc ``evaluate`` ``report.json``: its best largest-contour threshold,
  ``localization.maxboxacc_v1.threshold`` (MaxBoxAcc V1's, i.e. GT-known Loc's), with the map
  normalisation its protocol used (``wsol``: min-max, ``paper``: max);
* a camloc ``compare.json`` (``compare`` only): each method's own best threshold on that run's
  split.

The readers:

* :func:`calibration_threshold` (``evaluate``, ``score``): a number or a report's threshold;
* :func:`read_calibration` (``explain``): a report's threshold, its normalisation and where it
  came from (:class:`ExplainCalibration`, kept in the run's manifest);
* :func:`load_calibration` (``compare``): per-method thresholds (:class:`Calibration`).

A report is read only from a regular file of at most :data:`camloc.defaults.CALIBRATION_MAX_BYTES`
(``--calibrate /dev/zero``, a FIFO or a folder is refused at once, never read). Every refusal is a
:class:`~camloc.errors.ConfigError` naming the option, the file and the reason.

>>> calibration_threshold("0.35")
0.35
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camloc.defaults import CALIBRATION_MAX_BYTES
from camloc.errors import ConfigError

__all__ = ["Calibration", "ExplainCalibration", "calibration_threshold", "load_calibration",
           "read_calibration", "read_report"]

_OPTION = "--calibrate"


def read_report(path: str | os.PathLike[str], option: str = _OPTION) -> tuple[dict[str, Any], bytes]:
    """The JSON object in ``path`` and its bytes.

    Raises:
        ConfigError: not a regular file, larger than ``CALIBRATION_MAX_BYTES``, unreadable, not
            JSON, or not a JSON object.
    """
    p = Path(path).expanduser()
    where = f"{option} {path}"
    try:
        # O_NONBLOCK: opening a FIFO does not wait for a writer; it is refused just below
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        if exc.errno == errno.EISDIR:
            raise ConfigError(f"{where}: is a folder; give a camloc report.json") from None
        raise ConfigError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"{where}: is a folder; give a camloc report.json")
        raise ConfigError(f"{where}: not a regular file (a device, FIFO or socket is never "
                          "read); give a camloc report.json")
    with os.fdopen(fd, "rb") as fh:
        if st.st_size > CALIBRATION_MAX_BYTES:
            raise ConfigError(f"{where}: {st.st_size} bytes, larger than any camloc report (the "
                              f"limit is {CALIBRATION_MAX_BYTES // 2**20} MiB)")
        try:
            raw = fh.read(CALIBRATION_MAX_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read it ({exc.strerror or exc})") from None
    if len(raw) > CALIBRATION_MAX_BYTES:
        raise ConfigError(f"{where}: larger than any camloc report (the limit is "
                          f"{CALIBRATION_MAX_BYTES // 2**20} MiB)")
    try:
        obj = json.loads(raw)
    except ValueError as exc:  # also bytes that are not UTF-8
        raise ConfigError(f"{where}: not a JSON report ({exc})") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: expected a JSON object (a camloc report.json or "
                          "compare.json)")
    return obj, raw


def _report_threshold(rep: dict[str, Any]) -> float | None:
    """``localization.maxboxacc_v1.threshold`` of an evaluate report, or None."""
    try:
        return float(rep["localization"]["maxboxacc_v1"]["threshold"])
    except (KeyError, TypeError, ValueError):
        return None


def _number(value: str | float) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def calibration_threshold(value: str | float | None) -> float | None:
    """``--calibrate`` of ``evaluate`` and ``score``: a threshold as given (its range is the
    caller's to check), or the best largest-contour threshold of an evaluate ``report.json``
    made on another split. ``None`` or ``""``: none.

    Raises:
        ConfigError: neither a number nor a readable report with that threshold.
    """
    if value is None or value == "":
        return None
    tau = _number(value)
    if tau is not None:
        return tau
    rep, _ = read_report(str(value))
    tau = _report_threshold(rep)
    if tau is None:
        raise ConfigError(f"{_OPTION} {value}: neither a threshold nor a camloc report.json with "
                          "localization.maxboxacc_v1.threshold")
    return tau


# --------------------------------------------------------------------------------------------------
# explain: one threshold with its normalisation
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExplainCalibration:
    """A box threshold chosen on labelled data, with the normalisation it was chosen under and
    where it came from (``source``: what explain's manifest keeps)."""

    threshold: float
    normalization: str
    source: dict[str, Any]


def read_calibration(path: str | os.PathLike[str], model_name: str | None = None
                     ) -> ExplainCalibration:
    """``camloc explain --calibrate``: the best threshold of a ``camloc evaluate`` report
    (MaxBoxAcc V1's, i.e. the threshold at which most images' largest-component box of the
    ground-truth class reaches IoU 0.5) with the map normalisation that protocol used (``wsol``:
    min-max, ``paper``: max). Explain the new images with both, or the threshold means something
    else.

    Per-class thresholds would need per-class curves, which evaluate's report does not hold
    (its per-image records carry no class); the global threshold is used.

    Raises:
        ConfigError: not a readable report, no box localization in it, or a report made with
            another model than ``model_name``.
    """
    p = Path(path)
    rep, raw = read_report(path)
    tau = _report_threshold(rep)
    if tau is None:
        raise ConfigError(f"{_OPTION} {p}: not a camloc evaluate report with box localization "
                          "(localization.maxboxacc_v1.threshold); run `camloc evaluate` on a "
                          "labelled dataset with boxes first")
    if not 0.0 <= tau <= 1.0:
        raise ConfigError(f"{_OPTION} {p}: threshold {tau!r} is outside [0, 1]")
    proto = rep.get("protocol") if isinstance(rep.get("protocol"), dict) else {}
    norm = proto.get("normalization")
    if norm not in ("max", "minmax"):
        norm = {"wsol": "minmax", "paper": "max"}.get(proto.get("name"), "minmax")
    made_with = (rep.get("model") or {}).get("name") if isinstance(rep.get("model"), dict) else None
    check_model(p, made_with, model_name)
    ds = rep.get("dataset") if isinstance(rep.get("dataset"), dict) else {}
    best = rep["localization"]["maxboxacc_v1"]
    source = {"kind": "calibrated", "report": str(p.resolve()),
              "report_sha256": hashlib.sha256(raw).hexdigest(),
              "metric": "maxboxacc_v1", "value": best.get("value"),
              "protocol": proto.get("name"), "normalization": norm, "model": made_with,
              "dataset": ds.get("name") or ds.get("root"), "split": ds.get("split"),
              "images": ds.get("images")}
    return ExplainCalibration(tau, norm, source)


def check_model(path: str | os.PathLike[str], made_with: str | None, model_name: str | None
                ) -> None:
    """Refuse a report made with another model (a threshold is only good for its model)."""
    if model_name is not None and made_with is not None and made_with != model_name:
        raise ConfigError(f"{_OPTION} {path}: the report was made with {made_with}, but this run "
                          f"explains with {model_name}; a threshold is only good for the model "
                          f"it was chosen for")


# --------------------------------------------------------------------------------------------------
# compare: per-method thresholds
# --------------------------------------------------------------------------------------------------


class Calibration:
    """Per-method thresholds and where they came from (``source``: text for the report)."""

    def __init__(self, thresholds: dict[str, float], source: str, default: float | None = None,
                 split: str | None = None) -> None:
        self.thresholds = dict(thresholds)
        self.default = default
        self.source = source
        self.split = split
        self.figures: dict[str, Any] = {}

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
    """``camloc compare --calibrate``: a number, an ``evaluate`` report.json or a
    ``compare.json`` (see the module docstring). A compare.json must hold every method in
    ``methods``.

    Raises:
        ConfigError: an unreadable file, or one without the thresholds, naming the file and key.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    tau = _number(value)
    if tau is not None:
        return Calibration({}, f"{_OPTION} {tau}", default=_grid(tau, _OPTION))
    path = Path(str(value)).expanduser()
    rep, _ = read_report(str(value))
    split = (rep.get("dataset") or {}).get("split") if isinstance(rep.get("dataset"), dict) \
        else None
    if isinstance(rep.get("methods"), dict):  # compare.json
        found: dict[str, float] = {}
        missing = []
        for m in methods:
            try:
                t = float(rep["methods"][m]["localization"]["maxboxacc_v1"]["threshold"])
            except (KeyError, TypeError, ValueError):
                missing.append(m)
                continue
            found[m] = _grid(t, f"{_OPTION} {value}: methods.{m}")
        if missing:
            have = ", ".join(sorted(rep["methods"])) or "none"
            raise ConfigError(f"{_OPTION} {value}: no localization.maxboxacc_v1.threshold for "
                              f"method(s) {', '.join(missing)} (the file has: {have})")
        return Calibration(found, f"compare.json {path}", split=split)
    t = _report_threshold(rep)
    if t is None:
        raise ConfigError(f"{_OPTION} {value}: neither a compare.json (methods.<name>...) nor an "
                          "evaluate report.json with localization.maxboxacc_v1.threshold")
    return Calibration({}, f"report.json {path}", default=_grid(t, f"{_OPTION} {value}"),
                       split=split)
