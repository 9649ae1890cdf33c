"""KeyedTensor: dense per-key outputs (e.g. pooled embeddings) side by side in one tensor."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Union

import torch

from recembed.errors import JaggedStructureError, ShapeMismatchError, UnknownKeyError

__all__ = ["KeyedTensor"]

_OWNER = "KeyedTensor"


class KeyedTensor:
    """Several dense tensors, one per key, concatenated along ``key_dim``.

    With the default ``key_dim=1``, ``values`` has shape (B, sum(length_per_key)) and
    key ``k`` owns columns ``offset_per_key()[k]`` to ``offset_per_key()[k + 1]``.
    This is what a pooled embedding lookup returns: one (B, dim) block per feature.

    Example:
        >>> kt = KeyedTensor.from_tensor_list(["user", "item"], [torch.ones(2, 3), torch.zeros(2, 1)])
        >>> kt.length_per_key(), kt.offset_per_key(), tuple(kt.values().shape)
        ([3, 1], [0, 3, 4], (2, 4))
        >>> kt["item"].shape
        torch.Size([2, 1])
    """

    __slots__ = ("_keys", "_length_per_key", "_offset_per_key", "_values", "_key_dim", "_index_per_key")

    def __init__(
        self,
        keys: Sequence[str],
        length_per_key: Sequence[int],
        values: torch.Tensor,
        key_dim: int = 1,
    ) -> None:
        if isinstance(keys, str):
            raise JaggedStructureError(
                f"{_OWNER}: keys must be a list of names, got the string {keys!r}"
            )
        key_list = list(keys)
        lengths = [int(n) for n in length_per_key]
        if len(lengths) != len(key_list):
            raise ShapeMismatchError(
                f"{_OWNER}: {len(key_list)} keys but {len(lengths)} entries in length_per_key"
            )
        index_per_key: dict[str, int] = {}
        for index, key in enumerate(key_list):
            if key in index_per_key:
                raise JaggedStructureError(
                    f"{_OWNER}: duplicate key {key!r} in keys {key_list}; each key may appear once"
                )
            index_per_key[key] = index
        for key, length in zip(key_list, lengths):
            if length < 0:
                raise ShapeMismatchError(f"{_OWNER}: key {key!r} has negative length {length}")
        if not isinstance(values, torch.Tensor):
            values = torch.as_tensor(values)
        if not -values.dim() <= key_dim < values.dim():
            raise ShapeMismatchError(
                f"{_OWNER}: key_dim {key_dim} is out of range for values of shape "
                f"{tuple(values.shape)}"
            )
        key_dim = key_dim % values.dim()
        if values.shape[key_dim] != sum(lengths):
            raise ShapeMismatchError(
                f"{_OWNER}: values has size {values.shape[key_dim]} along key_dim {key_dim} "
                f"but length_per_key sums to {sum(lengths)}"
            )
        self._keys = key_list
        self._length_per_key = lengths
        self._values = values
        self._key_dim = key_dim
        self._index_per_key = index_per_key
        offsets = [0]
        for length in lengths:
            offsets.append(offsets[-1] + length)
        self._offset_per_key = offsets

    @staticmethod
    def from_tensor_list(
        keys: Sequence[str], tensors: Sequence[torch.Tensor], key_dim: int = 1
    ) -> "KeyedTensor":
        """Concatenate one tensor per key along ``key_dim``; other dims must agree."""
        key_list = list(keys)
        if len(key_list) != len(tensors):
            raise ShapeMismatchError(
                f"{_OWNER}.from_tensor_list: {len(key_list)} keys but {len(tensors)} tensors"
            )
        if not tensors:
            raise ShapeMismatchError(
                f"{_OWNER}.from_tensor_list needs at least one tensor (the batch shape comes from it)"
            )
        first = tensors[0]
        if not -first.dim() <= key_dim < first.dim():
            raise ShapeMismatchError(
                f"{_OWNER}.from_tensor_list: key_dim {key_dim} is out of range for "
                f"tensor of shape {tuple(first.shape)}"
            )
        dim = key_dim % first.dim()
        expected = _shape_without(first.shape, dim)
        for key, tensor in zip(key_list, tensors):
            if tensor.dim() != first.dim() or _shape_without(tensor.shape, dim) != expected:
                raise ShapeMismatchError(
                    f"{_OWNER}.from_tensor_list: key {key!r} has shape {tuple(tensor.shape)}, "
                    f"which differs from key {key_list[0]!r} shape {tuple(first.shape)} "
                    f"outside key_dim {dim}"
                )
        return KeyedTensor(
            key_list, [t.shape[dim] for t in tensors], torch.cat(list(tensors), dim=dim), dim
        )

    def keys(self) -> list[str]:
        """Key names, in column order."""
        return self._keys

    def values(self) -> torch.Tensor:
        """All keys side by side, e.g. shape (B, sum(length_per_key)) for key_dim=1."""
        return self._values

    def length_per_key(self) -> list[int]:
        """Size of each key along ``key_dim``."""
        return self._length_per_key

    def offset_per_key(self) -> list[int]:
        """Start of each key along ``key_dim``, plus the end (len(keys) + 1 ints)."""
        return self._offset_per_key

    def key_dim(self) -> int:
        """The dimension along which keys are concatenated."""
        return self._key_dim

    def _block(self, index: int) -> torch.Tensor:
        return self._values.narrow(
            self._key_dim, self._offset_per_key[index], self._length_per_key[index]
        )

    def _index_of(self, key: str) -> int:
        if key not in self._index_per_key:
            raise UnknownKeyError(f"{_OWNER}: unknown key {key!r}; keys are {self._keys}")
        return self._index_per_key[key]

    def __getitem__(self, key: str) -> torch.Tensor:
        """The block of one key (a view)."""
        return self._block(self._index_of(key))

    def to_dict(self) -> dict[str, torch.Tensor]:
        """``{key: block}`` in key order; blocks are views of ``values`` (no copy)."""
        return {key: self._block(index) for index, key in enumerate(self._keys)}

    @staticmethod
    def regroup(
        keyed_tensors: Sequence["KeyedTensor"], groups: Sequence[Sequence[str]]
    ) -> list[torch.Tensor]:
        """One tensor per group: the named keys' blocks concatenated in group order.

        Keys may come from any of ``keyed_tensors`` (which must share key_dim and the
        other dims); a key may appear in several groups. An empty group gives a
        block of size 0 along key_dim.

        Example:
            >>> a = KeyedTensor.from_tensor_list(["u", "i"], [torch.ones(2, 2), torch.zeros(2, 1)])
            >>> b = KeyedTensor.from_tensor_list(["c"], [torch.full((2, 1), 5.0)])
            >>> [tuple(t.shape) for t in KeyedTensor.regroup([a, b], [["c", "u"], ["i"]])]
            [(2, 3), (2, 1)]
        """
        if not keyed_tensors:
            raise ShapeMismatchError(f"{_OWNER}.regroup needs at least one KeyedTensor")
        first = keyed_tensors[0]
        dim = first.key_dim()
        expected = _shape_without(first.values().shape, dim)
        where: dict[str, tuple[int, int]] = {}
        for position, kt in enumerate(keyed_tensors):
            if kt.key_dim() != dim or _shape_without(kt.values().shape, dim) != expected:
                raise ShapeMismatchError(
                    f"{_OWNER}.regroup: KeyedTensor {position} has values of shape "
                    f"{tuple(kt.values().shape)} with key_dim {kt.key_dim()}, which does "
                    f"not fit KeyedTensor 0 (shape {tuple(first.values().shape)}, key_dim {dim})"
                )
            for index, key in enumerate(kt.keys()):
                if key in where:
                    raise JaggedStructureError(
                        f"{_OWNER}.regroup: key {key!r} is in KeyedTensor {where[key][0]} "
                        f"and KeyedTensor {position}; keys must be unique across inputs"
                    )
                where[key] = (position, index)
        results = []
        for group in groups:
            blocks = []
            for key in group:
                if key not in where:
                    raise UnknownKeyError(
                        f"{_OWNER}.regroup: unknown key {key!r}; keys are {list(where)}"
                    )
                position, index = where[key]
                blocks.append(keyed_tensors[position]._block(index))
            if blocks:
                results.append(torch.cat(blocks, dim=dim))
            else:
                results.append(first.values().narrow(dim, 0, 0).clone())
        return results

    def to(self, device: Union[torch.device, str], non_blocking: bool = False) -> "KeyedTensor":
        """A copy on ``device`` (no copy if already there)."""
        return KeyedTensor(
            self._keys,
            self._length_per_key,
            self._values.to(device, non_blocking=non_blocking),
            self._key_dim,
        )

    def __repr__(self) -> str:
        keys = ", ".join(json.dumps(k, ensure_ascii=False) for k in self._keys)
        return (
            f"{_OWNER}(keys=[{keys}], length_per_key={self._length_per_key}, "
            f"key_dim={self._key_dim}, values=Tensor(shape={tuple(self._values.shape)}, "
            f"dtype={self._values.dtype}))"
        )


def _shape_without(shape: torch.Size, dim: int) -> tuple[int, ...]:
    return tuple(size for axis, size in enumerate(shape) if axis != dim)
