"""A ModuleDict keyed by table name."""

from __future__ import annotations

from typing import Mapping

from torch import nn

from recembed.errors import ConfigError

__all__ = ["TableDict"]


class TableDict(nn.ModuleDict):
    """``nn.ModuleDict`` keyed by table name that accepts any name, ``"items"`` and ``"keys"`` included.

    ``nn.ModuleDict`` refuses names that shadow its methods; tables are reached with
    ``collection.embedding_bags["items"]``, never as attributes, so the clash does not matter.
    """

    def __init__(self, modules: Mapping[str, nn.Module]) -> None:
        super().__init__()
        for name, module in modules.items():
            if "." in name:
                raise ConfigError(f"table name '{name}' must not contain '.' (it separates state_dict keys)")
            self._modules[name] = module
