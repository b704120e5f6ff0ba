"""Bounds on the server's options (``camloc serve`` and :func:`camloc.web.server.serve`).

Every option that sizes memory or time is finite and bounded; :func:`check_server_options`
raises :class:`~camloc.errors.ConfigError` naming the option otherwise.

>>> check_server_options(max_batch=16, batch_wait_ms=5.0, max_upload_mb=20.0,
...                      max_pixels=40_000_000)
>>> check_server_options(batch_wait_ms=1e9)
Traceback (most recent call last):
...
camloc.errors.ConfigError: --batch-wait-ms 1000000000.0: expected milliseconds from 0 to 1000
"""

from __future__ import annotations

import math
from typing import Any

from camloc.errors import ConfigError

__all__ = ["check_server_options", "MAX_BATCH", "MAX_BATCH_WAIT_MS", "MAX_UPLOAD_MB",
           "MAX_IMAGE_PIXELS", "MAX_DECODED_MP"]

#: The most requests one forward pass may take.
MAX_BATCH = 256
#: The longest a forward pass may wait for more requests (a second: longer only delays answers).
MAX_BATCH_WAIT_MS = 1000.0
#: The largest upload limit (MiB).
MAX_UPLOAD_MB = 1024.0
#: The largest decoded-image limit (pixels): the library's own default reader limit.
MAX_IMAGE_PIXELS = 100_000_000
#: The largest bound on decoded pixels held by all requests at once (megapixels).
MAX_DECODED_MP = 2000.0


def _number(name: str, value: Any, low: float, high: float, what: str,
            low_open: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if ok:
        v = float(value)
        ok = math.isfinite(v) and (v > low if low_open else v >= low) and v <= high
    if not ok:
        bound = f"above {low:g} and up to" if low_open else f"from {low:g} to"
        raise ConfigError(f"{name} {value!r}: expected {what} {bound} {high:g}")


def check_server_options(max_batch: int = 16, batch_wait_ms: float = 5.0,
                         max_upload_mb: float = 20.0, max_pixels: int = 40_000_000,
                         max_decoded_mp: float = 0.0) -> None:
    """Raise :class:`ConfigError` unless every option is finite and within its bound.

    ``max_decoded_mp``: the decoded pixels all requests may hold at once, in megapixels (0: twice
    ``max_pixels``); at least one largest image (``max_pixels``), so that one always fits."""
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) \
            or not 1 <= max_batch <= MAX_BATCH:
        raise ConfigError(f"--max-batch {max_batch!r}: expected a whole number from 1 to "
                          f"{MAX_BATCH}")
    _number("--batch-wait-ms", batch_wait_ms, 0.0, MAX_BATCH_WAIT_MS, "milliseconds")
    _number("--max-upload-mb", max_upload_mb, 0.0, MAX_UPLOAD_MB, "MiB", low_open=True)
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) \
            or not 1 <= max_pixels <= MAX_IMAGE_PIXELS:
        raise ConfigError(f"--max-pixels {max_pixels!r}: expected a whole number from 1 to "
                          f"{MAX_IMAGE_PIXELS}")
    _number("--max-decoded-mp", max_decoded_mp, 0.0, MAX_DECODED_MP, "megapixels (0: twice "
            "--max-pixels)")
    if max_decoded_mp and max_decoded_mp * 1e6 < max_pixels:
        raise ConfigError(f"--max-decoded-mp {max_decoded_mp:g}: smaller than one largest image "
                          f"(--max-pixels {max_pixels} = {max_pixels / 1e6:g} MP); give at "
                          f"least that, or 0 for twice it")
