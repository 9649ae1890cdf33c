"""An EmbeddingBagCollection whose tables are spread over ranks: local batch in, local pooled out.

Every rank calls ``forward`` with its own batch (the KJT a plain collection would take)
and gets that batch's pooled ``KeyedTensor``, equal to what the unsharded collection
returns for those samples. Behind it, per step:

forward
    1. ``all_to_all`` of counts: each rank's batch size and ids per destination.
    2. ``all_to_all`` of ids (bag lengths + rows), and of per-id weights if any rank has them.
    3. each rank pools its shards over the *global* batch with its local
       :class:`~recembed.tables.EmbeddingBagCollection` (fused kernels included).
    4. ``all_to_all`` of pooled columns back to the requesting ranks, which add row-wise
       partial sums, place column-wise slices, and read data-parallel columns locally.
backward
    5. one ``all_to_all`` of output gradients to the owners (data-parallel gradients to
       every rank); the local collection's backward then runs once over the global batch,
       so fused optimizers update each row once per step, as a single process would.

With ``loss_reduction="mean"`` gradients are divided by the world size on the way back
(each rank's loss is a mean over its local batch, and DDP-style averaging applies); with
``"sum"`` they are passed unscaled (each rank's loss is a sum over its local batch).

Example (on every rank, after ``init_from_env()``)::

    sharded = ShardedEmbeddingBagCollection(ebc, {"t_user": ShardingSpec("row_wise", (0, 1))})
    pooled = sharded(local_kjt)          # KeyedTensor (local batch, sum of dims)
"""

from __future__ import annotations

from typing import Iterator, Mapping

import torch
from torch import nn

from recembed.distributed.comm import Comm
from recembed.distributed.layout import CollectionLayout
from recembed.distributed.plan_types import Shard, ShardingSpec, ShardingType
from recembed.distributed.routing import assemble, route
from recembed.distributed.table_state import slice_block, table_is_plain, table_tensors
from recembed.errors import ConfigError, UnknownKeyError
from recembed.sparse import KeyedJaggedTensor, KeyedTensor
from recembed.tables import EmbeddingBagCollection, EmbeddingBagConfig

__all__ = ["ShardedEmbeddingBagCollection", "LOSS_REDUCTIONS"]

LOSS_REDUCTIONS = ("mean", "sum")


class _Exchange:
    """What one forward's output exchange needs to run its backward."""

    def __init__(self, comm: Comm, batch_sizes: list[int], sent_width: list[int], dp_width: int, grad_scale: float):
        self.comm, self.batch_sizes, self.sent_width = comm, batch_sizes, sent_width
        self.dp_width, self.grad_scale = dp_width, grad_scale
        self.row_start = [0]
        for b in batch_sizes:
            self.row_start.append(self.row_start[-1] + b)


class _PooledExchange(torch.autograd.Function):
    """Owners' pooled columns to the requesting ranks, and output gradients back to the owners.

    forward: owned (B_global, sent_width[r] + dp_width) -> received (B_r, sum(sent_width)), dp (B_r, dp_width)
    backward: the reverse, one ``all_to_all``; data-parallel gradients go to every rank.
    """

    @staticmethod
    def forward(ctx, anchor: torch.Tensor, owned: torch.Tensor, ex: _Exchange):
        comm, b, width = ex.comm, ex.batch_sizes, ex.sent_width
        r = comm.rank
        send = owned[:, :width[r]].contiguous().view(-1)
        send_splits = [bs * width[r] for bs in b]
        recv_splits = [b[r] * w for w in width]
        recv = comm.all_to_all(send, send_splits, recv_splits, "pooled embeddings (forward)").to(owned.device)
        blocks = [blk.view(b[r], w) for blk, w in zip(torch.split(recv, recv_splits), width)]
        received = torch.cat(blocks, dim=1) if blocks else owned.new_zeros(b[r], 0)
        dp = owned[ex.row_start[r]:ex.row_start[r + 1], width[r]:].clone()
        ctx.ex = ex
        ctx.device = owned.device
        return received, dp

    @staticmethod
    def backward(ctx, g_received: torch.Tensor, g_dp: torch.Tensor):
        ex = ctx.ex
        comm, b, width = ex.comm, ex.batch_sizes, ex.sent_width
        r = comm.rank
        g_received = g_received.float() * ex.grad_scale if ex.grad_scale != 1.0 else g_received.float()
        g_dp = g_dp.float() * ex.grad_scale if ex.grad_scale != 1.0 else g_dp.float()
        col = 0
        pieces = []
        for w in width:
            pieces.append(torch.cat([g_received[:, col:col + w], g_dp], dim=1).reshape(-1))
            col += w
        send = torch.cat(pieces) if pieces else g_received.new_zeros(0)
        own = width[r] + ex.dp_width
        send_splits = [b[r] * (w + ex.dp_width) for w in width]
        recv_splits = [bs * own for bs in b]
        recv = comm.all_to_all(send, send_splits, recv_splits, "pooled-embedding gradients (backward)")
        recv = recv.to(ctx.device)
        grad_owned = torch.cat([blk.view(bs, own) for blk, bs in zip(torch.split(recv, recv_splits), b)], dim=0)
        return None, grad_owned if ctx.needs_input_grad[1] else None, None


