"""Training and evaluation throughput of lmtie's four variants against a plain PyTorch LSTM LM.

The reference is the canonical recipe (pytorch/examples word_language_model): fused
``nn.LSTM``, ordinary dropout on embeddings/between layers/before the projection, ``Linear``,
cross-entropy. All models train on the same real PTB batches, timed in one process and
interleaved (block by block) so that machine load affects them alike. With ``--precisions
fp32,bf16`` every model runs in both precisions (``lmtie.precision``; the plain reference with
its forward pass and loss under the same bf16 autocast), all interleaved in one process. Peak
memory is measured per model in a short subprocess of its own (``ru_maxrss``; CPU only).

    python benchmarks/throughput.py --corpus ptb --size small [--threads 1] [--precisions fp32,bf16]

Writes ``results/benchmarks/<machine>-<corpus>-<size>[-<precisions>].json`` and prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lmtie import atomic, precision, runs, train
from lmtie.config import PRECISIONS, VARIANT_LABELS, VARIANTS, make_config
from lmtie.data import Corpus, batchify, bptt_batches
from lmtie.model import RNNLM


class PlainLSTMLM(nn.Module):
    """The reference: pytorch/examples' word LM (ordinary dropout, fused LSTM, untied)."""

    def __init__(self, vocab_size: int, units: int, dropout: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, units)
        self.lstm = nn.LSTM(units, units, 2, dropout=dropout)
        self.projection = nn.Linear(units, vocab_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, inputs, state):
        out, state = self.lstm(self.dropout(self.embedding(inputs)), state)
        return self.projection(self.dropout(out)), state


class Runner:
    """A model, its optimiser and carried state; ``step`` does one training step in
    ``precision`` (fp32 | bf16). ``key``: ``name``, plus ``-bf16`` in bf16."""

    def __init__(self, name: str, vocab_size: int, corpus: str, size: str, device,
                 precision: str = "fp32") -> None:
        torch.manual_seed(0)
        self.name = name
        self.key = name if precision == "fp32" else f"{name}-{precision}"
        self.config = make_config(corpus, size, "vd" if name == "plain" else name,
                                  precision=precision)
        c = self.config
        if name == "plain":
            self.model = PlainLSTMLM(vocab_size, c.hidden_size, c.dropout).to(device)
        else:
            self.model = RNNLM(vocab_size, c).to(device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(params, lr=c.lr)
        self.generator = torch.Generator().manual_seed(0)
        shape = (c.num_layers, c.batch_size, c.hidden_size)
        self.state = (torch.zeros(shape, device=device), torch.zeros(shape, device=device))

    def step(self, inputs, targets) -> None:
        if self.name != "plain":
            _, self.state = train.train_step(self.model, self.optimizer, inputs, targets,
                                             self.state, self.config, self.generator)
            return
        state = tuple(s.detach() for s in self.state)
        with precision.autocast(self.config.precision, inputs.device):
            logits, state = self.model(inputs, state)
            loss = F.cross_entropy(logits.flatten(0, 1).float(),
                                   targets.reshape(-1)) * inputs.shape[0]
        self.state = tuple(s.float() for s in state)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
        self.optimizer.step()


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_training(names, batches, vocab_size, args, device) -> dict[str, list[float]]:
    """ms/step of each (model, precision) per block, all interleaved block by block; keyed
    by ``Runner.key``."""
    runners = [Runner(n, vocab_size, args.corpus, args.size, device, p)
               for p in args.precisions for n in names]
    for runner in runners:  # warm-up
        for inputs, targets in batches[: args.warmup]:
            runner.step(inputs, targets)
    times: dict[str, list[float]] = {r.key: [] for r in runners}
    for block in range(args.blocks):
        for runner in runners:
            _sync(device)
            start = time.perf_counter()
            for inputs, targets in batches[block * args.steps: (block + 1) * args.steps]:
                runner.step(inputs, targets)
            _sync(device)
            times[runner.key].append(1000 * (time.perf_counter() - start) / args.steps)
        print(f"block {block + 1}/{args.blocks}: " + "  ".join(
            f"{k} {t[-1]:.0f}" for k, t in times.items()), file=sys.stderr)
    return times


def time_test_evaluation(corpus: Corpus, args, device) -> dict[str, float]:
    """Decision E1 evaluation (whole test stream, batch 1) of the VD-LSTM: seconds, tok/s."""
    model = RNNLM(len(corpus.vocab), make_config(args.corpus, args.size, "vd")).to(device)
    start = time.perf_counter()
    result = train.evaluate(model, batchify(corpus.test, 1), 35)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "tokens_per_s": result.n_tokens / seconds}


def peak_memory_mb(name: str, precision_: str, args) -> float:
    """Peak RSS (MiB) of a fresh process while it runs a few training steps of one model."""
    code = "import sys, benchmarks.throughput as b; b.memory_probe(sys.argv[1:])"
    cmd = [sys.executable, "-c", code, name, "--corpus", args.corpus, "--size", args.size,
           "--threads", str(args.threads), "--precisions", precision_]
    root = Path(__file__).resolve().parent.parent
    return float(subprocess.run(cmd, cwd=root, check=True, capture_output=True,
                                text=True).stdout.split()[-1])


