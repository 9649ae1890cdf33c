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
