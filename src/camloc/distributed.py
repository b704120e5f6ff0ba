"""Running under ``torchrun``: rank/world detection, process groups, gathering results.

camloc shards work by rank (each item exactly once: ``items[rank::world]``), lets each rank fill
its own accumulators, and gathers them on rank 0, where ``merge`` combines them exactly. The same
code runs unchanged as a single process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["DistInfo", "dist_info", "process_group", "gather_to_rank0", "barrier"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    """Rank, world size and local rank from torchrun's environment (1 process if unset)."""
    try:
        return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                        int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError:
        return DistInfo()


@contextlib.contextmanager
def process_group(device: torch.device | str = "cpu") -> Iterator[DistInfo]:
    """Initialise the default process group when launched by torchrun (gloo on CPU, NCCL on
    CUDA) and tear it down afterwards; a no-op for a single process."""
    info = dist_info()
    if not info.enabled or not torch.distributed.is_available():
        yield DistInfo()
        return
    dev = torch.device(device)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    created = False
    if not torch.distributed.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(info.local_rank)
        torch.distributed.init_process_group(backend=backend)
        created = True
    try:
        yield info
    finally:
        if created and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def gather_to_rank0(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` as a list on rank 0 (``None`` elsewhere); ``[obj]`` single-process."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [obj]
    world = torch.distributed.get_world_size()
    out: list[Any] | None = [None] * world if torch.distributed.get_rank() == 0 else None
    torch.distributed.gather_object(obj, out, dst=0)
    return out


def barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
