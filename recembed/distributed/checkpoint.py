"""Checkpoints of sharded models that load at any world size, or whole for inference.

A checkpoint is a folder::

    manifest.json                 tables, their shards (rank, row range, column range, file), sha256 per file
    shard-<token>-r00000.pt       rank 0's shards: weights + fused optimizer state, per table
    shard-<token>-r00001.pt       ...
    dense-<token>.pt              the dense part's state_dict and the caller's ``extra`` (rank 0)

Every file is written atomically and carries its own content digest
(:func:`recembed.train.checkpoint.save_checkpoint`, loaded with ``weights_only=True``);
the manifest, written last by rank 0, records each file's sha256 and is the commit point:
files of an unfinished save have a new token and are never named by the old manifest.
Loading re-slices from the manifest, so a checkpoint saved by W ranks loads into any
other plan and world size (:func:`load_sharded`) or into a plain model
(:func:`load_unsharded`). The folder must be on storage every rank can read and write.

Example (every rank)::

    save_sharded("ckpt/step-100", model, extra={"step": 100})
    ...
    extra = load_sharded("ckpt/step-100", other_model_sharded_over_4_ranks)
    plain_state = load_unsharded("ckpt/step-100")   # any process, no process group
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

import torch
from torch import nn

from recembed.distributed.comm import Comm
from recembed.distributed.model_sharding import sharded_collections
from recembed.distributed.plan_types import ShardingType
from recembed.distributed.sharded_collection import ShardedEmbeddingBagCollection
from recembed.distributed.table_state import table_is_plain, unsharded_key
from recembed.errors import CheckpointError, UnknownKeyError
from recembed.train._atomic import atomic_writer
from recembed.train.checkpoint import load_checkpoint, save_checkpoint

__all__ = ["save_sharded", "load_sharded", "load_unsharded", "load_extra", "read_manifest", "MANIFEST"]

MANIFEST = "manifest.json"
FORMAT = "recembed-sharded"
VERSION = 1


def _sharded_collections(model: nn.Module) -> list[tuple[str, ShardedEmbeddingBagCollection, bool]]:
    found = sharded_collections(model)
    if not found:
        raise CheckpointError(f"{type(model).__name__} has no sharded collection; use recembed.train.checkpoint "
                              "for unsharded models")
    return found


def _qualified(path: str, table: str) -> str:
    return f"{path}.{table}" if path else table


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _table_entry(sharded: ShardedEmbeddingBagCollection, name: str, token: str) -> dict:
    cfg = sharded.layout.configs[name]
    spec = sharded.layout.specs[name]
    shards = sharded.layout.shards[name]
    if spec.type is ShardingType.DATA_PARALLEL:
        shards = shards[:1]  # replicas are equal; one copy is saved
    return {
        "num_embeddings": cfg.num_embeddings, "embedding_dim": cfg.embedding_dim,
        "optimizer": None if cfg.optimizer is None else cfg.optimizer.value, "dtype": cfg.dtype.value,
        "pooling": cfg.pooling.value, "feature_names": list(cfg.feature_names), "plain": table_is_plain(cfg),
        "sharding": spec.to_dict(),
        "shards": [{"rank": s.rank, "rows": list(s.rows), "cols": list(s.cols), "file": _shard_file(token, s.rank)}
                   for s in shards],
    }


def _shard_file(token: str, rank: int) -> str:
    return f"shard-{token}-r{rank:05d}.pt"


def _dense_state(model: nn.Module, collections) -> dict[str, torch.Tensor]:
    prefixes = [p + "." for p, _, _ in collections if p]
    if any(not p for p, _, _ in collections):
        return {}  # the model is a sharded collection: no dense part
    return {k: v for k, v in model.state_dict().items() if not any(k.startswith(p) for p in prefixes)}


def save_sharded(path: str | os.PathLike, model: nn.Module, extra: dict | None = None, pg=None) -> Path:
    """Write ``model``'s shards (every rank its own), dense state and ``extra`` (rank 0), then the manifest.

    A collective: every rank calls it with the same ``path``. ``extra`` is plain data
    (dicts/lists of tensors, numbers, strings) from rank 0, e.g. the step and the dense
    optimizer's state. Returns the folder.
    """
    comm = Comm(pg)
    folder = Path(path)
    collections = _sharded_collections(model)
    token_bytes = torch.tensor(list(secrets.token_bytes(6)), dtype=torch.uint8)
    comm.broadcast_(token_bytes, 0, "checkpoint token")
    token = bytes(token_bytes.tolist()).hex()
    if comm.rank == 0:
        folder.mkdir(parents=True, exist_ok=True)
    comm.barrier("checkpoint folder creation")
    tables = {}
    for cpath, sharded, _ in collections:
        for name, kind, shard in sharded.local_shards():
            if kind is ShardingType.DATA_PARALLEL and shard.rank != sharded.layout.shards[name][0].rank:
                continue
            tables[_qualified(cpath, name)] = {"rows": list(shard.rows), "cols": list(shard.cols),
                                               "tensors": dict(sharded.shard_tensors(name))}
    own = folder / _shard_file(token, comm.rank)
    save_checkpoint(own, {"format": FORMAT + "-shard", "rank": comm.rank, "world_size": comm.world_size,
                          "tables": tables})
    digest = torch.tensor(list(bytes.fromhex(_file_sha256(own))), dtype=torch.uint8)
    digests = comm.all_gather(digest, "checkpoint file digests")
    if comm.rank == 0:
        dense_name = f"dense-{token}.pt"
        save_checkpoint(folder / dense_name, {"model": _dense_state(model, collections), "extra": extra or {}})
        files = {_shard_file(token, r): {"rank": r, "sha256": bytes(d.tolist()).hex()} for r, d in enumerate(digests)}
        files[dense_name] = {"rank": 0, "sha256": _file_sha256(folder / dense_name)}
        manifest = {
            "format": FORMAT, "version": VERSION, "world_size": comm.world_size, "token": token,
            "dense_file": dense_name, "files": files,
            "collections": {cpath: {"sequence": sequence,
                                    "tables": {name: _table_entry(sharded, name, token)
                                               for name in sharded.layout.configs}}
                            for cpath, sharded, sequence in collections},
        }
        with atomic_writer(folder / MANIFEST, "w") as handle:
            json.dump(manifest, handle, indent=1)
        for stale in folder.iterdir():  # files of earlier saves to this folder
            if stale.suffix == ".pt" and stale.name.startswith(("shard-", "dense-")) and stale.name not in files:
                stale.unlink(missing_ok=True)
    comm.barrier("checkpoint manifest")
    return folder


def read_manifest(path: str | os.PathLike) -> dict:
    """The manifest of a sharded checkpoint folder, checked for format and version."""
    file = Path(path) / MANIFEST
    if not file.is_file():
        raise CheckpointError(f"{path} is not a sharded checkpoint: {file} does not exist")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{file} is not readable JSON: {exc}") from exc
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise CheckpointError(f"{file}: format {manifest.get('format')!r} version {manifest.get('version')!r}; "
                              f"this recembed reads {FORMAT!r} version {VERSION}")
    return manifest


class _Files:
    """Loads checkpoint files once each, checking the manifest's sha256 first."""

    def __init__(self, folder: Path, manifest: dict):
        self.folder, self.manifest, self.cache = folder, manifest, {}

    def get(self, name: str) -> dict:
        if name not in self.cache:
            entry = self.manifest["files"].get(name)
            file = self.folder / name
            if entry is None:
                raise CheckpointError(f"{self.folder}: {name} is not listed in {MANIFEST}")
            if not file.is_file():
                raise CheckpointError(f"{self.folder}: {name}, listed in {MANIFEST}, is missing")
            actual = _file_sha256(file)
            if actual != entry["sha256"]:
                raise CheckpointError(f"{file} is corrupted: sha256 {actual[:16]}... does not match the manifest's "
                                      f"{entry['sha256'][:16]}...")
            self.cache[name] = load_checkpoint(file)
        return self.cache[name]


