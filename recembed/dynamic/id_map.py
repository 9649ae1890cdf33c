"""The id -> row map of a dynamic table: admission, eviction and expiry over numpy arrays.

``IdRowMap`` holds ``capacity`` rows for raw int64 ids plus one shared *default row*
(row ``capacity``) for ids that have no row. It knows nothing about vectors: the table
(:mod:`recembed.dynamic.table`) asks it for rows, and refreshes the rows it reports as
recycled. Every pass over a batch is one compiled numba call (:mod:`recembed.dynamic._assign`).

Rules (``step`` is the map's clock, advanced by the table once per training batch):

- A row is *live* while its id owns it and, with a ``ttl``, it was seen within the last
  ``ttl`` steps (``step - last_step <= ttl``). An id whose row has been unseen for more
  than ``ttl`` steps is new again the next time it appears.
- A new id's occurrences are counted (exactly, or by a count-min sketch); once its count
  reaches ``min_count`` it takes a row: a free row (lowest first, then the most recently
  freed), else an expired one, else the eviction victim. LRU evicts the row seen longest
  ago, ties to the one touched first in that step; LFU the row with the lowest count
  (occurrences since admission, starting at the admission count), ties as LRU.
  ``"none"`` never evicts.
- Rows touched in the current step are never taken, so when every row is in use new ids
  fall back to the default row for that step.

Example:
    >>> m = IdRowMap(capacity=2)
    >>> m.advance()
    1
    >>> m.assign(np.array([10, 11, 10]))[0].tolist()
    [0, 1, 0]
    >>> m.advance()
    2
    >>> m.assign(np.array([12]))[0].tolist()   # LRU: 10 and 11 tie at step 1; 10 came first
    [0]
"""

from __future__ import annotations

import numpy as np

from recembed.dynamic import _assign as kernels
from recembed.dynamic._hashing import (
    counter_load,
    map_slot_count,
    power_of_two_at_least,
    slot_count_for,
)
from recembed.dynamic._heap import (
    ID,
    LAST,
    META_COLUMNS,
    SAVED_META_COLUMNS,
    heap_rebuild,
)
from recembed.dynamic._pool import pool_target
from recembed.kernels.host_memory import zeros_array

__all__ = ["IdRowMap"]

_EVICTION = {"none": kernels.NONE, "lru": kernels.LRU, "lfu": kernels.LFU}
_COUNTER = {"exact": kernels.EXACT, "count_min": kernels.COUNT_MIN}
#: Arrays a saved map consists of (``IdRowMap.state_arrays``), besides the scalars.
STATE_KEYS = ("meta", "free_rows", "lfu_heap", "pending", "sketch")
#: Arrays older versions saved that are no longer needed (accepted and ignored on load):
#: the LRU queue's order is the rows' stamp order, which ``meta`` holds.
LEGACY_STATE_KEYS = ("lru_queue",)


