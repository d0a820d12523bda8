"""Where everything goes under a results root: the one place that knows the layout. Every
``--results-dir`` of the command line and every ``results_dir`` argument is such a root
(``results/``, or ``results/smoke/`` for the smoke preset)::

    <root>/runs/<run_id>/          a run's files (lmtie.schema), one folder per run
    <root>/tables/<name>.csv       the report's tables (notebooks 02-04)
    <root>/figures/<name>.png      the report's figures
    <root>/subspace/<name>.jsonl   the Figure 1 runs (lmtie.figure1; version 1: .csv)
    <root>/notebooks/              the executed notebooks (lmtie reproduce)
    <root>/jobs/<run_id>/          a run's submitit job: its files and logs (lmtie.executors)
    <root>/checkpoints/            the checkpoints of SLURM jobs (git-ignored)
    <root>/report.html             the report

Other checkpoints are outside it, by default in ``~/.cache/lmtie/checkpoints`` (lmtie.identity).
"""

from __future__ import annotations

import os
from pathlib import Path


class ResultsDir(os.PathLike):
    """A results root and its paths. A path-like: ``Path(ResultsDir(r)) == Path(r)``, so it
    goes wherever a results root does. Raises: nothing (nothing is created or checked)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __fspath__(self) -> str:
        return os.fspath(self.root)

    def __repr__(self) -> str:
        return f"ResultsDir({str(self.root)!r})"

    @property
    def runs(self) -> Path:
        """``<root>/runs``: the run dirs."""
        return self.root / "runs"

    def run(self, run_id: str) -> Path:
        """``<root>/runs/<run_id>``: one run's files."""
        return self.runs / run_id

    def table(self, name: str) -> Path:
        """``<root>/tables/<name>.csv``."""
        return self.root / "tables" / f"{name}.csv"

    def figure(self, name: str) -> Path:
        """``<root>/figures/<name>.png``."""
        return self.root / "figures" / f"{name}.png"

    def subspace(self, name: str) -> Path:
        """``<root>/subspace/<name>.jsonl``: a table of Figure 1 runs."""
        return self.root / "subspace" / f"{name}.jsonl"

    @property
    def notebooks(self) -> Path:
        """``<root>/notebooks``: the executed notebooks."""
        return self.root / "notebooks"

    @property
    def jobs(self) -> Path:
        """``<root>/jobs``: one folder of submitit files per run."""
        return self.root / "jobs"

    @property
    def checkpoints(self) -> Path:
        """``<root>/checkpoints``: the checkpoint root of SLURM jobs, reached from any node."""
        return self.root / "checkpoints"

    @property
    def report(self) -> Path:
        """``<root>/report.html``."""
        return self.root / "report.html"