def _check_table(entry: dict, cfg, where: str) -> None:
    saved = (entry["num_embeddings"], entry["embedding_dim"], entry["optimizer"], entry["dtype"])
    now = (cfg.num_embeddings, cfg.embedding_dim, None if cfg.optimizer is None else cfg.optimizer.value,
           cfg.dtype.value)
    if saved != now:
        raise CheckpointError(f"{where}: the checkpoint has (rows, dim, optimizer, dtype) = {saved}, "
                              f"the model {now}")


def _fill(target: dict[str, torch.Tensor], rows: tuple[int, int], cols: tuple[int, int], sources: list[dict],
          files: _Files, qualified: str, plain: bool, where: str) -> None:
    """Copy every saved shard's overlap with the block ``rows`` x ``cols`` into ``target`` (a shard's tensors)."""
    covered = 0
    for src in sources:
        saved = files.get(src["file"])["tables"].get(qualified)
        if saved is None:
            raise CheckpointError(f"{where}: {src['file']} has no data for table '{qualified}'")
        tensors = saved["tensors"]
        missing = sorted(set(target) - set(tensors))
        if missing:
            raise CheckpointError(f"{where}: {src['file']} lacks {missing} of table '{qualified}' (it has "
                                  f"{sorted(tensors)}); was it saved with another optimizer?")
        if not plain:
            for key, t in target.items():
                t.copy_(tensors[key])
            return
        r0, r1 = max(rows[0], src["rows"][0]), min(rows[1], src["rows"][1])
        c0, c1 = max(cols[0], src["cols"][0]), min(cols[1], src["cols"][1])
        if r0 >= r1 or c0 >= c1:
            continue
        covered += (r1 - r0) * (c1 - c0)
        sr, sc = src["rows"][0], src["cols"][0]
        for key, t in target.items():
            s = tensors[key]
            if t.dim() == 2:
                t[r0 - rows[0]:r1 - rows[0], c0 - cols[0]:c1 - cols[0]] = s[r0 - sr:r1 - sr, c0 - sc:c1 - sc]
            elif t.dim() == 1:
                t[r0 - rows[0]:r1 - rows[0]] = s[r0 - sr:r1 - sr]
            else:
                t.copy_(s)
    if plain and covered != (rows[1] - rows[0]) * (cols[1] - cols[0]):
        raise CheckpointError(f"{where}: the saved shards of table '{qualified}' do not cover rows {rows} x "
                              f"columns {cols}")


