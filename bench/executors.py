"""Runs as cluster jobs through submitit: `bench run --executor local|slurm`.

`bench run` (the driver) stays the only writer of the store: it submits one job per run,
records the job id, watches the jobs, and writes each job's returned metrics in one
transaction. A job runs the same `Worker` as the inline path (spec in, metrics and a
checkpoint folder out) and never opens the store, so SQLite never sees a compute node.
Jobs and their logs live in `<results>/jobs/`, on the filesystem every node shares.

A job that reaches its time limit is requeued by submitit's checkpointing hook and resumes
from its run's last resume state. A driver that dies leaves its jobs running; the next
`bench run` adopts them by job id from the store instead of submitting them again.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.config import ExecutorSettings
from bench.plan import Plan
from bench.worker import RunResult

JOBS_DIR = "jobs"
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

    def __call__(self) -> dict[str, Any]:
        from bench import distributed
        from bench.worker import Worker

        if int(os.environ.get("SUBMITIT_LOCAL_NTASKS", os.environ.get("SLURM_NTASKS", "1")) or 1) > 1:
            import submitit

            submitit.helpers.TorchDistributedEnvironment().export()  # RANK, WORLD_SIZE, MASTER_ADDR, ...
        ranks = distributed.init()
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        from bench.runner import register_config_entries

        register_config_entries(self.plan.experiment)  # tasks declared in bench.toml, as the driver has them
        runs = {r.id: r for r in (*self.plan.pretrain_runs, *self.plan.finetune_runs)}
        worker = Worker(self.plan, self.data, data_wall_s=self.data_wall_s, ranks=ranks, progress=False)
        return worker.execute(runs[self.run_id]).to_json()

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit calls this at a time limit or pre-emption: requeue; the run resumes from its state."""
        import submitit

        return submitit.helpers.DelayedSubmission(self)


class JobExecutor:
    """Submits `RunJob`s and reads back their states and results, for one results folder."""

    def __init__(self, settings: ExecutorSettings, results: Path) -> None:
        import submitit

        self.settings = settings
        self.folder = Path(results) / JOBS_DIR
        self.folder.mkdir(parents=True, exist_ok=True)
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

    def submit(self, job: RunJob) -> str:
        submitted = self._executor.submit(job)
        self._jobs[str(submitted.job_id)] = submitted
        return str(submitted.job_id)

    def _job(self, job_id: str) -> Any:
        if job_id not in self._jobs:  # adopted from a driver that died: rebuilt from its id
            import submitit

            cls = submitit.SlurmJob if self.settings.kind == "slurm" else submitit.LocalJob
            self._jobs[job_id] = cls(folder=self.folder, job_id=job_id)
        return self._jobs[job_id]

    def status(self, job_id: str) -> JobStatus:
        job = self._job(job_id)
        if job.paths.result_pickle.exists():
            return JobStatus("finished")
        if self.settings.kind == "local":
            return self._local_status(job)
        info = job.get_info(mode="force")  # one sacct call for every watched job
        state = (info.get("State") or "UNKNOWN").split()[0]
        node = info.get("NodeList") or None
        if state in RUNNING:
            return JobStatus("running", node, state)
        if state in QUEUED or state == "UNKNOWN":  # UNKNOWN: not yet visible to the accounting
            return JobStatus("queued", node, state)
        if state == "COMPLETED":
            return JobStatus("finished", node, state)
        return JobStatus("failed", node, state)

    def _local_status(self, job: Any) -> JobStatus:
        process = getattr(job, "_process", None)
        if process is not None:
            code = process.poll()
            if code is None:
                return JobStatus("running", socket.gethostname(), "RUNNING")
            return JobStatus("finished" if code == 0 else "failed", socket.gethostname(), f"exit {code}")
        # adopted: the driver that started it is gone; the job's process may still live
        alive = Path(f"/proc/{job.job_id}").exists() and "submitit" in _cmdline(job.job_id)
        return JobStatus("running" if alive else "failed", socket.gethostname(), "RUNNING" if alive else "GONE")

    def result(self, job_id: str) -> RunResult:
        """The job's RunResult, or JobFailed with the reason and its stderr's tail."""
        job = self._job(job_id)
        try:
            # a DDP job (processes_per_job > 1) has one task per process: rank 0 (task 0) reports
            return RunResult.from_json((job.task(0) if job.num_tasks > 1 else job).result())
        except Exception as exc:  # noqa: BLE001 - submitit's FailedJobError, UncompletedJobError, ...
            state = self.status(job_id).detail
            raise JobFailed(f"job {job_id} ended without a result ({state or type(exc).__name__}): "
                            f"{_first_line(exc)}{self._stderr_tail(job)}") from None

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


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    # submitit's FailedJobError carries the job's traceback: its last line names the error
    return lines[-1] if lines else type(exc).__name__
