"""The fused group's forward paths: torch's embedding_bag on the flat weights, the numba kernel, and their mix."""

from __future__ import annotations

import pytest
import torch

import recembed as rec
from recembed.tables.fused_batch import torch_pooled_groups


def _configs(optimizer):
    return [
        rec.EmbeddingBagConfig(name="wide", num_embeddings=13, embedding_dim=6, feature_names=["a", "b"],
                               pooling="sum", optimizer=optimizer, lr=0.1, init="normal"),
        rec.EmbeddingBagConfig(name="mean", num_embeddings=7, embedding_dim=4, feature_names=["c"],
                               pooling="mean", optimizer=optimizer, lr=0.1, init="normal"),
        rec.EmbeddingBagConfig(name="pad", num_embeddings=9, embedding_dim=6, feature_names=["d"],
                               pooling="sum", padding_idx=1, optimizer=optimizer, lr=0.1, init="normal"),
        rec.EmbeddingBagConfig(name="max", num_embeddings=5, embedding_dim=3, feature_names=["e"],
                               pooling="max", optimizer=optimizer, lr=0.1, init="normal"),
        rec.EmbeddingBagConfig(name="odd", num_embeddings=11, embedding_dim=3, feature_names=["f"],
                               pooling="sum", optimizer=optimizer, lr=0.1, init="normal"),
    ]


def _pair():
    torch.manual_seed(0)
    fused = rec.EmbeddingBagCollection(_configs("rowwise_adagrad"))
    weights = {n: m.weight.detach().clone() for n, m in fused.embedding_bags.items()}
    plain = rec.EmbeddingBagCollection.from_pretrained(_configs(None), weights, freeze=True)
    return fused, plain


LISTS = {"f": [[1, 2], [], [10, 10, 0]], "e": [[4, 0], [3], []], "d": [[1, 1], [2, 1], [8]],
         "c": [[6], [0, 5, 5], []], "b": [[12], [0, 3], [7, 7, 7]], "a": [[], [2, 2], [11, 0, 5]]}


@pytest.mark.parametrize("weighted", [False, True])
def test_every_path_pools_like_the_plain_collection(weighted):
    fused, plain = _pair()
    lists = {k: v for k, v in LISTS.items() if not (weighted and k == "e")}  # weights need SUM/MEAN
    weights = {k: [[0.5 + 0.25 * i for i in range(len(bag))] for bag in bags] for k, bags in lists.items()}
    kjt = rec.KeyedJaggedTensor.from_lists(lists, weights if weighted else None)
    if weighted:
        fused = rec.EmbeddingBagCollection([c for c in _configs("sgd") if c.name != "max"])
        plain = rec.EmbeddingBagCollection.from_pretrained(
            [c for c in _configs(None) if c.name != "max"],
            {n: m.weight.detach().clone() for n, m in fused.embedding_bags.items()})
    with torch.no_grad():
        torch.testing.assert_close(fused(kjt).values(), plain(kjt).values(), rtol=1e-6, atol=1e-6)
    assert fused(kjt).values().shape == plain(kjt).values().shape


def test_groups_split_keys_between_torch_and_the_numba_kernel():
    fused, _ = _pair()
    kjt = rec.KeyedJaggedTensor.from_lists(LISTS)
    group = fused.fused
    plan = group._plan(tuple(kjt.keys()), group._cpu_indices(), group._bind_flat(group._cpu_indices()))
    keys = kjt.keys()
    for weighted in (False, True):
        groups, numba_table = torch_pooled_groups(plan, weighted)
        by_torch = sorted(keys[k] for g in groups for k in g["keys"])
        by_numba = sorted(keys[k] for k in range(len(keys)) if numba_table[k] >= 0)
        # padding rows, MAX, and (with per-sample weights) MEAN stay with the numba kernel
        assert by_numba == (["c", "d", "e"] if weighted else ["d", "e"])
        assert by_torch == (["a", "b", "f"] if weighted else ["a", "b", "c", "f"])
        dim6 = next(g for g in groups if g["dim"] == 6)
        assert [keys[k] for k in dim6["keys"]] == ["a", "b"] and dim6["block"] == (0, 12)
    # a padding row of zeros adds nothing to a SUM: that key may go to torch too
    groups, numba_table = torch_pooled_groups(plan, False, zero_pads=True)
    assert sorted(keys[k] for k in range(len(keys)) if numba_table[k] >= 0) == ["e"]
    assert sorted(keys[k] for g in groups for k in g["keys"]) == ["a", "b", "c", "d", "f"]


@pytest.mark.parametrize("pad_value", [0.0, 5.0])
def test_a_padding_row_is_left_out_whatever_it_holds(pad_value):
    fused, plain = _pair()
    for collection in (fused, plain):
        with torch.no_grad():
            collection.embedding_bags["pad"].weight[1] = pad_value  # a user may write into the padding row
    kjt = rec.KeyedJaggedTensor.from_lists(LISTS)
    with torch.no_grad():
        torch.testing.assert_close(fused(kjt).values(), plain(kjt).values(), rtol=1e-6, atol=1e-6)
    fused(kjt).values().sum().backward()
    assert torch.all(fused.embedding_bags["pad"].weight[1] == pad_value)  # never trained


def test_flat_store_starts_each_table_at_whole_rows_and_cache_lines():
    fused, _ = _pair()
    group = fused.fused
    store = group._bind_flat(group._cpu_indices())
    for name, start in zip(group.table_names, store.offsets[0]):
        dim = group.configs[name].embedding_dim
        assert start % dim == 0 and start % 16 == 0
        assert fused.embedding_bags[name].weight.data_ptr() == store.flats[0][start:].data_ptr()


def test_whole_output_from_one_torch_call_is_trained_in_backward():
    torch.manual_seed(0)
    configs = [rec.EmbeddingBagConfig(name=f"t{i}", num_embeddings=10, embedding_dim=4, feature_names=[f"f{i}"],
                                      optimizer="sgd", lr=0.5, init="normal") for i in range(3)]
    fused = rec.EmbeddingBagCollection(configs)
    before = {n: m.weight.detach().clone() for n, m in fused.embedding_bags.items()}
    kjt = rec.KeyedJaggedTensor.from_lists({"f0": [[1, 1], [2]], "f1": [[3], []], "f2": [[9, 0], [0]]})
    out = fused(kjt).values()
    expected = torch.stack([torch.cat([2 * before["t0"][1], before["t1"][3], before["t2"][9] + before["t2"][0]]),
                            torch.cat([before["t0"][2], torch.zeros(4), before["t2"][0]])])
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    w = fused.embedding_bags["t2"].weight
    torch.testing.assert_close(w[0], before["t2"][0] - 0.5 * 2)  # row 0 of t2 appears twice in the batch
    torch.testing.assert_close(fused.embedding_bags["t0"].weight[1], before["t0"][1] - 0.5 * 2)
    torch.testing.assert_close(w[5], before["t2"][5])  # untouched rows stay


def test_a_batch_too_large_to_pack_names_the_table():
    from recembed.errors import ConfigError
    from recembed.tables.fused_batch import _check_packable

    class Group:
        table_names = ["huge"]
        configs = {"huge": rec.EmbeddingBagConfig(name="huge", num_embeddings=10, embedding_dim=2, feature_names=["x"])}

    with pytest.raises(ConfigError, match="table 'huge'.*63"):
        _check_packable(Group(), [0], [50], 1 << 14)
    _check_packable(Group(), [0], [48], 1 << 14)  # 48 + 14 bits fit
