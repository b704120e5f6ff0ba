"""Parsing ``--methods`` without importing torch (so usage errors are answered at once)."""

from __future__ import annotations

from collections.abc import Sequence

from camloc.errors import ConfigError

__all__ = ["resolve_methods"]


def resolve_methods(methods: str | Sequence[str]) -> list[str]:
    """``"cam,gradcam"`` / a list / ``"all"`` -> registry names (lower case, no repeats).

    Raises:
        ConfigError: an unknown name, listing the valid ones.
    """
    from camloc.cams.catalog import CATALOG

    items = methods.split(",") if isinstance(methods, str) else list(methods)
    names: list[str] = []
    for item in items:
        key = str(item).strip().lower()
        if not key:
            continue
        if key == "all":
            names.extend(n for n in CATALOG if n not in names)
            continue
        if key not in CATALOG:
            raise ConfigError(f"--methods: unknown method {item.strip()!r}; valid methods: "
                              f"{', '.join(CATALOG)} (or 'all')")
        if key not in names:
            names.append(key)
    if not names:
        raise ConfigError(f"--methods: give at least one method ({', '.join(CATALOG)}, or 'all')")
    return names
