"""Name-keyed model registries (timm style): a decorator registers each variant function.

A variant function takes keyword overrides of its architecture's config dataclass and returns a
built model. ``create_student(name, **kw)`` calls it and stamps the model with
``registry_kind`` and ``registry_name`` so that a checkpoint can rebuild it from plain values.
Two registries exist: students (segmenters) and EvalSeg-Nets (mask quality scorers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from popdistill.registry import Registry

__all__ = [
    "ModelRegistry",
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


class ModelRegistry(Registry[ModelFn]):
    """A :class:`~popdistill.registry.Registry` of model variant functions whose models are
    stamped with the registry's kind and the variant's name (what a checkpoint rebuilds)."""

    def create(self, name: str, **kwargs: Any) -> nn.Module:
        model = super().create(name, **kwargs)
        model.registry_kind = self.kind
        model.registry_name = name
        return model


# Importing the package registers every built-in architecture.
STUDENTS = ModelRegistry("student", "student model", builtin="popdistill.students")
EVALSEG = ModelRegistry("evalseg", "EvalSeg-Net model", builtin="popdistill.students")
REGISTRIES: dict[str, ModelRegistry] = {r.kind: r for r in (STUDENTS, EVALSEG)}


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
