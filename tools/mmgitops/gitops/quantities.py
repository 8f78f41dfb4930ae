"""Kubernetes resource quantities, as far as the tools need them."""

from __future__ import annotations

from typing import Any

from mmgitops.errors import ToolError

_UNITS = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "k": 1000, "M": 1000**2, "G": 1000**3,
          "T": 1000**4}


def memory_bytes(quantity: Any, where: str) -> int:
    """A Kubernetes memory quantity in bytes (binary and decimal suffixes, or a plain number)."""
    text = str(quantity or "").strip()
    for suffix, factor in sorted(_UNITS.items(), key=lambda item: -len(item[0])):
        if text.endswith(suffix) and text[: -len(suffix)].isdigit():
            return int(text[: -len(suffix)]) * factor
    if text.isdigit():
        return int(text)
    raise ToolError(f"{where}: {quantity!r} is not a memory quantity with a byte count")
