"""Training settings (:class:`TrainConfig`), checked before anything runs.

>>> cfg = TrainConfig(dataset="data/cub", arch="resnet50-gap", pretrained=True)
>>> cfg.checked().new_lr_multiplier()
10.0
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from camloc.errors import ConfigError

__all__ = ["TrainConfig", "SELECT_METRICS", "SCHEDULES"]

#: Metrics ``select`` may name; ``auto`` is ``maxboxacc_v2`` when the validation set has boxes,
#: else ``top1``.
SELECT_METRICS = ("auto", "top1", "gt_known", "maxboxacc_v2")
SCHEDULES = ("cosine", "step", "constant")


@dataclass
class TrainConfig:
    """Everything ``camloc train`` needs. Only ``dataset`` and ``arch`` are required.

    Learning rates: ``lr`` is the backbone's; the layers the conversion added (new conv,
    classifier) use ``lr * new_lr_mult`` (default: 10 with a pretrained backbone, else 1).
    ``batch_size`` is per process (the global batch under torchrun is ``batch_size * world``).
    """

    dataset: str | Path
    arch: str
    out: str | Path = "camloc-train"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    pretrained: bool = False
    pool: str = "avg"
    epochs: int = 10
    batch_size: int = 32
    lr: float = 0.01
    new_lr_mult: float | None = None
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    step_epochs: int = 30  # "step": lr x 0.1 every step_epochs epochs
    warmup_epochs: float = 0.0
    input_size: int = 224
    crop_scale: tuple[float, float] = (0.08, 1.0)
    dataset_format: str = "auto"
    train_split: str = "auto"  # "auto": "train" if the dataset has splits, else all of it
    val_split: str = "auto"  # "auto" | split name | fraction "0.1" | "none"
    select: str = "auto"
    eval_interval: float = 0.01
    eval_batch_size: int | None = None
    device: str = "auto"
    seed: int = 0
    workers: int = 2
    amp: bool | None = None  # None: on CUDA only
    deterministic: bool = True
    save_every: int = 0  # also save the resume state every N optimizer steps (0: epoch ends only)
    max_steps: int | None = None  # stop (after saving) once this many steps are done in total
    resume: bool = False
    overwrite: bool = False
    name: str | None = None

    def checked(self) -> TrainConfig:
        """A copy with normalised values, or :class:`ConfigError` naming the bad setting."""
        c = replace(self, arch_kwargs=dict(self.arch_kwargs or {}))
        c.dataset = Path(c.dataset).expanduser()
        c.out = Path(c.out).expanduser()
        pool = str(c.pool).lower()
        pool = {"gap": "avg", "gmp": "max"}.get(pool, pool)
        if pool not in ("avg", "max"):
            raise ConfigError(f"pool={self.pool!r}: expected gap (avg) or gmp (max)")
        c.pool = pool
        _int(c, "epochs", 1)
        _int(c, "batch_size", 1)
        _int(c, "input_size", 16)
        _int(c, "workers", 0)
        _int(c, "save_every", 0)
        _int(c, "step_epochs", 1)
        _int(c, "seed", 0)
        if c.max_steps is not None:
            _int(c, "max_steps", 1)
        if c.eval_batch_size is not None:
            _int(c, "eval_batch_size", 1)
        for key in ("lr", "momentum", "weight_decay", "warmup_epochs"):
            v = getattr(c, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v < 0:
                raise ConfigError(f"{key}={v!r}: expected a finite number >= 0")
        if c.lr <= 0:
            raise ConfigError(f"lr={c.lr!r}: must be > 0")
        if c.new_lr_mult is not None and (not math.isfinite(c.new_lr_mult) or c.new_lr_mult <= 0):
            raise ConfigError(f"new_lr_mult={c.new_lr_mult!r}: must be > 0")
        if c.schedule not in SCHEDULES:
            raise ConfigError(f"schedule={c.schedule!r}: expected one of {', '.join(SCHEDULES)}")
        if c.select not in SELECT_METRICS:
            raise ConfigError(f"select={c.select!r}: expected one of {', '.join(SELECT_METRICS)}")
        lo, hi = (float(v) for v in c.crop_scale)
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"crop_scale={c.crop_scale!r}: expected 0 < min <= max <= 1")
        c.crop_scale = (lo, hi)
        if not 0 < c.eval_interval < 1:
            raise ConfigError(f"eval_interval={c.eval_interval!r}: expected 0 < interval < 1")
        c.val_split = str(c.val_split)
        frac = self.val_fraction(c.val_split)
        if frac is not None and not 0 < frac < 1:
            raise ConfigError(f"val_split={c.val_split!r}: a fraction must be in (0, 1)")
        return c

    @staticmethod
    def val_fraction(value: str) -> float | None:
        """``"0.1"`` -> 0.1; split names, ``auto`` and ``none`` -> None."""
        try:
            return float(value)
        except ValueError:
            return None

    def new_lr_multiplier(self) -> float:
        """The learning-rate factor of the new layers (10 when fine-tuning, 1 from scratch)."""
        if self.new_lr_mult is not None:
            return float(self.new_lr_mult)
        return 10.0 if self.pretrained else 1.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["dataset"], d["out"] = str(self.dataset), str(self.out)
        d["crop_scale"] = list(self.crop_scale)
        return d


def _int(c: TrainConfig, key: str, low: int) -> None:
    v = getattr(c, key)
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ConfigError(f"{key}={v!r}: expected an integer >= {low}")
