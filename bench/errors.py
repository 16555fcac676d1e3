"""Error types the CLI turns into a clear message and a non-zero exit."""

from __future__ import annotations


class BenchError(Exception):
    """A user-facing error: the message names the problem and the fix."""


class ConfigError(BenchError):
    """A bad key, type or value in bench.toml or on the command line."""


class UnknownNameError(BenchError):
    """A model, task or preset name that is not registered."""


class DataError(BenchError):
    """Missing or malformed data (corpus, vocabulary, task files)."""
