"""Sharding a whole model: its collections become sharded ones, its dense part stays in sync.

:func:`shard` swaps every :class:`~recembed.tables.EmbeddingBagCollection` of a model for a
:class:`ShardedEmbeddingBagCollection` (and every EmbeddingCollection for a
:class:`ShardedEmbeddingCollection`), in place, and keeps the dense part (MLPs, biases,
buffers) replicated: it broadcasts rank 0's dense parameters and buffers once, then
all-reduces each dense gradient as backward produces it.

Why not wrap the model in ``DistributedDataParallel``: DDP only synchronises gradients of
graphs built through its own ``forward``, while recembed's tasks also train through model
methods (``TwoTower.loss``); it would also broadcast the sharded collections' buffers
(their fused optimizer state differs per rank) and rename every ``state_dict`` key. The
hooks here do DDP's job for any call path, with the same torch collectives.

:func:`unshard` gathers the tables back into plain collections on every rank (for
evaluation, retrieval or export).

Example (every rank)::

    info = init_from_env()
    model = DLRM(...)                                     # the same seed on every rank
    model = shard(model, {"t_ad": ShardingSpec("row_wise", (0, 1)), "t_site": ShardingSpec("table_wise", (1,))})
    loss = loss_fn(model(dense_local, sparse_local), labels_local)
    loss.backward()                                       # fused tables updated, dense grads all-reduced
"""

from __future__ import annotations

import copy
import hashlib
import weakref
from dataclasses import replace
from typing import Mapping

import torch
from torch import nn

from recembed.distributed.comm import Comm
from recembed.distributed.plan_types import ShardingPlan, ShardingSpec, ShardingType
from recembed.distributed.sharded_collection import (
    LOSS_REDUCTIONS,
    ShardedEmbeddingBagCollection,
)
from recembed.distributed.sharded_sequence import (
    ShardedEmbeddingCollection,
    as_sequence_collection,
)
from recembed.distributed.table_state import (
    Collection,
    collection_configs,
    slice_block,
    table_is_plain,
    table_tensors,
)
from recembed.errors import ConfigError, UnknownKeyError
from recembed.tables import EmbeddingBagCollection, EmbeddingCollection

__all__ = ["shard", "shard_model", "unshard", "unsharded_copy", "find_collections", "sharded_collections",
           "plan_key", "ambiguous_table_names", "gather_collection", "DenseGradientSync", "SHARDED"]

SHARDED = (ShardedEmbeddingBagCollection, ShardedEmbeddingCollection)

# Dense-gradient hooks of each sharded model, so unshard() can remove them.
_SYNCS: "weakref.WeakKeyDictionary[nn.Module, DenseGradientSync]" = weakref.WeakKeyDictionary()


def find_collections(model: nn.Module) -> list[tuple[str, Collection]]:
    """``(module path, collection)`` of every EmbeddingBagCollection and EmbeddingCollection in
    ``model`` (path "" for the model itself)."""
    kinds = (EmbeddingBagCollection, EmbeddingCollection)
    return [(path, m) for path, m in model.named_modules() if isinstance(m, kinds)]


def sharded_collections(model: nn.Module) -> list[tuple[str, ShardedEmbeddingBagCollection, bool]]:
    """``(module path, sharded pooled collection, is_sequence)`` of every sharded collection in
    ``model``; for a sharded EmbeddingCollection the path is its own and the collection its ``inner``."""
    sequences = {p: m for p, m in model.named_modules() if isinstance(m, ShardedEmbeddingCollection)}
    inner = {id(m.inner) for m in sequences.values()}
    found = [(p, m.inner, True) for p, m in sequences.items()]
    found += [(p, m, False) for p, m in model.named_modules()
              if isinstance(m, ShardedEmbeddingBagCollection) and id(m) not in inner]
    return sorted(found, key=lambda item: item[0])


def plan_key(path: str, table: str, ambiguous: set[str]) -> str:
    """The plan's name for a table: its own name, or ``"<module path>.<table>"`` when two
    collections have a table of that name (table names never contain '.')."""
    return f"{path}.{table}" if table in ambiguous and path else table


def ambiguous_table_names(collections: list[tuple[str, Collection]]) -> set[str]:
    """Table names that occur in more than one collection (the plan qualifies them with the path)."""
    seen: dict[str, int] = {}
    for _, c in collections:
        for cfg in collection_configs(c):
            seen[cfg.name] = seen.get(cfg.name, 0) + 1
    return {n for n, k in seen.items() if k > 1}


def _specs_per_collection(plan: ShardingPlan, collections) -> dict[str, dict[str, ShardingSpec]]:
    ambiguous = ambiguous_table_names(collections)
    out: dict[str, dict[str, ShardingSpec]] = {}
    used, missing = set(), []
    for path, collection in collections:
        specs = {}
        for cfg in collection_configs(collection):
            key = plan_key(path, cfg.name, ambiguous)
            if key in plan:
                specs[cfg.name] = plan[key]
                used.add(key)
            else:
                missing.append(key)
        out[path] = specs
    if missing:
        raise ConfigError(f"the sharding plan has no entry for table(s) {missing}; plan tables: {plan.tables()}")
    extra = [k for k in plan.tables() if k not in used]
    if extra:
        known = [plan_key(p, c.name, ambiguous) for p, col in collections for c in collection_configs(col)]
        raise UnknownKeyError(f"the sharding plan names table(s) {extra} that the model does not have (tables: {known})")
    return out


