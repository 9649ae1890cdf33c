"""Smaller embedding tables: compressed tables for training, quantised tables for inference.

Compressed tables are chosen by one config field, ``compression=``; the spec's
``build(config, device)`` makes the module an ``EmbeddingBagCollection`` holds in place of
the plain table. They pool with SUM, MEAN or MAX, take per-sample weights and
``padding_idx``, train with a fused optimizer inside backward (or plain autograd), and
round-trip through ``state_dict``.

| spec                | an id's vector                                     | rows for ``n`` ids            |
|---------------------|----------------------------------------------------|-------------------------------|
| ``hash_size`` field | the hashing trick: row ``hash_ids(id) mod m``      | ``m = num_embeddings``        |
| ``HashedSpec``      | the same hash, sized by a ratio of ``n``           | ``ceil(ratio * n)``           |
| ``BloomSpec``       | sum of k murmurhash3_32-hashed rows (Serra 2017)   | ``ceil(ratio * n)``           |
| ``QRSpec``          | quotient row (*, + or concat) remainder row (Shi 2020) | ``ceil(n / m) + m``       |
| ``MixedDimSpec``    | frequency block row, projected to D (Ginart 2019)  | ``n`` rows, narrower blocks   |
| ``ROBESpec``        | Z-value blocks at hashed offsets of one array      | ``ceil(ratio * n * D)`` values|

``quantize(module, dtype="int8" | "int4" | "float16")`` makes an inference copy of a
collection or a whole model with row-wise quantised tables: int8 rows are pooled by
recembed's numba kernel straight from the quantised bytes, int4 and float16 SUM/MEAN keys by
torch's FBGEMM embedding-bag operators (the numba kernel serves what they cannot: MAX
pooling, padding rows, builds without them); ``scale_dtype="float32"`` stores 8 bytes a row
of scale and bias instead of 4.
:func:`table_sizes` and :func:`compressed_num_bytes` report what every table costs.

Example:
    >>> from recembed.compress import QRSpec, quantize, compressed_num_bytes
    >>> cfg = EmbeddingBagConfig(name="t_user", num_embeddings=100_000, embedding_dim=32, feature_names=["user"],
    ...                          optimizer="rowwise_adagrad", compression=QRSpec(compression_ratio=0.1))
    >>> ebc = EmbeddingBagCollection([cfg])          # 10x fewer bytes, trained as usual
    >>> small = quantize(ebc, dtype="int8")         # ...and int8 sub-tables for serving
"""

from recembed.compress.accounting import (
    TableSize,
    compressed_num_bytes,
    compressed_num_parameters,
    find_collections,
    table_sizes,
)
from recembed.compress.base import CompressedTable, compressed_rows
from recembed.compress.bloom import (
    MAX_BLOOM_HASHES,
    BloomEmbeddingTable,
    BloomSpec,
    default_bloom_seeds,
)
from recembed.compress.hashed import HashedEmbeddingTable, HashedSpec
from recembed.compress.mixed_dim import (
    MixedDimEmbeddingTable,
    MixedDimSpec,
    default_block_sizes,
    power_rule_dims,
)
from recembed.compress.murmur import murmurhash3_32
from recembed.compress.qr import (
    QR_OPERATIONS,
    QREmbeddingTable,
    QRSpec,
    qr_collisions_for_ratio,
)
from recembed.compress.quant_rows import QUANT_DTYPES, QuantizedRows, quantize_rows
from recembed.compress.quantize import (
    load_quantized,
    quantization_error,
    quantize,
    save_quantized,
)
from recembed.compress.quantized_collection import QuantizedEmbeddingBagCollection
from recembed.compress.robe import ROBEEmbeddingTable, ROBESpec

__all__ = [
    "MAX_BLOOM_HASHES",
    "QR_OPERATIONS",
    "QUANT_DTYPES",
    "BloomEmbeddingTable",
    "BloomSpec",
    "CompressedTable",
    "HashedEmbeddingTable",
    "HashedSpec",
    "MixedDimEmbeddingTable",
    "MixedDimSpec",
    "QREmbeddingTable",
    "QRSpec",
    "QuantizedEmbeddingBagCollection",
    "QuantizedRows",
    "ROBEEmbeddingTable",
    "ROBESpec",
    "TableSize",
    "compressed_num_bytes",
    "compressed_num_parameters",
    "compressed_rows",
    "default_block_sizes",
    "default_bloom_seeds",
    "find_collections",
    "load_quantized",
    "murmurhash3_32",
    "power_rule_dims",
    "qr_collisions_for_ratio",
    "quantization_error",
    "quantize",
    "quantize_rows",
    "save_quantized",
    "table_sizes",
]
