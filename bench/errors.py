"""Error types the CLI turns into a clear message and a non-zero exit."""

from __future__ import annotations


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message`, for one-line errors that wrap another exception."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


class BenchError(Exception):
    """A user-facing error: the message names the problem and the fix."""


class ConfigError(BenchError):
    """A bad key, type or value in bench.toml or on the command line."""


class UnknownNameError(BenchError):
    """A model, task or preset name that is not registered."""


class DataError(BenchError):
    """Missing or malformed data (corpus, vocabulary, task files)."""


class StoreError(BenchError):
    """The results store cannot be opened, read or written (damaged, newer, unwritable, full)."""


class RunFailure(Exception):
    """A run ended without a result for a reason of its own (e.g. divergence), not the user's input.

    The runner records it in the store, skips what depends on the run, and goes on with the rest.
    """


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: the run in flight is recorded as interrupted and `bench run` exits.

    A KeyboardInterrupt, so that nothing on the way up mistakes it for an ordinary error.
    """

    def __init__(self, signum: int, detail: str = "") -> None:
        import signal

        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(f"interrupted by {self.name}" + (f": {detail}" if detail else ""))
