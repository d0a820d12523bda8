"""A stand-in for SLURM's ``sbatch``, ``srun``, ``sacct`` and ``scancel``, for tests.

``python fake_slurm.py sbatch SCRIPT`` records its arguments and the batch script in
``$FAKE_SLURM_DIR/sbatch.jsonl``, prints ``Submitted batch job N`` and runs the script in the
background on this machine with the variables SLURM sets (job N, one task), keeping the job's
state (RUNNING, then COMPLETED or FAILED) in ``$FAKE_SLURM_DIR/N.state``, or refuses the job
with ``$FAKE_SLURM_REFUSE`` as its error when that is set; ``srun`` runs its
command with ``--output``/``--error`` as log files; ``sacct -j N ...`` reports the states in
``--parsable2`` form; ``scancel N`` records it. Job ids start at ``$FAKE_SLURM_FIRST_ID``.
"""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

STATE = Path(os.environ["FAKE_SLURM_DIR"])


def sbatch(argv: list[str]) -> None:
    if os.environ.get("FAKE_SLURM_REFUSE"):
        sys.exit(f"sbatch: error: {os.environ['FAKE_SLURM_REFUSE']}")
    script = Path(argv[-1]).read_text()
    job_id = str(int(os.environ["FAKE_SLURM_FIRST_ID"]) + len(list(STATE.glob("*.state"))))
    with (STATE / "sbatch.jsonl").open("a") as log:
        log.write(json.dumps({"argv": argv, "job_id": job_id, "script": script}) + "\n")
    copy, state = STATE / f"{job_id}.sh", STATE / f"{job_id}.state"
    copy.write_text(script)  # submitit moves the original once sbatch returns
    state.write_text("RUNNING")
    env = {**os.environ, "SLURM_JOB_ID": job_id, "SLURM_NTASKS": "1", "SLURM_PROCID": "0",
           "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_JOB_NUM_NODES": "1",
           "SLURM_JOB_NODELIST": "localhost"}
    runner = (f"bash {shlex.quote(str(copy))} && s=COMPLETED || s=FAILED; "
              f"echo $s > {shlex.quote(str(state))}")
    subprocess.Popen(["bash", "-c", runner], env=env, start_new_session=True,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"Submitted batch job {job_id}")


def srun(argv: list[str]) -> int:
    logs = {}
    while argv[0].startswith("--"):
        if argv[0] in ("--output", "--error"):
            logs[argv[0]] = argv[1].replace("%j", os.environ["SLURM_JOB_ID"]).replace("%t", "0")
            argv = argv[2:]
        else:
            argv = argv[1:]
    with open(logs["--output"], "a") as out, open(logs.get("--error", os.devnull), "a") as err:
        return subprocess.call(argv, stdout=out, stderr=err)


def sacct(argv: list[str]) -> None:
    ids = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-j"]
    print("JobID|State|NodeList")
    for job_id in ids:
        state = STATE / f"{job_id}.state"
        if state.is_file():
            print(f"{job_id}|{state.read_text().strip()}|localhost")


def scancel(argv: list[str]) -> None:
    with (STATE / "scancel.jsonl").open("a") as log:
        log.write(json.dumps({"argv": argv}) + "\n")


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "srun":
        sys.exit(srun(args))
    {"sbatch": sbatch, "sacct": sacct, "scancel": scancel}[command](args)
