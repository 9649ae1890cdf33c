import threading
import time

import pytest

from recembed.data import PrefetchLoader, make_ratings_dataset
from recembed.errors import ConfigError, DataFormatError


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "recembed-prefetch"]


def test_yields_the_same_batches_in_order(collect):
    stream = make_ratings_dataset(num_users=20, num_items=20, num_ratings=150, seed=0).interactions.to_batches(
        batch_size=16, shuffle=True, seed=3
    )
    stream.set_epoch(0)
    plain = collect(stream)
    stream.set_epoch(0)
    loader = PrefetchLoader(stream, depth=2)
    assert len(loader) == len(stream) == 10
    prefetched = collect(loader)
    assert prefetched["sparse"] == plain["sparse"]
    assert prefetched["labels"].tolist() == plain["labels"].tolist()
    assert _prefetch_threads() == []


def test_worker_exception_reaches_the_consumer_after_earlier_items():
    def source():
        yield 1
        yield 2
        raise DataFormatError("broken line", path="f.tsv", line=3)

    seen = []
    with pytest.raises(DataFormatError, match=r"f\.tsv:3: broken line"):
        for item in PrefetchLoader(source()):
            seen.append(item)
    assert seen == [1, 2]


def test_early_stop_closes_the_source_and_the_thread():
    closed = threading.Event()
    produced = []

    def endless():
        try:
            i = 0
            while True:
                produced.append(i)
                yield i
                i += 1
        finally:
            closed.set()

    loader = PrefetchLoader(endless(), depth=3)
    for item in loader:
        if item == 4:
            break
    assert closed.wait(5.0)
    assert _prefetch_threads() == []
    count = len(produced)
    time.sleep(0.1)
    assert len(produced) == count and count <= 4 + 1 + 3 + 1  # bounded read-ahead


def test_items_are_read_ahead_while_the_consumer_works():
    produced = []

    def source():
        for i in range(5):
            produced.append(i)
            yield i

    it = iter(PrefetchLoader(source(), depth=2))
    assert next(it) == 0
    deadline = time.time() + 5
    while len(produced) < 3 and time.time() < deadline:
        time.sleep(0.01)
    assert len(produced) >= 3  # items 1 and 2 were fetched before being asked for
    assert list(it) == [1, 2, 3, 4]


def test_depth_must_be_positive():
    with pytest.raises(ConfigError, match="depth"):
        PrefetchLoader([], depth=0)
    assert list(PrefetchLoader([])) == []
