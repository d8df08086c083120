"""The config reference (docs/config.md), generated from the config dataclasses themselves.

Every section of a run config is a dataclass; this walks them (nested ones too) and writes one
table per section: each field's dotted name, type, default, allowed values and meaning. The
meaning is the comment written beside the field (or on the lines right above it) in the
dataclass's source, so the reference and the code cannot drift: ``popdistill config
--reference`` prints it, and a test fails when docs/config.md differs from it.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import textwrap
import typing
from typing import Any

__all__ = ["field_comments", "reference_markdown"]

_FIELD = re.compile(r"^\s{4}(\w+)\s*:\s*[^#]*?(?:#\s*(.*))?$")


def field_comments(cls: type) -> dict[str, str]:
    """Field name -> its comment in ``cls``'s source (trailing, or the ``#`` lines above)."""
    lines = textwrap.dedent(inspect.getsource(cls)).splitlines()
    out: dict[str, str] = {}
    above: list[str] = []
    names = {f.name for f in dataclasses.fields(cls)}
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("#").strip())
            continue
        m = _FIELD.match(line)
        if m and m.group(1) in names and m.group(1) not in out:
            parts = [*above, m.group(2) or ""]
            out[m.group(1)] = " ".join(p for p in parts if p)
        elif stripped and not stripped.startswith(("@", '"""')) and line.startswith("        "):
            # a continuation line of a field's default: keep the comments gathered so far
            continue
        above = []
    return out


def _type_name(tp: Any) -> str:
    text = str(tp).replace("typing.", "")
    text = re.sub(r"<class '(?:[\w.]+\.)?(\w+)'>", r"\1", text)
    return re.sub(r"\b(?:[a-z_]+\.)+([A-Z]\w*)", r"\1", text).replace("NoneType", "None")


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _cell(value: Any) -> str:
    if dataclasses.is_dataclass(value):
        return "(section)"
    text = "null" if value is None else str(value).lower() if isinstance(value, bool) else repr(value) \
        if isinstance(value, str) else str(list(value) if isinstance(value, tuple) else value)
    return f"`{text}`".replace("|", "\\|")


def _rows(cls: type, prefix: str, job_free: bool) -> list[tuple[str, str, str, str, str]]:
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    rows = []
    nested = []
    for f in dataclasses.fields(cls):
        if job_free and f.metadata.get("job"):
            continue
        tp = hints[f.name]
        name = f"{prefix}.{f.name}" if prefix else f.name
        choices = f.metadata.get("choices")
        allowed = ", ".join(f"`{c}`" for c in choices) if choices else ""
        if dataclasses.is_dataclass(tp):
            nested.append((tp, name))
            rows.append((f"`{name}`", _type_name(tp), "(section below)", allowed,
                         comments.get(f.name, "")))
            continue
        rows.append((f"`{name}`", _type_name(tp).replace("|", "or"), _cell(_default(f)), allowed,
                     comments.get(f.name, "").replace("|", "\\|")))
    for tp, name in nested:
        rows += _rows(tp, name, job_free)
    return rows


def reference_markdown() -> str:
    """docs/config.md: every section of a run config, field by field."""
    from popdistill.pipeline.config import RunConfig

    hints = typing.get_type_hints(RunConfig)
    comments = field_comments(RunConfig)
    out = [
        "# Config reference",
        "",
        "Every field of a `popdistill run` config, generated from the config dataclasses by",
        "`popdistill config --reference > docs/config.md` (a test fails when this file is out of",
        "date). A field left out takes its default. Fields the pipeline fills in per step (stores,",
        "output folders, the resources of `resources`) are not listed: a section refuses them.",
        "`popdistill run CONFIG --set section.field=VALUE` changes one field from the command line.",
        "",
        "## Top level",
        "",
        "| field | type | default | allowed | meaning |",
        "|---|---|---|---|---|",
    ]
    sections = []
    for f in dataclasses.fields(RunConfig):
        tp = hints[f.name]
        inner = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
        if dataclasses.is_dataclass(inner[0]):
            sections.append((f.name, inner[0], f))
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            default = ("required" if required else "`null` (section below)" if f.default is None
                       else "(section below)")
            out.append(f"| `{f.name}` | {inner[0].__name__} | {default} | | "
                       f"{comments.get(f.name, '')} |")
        else:
            out.append(f"| `{f.name}` | {_type_name(tp).replace('|', 'or')} | {_cell(_default(f))} | | "
                       f"{comments.get(f.name, '')} |")
    for name, cls, _ in sections:
        doc = inspect.getdoc(cls) or ""
        first = doc.split("\n\n")[0].replace("\n", " ")
        out += ["", f"## `{name}` ({cls.__name__})", "", first, "",
                "| field | type | default | allowed | meaning |", "|---|---|---|---|---|"]
        out += [f"| {' | '.join(row)} |" for row in _rows(cls, name, job_free=True)]
    return "\n".join(out) + "\n"
