"""Turn ``{key: [row0_ids, row1_ids, ...]}`` Python lists into one JaggedTensor per key."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Optional

from recembed.errors import JaggedStructureError, UnknownKeyError
from recembed.sparse.jagged_tensor import JaggedTensor


def jagged_from_lists(
    mapping: Mapping[str, Sequence[Sequence[int]]],
    weights: Optional[Mapping[str, Sequence[Sequence[float]]]],
    owner: str,
) -> dict[str, JaggedTensor]:
    """One JaggedTensor per key of ``mapping``, in its order, with the matching weights.

    ``weights`` must have exactly the keys of ``mapping`` (or be None); errors name
    ``owner`` and the key.
    """
    keys = list(mapping)
    if weights is not None:
        for key in weights:
            if key not in mapping:
                raise UnknownKeyError(f"{owner}: weights given for unknown key {key!r}; keys are {keys}")
    jts = {}
    for key in keys:
        key_weights = None
        if weights is not None:
            if key not in weights:
                raise JaggedStructureError(
                    f"{owner}: weights are missing for key {key!r}; either every key has weights or none does"
                )
            key_weights = weights[key]
        try:
            jts[key] = JaggedTensor.from_dense(mapping[key], weights=key_weights)
        except JaggedStructureError as exc:
            raise JaggedStructureError(f"{owner}: key {key!r}: {exc}") from exc
    return jts
