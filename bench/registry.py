"""Lazy registries for models (pretraining backends) and tasks, with "did you mean" errors.

Built-ins register themselves with a decorator when their package (`models`, `tasks`) is
imported; third parties plug in through the entry-point groups `bench.models` and
`bench.tasks`, loaded only when first asked for.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable, Generic, TypeVar

from bench.errors import UnknownNameError

T = TypeVar("T")


@dataclass
class Entry(Generic[T]):
    name: str
    obj: T | None
    description: str
    source: str  # "builtin", "entry point <module:attr>", or "bench.toml"
    loader: Callable[[], T] | None = None

    def load(self) -> T:
        if self.obj is None:
            assert self.loader is not None
            self.obj = self.loader()
        return self.obj


class Registry(Generic[T]):
    """Name -> object. `register` is a decorator; `get` raises with the known names."""

    def __init__(self, kind: str, group: str, builtin_package: str) -> None:
        self.kind = kind
        self.group = group
        self.builtin_package = builtin_package
        self._entries: dict[str, Entry[T]] = {}
        self._discovered = False

    def register(self, name: str, *, description: str = "", source: str = "builtin") -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self.add(name, obj, description=description or _first_line(obj), source=source)
            return obj

        return deco

    def add(self, name: str, obj: T, *, description: str = "", source: str = "builtin") -> None:
        old = self._entries.get(name)
        if old is not None and old.obj is not None and old.obj is not obj and old.source == source == "builtin":
            raise ValueError(f"{self.kind} {name!r} registered twice ({old.obj!r} and {obj!r})")
        self._entries[name] = Entry(name, obj, description, source)

    def remove(self, name: str) -> None:
        self._entries.pop(name, None)

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        pkg = importlib.import_module(self.builtin_package)
        for mod in pkgutil.iter_modules(pkg.__path__):
            if not mod.name.startswith("_"):
                importlib.import_module(f"{self.builtin_package}.{mod.name}")
        for ep in entry_points(group=self.group):
            if ep.name not in self._entries:
                self._entries[ep.name] = Entry(
                    ep.name, None, f"(plug-in) {ep.value}", f"entry point {ep.value}", loader=ep.load
                )

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        self._discover()
        return [self._entries[n] for n in sorted(self._entries)]

    def __contains__(self, name: str) -> bool:
        self._discover()
        return name in self._entries

    def get(self, name: str, *, where: str = "") -> T:
        self._discover()
        if name not in self._entries:
            raise UnknownNameError(unknown_name_message(self.kind, name, self.names(), where=where))
        entry = self._entries[name]
        obj = entry.load()
        if entry.description.startswith("(plug-in)"):
            entry.description = _first_line(obj) or entry.description
        return obj


def unknown_name_message(kind: str, name: str, known: list[str], *, where: str = "") -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    loc = f" (in {where})" if where else ""
    return f"unknown {kind} {name!r}{loc}.{hint} Registered {kind}s: {', '.join(known)}."


def _first_line(obj: Any) -> str:
    doc = getattr(obj, "description", None) or (getattr(obj, "__doc__", None) or "")
    return doc.strip().splitlines()[0] if doc.strip() else ""


MODELS: Registry[Any] = Registry("model", "bench.models", "models")
TASKS: Registry[Any] = Registry("task", "bench.tasks", "tasks")
register_model = MODELS.register
register_task = TASKS.register
