"""Several processes per run (`torchrun`, `accelerate launch`): who leads, who follows, failing together.

Under a launcher every process runs `bench run`. Rank 0 leads: it alone checks the plan,
prepares data, opens the store, claims runs, prints, and writes checkpoints and resume
states. It tells the other ranks which run to work on next (a broadcast), all ranks train
that run together (DDP), and rank 0 records the result. The other ranks never write a file
of the results folder.

A failure on one rank must not leave the others waiting in a collective. A rank that fails
writes its error into the process group's key-value store and exits; the collective the
others are blocked in then fails at once ("connection closed by peer"), and rank 0 records
which rank failed and why. The launcher sends SIGTERM to every other rank as soon as one
exits; rank 0 holds it off while it records the failure (`launcher_stop_held`). Failures
every rank sees at the same step (a diverged loss, which the pretraining loop agrees on)
let the group go on to the next run.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

ERROR_KEY = "bench/error"  # a failed rank's message, in the process group's store
# How long a rank waits in a collective: rank 0 may wait for runs another `bench run` holds.
GROUP_TIMEOUT = timedelta(hours=12)


@dataclass(frozen=True)
class Ranks:
    rank: int
    world: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def launched() -> Ranks:
    """This process's rank and the world size, from the launcher's environment (no set-up)."""
    return Ranks(int(os.environ.get("RANK", "0") or 0), int(os.environ.get("WORLD_SIZE", "1") or 1))


def init() -> Ranks:
    """Join the launcher's process group (gloo on CPU, NCCL on GPUs) when there is more than one rank."""
    ranks = launched()
    if ranks.distributed:
        import torch
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available(), timeout=GROUP_TIMEOUT)
    return ranks


def broadcast(obj: Any, ranks: Ranks) -> Any:
    """Rank 0's `obj` on every rank (pickled in memory, between the processes of one launch)."""
    if not ranks.distributed:
        return obj
    import torch.distributed as dist

    box = [obj if ranks.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def fail_and_leave(message: str) -> NoReturn:
    """This rank failed: leave `message` where rank 0 will look for it, and exit with status 1
    (which closes this rank's connections, so no peer waits in a collective)."""
    try:
        _store().set(ERROR_KEY, message)
    except Exception:  # noqa: BLE001 - the group may be gone already; the exit says the rest
        pass
    os._exit(1)


@contextmanager
def launcher_stop_held() -> Iterator[None]:
    """Rank 0 recording a failure: once one rank exits, the launcher sends SIGTERM to the others
    (SIGKILL 30 s later), and that signal must not cut the record short. Signals that come
    meanwhile are dropped: this process is leaving with the failure anyway."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)


def peer_failure() -> str | None:
    """The error another rank left, if any."""
    try:
        store = _store()
        return store.get(ERROR_KEY).decode() if store.check([ERROR_KEY]) else None
    except Exception:  # noqa: BLE001 - no group, or its store is gone: nothing known
        return None


def _store() -> Any:
    import torch.distributed as dist

    return dist.distributed_c10d._get_default_store()  # the launcher's TCPStore (torchrun, accelerate)