def _digest(tensors: dict[str, torch.Tensor]) -> list[int]:
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        h.update(key.encode())
        if t.numel():
            h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return list(h.digest())


def _agree_on_tables(collections, comm: Comm) -> list[str]:
    """Make every rank's tables equal rank 0's before slicing; returns the tables that differed.

    Ranks normally build the model with the same seed; a fingerprint check costs one small
    all_gather, and only tables that differ are broadcast in full.
    """
    tables = [(path, c, cfg.name) for path, c in collections for cfg in collection_configs(c)]
    if not tables:
        return []
    local = torch.tensor([_digest(table_tensors(c, name)) for _, c, name in tables], dtype=torch.uint8)
    gathered = comm.all_gather(local, "table fingerprints")
    differ = [i for i in range(len(tables)) if any(not torch.equal(g[i], gathered[0][i]) for g in gathered)]
    with torch.no_grad():
        for i in differ:
            _, c, name = tables[i]
            for key, tensor in sorted(table_tensors(c, name).items()):
                comm.broadcast_(tensor, 0, f"table '{name}' {key} from rank 0")
    return [tables[i][2] for i in differ]


class DenseGradientSync:
    """All-reduces the gradient of each dense parameter as backward produces it.

    One hook per parameter (``Tensor.register_hook``), so it works whatever method built
    the graph, and gradient accumulation over several backward passes stays correct (each
    pass's contribution is reduced once). With ``average`` the sum is divided by the world
    size (DDP's convention, for losses that are means over the local batch).
    """

    def __init__(self, params: list[tuple[str, nn.Parameter]], comm: Comm, average: bool) -> None:
        self.comm, self.average = comm, average
        self.handles = [p.register_hook(self._hook(name)) for name, p in params if p.requires_grad]

    def _hook(self, name: str):
        def reduce(grad: torch.Tensor) -> torch.Tensor:
            total = self.comm.all_reduce_(grad.detach().clone(), f"gradient all-reduce of '{name}'")
            return total / self.comm.world_size if self.average else total

        return reduce

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


def _dense_tensors(model: nn.Module) -> tuple[list[tuple[str, nn.Parameter]], list[tuple[str, torch.Tensor]]]:
    sharded = {id(t) for m in model.modules() if isinstance(m, SHARDED)
               for t in list(m.parameters()) + list(m.buffers())}
    params = [(n, p) for n, p in model.named_parameters() if id(p) not in sharded]
    buffers = [(n, b) for n, b in model.named_buffers() if id(b) not in sharded]
    return params, buffers


