"""Several processes per run (`torchrun`, `accelerate launch`): who leads, who follows, failing together.

Under a launcher every process runs `bench run`. Rank 0 leads: it alone checks the plan,
prepares data, opens the store, claims runs, prints, and writes checkpoints and resume
states. It tells the other ranks which run to work on next (a broadcast), all ranks train
that run together (DDP), and rank 0 records the result. The other ranks never write a file
of the results folder.

A failure on one rank must not leave the others waiting in a collective. A rank that fails
writes its error into the process group's key-value store and exits. Under gloo the
collective the others are blocked in then fails at once ("connection closed by peer"), and
rank 0 records which rank failed and why; the launcher sends SIGTERM to every other rank as
soon as one exits, and rank 0 holds it off while it records the failure (`launcher_stop_held`).

That path leans on the backend: under NCCL the survivors do not fail, they wait in the
collective (and rank 0's main thread in a CUDA sync, where no signal handler runs). So the
control path does not depend on it: every rank runs a `PeerWatch` thread that beats in the
launcher's key-value store once a second and watches the others' beats (rank 0 watches every
rank; the others watch rank 0). A peer silent for `PEER_TIMEOUT_S` (killed, frozen, its machine
gone) or an error left in the store that the main thread has not recorded within a few seconds
makes the watch record the failure and end the process itself, whatever the main thread is
blocked in. Failures every rank sees at the same step (a diverged loss, which the pretraining
loop agrees on) let the group go on to the next run.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

ERROR_KEY = "bench/error"  # a failed rank's message, in the process group's store
ALIVE_KEY = "bench/alive/{rank}"  # a counter each rank bumps every HEARTBEAT_S; "done" once it left cleanly
HEARTBEAT_S = 1.0
# A peer silent this long has failed. Below the launchers' 30 s between SIGTERM and SIGKILL, so rank 0
# records a lost peer before the launcher kills it; far above any pause of a healthy rank's beat thread.
PEER_TIMEOUT_S = 15.0
ERROR_GRACE_S = 5.0  # a peer's error the main thread has not recorded after this long: the watch records it
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


def tell_peers(message: str) -> None:
    """This rank failed: leave `message` where rank 0 (and its peer watch) will look for it."""
    try:
        _store().set(ERROR_KEY, message)
    except Exception:  # noqa: BLE001 - the group may be gone already; the exit says the rest
        pass


def fail_and_leave(message: str) -> NoReturn:
    """This rank failed: tell the peers why, and exit with status 1 (which closes this rank's
    connections, so under gloo no peer waits in a collective)."""
    tell_peers(message)
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


class PeerWatch:
    """Beat, and watch the peers' beats, from a daemon thread (see the module's docstring).

    `on_lost(reason)` runs on the watch's thread, once, when a watched peer failed: `reason` is
    "rank N: <its error>" or "rank N: no sign of life for S s (...)". It must record what it can
    and end the process (`os._exit`): the main thread may never come back. `stop()` marks this
    rank as gone cleanly, so no peer takes its silence for a failure.
    """

    def __init__(self, ranks: Ranks, on_lost: Callable[[str], None], *, timeout_s: float | None = None,
                 interval_s: float = HEARTBEAT_S, error_grace_s: float = ERROR_GRACE_S) -> None:
        self.ranks = ranks
        self.on_lost = on_lost
        env = os.environ.get("BENCH_PEER_TIMEOUT_S", "")
        self.timeout_s = timeout_s if timeout_s is not None else (float(env) if env else PEER_TIMEOUT_S)
        self.interval_s = interval_s
        self.error_grace_s = error_grace_s
        self.watched = [r for r in range(ranks.world) if r != ranks.rank] if ranks.is_main else [0]
        self._stop = threading.Event()
        self._changed: dict[int, tuple[bytes | None, float]] = {}  # rank -> (last beat, when it changed)
        self._thread: threading.Thread | None = None

    def start(self) -> PeerWatch:
        if self.ranks.distributed and self._thread is None:
            now = time.monotonic()
            self._changed = {r: (None, now) for r in self.watched}
            self._thread = threading.Thread(target=self._loop, name="bench-peer-watch", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """This rank leaves cleanly: stop beating, and say so."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        try:
            _store().set(ALIVE_KEY.format(rank=self.ranks.rank), "done")
        except Exception:  # noqa: BLE001 - the group is gone already: nobody is watching
            pass

    def silent(self, seconds: float) -> list[int]:
        """The watched ranks whose beat has not changed for `seconds` (and that did not leave cleanly)."""
        now = time.monotonic()
        return [r for r, (beat, at) in self._changed.items() if beat != b"done" and now - at >= seconds]

    def _loop(self) -> None:
        store = _store()
        beat, error_seen = 0, None
        while not self._stop.wait(self.interval_s):
            beat += 1
            now = time.monotonic()
            try:
                store.set(ALIVE_KEY.format(rank=self.ranks.rank), str(beat))
                for r in self.watched:
                    key = ALIVE_KEY.format(rank=r)
                    value = store.get(key) if store.check([key]) else None
                    if value != self._changed[r][0]:
                        self._changed[r] = (value, now)
                error = store.get(ERROR_KEY).decode() if store.check([ERROR_KEY]) else None
            except Exception:  # noqa: BLE001 - the store is unreachable: its host (a launcher, rank 0) is gone
                error = None  # nothing changes: the peers fall silent, and the timeout decides
            if error is not None and self.ranks.is_main:
                error_seen = error_seen or now
                if now - error_seen >= self.error_grace_s:  # the main thread did not get to it: it is stuck
                    return self.on_lost(error)
            silent = self.silent(self.timeout_s)
            if silent:
                return self.on_lost(f"rank {silent[0]}: no sign of life for {self.timeout_s:.0f} s (the process "
                                    f"was killed, hung or lost its machine)")


def _store() -> Any:
    import torch.distributed as dist

    return dist.distributed_c10d._get_default_store()  # the launcher's TCPStore (torchrun, accelerate)
