"""Lazy registries for models (pretraining backends) and tasks, with "did you mean" errors.

Built-ins register themselves with a decorator when their package (`models`, `tasks`) is
imported; third parties plug in through the entry-point groups `bench.models` and
`bench.tasks`, loaded only when first asked for.

A plug-in behaves like a built-in, with three differences that keep results honest:
- its code is part of its runs' identity (`provenance`, `code`): the built-ins' code is in
  `bench.environment.code_version()`, a plug-in's is hashed here, with its distribution and
  version, so editing or upgrading a plug-in makes new runs instead of reusing old ones;
- a name defined twice (a plug-in named like a built-in, or like another plug-in) is an error
  naming both sources when that name is used, never a silent choice of one;
- a plug-in that fails to import is a one-line `PluginError` naming its entry point, its
  distribution and the import error (the exception is its `__cause__`, for `--debug`).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import pkgutil
import sys
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Callable, Generic, TypeVar

from bench.errors import BenchError, UnknownNameError, one_line

T = TypeVar("T")


class PluginError(BenchError):
    """A registered name that cannot be used: a plug-in that fails to import, or a name defined twice."""


@dataclass
class Entry(Generic[T]):
    name: str
    obj: T | None
    description: str
    source: str  # "builtin", "bench.toml", "plug-in <distribution> <version>", ...
    loader: Callable[[], T] | None = None
    ep: EntryPoint | None = None  # set for a plug-in
    problem: str | None = None  # why the name cannot be used (one line): a clash, a failed import
    error: BaseException | None = None  # the exception behind `problem`, with its traceback
    provenance: dict[str, Any] | None = None  # a plug-in's, once computed

    @property
    def is_plugin(self) -> bool:
        return self.ep is not None

    def load(self) -> T:
        if self.problem is not None:
            raise PluginError(self.problem) from self.error
        if self.obj is None:
            assert self.loader is not None
            try:
                obj = self.loader()
            except Exception as exc:  # noqa: BLE001 - any failure to import a plug-in is the plug-in's
                self.problem = (f"{_plugin_origin(self)} failed to load: {one_line(exc)}. Fix or uninstall "
                                f"{_dist_name(self.ep) or 'it'} (run with --debug for the traceback).")
                self.error = exc
                raise PluginError(self.problem) from exc
            self.obj = obj
            self.description = _first_line(obj) or self.description
        return self.obj


class Registry(Generic[T]):
    """Name -> object. `register` is a decorator; `get` raises with the known names."""

    def __init__(self, kind: str, group: str, builtin_package: str) -> None:
        self.kind = kind
        self.group = group
        self.builtin_package = builtin_package
        self._entries: dict[str, Entry[T]] = {}  # registered in this process (built-ins, bench.toml, tests)
        self._plugins: dict[str, list[Entry[T]]] = {}  # entry points of `group`, by name
        self._discovered = False
        self._loading: str | None = None  # the plug-in being imported now

    def register(self, name: str, *, description: str = "", source: str = "builtin") -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self.add(name, obj, description=description or _first_line(obj), source=source)
            return obj

        return deco

    def add(self, name: str, obj: T, *, description: str = "", source: str = "builtin") -> None:
        if name == self._loading:  # a plug-in registering itself on import: its entry point already does
            return
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
            self._plugins.setdefault(ep.name, []).append(
                Entry(ep.name, None, f"(plug-in) {ep.value}", _plugin_source(ep), loader=self._loader(ep), ep=ep))

    def _loader(self, ep: EntryPoint) -> Callable[[], T]:
        def load() -> T:
            self._loading = ep.name
            try:
                return ep.load()
            finally:
                self._loading = None

        return load

    def _lookup(self, name: str) -> Entry[T] | None:
        """The one entry of `name`; a name defined more than once gets an entry whose `problem` says so."""
        registered, plugins = self._entries.get(name), self._plugins.get(name, [])
        defined = ([registered] if registered is not None else []) + plugins
        if len(defined) <= 1:
            return defined[0] if defined else None
        origins = [self._origin(e) for e in defined]
        times = "twice" if len(defined) == 2 else f"{len(defined)} times"
        both = f"{', '.join(origins[:-1])} and {origins[-1]}"
        problem = f"{self.kind} {name!r} is defined {times}: {both}; rename one (or uninstall the plug-in)."
        sources = " + ".join(e.source for e in defined)
        return Entry(name, None, f"(cannot be used: defined {times})", sources, problem=problem)

    def _origin(self, entry: Entry[T]) -> str:
        if entry.is_plugin:
            return _plugin_origin(entry, with_kind=False)
        if entry.source == "bench.toml":
            return f"bench.toml ([{self.kind}s.{entry.name}])"
        return f"{entry.source} ({_qualified(entry.obj)})"

    def names(self) -> list[str]:
        self._discover()
        return sorted(set(self._entries) | set(self._plugins))

    def entries(self) -> list[Entry[T]]:
        """Every name's entry, plug-ins not loaded (`load_plugins` loads them); a clash is an entry with a `problem`."""
        return [self._lookup(n) for n in self.names()]

    def load_plugins(self) -> list[Entry[T]]:
        """`entries()`, with every usable plug-in imported (its own description): a plug-in that fails to
        import gets its `problem` instead of raising, so one broken plug-in never hides the others."""
        out = self.entries()
        for entry in out:
            if entry.is_plugin and entry.problem is None:
                try:
                    entry.load()
                except PluginError:
                    pass
        return out

    def __contains__(self, name: str) -> bool:
        self._discover()
        return name in self._entries or name in self._plugins

    def get(self, name: str, *, where: str = "") -> T:
        self._discover()
        entry = self._lookup(name)
        if entry is None:
            raise UnknownNameError(unknown_name_message(self.kind, name, self.names(), where=where))
        return entry.load()

    def source(self, name: str) -> str:
        """Where `name` comes from, for messages: "builtin", "plug-in mypkg 0.1.0", "bench.toml", ..."""
        self._discover()
        entry = self._lookup(name)
        return entry.source if entry is not None else "unknown"

    def provenance(self, name: str) -> dict[str, Any] | None:
        """None for a name registered in this process (built-ins: `code_version()` covers them); for a
        plug-in, its entry point, distribution, version and `source_sha256`, a hash of its source:
        the package that holds the entry point's module (every .py file under it), or that module
        alone when it is top-level, plus the module defining the object's class when it lies
        elsewhere. Loads the plug-in (a `PluginError` if it cannot be)."""
        self._discover()
        entry = self._lookup(name)
        if entry is None:
            return None
        obj = entry.load()  # a clash or a broken plug-in: PluginError
        if entry.source == "builtin":
            return None
        if not entry.is_plugin:  # registered here, possibly under another name for a plug-in's object
            # (a bench.toml variant of a plug-in model): then it is that plug-in's code
            entry = next((p for ps in self._plugins.values() for p in ps if p.obj is not None and p.obj is obj), None)
            if entry is None:
                return None
        if entry.provenance is None:
            ep = entry.ep
            defining = obj.__module__ if isinstance(obj, type) else type(obj).__module__
            entry.provenance = {
                "entry_point": f"{self.group}:{ep.name} = {ep.value}",
                "distribution": _dist_name(ep),
                "version": _dist_version(ep),
                "source_sha256": _source_sha256(ep.module, defining),
            }
        return dict(entry.provenance)

    def code(self, name: str) -> str:
        """A compact plug-in fingerprint for run specs ("" for built-ins): entry point target,
        distribution and version, and the source hash."""
        prov = self.provenance(name)
        if prov is None:
            return ""
        target = prov["entry_point"].partition(" = ")[2]
        dist = f" ({prov['distribution']} {prov['version']})" if prov["distribution"] else ""
        return f"{target}{dist} sha256:{prov['source_sha256'][:16]}"


