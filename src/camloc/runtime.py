"""Process-wide settings that make CPU inference faster, applied by the ``camloc`` command line.

glibc's ``malloc`` serves every block above a (dynamic, at most 32 MiB) threshold with a fresh
``mmap`` and gives it back with ``munmap`` when freed. A CNN forward pass on a batch allocates and
frees activations of tens of megabytes per layer, so every pass maps new pages and the kernel
zero-fills them on first touch: on this project's 2-core Linux machine, efficientnet_lite0 at batch
16 spent as much time in the kernel as in the convolutions (19.4 ms per image; 5.9 s system time
for 5.8 s user time over 320 images). With large blocks kept in the heap instead, the same pass
takes 7.2 ms per image with 0.02 s of system time (channels-last: 12.2 -> 5.0 ms), the peak
memory within 7%, and ``camloc evaluate`` on the 511-photo dev set 14.3 -> 9.7 s (medians of
``python benchmarks/bench_allocator.py --rounds 3``). PyTorch's CPU performance guide points at the
same cost (it suggests jemalloc or tcmalloc); :func:`tune_cpu_allocator` gets it with the C
library's own ``mallopt``, nothing to install.

The command line calls :func:`tune_cpu_allocator` once at start-up. A library user opts in::

    >>> import camloc.runtime
    >>> applied = camloc.runtime.tune_cpu_allocator()  # False off glibc, or when disabled

Set ``CAMLOC_ALLOCATOR=system`` to leave the C library's defaults alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["tune_cpu_allocator", "channels_last", "to_layout", "DEFAULT_THRESHOLD"]

#: blocks below this many bytes come from the heap and stay there when freed (1 GiB)
DEFAULT_THRESHOLD = 1 << 30

# mallopt parameters (glibc <malloc.h>)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

_applied: bool | None = None


def tune_cpu_allocator(threshold: int = DEFAULT_THRESHOLD) -> bool:
    """Keep blocks up to ``threshold`` bytes in the malloc heap: allocations below it no longer
    ``mmap`` fresh pages, and freed memory at the top of the heap is given back to the system only
    above ``threshold``. Returns whether the settings are in force (False off Linux/glibc, when
    ``CAMLOC_ALLOCATOR=system``, or when ``mallopt`` refused them). Idempotent; call it before
    the heavy work starts (it affects allocations made afterwards).

    The cost: a process keeps up to ``threshold`` bytes of freed memory mapped after a peak (its
    peak itself is unchanged), which suits a command that runs one job and exits.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("CAMLOC_ALLOCATOR", "").strip().lower() == "system":
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    value = int(min(max(threshold, 0), 2**31 - 1))
    ok = bool(mallopt(_M_MMAP_THRESHOLD, value)) and bool(mallopt(_M_TRIM_THRESHOLD, value))
    _applied = ok
    return ok


@contextlib.contextmanager
def channels_last(module: Any, active: bool = True) -> Iterator[bool]:
    """Lay the module's 4-D weights out channels-last for the block (restored after); yields
    whether it did. On the CPU, oneDNN's convolutions run about 1.4-1.6x faster in that layout
    (efficientnet_lite0; logits equal to 6e-6; ``python benchmarks/bench_allocator.py``); the
    dev-set figures of ``evaluate`` are unchanged. Feed it inputs laid out the same way
    (:func:`to_layout`)."""
    import torch

    if not active or not any(p.dim() == 4 for p in module.parameters()):
        yield False
        return
    module.to(memory_format=torch.channels_last)
    try:
        yield True
    finally:
        module.to(memory_format=torch.contiguous_format)


def to_layout(x: Any, channels_last: bool) -> Any:
    """``x`` (a 4-D tensor) channels-last when ``channels_last``, else unchanged."""
    import torch

    if channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x
