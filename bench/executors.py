"""Runs as cluster jobs through submitit: `bench run --executor local|slurm`.

`bench run` (the driver) stays the only writer of the store: it submits one job per run,
records the job id, watches the jobs, and writes each job's returned metrics in one
transaction. A job runs the same `Worker` as the inline path (spec in, metrics and a
checkpoint folder out) and never opens the store, so SQLite never sees a compute node.
Jobs and their logs live in `<results>/jobs/`, on the filesystem every node shares.

A job that reaches its time limit is requeued by submitit's checkpointing hook and resumes
from its run's last resume state. A driver that dies leaves its jobs running; the next
`bench run` adopts them by job id from the store instead of submitting them again.

What a job hands back is JSON, never a pickle: it writes `runs/<run id>/job-<job id>.result.json`
(its metrics, warnings and environment, or the error it ended with) atomically beside its
checkpoint folder, and the driver reads and checks only that file (bench.worker.read_job_result).
submitit's own `<job>_result.pkl` is left unread. The submission pickles submitit writes into
`jobs/` are code a job runs, so a results or jobs folder another user could write (group- or
world-writable, or owned by someone else) is refused unless `[executor] allow_shared_folder = true`.

The driver never waits forever: a SLURM job the scheduler no longer answers for (no accounting
answer and not in squeue: state UNKNOWN), or one it says COMPLETED without a result file, is
recorded failed once that has lasted `[executor] lost_after_s` seconds (default 300); a local job
whose process is gone without a result is recorded failed at once.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.config import ExecutorSettings
from bench.errors import ConfigError
from bench.plan import Plan
from bench.worker import JobResultError, RunResult, job_result_path, read_job_result, write_job_result

JOBS_DIR = "jobs"
RUNS_DIR = "runs"  # <results>/runs/<run id>/: a run's checkpoints, and its jobs' result files
STDERR_TAIL = 25  # lines of a failed job's stderr kept in the store
RUNNING = ("RUNNING", "COMPLETING", "CONFIGURING")
QUEUED = ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED")


class JobFailed(Exception):
    """A job ended without a result: its reason, for the store."""


@dataclass(frozen=True)
class JobStatus:
    state: str  # queued | running | finished (a result may be waiting) | failed
    node: str | None = None
    detail: str = ""  # the scheduler's own word (PENDING, CANCELLED, TIMEOUT, ...)


@dataclass
class RunJob:
    """What a job executes: one run of a prepared plan. Picklable; runs on the node."""

    plan: Plan
    data: Any  # PretrainData
    data_wall_s: float
    run_id: str

    result_dir: str = ""  # the run's folder, absolute, as the driver sees it: where the result file goes

    def __call__(self) -> None:
        """Run it and write its result file (rank 0); an error is written there too, then raised."""
        import submitit

        job_id = submitit.JobEnvironment().job_id
        path = job_result_path(Path(self.result_dir), job_id)
        is_main = True
        try:
            from bench import distributed
            from bench.worker import Worker

            if int(os.environ.get("SUBMITIT_LOCAL_NTASKS", os.environ.get("SLURM_NTASKS", "1")) or 1) > 1:
                submitit.helpers.TorchDistributedEnvironment().export()  # RANK, WORLD_SIZE, MASTER_ADDR, ...
            ranks = distributed.init()
            is_main = ranks.is_main

            def lost(reason: str) -> None:  # a peer failed, and this rank may be stuck in a collective for good
                if is_main:
                    write_job_result(path, run_id=self.run_id, job_id=job_id, error=f"failed on {reason}")
                os._exit(1)

            watch = distributed.PeerWatch(ranks, lost).start()
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            hf_logging.set_verbosity_error()
            from bench.entries import register_config_entries

            register_config_entries(self.plan.experiment)  # tasks declared in bench.toml, as the driver has them
            runs = {r.id: r for r in (*self.plan.pretrain_runs, *self.plan.finetune_runs)}
            worker = Worker(self.plan, self.data, data_wall_s=self.data_wall_s, ranks=ranks, progress=False)
            result = worker.execute(runs[self.run_id])
            watch.stop()
        except BaseException as exc:
            if not is_main and not isinstance(exc, KeyboardInterrupt):
                distributed.tell_peers(f"rank {ranks.rank}: {type(exc).__name__}: {exc}")
            if is_main and not isinstance(exc, KeyboardInterrupt):  # a requeue (SIGTERM) writes nothing
                from bench.distributed import peer_failure

                peer = peer_failure()  # the collective broke because a peer failed: name it
                write_job_result(path, run_id=self.run_id, job_id=job_id,
                                 error=f"failed on {peer}" if peer else "".join(traceback.format_exception(exc)))
            raise
        if is_main:
            write_job_result(path, run_id=self.run_id, job_id=job_id, result=result)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit calls this at a time limit or pre-emption: requeue; the run resumes from its state."""
        import submitit

        return submitit.helpers.DelayedSubmission(self)


