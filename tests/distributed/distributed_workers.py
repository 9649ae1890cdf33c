"""Rank bodies for the multi-process tests (module level, so spawned ranks can import them).

The model is small and covers every path: a table-wise table served by two features
(fused Adam), a MEAN-pooled row-wise table with padding (fused row-wise Adagrad), a
MAX-pooled column-wise table (fused Adagrad), a hashed data-parallel table (fused SGD with
weight decay), a plain-autograd table trained by the dense torch optimizer, a sequence
(unpooled) table in an EmbeddingCollection whose per-id vectors the model squares, and a
second bag collection fed with per-id weights (SUM and MEAN with padding).

With ``reduction="sum"`` the global batches have 8, 7, 5 and 3 samples, so the ranks'
local batches differ in size, and with 4 ranks the last one leaves rank 0 empty.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from recembed.distributed import (
    ShardingSpec,
    gather_collection,
    load_sharded,
    save_sharded,
    shard,
    unshard,
)
from recembed.distributed.batching import kjt_rows, rank_slice
from recembed.sparse import KeyedJaggedTensor
from recembed.tables import (
    EmbeddingBagCollection,
    EmbeddingBagConfig,
    EmbeddingCollection,
    EmbeddingConfig,
)

STEPS = 3
DENSE_LR = 0.05
SUM_BATCH_SIZES = (8, 7, 5, 3)
MEAN_BATCH_SIZE = 8  # a mean over local batches equals the global mean only when they are equal


def table_configs() -> list[EmbeddingBagConfig]:
    return [
        EmbeddingBagConfig(name="t_tw", num_embeddings=13, embedding_dim=4, feature_names=["f_tw_a", "f_tw_b"],
                           optimizer="adam", lr=0.05),
        EmbeddingBagConfig(name="t_rw", num_embeddings=17, embedding_dim=4, feature_names=["f_rw"],
                           optimizer="rowwise_adagrad", lr=0.1, pooling="mean", padding_idx=0),
        EmbeddingBagConfig(name="t_cw", num_embeddings=11, embedding_dim=8, feature_names=["f_cw"],
                           optimizer="adagrad", lr=0.1, pooling="max"),
        EmbeddingBagConfig(name="t_dp", num_embeddings=7, embedding_dim=4, feature_names=["f_dp"],
                           optimizer="sgd", lr=0.1, weight_decay=0.01, hash_size=7),
        EmbeddingBagConfig(name="t_plain", num_embeddings=9, embedding_dim=4, feature_names=["f_plain"]),
    ]


def weighted_configs() -> list[EmbeddingBagConfig]:
    return [
        EmbeddingBagConfig(name="t_wsum", num_embeddings=10, embedding_dim=3, feature_names=["f_wsum"],
                           optimizer="sgd", lr=0.1),
        EmbeddingBagConfig(name="t_wmean", num_embeddings=10, embedding_dim=3, feature_names=["f_wmean"],
                           optimizer="rowwise_adagrad", lr=0.1, pooling="mean", padding_idx=0),
    ]


TABLES = [c.name for c in table_configs()] + ["t_seq"] + [c.name for c in weighted_configs()]


def plans(world_size: int) -> dict[str, dict[str, ShardingSpec]]:
    """Plan "a" and plan "b" give every table two different sharding types."""
    everyone = tuple(range(world_size))
    last = world_size - 1
    return {
        "a": {"t_tw": ShardingSpec("table_wise", (last,)), "t_rw": ShardingSpec("row_wise", everyone),
              "t_cw": ShardingSpec("column_wise", everyone), "t_dp": ShardingSpec("data_parallel"),
              "t_plain": ShardingSpec("row_wise", tuple(reversed(everyone))),
              "t_seq": ShardingSpec("row_wise", everyone),
              "t_wsum": ShardingSpec("table_wise", (0,)), "t_wmean": ShardingSpec("row_wise", everyone)},
        "b": {"t_tw": ShardingSpec("row_wise", everyone), "t_rw": ShardingSpec("table_wise", (0,)),
              "t_cw": ShardingSpec("data_parallel"), "t_dp": ShardingSpec("table_wise", (last,)),
              "t_plain": ShardingSpec("column_wise", everyone), "t_seq": ShardingSpec("column_wise", everyone),
              "t_wsum": ShardingSpec("row_wise", everyone), "t_wmean": ShardingSpec("table_wise", (last,))},
    }


class TinyModel(nn.Module):
    """Pooled, sequence and weighted tables, then one linear layer: ``(KJT, weighted KJT), stride B -> (B,)``."""

    def __init__(self) -> None:
        super().__init__()
        self.embeddings = EmbeddingBagCollection(table_configs())
        self.sequence = EmbeddingCollection([EmbeddingConfig(name="t_seq", num_embeddings=12, embedding_dim=4,
                                                             feature_names=["f_seq"], optimizer="adagrad", lr=0.1)])
        self.weighted = EmbeddingBagCollection(weighted_configs())
        self.head = nn.Linear(5 * 4 + 8 + 4 + 2 * 3, 1)  # pooled bags, squared sequence, weighted bags

    def forward(self, features: KeyedJaggedTensor, weighted: KeyedJaggedTensor) -> torch.Tensor:
        keys = features.keys()
        pooled = self.embeddings(features.permute([i for i, k in enumerate(keys) if k != "f_seq"])).values()
        seq = self.sequence(features.permute([keys.index("f_seq")]))["f_seq"]
        sample = torch.repeat_interleave(torch.arange(features.stride()), seq.lengths())
        # Squares make each id's gradient depend on its own vector, not only on the bag's sum.
        by_sample = torch.zeros(features.stride(), 4).index_add(0, sample, seq.values() ** 2)
        return self.head(torch.cat([pooled, by_sample, self.weighted(weighted).values()], dim=1)).squeeze(1)


def make_model(seed: int = 0) -> TinyModel:
    torch.manual_seed(seed)
    return TinyModel()


def batch_size(step: int, reduction: str) -> int:
    return SUM_BATCH_SIZES[step] if reduction == "sum" else MEAN_BATCH_SIZE


def global_batch(step: int, size: int) -> tuple[KeyedJaggedTensor, KeyedJaggedTensor, torch.Tensor]:
    """A deterministic global batch: ragged bags (some empty), padding ids, huge hashed ids, weights."""
    g = torch.Generator().manual_seed(1000 + step)

    def bags(rows: int) -> list[list[int]]:
        return [torch.randint(0, rows, (int(torch.randint(0, 4, (1,), generator=g)),), generator=g).tolist()
                for _ in range(size)]

    rows = {"f_tw_a": 13, "f_tw_b": 13, "f_rw": 17, "f_cw": 11, "f_dp": 1 << 40, "f_plain": 9, "f_seq": 12}
    features = KeyedJaggedTensor.from_lists({f: bags(n) for f, n in rows.items()})
    ids = {"f_wsum": bags(10), "f_wmean": bags(10)}
    weights = {f: [[0.5 + 0.25 * i for i in bag] for bag in b] for f, b in ids.items()}
    return features, KeyedJaggedTensor.from_lists(ids, weights=weights), torch.randn(size, generator=g)


def loss_of(pred: torch.Tensor, labels: torch.Tensor, reduction: str) -> torch.Tensor:
    err = (pred - labels) ** 2
    return err.sum() if reduction == "sum" else err.mean()


def step_once(model: nn.Module, opt: torch.optim.Optimizer, step: int, reduction: str, rank: int = 0,
              world: int = 1) -> torch.Tensor:
    """One training step on this rank's slice of global batch ``step``; returns the local predictions."""
    size = batch_size(step, reduction)
    features, weighted, labels = global_batch(step, size)
    part = rank_slice(size, rank, world)
    opt.zero_grad()
    pred = model(kjt_rows(features, part.start, part.stop), kjt_rows(weighted, part.start, part.stop))
    loss_of(pred, labels[part], reduction).backward()
    opt.step()
    return pred.detach().clone()


