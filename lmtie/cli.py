"""lmtie: train, evaluate and diagnose the paper's models, reproduce its tables and figures as
one HTML report, check or download the corpora, run the Figure 1 experiment.

Commands: train | evaluate | diagnose | reproduce | data | subspace (lmtie COMMAND --help).
--results-dir is always a results root (runs in <results-dir>/runs/); --preset always names
a preset of lmtie reproduce (smoke | cpu | paper).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lmtie import atomic, settings
from lmtie.config import CORPORA, DEVICES, PRESETS

# Heavy imports (torch, pandas, papermill) wait for the command that needs them, so that
# `lmtie --help` answers at once.


class _Renamed(argparse.Action):
    """An option that was renamed: using it stops with the new name and its meaning."""

    def __init__(self, option_strings, dest, new="", **kwargs):
        self.new = new
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} was renamed: {self.new}")


def _seeds(text: str) -> tuple[int, ...]:
    """``--seeds 1,2,3`` → (1, 2, 3)."""
    try:
        seeds = tuple(int(s) for s in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds are comma-separated integers, e.g. 1,2,3; "
                                         f"got {text!r}") from None
    if min(seeds) < 1:
        raise argparse.ArgumentTypeError(f"seeds must be at least 1, got {text!r}")
    return seeds


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=DEVICES,
                   help="auto = CUDA when available (default), else CPU")


def _add_common(p: argparse.ArgumentParser) -> None:
    _add_device(p)
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--data-dir", default=None,
                   help="corpora folder (default: $LMTIE_DATA_DIR, else ./data)")
    p.add_argument("--checkpoint-dir", default=None,
                   help="folder of the run's last.pt and best.pt (default: "
                        "~/.cache/lmtie/checkpoints/<run_id>-<fingerprint>/)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmtie", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train one variant and write its run dir")
    settings.add_arguments(train)
    train.add_argument("--preset", action=_Renamed, new="--suffix names the run_id suffix "
                       "(presets are `lmtie reproduce --preset`)")
    train.add_argument("--results-dir", default="results",
                       help="results root: the run goes to <results-dir>/runs/<run_id>/ "
                            "(default: results)")
    train.add_argument("--resume", action="store_true",
                       help="continue from the last completed epoch (a checkpoint of this "
                            "run's fingerprint); without one, start only a run dir that "
                            "records no epoch")
    train.add_argument("--force", action="store_true",
                       help="start again from scratch, deleting this run's files and "
                            "checkpoints (never while another process holds the run)")
    _add_common(train)

    ev = sub.add_parser("evaluate", help="re-measure a run's test perplexity from best.pt")
    ev.add_argument("run_dir", type=Path)
    _add_common(ev)

    dg = sub.add_parser("diagnose", help="validation-only diagnostics of one checkpoint: "
                        "perplexity by batch size, temperature, target ranks, loss tail")
    dg.add_argument("run_dir", type=Path)
    dg.add_argument("--checkpoint", default="last", choices=("last", "best"),
                    help="which checkpoint of the run (default: last)")
    _add_common(dg)

    rep = sub.add_parser("reproduce", help="train a preset's runs, then render the report")
    rep.add_argument("--preset", default="smoke", choices=PRESETS,
                     help="smoke (default): 4 short PTB runs (minutes); cpu: PTB small, full "
                          "schedule (hours); paper: every Table 1 cell (GPU)")
    rep.add_argument("--seeds", type=_seeds, default=(1,),
                     help="seeds to train, comma-separated, e.g. 1,2,3 (default: 1); the "
                          "report shows every seed found")
    rep.add_argument("--executor", default="local", choices=("local", "slurm"),
                     help="local (default): one process per training on this machine; slurm: "
                          "one SLURM job per training (submitit), requeued from its checkpoint "
                          "when preempted or out of time")
    rep.add_argument("--jobs", type=int, default=1,
                     help="local executor: trainings run in parallel (default: 1; on one GPU "
                          "they share it, on a CPU its cores)")
    rep.add_argument("--checkpoint-root", default=None,
                     help="checkpoints go to <root>/<run_id>-<fingerprint>/ (default: "
                          "~/.cache/lmtie/checkpoints with the local executor, as lmtie train; "
                          "<results-dir>/checkpoints with slurm, which every node reaches)")
    slurm = rep.add_argument_group("SLURM (with --executor slurm)")
    slurm.add_argument("--slurm-partition", default=None)
    slurm.add_argument("--slurm-account", default=None)
    slurm.add_argument("--slurm-gpus-per-job", type=int, default=None, help="default: 1")
    slurm.add_argument("--slurm-time-min", type=int, default=None,
                       help="time limit of a job (minutes; default a day): the job is requeued "
                            "and resumes from its last epoch when it runs out")
    slurm.add_argument("--slurm-opt", action="append", default=[], metavar="KEY=VALUE",
                       help="any submitit SLURM parameter, e.g. qos=high, cpus_per_task=8, "
                            "mem_gb=32, constraint=a100 (repeatable)")
    rep.add_argument("--force", action="store_true", help="retrain finished runs")
    rep.add_argument("--report-only", action="store_true",
                     help="train nothing; re-render tables, figures and report.html")
    rep.add_argument("--results-dir", default=None,
                     help="results root (default: results/smoke for the smoke preset, else "
                          "results)")
    rep.add_argument("--output-dir", action=_Renamed, new="--results-dir")
    _add_device(rep)
    rep.add_argument("--data-dir", default=None,
                     help="corpora folder (default: $LMTIE_DATA_DIR, else ./data; "
                          "downloaded when missing)")

    data = sub.add_parser("data", help="check or download the corpora")
    data.add_argument("action", choices=("check", "download"))
    data.add_argument("corpus", nargs="?", choices=CORPORA, default=None,
                      help="default: every corpus (check) / required (download)")
    data.add_argument("--dest", "--data-dir", dest="data_dir", default=None,
                      help="corpora folder (default: $LMTIE_DATA_DIR, else ./data)")
    data.add_argument("--url", default=None,
                      help="download: the archive's URL or local path (default: the canonical "
                           "one)")

    sp = sub.add_parser("subspace", help="Sec. 6.2 / Figure 1: distance(Lᵀ, W) sweeps")
    sp.add_argument("--sweep", default="both", choices=("a", "b", "both", "convergence"),
                    help="a: beta sweep at tau = 10 (Fig. 1a); b: tau sweep at beta = 1 (1b); "
                         "convergence: beta = 1, tau = 10 for 100 epochs, its own table "
                         "(subspace/convergence.jsonl)")
    sp.add_argument("--seeds", type=int, default=3, help="runs per point (seeds 1..N)")
    sp.add_argument("--results-dir", default="results",
                    help="results root: writes subspace/runs.jsonl and figures/figure1{a,b}.png "
                         "under it (default: results)")
    sp.add_argument("--epochs", type=int, default=None,
                    help="the most epochs a run trains; it stops earlier at the 4th halving "
                         "of its learning rate on plateaus of its training loss (docs/"
                         "figure1.md; default: 20; 100 for --sweep convergence)")
    _add_device(sp)
    sp.add_argument("--threads", type=int, default=1,
                    help="torch threads per job, also used by scipy's distance (default 1)")
    sp.add_argument("--jobs", type=int, default=1,
                    help="runs trained in parallel, one process each (default 1)")
    sp.add_argument("--checkpoint-root", default=None,
                    help="each run in progress keeps its last epoch under <root>/figure1-<key>/ "
                         "and a new start continues it (default: ~/.cache/lmtie/checkpoints)")
    sp.add_argument("--plot-only", action="store_true",
                    help="train nothing; draw the figures from subspace/runs.jsonl as it is")
    sp.add_argument("--data-dir", default=None,
                    help="corpora folder (default: $LMTIE_DATA_DIR, else ./data)")
    sp.add_argument("--quiet", action="store_true", help="no line per finished run")
    return parser


def _check_flags(args: argparse.Namespace) -> None:
    """Refuse impossible flag values before anything runs, naming the flag.

    Raises:
        ValueError: a count below 1 (the values of ``lmtie train``'s settings are checked by
            :func:`lmtie.settings.train_config`).
    """
    for name in ("threads", "epochs", "jobs", "seeds", "slurm_time_min"):
        value = getattr(args, name, None)  # reproduce --seeds is a tuple of seeds
        values = value if isinstance(value, tuple) else (value,)
        if any(v is not None and v < 1 for v in values):
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got "
                             f"{','.join(map(str, values))}")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 with one clear line on stderr for
    every error a user can fix: bad values, missing files, locked or mismatched runs, a full
    disk)."""
    args = _parser().parse_args(argv)
    from lmtie.download import DownloadError
    from lmtie.lock import RunLockedError

    try:
        _check_flags(args)
        if getattr(args, "threads", None):
            import torch

            torch.set_num_threads(args.threads)
        return _run(args)
    except (ValueError, OSError, FloatingPointError, DownloadError, RunLockedError) as err:
        print(f"lmtie {args.command}: error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from lmtie import train

    if args.command == "train":
        if Path(args.results_dir).name == "runs":  # the old meaning: the runs folder itself
            raise ValueError(f"--results-dir is the results root now (runs go to "
                             f"<results-dir>/runs/): pass {Path(args.results_dir).parent}")
        run_dir = train.fit(settings.train_config(vars(args)), data_dir=args.data_dir,
                            results_dir=args.results_dir,
                            checkpoint_dir=args.checkpoint_dir,
                            device=args.device, resume=args.resume, force=args.force,
                            progress=not args.quiet)
        print(json.dumps(atomic.read_json(run_dir / "final.json"), indent=2))
    elif args.command == "evaluate":
        final = train.evaluate_run(args.run_dir, data_dir=args.data_dir,
                                   checkpoint_dir=args.checkpoint_dir, device=args.device,
                                   progress=not args.quiet)
        print(json.dumps(final, indent=2))
    elif args.command == "diagnose":
        from lmtie.diagnose import diagnose

        entry = diagnose(args.run_dir, checkpoint=args.checkpoint, data_dir=args.data_dir,
                         checkpoint_dir=args.checkpoint_dir, device=args.device)
        print(json.dumps(entry, indent=2))
    elif args.command == "reproduce":
        from lmtie import executors, pipeline  # papermill, submitit only when reproducing

        parameters = executors.command_line_parameters(
            args.executor, jobs=args.jobs, partition=args.slurm_partition,
            account=args.slurm_account, gpus_per_job=args.slurm_gpus_per_job,
            time_min=args.slurm_time_min, options=args.slurm_opt)
        try:
            pipeline.reproduce(args.preset, seeds=args.seeds, jobs=args.jobs,
                               force=args.force, data_dir=args.data_dir,
                               results_dir=args.results_dir, device=args.device,
                               report_only=args.report_only,
                               checkpoint_root=args.checkpoint_root, executor=args.executor,
                               executor_parameters=parameters)
        except pipeline.NotebookError as err:
            raise ValueError(str(err)) from err
    elif args.command == "data":
        _data(args)
    elif args.command == "subspace":
        from lmtie import figure1, figure1_sweep, figures_spans, report, schema

        epochs = figure1.default_epochs(args.sweep) if args.epochs is None else args.epochs
        setup = figure1.Figure1Setup(epochs=epochs)
        if args.plot_only:
            rows = schema.read_figure1_rows(schema.figure1_path(args.results_dir, args.sweep))
        else:
            rows = figure1_sweep.run_experiment(args.sweep, args.seeds, args.results_dir, setup,
                                                args.device, args.data_dir,
                                                progress=not args.quiet, jobs=args.jobs,
                                                checkpoint_root=args.checkpoint_root)
        figures_spans.draw_figure1(rows, args.results_dir, args.sweep)
        for name in ("a", "b") if args.sweep == "both" else (args.sweep,):
            for point in report.figure1_summary(rows, name):
                label = name if name == "convergence" else f"figure 1{name}"
                print(f"{label}: beta={point['beta']:g} tau={point['tau']:g} distance "
                      f"{point['mean']:.3f} ± {point['std']:.3f} (n={point['n']})")
    return 0


def _data(args: argparse.Namespace) -> None:
    from lmtie.data import check_corpus, resolve_data_dir

    data_dir = resolve_data_dir(args.data_dir)
    if args.action == "download":
        if args.corpus is None:
            raise ValueError("say which corpus to download: lmtie data download ptb|wikitext-2")
        from lmtie.download import download_corpus

        download_corpus(args.corpus, data_dir, url=args.url)
    for corpus in [args.corpus] if args.corpus else CORPORA:
        summary = check_corpus(corpus, data_dir)
        print(f"{corpus}: ok in {data_dir}")
        print(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    sys.exit(main())