def load_sharded(path: str | os.PathLike, model: nn.Module, pg=None) -> dict:
    """Load a sharded checkpoint into ``model`` sharded by any plan at any world size (collective).

    Every rank reads only the files overlapping its shards, re-slices them, and loads the
    dense state. Returns the ``extra`` dict given to :func:`save_sharded`.

    Raises:
        CheckpointError: missing or corrupted file, a table that differs in size, optimizer or
            dtype, or a collection the checkpoint does not have.
    """
    comm = Comm(pg)
    folder = Path(path)
    manifest = read_manifest(folder)
    files = _Files(folder, manifest)
    with torch.no_grad():
        for cpath, sharded, _ in _sharded_collections(model):
            saved = manifest["collections"].get(cpath)
            if saved is None:
                raise CheckpointError(f"{folder}: no collection '{cpath}' (saved: {sorted(manifest['collections'])})")
            for name, _kind, shard in sharded.local_shards():
                entry = saved["tables"].get(name)
                where = f"{folder} table '{_qualified(cpath, name)}'"
                if entry is None:
                    raise CheckpointError(f"{where}: not in the checkpoint (saved: {sorted(saved['tables'])})")
                _check_table(entry, sharded.layout.configs[name], where)
                _fill(sharded.shard_tensors(name), shard.rows, shard.cols, entry["shards"], files,
                      _qualified(cpath, name), entry["plain"], where)
        dense = files.get(manifest["dense_file"])
        if dense["model"]:
            result = model.load_state_dict(dense["model"], strict=False)
            local_prefixes = tuple(p + "." for p, _, _ in _sharded_collections(model))
            missing = [k for k in result.missing_keys if not k.startswith(local_prefixes)]
            if missing or result.unexpected_keys:
                raise CheckpointError(f"{folder}: the dense state does not fit this model (missing {missing[:5]}, "
                                      f"unexpected {result.unexpected_keys[:5]})")
    comm.barrier("checkpoint load")
    return dense["extra"]


def load_unsharded(path: str | os.PathLike, collection: str | None = None) -> dict[str, Any]:
    """The whole tables (and dense part) of a sharded checkpoint, as plain ``state_dict`` entries.

    Needs no process group. With ``collection=None`` returns the whole model's state_dict
    (dense entries plus ``"<collection path>.embedding_bags.<table>.weight"``,
    ``"<path>.fused.state.<table>.<buffer>"`` ...), loadable into the unsharded model; with
    ``collection="embeddings"`` only that collection's own state_dict (for a plain
    :class:`~recembed.tables.EmbeddingBagCollection`, or an EmbeddingCollection if that was
    what was sharded).
    """
    folder = Path(path)
    manifest = read_manifest(folder)
    files = _Files(folder, manifest)
    saved_collections = manifest["collections"]
    if collection is not None and collection not in saved_collections:
        raise UnknownKeyError(f"{folder}: no collection '{collection}' (saved: {sorted(saved_collections)})")
    out: dict[str, Any] = {}
    if collection is None:
        out.update(files.get(manifest["dense_file"])["model"])
    for cpath, saved in saved_collections.items():
        if collection is not None and cpath != collection:
            continue
        prefix = f"{cpath}." if cpath and collection is None else ""
        for name, entry in saved["tables"].items():
            qualified = _qualified(cpath, name)
            first = files.get(entry["shards"][0]["file"])["tables"][qualified]["tensors"]
            whole = {k: _whole_like(t, entry) if entry["plain"] else t.clone() for k, t in first.items()}
            _fill(whole, (0, entry["num_embeddings"]), (0, entry["embedding_dim"]), entry["shards"], files,
                  qualified, entry["plain"], f"{folder} table '{qualified}'")
            for key, tensor in whole.items():
                out[prefix + unsharded_key(name, key, saved["sequence"])] = tensor
    return out


def load_extra(path: str | os.PathLike) -> dict:
    """The ``extra`` dict given to :func:`save_sharded`, read without a process group
    (its file's sha256 is checked against the manifest first)."""
    folder = Path(path)
    manifest = read_manifest(folder)
    return _Files(folder, manifest).get(manifest["dense_file"])["extra"]


def _whole_like(shard_tensor: torch.Tensor, entry: dict) -> torch.Tensor:
    rows, dim = entry["num_embeddings"], entry["embedding_dim"]
    shape = {2: (rows, dim), 1: (rows,), 0: ()}[shard_tensor.dim()]
    return torch.zeros(shape, dtype=shard_tensor.dtype)
