import numpy as np
import pytest


def _collect(batches):
    """Concatenate a stream of batches: labels, dense, per-feature id lists, timestamps."""
    labels, dense, stamps, sparse = [], [], [], {}
    for batch in batches:
        labels.append(batch.labels.numpy())
        dense.append(batch.dense.numpy())
        if batch.timestamps is not None:
            stamps.append(batch.timestamps.numpy())
        for key, jt in batch.sparse.to_dict().items():
            sparse.setdefault(key, []).extend(jt.to_dense())
    return {
        "labels": np.concatenate(labels),
        "dense": np.concatenate(dense),
        "timestamps": np.concatenate(stamps) if stamps else None,
        "sparse": {k: [list(map(int, row)) for row in v] for k, v in sparse.items()},
    }


@pytest.fixture
def write(tmp_path):
    """write(name, text) -> path of a file holding text."""

    def _write(name, text):
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return _write


@pytest.fixture
def collect():
    """collect(batches) -> dict of concatenated labels, dense, sparse id lists, timestamps."""
    return _collect
