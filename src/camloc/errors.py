"""The exceptions camloc raises.

Every error raised on bad user input derives from :class:`CamlocError`, so callers can catch one type.
Messages name the offending argument, file or line and say what to do about it.

>>> from camloc.errors import CamlocError, DatasetError
>>> issubclass(DatasetError, CamlocError)
True
"""

from __future__ import annotations

__all__ = [
    "CamlocError",
    "ConfigError",
    "ModelError",
    "UnsupportedHeadError",
    "WeightsError",
    "ImageError",
    "DatasetError",
    "MetricError",
    "CheckpointError",
]


class CamlocError(Exception):
    """Base class of every error camloc raises on purpose."""


class ConfigError(CamlocError, ValueError):
    """An argument has a value camloc cannot use (the message names the argument)."""


class ModelError(CamlocError):
    """A model cannot be built or used as asked."""


class UnsupportedHeadError(ModelError):
    """The model's head is not global-average-pooling followed by a linear layer, so exact CAM
    is undefined for it."""


class WeightsError(ModelError):
    """Weights cannot be found, downloaded or loaded."""


class ImageError(CamlocError):
    """An image file cannot be read or decoded. ``path`` and ``reason`` are kept as attributes."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class DatasetError(CamlocError):
    """Dataset metadata is missing or malformed.

    ``problems`` holds ``(file, line_number, reason)`` tuples; the message lists the first few and the
    total count, so nothing is skipped silently.
    """

    def __init__(self, message: str, problems: list[tuple[str, int, str]] | None = None,
                 show: int = 5) -> None:
        self.problems = list(problems or [])
        text = message
        if self.problems:
            lines = [f"  {f}:{n}: {why}" if n > 0 else f"  {f}: {why}" for f, n, why in self.problems[:show]]
            more = len(self.problems) - show
            text += f" ({len(self.problems)} problem{'s' if len(self.problems) != 1 else ''})\n" + "\n".join(lines)
            if more > 0:
                text += f"\n  ... and {more} more"
        super().__init__(text)


class MetricError(CamlocError):
    """A metric received inputs it cannot score (wrong shapes, no positives, mismatched settings)."""


class CheckpointError(CamlocError):
    """A checkpoint or head directory is missing files or is inconsistent."""
