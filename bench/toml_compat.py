"""TOML parsing on every supported Python: `tomllib` (3.11+) or its backport `tomli` (3.10).

    from bench.toml_compat import tomllib   # instead of `import tomllib`

pyproject.toml depends on `tomli>=1.1; python_version < "3.11"`; both modules have the same API.
"""

from __future__ import annotations

try:
    import tomllib
except ImportError:  # Python 3.10: the standard library has no tomllib yet
    import tomli as tomllib  # type: ignore[no-redef]

load = tomllib.load
loads = tomllib.loads
TOMLDecodeError = tomllib.TOMLDecodeError

__all__ = ["TOMLDecodeError", "load", "loads", "tomllib"]
