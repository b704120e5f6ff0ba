"""Running under ``torchrun``: detecting the launch, sharding, reducing and gathering over ranks.

``torchrun --nproc_per_node=N -m camloc train|evaluate ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :meth:`DistContext.from_env` reads them, picks the device (``cuda:LOCAL_RANK`` or
the CPU) and initialises the process group (NCCL on CUDA, gloo on the CPU). Without those variables
(or with ``WORLD_SIZE=1``) everything here is a no-op, so training and evaluation are written once:
each rank takes ``items[rank::world_size]`` and rank 0 merges what the ranks gathered.

>>> ctx = DistContext.from_env("cpu", environ={})
>>> ctx.world_size, ctx.is_main, ctx.all_sum([1.0, 2.0])
(1, True, [1.0, 2.0])
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as tdist

from camloc.errors import ConfigError

__all__ = ["DistContext"]


@dataclass
class DistContext:
    """This process's place in a (possibly single-process) training job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str | torch.device | None = "auto",
                 environ: Mapping[str, str] | None = None, timeout_s: float = 1800.0
                 ) -> DistContext:
        """Read ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; initialise the process group if needed.

        Raises:
            ConfigError: malformed variables, or a device that does not exist.
        """
        from camloc.devices import resolve_device

        env = os.environ if environ is None else environ
        try:
            world = int(env.get("WORLD_SIZE", "1"))
            rank = int(env.get("RANK", "0"))
            local = int(env.get("LOCAL_RANK", str(rank)))
        except ValueError as exc:
            raise ConfigError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers: {exc}") from exc
        if world < 1 or not 0 <= rank < world or local < 0:
            raise ConfigError(f"inconsistent distributed environment: RANK={rank} "
                              f"WORLD_SIZE={world} LOCAL_RANK={local}")
        dev = resolve_device(device)
        if world == 1:
            return cls(0, 1, 0, dev, False)
        if dev.type == "cuda":
            if local >= torch.cuda.device_count():
                raise ConfigError(f"LOCAL_RANK={local} but only {torch.cuda.device_count()} "
                                  f"CUDA device(s) are visible")
            dev = torch.device("cuda", local)
            torch.cuda.set_device(dev)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        here = False
        if not tdist.is_initialized():
            for key in ("MASTER_ADDR", "MASTER_PORT"):
                if key not in env:
                    raise ConfigError(f"WORLD_SIZE={world} but {key} is not set: launch with "
                                      f"torchrun (e.g. torchrun --nproc_per_node={world} -m camloc "
                                      f"train ...)")
            tdist.init_process_group(backend=backend, rank=rank, world_size=world,
                                     timeout=timedelta(seconds=timeout_s))
            here = True
        return cls(rank, world, local, dev, here)

    def barrier(self) -> None:
        if self.distributed:
            if self.device.type == "cuda":
                tdist.barrier(device_ids=[self.device.index or 0])
            else:
                tdist.barrier()

    def all_sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over all ranks (float64)."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
        return [float(v) for v in t.cpu().tolist()]

    def all_max(self, value: float) -> float:
        """Maximum of ``value`` over all ranks."""
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self._comm_device())
        tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
        return float(t.item())

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """``obj`` from rank ``src`` on every rank (picklable objects)."""
        if not self.distributed:
            return obj
        box = [obj if self.rank == src else None]
        tdist.broadcast_object_list(box, src=src, device=self._comm_device())
        return box[0]

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        tdist.all_gather_object(out, obj)
        return out

    def _comm_device(self) -> torch.device:
        return self.device if self.device.type == "cuda" else torch.device("cpu")

    def close(self) -> None:
        """Destroy the process group if this context created it."""
        if self.initialized_here and tdist.is_initialized():
            tdist.destroy_process_group()
            self.initialized_here = False
