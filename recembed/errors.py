"""The recembed exception hierarchy.

Every error a user can cause by bad input is one of these. Each also subclasses the
builtin exception a Python user would expect (``ValueError``, ``TypeError``,
``IndexError``, ``KeyError``, ``ImportError``), so ``except ValueError`` keeps working.
Messages name the thing that was wrong, the value, and what is allowed.
"""

from __future__ import annotations

__all__ = [
    "RecembedError",
    "ConfigError",
    "JaggedStructureError",
    "IdOutOfRangeError",
    "InvalidIdError",
    "InvalidDtypeError",
    "UnknownKeyError",
    "ShapeMismatchError",
    "DataFormatError",
    "CheckpointError",
    "MissingDependencyError",
    "DistributedError",
]


class RecembedError(Exception):
    """Base class of every error recembed raises on purpose."""


class ConfigError(RecembedError, ValueError):
    """A configuration value (table config, model config, TOML file) is invalid."""


class JaggedStructureError(RecembedError, ValueError):
    """Lengths, offsets, weights or stride of a jagged tensor do not fit together."""


class IdOutOfRangeError(RecembedError, IndexError):
    """An id falls outside the rows of the table that serves its feature."""


class InvalidIdError(RecembedError, ValueError):
    """An id is negative, or otherwise not a valid row id."""


class InvalidDtypeError(RecembedError, TypeError):
    """A tensor has a dtype that is not allowed where it was passed (e.g. float ids)."""


class UnknownKeyError(RecembedError, KeyError):
    """A feature, table, key or config entry name that does not exist.

    ``str()`` gives the plain message (``KeyError`` would quote it).
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ShapeMismatchError(RecembedError, ValueError):
    """Tensor shapes or dimensions do not agree (e.g. a query of the wrong dimension)."""


class DataFormatError(RecembedError, ValueError):
    """A data file is malformed; the message names the file, the line and the reason."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line


class CheckpointError(RecembedError, ValueError):
    """A checkpoint is missing, corrupted, or does not match the model it is loaded into."""


class MissingDependencyError(RecembedError, ImportError):
    """An optional dependency is needed; the message says which extra installs it."""

    def __init__(self, package: str, extra: str, purpose: str):
        super().__init__(
            f"{purpose} needs the optional package '{package}': "
            f"pip install 'recembed[{extra}]' (or pip install {package})"
        )
        self.package = package
        self.extra = extra


class DistributedError(RecembedError, RuntimeError):
    """A distributed run failed: a peer rank failed, timed out, or the plan is inconsistent."""


def require(package: str, extra: str, purpose: str):
    """Import an optional dependency, or raise :class:`MissingDependencyError`.

    Example:
        >>> np = require("numpy", "core", "this example")
    """
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(package, extra, purpose) from exc
