"""Where ``lmtie reproduce`` trains: one submitit job per run, as local processes or on SLURM.

    train_all(trainings) ─► TrainingJob per unfinished run ─► submitit (AutoExecutor)
        local: ``--jobs`` jobs at a time, each a process on this machine (LocalExecutor)
        slurm: every job submitted at once (``sbatch``); SLURM's queue decides when each runs
    a job: papermill executes notebook 01 for its run (``fit(..., resume=True)``), as always

Per run, ``<results>/jobs/<run_id>/`` holds submitit's files: the pickled job and its result,
the job's logs (``<job_id>_0_log.out`` / ``_log.err``), SLURM's batch script, and ``job.json``
(executor, job id), by which a second ``reproduce`` waits for a SLURM job still pending or
running instead of submitting it again. Preemption and time limits: SLURM (or the local
controller) signals the job with SIGUSR2 some time before killing it; submitit then calls
``TrainingJob.checkpoint`` and requeues the job, which executes the notebook again, and ``fit``
resumes from the run's ``last.pt`` (at most the epoch in progress is lost). The old kernel
(ipykernel polls its parent) exits within a second of its job process. The checkpoints are in
the run's keyed folder ``<root>/<run_id>-<fingerprint[:12]>/`` under :func:`checkpoint_root`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit

from lmtie import atomic, runs, schema
from lmtie.layout import ResultsDir
from lmtie.settings import parse_train_flags

EXECUTORS = ("local", "slurm")
LOCAL_TIMEOUT_MIN = 30 * 24 * 60  # submitit's local default is 2 minutes; runs take hours
MAX_REQUEUES = 50  # time limits a job may run into, resuming from its checkpoint each time
POLL_S = 2.0  # how often job states are looked at (result files; sacct at most every 10 min)
_ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING",
           "SUSPENDED", "PREEMPTED", "REQUEUE_HOLD", "REQUEUE_FED"}  # sacct states: not over


@dataclass(frozen=True)
class TrainingJob(submitit.helpers.Checkpointable):
    """One run's training, as submitit runs it: papermill executes ``notebook`` (01_train)
    with ``parameters`` into ``output``; returns the wall time (s).

    Args:
        environment: variables set (None: removed) before the kernel starts; the local
            executor gives each job the ``CUDA_VISIBLE_DEVICES`` that ``reproduce`` saw
            (submitit's LocalExecutor would hide the GPUs), so ``--jobs N`` share them.

    Raises (in the job): lmtie.pipeline.NotebookError, the notebook failed.
    """

    notebook: Path
    output: Path
    parameters: dict[str, Any]
    kernel_name: str
    environment: dict[str, str | None]

    def __call__(self) -> float:
        from lmtie.pipeline import run_notebook  # here: pipeline imports this module

        for name, value in self.environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        run_id = self.output.stem.removeprefix("01_train-")
        return run_notebook(self.notebook, self.output, self.parameters,
                            kernel_name=self.kernel_name, label=f"01_train {run_id}")

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """The job to requeue after a preemption or time limit: the same notebook, which
        resumes from ``last.pt``; never with ``force`` (it would delete that checkpoint)."""
        again = dataclasses.replace(self, parameters={**self.parameters, "force": False})
        return submitit.helpers.DelayedSubmission(again)


def cpu_cores() -> int:
    """CPU cores this process may use. Raises: nothing."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _option_value(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def slurm_parameters(*, partition: str | None = None, account: str | None = None,
                     gpus_per_job: int = 1, time_min: int = 24 * 60,
                     options: Sequence[str] = ()) -> dict[str, Any]:
    """submitit ``AutoExecutor.update_parameters`` keywords for the SLURM jobs.

    Args:
        gpus_per_job: ``--gpus-per-node``. time_min: ``--time`` in minutes, after which the job
            is requeued and resumes from its checkpoint.
        options: ``KEY=VALUE`` strings: a submitit SLURM parameter (``qos=high``,
            ``cpus_per_task=8``, ``mem_gb=32``, ``constraint=a100``, ``exclude=node3`` ...);
            values that read as numbers are numbers. They win over the other arguments.

    Raises:
        ValueError: an option without ``=`` or with a key submitit does not know (lists them).
    """
    generic = set(submitit.AutoExecutor._typed_parameters()) - {"name"}
    valid = generic | set(submitit.SlurmExecutor._valid_parameters())
    params: dict[str, Any] = {"gpus_per_node": gpus_per_job, "timeout_min": time_min,
                              "slurm_partition": partition, "slurm_account": account}
    for option in options:
        key, sep, value = option.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in valid:
            raise ValueError(f"--slurm-opt {option!r}: expected KEY=VALUE with KEY one of "
                             f"{', '.join(sorted(valid))}")
        params[key if key in generic else f"slurm_{key}"] = _option_value(value.strip())
    return {k: v for k, v in params.items() if v is not None}


