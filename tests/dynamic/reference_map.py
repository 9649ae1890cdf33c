"""A plain-Python IdRowMap with the documented rules, written for clarity, not speed.

The tests run it beside the compiled map on random streams and require the same rows,
the same recycled rows and the same live set after every step.
"""

from __future__ import annotations


class ReferenceMap:
    def __init__(self, capacity, min_count=1, eviction="lru", ttl=None, padding_id=None, counter_capacity=None):
        self.capacity, self.min_count, self.eviction, self.ttl = capacity, min_count, eviction, ttl
        self.padding_id = padding_id
        self.limit = counter_capacity or capacity
        self.step = 0
        self.row_of: dict[int, int] = {}
        self.owner: dict[int, int] = {}
        self.last: dict[int, int] = {}
        self.count: dict[int, int] = {}
        self.stamp: dict[int, int] = {}  # row -> stamp of its latest first touch in a step
        self.stamps = 0
        self.free = list(range(capacity - 1, -1, -1))  # pop() takes row 0 first
        self.ever_owned: set[int] = set()
        self.pending: dict[int, list[int]] = {}  # id -> [count, last step]

    def advance(self):
        self.step += 1

    def _expired(self, row):
        return self.ttl is not None and self.step - self.last[row] > self.ttl

    def _new_stamp(self, row):
        self.stamps += 1
        self.stamp[row] = self.stamps

    def _release(self, row):
        del self.row_of[self.owner.pop(row)]

    def _take_row(self):
        if self.free:
            return self.free.pop()
        owned = list(self.owner)
        if self.ttl is not None:
            expired = [r for r in owned if self._expired(r)]
            if expired:
                row = min(expired, key=lambda r: self.stamp[r])
                self._release(row)
                return row
        idle = [r for r in owned if self.last[r] != self.step]
        if not idle or self.eviction == "none":
            return None
        if self.eviction == "lru":
            row = min(idle, key=lambda r: self.stamp[r])
        else:
            row = min(idle, key=lambda r: (self.count[r], self.stamp[r]))
        self._release(row)
        return row

    def _count(self, key, occurrences):
        if self.min_count == 1:
            return occurrences
        if key in self.pending:
            entry = self.pending[key]
            entry[0] += occurrences
            entry[1] = self.step
            return entry[0]
        if len(self.pending) >= self.limit:
            seen = sorted(v[1] for v in self.pending.values())
            cutoff = seen[(len(seen) - 1) // 2]  # forget ids last seen at or before the lower median
            self.pending = {k: v for k, v in self.pending.items() if v[1] > cutoff}
        self.pending[key] = [occurrences, self.step]
        return occurrences

    def assign(self, ids):
        default = self.capacity
        out = [None] * len(ids)
        misses = []
        for i, key in enumerate(ids):
            if key == self.padding_id:
                out[i] = default
                continue
            row = self.row_of.get(key)
            if row is not None and self._expired(row):
                self._release(row)
                self.free.append(row)
                row = None
            if row is None:
                misses.append(i)
                continue
            out[i] = row
            if self.last[row] != self.step:
                self.last[row] = self.step
                self._new_stamp(row)
            self.count[row] += 1
        occurrences: dict[int, int] = {}
        for i in misses:
            occurrences[ids[i]] = occurrences.get(ids[i], 0) + 1
        given: dict[int, int] = {}
        recycled = []
        for key, occ in occurrences.items():  # dicts keep first-appearance order
            count = self._count(key, occ)
            given[key] = default
            if count < self.min_count:
                continue
            row = self._take_row()
            if row is None:
                continue
            self.pending.pop(key, None)
            if row in self.ever_owned:
                recycled.append(row)
            self.ever_owned.add(row)
            self.row_of[key], self.owner[row] = row, key
            self.last[row], self.count[row] = self.step, count
            self._new_stamp(row)
            given[key] = row
        for i in misses:
            out[i] = given[ids[i]]
        return out, recycled

    def live(self):
        return sorted((k, r) for k, r in self.row_of.items() if not self._expired(r))
