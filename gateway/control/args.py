"""Reading a control command's arguments: one way, one error.

Every control handler reads its ``args`` through these functions, so a bad argument raises
:class:`~gateway.errors.InvalidArgsError` (answered ``invalid_args``) whichever command it
reaches, with a message naming the argument. The socket is not only the CLI's: a number, a
list or ``true`` where a string is expected is refused, never turned into text and acted on;
JSON's integers of any size and ``NaN``/``Infinity`` (which Python's JSON reads) are refused
where a number is expected.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from gateway.errors import InvalidArgsError

__all__ = ["flag_arg", "number_arg", "optional_text_arg", "text_arg"]


def text_arg(args: Mapping[str, Any], name: str) -> str:
    """``args[name]`` as a non-empty string, else InvalidArgsError."""
    value = args.get(name)
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgsError(f"{name}: a non-empty string is required, got {_shown(value)}")
    return value


def optional_text_arg(args: Mapping[str, Any], name: str) -> str | None:
    """``args[name]`` as a non-empty string, None when absent, null or empty; else
    InvalidArgsError."""
    value = args.get(name)
    if value is None or value == "":
        return None
    return text_arg(args, name)


def number_arg(args: Mapping[str, Any], name: str, default: float | None = None) -> float:
    """``args[name]`` as a finite number (``default`` when absent; required without one), else
    InvalidArgsError."""
    if name not in args and default is not None:
        return default
    value = args.get(name)
    try:  # an integer no float holds (JSON's have any size) overflows
        number = float(value) if isinstance(value, int | float) else math.nan
    except OverflowError:
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise InvalidArgsError(f"{name}: a number is required, got {_shown(value)}")
    return number


def flag_arg(args: Mapping[str, Any], name: str) -> bool:
    """``args[name]`` as true or false (false when absent), else InvalidArgsError."""
    value = args.get(name, False)
    if not isinstance(value, bool):
        raise InvalidArgsError(f"{name}: true or false is required, got {_shown(value)}")
    return value


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
