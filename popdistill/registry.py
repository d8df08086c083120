"""One registry class for every kind of plug-in (timm style), importable without torch.

Each kind (students, EvalSeg-Nets, data readers, baselines, text encoders, aggregations,
distances, experts, losses, scorers, label rules, lr schedules, ensembles) is one
:class:`Registry`, and its module exposes the same three verbs over it:

    register_<kind>      decorator: ``@register_x`` (the function's or class's own name) or
                         ``@register_x("name")``
    create_<kind>(name, **kwargs)
                         the entry called with ``kwargs`` (or, for a ``bind`` registry of plain
                         functions, the function with ``kwargs`` bound)
    list_<kind>(pattern="*")
                         the names matching a shell-style pattern, sorted

An unknown name fails the same way everywhere: ``unknown <what> 'x'; valid names: a, b``.
``builtin``, the module whose import registers the built-in entries, is imported on first use,
so the registry is complete whoever asks first.
"""

from __future__ import annotations

import fnmatch
import importlib
from functools import partial
from typing import Any, Generic, TypeVar

from popdistill.errors import UserError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one kind of plug-in, keyed by name.

    ``kind``: a short id (``student``); ``what``: how errors call an entry (``student
    model``); ``builtin``: the module that registers the built-in entries; ``bind``: create
    returns the entry with keywords bound (plain functions: losses, distances) instead of
    calling it (factories: models, readers); ``names``: where the names must also be known
    without importing the implementations (:mod:`popdistill.choices`), names the built-in
    entries must register (checked when they are loaded).
    """

    def __init__(self, kind: str, what: str, builtin: str | None = None, bind: bool = False,
                 names: tuple[str, ...] | list[str] | None = None):
        self.kind = kind
        self.what = what
        self.builtin = builtin
        self.bind = bind
        self.expected = tuple(names) if names is not None else None
        self._entries: dict[str, T] = {}
        self._loading = False

    # -- the three verbs ---------------------------------------------------------------------
    def register(self, name_or_entry: str | T | None = None) -> Any:
        """``@reg.register`` (the entry's ``__name__``) or ``@reg.register("name")``."""
        if name_or_entry is None or isinstance(name_or_entry, str):
            def deco(entry: T) -> T:
                return self.add(name_or_entry or entry.__name__, entry)

            return deco
        return self.add(name_or_entry.__name__, name_or_entry)

    def create(self, name: str, **kwargs: Any) -> Any:
        entry = self.get(name)
        if self.bind:
            return partial(entry, **kwargs) if kwargs else entry
        return entry(**kwargs)

    def names(self, pattern: str = "*") -> list[str]:
        self._load()
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    # -- helpers -----------------------------------------------------------------------------
    def add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} registered twice")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        """The registered entry itself; the same error as :meth:`create` for a wrong name."""
        self._load()
        if name not in self._entries:
            raise UserError(f"unknown {self.what} {name!r}; valid names: {', '.join(self.names())}")
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def _load(self) -> None:
        if self.builtin is None or self._loading:
            return
        self._loading = True  # the builtin module registers through us while importing
        try:
            importlib.import_module(self.builtin)
        except BaseException:
            self._loading = False
            raise
        missing = sorted(set(self.expected or ()) - set(self._entries))
        if missing:
            raise RuntimeError(f"{self.what}: popdistill.choices lists {missing}, which "
                               f"{self.builtin} does not register")
        self.builtin = None

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"

