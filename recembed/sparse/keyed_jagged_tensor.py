"""KeyedJaggedTensor: several sparse features for one batch, in one flat layout."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Optional, Union

import torch

from recembed.errors import JaggedStructureError, UnknownKeyError
from recembed.sparse._checks import (
    TensorLike,
    check_keys,
    resolve_stride,
    validate_jagged,
)
from recembed.sparse._format import format_keyed_rows
from recembed.sparse._from_lists import jagged_from_lists
from recembed.sparse._kjt_regroup import (
    check_split_sizes,
    join_parts,
    permute_parts,
    split_parts,
)
from recembed.sparse._storage import JaggedStorage
from recembed.sparse.jagged_tensor import JaggedTensor

__all__ = ["KeyedJaggedTensor"]

_OWNER = "KeyedJaggedTensor"


class KeyedJaggedTensor(JaggedStorage):
    """Several jagged features (keys) for the same batch, stored key-major.

    ``values`` holds every id of key 0 for rows 0..B-1, then every id of key 1, and
    so on. ``lengths`` has ``len(keys) * stride`` entries in the same order
    (``lengths[k * stride + b]`` = ids of key ``k`` in row ``b``); ``offsets`` has
    one more. ``stride`` is the batch size B, inferred from the lengths when omitted.
    Optional ``weights`` give one float per id.

    Example:
        >>> kjt = KeyedJaggedTensor.from_lists(
        ...     {"product": [[1, 2, 1], [5]], "user": [[2, 3], [4, 1]]})
        >>> kjt.lengths().tolist(), kjt.values().tolist()
        ([3, 1, 2, 2], [1, 2, 1, 5, 2, 3, 4, 1])
        >>> kjt["user"]
        JaggedTensor([[2, 3], [4, 1]])
        >>> kjt.length_per_key(), kjt.offset_per_key()
        ([4, 4], [0, 4, 8])
    """

    __slots__ = (
        "_keys",
        "_stride",
        "_length_per_key",
        "_offset_per_key",
        "_index_per_key",
    )

    def __init__(
        self,
        keys: Sequence[str],
        values: TensorLike,
        lengths: Optional[TensorLike] = None,
        offsets: Optional[TensorLike] = None,
        weights: Optional[TensorLike] = None,
        stride: Optional[int] = None,
    ) -> None:
        key_list = check_keys(keys, _OWNER)
        ids, lengths_t, offsets_t, weights_t = validate_jagged(
            values, lengths, offsets, weights, _OWNER
        )
        num_rows = lengths_t.numel() if lengths_t is not None else offsets_t.numel() - 1
        stride = resolve_stride(len(key_list), num_rows, stride, _OWNER)
        self._init_trusted(key_list, ids, lengths_t, offsets_t, weights_t, stride)

    def _init_trusted(
        self,
        keys: list[str],
        values: torch.Tensor,
        lengths: Optional[torch.Tensor],
        offsets: Optional[torch.Tensor],
        weights: Optional[torch.Tensor],
        stride: int,
    ) -> None:
        self._keys = keys
        self._values = values
        self._lengths = lengths
        self._offsets = offsets
        self._weights = weights
        self._stride = stride
        self._length_per_key: Optional[list[int]] = None
        self._offset_per_key: Optional[list[int]] = None
        self._index_per_key: Optional[dict[str, int]] = None

    @classmethod
    def _trusted(
        cls,
        keys: list[str],
        values: torch.Tensor,
        lengths: Optional[torch.Tensor],
        offsets: Optional[torch.Tensor],
        weights: Optional[torch.Tensor],
        stride: int,
    ) -> "KeyedJaggedTensor":
        """Build without checks, from parts that are already valid."""
        kjt = cls.__new__(cls)
        kjt._init_trusted(keys, values, lengths, offsets, weights, stride)
        return kjt

    # ------------------------------------------------------------ constructors
    @staticmethod
    def from_lengths_sync(
        keys: Sequence[str],
        values: TensorLike,
        lengths: TensorLike,
        weights: Optional[TensorLike] = None,
        stride: Optional[int] = None,
    ) -> "KeyedJaggedTensor":
        """Build from lengths and compute the per-key sizes now (one host sync)."""
        kjt = KeyedJaggedTensor(keys, values, lengths=lengths, weights=weights, stride=stride)
        kjt.offset_per_key()
        return kjt

    @staticmethod
    def from_offsets_sync(
        keys: Sequence[str],
        values: TensorLike,
        offsets: TensorLike,
        weights: Optional[TensorLike] = None,
        stride: Optional[int] = None,
    ) -> "KeyedJaggedTensor":
        """Build from offsets and compute the per-key sizes now (one host sync)."""
        kjt = KeyedJaggedTensor(keys, values, offsets=offsets, weights=weights, stride=stride)
        kjt.offset_per_key()
        return kjt

    @staticmethod
    def from_jt_dict(jt_dict: Mapping[str, JaggedTensor]) -> "KeyedJaggedTensor":
        """Join one JaggedTensor per key (all with the same batch size), in dict order."""
        keys = list(jt_dict)
        jts = list(jt_dict.values())
        if not jts:
            return KeyedJaggedTensor._empty([], 0)
        stride = len(jts[0])
        for key, jt in zip(keys, jts):
            if len(jt) != stride:
                raise JaggedStructureError(
                    f"{_OWNER}.from_jt_dict: stride mismatch: key {keys[0]!r} has {stride} rows "
                    f"but key {key!r} has {len(jt)}"
                )
        return KeyedJaggedTensor._join(
            keys, jts, [f"key {key!r}" for key in keys], stride, f"{_OWNER}.from_jt_dict"
        )

    @staticmethod
    def from_lists(
        mapping: Mapping[str, Sequence[Sequence[int]]],
        weights: Optional[Mapping[str, Sequence[Sequence[float]]]] = None,
    ) -> "KeyedJaggedTensor":
        """Build from Python lists: ``{key: [row0_ids, row1_ids, ...]}``.

        Every key needs the same number of rows. ``weights``, when given, must have
        the same keys and row sizes.

        Example:
            >>> KeyedJaggedTensor.from_lists({"user": [[2, 3], []]}, weights={"user": [[1.0, 0.5], []]})
            KeyedJaggedTensor({"user": [[2, 3], []]}, weights={"user": [[1, 0.5], []]})
        """
        jts = jagged_from_lists(mapping, weights, f"{_OWNER}.from_lists")
        return KeyedJaggedTensor.from_jt_dict(jts)

    @staticmethod
    def _empty(keys: list[str], stride: int, like: Optional["KeyedJaggedTensor"] = None) -> "KeyedJaggedTensor":
        dtype = like._values.dtype if like is not None else torch.int64
        device = like._values.device if like is not None else None
        weights = None
        if like is not None and like._weights is not None:
            weights = like._weights.new_empty(0)
        return KeyedJaggedTensor._trusted(
            keys,
            torch.empty(0, dtype=dtype, device=device),
            torch.zeros(len(keys) * stride, dtype=torch.int64, device=device),
            None,
            weights,
            stride,
        )

    # --------------------------------------------------------------- accessors
    def keys(self) -> list[str]:
        """Feature names, in storage order."""
        return self._keys

    def stride(self) -> int:
        """Batch size B (rows per key)."""
        return self._stride

    def offset_per_key(self) -> list[int]:
        """Where each key's ids start in ``values``, plus the end: len(keys) + 1 ints."""
        if self._offset_per_key is None:
            boundaries = torch.arange(len(self._keys) + 1, device=self._values.device) * self._stride
            self._offset_per_key = self.offsets()[boundaries].tolist()
        return self._offset_per_key

    def length_per_key(self) -> list[int]:
        """Number of ids of each key (summed over the batch)."""
        if self._length_per_key is None:
            starts = self.offset_per_key()
            self._length_per_key = [b - a for a, b in zip(starts[:-1], starts[1:])]
        return self._length_per_key

    def _index_of(self, key: str) -> int:
        if self._index_per_key is None:
            # Reversed so that, after a permute that repeats a key, the first copy wins.
            self._index_per_key = {k: i for i, k in reversed(list(enumerate(self._keys)))}
        if key not in self._index_per_key:
            raise UnknownKeyError(f"{_OWNER}: unknown key {key!r}; keys are {self._keys}")
        return self._index_per_key[key]

    # ------------------------------------------------------------ per-key views
    def _jagged(self, index: int) -> JaggedTensor:
        starts = self.offset_per_key()
        begin, end = starts[index], starts[index + 1]
        rows = slice(index * self._stride, (index + 1) * self._stride)
        weights = None if self._weights is None else self._weights[begin:end]
        return JaggedTensor._trusted(self._values[begin:end], self.lengths()[rows], None, weights)

    def __getitem__(self, key: str) -> JaggedTensor:
        """The JaggedTensor of one key (views, no copy)."""
        return self._jagged(self._index_of(key))

    def to_dict(self) -> dict[str, JaggedTensor]:
        """``{key: JaggedTensor}`` in key order (views, no copy)."""
        result: dict[str, JaggedTensor] = {}
        for index, key in enumerate(self._keys):
            if key not in result:
                result[key] = self._jagged(index)
        return result

    # ------------------------------------------------------ split / join / order
    def split(self, segments: Sequence[int]) -> list["KeyedJaggedTensor"]:
        """Cut into consecutive key groups of the given sizes (which sum to len(keys)).

        Example:
            >>> kjt = KeyedJaggedTensor.from_lists({"a": [[1]], "b": [[2]], "c": [[3]]})
            >>> [part.keys() for part in kjt.split([1, 0, 2])]
            [['a'], [], ['b', 'c']]
        """
        sizes = list(segments)
        check_split_sizes(sizes, len(self._keys), f"{_OWNER}.split")
        parts = split_parts(
            self._values, self.lengths(), self._weights, self.offset_per_key(), self._stride, sizes
        )
        bounds = [0]
        for size in sizes:
            bounds.append(bounds[-1] + size)
        return [
            KeyedJaggedTensor._trusted(self._keys[first:last], values, lengths, None, weights, self._stride)
            for (values, lengths, weights), first, last in zip(parts, bounds, bounds[1:])
        ]

    @staticmethod
    def concat(kjts: Sequence["KeyedJaggedTensor"]) -> "KeyedJaggedTensor":
        """Join KeyedJaggedTensors of the same batch; keys are concatenated in order."""
        if not kjts:
            raise JaggedStructureError(f"{_OWNER}.concat needs at least one KeyedJaggedTensor")
        stride = kjts[0].stride()
        for index, kjt in enumerate(kjts):
            if kjt.stride() != stride:
                raise JaggedStructureError(
                    f"{_OWNER}.concat: stride mismatch: input 0 has stride {stride} but "
                    f"input {index} has stride {kjt.stride()}"
                )
        keys = check_keys([key for kjt in kjts for key in kjt.keys()], f"{_OWNER}.concat")
        names = [f"input {index}" for index in range(len(kjts))]
        return KeyedJaggedTensor._join(keys, kjts, names, stride, f"{_OWNER}.concat")

    @staticmethod
    def _join(
        keys: list[str],
        parts: Sequence[Union[JaggedTensor, "KeyedJaggedTensor"]],
        names: list[str],
        stride: int,
        owner: str,
    ) -> "KeyedJaggedTensor":
        values, lengths, weights = join_parts(parts, names, owner)
        return KeyedJaggedTensor._trusted(keys, values, lengths, None, weights, stride)

    def permute(self, indices: Sequence[int]) -> "KeyedJaggedTensor":
        """Reorder keys: key ``i`` of the result is key ``indices[i]`` of this one.

        Indices may repeat (the key's rows are then copied) or leave keys out.

        Example:
            >>> kjt = KeyedJaggedTensor.from_lists({"a": [[1]], "b": [[2, 3]]})
            >>> kjt.permute([1, 0])
            KeyedJaggedTensor({"b": [[2, 3]], "a": [[1]]})
        """
        order = list(indices)
        if not order:
            return KeyedJaggedTensor._empty([], self._stride, like=self)
        values, lengths, weights = permute_parts(
            self._values, self.lengths(), self._weights, self.offset_per_key(),
            self._keys, self._stride, order, f"{_OWNER}.permute",
        )
        return KeyedJaggedTensor._trusted(
            [self._keys[i] for i in order], values, lengths, None, weights, self._stride
        )

    # ------------------------------------------------------------------ devices
    def to(self, device: Union[torch.device, str], non_blocking: bool = False) -> "KeyedJaggedTensor":
        """A copy on ``device`` (tensors already there are not copied)."""

        def move(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return self._map_tensors(move)

    def pin_memory(self) -> "KeyedJaggedTensor":
        """A copy in pinned host memory, for fast asynchronous copies to a GPU."""
        return self._map_tensors(lambda t: None if t is None else t.pin_memory())

    def _map_tensors(self, fn) -> "KeyedJaggedTensor":
        kjt = KeyedJaggedTensor._trusted(
            self._keys,
            fn(self._values),
            fn(self._lengths),
            fn(self._offsets),
            fn(self._weights),
            self._stride,
        )
        # The per-key sizes are plain ints, valid on any device.
        kjt._length_per_key = self._length_per_key
        kjt._offset_per_key = self._offset_per_key
        return kjt

    # ----------------------------------------------------------- test & display
    def equals(self, other: "KeyedJaggedTensor") -> bool:
        """Same keys, stride, lengths, ids (and id dtype) and weights."""
        if not isinstance(other, KeyedJaggedTensor):
            return False
        if self._keys != other._keys or self._stride != other._stride:
            return False
        if self._values.dtype != other._values.dtype:
            return False
        if not (torch.equal(self.lengths(), other.lengths()) and torch.equal(self._values, other._values)):
            return False
        if self._weights is None or other._weights is None:
            return self._weights is None and other._weights is None
        return torch.equal(self._weights, other._weights)

    def __repr__(self) -> str:
        lengths = self.lengths().tolist()
        starts = self.offset_per_key()
        text = format_keyed_rows(self._keys, self._values, lengths, starts)
        if self._weights is not None:
            text += ", weights=" + format_keyed_rows(self._keys, self._weights, lengths, starts)
        if not self._keys and self._stride != 0:
            text += f", stride={self._stride}"  # not visible from the (empty) mapping
        return f"{_OWNER}({text})"
