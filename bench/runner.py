"""Carry out a plan: pretrain what is missing, fine-tune what is missing, store everything.

A run already `done` in the store is skipped; a failed, interrupted or orphaned one is taken
over (a pretraining run from its resume state). Each run is claimed in the store first, so
several `bench run` processes can share one results folder (bench.results.store).
"""

from __future__ import annotations

import errno
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from bench.distributed import (HEARTBEAT_S, PeerWatch, Ranks, broadcast, fail_and_leave, launched, launcher_stop_held,
                               peer_failure)
from bench.environment import code_version, environment, git_sha, plugins_of
from bench.errors import BenchError, ConfigError, RunFailure, StoreError
from bench.entries import FINETUNE_KEYS, register_config_entries, register_config_models  # noqa: F401 - re-exported
from bench.executors import JobExecutor, JobFailed, RunJob
from bench.plan import FinetuneRun, Plan, PretrainRun
from bench.preflight import check_results_folder, preflight
from bench.results.store import DB_NAME, Claim, Store
from bench.tracking import check_installed
from bench.worker import RunResult, Worker, clear_resume_state


@dataclass
class RunSummary:
    pretrained: int = 0
    finetuned: int = 0
    skipped: int = 0
    retried: int = 0  # runs taken over from a failed, interrupted or dead attempt
    submitted: int = 0  # jobs submitted (--executor)
    adopted: int = 0  # jobs of an earlier driver, watched to their end
    resumed: int = 0  # pretraining runs continued from a resume state
    failed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    wall_s: float = 0.0


