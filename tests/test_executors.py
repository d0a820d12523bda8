"""lmtie.executors: one submitit job per run, local processes or SLURM (a fake ``sbatch``).

The slow tests run notebook 01 for real in submitit jobs, on the small corpus of ``tiny_ptb``:
a copy of the notebook gets one cell that registers that corpus's token counts in the job's
kernel (the kernel cannot see the test's monkeypatch); everything else is the real notebook.
"""

import json
import os
import random
import signal
import stat
import sys
import time
from pathlib import Path

import nbformat
import pytest
import submitit

from lmtie import atomic, data, executors, identity, pipeline, runs, train
from lmtie.cli import main
from lmtie.config import make_config

TIME_KEYS = {"tokens_per_s", "elapsed_s", "wall_s"}
FAKE_SLURM = Path(__file__).with_name("fake_slurm.py")


def without_times(rows):
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in rows]


@pytest.fixture
def notebooks(tiny_ptb, tmp_path):
    """A notebooks folder: notebook 01 with the tiny corpus registered, and stand-ins for the
    analysis and report notebooks that only record that they ran."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    train_nb = nbformat.read(pipeline.NOTEBOOKS_DIR / pipeline.TRAIN_NOTEBOOK, as_version=4)
    at = next(i for i, c in enumerate(train_nb.cells) if "parameters" in c.metadata.get("tags", []))
    expected = repr(data.EXPECTED["ptb"])  # a Python literal (sha256 None)
    train_nb.cells.insert(at + 1, nbformat.v4.new_code_cell(
        f"from lmtie import data\ndata.EXPECTED['ptb'] = {expected}"))
    nbformat.write(train_nb, folder / pipeline.TRAIN_NOTEBOOK)
    for name in (*pipeline.ANALYSIS_NOTEBOOKS, pipeline.REPORT_NOTEBOOK):
        params = nbformat.v4.new_code_cell('results_dir = ""\npreset = ""')
        params.metadata["tags"] = ["parameters"]
        stand_in = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(
            f"from pathlib import Path\nPath(results_dir, 'ran-{name}').touch()")])
        stand_in.metadata["kernelspec"] = train_nb.metadata["kernelspec"]
        nbformat.write(stand_in, folder / name)
    return folder


def checkpoint_dir(config, out, data_dir):
    """The run's keyed checkpoint folder under ``out/checkpoints`` (as reproduce names it)."""
    sha = data.split_sha256(config.corpus, data_dir)
    return identity.checkpoint_dir_for(config, identity.fingerprint(config, sha),
                                       out / "checkpoints")


def trainings(configs, out, data_dir):
    return {c.run_id: pipeline.train_parameters(
        c, results_dir=str(out), data_dir=str(data_dir), device="cpu", force=False,
        checkpoint_dir=str(checkpoint_dir(c, out, data_dir))) for c in configs}


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """sbatch, srun, sacct and scancel on PATH (tests/fake_slurm.py); yields the folder with
    the record of submissions. Job ids are fresh per test (submitit caches job states)."""
    state, bin_dir = tmp_path / "slurm", tmp_path / "bin"
    state.mkdir()
    bin_dir.mkdir()
    for tool in ("sbatch", "srun", "sacct", "scancel"):
        path = bin_dir / tool
        path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_SLURM}" {tool} "$@"\n')
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM_DIR", str(state))
    monkeypatch.setenv("FAKE_SLURM_FIRST_ID", str(random.randrange(10**6, 10**9, 1000)))
    yield state
    submitit.SlurmJob.watcher.clear()


