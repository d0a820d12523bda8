"""``lmtie reproduce``: papermill over the notebooks, then the HTML report.

    preset_configs(preset, seeds) ─► 01_train.ipynb per unfinished run, one submitit job each
        (lmtie.executors: local processes, ``--jobs`` at a time, or SLURM jobs; one console
        line per epoch) ─► 02_perplexity_tables, 03_subspace_distance, 04_qualitative
        ─► 00_report ─► nbconvert (an offline page: no script, no network)

Everything goes under one results root (``results/``, or ``results/smoke/`` for the smoke
preset): ``runs/``, ``tables/``, ``figures/``, ``notebooks/`` (the executed copies),
``report.html``, and, never committed, ``jobs/<run_id>/`` (submitit's files, the job logs).
Finished runs are skipped; an interrupted run resumes (``fit(resume=True)``); the report shows
what finished when some job failed. The same run files give the same bytes: executed
notebooks keep no timestamps and name the results root relative to ``notebooks/``.
"""

from __future__ import annotations

import os
import re
import shlex
import tempfile
import time
from pathlib import Path
from typing import Any

import jinja2
import nbformat
import papermill
from nbconvert import HTMLExporter
from traitlets.config import Config as KernelConfig

from lmtie import atomic, download, executors, identity
from lmtie.config import Config, preset_configs
from lmtie.data import find_split_files, resolve_data_dir, split_sha256
from lmtie.layout import ResultsDir
from lmtie.settings import train_flags

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
TRAIN_NOTEBOOK = "01_train.ipynb"
ANALYSIS_NOTEBOOKS = ("02_perplexity_tables.ipynb", "03_subspace_distance.ipynb",
                      "04_qualitative.ipynb")
