"""Kubernetes resource quantities, as far as the tools need them."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

from mmgitops.errors import ToolError

_UNITS = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "k": 1000, "M": 1000**2, "G": 1000**3,
          "T": 1000**4}
# resource.Quantity's suffixes (k8s.io/apimachinery/pkg/api/resource/suffix.go): binary SI, decimal SI.
_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
             "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 10**3), "": 1,
             "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
# <sign><digits>[.<digits>] then a suffix or a decimal exponent; "1E" is exa and "1E3" a thousand: the regex
# backtracks from the suffix "E" to the exponent when digits follow.
_QUANTITY = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+))(?:(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])|[eE]([+-]?\d+))?")


def memory_bytes(quantity: Any, where: str) -> int:
    """A Kubernetes memory quantity in bytes (binary and decimal suffixes, or a plain number)."""
    text = str(quantity or "").strip()
    for suffix, factor in sorted(_UNITS.items(), key=lambda item: -len(item[0])):
        if text.endswith(suffix) and text[: -len(suffix)].isdigit():
            return int(text[: -len(suffix)]) * factor
    if text.isdigit():
        return int(text)
    raise ToolError(f"{where}: {quantity!r} is not a memory quantity with a byte count")


def quantity(value: Any, where: str) -> Fraction:
    """Any Kubernetes quantity ("500m", "1.5Gi", "1e3", 2), exactly: callers round as their API does."""
    match = _QUANTITY.fullmatch(str(value).strip())
    if match is None:
        raise ToolError(f"{where}: {value!r} is not a Kubernetes quantity")
    number, suffix, exponent = match.groups()
    factor = Fraction(10) ** int(exponent) if exponent is not None else Fraction(_SUFFIXES[suffix or ""])
    return Fraction(number) * factor