def unknown_name_message(kind: str, name: str, known: list[str], *, where: str = "") -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    loc = f" (in {where})" if where else ""
    return f"unknown {kind} {name!r}{loc}.{hint} Registered {kind}s: {', '.join(known)}."


def _first_line(obj: Any) -> str:
    """A registered object's own description: its `description`, a task's `spec.description`, or
    the first line of its docstring."""
    spec = getattr(obj, "spec", None)
    for text in (getattr(obj, "description", None), getattr(spec, "description", None),
                 getattr(obj, "__doc__", None)):
        if isinstance(text, str) and text.strip():
            return text.strip().splitlines()[0]
    return ""


def _qualified(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}:{cls.__qualname__}" + ("" if isinstance(obj, type) else " instance")


def _dist_name(ep: EntryPoint | None) -> str | None:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else None


def _dist_version(ep: EntryPoint | None) -> str | None:
    dist = getattr(ep, "dist", None)
    return dist.version if dist is not None else None


def _plugin_source(ep: EntryPoint) -> str:
    name = _dist_name(ep)
    return f"plug-in {name} {_dist_version(ep)}" if name else "plug-in (no distribution)"


def _plugin_origin(entry: Entry[Any], *, with_kind: bool = True) -> str:
    ep = entry.ep
    dist = f" from distribution {_dist_name(ep)} {_dist_version(ep)}" if _dist_name(ep) else ""
    kind = f"{ep.group.rpartition('.')[2].rstrip('s')} " if with_kind else ""
    return f"{kind}plug-in entry point {ep.group} '{ep.name} = {ep.value}'{dist}"


def _source_sha256(module: str, defining: str) -> str:
    """sha256 over the source files of `module`'s outermost regular package (or of the module
    itself when it is top-level), and of the module `defining` the object's class when that lies
    in another top-level package. Paths enter relative to their package, so the hash is the same
    wherever the plug-in is installed."""
    files: dict[str, Path] = {}
    files.update(_package_files(module))
    if defining.partition(".")[0] != module.partition(".")[0]:
        files.update(_module_file(defining))
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(rel.encode() + b"\0" + files[rel].read_bytes() + b"\0")
    return digest.hexdigest()


def _package_files(module: str) -> dict[str, Path]:
    parts = module.split(".")
    for i in range(1, len(parts) + 1):  # the outermost regular package (a namespace package has no __init__)
        pkg = sys.modules.get(".".join(parts[:i]))
        init = getattr(pkg, "__file__", None)
        if init and Path(init).name == "__init__.py":
            root = Path(init).parent
            prefix = "/".join(parts[:i])
            return {f"{prefix}/{p.relative_to(root).as_posix()}": p for p in root.rglob("*.py")
                    if "__pycache__" not in p.parts}
    return _module_file(module)


def _module_file(module: str) -> dict[str, Path]:
    mod = sys.modules.get(module)
    path = getattr(mod, "__file__", None)
    if not path or not Path(path).is_file():
        return {}  # a built-in or frozen module: nothing to hash
    return {f"{module.replace('.', '/')}{Path(path).suffix}": Path(path)}


MODELS: Registry[Any] = Registry("model", "bench.models", "models")
TASKS: Registry[Any] = Registry("task", "bench.tasks", "tasks")
register_model = MODELS.register
register_task = TASKS.register