def submissions(state):
    path = state / "sbatch.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_slurm_parameters_map_the_options_to_submitit():
    params = executors.slurm_parameters(
        partition="gpu", account="lab", gpus_per_job=2, time_min=90,
        options=["qos=high", "cpus_per_task=8", "mem_gb=32.5", "constraint=a100"])
    assert params == {"gpus_per_node": 2, "timeout_min": 90, "slurm_partition": "gpu",
                      "slurm_account": "lab", "slurm_qos": "high", "cpus_per_task": 8,
                      "mem_gb": 32.5, "slurm_constraint": "a100"}
    assert "slurm_partition" not in executors.slurm_parameters()  # None: the cluster's default
    with pytest.raises(ValueError, match=r"KEY=VALUE.*partition"):
        executors.slurm_parameters(options=["gpus"])
    with pytest.raises(ValueError, match="'colour=red'"):
        executors.slurm_parameters(options=["colour=red"])
    assert executors.torch_threads("slurm", 4, 1, {"cpus_per_task": 8}) == 8
    assert executors.torch_threads("slurm", 4, 1, {}) == 0  # torch's default
    assert executors.torch_threads("local", 4, 2, {}) == max(1, executors.cpu_cores() // 2)


def test_checkpoints_go_to_the_home_cache_locally_and_beside_the_results_on_slurm(tmp_path):
    home = runs.DEFAULT_CHECKPOINT_ROOT.expanduser().resolve()
    assert executors.checkpoint_root("local", tmp_path) == home  # as lmtie train
    assert executors.checkpoint_root("slurm", tmp_path) == tmp_path.resolve() / "checkpoints"
    for kind in executors.EXECUTORS:
        assert executors.checkpoint_root(kind, tmp_path, tmp_path / "ckpt") == (
            tmp_path.resolve() / "ckpt")


def test_command_line_options_of_the_executors(capsys, monkeypatch):
    assert executors.command_line_parameters("local") == {}
    assert executors.command_line_parameters(
        "slurm", partition="gpu", options=["qos=high"]) == executors.slurm_parameters(
        partition="gpu", options=["qos=high"])
    for flags, message in ((["--slurm-partition", "gpu"], "need --executor slurm"),
                           (["--slurm-opt", "qos=high"], "need --executor slurm"),
                           (["--executor", "slurm", "--jobs", "4"],
                            "--jobs is for the local executor"),
                           (["--executor", "slurm", "--slurm-time-min", "0"],
                            "--slurm-time-min must be at least 1")):
        assert main(["reproduce", *flags]) == 2  # refused before anything runs
        assert message in capsys.readouterr().err
    calls = []
    monkeypatch.setattr(pipeline, "reproduce", lambda preset, **kw: calls.append(kw))
    assert main(["reproduce", "--checkpoint-root", "/shared/ckpt"]) == 0
    assert calls[0]["checkpoint_root"] == "/shared/ckpt"


def test_a_requeued_job_resumes_and_never_forces(tmp_path):
    job = executors.TrainingJob(Path("01_train.ipynb"), tmp_path / "01_train-x.ipynb",
                                {"force": True, "seed": 3}, "python3", {})
    again = job.checkpoint()
    assert again.function == executors.TrainingJob(
        job.notebook, job.output, {"force": False, "seed": 3}, "python3", {})
    assert (again.args, again.kwargs) == ((), {})


def test_a_second_reproduce_waits_for_a_slurm_job_still_running(tmp_path, fake_slurm):
    job_id = os.environ["FAKE_SLURM_FIRST_ID"]
    (fake_slurm / f"{job_id}.state").write_text("PENDING")
    atomic.write_json(tmp_path / "jobs" / "run-a" / "job.json",
                    {"executor": "slurm", "job_id": job_id, "run_id": "run-a"})
    scheduler = executors.Scheduler("slurm", tmp_path / "jobs", {}, reattach=True)
    found = scheduler.start("run-a", job=None)  # nothing to submit: the job is found
    assert isinstance(found, submitit.SlurmJob) and found.job_id == job_id
    assert submissions(fake_slurm) == []


def test_a_refused_submission_says_why(tmp_path, fake_slurm, monkeypatch):
    monkeypatch.setenv("FAKE_SLURM_REFUSE", "invalid partition specified: gpux")
    job = executors.TrainingJob(Path("01_train.ipynb"), tmp_path / "01_train-run-a.ipynb", {},
                                "python3", {})
    scheduler = executors.Scheduler("slurm", tmp_path / "jobs", {"slurm_partition": "gpux"},
                                     reattach=True)
    with pytest.raises(ValueError, match=r"refused the job: .*invalid partition specified"):
        scheduler.start("run-a", job)
    assert submissions(fake_slurm) == []


def test_failure_summary_names_the_notebook_error():
    trace = ("Traceback ...\nlmtie.pipeline.NotebookError: notebook 01_train.ipynb (01_train x) "
             "failed in cell 3 ['run_dir = fit(']: ValueError: bad\nexecuted notebook with "
             "the traceback: /r/x.ipynb\n----------------------\nYou can check full logs")
    assert executors.failure_summary(RuntimeError(trace)) == (
        "notebook 01_train.ipynb (01_train x) failed in cell 3 ['run_dir = fit(']: ValueError: "
        "bad\nexecuted notebook with the traceback: /r/x.ipynb")
    assert executors.failure_summary(RuntimeError("x\nOSError: disk full\n----")) == (
        "OSError: disk full")


@pytest.mark.slow
def test_local_job_gives_the_numbers_of_an_in_process_run(tmp_path, tiny_ptb, notebooks):
    """The same seed through a submitit job (notebook 01 in a kernel) and through train.fit in
    this process: the same metrics and final numbers."""
    config = make_config("ptb", "small", "real", epochs=2, suffix="exec")
    out = tmp_path / "results"
    failed = executors.train_all(trainings([config], out, tiny_ptb), notebooks / "01_train.ipynb",
                                 out / "notebooks", out / "jobs", executor="local", threads=1)
    assert failed == []
    threads = train.torch.get_num_threads()
    train.torch.set_num_threads(1)  # as the job's kernel (threads=1)
    try:
        here = train.fit(config, data_dir=tiny_ptb, results_dir=tmp_path / "here",
                         checkpoint_dir=tmp_path / "ckpt", device="cpu", progress=False)
    finally:
        train.torch.set_num_threads(threads)
    job_dir = out / "runs" / config.run_id
    assert without_times(atomic.read_jsonl(job_dir / "metrics.jsonl")) == without_times(
        atomic.read_jsonl(here / "metrics.jsonl"))
    final = atomic.read_json(job_dir / "final.json")
    assert without_times([final]) == without_times([atomic.read_json(here / "final.json")])
    assert (checkpoint_dir(config, out, tiny_ptb) / "last.pt").is_file()
    record = atomic.read_json(out / "jobs" / config.run_id / "job.json")
    assert record["executor"] == "local" and Path(record["log"]).is_file()


def _job_process(controller_pid: int) -> int:
    """The task process that submitit's local controller started (the job itself)."""
    children = Path(f"/proc/{controller_pid}/task/{controller_pid}/children")
    deadline = time.time() + 60
    while time.time() < deadline:
        pids = children.read_text().split()
        if pids:
            return int(pids[0])
        time.sleep(0.2)
    raise TimeoutError("the local job never started its task")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_a_preempted_job_is_requeued_and_resumes_from_its_checkpoint(tmp_path, tiny_ptb,
                                                                     notebooks):
    """SIGUSR2 to the job (what SLURM sends before preempting it, and submitit's local
    controller before its time limit): the job asks to be requeued, runs again and fit
    resumes from last.pt, keeping the epochs done before."""
    # signalled as soon as epoch 1 is written: the job cannot finish 6 epochs before that
    config = make_config("ptb", "small", "vd", epochs=6, suffix="requeue")
    out = tmp_path / "results"
    params = trainings([config], out, tiny_ptb)[config.run_id]
    job = executors.TrainingJob(notebooks / "01_train.ipynb",
                                out / "notebooks" / f"01_train-{config.run_id}.ipynb",
                                {**params, "force": True}, "python3", {})
    scheduler = executors.Scheduler("local", out / "jobs", {}, reattach=False)
    submitted = scheduler.start(config.run_id, job)
    metrics = out / "runs" / config.run_id / "metrics.jsonl"
    try:
        deadline = time.time() + 600  # a kernel starting on a busy machine takes minutes
        while not (metrics.is_file() and atomic.read_jsonl(metrics)) and time.time() < deadline:
            time.sleep(0.2)
        before = atomic.read_jsonl(metrics) if metrics.is_file() else []
        assert before, "no epoch finished within ten minutes"
        os.kill(_job_process(int(submitted.job_id)), signal.SIGUSR2)
        submitted.wait()
    finally:
        if not submitted.done():  # a failed test leaves no job training on
            submitted.cancel()
    assert submitted.exception() is None, submitted.exception()
    log = submitted.stdout() + submitted.stderr()
    assert "Requeued job" in log and "Calling checkpoint method" in log
    rows = atomic.read_jsonl(metrics)
    assert [r["epoch"] for r in rows] == list(range(1, config.epochs + 1))
    assert without_times(rows[:len(before)]) == without_times(before)  # kept, not redone
    env = atomic.read_json(out / "runs" / config.run_id / "env.json")
    assert len(env["resumes"]) == 1  # the requeued job resumed (force was dropped)
    assert len(before) < config.epochs, "the job finished before it was signalled"


@pytest.mark.slow
def test_slurm_submits_one_job_per_unfinished_run_with_the_resources(
        tmp_path, tiny_ptb, notebooks, fake_slurm, monkeypatch, capsys):
    configs = [make_config("ptb", "small", v, epochs=1, suffix="slurm") for v in ("vd", "real")]
    monkeypatch.setattr(pipeline, "preset_configs", lambda preset, seeds: configs)
    out = tmp_path / "results"
    parameters = executors.slurm_parameters(partition="gpu", account="lab", gpus_per_job=1,
                                            time_min=30, options=["qos=high"])

    def reproduce():
        pipeline.reproduce("smoke", data_dir=tiny_ptb, results_dir=out, notebooks_dir=notebooks,
                           executor="slurm", executor_parameters=parameters, device="cpu")

    reproduce()
    first = submissions(fake_slurm)
    assert len(first) == 2
    for config, record in zip(configs, first, strict=True):
        script = record["script"]
        for flag in ("--partition=gpu", "--account=lab", "--gpus-per-node=1", "--time=30",
                     "--qos=high", f"--job-name={config.run_id}", "--signal=USR2@90"):
            assert f"#SBATCH {flag}\n" in script
        assert f"{out / 'jobs' / config.run_id}/%j_0_log.out" in script
        assert (out / "runs" / config.run_id / "final.json").is_file()
        assert (checkpoint_dir(config, out, tiny_ptb) / "last.pt").is_file()  # beside results
        log = out / "jobs" / config.run_id / f"{record['job_id']}_0_log.out"
        assert "Job completed successfully" in log.read_text() + log.with_suffix(".err").read_text()
    assert (out / "report.html").is_file() and (out / "ran-00_report.ipynb").is_file()

    # one run unfinished again: only it is submitted, and it resumes from its checkpoint
    (out / "runs" / configs[1].run_id / "final.json").unlink()
    capsys.readouterr()
    reproduce()
    again = submissions(fake_slurm)[2:]
    assert [r["script"].count(f"--job-name={configs[1].run_id}\n") for r in again] == [1]
    assert f"[01_train {configs[0].run_id}] skipped: finished" in capsys.readouterr().out
    env = atomic.read_json(out / "runs" / configs[1].run_id / "env.json")
    assert len(env["resumes"]) == 1

    reproduce()  # everything finished: nothing is submitted
    assert len(submissions(fake_slurm)) == 3
