"""Data: feature specs, vocabularies, streaming readers, splits and synthetic datasets.

Everything a model trains on arrives as a :class:`Batch` (a KeyedJaggedTensor of table
rows, dense floats, labels). Readers stream batches from files (Criteo TSV, CSV,
Parquet) or from :class:`Interactions` held in memory (MovieLens); generators make
datasets with a known ground truth for tests and examples.

Row conventions: ``vocab="build"`` features and hashed features keep row 0 for
missing/unknown ids (see :mod:`recembed.data.spec`); :class:`Interactions` map every
known user/item to rows ``0..n-1``.
"""

from recembed.data.batch import Batch
from recembed.data.batching import InMemoryBatches
from recembed.data.criteo import criteo_column_names, criteo_spec, read_criteo, write_criteo_tsv
from recembed.data.encoding import MISSING_ROW, FeatureEncoder, build_vocabularies
from recembed.data.interactions import Interactions
from recembed.data.loader import PrefetchLoader
from recembed.data.movielens import read_movielens, write_movielens
from recembed.data.spec import DenseFeature, FeatureSpec, LabelSpec, SparseFeature
from recembed.data.splits import leave_last_out_split, random_split
from recembed.data.synthetic_ctr import CTRDataset, binary_auc, make_ctr_dataset
from recembed.data.synthetic_implicit import ImplicitDataset, make_implicit_dataset
from recembed.data.synthetic_ratings import RatingsDataset, make_ratings_dataset
from recembed.data.tabular import TabularReader, read_csv, read_parquet
from recembed.data.vocab import OOV_ROW, Vocabulary, VocabularyBuilder

__all__ = [
    "Batch",
    "InMemoryBatches",
    "SparseFeature",
    "DenseFeature",
    "LabelSpec",
    "FeatureSpec",
    "Vocabulary",
    "VocabularyBuilder",
    "OOV_ROW",
    "MISSING_ROW",
    "FeatureEncoder",
    "build_vocabularies",
    "TabularReader",
    "read_csv",
    "read_parquet",
    "criteo_column_names",
    "criteo_spec",
    "read_criteo",
    "write_criteo_tsv",
    "Interactions",
    "read_movielens",
    "write_movielens",
    "random_split",
    "leave_last_out_split",
    "PrefetchLoader",
    "CTRDataset",
    "make_ctr_dataset",
    "binary_auc",
    "RatingsDataset",
    "make_ratings_dataset",
    "ImplicitDataset",
    "make_implicit_dataset",
]