class JobExecutor:
    """Submits `RunJob`s and reads back their states and result files, for one results folder."""

    def __init__(self, settings: ExecutorSettings, results: Path) -> None:
        self.settings = settings
        self.results = Path(results).resolve()
        self.folder = self.results / JOBS_DIR
        for folder in (self.results, self.folder, self.results / RUNS_DIR):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not settings.allow_shared_folder:
                check_private(folder)
        import submitit

        self._executor = submitit.AutoExecutor(folder=self.folder, cluster=settings.kind)
        params: dict[str, Any] = {"timeout_min": settings.time_limit_min, "tasks_per_node": settings.processes_per_job,
                                  "nodes": 1, "name": "bench"}
        if settings.gpus_per_job:
            params["gpus_per_node"] = settings.gpus_per_job
        if settings.cpus_per_job:
            params["cpus_per_task"] = settings.cpus_per_job
        if settings.kind == "slurm":
            extra = dict(opt.split("=", 1) for opt in settings.sbatch)
            params.update({k: v for k, v in (("slurm_partition", settings.partition),
                                             ("slurm_account", settings.account),
                                             ("slurm_qos", settings.qos)) if v})
            if extra:
                params["slurm_additional_parameters"] = extra
        self._executor.update_parameters(**params)
        self._jobs: dict[str, Any] = {}
        self._unknown_since: dict[str, float] = {}  # job id -> when the scheduler first had no answer for it
        self._states: dict[str, tuple[str, str]] = {}  # job id -> (state, node), from the last scheduler query
        self._queried_at = float("-inf")
        self._ended: set[str] = set()  # jobs seen finished or failed: no longer asked about
        self.clock = time.monotonic  # tests move time forward

    def run_dir(self, run_id: str) -> Path:
        return self.results / RUNS_DIR / run_id

    def result_file(self, job_id: str, run_id: str) -> Path:
        return job_result_path(self.run_dir(run_id), job_id)

    def submit(self, job: RunJob) -> str:
        job.result_dir = str(self.run_dir(job.run_id))
        submitted = self._executor.submit(job)
        self._jobs[str(submitted.job_id)] = submitted
        return str(submitted.job_id)

    def _job(self, job_id: str) -> Any:
        if job_id not in self._jobs:  # adopted from a driver that died: rebuilt from its id
            import submitit

            cls = submitit.SlurmJob if self.settings.kind == "slurm" else submitit.LocalJob
            self._jobs[job_id] = cls(folder=self.folder, job_id=job_id)
        return self._jobs[job_id]

    def status(self, job_id: str, run_id: str) -> JobStatus:
        """Where the job is: its result file first, then the scheduler (or the local process)."""
        if self.result_file(job_id, run_id).exists():
            status = JobStatus("finished")
        elif self.settings.kind == "local":
            status = self._local_status(self._job(job_id))
        else:
            status = self._slurm_status(job_id)
        if status.state == "failed" and self.result_file(job_id, run_id).exists():  # it wrote one, then ended
            status = JobStatus("finished", status.node, status.detail)
        if status.state in ("finished", "failed"):
            self._ended.add(job_id)
        return status

    def _slurm_status(self, job_id: str) -> JobStatus:
        self._job(job_id)
        state, node = self._scheduler_state(job_id)
        if state in RUNNING:
            self._unknown_since.pop(job_id, None)
            return JobStatus("running", node, state)
        if state in QUEUED:
            self._unknown_since.pop(job_id, None)
            return JobStatus("queued", node, state)
        if state == "UNKNOWN" or state == "COMPLETED":
            # UNKNOWN: not yet visible to the accounting, or gone from it (purged, or no accounting at all);
            # COMPLETED: its result file may still be on its way over a network filesystem
            since = self._unknown_since.setdefault(job_id, self.clock())
            waited = self.clock() - since
            if waited < self.settings.lost_after_s:
                return JobStatus("running" if state == "COMPLETED" else "queued", node, state)
            if state == "COMPLETED":
                return JobStatus("failed", node, f"COMPLETED, but no result file after {waited:.0f} s")
            self._cancel(job_id)
            return JobStatus("failed", node, f"LOST: the scheduler has had no answer for it for {waited:.0f} s "
                                             f"(no accounting record, not in squeue); [executor] lost_after_s = "
                                             f"{self.settings.lost_after_s:g}")
        return JobStatus("failed", node, state)

    def _scheduler_state(self, job_id: str) -> tuple[str, str | None]:
        """(state, node) from sacct, asked once per poll for every job watched; squeue for a job sacct does not
        know; ("UNKNOWN", None) when neither answers."""
        now = self.clock()
        if now - self._queried_at > 1.0 or job_id not in self._states:
            self._states = _sacct([j for j in self._jobs if j not in self._ended and j != job_id] + [job_id])
            self._queried_at = now
        state, node = self._states.get(job_id, ("UNKNOWN", ""))
        if state == "UNKNOWN":
            state, node = _squeue(job_id)
        return state, node or None

    def _cancel(self, job_id: str) -> None:
        """A lost job may still run somewhere: ask the scheduler to end it (it may not know it any more)."""
        try:
            subprocess.run(["scancel", job_id], capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            pass

    def _local_status(self, job: Any) -> JobStatus:
        process = getattr(job, "_process", None)
        if process is not None:
            code = process.poll()
            if code is None:
                return JobStatus("running", socket.gethostname(), "RUNNING")
            return JobStatus("failed", socket.gethostname(),
                             "exit 0 without a result file" if code == 0 else f"exit {code}")
        # adopted: the driver that started it is gone; the job's process may still live
        alive = Path(f"/proc/{job.job_id}").exists() and "submitit" in _cmdline(job.job_id)
        return JobStatus("running" if alive else "failed", socket.gethostname(),
                         "RUNNING" if alive else "GONE: its process ended without a result file")

    def result(self, job_id: str, run_id: str) -> RunResult:
        """The job's RunResult, read from its JSON result file (never a pickle), or JobFailed with the reason
        and its stderr's tail."""
        job = self._job(job_id)
        path = self.result_file(job_id, run_id)
        try:
            got = read_job_result(path, run_id=run_id, job_id=job_id)
        except JobResultError as exc:
            raise JobFailed(f"job {job_id} ended without a result ({exc}){self._stderr_tail(job)}") from None
        if isinstance(got, str):  # the job's own error: its traceback's last line names it
            raise JobFailed(f"job {job_id} ended without a result (FAILED): {_last_line(got)}"
                            f"{self._stderr_tail(job)}")
        return got

    def failure(self, job_id: str, detail: str) -> str:
        """Why a job that ended without a result ended, for the store."""
        return f"job {job_id} ended without a result ({detail}){self._stderr_tail(self._job(job_id))}"

    @staticmethod
    def _stderr_tail(job: Any) -> str:
        try:
            lines = job.paths.stderr.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        tail = [line for line in lines if line.strip()][-STDERR_TAIL:]
        return ("\n--- stderr (last lines) ---\n" + "\n".join(tail)) if tail else ""

    def submissions(self) -> int:
        """Jobs submitted into this folder so far (each leaves its `<id>_submitted.pkl`)."""
        return len(list(self.folder.glob("*_submitted.pkl")))


def check_private(folder: Path) -> None:
    """A folder the jobs' files live in must be this user's alone: another user who can write it could put
    code in a job's submission or a result in its place. A ConfigError naming the fix otherwise."""
    st = folder.stat()
    shared = []
    if st.st_mode & stat.S_IWGRP:
        shared.append("writable by its group")
    if st.st_mode & stat.S_IWOTH:
        shared.append("writable by others")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        shared.append(f"owned by another user (uid {st.st_uid})")
    if shared:
        raise ConfigError(f"{folder} is {' and '.join(shared)}: jobs run the code their submission files hold and "
                          f"the driver trusts their result files, so --executor local|slurm needs a folder only you "
                          f"can write. Make it yours alone (chmod go-w {folder}), point --results elsewhere, or, "
                          f"if everyone who can write it is trusted, set allow_shared_folder = true in bench.toml's "
                          f"[executor] table.")


def _sacct(job_ids: list[str]) -> dict[str, tuple[str, str]]:
    """{job id: (state, node)} for the jobs sacct knows; {} when it does not answer."""
    if not job_ids:
        return {}
    command = ["sacct", "-o", "JobID,State,NodeList", "--parsable2"]
    for job_id in dict.fromkeys(job_ids):
        command += ["-j", job_id]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return {}
    if out.returncode != 0:
        return {}
    states = {}
    for line in out.stdout.splitlines()[1:]:
        parts = line.split("|")
        if len(parts) >= 3 and parts[0] and "." not in parts[0]:
            states[parts[0]] = ((parts[1].split() or ["UNKNOWN"])[0], parts[2].strip())
    return states


def _squeue(job_id: str) -> tuple[str, str]:
    """(state, node) from squeue, or ("UNKNOWN", "") when it does not list the job."""
    try:
        out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T|%N"], capture_output=True, text=True,
                             timeout=60)
    except (OSError, subprocess.SubprocessError):
        return "UNKNOWN", ""
    lines = [line for line in out.stdout.splitlines() if "|" in line] if out.returncode == 0 else []
    if not lines:
        return "UNKNOWN", ""
    state, node = lines[0].split("|", 1)
    return state.strip() or "UNKNOWN", node.strip()


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _last_line(text: str) -> str:
    """A traceback's last line names the error."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "the job failed"
