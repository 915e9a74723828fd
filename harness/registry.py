"""Typed registries with did-you-mean; the single place names resolve.

Each registry is filled by importing the modules of its package (``harness.sources``,
``harness.targets``, ``harness.strategies``, ``harness.metrics``): a new module registers
itself, no hand-kept list elsewhere. None of them imports torch at module level: naming things
(validate, plan, the first line of ``run``) costs well under a second. The networks (torch
``nn.Module`` classes) live in each package's ``nets`` module, which the walk leaves out and a
run imports when it builds a model; ``tests/unit/test_registry_imports.py`` holds both rules. Third-party packages can add entries through the
``harness.plugins`` entry-point group.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from harness.errors import UnknownNameError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    description: str


class Registry(Generic[T]):
    """A name → object map that refuses duplicates and suggests on a miss."""

    def __init__(self, kind: str, instantiate: bool = False):
        self.kind = kind
        self.instantiate = instantiate  # store an instance of a registered class
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, obj: T | None = None, *, description: str | None = None):
        """Register ``obj`` under ``name``; usable as a decorator when ``obj`` is omitted."""

        def add(o: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            doc = description or (getattr(o, "__doc__", None) or "").strip().splitlines()
            text = doc if isinstance(doc, str) else (doc[0] if doc else "")
            self._entries[name] = Entry(name, o() if self.instantiate and isinstance(o, type) else o, text)
            return o

        return add if obj is None else add(obj)

    def get(self, name: str) -> T:
        load_builtins()
        try:
            return self._entries[name].obj
        except KeyError:
            raise UnknownNameError(self.kind, name, self._entries) from None

    def __contains__(self, name: object) -> bool:
        load_builtins()
        return name in self._entries

    def names(self) -> list[str]:
        load_builtins()
        return sorted(self._entries)

    def entries(self) -> Iterator[Entry[T]]:
        load_builtins()
        for name in sorted(self._entries):
            yield self._entries[name]


SOURCES: Registry = Registry("source", instantiate=True)
TARGETS: Registry = Registry("target", instantiate=True)
STRATEGIES: Registry = Registry("strategy")
METRICS: Registry[Callable] = Registry("metric")
TASKS: Registry = Registry("task")

# network classes, imported when a run builds a model, never to name things
NOT_WALKED = frozenset({"nets"})
_PACKAGES = ("harness.metrics", "harness.tasks", "harness.sources", "harness.targets", "harness.strategies")
_loaded = False


def load_builtins() -> None:
    """Import every module of the registry packages once, then plugins."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for pkg_name in _PACKAGES:
        pkg = importlib.import_module(pkg_name)
        for info in pkgutil.iter_modules(getattr(pkg, "__path__", [])):
            if not info.name.startswith("_") and info.name not in NOT_WALKED:
                importlib.import_module(f"{pkg_name}.{info.name}")
    for ep in entry_points(group="harness.plugins"):
        ep.load()
