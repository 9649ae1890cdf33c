"""Quickstart: tables -> KeyedJaggedTensor -> collection -> KeyedTensor, then one fused training step."""

import torch

import recembed as rec

tables = [
    rec.EmbeddingBagConfig(name="t_product", num_embeddings=1000, embedding_dim=64, feature_names=["product"]),
    rec.EmbeddingBagConfig(name="t_user", num_embeddings=1000, embedding_dim=64, feature_names=["user"],
                          pooling="mean"),
]
ebc = rec.EmbeddingBagCollection(tables)
batch = rec.KeyedJaggedTensor.from_lists({"product": [[1, 2, 1], [5]], "user": [[2, 3], [4, 1]]})
print(batch)
pooled = ebc(batch)
print("values:", tuple(pooled.values().shape), {k: tuple(v.shape) for k, v in pooled.to_dict().items()})

# The same tables with a fused optimizer: loss.backward() updates the rows in place.
fused = rec.EmbeddingBagCollection([
    rec.EmbeddingBagConfig(name="t_product", num_embeddings=1000, embedding_dim=7, feature_names=["product"],
                          optimizer="rowwise_adagrad", lr=0.1),
    rec.EmbeddingBagConfig(name="t_user", num_embeddings=1000, embedding_dim=7, feature_names=["user"],
                          optimizer="adam", lr=0.01),
])
before = fused.embedding_bags["t_product"].weight[1].clone()
loss = fused(batch).values().pow(2).sum()
loss.backward()
moved = (fused.embedding_bags["t_product"].weight[1] - before).abs().max().item()
print(f"loss {loss.item():.4f}; row 1 of t_product moved by {moved:.4f} inside backward")
