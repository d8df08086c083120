"""Typed configuration: dataclasses loaded from YAML, validated once, errors name the field.

Every config section is a dataclass whose defaults are the papers' values. ``load(cls, data)``
turns a plain mapping into that dataclass, recursively, and fails at once on an unknown field,
a wrong type or a value outside ``choices`` with the dotted field name and the valid choices.
Use ``field(metadata={"choices": [...]})`` to restrict a string.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from popdistill.errors import UserError

__all__ = ["load", "load_yaml", "parse_yaml_file", "to_dict", "choice", "apply_overrides"]

T = TypeVar("T")


def choice(default: Any, choices: list[Any], **kw) -> Any:
    """A dataclass field restricted to ``choices``."""
    return dataclasses.field(default=default, metadata={"choices": list(choices)}, **kw)


def to_dict(cfg: Any) -> dict:
    """A config as plain values (for Ray, MLflow params and checkpoints)."""
    return dataclasses.asdict(cfg)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """``data`` with each ``dotted.key=VALUE`` of ``overrides`` set (VALUE is read as YAML:
    ``8``, ``bf16``, ``[unet_tiny]``, ``{width: 16}``, ``null``); missing sections are created.
    Fields are checked afterwards, with the rest of the config."""
    data = dict(data)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
            raise UserError(f"--set {item!r}: expected dotted.key=VALUE, e.g. training.epochs=8")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UserError(f"--set {key}: not a YAML value: {text!r} ({exc})") from exc
        parts = key.strip().split(".")
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = {}
            elif not isinstance(child, dict):
                raise UserError(f"--set {key}: {'.'.join(parts[: i + 1])} is not a section")
            node[part] = child = dict(child)
            node = child
        node[parts[-1]] = value
    return data


def load_yaml(cls: type[T], path: str | Path) -> T:
    return parse_yaml_file(path, lambda data: load(cls, data))


def parse_yaml_file(path: str | Path, parse):
    """Read a YAML file and hand its mapping to ``parse``; every error names the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return parse(data)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from exc


def load(cls: type[T], data: Any, where: str = "") -> T:
    if dataclasses.is_dataclass(data) and isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise UserError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise UserError(
            f"unknown field {_join(where, unknown[0])!r}; valid fields: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in data.items():
        f = fields[name]
        kwargs[name] = _convert(hints[name], value, _join(where, name))
        choices = f.metadata.get("choices")
        if choices is not None and kwargs[name] not in choices:
            raise UserError(
                f"{_join(where, name)}: {kwargs[name]!r} is not one of {', '.join(map(str, choices))}"
            )
    try:
        obj = cls(**kwargs)
    except TypeError as exc:
        raise UserError(f"{where or 'config'}: {exc}") from exc
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except UserError as exc:
            raise UserError(f"{where or 'config'}: {exc}") from exc
    return obj


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except UserError as exc:
                errors.append(str(exc))
        raise UserError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if dataclasses.is_dataclass(tp):
        return load(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise UserError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        out = [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return out if origin is list else tuple(out)
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {k: _convert(vt, v, f"{where}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UserError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise UserError(f"{where}: expected a string, got {value!r}")
        return value
    return value