class IdRowMap:
    """Maps raw int64 ids to rows ``[0, capacity)``; row ``capacity`` is the default row.

    Args:
        capacity: rows available to ids (>= 1).
        min_count: occurrences before an id is admitted (>= 1).
        counter: ``"exact"`` (a table of pending ids, at most ``counter_capacity`` of them;
            when full, those last seen at or before the median step - at least half - are
            forgotten) or ``"count_min"``.
        eviction: ``"lru"``, ``"lfu"`` or ``"none"``.
        ttl: steps a row may go unseen before it expires, or None.
        padding_id: an id that always maps to the default row (never admitted).
        counter_capacity, sketch_width, sketch_depth, seed: counter sizes and hash seed.
    """

    def __init__(self, capacity: int, *, min_count: int = 1, counter: str = "exact", eviction: str = "lru",
                 ttl: int | None = None, padding_id: int | None = None, counter_capacity: int | None = None,
                 sketch_width: int | None = None, sketch_depth: int = 4, seed: int = 0) -> None:
        self.capacity = int(capacity)
        self.min_count = int(min_count)
        self.counter, self.eviction, self.ttl = counter, eviction, ttl
        self.padding_id = padding_id
        self._step = 0
        self.meta = zeros_array((capacity, META_COLUMNS), np.int64)  # probed at random: huge pages
        self.meta[:, LAST] = -1
        self.free_rows = np.arange(capacity - 1, -1, -1, dtype=np.int64)  # a stack: row 0 is taken first
        self.scal = np.zeros(7, np.int64)
        self.scal[kernels.NFREE] = capacity
        self.slots = zeros_array((map_slot_count(capacity), 2), np.int64)
        self.slots.fill(-1)
        # LRU / TTL victims: the oldest rows in stamp order, refilled from ``meta`` when used up.
        self.victim_pool = zeros_array((capacity if eviction == "lru" or ttl else 0, 2), np.int64)
        self.pool_target = pool_target(capacity)
        self.lfu_heap = zeros_array((2 * capacity + 16 if eviction == "lfu" else 0, 4), np.int64)
        exact = min_count > 1 and counter == "exact"
        self.counter_limit = int(counter_capacity or capacity) if exact else 0
        self.pending = zeros_array((slot_count_for(self.counter_limit) if exact else 1, 3), np.int64)
        sketched = min_count > 1 and counter == "count_min"
        width = power_of_two_at_least(sketch_width or capacity) if sketched else 1
        self.sketch = zeros_array((sketch_depth if sketched else 1, width), np.int32)
        rng = np.random.default_rng(seed)
        self.salts = rng.integers(0, 2**63 - 1, size=max(sketch_depth, 1), dtype=np.int64).astype(np.uint64)

    # ---- clock --------------------------------------------------------------------------
    @property
    def step(self) -> int:
        """Steps counted so far (0 before the first training batch)."""
        return self._step

    def advance(self) -> int:
        """Start the next step; returns it."""
        self._step += 1
        return self._step

    @property
    def default_row(self) -> int:
        return self.capacity

    # ---- mapping ------------------------------------------------------------------------
    def assign(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Training pass: ``ids (N,)`` int64 -> ``(rows (N,), recycled rows (R,))``.

        Touches live rows, counts and admits new ids, evicts or expires rows as needed.
        ``recycled`` lists rows that held another id before and were just given to a new
        one; their vectors and optimizer state must be refreshed by the caller.
        """
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        rows = np.empty(ids.shape[0], np.int64)
        recycled = kernels.assign_rows(
            ids, rows, self._step, self.ttl or 0, self.min_count, _COUNTER[self.counter], _EVICTION[self.eviction],
            self.padding_id or 0, self.padding_id is not None, self.slots, self.slots.shape[0] - 1, self.meta,
            self.free_rows, self.scal, self.victim_pool, self.pool_target, self.lfu_heap, self.pending,
            self.pending.shape[0] - 1,
            self.counter_limit, self.sketch, self.salts,
        )
        return rows, recycled

    def find(self, ids: np.ndarray) -> np.ndarray:
        """Read-only pass: live ids -> their rows, any other id -> the default row; nothing changes."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        rows = np.empty(ids.shape[0], np.int64)
        kernels.find_rows(ids, rows, self._step, self.ttl or 0, self.padding_id or 0, self.padding_id is not None,
                          self.slots, self.slots.shape[0] - 1, self.meta)
        return rows

    def live(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ids (M,), rows (M,))`` of the live rows, sorted by id."""
        owned = self.meta[:, LAST] >= 0
        if self.ttl:
            owned &= self._step - self.meta[:, LAST] <= self.ttl
        rows = np.flatnonzero(owned)
        ids = self.meta[rows, ID]
        order = np.argsort(ids, kind="stable")
        return ids[order], rows[order]

    def num_live(self) -> int:
        """Rows owned by an id and not expired (O(1) without a ttl)."""
        if not self.ttl:
            return int(self.scal[kernels.LIVE])
        last = self.meta[:, LAST]
        return int(np.count_nonzero((last >= 0) & (self._step - last <= self.ttl)))

    def place(self, ids: np.ndarray) -> np.ndarray:
        """Empty the map, then give ``ids[k]`` (distinct, at most ``capacity``) row ``k``; returns rows."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        self.scal[kernels.NFREE] = kernels.place_ids(ids, self._step, self.slots, self.slots.shape[0] - 1,
                                                     self.meta, self.free_rows, self.scal)
        self.scal[kernels.LIVE] = ids.shape[0]
        if self.lfu_heap.shape[0]:
            self.scal[kernels.HEAP] = heap_rebuild(self.lfu_heap, self.meta)
        return np.arange(ids.shape[0], dtype=np.int64)

    # ---- state --------------------------------------------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to continue identically, as int arrays (the id map is rebuilt from ``meta``).

        ``meta (capacity, 5)`` holds each row's ``[id, last_step (-1 = free), count, generation,
        stamp]``; ``stamp`` the last stamp given; ``free_rows`` the free-row stack; ``lfu_heap``
        its entries; ``pending`` the exact counters as ``[id, count, last_step]``
        rows sorted by id; ``sketch`` the count-min table.
        """
        s = self.scal
        used = self.pending[self.pending[:, 1] != 0]
        return {
            "step": np.array(self._step, np.int64),
            "stamp": np.array(s[kernels.STAMPS], np.int64),
            "meta": self.meta[:, :SAVED_META_COLUMNS].copy(),
            "free_rows": self.free_rows[: s[kernels.NFREE]].copy(),
            "lfu_heap": self.lfu_heap[: s[kernels.HEAP]].copy(),
            "pending": used[np.argsort(used[:, 0], kind="stable")],
            "sketch": self.sketch.copy(),
        }

    def load_state_arrays(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`state_arrays` output (shapes are checked by the caller).

        The victim pool is not saved: it starts empty and is refilled from ``meta`` when
        victims are needed, giving the same victims the saved map would have chosen.
        """
        self._step = int(state["step"])
        self.meta[:, :SAVED_META_COLUMNS] = state["meta"]
        nfree, nh = len(state["free_rows"]), len(state["lfu_heap"])
        self.free_rows[:nfree] = state["free_rows"]
        self.lfu_heap[:nh] = state["lfu_heap"]
        self.sketch[:] = state["sketch"]
        self.pending[:, 1] = 0
        if self.counter_limit:
            counter_load(self.pending, self.pending.shape[0] - 1, np.ascontiguousarray(state["pending"], np.int64))
        live = kernels.rebuild_map(self.slots, self.slots.shape[0] - 1, self.meta)
        self.scal[:] = [nfree, 0, 0, nh, len(state["pending"]), live, int(state["stamp"])]

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """Fixed shapes of the saved arrays (the others vary up to a bound)."""
        return {"meta": (self.capacity, SAVED_META_COLUMNS), "sketch": self.sketch.shape}

    def bounds(self) -> dict[str, int]:
        """Largest row counts of the variable-size saved arrays."""
        return {"free_rows": self.capacity, "lfu_heap": self.lfu_heap.shape[0], "pending": self.counter_limit}

    def __repr__(self) -> str:
        return (f"IdRowMap(capacity={self.capacity}, live={int(self.scal[kernels.LIVE])}, step={self._step}, "
                f"min_count={self.min_count}, counter={self.counter!r}, eviction={self.eviction!r}, ttl={self.ttl})")
