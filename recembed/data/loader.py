"""Background prefetching: read the next batches while the model works on this one."""

from __future__ import annotations

import queue
import threading
from typing import Generic, Iterable, Iterator, TypeVar

from recembed.errors import ConfigError

__all__ = ["PrefetchLoader"]

T = TypeVar("T")
_ITEM, _ERROR, _END = 0, 1, 2
_POLL_SECONDS = 0.05


class PrefetchLoader(Generic[T]):
    """Iterates ``iterable`` in a background thread, keeping up to ``depth`` items ready.

    File reading, parsing and numpy work release the GIL often enough to overlap with
    torch compute in the main thread. An exception in the worker is re-raised (same
    type, original traceback) in the consumer at the point it would have occurred. If
    the consumer stops early (``break``, an exception, or dropping the iterator), the
    worker stops after its current item and the source iterator is closed.

    Each ``iter()`` starts a fresh pass over ``iterable``, so a re-iterable source
    (a reader, ``Interactions.to_batches(...)``) gives one epoch per loop.

    Args:
        iterable: any iterable, usually of :class:`~recembed.data.batch.Batch`.
        depth: how many items may wait in the queue (>= 1).
        pin_memory: call ``item.pin_memory()`` in the worker (for batches going to a GPU).

    Example:
        >>> for batch in PrefetchLoader(reader, depth=2):  # doctest: +SKIP
        ...     loss = model(batch.sparse, batch.dense)
    """

    def __init__(self, iterable: Iterable[T], depth: int = 2, *, pin_memory: bool = False) -> None:
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ConfigError(f"PrefetchLoader depth must be an int >= 1, got {depth!r}")
        self.iterable = iterable
        self.depth = depth
        self.pin_memory = bool(pin_memory)

    def __len__(self) -> int:
        return len(self.iterable)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[T]:
        slots: queue.Queue = queue.Queue(maxsize=self.depth)
        stop = threading.Event()
        source = iter(self.iterable)
        thread = threading.Thread(
            target=self._work, args=(source, slots, stop), name="recembed-prefetch", daemon=True
        )
        thread.start()
        try:
            while True:
                kind, payload = slots.get()
                if kind == _END:
                    return
                if kind == _ERROR:
                    raise payload
                yield payload
        finally:
            stop.set()
            thread.join()

    def _work(self, source: Iterator[T], slots: queue.Queue, stop: threading.Event) -> None:
        def put(message: tuple) -> bool:
            # Poll so that a consumer that went away (stop set) never leaves us blocked.
            while not stop.is_set():
                try:
                    slots.put(message, timeout=_POLL_SECONDS)
                    return True
                except queue.Full:
                    continue
            return False

        try:
            for item in source:
                if self.pin_memory:
                    item = item.pin_memory()  # type: ignore[attr-defined]
                if not put((_ITEM, item)):
                    return
            put((_END, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises
            put((_ERROR, exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()
