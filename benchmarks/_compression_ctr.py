"""The synthetic CTR task the compression benchmarks share: data, table specs, DLRM, training, scoring.

Used by ``benchmarks/compression.py`` (compressed tables) and ``benchmarks/compression_quant.py``
(quantised tables); not run on its own.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recembed.compress import (
    BloomSpec,
    HashedSpec,
    MixedDimSpec,
    QRSpec,
    ROBESpec,
    compressed_num_bytes,
    qr_collisions_for_ratio,
    quantize,
)
from recembed.data import make_ctr_dataset
from recembed.errors import ConfigError
from recembed.models import DLRM, dense_parameters
from recembed.tables import EmbeddingBagConfig
from recembed.train.metrics import auc as roc_auc
from recembed.train.metrics import log_loss


def make_data(args):
    cards = [int(round(c)) for c in np.geomspace(10, args.max_cardinality, args.sparse)]
    data = make_ctr_dataset(args.samples, num_sparse=args.sparse, num_dense=args.dense, cardinalities=cards,
                            seed=args.seed)
    train, test = data.split(0.2, seed=args.seed)
    return train, test


def id_counts(train, name: str, cardinality: int) -> np.ndarray:
    return np.bincount(train.sparse[name][1], minlength=cardinality).astype(np.float64)


def spec_for(method: str, factor: float, n: int, dim: int, counts: np.ndarray, args) -> tuple[object, str]:
    """The compression spec of one table, and a note when the target was out of reach."""
    ratio = 1.0 / factor
    if method == "hash":
        return HashedSpec(compression_ratio=ratio), ""
    if method == "bloom":
        return BloomSpec(compression_ratio=ratio, num_hashes=args.bloom_hashes), ""
    if method == "robe":
        return ROBESpec(compression_ratio=ratio, chunk_size=8), ""
    if method in ("qr-mult", "qr-add"):
        op = method.split("-")[1]
        try:
            return QRSpec(num_collisions=qr_collisions_for_ratio(n, ratio), operation=op), ""
        except ConfigError:
            return QRSpec(num_collisions=max(1, math.isqrt(n)), operation=op), "qr floor"
    if method == "mixed-dim":
        try:
            spec = MixedDimSpec(compression_ratio=ratio, counts=counts, num_blocks=4)
            spec.build(EmbeddingBagConfig(name="probe", num_embeddings=n, embedding_dim=dim))  # reachable?
            return spec, ""
        except ConfigError:
            return MixedDimSpec(alpha=64.0, counts=counts, num_blocks=4), "mixed floor"
    raise ValueError(method)


def _fewest_rows(method: str, n: int, args) -> int:
    """The fewest rows ``method`` can shrink a table of ``n`` ids to."""
    if method in ("qr-mult", "qr-add"):
        root = math.isqrt(n)
        return min(math.ceil(n / m) + m for m in (max(root, 1), root + 1))
    return args.bloom_hashes if method == "bloom" else 1


def table_factors(cardinalities: dict[str, int], method: str, factor: float, args) -> dict[str, float]:
    """Per-table factors so that *all* tables together shrink by ``factor``.

    Tables below ``--min-rows`` stay whole and use part of the budget; the others share the
    rest in proportion to their ids, smallest first, and a table that cannot go as low as its
    share (QR's two tables need about ``2 sqrt(n)`` rows) keeps its fewest rows, the larger
    tables shrinking more to make up for it.
    """
    kept = sum(c for c in cardinalities.values() if c < args.min_rows)
    budget = sum(cardinalities.values()) / factor - kept
    compressed = sorted((c, name) for name, c in cardinalities.items() if c >= args.min_rows)
    left_ids = sum(c for c, _ in compressed)
    out = {}
    for n, name in compressed:
        rows = max(math.floor(budget * n / left_ids), _fewest_rows(method, n, args), 1)  # whole rows: never over
        out[name] = n / rows
        budget -= rows
        left_ids -= n
    return out


def table_configs(train, args, method: str | None, factor: float) -> tuple[list[EmbeddingBagConfig], list[str]]:
    configs, notes = [], set()
    factors = table_factors(train.cardinalities, method, factor, args) if method not in (None, "mixed-dim") else {}
    for name, card in train.cardinalities.items():
        compression = None
        if method is not None and card >= args.min_rows:
            compression, note = spec_for(method, factors.get(name, factor), card, args.dim,
                                         id_counts(train, name, card), args)
            if note:
                notes.add(note)
        configs.append(EmbeddingBagConfig(name=f"t_{name}", num_embeddings=card, embedding_dim=args.dim,
                                          feature_names=[name], pooling="mean", compression=compression))
    return configs, sorted(notes)


def make_model(train, configs, args) -> DLRM:
    torch.manual_seed(args.seed)
    return DLRM(args.dense, configs, bottom_mlp=[64, args.dim], top_mlp=[128, 64, 1], embedding_lr=0.05)


def train_model(model, train, args) -> float:
    """Trains in place; returns examples per second."""
    params = dense_parameters(model)
    opt = torch.optim.Adam(params, lr=2e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    seen, start = 0, time.perf_counter()
    model.train()
    for epoch in range(args.epochs):
        for batch in train.to_batches(args.batch_size, shuffle=True, seed=args.seed + epoch):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(batch.dense, batch.sparse), batch.labels)
            loss.backward()
            opt.step()
            seen += len(batch.labels)
    return seen / (time.perf_counter() - start)


@torch.no_grad()
def evaluate(model, test, args) -> tuple[float, float]:
    model.eval()
    scores, labels = [], []
    for batch in test.to_batches(4096):
        scores.append(torch.sigmoid(model(batch.dense, batch.sparse)))
        labels.append(batch.labels)
    s, y = torch.cat(scores), torch.cat(labels)
    return roc_auc(s, y), log_loss(s, y)


def warm_up(train, args, methods: tuple = (None, "qr-mult")) -> None:
    """Compile (or load from numba's cache) every kernel before anything is timed."""
    subset, _ = train.split(0.5, seed=1)
    for method in methods:
        configs, _ = table_configs(train, args, method, 4.0)
        model = make_model(train, configs, args)
        batches = iter(subset.to_batches(args.batch_size))
        for _, batch in zip(range(3), batches):
            model(batch.dense, batch.sparse).sum().backward()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            for dtype, scales in (("int8", "float16"), ("int8", "float32"), ("int4", "float16"), ("float16", "float16")):
                small = quantize(model.embeddings, dtype, scales)
                small(batch.sparse)
                small.use_torch_ops = False  # the numba fallback too
                small(batch.sparse)


def run_method(train, test, args, method: str | None, factor: float) -> tuple[dict, DLRM]:
    """Train one DLRM whose large tables use ``method`` at ``factor``; its result row and the model."""
    configs, notes = table_configs(train, args, method, factor)
    model = make_model(train, configs, args)
    throughput = train_model(model, train, args)
    test_auc, test_loss = evaluate(model, test, args)
    row = {"method": method or "full", "target": factor, "bytes": compressed_num_bytes(model),
           "auc": test_auc, "log_loss": test_loss, "train_examples_per_s": throughput, "notes": notes}
    return row, model


