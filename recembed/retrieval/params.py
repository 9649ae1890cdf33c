"""Declared tuning parameters of an index, and the checks that guard their values.

Each index class lists its parameters in ``param_specs``; nothing else can be set, so a
typo such as ``index.num_probe = 8`` raises instead of being silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

import numpy as np

from recembed.errors import ConfigError

METRICS = ("dot", "cosine")


@dataclass(frozen=True)
class Param:
    """One tuning parameter.

    Attributes:
        check: ``check(owner, name, value) -> value`` returns the normalised value or raises
            :class:`ConfigError`; ``owner`` is the class name for messages.
        fixed_once_filled: True for construction parameters (hash tables, graph degree):
            they may change only while the index is empty. Search parameters are False.
        doc: one line for error messages and docs.
    """

    check: Callable[[str, str, Any], Any]
    fixed_once_filled: bool
    doc: str = ""


def int_check(low: int, high: Optional[int] = None) -> Callable[[str, str, Any], int]:
    """A check accepting ints in ``[low, high]`` (bools are refused)."""

    def check(owner: str, name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ConfigError(f"{owner}.{name} must be an int, got {type(value).__name__} {value!r}")
        value = int(value)
        if value < low or (high is not None and value > high):
            allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise ConfigError(f"{owner}.{name} must be {allowed}, got {value}")
        return value

    return check


def choice_check(options: tuple[str, ...]) -> Callable[[str, str, Any], str]:
    """A check accepting one of ``options`` (strings)."""

    def check(owner: str, name: str, value: Any) -> str:
        if value not in options:
            raise ConfigError(f"{owner}.{name} must be one of {list(options)}, got {value!r}")
        return str(value)

    return check


def str_check(owner: str, name: str, value: Any) -> str:
    """A check accepting a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{owner}.{name} must be a non-empty string, got {value!r}")
    return value.strip()


def number_mapping_check(owner: str, name: str, value: Any) -> dict[str, float]:
    """A check accepting ``None`` or a mapping of parameter names to numbers."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{owner}.{name} must be a mapping of name -> number, got {type(value).__name__}")
    out: dict[str, float] = {}
    for key, number in value.items():
        if not isinstance(key, str) or isinstance(number, bool) or not isinstance(number, (int, float, np.number)):
            raise ConfigError(f"{owner}.{name} entries must be str -> number, got {key!r}: {number!r}")
        out[key] = int(number) if isinstance(number, (int, np.integer)) else float(number)
    return out


METRIC_PARAM = Param(choice_check(METRICS), fixed_once_filled=True, doc="'dot' or 'cosine'")
