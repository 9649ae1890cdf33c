"""Text for the reprs of the sparse types: jagged rows as nested lists."""

from __future__ import annotations

import json
from collections.abc import Sequence

import torch


def format_number(value: int | float) -> str:
    """Short text for one number in a repr: ids as integers, weights with 6 digits."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# Reprs of large batches stay readable by showing this many rows / values per row.
REPR_MAX_ROWS = 20
REPR_MAX_VALUES = 20


def format_rows(values: torch.Tensor, lengths: list[int]) -> str:
    """``[[1, 2], [], [5]]``-style text for jagged rows, truncated with ``...``."""
    # Only the shown rows are converted to Python numbers.
    flat = values[: sum(lengths[:REPR_MAX_ROWS])].tolist()
    parts = []
    start = 0
    for row, length in enumerate(lengths):
        if row == REPR_MAX_ROWS:
            parts.append(f"... ({len(lengths) - REPR_MAX_ROWS} more rows)")
            break
        shown = flat[start : start + min(length, REPR_MAX_VALUES)]
        text = ", ".join(format_number(v) for v in shown)
        if length > REPR_MAX_VALUES:
            text += f", ... ({length - REPR_MAX_VALUES} more)"
        parts.append(f"[{text}]")
        start += length
    return "[" + ", ".join(parts) + "]"


def format_keyed_rows(
    keys: Sequence[str], flat: torch.Tensor, lengths: list[int], offset_per_key: list[int]
) -> str:
    """``{"user": [[2, 3], [4]], "item": [[]]}`` for key-major jagged data."""
    stride = len(lengths) // len(keys) if keys else 0
    entries = []
    for index, key in enumerate(keys):
        rows = format_rows(
            flat[offset_per_key[index] : offset_per_key[index + 1]],
            lengths[index * stride : (index + 1) * stride],
        )
        entries.append(f"{json.dumps(key, ensure_ascii=False)}: {rows}")
    return "{" + ", ".join(entries) + "}"
