import numpy as np
import pytest

from recembed.seq2vec import Item2Vec, Word2Vec


def grouped_baskets(num_groups=3, items_per_group=6, num_baskets=900, basket_size=4, seed=0):
    """Baskets that each hold items of one co-purchase group, in random order."""
    rng = np.random.default_rng(seed)
    groups = [list(range(g * items_per_group, (g + 1) * items_per_group)) for g in range(num_groups)]
    baskets = [rng.choice(groups[i % num_groups], size=basket_size, replace=False).tolist() for i in range(num_baskets)]
    return baskets, groups


def test_item2vec_recovers_co_purchase_groups():
    baskets, groups = grouped_baskets()
    model = Item2Vec(baskets, vector_size=16, sample=0.0, epochs=10, workers=1, seed=5)
    kv = model.wv
    assert len(kv) == 18
    for group in groups:
        for item in group:
            neighbours = [key for key, _ in kv.most_similar(item, topn=len(group) - 1)]
            assert set(neighbours) == set(group) - {item}


def test_whole_basket_is_the_context():
    # Items at the two ends of a 4-item basket are context of each other: Item2Vec equals
    # Word2Vec with a window spanning every basket and no window shrinking.
    baskets, _ = grouped_baskets(num_baskets=90)
    common = {"vector_size": 8, "sample": 0.0, "epochs": 2, "workers": 1, "seed": 2, "min_count": 1, "sg": 1}
    item2vec = Item2Vec(baskets, **common).wv.vectors
    spanning = Word2Vec(baskets, window=3, shrink_windows=False, **common).wv.vectors
    narrow = Word2Vec(baskets, window=1, shrink_windows=False, **common).wv.vectors
    np.testing.assert_array_equal(item2vec, spanning)
    assert not np.allclose(item2vec, narrow)


def test_item2vec_cbow_variant_and_save_load(tmp_path):
    # CBOW needs a catalog larger than a few negatives' worth of items to separate groups.
    baskets, groups = grouped_baskets(num_groups=8, items_per_group=8, num_baskets=2000, seed=1)
    model = Item2Vec(baskets, vector_size=16, sample=0.0, epochs=10, workers=2, seed=5, sg=0)
    kv = model.wv
    # Every item is closer on average to its own group than to any other group.
    for g, group in enumerate(groups):
        for item in group:
            own = np.mean([kv.similarity(item, other) for other in group if other != item])
            for h, foreign in enumerate(groups):
                if h != g:
                    assert own > np.mean([kv.similarity(item, other) for other in foreign]) + 0.3
    model.save(tmp_path / "i2v")
    loaded = Item2Vec.load(tmp_path / "i2v")
    assert loaded.wv.index_to_key == kv.index_to_key and loaded.sg == 0
    np.testing.assert_array_equal(loaded.wv.vectors, kv.vectors)
    with pytest.raises(TypeError):
        Item2Vec(baskets, window=5)  # no window: the basket is the context
