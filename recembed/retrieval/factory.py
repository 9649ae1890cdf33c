"""Indexes from short strings, for configs and command lines.

Grammar: ``NAME`` or ``NAME:key=value,key=value``; for faiss, everything after
``faiss:`` is the faiss factory string itself (it has its own commas).

==========================================  ===========================================
``"exact"``, ``"exact:chunk_size=32768"``   :class:`ExactIndex`
``"lsh:tables=16,bits=12,probes=8"``        :class:`LSHIndex` (``tables``/``bits``/``probes``
                                            abbreviate ``num_tables``/``num_bits``/``num_probes``)
``"cplsh:tables=64,dim=512,probes=2"``     :class:`CrossPolytopeLSHIndex` (``dim`` abbreviates
                                            ``projected_dim``, ``votes`` ``min_votes``)
``"faiss:HNSW32"``, ``"faiss:IVF256,Flat"`` :class:`FaissIndex` with that spec
``"hnswlib:M=16,ef_search=100"``            :class:`HnswlibIndex` (``ef`` = ``ef_search``)
==========================================  ===========================================
"""

from __future__ import annotations

from typing import Any, Optional

from recembed.errors import ConfigError
from recembed.retrieval.base import VectorIndex
from recembed.retrieval.cross_polytope import CrossPolytopeLSHIndex
from recembed.retrieval.exact import ExactIndex
from recembed.retrieval.faiss_index import FaissIndex
from recembed.retrieval.hnswlib_index import HnswlibIndex
from recembed.retrieval.lsh import LSHIndex
from recembed.retrieval.params import METRICS

_CLASSES: dict[str, type[VectorIndex]] = {
    "exact": ExactIndex,
    "lsh": LSHIndex,
    "cplsh": CrossPolytopeLSHIndex,
    "faiss": FaissIndex,
    "hnswlib": HnswlibIndex,
}

_ALIASES: dict[str, dict[str, str]] = {
    "lsh": {"tables": "num_tables", "bits": "num_bits", "probes": "num_probes"},
    "cplsh": {"tables": "num_tables", "dim": "projected_dim", "probes": "num_probes", "votes": "min_votes"},
    "hnswlib": {"ef": "ef_search", "m": "M"},
}


def _parse_value(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text.strip()


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``"name:key=value,..."`` into the index name and its keyword arguments."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"index spec must be a non-empty string such as 'exact' or 'lsh:tables=16', got {spec!r}")
    name, _, rest = spec.strip().partition(":")
    name = name.strip().lower()
    if name not in _CLASSES:
        raise ConfigError(f"unknown index {name!r} in spec {spec!r}; known: {sorted(_CLASSES)}")
    if name == "faiss":
        if not rest.strip():
            raise ConfigError(f"spec {spec!r} needs a faiss factory string after 'faiss:', e.g. 'faiss:HNSW32'")
        return name, {"spec": rest.strip()}
    params: dict[str, Any] = {}
    aliases = _ALIASES.get(name, {})
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"spec {spec!r}: expected key=value, got {item!r}")
        key = key.strip()
        key = aliases.get(key, aliases.get(key.lower(), key))
        if key in params:
            raise ConfigError(f"spec {spec!r}: {key!r} is given twice")
        params[key] = _parse_value(value)
    return name, params


def index_factory(spec: str, dim: Optional[int] = None, metric: str = "dot") -> VectorIndex:
    """Create an empty index from a spec string.

    Args:
        spec: see the module docstring.
        dim: if given, the index accepts only vectors of this dimension
            (:class:`ShapeMismatchError` otherwise).
        metric: ``"dot"`` or ``"cosine"``; a ``metric=`` inside ``spec`` is refused.

    Unknown keys raise :class:`ConfigError` listing the valid ones.

    Example:
        >>> index = index_factory("lsh:tables=16,bits=12,probes=8", dim=64, metric="cosine")
        >>> index.num_tables, index.metric
        (16, 'cosine')
    """
    name, params = parse_spec(spec)
    cls = _CLASSES[name]
    if metric not in METRICS:
        raise ConfigError(f"metric must be one of {list(METRICS)}, got {metric!r}")
    if "metric" in params:
        raise ConfigError(f"spec {spec!r}: pass the metric as index_factory(metric=...), not inside the spec")
    unknown = sorted(set(params) - set(cls.param_specs))
    if unknown:
        raise ConfigError(
            f"spec {spec!r}: {cls.__name__} has no parameter {unknown[0]!r}; valid parameters: "
            f"{sorted(set(cls.param_specs) - {'metric'})}"
        )
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
        raise ConfigError(f"dim must be a positive int, got {dim!r}")
    index = cls(metric=metric, **params)
    index._fixed_dim = dim  # checked by add(): VectorIndex.dim falls back to it while empty
    return index
