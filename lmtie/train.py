"""Training and evaluation: ``fit(config)`` writes a run dir; ``evaluate`` gives perplexity.

Paper: Sec. 6.1 and appendix (SGD, lr decay, clipping, state carried across segments);
Decisions T1, T2, E1 of docs/paper.md.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from lmtie import reference, runs
from lmtie.analysis import (
    augmented_target_entropy,
    logit_alignment,
    nearest_neighbours,
    prediction_mass,
    stream_logits,
    subspace_distance,
    top_k_predictions,
)
from lmtie.config import Config
from lmtie.data import Corpus, batchify, bptt_batches, num_bptt_batches
from lmtie.loss import LossParts, lm_loss
from lmtie.model import RNNLM, State

NEIGHBOURS = 10  # predictions.json: mass on the target's nearest words in L


def perplexity(total_nll: float, n_tokens: int) -> float:
    """``exp(total_nll / n_tokens)``: total cross-entropy in nats over the number of targets.

    Raises:
        ValueError: ``n_tokens <= 0``.

    Paper: Sec. 2; never averaged per batch (one of the Keras repo's bugs).
    """
    if n_tokens <= 0:
        raise ValueError(f"n_tokens must be positive, got {n_tokens}")
    return math.exp(total_nll / n_tokens)


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cpu``; ``cuda``.

    Raises:
        ValueError: unknown name, or ``cuda`` without a CUDA device.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; choose auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda but no CUDA device is visible; use --device cpu")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def keep_freed_memory() -> None:
    """Ask glibc to keep freed memory instead of returning it to the OS after each step.

    Every training step allocates and frees (N, V) float tensors of ~28 MB (small PTB); glibc
    serves those with mmap and gives them back at once, so the kernel zeroes fresh pages on
    every step: 15% of a CPU step in system time on this project's 2-core machine. Raising
    the mmap and trim thresholds (``mallopt``) removes that. A no-op without glibc.
    """
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return
    mallopt = getattr(ctypes.CDLL(libc_name), "mallopt", None)
    if mallopt is not None:
        m_trim_threshold, m_mmap_threshold = -1, -3  # from <malloc.h>
        mallopt(m_mmap_threshold, 1 << 30)
        mallopt(m_trim_threshold, 1 << 31)


@dataclass(frozen=True)
class EvalResult:
    """Evaluation of a stream: total NLL (nats), token count, perplexity, and optionally the
    mean p(<unk>) the model gives and the mean rank (1 = top) of the target word."""

    nll: float
    n_tokens: int
    perplexity: float
    mean_p_unk: float | None = None
    mean_target_rank: float | None = None


@torch.no_grad()
def evaluate(model: RNNLM, data: torch.Tensor, bptt: int, *, unk_id: int | None = None,
             progress: bool = False) -> EvalResult:
    """Perplexity of ``model`` (no dropout) over ``data``, state carried across segments.

    Args:
        data: ``(L, B)`` int64 from ``batchify`` (B = 1 for Decision E1's test protocol).
        bptt: segment length (does not change the result beyond float rounding).
        unk_id: id of ``<unk>``; when given, also the mean p(<unk>) and mean target rank.

    Paper: Decision E1 (test: batch 1, whole stream, state carried).
    """
    nll = torch.zeros((), dtype=torch.float64, device=model.embedding.weight.device)
    p_unk = torch.zeros_like(nll)
    ranks = torch.zeros_like(nll)
    batches = tqdm(stream_logits(model, data, bptt), total=num_bptt_batches(data, bptt),
                   desc="evaluate", disable=not progress, leave=False)
    for logits, targets in batches:
        log_probs = torch.log_softmax(logits, dim=-1)
        target_lp = log_probs.gather(1, targets[:, None])
        nll -= target_lp.sum()
        if unk_id is not None:
            p_unk += log_probs[:, unk_id].exp().sum()
            ranks += (log_probs > target_lp).sum() + targets.numel()
    n = data.shape[0] * data.shape[1] - data.shape[1]
    stats = {}
    if unk_id is not None:
        stats = {"mean_p_unk": p_unk.item() / n, "mean_target_rank": ranks.item() / n}
    return EvalResult(nll.item(), n, perplexity(nll.item(), n), **stats)


def train_step(model: RNNLM, optimizer: torch.optim.Optimizer, inputs: torch.Tensor,
               targets: torch.Tensor, state: State, config: Config,
               generator: torch.Generator, target_weight: torch.Tensor | None = None
               ) -> tuple[LossParts, State]:
    """One SGD step on a ``(T, B)`` segment: fresh dropout masks, J^tot (Decision T2),
    global-norm clipping at ``config.clip_norm``; returns the loss parts and the new state
    (detached: truncated BPTT with the state carried to the next segment).

    Args:
        target_weight: ``(V, D)`` the Lᵀ that ỹ is built from; None: the model's own
            embedding (eq. 3.7). ``fit`` passes a copy taken when the epoch began for
            ``config.frozen_target``.
    """
    state = (state[0].detach(), state[1].detach())
    masks = model.sample_masks(inputs.shape[1], generator) if config.dropout else None
    wh, state = model(inputs, state, masks)
    lt = model.embedding.weight if target_weight is None else target_weight
    parts = lm_loss(wh, model.bias, targets, lt, alpha=config.alpha, tau=config.tau,
                    detach_target=config.detach_target, aug_bias=config.aug_bias)
    optimizer.zero_grad(set_to_none=True)
    parts.objective.backward()
    torch.nn.utils.clip_grad_norm_(optimizer.param_groups[0]["params"], config.clip_norm)
    optimizer.step()
    return parts, state


def _train_epoch(model: RNNLM, optimizer: torch.optim.Optimizer, data: torch.Tensor,
                 config: Config, generator: torch.Generator, desc: str, progress: bool
                 ) -> dict[str, float]:
    """One epoch of SGD over ``data`` ``(L, B)``; returns per-token train CE, J^aug, speed."""
    model.train()
    state = model.init_state(config.batch_size)
    # ỹ from L as it is now, for the whole epoch: no feedback of the moving target (ablation)
    target_weight = model.embedding.weight.detach().clone() if config.frozen_target else None
    n_batches = num_bptt_batches(data, config.bptt)
    if config.max_batches is not None:
        n_batches = min(n_batches, config.max_batches)
    ce_sum = torch.zeros((), dtype=torch.float64, device=data.device)
    aug_sum = torch.zeros_like(ce_sum)
    n_tokens = 0
    start = time.perf_counter()
    bar = tqdm(total=n_batches, desc=desc, disable=not progress, unit="batch", leave=False)
    for step, (inputs, targets) in enumerate(bptt_batches(data, config.bptt)):
        if step == n_batches:
            break
        parts, state = train_step(model, optimizer, inputs, targets, state, config, generator,
                                  target_weight)
        ce_sum += parts.ce * parts.n_tokens
        aug_sum += parts.aug_kl * parts.n_tokens
        n_tokens += parts.n_tokens
        bar.update()
        if step % 50 == 0 or step == n_batches - 1:  # one host sync every 50 steps
            train_ce = ce_sum.item() / n_tokens
            if not math.isfinite(train_ce):
                raise FloatingPointError(f"non-finite training loss at step {step}")
            bar.set_postfix(ppl=f"{math.exp(min(train_ce, 50)):.1f}",
                            tok_s=f"{n_tokens / (time.perf_counter() - start):.0f}")
    bar.close()
    return {"train_ce": ce_sum.item() / n_tokens, "train_aug_kl": aug_sum.item() / n_tokens,
            "tokens_per_s": n_tokens / (time.perf_counter() - start)}


def checkpoint_dir_for(config: Config, checkpoint_dir: str | Path | None) -> Path:
    """``checkpoint_dir`` or ``~/.cache/lmtie/checkpoints/<run_id>/`` (outside the git tree)."""
    if checkpoint_dir is None:
        return (runs.DEFAULT_CHECKPOINT_ROOT / config.run_id).expanduser()
    return Path(checkpoint_dir).expanduser()


def fit(config: Config, *, data_dir: str | Path | None = None,
        results_dir: str | Path = "results/runs", checkpoint_dir: str | Path | None = None,
        device: str = "auto", resume: bool = False, force: bool = False,
        progress: bool = True) -> Path:
    """Train ``config`` and write its run dir; returns ``results_dir/<run_id>``.

    Per epoch: SGD at ``config.lr_at(epoch)``, validation perplexity (batch
    ``eval_batch_size``; and batch ``test_batch_size`` as ``valid_ppl_test_batch``), subspace
    distance(Lᵀ, W) when untied, the mean entropy of ỹ (at ``config.tau``, nats) over the
    validation targets, then ``best.pt`` (when the
    validation perplexity improved) and ``last.pt`` (always) in the checkpoint dir, and the
    ``metrics.jsonl`` row. At the end the best checkpoint gives the test perplexity (batch
    ``test_batch_size``, Decision E1), ``final.json`` and ``predictions.json``.

    Args:
        resume: continue from ``last.pt`` if there is one (same config required), else start.
        force: start from scratch, deleting this run's result files and checkpoints.

    Raises:
        ValueError: the run dir already holds a run and neither ``resume`` nor ``force`` is
            set, or ``resume`` finds a checkpoint of a different config.
        FileNotFoundError: the corpus is missing (says how to get it).
        FloatingPointError: the loss became NaN/inf; the last good checkpoint is kept.
    """
    run_dir = Path(results_dir) / config.run_id
    ckpt_dir = checkpoint_dir_for(config, checkpoint_dir)
    last_path, best_path = ckpt_dir / "last.pt", ckpt_dir / "best.pt"
    if force:
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    elif not resume and (run_dir / "metrics.jsonl").exists():
        raise ValueError(f"{run_dir} already holds a run; pass --resume to continue it or "
                         "--force to start it again from scratch")
    dev = resolve_device(device)
    if dev.type == "cpu":
        keep_freed_memory()
    corpus = Corpus(config.corpus, data_dir)
    torch.manual_seed(config.seed)
    model = RNNLM(len(corpus.vocab), config).to(dev)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)  # dropout masks, on the CPU
    history: list[dict] = []
    best = {"epoch": 0, "valid_ppl": math.inf}
    wall = 0.0
    if resume and last_path.is_file():
        ckpt = runs.load_checkpoint(last_path)
        if Config.from_dict(ckpt["config"]) != config:
            raise ValueError(f"{last_path} was trained with another config; use --force to "
                             "start again, or a different --checkpoint-dir")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        generator.set_state(ckpt["generator"])
        history, best, wall = ckpt["history"], ckpt["best"], ckpt["wall_s"]
    env = runs.environment(dev)
    if history and (run_dir / "env.json").is_file():  # resumed: keep the first start's record
        first = runs.read_json(run_dir / "env.json")
        env = {**first, "resumes": [*first.get("resumes", []), env]}
    runs.write_json(run_dir / "config.json", config.to_dict())
    runs.write_json(run_dir / "env.json", env)
    runs.write_jsonl(run_dir / "metrics.jsonl", history)

    train = batchify(corpus.train, config.batch_size).to(dev)
    valid = batchify(corpus.valid, config.eval_batch_size)
    valid_test_batch = batchify(corpus.valid, config.test_batch_size)
    for epoch in range(len(history) + 1, config.epochs + 1):
        lr = config.lr_at(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        desc = f"{config.run_id} epoch {epoch}/{config.epochs}"
        epoch_start = time.perf_counter()
        keep = (f"the last good checkpoint is {last_path} (epoch {len(history)}); lower "
                "lr or clip_norm, or change the seed, then --resume")
        try:
            row = {"epoch": epoch, "lr": lr,
                   **_train_epoch(model, optimizer, train, config, generator, desc, progress)}
        except FloatingPointError as err:
            raise FloatingPointError(f"{config.run_id} epoch {epoch}: {err}; {keep}") from err
        row["valid_ppl"] = evaluate(model, valid, config.bptt).perplexity
        if not math.isfinite(row["valid_ppl"]):
            raise FloatingPointError(f"{config.run_id} epoch {epoch}: validation perplexity "
                                     f"is {row['valid_ppl']}; {keep}")
        # the test protocol's batch (Decision E1) on the validation stream: valid/test
        # ratios then compare like with like
        row["valid_ppl_test_batch"] = evaluate(model, valid_test_batch, config.bptt).perplexity
        row["subspace_distance"] = None if config.tied else subspace_distance(
            model.embedding.weight, model.projection.weight)
        # how much word similarity J^aug's target carries now (log V: none), for every run
        row["target_entropy"] = augmented_target_entropy(model.embedding.weight,
                                                         corpus.valid[1:], config.tau)
        wall += time.perf_counter() - epoch_start
        row["elapsed_s"] = wall  # wall time since the run started (training + validation)
        history.append(row)
        if row["valid_ppl"] < best["valid_ppl"]:
            best = {"epoch": epoch, "valid_ppl": row["valid_ppl"]}
            runs.save_checkpoint(best_path, {"config": config.to_dict(), "epoch": epoch,
                                             "model": model.state_dict()})
        runs.save_checkpoint(last_path, {
            "config": config.to_dict(), "epoch": epoch, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "generator": generator.get_state(),
            "history": history, "best": best, "wall_s": wall})
        runs.write_jsonl(run_dir / "metrics.jsonl", history)
        tqdm.write(f"{config.run_id} epoch {epoch}: lr {lr:.4g}  train ppl "
                       f"{math.exp(row['train_ce']):.2f}  valid ppl {row['valid_ppl']:.2f}  "
                       f"{row['tokens_per_s']:.0f} tok/s")
    finish(config, model, corpus, run_dir, best_path, dev, history, progress)
    return run_dir


def finish(config: Config, model: RNNLM, corpus: Corpus, run_dir: Path, best_path: Path,
           device: torch.device, history: list[dict], progress: bool = False) -> dict:
    """Load the best checkpoint, measure test perplexity (Decision E1), write ``final.json``
    and ``predictions.json``; returns the final dict. A ``config.valid_only`` run (an
    ablation) touches no test data: ``test_ppl`` is None and no ``predictions.json``.

    Args:
        history: the ``metrics.jsonl`` rows of the run (one per completed epoch).
    """
    best = runs.load_checkpoint(best_path)
    model.load_state_dict(best["model"])
    final = {
        "run_id": config.run_id, "corpus": config.corpus, "size": config.size,
        "variant": config.variant, "tied": config.tied, "alpha": config.alpha,
        "tau": config.tau, "seed": config.seed, "n_params": model.n_params(),
        "epochs_run": len(history), "best_epoch": best["epoch"],
        "valid_ppl": history[best["epoch"] - 1]["valid_ppl"], "test_ppl": None,
        "eval_batch_size": config.eval_batch_size, "test_batch_size": config.test_batch_size,
        "preset": config.preset, "wall_s": history[-1]["elapsed_s"], "device": str(device),
    }
    if config.valid_only:
        runs.write_json(run_dir / "final.json", final)
        return final
    test = evaluate(model, batchify(corpus.test, config.test_batch_size), config.bptt,
                    unk_id=corpus.vocab.stoi["<unk>"], progress=progress)
    final["test_ppl"] = test.perplexity
    phrases = [{"context": p["context"], "target": p["target"],
                "top10": top_k_predictions(model, corpus.vocab, p["context"], 10)}
               for p in reference.PHRASES if config.corpus == "ptb"]  # PTB test phrases
    runs.write_json(run_dir / "predictions.json", {
        "run_id": config.run_id, "best_epoch": best["epoch"], "phrases": phrases,
        "mean_p_unk": test.mean_p_unk, "mean_target_rank": test.mean_target_rank,
        "n_tokens": test.n_tokens,
        # ỹ at the run's τ over the test targets, beside its ceiling log V (uniform)
        "target_entropy": augmented_target_entropy(model.embedding.weight, corpus.test[1:],
                                                   config.tau),
        "uniform_entropy": math.log(len(corpus.vocab)),
        # Sec. 4: how closely W h follows Lᵀu over the test set (batch eval_batch_size)
        **logit_alignment(model, batchify(corpus.test, config.eval_batch_size), config.bptt),
        # Sec. 6.4: mass on a/an/the and on the target's 10 nearest words in the run's L
        **_test_mass(model, corpus, config)})
    runs.write_json(run_dir / "final.json", final)
    return final



def _test_mass(model: RNNLM, corpus: Corpus, config: Config) -> dict[str, float]:
    """``mean_p_articles`` (p(a) + p(an) + p(the)) and ``mean_p_neighbours`` (mass on the
    target's ``NEIGHBOURS`` nearest words in L) over the test stream (batch ``test_batch_size``).
    """
    articles = torch.tensor([i for w, i in corpus.vocab.stoi.items() if w in ("a", "an", "the")])
    mass = prediction_mass(model, batchify(corpus.test, config.test_batch_size), config.bptt,
                           words=articles,
                           neighbours=nearest_neighbours(model.embedding.weight, NEIGHBOURS))
    return {"mean_p_articles": mass["mean_p_words"],
            "mean_p_neighbours": mass["mean_p_neighbours"], "neighbours_k": NEIGHBOURS}


def evaluate_run(run_dir: str | Path, *, data_dir: str | Path | None = None,
                 checkpoint_dir: str | Path | None = None, device: str = "auto",
                 progress: bool = True) -> dict:
    """Re-measure a finished (or interrupted) run from its best checkpoint; rewrites
    ``final.json`` and ``predictions.json`` and returns the final dict.

    Raises:
        FileNotFoundError: no ``config.json``/``metrics.jsonl`` in ``run_dir``, or no
            ``best.pt`` in the checkpoint dir.
    """
    run_dir = Path(run_dir)
    config = Config.from_dict(runs.read_json(run_dir / "config.json"))
    history = runs.read_jsonl(run_dir / "metrics.jsonl")
    dev = resolve_device(device)
    corpus = Corpus(config.corpus, data_dir)
    model = RNNLM(len(corpus.vocab), config).to(dev)
    best_path = checkpoint_dir_for(config, checkpoint_dir) / "best.pt"
    return finish(config, model, corpus, run_dir, best_path, dev, history, progress)
