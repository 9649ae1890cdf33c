"""Reading config values: TOML tables merged into the config dataclasses, and command-line text.

The functions here work on any tree of config dataclasses (see :mod:`recembed.train.config`
for the schema): :func:`merge_values` copies a parsed TOML table into it, checking every key
and type; :func:`apply_overrides` sets ``("section.key", "text")`` pairs read with the type of
the field they replace; :func:`parse_override_args` turns ``--section.key value`` arguments
into such pairs. Unknown keys raise :class:`ConfigError` naming the keys that do exist.

Example:
    >>> from recembed.train.config import RunConfig
    >>> config = RunConfig()
    >>> apply_overrides(config, parse_override_args(["--eval.ks", "5,10", "--train.epochs=3"]))
    >>> config.eval.ks, config.train.epochs
    ([5, 10], 3)
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from recembed.errors import ConfigError

if TYPE_CHECKING:  # the schema imports this module; only type checkers need the reverse
    from recembed.train.config import RunConfig

__all__ = ["merge_values", "apply_overrides", "parse_override_args", "get_key", "toml_module"]


def _fields(obj: object) -> dict[str, Any]:
    """Field name -> resolved type annotation of a config dataclass."""
    hints = typing.get_type_hints(type(obj))
    return {f.name: hints[f.name] for f in dataclasses.fields(obj)}


def _unknown(key: str, section: str, valid: Iterable[str], where: str) -> ConfigError:
    valid = list(valid)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    label = f"[{section}]" if section else "the top level (sections)"
    return ConfigError(f"{where}: unknown key {key!r} in {label}{hint}; valid keys of {label}: {', '.join(valid)}")


def _convert(value: Any, kind: Any, key: str, where: str) -> Any:
    """``value`` as the field type ``kind``, or ConfigError naming the key and what is allowed."""
    origin = typing.get_origin(kind)
    if origin is list:
        (item_kind,) = typing.get_args(kind)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key} = {value!r} must be a list")
        return [_convert(v, item_kind, f"{key}[{i}]", where) for i, v in enumerate(value)]
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
        dict: isinstance(value, dict),
    }[kind]
    if not ok:
        raise ConfigError(f"{where}: {key} = {value!r} has type {type(value).__name__}; expected {kind.__name__}")
    return float(value) if kind is float else value


def merge_values(target: object, values: Mapping[str, Any], prefix: str, where: str) -> None:
    """Copy the TOML table ``values`` into the config dataclass ``target`` (recursing into
    sections); ``prefix`` is ``target``'s dotted key and ``where`` names the source in errors."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: [{prefix}] must be a table of keys, got {values!r}")
    fields = _fields(target)
    for key, value in values.items():
        path = f"{prefix}.{key}" if prefix else key
        if key not in fields:
            raise _unknown(key, prefix, fields, where)
        current = getattr(target, key)
        if dataclasses.is_dataclass(current):
            merge_values(current, value, path, where)
        else:
            setattr(target, key, _convert(value, fields[key], path, where))


def _parse_text(text: str, kind: Any, key: str) -> Any:
    """A command-line value read with the field's type."""
    where = "command line"
    if typing.get_origin(kind) is list:
        stripped = text.strip()
        if stripped.startswith("["):
            return _convert(_toml_value(stripped, key), kind, key, where)
        (item_kind,) = typing.get_args(kind)
        parts = [p.strip() for p in stripped.split(",") if p.strip()]
        return [_parse_text(p, item_kind, f"{key}[{i}]") for i, p in enumerate(parts)]
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        raise ConfigError(f"{where}: --{key} {text!r}; expected true or false")
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise ConfigError(f"{where}: --{key} {text!r}; expected {kind.__name__}") from None
    if kind is dict:
        return _convert(_toml_value(text, key), dict, key, where)
    return text


def _toml_value(text: str, key: str) -> Any:
    toml = toml_module()
    try:
        return toml.loads(f"value = {text}")["value"]
    except toml.TOMLDecodeError as exc:
        raise ConfigError(f"command line: --{key} {text!r} is not a valid TOML value ({exc})") from None


def toml_module():
    """The TOML reader: ``tomllib`` (Python >= 3.11) or its ``tomli`` backport."""
    try:
        import tomllib  # Python >= 3.11
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10 uses the tomli backport
        import tomli as tomllib
    return tomllib


def get_key(config: RunConfig, key: str) -> Any:
    """The value at a dotted key such as ``"train.epochs"``."""
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def apply_overrides(config: RunConfig, overrides: Iterable[tuple[str, str]]) -> None:
    """Set ``("section.key", "text")`` pairs, each read with the key's type, then re-check.

    Raises:
        ConfigError: an unknown section or key (the message lists the valid ones), a key
            that names a whole section, or a value that does not parse.
    """
    for dotted, text in overrides:
        parts = dotted.split(".")
        target: Any = config
        for depth, part in enumerate(parts):
            fields = _fields(target)
            section = ".".join(parts[:depth])
            if part not in fields:
                raise _unknown(part, section, fields, "command line")
            current = getattr(target, part)
            if depth == len(parts) - 1:
                if dataclasses.is_dataclass(current):
                    example = next(iter(_fields(current)))
                    raise ConfigError(f"command line: --{dotted} names a section; set one of its keys, "
                                      f"e.g. --{dotted}.{example}")
                setattr(target, part, _parse_text(text, fields[part], dotted))
            elif not dataclasses.is_dataclass(current):
                raise ConfigError(f"command line: --{dotted}: {'.'.join(parts[:depth + 1])} is a value, not a section")
            target = current
    config.resolve()


def parse_override_args(args: list[str]) -> list[tuple[str, str]]:
    """``["--train.epochs", "3", "--eval.ks=5,10"]`` -> ``[("train.epochs", "3"), ("eval.ks", "5,10")]``."""
    pairs, i = [], 0
    while i < len(args):
        token = args[i]
        if not token.startswith("--") or "." not in token.split("=", 1)[0]:
            raise ConfigError(f"command line: unexpected argument {token!r}; config overrides look like "
                              "--section.key value (e.g. --train.epochs 3)")
        name = token[2:]
        if "=" in name:
            name, text = name.split("=", 1)
            i += 1
        elif i + 1 < len(args):
            text = args[i + 1]
            i += 2
        else:
            raise ConfigError(f"command line: {token} needs a value")
        pairs.append((name, text))
    return pairs
