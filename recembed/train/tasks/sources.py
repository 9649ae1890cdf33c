"""From a run config's ``[data]`` section to data in memory or a streaming reader.

Two shapes of data come out: :class:`~recembed.data.Interactions` (user, item, rating,
timestamp) for the rating and implicit tasks, and :class:`CTRData` (a batch source per
split plus table sizes) for click prediction. Reading errors from :mod:`recembed.data`
(file, line and reason) pass through unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Optional

import numpy as np

from recembed.data import (
    DenseFeature,
    FeatureSpec,
    InMemoryBatches,
    Interactions,
    LabelSpec,
    SparseFeature,
    TabularReader,
    leave_last_out_split,
    make_ctr_dataset,
    make_implicit_dataset,
    make_ratings_dataset,
    random_split,
    read_criteo,
    read_movielens,
)
from recembed.data.row_block import RowBlock
from recembed.errors import ConfigError
from recembed.train.config import RunConfig

__all__ = ["load_interactions", "split_interactions", "CTRData", "load_ctr", "check_data_file"]


def check_data_file(path: str, key: str) -> str:
    """``path`` if it exists, else a ConfigError naming the config key that pointed to it."""
    if not os.path.exists(path):
        raise ConfigError(f"{key} = {path!r}: the data file does not exist")
    return path


# ------------------------------------------------------------------------------------ ratings

def load_interactions(config: RunConfig) -> Interactions:
    """All interactions of a rating or implicit run (before splitting).

    For the implicit task, rated data keeps the events rated at least ``data.min_rating``,
    each counting as one positive (rating 1.0).
    """
    data, task = config.data, config.train.task
    if data.source == "synthetic":
        s = data.synthetic
        if task == "rating":
            events = make_ratings_dataset(s.num_users, s.num_items, s.num_ratings, rank=s.rank, noise=s.noise,
                                          seed=s.seed).interactions
        else:
            events = make_implicit_dataset(s.num_users, s.num_items, s.interactions_per_user, rank=s.rank,
                                           temperature=s.temperature, seed=s.seed).interactions
    elif data.source == "movielens":
        events = read_movielens(check_data_file(data.path, "data.path"), on_error=data.on_error)
    elif data.source in ("csv", "parquet"):
        events = _interactions_from_table(config)
    else:
        raise ConfigError(f"data.source = {data.source!r} cannot feed train.task = {task!r}")
    if task == "implicit":
        keep = events.ratings >= data.min_rating
        if not keep.any():
            raise ConfigError(f"data.min_rating = {data.min_rating} keeps none of the {len(events)} events")
        events = events.subset(np.flatnonzero(keep))
        events.ratings = np.ones(len(events), dtype=np.float32)
    if len(events) < 4:
        raise ConfigError(f"the data has {len(events)} interactions; at least 4 are needed to train and evaluate")
    return events


def _interactions_from_table(config: RunConfig) -> Interactions:
    spec_cfg = config.data.spec
    reader = _table_reader(config, config.data.path, "data.path", default_label="rating")
    names = reader.spec.sparse_names
    for role in ("user", "item"):
        if getattr(spec_cfg, role) not in names:
            raise ConfigError(f"data.spec.{role} = {getattr(spec_cfg, role)!r} is not a sparse feature of data.spec "
                              f"(sparse features: {names})")
    block = RowBlock.concat(list(reader.iter_blocks()))
    rows, ids = {}, {}
    for role in ("user", "item"):
        feature = getattr(spec_cfg, role)
        lengths, values = block.sparse[feature]
        if not (lengths == 1).all():
            raise ConfigError(f"data.spec.{role} = {feature!r} must hold one id per row (no separator)")
        rows[role] = values
        vocab = reader.vocabularies.get(feature)
        # Row 0 is the missing/unknown row of a built vocabulary or hashed feature.
        ids[role] = np.array(["<oov>"] + vocab.tokens, dtype=object) if vocab is not None else \
            np.array(["<missing>"] + [f"#{r}" for r in range(1, reader.num_rows[feature])], dtype=object)
    return Interactions(user_rows=rows["user"], item_rows=rows["item"], ratings=block.labels,
                        timestamps=block.timestamps, user_ids=ids["user"], item_ids=ids["item"])


def split_interactions(config: RunConfig, events: Interactions) -> tuple[Interactions, Interactions, Interactions]:
    """``(train, val, test)``; ``val`` is ``test`` itself when ``data.val_fraction = 0``."""
    data = config.data
    if data.split == "leave_last_out":
        if events.timestamps is None:
            raise ConfigError("data.split = 'leave_last_out' needs timestamps; this data has none "
                              "(set data.spec.timestamp, or use data.split = 'random')")
        train, test = leave_last_out_split(events)
        if data.val_fraction > 0:
            train, val = leave_last_out_split(train)
        else:
            val = test
    else:
        train, test = random_split(events, data.test_fraction, seed=data.seed)
        val = test
        if data.val_fraction > 0:
            train, val = random_split(train, data.val_fraction, seed=data.seed + 1)
    for name, part in (("training", train), ("test", test), ("validation", val)):
        if len(part) == 0:
            raise ConfigError(f"the {name} split is empty ({len(events)} interactions, data.split = "
                              f"{data.split!r}); use more data or other fractions")
    return train, val, test


# ---------------------------------------------------------------------------------------- CTR

@dataclass
class CTRData:
    """Click data ready to train on.

    Attributes:
        train, val, test: re-iterable batch sources (``set_epoch`` shuffles ``train``).
        num_rows: table rows of each sparse feature, in batch key order.
        num_dense: dense features per example.
        num_train: training examples (None when streamed from a file).
        teacher_auc: synthetic data only: the hidden teacher's AUC on the test split.
        id_maps: feature -> raw id of each row, where known.
    """

    train: Any
    val: Any
    test: Any
    num_rows: dict[str, int]
    num_dense: int
    num_train: Optional[int]
    teacher_auc: Optional[float] = None
    id_maps: Optional[dict[str, np.ndarray]] = None


def load_ctr(config: RunConfig) -> CTRData:
    """Synthetic, Criteo or CSV/Parquet click data, split into train / val / test.

    A file without ``data.test_path`` is read into memory and split at random; with a
    test file the training file is streamed (shuffled through a buffer) and the test
    file serves as the per-epoch evaluation set too.
    """
    data, train = config.data, config.train
    if data.source == "synthetic":
        return _synthetic_ctr(config)
    reader = _ctr_reader(config, data.path, "data.path", shuffle=True, drop_last=train.drop_last)
    id_maps = _reader_id_maps(reader)
    eval_batch = config.eval.batch_size
    if data.test_path:
        test = _ctr_reader(config, data.test_path, "data.test_path", vocabularies=reader.vocabularies,
                           batch_size=eval_batch, shuffle=False)
        return CTRData(reader, test, test, reader.num_rows, len(reader.spec.dense), None, id_maps=id_maps)
    block = RowBlock.concat(list(reader.iter_blocks()))
    parts = _random_parts(len(block), data.test_fraction, data.val_fraction, data.seed)
    blocks = [block.take(index) for index in parts]
    streams = _in_memory_streams(config, blocks)
    return CTRData(*streams, reader.num_rows, block.dense.shape[1], len(blocks[0]), id_maps=id_maps)


def _synthetic_ctr(config: RunConfig) -> CTRData:
    s, data = config.data.synthetic, config.data
    cards = [int(round(c)) for c in np.geomspace(4, max(4, s.max_cardinality), s.num_sparse)]
    full = make_ctr_dataset(s.num_samples, s.num_sparse, s.num_dense, multi_hot=s.multi_hot, cardinalities=cards,
                            seed=s.seed)
    train_part, test = full.split(data.test_fraction, seed=data.seed)
    val = test
    if data.val_fraction > 0:
        train_part, val = train_part.split(data.val_fraction, seed=data.seed + 1)
    streams = _in_memory_streams(config, [train_part.block, val.block, test.block])
    id_maps = {name: np.arange(rows, dtype=np.int64) for name, rows in full.num_rows.items()}
    return CTRData(*streams, full.num_rows, s.num_dense, len(train_part), teacher_auc=test.teacher_auc,
                   id_maps=id_maps)


def _random_parts(n: int, test_fraction: float, val_fraction: float, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    num_test = int(round(test_fraction * n))
    num_val = int(round(val_fraction * (n - num_test)))
    test, val, train = order[:num_test], order[num_test:num_test + num_val], order[num_test + num_val:]
    if len(train) == 0 or len(test) == 0:
        raise ConfigError(f"{n} examples leave an empty training or test split (data.test_fraction = {test_fraction})")
    return [np.sort(train), np.sort(val if num_val else test), np.sort(test)]


def _in_memory_streams(config: RunConfig, blocks: Iterable[RowBlock]) -> list[InMemoryBatches]:
    train_block, val_block, test_block = blocks
    t = config.train
    return [InMemoryBatches(train_block, t.batch_size, shuffle=True, seed=t.seed, drop_last=t.drop_last),
            InMemoryBatches(val_block, config.eval.batch_size),
            InMemoryBatches(test_block, config.eval.batch_size)]


def _ctr_reader(config: RunConfig, path: str, key: str, **options: Any) -> TabularReader:
    data = config.data
    check_data_file(path, key)
    options.setdefault("batch_size", config.train.batch_size)
    options.setdefault("seed", config.train.seed)
    if data.source == "criteo":
        c = data.criteo
        return read_criteo(path, num_dense=c.num_dense, num_categorical=c.num_categorical, vocab=c.vocab,
                           num_buckets=c.num_buckets, min_count=c.min_count, hash_seed=c.hash_seed,
                           on_error=data.on_error, **options)
    return _table_reader(config, path, key, default_label="binary", **options)


def _table_reader(config: RunConfig, path: str, key: str, default_label: str, **options: Any) -> TabularReader:
    data, spec_cfg = config.data, config.data.spec
    check_data_file(path, key)
    if not spec_cfg.sparse:
        raise ConfigError(f"data.source = {data.source!r} needs [data.spec] with at least one sparse feature, e.g. "
                          'sparse = [{name = "user", column = "userId"}, {name = "item", column = "movieId"}]')
    spec = FeatureSpec(
        sparse=[_feature(SparseFeature, entry, f"data.spec.sparse[{i}]") for i, entry in enumerate(spec_cfg.sparse)],
        dense=[_feature(DenseFeature, entry, f"data.spec.dense[{i}]") for i, entry in enumerate(spec_cfg.dense)],
        label=LabelSpec(spec_cfg.label, kind=spec_cfg.label_kind or default_label),
        timestamp=spec_cfg.timestamp or None,
    )
    if data.source == "csv" and spec_cfg.delimiter:
        options["delimiter"] = spec_cfg.delimiter
    return TabularReader(path, spec, format=None if data.source == "csv" else "parquet", header=spec_cfg.header,
                         on_error=data.on_error, **options)


def _feature(cls: type, entry: dict, where: str):
    try:
        return cls(**entry)
    except TypeError as exc:  # an unknown or missing key of the feature table
        import dataclasses

        valid = [f.name for f in dataclasses.fields(cls)]
        raise ConfigError(f"{where} = {entry!r}: {exc}; valid keys: {', '.join(valid)}") from None


def _reader_id_maps(reader: TabularReader) -> dict[str, np.ndarray]:
    """Raw id of each row of the features with a built vocabulary (row 0 = ``<oov>``).

    Hashed features have no id map: a row stands for every id that hashes to it.
    """
    return {name: np.array(["<oov>"] + list(vocab.tokens), dtype=object)
            for name, vocab in reader.vocabularies.items()}