class Runner:
    def __init__(self, plan: Plan, *, progress: bool = True, echo: Callable[[str], None] = print,
                 poll_s: float | None = None, ranks: Ranks | None = None) -> None:
        """Opens the results store (a damaged, newer or unwritable one is an error now).

        Under a launcher (`ranks.world` > 1) only rank 0 opens the store, prints and writes;
        the other ranks follow it (`follow`), training each run with it.
        """
        self.ranks = ranks or launched()
        self.plan = plan
        # how often to look again at runs other processes or jobs hold ([executor] poll_s)
        self.poll_s = poll_s if poll_s is not None else plan.experiment.executor.poll_s
        self._by_id = {pt.id: pt for pt in plan.pretrain_runs}
        self._gave_up: set[str] = set()  # runs that failed in this process: not retried, dependants skipped
        self._prepared = False
        self.exp = plan.experiment
        self.progress = progress and self.ranks.is_main
        self.echo = echo if self.ranks.is_main else (lambda message: None)
        self.results = self.exp.results_dir
        self.store: Store | None = None
        if self.ranks.is_main:
            check_results_folder(self.results)
            self.store = Store(self.results / DB_NAME)
            self.store.check_integrity()
        self.env = environment(plugins=plugins_of(plan))
        self.worker: Worker | None = None  # made by prepare(), with the prepared data
        self.executor: JobExecutor | None = None  # --executor local|slurm: runs become jobs
        self._inflight: dict[str, tuple[PretrainRun | FinetuneRun, str]] = {}  # run id -> (run, job id)
        if self.ranks.is_main and self.exp.executor.kind != "inline":
            if self.ranks.distributed:
                raise ConfigError("--executor local|slurm submits jobs from one driver process; start `bench run` "
                                  "plainly (set processes_per_job in [executor] for DDP inside each job).")
            self.executor = JobExecutor(self.exp.executor, self.results)
        self.summary = RunSummary()
        self._watch: PeerWatch | None = None  # several ranks: each watches the others' beats (bench.distributed)
        self._current: str | None = None  # the run in hand, for a failure the watch records
        self._failing = threading.Lock()  # one record of a group failure: the main thread's or the watch's
        self._failure_recorded = False
        # transformers' per-file "Loading weights"/"Writing shards" bars drown the harness's own.
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()

    # --- helpers --------------------------------------------------------------------------

    def _pretrain_complete(self, pt: PretrainRun) -> bool:
        # A done run whose checkpoints were deleted is redone, so its fine-tuning can proceed.
        return self.store.is_done(pt.id) and self.worker.checkpoints_exist(pt)

    # --- the work -------------------------------------------------------------------------

    def prepare(self) -> Plan:
        """Check the whole plan and pin its data into the run ids, before any work (bench.preflight).
        Rank 0 does it and hands the result to the other ranks."""
        if self.ranks.is_main:
            try:
                check_installed(self.exp.trackers, self.exp.where("trackers") if "trackers" in self.exp.from_cli
                                else f"{self.exp.config_file or 'bench.toml'}: run.trackers")  # before any work
                prepared = preflight(self.plan, progress=self.progress)
            except BenchError:
                broadcast(("stop", 2), self.ranks)
                raise
            broadcast(("plan", prepared), self.ranks)
        else:
            kind, prepared = broadcast(None, self.ranks)
            if kind == "stop":
                raise SystemExit(prepared)  # rank 0 says why
        self.plan = prepared.plan
        self.worker = Worker(self.plan, prepared.data, data_wall_s=prepared.data_wall_s, ranks=self.ranks,
                             progress=self.progress)
        self._by_id = {pt.id: pt for pt in self.plan.pretrain_runs}
        self._prepared = True
        if self.ranks.distributed:  # from here on the ranks work in lockstep: watch each other
            self._watch = PeerWatch(self.ranks, self._peer_lost).start()
        return self.plan

    def run(self) -> RunSummary:
        """Work through the plan in order, pretraining first, sharing the store with other processes.

        A run is claimed before it starts; one that is done is skipped, one held by a live
        process is left to it (a fine-tuning run whose pretraining is held elsewhere waits
        for its checkpoint), one whose owner died is taken over. The plan is finished when
        every run is done here, done elsewhere, or failed.
        """
        if not self._prepared:
            self.prepare()
        if not self.ranks.is_main:
            raise RuntimeError("rank 0 runs the plan; the other ranks call follow()")
        try:
            return self._lead()
        except KeyboardInterrupt:
            raise  # a launcher passes signals to every rank: each stops on its own
        except BaseException:
            self._tell(("stop", 2))
            raise
        finally:
            if self._watch is not None:
                self._watch.stop()

    def follow(self) -> int:
        """The other ranks' loop: train each run rank 0 names, until it says stop; its exit code."""
        assert self.store is None
        runs = {r.id: r for r in (*self.plan.pretrain_runs, *self.plan.finetune_runs)}
        try:
            while True:
                command, arg = broadcast(None, self.ranks)
                if command == "stop":
                    return int(arg)
                try:
                    self.worker.execute(runs[arg])  # rank 0 records the result
                except RunFailure:
                    continue  # every rank saw it at the same step (divergence): go on together
                except KeyboardInterrupt:
                    raise  # leaving cleanly (below): an interrupt is not this rank's failure
                except BaseException as exc:  # noqa: BLE001 - this rank fails: tell rank 0 why, and leave
                    fail_and_leave(f"rank {self.ranks.rank}: {type(exc).__name__}: {exc}")
        finally:
            if self._watch is not None:
                self._watch.stop()

    def _tell(self, command: tuple[str, Any]) -> None:
        """Rank 0 -> the other ranks: ("run", run id) or ("stop", exit code)."""
        if self.ranks.distributed:
            try:
                broadcast(command, self.ranks)
            except Exception:  # noqa: BLE001 - a rank already gone: nothing to tell it
                pass

    def _lead(self) -> RunSummary:
        start = time.perf_counter()
        pending: list[PretrainRun | FinetuneRun] = [*self.plan.pretrain_runs, *self.plan.finetune_runs]
        waiting_for: set[str] = set()
        with self.store.heartbeats():
            while pending or self._inflight:
                blocked: dict[str, str] = {}  # run id -> the owner it waits for
                ran = False
                pending_ids = {run.id for run in pending} | set(self._inflight)
                for run in list(pending):
                    outcome = self._step(run, blocked, pending_ids)
                    if outcome == "wait":
                        continue
                    pending.remove(run)
                    if outcome == "ran":
                        ran = True
                        break  # rescan from the top: plan order, and others' progress, count
                ran = self._collect_jobs() or ran
                if (pending or self._inflight) and not ran:
                    owners = sorted(set(blocked.values()) - {""})
                    if owners and set(owners) != waiting_for:
                        self.echo(f"waiting for {len(blocked)} run(s) held by other processes ({', '.join(owners)})")
                        waiting_for = set(owners)
                    time.sleep(self.poll_s)
        self.summary.wall_s = time.perf_counter() - start
        self._tell(("stop", 1 if self.summary.failed else 0))
        return self.summary

    def _step(self, run: PretrainRun | FinetuneRun, blocked: dict[str, str], pending_ids: set[str]) -> str:
        """Try one run: "ran", "skipped" (done or given up) or "wait" (held elsewhere)."""
        if isinstance(run, FinetuneRun):
            parent = self._by_id[run.pretrain_id]
            if parent.id in self._gave_up:
                self.summary.failed.append(f"{run.model}/{run.task}/seed {run.seed}: its pretraining run failed")
                return "skipped"
            if not self._pretrain_complete(parent):
                if parent.id in pending_ids:  # it comes first, here or in the process holding it
                    blocked[run.id] = ""
                    return "wait"
                # no longer planned here but not complete (reopened, or its owner died): take it up again
                return "ran" if self._step(parent, blocked, pending_ids) == "ran" else "wait"
        elif self.store.is_done(run.id) and not self._pretrain_complete(run):
            self.store.reopen(run.id, "its checkpoint folders were missing; pretrained again")
        if self.store.is_done(run.id):  # a read first: a re-run of a finished plan writes nothing
            self.summary.skipped += 1
            return "skipped"
        claim = self._claim(run)
        if claim.outcome == "done":
            self.summary.skipped += 1
            return "skipped"
        if claim.outcome == "busy":
            blocked[run.id] = claim.owner or ""
            return "wait"
        if claim.outcome == "adopted":  # a dead driver's job: watch it instead of submitting it again
            self._jobs().status(claim.job_id, run.id)  # a clear error now if it cannot be looked at
            self._inflight[run.id] = (run, claim.job_id)
            self.summary.adopted += 1
            self.echo(f"{run.model} {run.id}: watching job {claim.job_id}, submitted by an earlier `bench run`")
            return "submitted"
        if claim.attempt > 1:
            self.summary.retried += 1
        if self.executor is not None and _runs_as_job(run):
            job_id = self.executor.submit(RunJob(self.plan, self.worker.data, self.worker.data_wall_s, run.id))
            self.store.mark_queued(run.id, job_id)
            self._inflight[run.id] = (run, job_id)
            self.summary.submitted += 1
            self.echo(f"{run.model} {run.id}: submitted as job {job_id}")
            return "submitted"
        self._tell(("run", run.id))  # the other ranks train it too
        self._guard(run, lambda: self.worker.execute(run))
        return "ran"

    def _jobs(self) -> JobExecutor:
        if self.executor is None:
            raise BenchError("this results folder has runs held by jobs an earlier `bench run --executor local|slurm` "
                             "submitted; run again with that --executor (or its [executor] table) to collect them.")
        return self.executor

    def _collect_jobs(self) -> bool:
        """Look at every job in flight once: record the finished ones. True if any was."""
        progressed = False
        for run_id, (run, job_id) in list(self._inflight.items()):
            status = self.executor.status(job_id, run_id)
            if status.state == "running" and self.store.status(run_id) == "queued":
                self.store.mark_running(run_id, status.node)
            if status.state not in ("finished", "failed"):
                continue
            del self._inflight[run_id]
            progressed = True
            try:
                if status.state == "failed":
                    raise JobFailed(self.executor.failure(job_id, status.detail))
                result = self.executor.result(job_id, run_id)
            except JobFailed as exc:
                self._record_failure(run_id, str(exc))
                self._gave_up.add(run_id)
                self.summary.failed.append(f"{run_id}: {str(exc).splitlines()[0]}")
                self.echo(f"run {run_id} failed: {str(exc).splitlines()[0]} (recorded; re-run to retry)")
            else:
                self._record(run, result)
        return progressed

    def _claim(self, run: PretrainRun | FinetuneRun) -> Claim:
        common = dict(spec=run.spec(), code_version=code_version(), git_sha=git_sha(), environment=self.env,
                      size=run.size, model=run.model)
        if isinstance(run, PretrainRun):
            budget = None if run.budget.is_time else (run.budget.value if run.pretrains and not run.external else 0.0)
            return self.store.claim(run.id, kind="pretrain", budget=budget, **common)
        parent = self._by_id[run.pretrain_id]
        budget = None if parent.budget.is_time else parent.budget.value * run.fraction
        return self.store.claim(run.id, kind="finetune", task=run.task, budget=budget, seed=run.seed,
                                parent_id=parent.id, **common)

    def _guard(self, run: PretrainRun | FinetuneRun, work: Callable[[], RunResult]) -> None:
        """Run one claimed unit of work. Its failure is recorded in the store; a run's own failure
        (divergence, a bug) lets the rest go on, a user error or an interrupt stops `bench run`,
        and so does a failure on one rank of several (the group cannot go on together)."""
        run_id = run.id
        self._current = run_id
        try:
            result = work()
        except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM as `Interrupted`
            if self.ranks.distributed:
                with launcher_stop_held():
                    peer = self._lost_peer()
                if peer:  # the launcher's SIGTERM, sent because a peer failed
                    self._fail_together(run_id, exc, peer)
            self._record_failure(run_id, str(exc) or "interrupted by SIGINT")
            raise
        except BenchError as exc:  # a user error: recorded, then reported
            self._record_failure(run_id, str(exc))
            raise
        except RunFailure as exc:  # the run's own failure, already explained (every rank agreed on it)
            self._record_failure(run_id, str(exc))
            self._gave_up.add(run_id)
            self.summary.failed.append(f"{run_id}: {exc}")
            self.echo(f"run {run_id} failed: {exc}")
        except Exception as exc:  # noqa: BLE001 - recorded, reported, and the run retried next time
            full = disk_full(exc)
            if full is not None:
                self._record_failure(run_id, f"disk full: {full}")
                raise BenchError(f"the disk is full: run {run_id} could not write under {self.results} ({full}). "
                                 f"Free space on that filesystem, or point --results at another folder, then "
                                 f"re-run to continue.") from None
            if self.ranks.distributed:
                self._fail_together(run_id, exc)
            self._fail_and_go_on(run_id, exc)
        else:
            self._record(run, result)
        finally:
            self._current = None

    def _fail_together(self, run_id: str, exc: BaseException, peer: str | None = None) -> NoReturn:
        """Several processes: a failure on one rank stops them all. Record which rank failed (`peer`, when the
        caller knows it already) and why."""
        with self._failing, launcher_stop_held():  # the watch, if it got there first, ends the process
            self._failure_recorded = True
            peer = peer or self._lost_peer()
            reason = f"failed on {peer}" if peer else f"failed on rank 0: {type(exc).__name__}: {exc}"
            self._record_failure(run_id, reason if peer else "".join(traceback.format_exception(exc)))
        raise BenchError(_group_failure(run_id, reason)) from None

    def _lost_peer(self) -> str | None:
        """After a collective broke: the peer that failed, by the error it left or, for a rank killed without
        a word, by its silence (waiting up to 3 beats for either); None if every peer is alive (rank 0 failed)."""
        deadline = time.monotonic() + 3.5 * HEARTBEAT_S
        while True:
            peer = peer_failure()
            silent = self._watch.silent(3 * HEARTBEAT_S) if self._watch is not None and not peer else []
            if silent:
                peer = f"rank {silent[0]}: it stopped without a word (killed, or its machine went away)"
            if peer or time.monotonic() >= deadline:
                return peer
            time.sleep(0.2)

    def _peer_lost(self, reason: str) -> None:
        """The peer watch's verdict, on its thread: the main thread may be blocked in a collective for good
        (NCCL does not fail a collective whose peer died), so record the failure and end the process here."""
        with self._failing:
            if self._failure_recorded:  # the main thread saw it first and is reporting it
                return
            self._failure_recorded = True
            if self.ranks.is_main:
                run_id = self._current
                if run_id is not None:
                    self._record_failure(run_id, f"failed on {reason}")
                print(f"error: {_group_failure(run_id, f'failed on {reason}')}", file=sys.stderr, flush=True)
            else:
                print(f"rank {self.ranks.rank}: leaving, rank 0 failed ({reason})", file=sys.stderr, flush=True)
            os._exit(2)

    def _record(self, run: PretrainRun | FinetuneRun, result: RunResult) -> None:
        """Write a run's result to the store (one transaction) and count it."""
        self.store.finish(run.id, result.metrics, result.environment)
        for message in result.warnings:
            self.summary.warnings.append(message)
            self.echo(f"warning: {message}")
        if isinstance(run, PretrainRun):
            self.summary.pretrained += 1
            self.summary.resumed += result.resumed
            if not run.external:
                clear_resume_state(self.worker.run_dir(run.id))
        else:
            self.summary.finetuned += 1

    def _fail_and_go_on(self, run_id: str, exc: BaseException) -> None:
        self._record_failure(run_id, "".join(traceback.format_exception(exc)))
        self._gave_up.add(run_id)
        self.summary.failed.append(f"{run_id}: {type(exc).__name__}: {exc}")
        self.echo(f"run {run_id} failed: {type(exc).__name__}: {exc} (recorded; re-run to retry)")

    def _record_failure(self, run_id: str, error: str) -> None:
        try:
            self.store.fail(run_id, error)
        except StoreError as exc:  # e.g. the disk is full for the store too: say so, keep the first error
            self.echo(f"warning: could not record the failure of {run_id} in the store: {exc}")

def _group_failure(run_id: str | None, reason: str) -> str:
    what = f"run {run_id}" if run_id else "the process group"
    return (f"{what} {reason}. With several processes a run that fails on one rank stops them all; the failure "
            f"is recorded and a re-run retries it.")


def disk_full(exc: BaseException) -> str | None:
    """What said the disk is full, if anything in `exc`'s chain did (OSError ENOSPC, or a library's
    own error around one, e.g. safetensors' "No space left on device (os error 28)")."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return f"{exc.strerror}" + (f" writing {exc.filename}" if exc.filename else "")
        if "No space left on device" in str(exc) or "disk is full" in str(exc):
            return str(exc).splitlines()[0]
        exc = exc.__cause__ or exc.__context__
    return None


def _runs_as_job(run: PretrainRun | FinetuneRun) -> bool:
    """What is worth a job: training. An external checkpoint or the untrained control is recorded inline."""
    return isinstance(run, FinetuneRun) or (run.pretrains and not run.external)
