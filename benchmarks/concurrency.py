"""Several trainings side by side on one device: aggregate training throughput against N.

``lmtie reproduce --jobs N`` (local executor) runs N trainings at once; on a GPU with room for
many small models they share it. This measures what that buys: for each N, N processes each
build one model (``benchmarks.throughput.Runner``) on real batches, warm up, wait for the
others, then time the same number of training steps together. The sweet spot is the N after
which the aggregate tokens/s stops growing.

    python -m benchmarks.concurrency --jobs 1,2,4,8 --variant vd --device cuda [--precision bf16]

Writes ``<out>/concurrency-<corpus>-<size>-<variant>-<precision>.json`` and prints a Markdown
table.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.throughput import Runner
from lmtie import atomic, runs, train
from lmtie.config import make_config
from lmtie.data import Corpus, batchify, bptt_batches

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", default=[1, 2, 4, 8], type=lambda v: [int(n) for n in v.split(",")],
                   help="numbers of trainings side by side (comma-separated)")
    p.add_argument("--corpus", default="ptb")
    p.add_argument("--size", default="small")
    p.add_argument("--variant", default="vd")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--steps", type=int, default=100, help="timed training steps per process")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="results/benchmarks")
    return p.parse_args(argv)


def worker(argv: list[str]) -> None:
    """One process: warm up, say so (``ready``), wait for ``go``, time ``steps`` steps; print
    ms/step."""
    folder, index, args = Path(argv[0]), argv[1], parse_args(argv[2:])
    torch.set_num_threads(args.threads)
    device = train.resolve_device(args.device)
    corpus = Corpus(args.corpus, args.data_dir)
    config = make_config(args.corpus, args.size, args.variant)
    data = batchify(corpus.train, config.batch_size).to(device)
    n = args.warmup + args.steps
    batches = [b for _, b in zip(range(n), bptt_batches(data, config.bptt), strict=False)]
    runner = Runner(args.variant, len(corpus.vocab), args.corpus, args.size, device,
                    args.precision)
    for inputs, targets in batches[:args.warmup]:
        runner.step(inputs, targets)
    if device.type == "cuda":
        torch.cuda.synchronize()
    (folder / f"ready-{index}").touch()
    while not (folder / "go").exists():
        time.sleep(0.01)
    start = time.perf_counter()
    for inputs, targets in batches[args.warmup:]:
        runner.step(inputs, targets)
    if device.type == "cuda":
        torch.cuda.synchronize()
    print(1000 * (time.perf_counter() - start) / args.steps)


def side_by_side(n: int, argv: list[str]) -> list[float]:
    """ms/step of each of ``n`` processes timed together."""
    code = "import sys, benchmarks.concurrency as c; c.worker(sys.argv[1:])"
    with tempfile.TemporaryDirectory(prefix="lmtie-concurrency-") as folder:
        procs = [subprocess.Popen([sys.executable, "-c", code, folder, str(i), *argv], cwd=ROOT,
                                  stdout=subprocess.PIPE, text=True) for i in range(n)]
        while len(list(Path(folder).glob("ready-*"))) < n:
            if any(p.poll() not in (None, 0) for p in procs):
                raise RuntimeError("a worker failed before it was ready")
            time.sleep(0.05)
        Path(folder, "go").touch()
        outputs = [p.communicate()[0] for p in procs]
        if any(p.returncode for p in procs):
            raise RuntimeError(f"a worker failed: exit codes {[p.returncode for p in procs]}")
    return [float(out.split()[-1]) for out in outputs]


def main() -> None:
    argv = sys.argv[1:]
    args = parse_args(argv)
    config = make_config(args.corpus, args.size, args.variant)
    tokens = config.batch_size * config.bptt
    rows = []
    for n in args.jobs:
        ms = side_by_side(n, argv)
        rows.append({"jobs": n, "ms_per_step": ms, "ms_per_step_median": statistics.median(ms),
                     "aggregate_tokens_per_s": sum(1000 * tokens / m for m in ms)})
        print(f"{n} side by side: {rows[-1]['aggregate_tokens_per_s']:.0f} tok/s", flush=True)
    single = rows[0]["aggregate_tokens_per_s"] / args.jobs[0]
    device = train.resolve_device(args.device)
    result = {"corpus": args.corpus, "size": args.size, "variant": args.variant,
              "precision": args.precision, "threads": args.threads, "steps": args.steps,
              "device": str(device), "environment": runs.environment(device), "rows": rows}
    out = Path(args.out) / (f"concurrency-{args.corpus}-{args.size}-{args.variant}-"
                            f"{args.precision}.json")
    atomic.write_json(out, result)
    print("| trainings side by side | ms/step per training (median) | aggregate tok/s "
          "| × one training |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['jobs']} | {row['ms_per_step_median']:.0f} | "
              f"{row['aggregate_tokens_per_s']:.0f} | "
              f"{row['aggregate_tokens_per_s'] / single:.2f} |")
    print(f"written {out}")


if __name__ == "__main__":
    main()
