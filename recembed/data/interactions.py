"""User-item interactions held in memory (MovieLens-style ratings, implicit feedback).

Raw user and item ids are mapped to dense rows ``0..num_users-1`` and
``0..num_items-1`` (every id in the table is known, so there is no OOV row); the maps
are kept as ``user_ids[row] -> raw id`` and ``item_ids[row] -> raw id``. Subsets made
by splits share the maps, so rows mean the same thing in train and test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from recembed.data.batching import InMemoryBatches
from recembed.data.row_block import RowBlock
from recembed.errors import ShapeMismatchError, UnknownKeyError

__all__ = ["Interactions"]


@dataclass(eq=False)
class Interactions:
    """``n`` (user, item, rating, timestamp) events.

    Attributes:
        user_rows: ``(n,)`` int64 rows in ``[0, num_users)``.
        item_rows: ``(n,)`` int64 rows in ``[0, num_items)``.
        ratings: ``(n,)`` float32 (1.0 for implicit feedback).
        timestamps: ``(n,)`` int64 or None.
        user_ids: ``(num_users,)`` raw id of each user row.
        item_ids: ``(num_items,)`` raw id of each item row.

    Example:
        >>> data = Interactions.from_raw_ids([10, 10, 42], [7, 9, 7], ratings=[4, 3, 5])
        >>> data.user_rows.tolist(), data.item_rows.tolist(), data.num_rows
        ([0, 0, 1], [0, 1, 0], {'user': 2, 'item': 2})
    """

    user_rows: np.ndarray
    item_rows: np.ndarray
    ratings: np.ndarray
    timestamps: Optional[np.ndarray]
    user_ids: np.ndarray
    item_ids: np.ndarray
    _row_of: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.user_rows = np.asarray(self.user_rows, dtype=np.int64)
        self.item_rows = np.asarray(self.item_rows, dtype=np.int64)
        self.ratings = np.asarray(self.ratings, dtype=np.float32)
        self.user_ids = np.asarray(self.user_ids)
        self.item_ids = np.asarray(self.item_ids)
        if self.timestamps is not None:
            self.timestamps = np.asarray(self.timestamps, dtype=np.int64)
        n = self.user_rows.shape[0]
        shapes = {"user_rows": self.user_rows.shape, "item_rows": self.item_rows.shape, "ratings": self.ratings.shape}
        if self.timestamps is not None:
            shapes["timestamps"] = self.timestamps.shape
        if any(s != (n,) for s in shapes.values()):
            raise ShapeMismatchError(f"Interactions: every column must have shape ({n},), got {shapes}")
        for name, rows, count in (
            ("user_rows", self.user_rows, len(self.user_ids)),
            ("item_rows", self.item_rows, len(self.item_ids)),
        ):
            if n and (rows.min() < 0 or rows.max() >= count):
                raise ShapeMismatchError(
                    f"Interactions.{name} must lie in [0, {count}), got [{rows.min()}, {rows.max()}]"
                )

    @classmethod
    def from_raw_ids(
        cls,
        user_ids,
        item_ids,
        ratings=None,
        timestamps=None,
    ) -> "Interactions":
        """Map raw ids to rows (rows follow sorted raw id order); ratings default to 1.0."""
        users, user_rows = np.unique(np.asarray(user_ids), return_inverse=True)
        items, item_rows = np.unique(np.asarray(item_ids), return_inverse=True)
        n = len(user_rows)
        return cls(
            user_rows=user_rows.reshape(-1),
            item_rows=item_rows.reshape(-1),
            ratings=np.ones(n, dtype=np.float32) if ratings is None else ratings,
            timestamps=timestamps,
            user_ids=users,
            item_ids=items,
        )

    def __len__(self) -> int:
        return int(self.user_rows.shape[0])

    @property
    def num_users(self) -> int:
        return int(len(self.user_ids))

    @property
    def num_items(self) -> int:
        return int(len(self.item_ids))

    @property
    def num_rows(self) -> dict[str, int]:
        """Table rows for the batch features: ``{"user": num_users, "item": num_items}``."""
        return {"user": self.num_users, "item": self.num_items}

    def _lookup(self, kind: str, raw_id) -> int:
        ids = self.user_ids if kind == "user" else self.item_ids
        if kind not in self._row_of:
            self._row_of[kind] = {v: i for i, v in enumerate(ids.tolist())}
        try:
            return self._row_of[kind][raw_id]
        except KeyError:
            raise UnknownKeyError(f"Interactions: raw {kind} id {raw_id!r} is not in the data") from None

    def user_row(self, raw_id) -> int:
        """The row of raw user id ``raw_id``."""
        return self._lookup("user", raw_id)

    def item_row(self, raw_id) -> int:
        """The row of raw item id ``raw_id``."""
        return self._lookup("item", raw_id)

    def subset(self, index: np.ndarray) -> "Interactions":
        """Events ``index`` (positions or a bool mask), sharing the id maps."""
        return Interactions(
            user_rows=self.user_rows[index],
            item_rows=self.item_rows[index],
            ratings=self.ratings[index],
            timestamps=None if self.timestamps is None else self.timestamps[index],
            user_ids=self.user_ids,
            item_ids=self.item_ids,
        )

    def to_block(self) -> RowBlock:
        """The events as a :class:`RowBlock` with features ``user`` and ``item``, label = rating."""
        n = len(self)
        ones = np.ones(n, dtype=np.int64)
        return RowBlock(
            labels=self.ratings,
            dense=np.zeros((n, 0), dtype=np.float32),
            sparse={"user": (ones, self.user_rows), "item": (ones, self.item_rows)},
            timestamps=self.timestamps,
        )

    def to_batches(
        self, batch_size: int = 1024, shuffle: bool = False, seed: int = 0, drop_last: bool = False
    ) -> InMemoryBatches:
        """A re-iterable stream of batches: sparse ``user``/``item`` (one id each),
        ``dense`` of shape ``(B, 0)``, ``labels`` = ratings, ``timestamps`` when known.
        """
        return InMemoryBatches(self.to_block(), batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)

    def __repr__(self) -> str:
        return (
            f"Interactions({len(self)} events, {self.num_users} users, {self.num_items} items, "
            f"timestamps={'yes' if self.timestamps is not None else 'no'})"
        )