def dense_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=DENSE_LR)


def train(model: nn.Module, steps: int, reduction: str, rank: int = 0, world: int = 1) -> list[torch.Tensor]:
    """SGD on the dense part (the fused tables update in backward); returns each step's predictions."""
    opt = dense_optimizer(model)
    return [step_once(model, opt, step, reduction, rank, world) for step in range(steps)]


def reference(reduction: str, steps: int = STEPS) -> dict:
    """Single-process run on the global batches."""
    model = make_model()
    preds = train(model, steps, reduction)
    return {"preds": preds, "state": _state(model)}


def _state(model: nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def sharded_training(runs: list[tuple[str, str]], save_dir: str | None = None) -> dict:
    """Rank body: for each (plan, reduction) train sharded from the same start as the reference.

    Returns per run this rank's predictions and (rank 0) the gathered state. With
    ``save_dir``, the first run's model is saved there (sharded) after training.
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    out = {"torch_threads": torch.get_num_threads()}
    for i, (plan_name, reduction) in enumerate(runs):
        model = shard(make_model(), plans(world)[plan_name], loss_reduction=reduction)
        preds = train(model, STEPS, reduction, rank, world)
        if save_dir is not None and i == 0:
            save_sharded(save_dir, model, extra={"steps": STEPS})
        unshard(model)
        out[(plan_name, reduction)] = {"preds": preds, "state": _state(model) if rank == 0 else None}
    return out


def resume_resharded(load_dir: str, save_dir: str, plan_name: str, reduction: str) -> dict:
    """Rank body: a fresh model (other seed) sharded by another plan loads ``load_dir``, trains one
    more step, and saves to ``save_dir``; returns the state right after loading and at the end."""
    rank, world = dist.get_rank(), dist.get_world_size()
    model = shard(make_model(seed=99), plans(world)[plan_name], loss_reduction=reduction)
    extra = load_sharded(load_dir, model)
    loaded = {}
    for name in ("embeddings", "sequence", "weighted"):
        loaded.update({f"{name}.{k}": v for k, v in _state(gather_collection(getattr(model, name))).items()})
    loaded.update({k: v.clone() for k, v in model.head.state_dict(prefix="head.").items()})
    pred = step_once(model, dense_optimizer(model), extra["steps"], reduction, rank, world)
    save_sharded(save_dir, model, extra={"steps": extra["steps"] + 1})
    unshard(model)
    return {"loaded": loaded if rank == 0 else None, "pred": pred, "final": _state(model) if rank == 0 else None}


def four_rank_body(runs: list[tuple[str, str]], load_dir: str, save_dir: str) -> dict:
    """Rank body of the 4-rank test: the equivalence runs, then resuming the 2-rank checkpoint."""
    return {"runs": sharded_training(runs), "resume": resume_resharded(load_dir, save_dir, "b", "sum")}


def _first_forward(model: nn.Module) -> torch.Tensor:
    features, weighted, _ = global_batch(0, 8)
    return model(kjt_rows(features, 0, 4), kjt_rows(weighted, 0, 4))


def fail_on_rank_one() -> str:
    """Rank body: rank 1 raises before the first exchange while rank 0 waits in it."""
    model = shard(make_model(), plans(dist.get_world_size())["a"], loss_reduction="sum")
    if dist.get_rank() == 1:
        raise ValueError("rank one broke on purpose")
    _first_forward(model)
    return "finished"


def hang_on_rank_one(seconds: float) -> str:
    """Rank body: rank 1 stalls (alive, never joining the exchange) so rank 0 must time out."""
    import time

    model = shard(make_model(), plans(dist.get_world_size())["a"], loss_reduction="sum")
    if dist.get_rank() == 1:
        time.sleep(seconds)
        return "slept"
    _first_forward(model)
    return "finished"
