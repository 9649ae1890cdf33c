import pytest

from recembed.data import DenseFeature, FeatureSpec, LabelSpec, SparseFeature, Vocabulary
from recembed.errors import ConfigError, UnknownKeyError


def _spec(**kw):
    parts = dict(
        sparse=[SparseFeature("user", "userId"), SparseFeature("genres", separator="|", vocab="hash", num_buckets=16)],
        dense=[DenseFeature("age", transform="log1p")],
        label=LabelSpec("rating", kind="rating"),
        timestamp="ts",
        user="user",
    )
    parts.update(kw)
    return FeatureSpec(**parts)


def test_columns_and_names():
    spec = _spec()
    assert spec.columns() == ["rating", "age", "userId", "genres", "ts"]
    assert spec.sparse_names == ["user", "genres"] and spec.dense_names == ["age"]
    assert spec.needs_vocabularies() == ["user"]
    assert spec.sparse[1].multi_valued and not spec.sparse[0].multi_valued


def test_num_rows_needs_vocabularies_for_built_features():
    spec = _spec()
    with pytest.raises(ConfigError, match="'user' uses vocab='build'"):
        spec.num_rows()
    assert spec.num_rows({"user": Vocabulary(["a", "b", "c"])}) == {"user": 4, "genres": 16}


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: SparseFeature("x", vocab="hash"), "needs num_buckets"),
        (lambda: SparseFeature("x", vocab="hash", num_buckets=1), "needs num_buckets"),
        (lambda: SparseFeature("x", num_buckets=10), "only applies to vocab='hash'"),
        (lambda: SparseFeature("x", vocab="lookup"), "vocab must be one of"),
        (lambda: SparseFeature("x", separator=""), "separator"),
        (lambda: SparseFeature("x", min_count=0), "min_count"),
        (lambda: SparseFeature(""), "name"),
        (lambda: DenseFeature("x", transform="log"), "transform"),
        (lambda: DenseFeature("x", fill=float("nan")), "finite"),
        (lambda: LabelSpec("y", kind="multiclass"), "kind"),
        (lambda: _spec(dense=[DenseFeature("user")]), "unique"),
        (lambda: _spec(label=None), "LabelSpec"),
    ],
)
def test_invalid_specs_raise_config_error(make, match):
    with pytest.raises(ConfigError, match=match):
        make()


def test_user_role_must_name_a_sparse_feature():
    with pytest.raises(UnknownKeyError, match="'item_id' is not a sparse feature"):
        _spec(item="item_id")
