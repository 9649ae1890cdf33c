"""Package-level checks: layering rule and the docstring examples."""

import ast
import doctest
import pathlib

import pytest
import torch

import recembed.sparse
from recembed.sparse import jagged_tensor, keyed_jagged_tensor, keyed_tensor

PACKAGE_DIR = pathlib.Path(recembed.sparse.__file__).parent


def _recembed_imports(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return {name for name in names if name.split(".")[0] == "recembed"}


def test_sparse_imports_only_errors_from_recembed():
    allowed_prefixes = ("recembed.errors", "recembed.sparse")
    for path in PACKAGE_DIR.glob("*.py"):
        for name in _recembed_imports(path):
            assert name.startswith(allowed_prefixes), f"{path.name} imports {name}"


def test_public_names():
    assert recembed.sparse.__all__ == ["JaggedTensor", "KeyedJaggedTensor", "KeyedTensor"]


@pytest.mark.parametrize("module", [jagged_tensor, keyed_jagged_tensor, keyed_tensor])
def test_docstring_examples(module):
    result = doctest.testmod(module, extraglobs={"torch": torch}, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
