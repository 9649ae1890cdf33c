"""EmbeddingCollection tables with a fused optimizer: one vector per id, updated in backward."""

import torch

import recembed as rec


def test_fused_sequence_lookup_matches_embedding_plus_sgd():
    torch.manual_seed(0)
    configs = [
        rec.EmbeddingConfig(name="items", num_embeddings=20, embedding_dim=3, feature_names=["hist", "cand"],
                            optimizer="sgd", lr=0.1, init="normal"),
        rec.EmbeddingConfig(name="cats", num_embeddings=5, embedding_dim=2, feature_names=["cat"], init="normal"),
    ]
    ec = rec.EmbeddingCollection(configs)
    ref = torch.nn.Embedding.from_pretrained(ec.embeddings["items"].weight.detach().clone(), freeze=False, sparse=True)
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    kjt = rec.KeyedJaggedTensor.from_lists({"hist": [[1, 2, 2], [7]], "cand": [[3], [2, 19]], "cat": [[0], [4, 1]]})
    out = ec(kjt)
    assert out["hist"].values().shape == (4, 3) and out["hist"].lengths().tolist() == [3, 1]
    torch.testing.assert_close(out["cand"].values(), ref(torch.tensor([3, 2, 19])))
    upstream = {k: torch.randn(v.values().shape, generator=torch.Generator().manual_seed(i))
                for i, (k, v) in enumerate(out.items())}
    sum((out[k].values() * upstream[k]).sum() for k in out).backward()
    ref_loss = (ref(torch.tensor([1, 2, 2, 7])) * upstream["hist"]).sum() + (ref(torch.tensor([3, 2, 19])) * upstream["cand"]).sum()
    ref_loss.backward()
    opt.step()
    torch.testing.assert_close(ec.embeddings["items"].weight, ref.weight.detach())
    assert ec.embeddings["cats"].weight.grad is not None  # the plain table kept autograd


def test_compressed_table_in_embedding_collection_and_schedulers_reach_sub_tables():
    from recembed.compress import BloomSpec, QRSpec

    ec = rec.EmbeddingCollection([rec.EmbeddingConfig(
        name="q", num_embeddings=1000, embedding_dim=4, feature_names=["a"],
        compression=BloomSpec(compression_ratio=0.2, num_hashes=2), optimizer="sgd", lr=0.1)])
    out = ec(rec.KeyedJaggedTensor.from_lists({"a": [[1, 2], [999]]}))["a"].values()
    table = ec.embeddings["q"]
    torch.testing.assert_close(out[2:], table.lookup(torch.tensor([999]), torch.tensor([0, 1]), None, feature="a"))
    ebc = rec.EmbeddingBagCollection([
        rec.EmbeddingBagConfig(name="q", num_embeddings=1000, embedding_dim=4, feature_names=["a"],
                               compression=QRSpec(num_collisions=10, operation="mult"), optimizer="adam", lr=0.1),
        rec.EmbeddingBagConfig(name="p", num_embeddings=100, embedding_dim=4, feature_names=["b"], optimizer="sgd"),
    ])
    optimizer = ebc.fused_optimizer()
    assert len(optimizer.param_groups) == 3  # the plain table and both QR sub-tables
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    optimizer.step()
    scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == [0.5 * 0.01, 0.05, 0.05]
