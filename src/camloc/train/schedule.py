"""Learning-rate schedules as pure functions of the optimizer step (so resuming is exact).

>>> s = LRSchedule("cosine", total_steps=100)
>>> s.factor(0), round(s.factor(50), 3), round(s.factor(100), 3)
(1.0, 0.5, 0.0)
>>> LRSchedule("step", total_steps=100, steps_per_epoch=10, step_epochs=3).factor(35)
0.1
"""

from __future__ import annotations

import math
from typing import Any

from camloc.errors import ConfigError

__all__ = ["LRSchedule"]


class LRSchedule:
    """``lr(step) = base_lr * factor(step)``; ``factor`` is cosine, step (x0.1 every
    ``step_epochs``) or constant, after an optional linear warm-up of ``warmup_steps``."""

    def __init__(self, name: str, total_steps: int, steps_per_epoch: int = 1,
                 step_epochs: int = 30, warmup_steps: int = 0) -> None:
        if name not in ("cosine", "step", "constant"):
            raise ConfigError(f"schedule={name!r}: expected cosine, step or constant")
        self.name = name
        self.total_steps = max(1, int(total_steps))
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.step_epochs = max(1, int(step_epochs))
        self.warmup_steps = max(0, int(warmup_steps))
        self.last_step = 0

    def factor(self, step: int) -> float:
        """Multiplier of the base learning rates at optimizer step ``step`` (0-based)."""
        if self.warmup_steps and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.name == "constant":
            return 1.0
        if self.name == "step":
            return 0.1 ** ((step // self.steps_per_epoch) // self.step_epochs)
        t = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, t))))

    def apply(self, optimizer: Any, step: int) -> float:
        """Set every param group's ``lr`` to ``initial_lr * factor(step)``; return the factor."""
        f = self.factor(step)
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] * f
        self.last_step = step
        return f

    def state_dict(self) -> dict[str, Any]:
        return {"name": self.name, "total_steps": self.total_steps,
                "steps_per_epoch": self.steps_per_epoch, "step_epochs": self.step_epochs,
                "warmup_steps": self.warmup_steps, "last_step": self.last_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_step = int(state.get("last_step", 0))
