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

__all__ = ["load", "load_yaml", "parse_yaml_file", "to_dict", "choice", "job", "section",
           "job_fields", "settings", "fill", "apply_overrides", "DuplicateKeyError",
           "safe_load_unique"]

T = TypeVar("T")


def choice(default: Any, choices: list[Any], **kw) -> Any:
    """A dataclass field restricted to ``choices``."""
    return dataclasses.field(default=default, metadata={"choices": list(choices)}, **kw)


def job(default: Any = dataclasses.MISSING, *, required: bool = False,
        default_factory: Any = dataclasses.MISSING) -> Any:
    """A field of one run of a step (its input store, its output folder, the resources it is
    given) rather than a setting: the command line or the pipeline fills it in, and a run
    config's section (:func:`section`) may not set it. ``required``: loading the whole config
    (not as a section) fails when it is empty."""
    meta = {"job": True, "required": required}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def section(cls: type) -> Any:
    """A run config's field holding a library config ``cls`` as settings only: its job fields
    (:func:`job`) are refused there and filled per step by the pipeline (:func:`fill`)."""
    return dataclasses.field(default_factory=cls, metadata={"section": True})


def job_fields(cls: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.metadata.get("job")}


def settings(cfg: Any) -> dict:
    """A library config as plain values without its job fields (what a run records)."""
    skip = job_fields(cfg)
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in skip}


def fill(cfg: T, where: str = "", **values: Any) -> T:
    """``cfg`` (loaded as a section) with its job fields set: a complete config, checked."""
    unknown = sorted(set(values) - job_fields(cfg))
    if unknown:
        raise TypeError(f"{type(cfg).__name__}.{unknown[0]} is not a job field")
    out = dataclasses.replace(cfg, **values)
    _check(out, where, section=False)
    return out


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
        data = safe_load_unique(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {exc}") from exc
    except DuplicateKeyError as exc:
        raise UserError(f"{path}: {exc}") from exc
    try:
        return parse(data)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from exc


class DuplicateKeyError(UserError):
    """A YAML mapping with the same key twice (YAML itself would keep the last one)."""


def safe_load_unique(text: str) -> Any:
    """``yaml.safe_load``, refusing a mapping that repeats a key: the error names the key's
    dotted path and both lines (a config with two ``training:`` sections must not run)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_unique(node, "")
        return loader.construct_document(node)  # the same node: the text is parsed once
    finally:
        loader.dispose()


def _check_unique(node: yaml.Node, where: str) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            path = _join(where, str(key))
            line = key_node.start_mark.line + 1
            if key in seen:
                raise DuplicateKeyError(f"duplicate key {path!r} (lines {seen[key]} and {line})")
            seen[key] = line
            _check_unique(value_node, path)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_unique(item, f"{where}[{i}]")


def load(cls: type[T], data: Any, where: str = "", section: bool = False) -> T:
    """``cls`` from a mapping; ``section``: as a run config's section (job fields refused,
    required ones not checked)."""
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
    if section:  # a job field at its default is what a section's to_dict() holds: no change
        owned = sorted(k for k in set(data) & job_fields(cls) if data[k] != _default(fields[k]))
        if owned:
            raise UserError(f"{_join(where, owned[0])}: set by the pipeline, not in the config")
    kwargs = {}
    for name, value in data.items():
        f = fields[name]
        if f.metadata.get("section"):
            kwargs[name] = load(hints[name], value, _join(where, name), section=True)
        else:
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
    _check(obj, where, section)
    return obj


def _check(obj: Any, where: str, section: bool) -> None:
    """Required job fields (unless a section), then the config's own ``validate()``."""
    if not section:
        for f in dataclasses.fields(obj):
            if f.metadata.get("required") and getattr(obj, f.name) in ("", None, [], {}):
                raise UserError(f"{_join(where, f.name)}: required")
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except UserError as exc:
            raise UserError(f"{where or 'config'}: {exc}") from exc


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


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
