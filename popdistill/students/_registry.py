"""Name-keyed model registries (timm style): a decorator registers each variant function.

A variant function takes keyword overrides of its architecture's config dataclass and returns a
built model. ``create_student(name, **kw)`` calls it and stamps the model with
``registry_kind`` and ``registry_name`` so that a checkpoint can rebuild it from plain values.
Two registries exist: students (segmenters) and EvalSeg-Nets (mask quality scorers).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

from torch import nn

from popdistill.errors import UserError

__all__ = [
    "Registry",
    "STUDENTS",
    "EVALSEG",
    "REGISTRIES",
    "register_student",
    "create_student",
    "list_students",
    "register_evalseg",
    "create_evalseg",
    "list_evalseg",
]

ModelFn = Callable[..., nn.Module]


class Registry:
    """Variant functions of one kind of model, keyed by the function's name."""

    def __init__(self, kind: str, what: str):
        self.kind = kind
        self.what = what
        self._fns: dict[str, ModelFn] = {}

    def register(self, fn: ModelFn) -> ModelFn:
        name = fn.__name__
        if name in self._fns:
            raise ValueError(f"{self.what} {name!r} registered twice")
        self._fns[name] = fn
        return fn

    def names(self, pattern: str = "*") -> list[str]:
        _load_builtin()
        return sorted(n for n in self._fns if fnmatch.fnmatchcase(n, pattern))

    def create(self, name: str, **kwargs: Any) -> nn.Module:
        _load_builtin()
        if name not in self._fns:
            raise UserError(f"unknown {self.what} {name!r}; valid names: {', '.join(self.names())}")
        model = self._fns[name](**kwargs)
        model.registry_kind = self.kind
        model.registry_name = name
        return model


STUDENTS = Registry("student", "student model")
EVALSEG = Registry("evalseg", "EvalSeg-Net model")
REGISTRIES: dict[str, Registry] = {r.kind: r for r in (STUDENTS, EVALSEG)}


def _load_builtin() -> None:
    # Importing the package registers every built-in architecture.
    import popdistill.students  # noqa: F401


def register_student(fn: ModelFn) -> ModelFn:
    """Decorator: register a student variant function under its own name."""
    return STUDENTS.register(fn)


def create_student(name: str, **kwargs: Any) -> nn.Module:
    """Build the student ``name``; keywords override fields of its config dataclass."""
    return STUDENTS.create(name, **kwargs)


def list_students(pattern: str = "*") -> list[str]:
    """Registered student names matching a shell-style ``pattern``, sorted."""
    return STUDENTS.names(pattern)


def register_evalseg(fn: ModelFn) -> ModelFn:
    """Decorator: register an EvalSeg-Net variant function under its own name."""
    return EVALSEG.register(fn)


def create_evalseg(name: str = "evalseg", **kwargs: Any) -> nn.Module:
    """Build the EvalSeg-Net variant ``name``; keywords override fields of its config."""
    return EVALSEG.create(name, **kwargs)


def list_evalseg(pattern: str = "*") -> list[str]:
    """Registered EvalSeg-Net names matching ``pattern``, sorted."""
    return EVALSEG.names(pattern)