def command_line_parameters(executor: str, *, jobs: int = 1, partition: str | None = None,
                            account: str | None = None, gpus_per_job: int | None = None,
                            time_min: int | None = None, options: Sequence[str] = ()
                            ) -> dict[str, Any]:
    """submitit parameters of ``lmtie reproduce``'s ``--executor``, ``--jobs`` and
    ``--slurm-*`` options (None: not given): ``{}`` for local jobs, :func:`slurm_parameters`
    (its defaults for what is not given) for SLURM jobs.

    Raises:
        ValueError: a SLURM option with the local executor, ``jobs`` other than 1 with slurm,
            or a bad ``--slurm-opt`` (:func:`slurm_parameters`).
    """
    given = {k: v for k, v in (("partition", partition), ("account", account),
                               ("gpus_per_job", gpus_per_job), ("time_min", time_min))
             if v is not None}
    if executor == "local":
        if given or options:
            raise ValueError("--slurm-* options need --executor slurm")
        return {}
    if jobs != 1:
        raise ValueError("--jobs is for the local executor; with --executor slurm every run "
                         "is its own job and SLURM's queue decides how many run at once")
    return slurm_parameters(**given, options=options)


def failure_summary(error: Exception) -> str:
    """The lines of a failed job's error worth printing: the NotebookError's message (names
    the notebook, the cell and the executed copy), else the trace's last line."""
    text = str(error)
    if "NotebookError: " in text:
        return text.split("NotebookError: ", 1)[1].split("\n---", 1)[0].strip()
    lines = [line for line in text.splitlines() if line.strip() and set(line) != {"-"}]
    return lines[-1] if lines else type(error).__name__


class Scheduler:
    """Starts (or finds) each run's job and follows it to the end."""

    def __init__(self, kind: str, jobs_root: Path, parameters: dict[str, Any],
                 reattach: bool) -> None:
        if kind not in EXECUTORS:
            raise ValueError(f"unknown executor {kind!r}; choose {' or '.join(EXECUTORS)}")
        self.kind, self.jobs_root, self.reattach = kind, jobs_root, reattach
        self.parameters = ({"timeout_min": LOCAL_TIMEOUT_MIN, **parameters}
                           if kind == "local" else parameters)

    def start(self, run_id: str, job: TrainingJob) -> submitit.Job:
        """Submit ``job`` for ``run_id`` and record it in ``jobs_root/<run_id>/job.json``; or,
        with ``reattach``, return the run's earlier SLURM job when sacct says it is still
        pending or running (a job sacct does not know is submitted again).

        Raises:
            ValueError: the submission was refused (sbatch's message: a partition, account or
                option the cluster does not accept).
        """
        folder = self.jobs_root / run_id
        record = folder / "job.json"
        previous = atomic.read_json(record) if record.is_file() else {}
        if self.reattach and self.kind == "slurm" and previous.get("executor") == "slurm":
            found = submitit.SlurmJob(folder=folder, job_id=str(previous["job_id"]))
            state = found.get_info(mode="force").get("State", "UNKNOWN").split()[0]
            if state in _ACTIVE:
                print(f"[01_train {run_id}] {state.lower()} as SLURM job {found.job_id}: "
                      "waiting for it (not submitted again)", flush=True)
                return found
        executor = submitit.AutoExecutor(folder, cluster=self.kind,
                                         **{f"{self.kind}_max_num_timeout": MAX_REQUEUES})
        executor.update_parameters(name=run_id, **self.parameters)
        try:
            submitted = executor.submit(job)
        except submitit.core.utils.FailedJobError as err:
            raise ValueError(f"{run_id}: the {self.kind} executor refused the job: {err}; "
                             "check the --slurm-* options") from err
        atomic.write_json(record, {"executor": self.kind, "job_id": submitted.job_id,
                                 "run_id": run_id, "log": str(submitted.paths.stdout)})
        print(f"[01_train {run_id}] submitted: {self.kind} job {submitted.job_id} "
              f"(log: {submitted.paths.stdout})", flush=True)
        return submitted


def checkpoint_root(executor: str, results_root: Path,
                    given: str | Path | None = None) -> Path:
    """The folder under which ``reproduce`` keeps each run's checkpoints, in the run's keyed
    folder ``<root>/<run_id>-<fingerprint[:12]>/`` (:func:`lmtie.identity.checkpoint_dir_for`,
    the one naming of every command): ``given`` (``--checkpoint-root``); else, for local jobs,
    ``~/.cache/lmtie/checkpoints``, where ``lmtie train``, ``evaluate`` and ``diagnose`` look
    by default; for SLURM jobs ``<results_root>/checkpoints`` (git-ignored): a job writes its
    run files under the results root, so it reaches that folder from any node, where a home
    cache may be per node or too small. Returns an absolute path. Raises: nothing."""
    if given is None:
        local = executor == "local"
        given = runs.DEFAULT_CHECKPOINT_ROOT if local else ResultsDir(results_root).checkpoints
    return Path(given).expanduser().resolve()