REPORT_NOTEBOOK = "00_report.ipynb"
KERNEL_NAME = "python3"  # with ipykernel in the running environment: this interpreter
# The report page: JupyterLab's look without its scripts (require.js, MathJax and mermaid
# come from a CDN; the report has no maths), so it renders offline; and some house style.
REPORT_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}
<style type="text/css">
main { max-width: 1200px; margin: 0 auto; }
.jp-RenderedHTMLCommon table { font-size: 13px; }
.jp-RenderedHTMLCommon caption { caption-side: bottom; text-align: left; padding-top: 4px; }
.jp-RenderedHTMLCommon pre { overflow-x: auto; }
.jp-RenderedHTMLCommon code { white-space: normal; }
main .jp-RenderedHTMLCommon > img { display: inline-block; vertical-align: top; margin: 4px; }
</style>
{%- endblock extra_css -%}
"""
_VOLATILE = ("start_time", "end_time", "duration")  # papermill's timings


class NotebookError(RuntimeError):
    """A notebook raised: the message names the notebook, the failing cell and its error, and
    where the executed copy (with the traceback) was kept."""


def default_results_dir(preset: str) -> Path:
    """``results/smoke`` for the smoke preset (git-ignored), else ``results`` (relative to the
    current folder: run from the repository root). Raises: nothing."""
    return Path("results", "smoke") if preset == "smoke" else Path("results")


def train_parameters(config: Config, **options: Any) -> dict[str, Any]:
    """Notebook 01's parameters for ``config``: ``flags``, the ``lmtie train`` flags that make
    it (:func:`lmtie.settings.train_flags`, parsed back by the notebook), plus ``options``
    (paths, device, threads...).

    Raises:
        ValueError: ``config`` changes a field that ``lmtie train`` has no flag for.
    """
    return {"flags": shlex.join(train_flags(config)), **options}


def is_finished(run_dir: Path, config: Config) -> bool:
    """True when ``run_dir`` holds ``config``'s finished run: ``config.json`` equal to
    ``config`` and a ``final.json`` written after it (``fit`` rewrites ``config.json`` on every
    start, so an older ``final.json`` belongs to an earlier, replaced run).

    Raises:
        ValueError: a corrupt ``config.json`` (names it).
    """
    config_path, final_path = run_dir / "config.json", run_dir / "final.json"
    if not (config_path.is_file() and final_path.is_file()):
        return False
    return (Config.from_dict(atomic.read_json(config_path)) == config
            and final_path.stat().st_mtime_ns >= config_path.stat().st_mtime_ns)


def train_run(config: Config, results_dir: str | Path, *, force: bool = False,
              **fit_args: Any) -> Path:
    """Train ``config`` into ``<results_dir>/runs/<run_id>/`` (resuming an interrupted run),
    unless that run has finished already (:func:`is_finished`): then nothing is trained or
    rewritten, and a line says so. Returns the run dir.

    Args:
        force: retrain from scratch even a finished run.
        fit_args: passed to :func:`lmtie.train.fit` (data_dir, checkpoint_dir, device).

    Raises:
        ValueError, FileNotFoundError, FloatingPointError: as :func:`lmtie.train.fit`.
    """
    run_dir = ResultsDir(results_dir).run(config.run_id)
    if not force and is_finished(run_dir, config):
        print(f"{config.run_id}: finished already ({run_dir / 'final.json'}); nothing to "
              "train (force = True retrains it)")
        return run_dir
    from lmtie.train import fit  # torch only when training

    return fit(config, results_dir=results_dir, resume=True, force=force,
               progress=False, **fit_args)


def ensure_corpora(corpora: set[str], data_dir: Path) -> None:
    """Download each missing corpus into ``data_dir`` first, saying so.

    Raises:
        lmtie.download.DownloadError: no network (the message says how to download by hand).
        ValueError: the downloaded archive fails verification.
    """
    for corpus in sorted(corpora):
        try:
            find_split_files(corpus, data_dir)
        except FileNotFoundError:
            print(f"{corpus}: not in {data_dir}; downloading it "
                  f"(lmtie data download {corpus} --dest {data_dir})", flush=True)
            download.download_corpus(corpus, data_dir)


def run_notebook(source: Path, output: Path, parameters: dict[str, Any], *,
                 kernel_name: str = KERNEL_NAME, label: str | None = None) -> float:
    """Execute ``source`` with papermill into ``output`` (cwd: ``source``'s folder, as in
    Jupyter); print one line when it starts and one when it ends; return the wall time (s).

    Raises:
        NotebookError: a cell raised; the executed notebook is kept at ``output``.
    """
    label = label or source.stem
    output.parent.mkdir(parents=True, exist_ok=True)
    print(f"[{label}] started", flush=True)
    start = time.perf_counter()
    # Kernels talk over Unix sockets in a fresh folder: quiet (no "TCP without encryption"
    # warning), private, and never shared by kernels running in parallel. Windows: TCP.
    try:
        with tempfile.TemporaryDirectory(prefix="lmtie-kernel-") as sockets:
            transport = ({"transport": "tcp"} if os.name == "nt"
                         else {"transport": "ipc", "ip": str(Path(sockets) / "kernel")})
            papermill.execute_notebook(
                str(source), str(output), parameters=parameters, kernel_name=kernel_name,
                progress_bar=False, log_output=False, cwd=str(source.parent),
                config=KernelConfig({"KernelManager": transport}))
    except papermill.PapermillExecutionError as err:
        print(f"[{label}] FAILED after {time.perf_counter() - start:.0f} s", flush=True)
        hint = ("\nthe kernel runs another Python: install one for this environment with "
                "`python -m ipykernel install --sys-prefix --name lmtie` and pass "
                "kernel_name='lmtie'" if err.ename == "ModuleNotFoundError" else "")
        first_line = (err.source or "").strip().splitlines()[:1]
        raise NotebookError(
            f"notebook {source.name} ({label}) failed in cell {err.exec_count} "
            f"{first_line}: {err.ename}: {err.evalue}\nexecuted notebook with the "
            f"traceback: {output}{hint}") from None
    _make_reproducible(output)
    wall = time.perf_counter() - start
    print(f"[{label}] finished in {wall:.1f} s", flush=True)
    return wall


def _make_reproducible(notebook: Path) -> None:
    """Take out of an executed notebook what changes from one execution to the next:
    papermill's and the kernel's timestamps, the random id of the injected-parameters cell,
    object addresses in plain-text reprs (``<Styler at 0x7f…>``), absolute paths; so that the
    same inputs give the same file in any clone."""
    nb = nbformat.read(notebook, as_version=4)
    paths = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):  # relative to the executed copy
        if paths.get(key):
            paths[key] = os.path.relpath(paths[key], notebook.parent.resolve())
    for meta in (paths, *(c.metadata.get("papermill", {}) for c in nb.cells)):
        for key in _VOLATILE:
            meta.pop(key, None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell.id = "injected-parameters"
        for output in cell.get("outputs", []):
            text = output.get("data", {}).get("text/plain")
            if isinstance(text, str):
                output["data"]["text/plain"] = re.sub(r" at 0x[0-9a-f]+>", ">", text)
    atomic.write_text(notebook, nbformat.writes(nb) + "\n")


def render_html(notebook: Path, html: Path) -> None:
    """nbconvert ``notebook`` (executed) to a self-contained ``html`` page without code cells
    and without scripts (``REPORT_TEMPLATE``): tables as HTML, figures as embedded PNGs; it
    renders with no network.

    Raises:
        FileNotFoundError: ``notebook`` does not exist.
    """
    exporter = HTMLExporter(extra_loaders=[jinja2.DictLoader({"report.html.j2":
                                                               REPORT_TEMPLATE})],
                            template_file="report.html.j2", exclude_input=True,
                            exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_filename(str(notebook))
    atomic.write_text(html, body)


def reproduce(preset: str, *, seeds: tuple[int, ...] = (1,), jobs: int = 1,
              force: bool = False, data_dir: str | Path | None = None,
              results_dir: str | Path | None = None, checkpoint_root: str | Path | None = None,
              device: str = "auto", notebooks_dir: str | Path | None = None,
              kernel_name: str = KERNEL_NAME, report_only: bool = False,
              executor: str = "local", executor_parameters: dict[str, Any] | None = None
              ) -> Path:
    """Train the runs of ``preset`` for each of ``seeds`` through notebook 01, run the
    analysis notebooks and render ``<results_dir>/report.html``; returns its path. The report
    shows every seed of the preset found under ``<results_dir>/runs/``.

    Args:
        preset: ``smoke`` | ``cpu`` | ``paper`` (:func:`lmtie.config.preset_configs`).
        seeds: the seeds to train (finished runs are skipped).
        jobs: local executor: trainings run in parallel (on a GPU they share it); each gets
            ``max(1, cores // jobs)`` torch threads.
        force: retrain finished runs from scratch (deletes their files and checkpoints).
        data_dir: corpora (default ``$LMTIE_DATA_DIR``, else ``./data``); missing ones are
            downloaded first.
        results_dir: the results root (runs under ``runs/``); default
            :func:`default_results_dir` (``results/smoke`` or ``results``).
        checkpoint_root: checkpoints go to ``<checkpoint_root>/<run_id>-<fingerprint>/``
            (:func:`lmtie.identity.checkpoint_dir_for`); default
            :func:`lmtie.executors.checkpoint_root`: the home cache for local jobs,
            ``<results_dir>/checkpoints`` for SLURM jobs.
        device: ``auto`` | ``cpu`` | ``cuda`` for the trainings.
        notebooks_dir: where the notebooks are (default: the repository's ``notebooks/``).
        kernel_name: Jupyter kernel that papermill starts.
        report_only: train nothing; re-render tables, figures and the report from the run
            files already in ``<results_dir>/runs/``.
        executor: ``local`` | ``slurm`` (:mod:`lmtie.executors`); job logs and submitit's
            files go to ``<results_dir>/jobs/<run_id>/``.
        executor_parameters: submitit parameters (:func:`lmtie.executors.slurm_parameters`).

    Raises:
        ValueError: unknown preset or executor, a seed below 1, ``jobs < 1``, a corrupt
            ``config.json``, a SLURM submission refused.
        FileNotFoundError: a notebook is missing (``lmtie`` not installed from a checkout).
        NotebookError: a notebook failed (names it and the cell; the executed copy is kept);
            for trainings, after the report of the runs that finished is rendered.
        lmtie.download.DownloadError: a corpus is missing and cannot be downloaded.
    """
    start = time.perf_counter()
    configs = preset_configs(preset, seeds)
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    source = Path(notebooks_dir or NOTEBOOKS_DIR)
    for name in (TRAIN_NOTEBOOK, *ANALYSIS_NOTEBOOKS, REPORT_NOTEBOOK):
        if not (source / name).is_file():
            raise FileNotFoundError(f"{source / name}: not found; run from a checkout of lmtie "
                                    "installed with `pip install -e .`")
    out = ResultsDir(Path(results_dir or default_results_dir(preset)).expanduser().resolve())
    from_notebooks = os.path.relpath(out, source.resolve())  # the same text in every clone
    todo = []
    for config in [] if report_only else configs:
        if force or not is_finished(out.run(config.run_id), config):
            todo.append(config)
        else:
            print(f"[01_train {config.run_id}] skipped: finished "
                  f"({out.run(config.run_id) / 'final.json'})", flush=True)
    failed = []
    if todo:
        data_root = resolve_data_dir(data_dir)
        ensure_corpora({c.corpus for c in todo}, data_root)
        root = executors.checkpoint_root(executor, out, checkpoint_root)
        shas = {corpus: split_sha256(corpus, data_root) for corpus in {c.corpus for c in todo}}
        trainings = {c.run_id: train_parameters(
            c, results_dir=from_notebooks, data_dir=str(data_root), device=device, force=force,
            checkpoint_dir=str(identity.checkpoint_dir_for(
                c, identity.fingerprint(c, shas[c.corpus]), root))) for c in todo}
        failed = executors.train_all(trainings, source / TRAIN_NOTEBOOK, out.notebooks,
                                     out.jobs, executor=executor, jobs=jobs,
                                     parameters=executor_parameters or {},
                                     kernel_name=kernel_name, reattach=not force)
    if failed and not any(is_finished(out.run(c.run_id), c) for c in configs):
        raise NotebookError(f"no run of the {preset} preset has finished; failed: "
                            f"{', '.join(failed)} (their errors and job logs are above)")
    if failed:
        print(f"reproduce --preset {preset}: {len(failed)} run(s) missing from the report "
              f"(failed: {', '.join(failed)}); rendering it with the runs that finished",
              flush=True)
    for name in (*ANALYSIS_NOTEBOOKS, REPORT_NOTEBOOK):
        run_notebook(source / name, out.notebooks / name,
                     {"results_dir": from_notebooks, "preset": preset},
                     kernel_name=kernel_name)
    html = out.report
    render_html(out.notebooks / REPORT_NOTEBOOK, html)
    print(f"reproduce --preset {preset}: done in {time.perf_counter() - start:.0f} s; "
          f"report: {html}", flush=True)
    if failed:
        raise NotebookError(f"{len(failed)} training(s) failed: {', '.join(failed)} (errors "
                            f"and job logs above; the report shows the others: {html}); run "
                            "the same command again to retry them")
    return html