def memory_probe(argv: list[str]) -> None:
    """Print the peak RSS (MiB) over 5 training steps on random tokens (no corpus in memory;
    uniform targets give +AL more distinct targets than text does: an upper bound)."""
    name, args = argv[0], parse_args(argv[1:])
    torch.set_num_threads(args.threads)
    train.keep_freed_memory()
    vocab_size = {"ptb": 10_000, "wikitext-2": 33_278}[args.corpus]
    runner = Runner(name, vocab_size, args.corpus, args.size, torch.device("cpu"),
                    args.precisions[0])
    shape = runner.config.bptt, runner.config.batch_size
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    for _ in range(5):
        runner.step(torch.randint(0, vocab_size, shape), torch.randint(0, vocab_size, shape))
    status = Path("/proc/self/status").read_text().splitlines()
    print(int(next(line for line in status if line.startswith("VmHWM")).split()[1]) / 1024)


def write_profile(batches, vocab_size, args, device, path: Path) -> None:
    """torch.profiler tables (self CPU time per op) of 3 training steps of the plain reference
    and of the VD-LSTM, after 2 warm-up steps: where the difference between them goes."""
    from torch.profiler import ProfilerActivity, profile

    tables = []
    for name in ("plain", "vd"):
        runner = Runner(name, vocab_size, args.corpus, args.size, device)
        for inputs, targets in batches[:2]:
            runner.step(inputs, targets)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for inputs, targets in batches[2:5]:
                runner.step(inputs, targets)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
        tables.append(f"## {name}: 3 training steps, {args.threads} thread(s)\n{table}")
    atomic.write_text(path, "\n\n".join(tables) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default="ptb")
    p.add_argument("--size", default="small")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--blocks", type=int, default=6, help="timed blocks per model")
    p.add_argument("--steps", type=int, default=10, help="training steps per block")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--precisions", default=["fp32"], type=lambda v: v.split(","),
                   help=f"comma-separated, of {', '.join(PRECISIONS)} (default fp32)")
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--machine", default=None, help="label in the output file name")
    p.add_argument("--out", default="results/benchmarks")
    p.add_argument("--profile", action="store_true",
                   help="also write <out>/<machine>-<corpus>-<size>-profile.txt")
    return p.parse_args(argv)


def machine_label() -> str:
    model = "cpu"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip().split()[0].lower()
            break
    return f"{model}-{torch.get_num_threads()}thread"


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = train.resolve_device(args.device)
    if device.type == "cpu":
        train.keep_freed_memory()
    corpus = Corpus(args.corpus, args.data_dir)
    config = make_config(args.corpus, args.size, "vd")
    n = args.warmup + args.blocks * args.steps
    data = batchify(corpus.train, config.batch_size).to(device)
    batches = [b for _, b in zip(range(n), bptt_batches(data, config.bptt), strict=False)]
    names = ["plain", *VARIANTS]
    times = time_training(names, batches, len(corpus.vocab), args, device)
    tokens = config.batch_size * config.bptt
    models = {}
    for precision_ in args.precisions:
        suffix = "" if precision_ == "fp32" else f"-{precision_}"
        plain = statistics.median(times[f"plain{suffix}"])
        vd = statistics.median(times[f"vd{suffix}"])
        for name in names:
            key = f"{name}{suffix}"
            median = statistics.median(times[key])
            models[key] = {
                "label": "plain nn.LSTM reference" if name == "plain" else VARIANT_LABELS[name],
                "precision": precision_,
                "ms_per_step_median": median, "ms_per_step_min": min(times[key]),
                "ms_per_step_max": max(times[key]),
                "ms_per_step_blocks": times[key],  # in block order: pair with other models
                "train_tokens_per_s": 1000 * tokens / median,
                # within the precision; and against the same model in fp32 when measured
                "ratio_to_plain": median / plain, "ratio_to_vd": median / vd,
                "ratio_to_fp32": (median / statistics.median(times[name])
                                  if "fp32" in args.precisions else None),
                "peak_memory_mb": (peak_memory_mb(name, precision_, args)
                                   if device.type == "cpu" else None),
            }
    result = {
        "corpus": args.corpus, "size": args.size, "machine": args.machine or machine_label(),
        "threads": args.threads, "device": str(device), "blocks": args.blocks,
        "steps_per_block": args.steps, "environment": runs.environment(device),
        "platform": platform.processor(), "native_bf16": precision.native_bf16(device),
        "models": models,
        "test_evaluation_batch1": time_test_evaluation(corpus, args, device),
    }
    tag = "" if args.precisions == ["fp32"] else "-" + "-".join(args.precisions)
    out = Path(args.out) / f"{result['machine']}-{args.corpus}-{args.size}{tag}.json"
    atomic.write_json(out, result)
    if args.profile:
        write_profile(batches, len(corpus.vocab), args, device, out.with_name(
            out.stem + "-profile.txt"))
    print("| model | precision | ms/step (median, min–max) | train tok/s | × plain | × VD-LSTM "
          "| × fp32 | peak MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for m in models.values():
        print(f"| {m['label']} | {m['precision']} | {m['ms_per_step_median']:.0f} "
              f"({m['ms_per_step_min']:.0f}–{m['ms_per_step_max']:.0f}) | "
              f"{m['train_tokens_per_s']:.0f} | {m['ratio_to_plain']:.2f} | "
              f"{m['ratio_to_vd']:.2f} | {m['ratio_to_fp32'] or float('nan'):.2f} | "
              f"{m['peak_memory_mb'] or float('nan'):.0f} |")
    ev = result["test_evaluation_batch1"]
    print(f"\ntest evaluation, batch 1: {ev['seconds']:.1f} s ({ev['tokens_per_s']:.0f} tok/s)")
    print(f"written {out}")


if __name__ == "__main__":
    main()
