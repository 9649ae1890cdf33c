"""Exporting trained tables: .npy matrices, raw-id maps and the word2vec text format."""

import json

import numpy as np
import pytest
import torch

from recembed.errors import CheckpointError, ConfigError
from recembed.train.checkpoint import save_checkpoint
from recembed.train.export import checkpoint_tables, export_embeddings

from .test_loop import fit, tiny_config


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mf")
    result = fit(tiny_config("rating", train={"epochs": 1}), out)
    return out, result.model


def test_every_table_is_written_with_its_id_map_and_word2vec_text(tmp_path, trained_run):
    out, model = trained_run
    tables = export_embeddings(out / "model.pt", tmp_path)
    assert [(t.name, t.rows, t.dim) for t in tables] == [
        ("user_factors", 60, 8), ("item_factors", 50, 8), ("user_bias", 60, 1), ("item_bias", 50, 1)]
    items = np.load(tmp_path / "item_factors.npy")
    assert items.shape == (50, 8) and items.dtype == np.float32
    np.testing.assert_array_equal(items, model.item_vectors().numpy())
    id_map = json.loads((tmp_path / "item_factors.ids.json").read_text())
    assert id_map["1"] == 0 and id_map["50"] == 49 and len(id_map) == 50  # raw MovieLens-style ids
    lines = (tmp_path / "item_factors.w2v.txt").read_text().splitlines()
    assert lines[0] == "50 8" and len(lines) == 51
    key, *values = lines[1].split()
    assert key == "1"
    np.testing.assert_allclose(np.array(values, dtype=np.float32), items[0], rtol=1e-6)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["user_factors"]["rows"] == 60 and "user_factors.w2v.txt" in manifest["user_factors"]["files"]


def test_formats_choose_the_files(tmp_path, trained_run):
    out, _ = trained_run
    export_embeddings(out / "model.pt", tmp_path / "w2v", format="word2vec")
    names = sorted(p.name for p in (tmp_path / "w2v").iterdir())
    assert "item_factors.w2v.txt" in names and not any(n.endswith(".npy") for n in names)
    with pytest.raises(ConfigError, match="format = 'csv'"):
        export_embeddings(out / "model.pt", tmp_path, format="csv")


def test_epoch_checkpoints_export_too(tmp_path, trained_run):
    out, _ = trained_run
    tables = export_embeddings(out / "checkpoints" / "checkpoint-000000000001.pt", tmp_path, format="npy")
    assert {t.name for t in tables} == {"user_factors", "item_factors", "user_bias", "item_bias"}


def test_rows_without_raw_ids_are_keyed_by_row():
    state = {"model": {"embeddings.embedding_bags.t_C1.weight": torch.ones(3, 2),
                       "top_mlp.layers.0.weight": torch.ones(4, 4)},
             "id_maps": {}}
    tables = checkpoint_tables(state)
    assert list(tables) == ["t_C1"] and tables["t_C1"][1] == ["#0", "#1", "#2"]


def test_checkpoints_without_tables_are_refused(tmp_path):
    path = save_checkpoint(tmp_path / "plain.pt", {"model": {"linear.weight": torch.ones(2, 2)}})
    with pytest.raises(CheckpointError, match="no embedding tables"):
        export_embeddings(path, tmp_path / "out")
    path = save_checkpoint(tmp_path / "empty.pt", {"epoch": 1})
    with pytest.raises(CheckpointError, match="no model state"):
        export_embeddings(path, tmp_path / "out")
