"""Dynamic tables: one row per live raw id, with admission, eviction and expiry.

Set ``dynamic=DynamicSpec(...)`` on a table config; both collections then give that table
a :class:`DynamicEmbeddingTable`, which maps raw int64 ids (or hashed strings) to its
``num_embeddings`` rows through an :class:`IdRowMap`:

| option         | what it does                                                            |
|----------------|-------------------------------------------------------------------------|
| ``min_count``  | an id gets a row after this many occurrences (exact or count-min count) |
| ``eviction``   | when full: ``"lru"`` (seen longest ago), ``"lfu"`` (fewest uses), ``"none"`` |
| ``ttl``        | rows unseen for ``ttl`` training steps are freed                        |
| ``default_row``| ids without a row read zeros (``"zero"``) or a shared trained row        |

Recycled rows restart from fresh initial values and zeroed fused-optimizer state; the map,
counters and timestamps live in ``state_dict``; ``export()`` / ``load_export()`` move the
live ``(ids, vectors)`` to serving and back. :func:`assign_many` / :func:`map_ids_many` map several
tables' ids at once on threads.

Example:
    >>> cfg = EmbeddingBagConfig(name="t_item", num_embeddings=100_000, embedding_dim=32, feature_names=["item"],
    ...                          optimizer="rowwise_adagrad", dynamic=DynamicSpec(min_count=2, ttl=1000))
    >>> ebc = EmbeddingBagCollection([cfg])     # item ids may be any int64 value
"""

from recembed.dynamic.id_map import IdRowMap
from recembed.dynamic.parallel import assign_many, map_ids_many
from recembed.dynamic.spec import (
    AdmissionCounter,
    DefaultRow,
    DynamicSpec,
    Eviction,
    IdType,
)
from recembed.dynamic.table import DynamicEmbeddingTable

__all__ = ["AdmissionCounter", "DefaultRow", "DynamicEmbeddingTable", "DynamicSpec", "Eviction", "IdRowMap", "IdType",
           "assign_many", "map_ids_many"]