def _outer_sharded(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Sharded collections that are not inside another (a sharded sequence collection's ``inner``)."""
    found = [(p, m) for p, m in model.named_modules() if isinstance(m, SHARDED)]
    return [(p, m) for p, m in found if not any(p.startswith(q + ".") for q, _ in found if q)]


def _replace_module(model: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, new)


def shard(model: nn.Module, plan: ShardingPlan | Mapping[str, ShardingSpec], pg=None,
          loss_reduction: str = "mean") -> nn.Module:
    """Shard ``model``'s embedding tables over the ranks of ``pg`` (default: the world), in place.

    Call it on every rank with the same model (built with the same seed; tables that differ
    are replaced by rank 0's) and the same plan.

    Args:
        model: any module containing EmbeddingBagCollections / EmbeddingCollections, or a
            collection itself.
        plan: a :class:`ShardingPlan` (e.g. from :func:`recembed.distributed.plan`) or a
            ``{table: ShardingSpec}`` dict naming every table (``"<path>.<table>"`` when two
            collections share a table name).
        pg: the process group.
        loss_reduction: ``"mean"`` if each rank's loss is a mean over its local batch (the
            result then equals one process training on the global batch with a mean loss);
            ``"sum"`` if it is a sum (equal to one process with a summed loss).

    Returns:
        The model (or, if ``model`` was a collection, its sharded replacement).

    Raises:
        ConfigError: a table missing from the plan, or a spec the table cannot take.
        UnknownKeyError: the plan names a table the model does not have.
        DistributedError: torch.distributed is not initialised, or a peer failed.
    """
    if loss_reduction not in LOSS_REDUCTIONS:
        raise ConfigError(f"loss_reduction must be one of {LOSS_REDUCTIONS}, got {loss_reduction!r}")
    if any(isinstance(m, SHARDED) for m in model.modules()):
        raise ConfigError("the model is already sharded; call unshard(model) first to re-shard it")
    comm = Comm(pg)
    plan = ShardingPlan.coerce(plan, comm.world_size)
    collections = find_collections(model)
    if not collections:
        raise ConfigError(f"{type(model).__name__} has no EmbeddingBagCollection or EmbeddingCollection to shard")
    specs = _specs_per_collection(plan, collections)
    _agree_on_tables(collections, comm)
    for path, collection in collections:
        if isinstance(collection, EmbeddingBagCollection):
            sharded = ShardedEmbeddingBagCollection(collection, specs[path], comm, loss_reduction)
        else:
            sharded = ShardedEmbeddingCollection(collection, specs[path], comm, loss_reduction)
        if not path:
            return sharded
        _replace_module(model, path, sharded)
    params, buffers = _dense_tensors(model)
    with torch.no_grad():
        for name, t in params + buffers:
            comm.broadcast_(t.data, 0, f"dense tensor '{name}' from rank 0")
    _SYNCS[model] = DenseGradientSync(params, comm, average=loss_reduction == "mean")
    return model


def shard_model(model: nn.Module, plan: ShardingPlan | Mapping[str, ShardingSpec] | None = None, *,
                batch_size: int = 512, per_rank_memory_bytes: float | None = None,
                expected_ids_per_batch: Mapping[str, float] | None = None, loss_reduction: str = "mean",
                pg=None) -> tuple[nn.Module, ShardingPlan]:
    """Plan (when ``plan`` is None) and shard ``model``: the entry point of the training loop.

    Every rank computes the same plan from the same inputs, so no plan needs sending.

    Args:
        model: as for :func:`shard`.
        plan: an explicit plan, or None to call :func:`recembed.distributed.plan` with the
            remaining arguments (``batch_size`` is the per-rank batch).
        loss_reduction, pg: as for :func:`shard`.

    Returns:
        ``(sharded model, the plan used)``; print ``plan.table()`` on rank 0.
    """
    from recembed.distributed.planner import plan as make_plan

    comm = Comm(pg)
    if plan is None:
        plan = make_plan(model, comm.world_size, per_rank_memory_bytes, expected_ids_per_batch, batch_size)
    plan = ShardingPlan.coerce(plan, comm.world_size)
    return shard(model, plan, pg=pg, loss_reduction=loss_reduction), plan


def gather_collection(sharded: ShardedEmbeddingBagCollection | ShardedEmbeddingCollection) -> Collection:
    """A plain collection with every table whole, on every rank (a collective: all ranks call it).

    Weights and fused optimizer state (step and learning rate included) are broadcast shard
    by shard from their owners. A sharded EmbeddingCollection gives an EmbeddingCollection.
    """
    if isinstance(sharded, ShardedEmbeddingCollection):
        return as_sequence_collection(gather_collection(sharded.inner), sharded.embedding_configs())
    comm = sharded.comm
    configs = sharded.embedding_bag_configs()
    plain = EmbeddingBagCollection([replace(c, init="zeros", init_range=None) if table_is_plain(c) else c
                                    for c in configs])
    with torch.no_grad():
        for cfg in configs:
            shards = sharded.layout.shards[cfg.name]
            if sharded.layout.specs[cfg.name].type is ShardingType.DATA_PARALLEL:
                shards = shards[:1]  # every replica is the same
            whole = table_tensors(plain, cfg.name)
            for shard in shards:
                mine = sharded.shard_tensors(cfg.name) if shard.rank == comm.rank else None
                for key, full in sorted(whole.items()):
                    block = slice_block(full, shard.rows, shard.cols) if table_is_plain(cfg) else full
                    buf = mine[key].contiguous().clone() if mine is not None else torch.empty_like(block).contiguous()
                    comm.broadcast_(buf, shard.rank, f"table '{cfg.name}' {key} from rank {shard.rank}")
                    block.copy_(buf)
    return plain


def unshard(model: nn.Module) -> nn.Module:
    """Replace every sharded collection by a plain one holding the whole tables (collective).

    The dense-gradient hooks are removed: the result is an ordinary single-process model on
    every rank. Returns the model (or the plain collection if ``model`` was a sharded one).
    """
    if isinstance(model, SHARDED):
        return gather_collection(model)
    found = _outer_sharded(model)
    if not found:
        raise ConfigError(f"{type(model).__name__} has no sharded collection to unshard")
    for path, sharded in found:
        _replace_module(model, path, gather_collection(sharded))
    sync = _SYNCS.pop(model, None)
    if sync is not None:
        sync.remove()
    return model


def unsharded_copy(model: nn.Module) -> nn.Module:
    """A plain single-process copy of a sharded ``model`` on every rank; ``model`` stays sharded.

    A collective (every rank calls it). Use it for evaluation that reads whole tables
    (``DotProduct.item_vectors``), for export, or to save a plain ``state_dict``; the copy
    needs the whole tables' memory on each rank.
    """
    if isinstance(model, SHARDED):
        return gather_collection(model)
    found = _outer_sharded(model)
    if not found:
        raise ConfigError(f"{type(model).__name__} has no sharded collection to copy")
    plain = {path: gather_collection(sharded) for path, sharded in found}
    # Deep-copy the model without its sharded parts (their process group cannot be copied).
    for path, _ in found:
        _replace_module(model, path, nn.Identity())
    try:
        duplicate = copy.deepcopy(model)
    finally:
        for path, sharded in found:
            _replace_module(model, path, sharded)
    for path, collection in plain.items():
        _replace_module(duplicate, path, collection)
    return duplicate