def torch_threads(executor: str, n_runs: int, jobs: int, parameters: dict[str, Any]) -> int:
    """Torch threads per training (notebook 01's ``threads``; 0: torch's default). Local:
    ``max(1, cores // min(jobs, n_runs))`` (a lone last run gets every core); SLURM:
    ``cpus_per_task`` if set, else torch's default, which follows the job's allocation.
    Raises: nothing."""
    if executor == "local":
        return max(1, cpu_cores() // max(1, min(jobs, n_runs)))
    return int(parameters.get("cpus_per_task", 0))


class _Epochs:
    """One console line per epoch a run completes, read from its ``metrics.jsonl`` (the job
    writes it; this process only reads)."""

    def __init__(self, trainings: dict[str, dict[str, Any]], notebook: Path) -> None:
        # results_dir is relative to the notebooks' folder, where the notebook runs
        self.files = {run_id: ResultsDir(notebook.parent / p["results_dir"]).run(run_id)
                      / schema.METRICS for run_id, p in trainings.items()}
        self.epochs = {run_id: parse_train_flags(p["flags"]).epochs
                       for run_id, p in trainings.items()}
        self.seen = {run_id: len(self._rows(run_id)) for run_id in trainings}

    def _rows(self, run_id: str) -> list[dict[str, Any]]:
        try:
            return atomic.read_jsonl(self.files[run_id])
        except (FileNotFoundError, ValueError):  # not started yet, or a line half written
            return []

    def report(self, run_id: str) -> None:
        """Print the epochs ``run_id`` completed since the last look."""
        rows = self._rows(run_id)
        for row in rows[self.seen[run_id]:]:
            print(f"[01_train {run_id}] epoch {row['epoch']} of {self.epochs[run_id]}: "
                  f"validation perplexity {row['valid_ppl']:.2f} ({row['elapsed_s']:.0f} s)",
                  flush=True)
        self.seen[run_id] = len(rows)


def train_all(trainings: dict[str, dict[str, Any]], notebook: Path, executed: Path,
              jobs_root: Path, *, executor: str = "local", jobs: int = 1,
              parameters: dict[str, Any] | None = None, kernel_name: str = "python3",
              reattach: bool = True, threads: int | None = None) -> list[str]:
    """Run ``notebook`` (01_train) once per run as a submitit job; wait for all of them.

    Executed notebooks go to ``executed/01_train-<run_id>.ipynb``, submitit's files and the
    job logs to ``jobs_root/<run_id>/``. Prints a line on the executor and the torch threads
    of each training, when a job is submitted, per epoch a run completes, and when a job ends
    (with its error and log when it failed).

    Args:
        trainings: run_id → notebook 01's parameters but ``threads``
            (``pipeline.train_parameters``; ``results_dir`` absolute or relative to
            ``notebook``'s folder).
        executor: ``local`` (``jobs`` ≥ 1 at a time, processes on this machine) or ``slurm``
            (all submitted at once).
        parameters: submitit parameters (:func:`slurm_parameters`; local: ``timeout_min``).
        reattach: a run whose earlier SLURM job is still pending or running is waited for,
            not submitted again (``reproduce --force`` passes False).
        threads: torch threads of every training; None: :func:`torch_threads`.

    Returns:
        The run_ids whose job failed.

    Raises:
        ValueError: unknown executor, a submission refused (jobs submitted before it keep
            running; a second ``reproduce`` waits for them).
        KeyboardInterrupt: local jobs are cancelled first; SLURM jobs keep running (a second
            ``reproduce`` waits for them).
    """
    parameters = parameters or {}
    scheduler = Scheduler(executor, jobs_root, parameters, reattach)
    local = executor == "local"
    slots = min(jobs, len(trainings)) if local else len(trainings)
    if threads is None:
        threads = torch_threads(executor, len(trainings), jobs, parameters)
    print(f"training {len(trainings)} run(s) on the {executor} executor"
          + (f", {slots} at a time" if local else "")
          + f", {threads or 'default'} torch thread(s) each", flush=True)
    environment = ({"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")}
                   if local else {})
    epochs = _Epochs(trainings, notebook)
    pending, running, failed = list(trainings), {}, []
    try:
        while pending or running:
            while pending and len(running) < slots:
                run_id = pending.pop(0)
                job = TrainingJob(notebook, executed / f"01_train-{run_id}.ipynb",
                                  {**trainings[run_id], "threads": threads}, kernel_name,
                                  environment)
                running[run_id] = scheduler.start(run_id, job)
            for run_id, job in list(running.items()):
                epochs.report(run_id)
                if not job.done():
                    continue
                del running[run_id]
                error = job.exception()
                if error is None:
                    print(f"[01_train {run_id}] finished in {job.result():.1f} s", flush=True)
                else:
                    failed.append(run_id)
                    print(f"[01_train {run_id}] FAILED: {failure_summary(error)}\n  job log: "
                          f"{job.paths.stdout}", flush=True)
            if running:
                time.sleep(POLL_S)
    except KeyboardInterrupt:
        if local:
            for job in running.values():
                job.cancel()
        else:
            print(f"{len(running)} SLURM job(s) keep running; run the same command again to "
                  "wait for them and render the report", flush=True)
        raise
    return failed
