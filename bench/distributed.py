"""Several processes per run (`torchrun`, `accelerate launch`): who leads, who follows, failing together.

Under a launcher every process runs `bench run`. Rank 0 leads: it alone checks the plan,
prepares data, opens the store, claims runs, prints, and writes checkpoints and resume
states. It tells the other ranks which run to work on next (a broadcast), all ranks train
that run together (DDP), and rank 0 records the result. The other ranks never write a file
of the results folder.

A failure on one rank must not leave the others waiting in a collective. A rank that fails
writes its error into the process group's key-value store and leaves; the collective the
others are blocked in then fails at once ("connection closed by peer"), and rank 0 records
which rank failed and why. Failures every rank sees at the same step (a diverged loss, which
the pretraining loop agrees on) let the group go on to the next run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

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


def report_failure(message: str) -> None:
    """Leave this rank's error where rank 0 will look for it."""
    try:
        _store().set(ERROR_KEY, message)
    except Exception:  # noqa: BLE001 - the group may be gone already; the exit says the rest
        pass


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