class ShardedEmbeddingBagCollection(nn.Module):
    """The sharded stand-in of an :class:`EmbeddingBagCollection` (see the module docstring).

    Args:
        collection: the full collection (the same on every rank); this rank's shards are
            copied out of it -- weights and fused optimizer state -- and it can then be dropped.
        specs: ``{table name: ShardingSpec}`` for every table of the collection.
        comm: the process group to use (default: the world).
        loss_reduction: ``"mean"`` or ``"sum"``, how each rank's loss is reduced (see above).

    Shapes: ``forward(KJT with stride B_r) -> KeyedTensor (B_r, sum of dims)``, keys in the
    collection's order. Every rank must call ``forward`` (and ``backward``) the same number
    of times, as with any collective.
    """

    def __init__(self, collection: EmbeddingBagCollection, specs: Mapping[str, ShardingSpec],
                 comm: Comm | None = None, loss_reduction: str = "mean") -> None:
        super().__init__()
        if not isinstance(collection, EmbeddingBagCollection):
            raise ConfigError(f"ShardedEmbeddingBagCollection takes an EmbeddingBagCollection, "
                              f"got {type(collection).__name__}")
        if loss_reduction not in LOSS_REDUCTIONS:
            raise ConfigError(f"loss_reduction must be one of {LOSS_REDUCTIONS}, got {loss_reduction!r}")
        configs = collection.embedding_bag_configs()
        missing = [c.name for c in configs if c.name not in specs]
        if missing:
            raise ConfigError(f"the sharding plan has no entry for table(s) {missing}")
        self.comm = comm if comm is not None else Comm()
        self.loss_reduction = loss_reduction
        self.layout = CollectionLayout(configs, {c.name: specs[c.name] for c in configs}, self.comm.world_size)
        local_configs = self.layout.local_configs(self.comm.rank)
        self.local = EmbeddingBagCollection(local_configs) if local_configs else None
        self._trainable = any(c.enable_grad for c in configs)
        self._local_keys = [e.feature for e in self.layout.entries[self.comm.rank]]
        with torch.no_grad():
            self._copy_shards_from(collection)

    # ---- set-up ----------------------------------------------------------------------------
    def _copy_shards_from(self, collection: EmbeddingBagCollection) -> None:
        for name, _kind, shard in self.layout.local_tables[self.comm.rank]:
            plain = table_is_plain(self.layout.configs[name])
            source = table_tensors(collection, name)
            for key, target in table_tensors(self.local, name).items():
                target.copy_(slice_block(source[key], shard.rows, shard.cols) if plain else source[key])

    # ---- the collection's face ----------------------------------------------------------------
    def embedding_bag_configs(self) -> list[EmbeddingBagConfig]:
        """The original (unsharded) table configs."""
        return list(self.layout.configs.values())

    def feature_names(self) -> list[str]:
        return list(self.layout.output_keys)

    @property
    def sharding_specs(self) -> dict[str, ShardingSpec]:
        return dict(self.layout.specs)

    def fused_optimizer(self):
        """This rank's fused tables' optimizer face (for LR schedulers), or None."""
        return None if self.local is None else self.local.fused_optimizer()

    def local_shards(self) -> Iterator[tuple[str, ShardingType, Shard]]:
        """``(table, sharding type, shard)`` of every shard this rank holds."""
        yield from self.layout.local_tables[self.comm.rank]

    def shard_tensors(self, name: str) -> dict[str, torch.Tensor]:
        """This rank's tensors of table ``name`` (see :func:`table_tensors`), shard-sized."""
        if self.local is None or name not in self.local.embedding_bags:
            raise UnknownKeyError(f"rank {self.comm.rank} holds no shard of table '{name}'")
        return table_tensors(self.local, name)

    def extra_repr(self) -> str:
        parts = [f"{n}: {s.type.value} {list(s.ranks) or 'all'}" for n, s in self.layout.specs.items()]
        return f"rank={self.comm.rank}/{self.comm.world_size}, " + ", ".join(parts)

    # ---- forward --------------------------------------------------------------------------------
    def _check_keys(self, features: KeyedJaggedTensor) -> None:
        if not isinstance(features, KeyedJaggedTensor):
            raise ConfigError(f"ShardedEmbeddingBagCollection takes a KeyedJaggedTensor, got {type(features).__name__}")
        served = self.layout.output_keys
        keys = features.keys()
        for key in keys:
            if key not in self.layout.table_of:
                raise UnknownKeyError(f"ShardedEmbeddingBagCollection: unknown feature '{key}'; no table serves it "
                                      f"(served: {served})")
        present = set(keys)
        for feature in served:
            if feature not in present:
                raise UnknownKeyError(f"ShardedEmbeddingBagCollection: feature '{feature}' (table "
                                      f"'{self.layout.table_of[feature]}') is missing from the batch (batch keys: {keys})")

    def _owners_batch(self, features: KeyedJaggedTensor) -> tuple[KeyedJaggedTensor, list[int], dict]:
        """Steps 1-2: route ids to their owners; returns this rank's global-batch KJT and every rank's B."""
        comm = self.comm
        routed = route(features, self.layout)
        has_weights = features.weights_or_none() is not None
        counts = torch.tensor([[routed.batch, m.values.numel(), int(has_weights)] for m in routed.messages],
                              dtype=torch.int64)
        received = comm.exchange_counts(counts, "batch sizes and id counts").cpu()
        batch_sizes = received[:, 0].tolist()
        from_each = received[:, 1].tolist()
        any_weights = bool(received[:, 2].any())
        num_keys = len(self._local_keys)
        device = self._device(features)
        send = torch.cat([torch.cat([m.lengths, m.values.to(torch.int64)]) for m in routed.messages])
        send_splits = [m.lengths.numel() + m.values.numel() for m in routed.messages]
        recv_splits = [num_keys * bs + n for bs, n in zip(batch_sizes, from_each)]
        recv = comm.all_to_all(send, send_splits, recv_splits, "ids to their shards").to(device)
        parts = torch.split(recv, recv_splits)
        lengths = [p[:num_keys * bs] for p, bs in zip(parts, batch_sizes)]
        values = [p[num_keys * bs:] for p, bs in zip(parts, batch_sizes)]
        weights = None
        if any_weights:
            send_w = torch.cat([m.weights.float() if m.weights is not None
                                else torch.ones(m.values.numel(), device=device) for m in routed.messages])
            recv_w = comm.all_to_all(send_w, [m.values.numel() for m in routed.messages], from_each,
                                     "per-id weights to their shards").to(device)
            weights = list(torch.split(recv_w, from_each))
        kjt = assemble(self._local_keys, batch_sizes, lengths, values, weights)
        return kjt, batch_sizes, routed.mean_counts

    def _device(self, features: KeyedJaggedTensor) -> torch.device:
        """Where this rank's tables live (the features' device when it holds none)."""
        if self.local is not None:
            for tensor in self.local.parameters():
                return tensor.device
            for tensor in self.local.buffers():
                return tensor.device
        return features.values().device

    def forward(self, features: KeyedJaggedTensor) -> KeyedTensor:
        """Pool this rank's batch: KJT (stride B_r) -> KeyedTensor (B_r, sum of dims)."""
        self._check_keys(features)
        kjt, batch_sizes, mean_counts = self._owners_batch(features)
        layout, r = self.layout, self.comm.rank
        if self.local is not None:
            owned = self.local(kjt).values()
        else:
            owned = torch.zeros(kjt.stride(), 0, device=self._device(features))
        grad_on = torch.is_grad_enabled() and self._trainable
        # The anchor puts the exchange into the graph on every rank, even one whose shards are
        # frozen or absent, so every rank joins the backward all_to_all.
        anchor = torch.empty(0, requires_grad=grad_on)
        scale = 1.0 / self.comm.world_size if self.loss_reduction == "mean" else 1.0
        exchange = _Exchange(self.comm, batch_sizes, layout.sent_width, layout.dp_width, scale)
        received, dp = _PooledExchange.apply(anchor, owned, exchange)
        batch = batch_sizes[r]
        out = torch.zeros(batch, layout.output_width, dtype=received.dtype, device=received.device)
        out = torch.index_add(out, 1, layout.received_to_output.to(out.device), received)
        if layout.dp_width:
            out = torch.index_add(out, 1, layout.dp_to_output.to(out.device), dp)
        if mean_counts:
            out = out * self._mean_scale(batch, mean_counts, out)
        return KeyedTensor(keys=list(layout.output_keys), length_per_key=list(layout.output_dims), values=out)

    def _mean_scale(self, batch: int, mean_counts: dict[str, torch.Tensor], like: torch.Tensor) -> torch.Tensor:
        """(B, D) multipliers: 1 / bag size on MEAN row-wise columns (partials are sums), 1 elsewhere."""
        scale = torch.ones(batch, self.layout.output_width, dtype=like.dtype, device=like.device)
        for feature, counts in mean_counts.items():
            col = self.layout.feature_col[feature]
            dim = self.layout.configs[self.layout.table_of[feature]].embedding_dim
            scale[:, col:col + dim] = (1.0 / counts.clamp(min=1).to(like.dtype)).unsqueeze(1)
        return scale
