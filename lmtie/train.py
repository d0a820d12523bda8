"""Training: ``train_step``, ``train_epoch`` (shared with Figure 1), ``evaluate``, and ``fit``,
which trains a config into its run dir; ``evaluate_run`` re-measures a finished run.

The run dir, its files and the checkpoints are :mod:`lmtie.runs` and :mod:`lmtie.schema`;
which checkpoint belongs to which run is :mod:`lmtie.identity`; the numbers measured after
each epoch and at the end are :mod:`lmtie.analysis`.

Paper: Sec. 6.1 and appendix (SGD, lr decay, clipping, state carried across segments);
Decisions T1, T2, E1 of docs/paper.md.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from lmtie import analysis, atomic, identity, precision, runs, schema
from lmtie.config import Config
from lmtie.data import Corpus, batchify, bptt_batches, num_bptt_batches
from lmtie.device import prepare_device, resolve_device
from lmtie.evaluation import evaluate
from lmtie.layout import ResultsDir
from lmtie.loss import LossParts, lm_loss
from lmtie.model import RNNLM, State

__all__ = ["evaluate", "evaluate_run", "fit", "sgd_step", "train_epoch", "train_step"]

# One step: (inputs (T, B), targets (T, B), state) -> (per-token losses × tokens (k,), state)
Step = Callable[[Tensor, Tensor, State], tuple[Tensor, State]]


def train_step(model: RNNLM, optimizer: torch.optim.Optimizer, inputs: torch.Tensor,
               targets: torch.Tensor, state: State, config: Config,
               generator: torch.Generator, target_weight: torch.Tensor | None = None
               ) -> tuple[LossParts, State]:
    """One SGD step on a ``(T, B)`` segment: fresh dropout masks, J^tot (Decision T2),
    global-norm clipping at ``config.clip_norm``; returns the loss parts and the new state
    (fp32, detached: truncated BPTT with the state carried to the next segment). With
    ``config.precision == "bf16"`` the forward pass and the loss run under bf16 autocast
    (``lmtie.precision``); parameters, gradients and the SGD step stay fp32.

    Args:
        target_weight: ``(V, D)`` the Lᵀ that ỹ is built from; None: the model's own
            embedding (eq. 3.7). ``fit`` passes a copy taken when the epoch began for
            ``config.frozen_target``.
    """
    state = (state[0].detach(), state[1].detach())
    masks = model.sample_masks(inputs.shape[1], generator) if config.dropout else None
    with precision.autocast(config.precision, inputs.device):  # bf16: the matmuls only
        wh, state = model(inputs, state, masks)
        lt = model.embedding.weight if target_weight is None else target_weight
        # the softmaxes and losses in fp32: bf16 logits are cast up (a no-op in fp32)
        dtype = model.embedding.weight.dtype
        parts = lm_loss(wh.to(dtype), model.bias, targets, lt, alpha=config.alpha,
                        tau=config.tau, detach_target=config.detach_target,
                        aug_bias=config.aug_bias)
    state = (state[0].to(dtype), state[1].to(dtype))  # carried to the next segment in fp32
    optimizer.zero_grad(set_to_none=True)
    parts.objective.backward()
    torch.nn.utils.clip_grad_norm_(optimizer.param_groups[0]["params"], config.clip_norm)
    optimizer.step()
    return parts, state


def train_epoch(model: RNNLM, data: Tensor, bptt: int, step: Step, *,
                max_batches: int | None = None, desc: str | None = None
                ) -> tuple[list[float], float]:
    """One epoch of ``step`` over ``data`` ``(L, B)`` in bptt segments, the state carried
    from a zero state; at most ``max_batches`` steps. The loop of Table 1 (:func:`fit`) and
    of Figure 1 (:mod:`lmtie.figure1`).

    Args:
        step: trains on one segment; returns its losses times its token count, ``(k,)``
            (the first one, per token, is checked and shown), and the new state.
        desc: the progress bar's label; None: no bar.

    Returns:
        The k losses per token over the epoch (sums in float64), and tokens per second.

    Raises:
        FloatingPointError: the first loss became NaN/inf (checked every 50 steps: each
            check waits for the device).
    """
    model.train()
    state = model.init_state(data.shape[1])
    n_batches = num_bptt_batches(data, bptt)
    if max_batches is not None:
        n_batches = min(n_batches, max_batches)
    sums: Tensor | None = None
    n_tokens = 0
    start = time.perf_counter()
    bar = tqdm(total=n_batches, desc=desc, disable=desc is None, unit="batch", leave=False)
    for index, (inputs, targets) in enumerate(bptt_batches(data, bptt)):
        if index == n_batches:
            break
        step_sums, state = step(inputs, targets, state)
        if sums is None:
            sums = torch.zeros(step_sums.shape, dtype=torch.float64, device=step_sums.device)
        sums += step_sums
        n_tokens += targets.numel()
        bar.update()
        if index % 50 == 0 or index == n_batches - 1:  # one host sync every 50 steps
            first = sums[0].item() / n_tokens
            if not math.isfinite(first):
                raise FloatingPointError(f"non-finite training loss at step {index}")
            bar.set_postfix(ppl=f"{math.exp(min(first, 50)):.1f}",
                            tok_s=f"{n_tokens / (time.perf_counter() - start):.0f}")
    bar.close()
    if sums is None:
        raise ValueError(f"no training batch in data of shape {tuple(data.shape)}")
    return [s / n_tokens for s in sums.tolist()], n_tokens / (time.perf_counter() - start)


def sgd_step(model: RNNLM, optimizer: torch.optim.Optimizer, config: Config,
              generator: torch.Generator) -> Step:
    """Table 1's :data:`Step` for :func:`train_epoch`: :func:`train_step` (one SGD step of
    J^tot), logging CE and J^aug (nats per token) × tokens. With ``config.frozen_target``, ỹ
    comes from a copy of L taken now, when the epoch begins."""
    # ỹ from L as it is now, for the whole epoch: no feedback of the moving target (ablation)
    target_weight = model.embedding.weight.detach().clone() if config.frozen_target else None

    def step(inputs: Tensor, targets: Tensor, state: State) -> tuple[Tensor, State]:
        parts, state = train_step(model, optimizer, inputs, targets, state, config, generator,
                                  target_weight)
        return torch.stack([parts.ce, parts.aug_kl]).detach() * parts.n_tokens, state
    return step


def fit(config: Config, *, data_dir: str | Path | None = None,
        results_dir: str | Path = "results", checkpoint_dir: str | Path | None = None,
        device: str = "auto", resume: bool = False, force: bool = False,
        progress: bool = True) -> Path:
    """Train ``config`` and write its run dir; returns ``<results_dir>/runs/<run_id>``.

    Per epoch: SGD at ``config.lr_at(epoch)``, validation perplexity (batch
    ``eval_batch_size``), the per-epoch numbers of :func:`lmtie.analysis.epoch_numbers`, then
    ``best.pt`` (when the validation perplexity improved), ``last.pt`` and the
    ``metrics.jsonl`` row (:func:`lmtie.runs.save_epoch`). At the end the best checkpoint
    gives the test perplexity (batch ``test_batch_size``, Decision E1), ``final.json`` and
    ``test_statistics.json``. The run dir and the checkpoint dir are locked for the whole run
    (:func:`lmtie.identity.owned`); ``config.json`` and the checkpoints record the run's
    fingerprint, ``env.json`` every start and the checkpoint it continued from.

    Args:
        results_dir: the results root (:class:`lmtie.layout.ResultsDir`).
        checkpoint_dir: the folder of ``last.pt`` and ``best.pt``; None:
            ``~/.cache/lmtie/checkpoints/<run_id>-<fingerprint[:12]>/``.
        device: auto | cpu | cuda (:func:`lmtie.device.prepare_device`).
        resume: continue from ``last.pt`` (of this run's fingerprint) if there is one, else
            start, unless the run dir already records epochs: then refuse.
        force: start from scratch, deleting this run's result files and checkpoints.

    Raises:
        ValueError: a start that would lose or mix results (:func:`lmtie.identity.plan_start`
            says which; nothing is changed), a corrupt checkpoint, an unwritable folder.
        lmtie.lock.RunLockedError: another process is writing this run (names it).
        FileNotFoundError: the corpus is missing (says how to get it).
        FloatingPointError: the loss became NaN/inf; the last good checkpoint is kept.
        OSError: the disk is full ("no space left on <path>"); the last good checkpoint is
            kept.
    """
    # The machine, the corpus, the run's identity and folders
    dev = prepare_device(device)
    if config.precision == "bf16" and not precision.native_bf16(dev):
        warnings.warn(f"{config.run_id}: {dev} has no native bf16 (emulated: slower than "
                      "fp32); train with --precision fp32", stacklevel=2)
    corpus = Corpus(config.corpus, data_dir)
    fp = identity.fingerprint(config, corpus.sha256)
    run_dir = ResultsDir(results_dir).run(config.run_id)
    ckpt_dir = (identity.checkpoint_dir_for(config, fp) if checkpoint_dir is None
                else Path(checkpoint_dir).expanduser())
    with identity.owned(run_dir, ckpt_dir):
        start = identity.plan_start(config, fp, corpus.sha256, run_dir, ckpt_dir,
                                    resume=resume, force=force)
        # The model, its optimiser and the dropout generator, from the seed ...
        torch.manual_seed(config.seed)
        model = RNNLM(len(corpus.vocab), config).to(dev)
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad],
                                    lr=config.lr)
        generator = torch.Generator().manual_seed(config.seed)  # dropout masks, on the CPU
        # ... or from last.pt; config.json, env.json and metrics.jsonl as they now stand
        state = runs.begin(run_dir, ckpt_dir, config, fp, start, dev, model, optimizer,
                           generator)
        train = batchify(corpus.train, config.batch_size).to(dev)
        valid = batchify(corpus.valid, config.eval_batch_size)
        for epoch in range(len(state.history) + 1, config.epochs + 1):
            # One epoch of SGD at this epoch's learning rate
            epoch_start = time.perf_counter()
            lr = config.lr_at(epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            try:
                (train_ce, train_aug_kl), tokens_per_s = train_epoch(
                    model, train, config.bptt, sgd_step(model, optimizer, config, generator),
                    max_batches=config.max_batches,
                    desc=f"{config.run_id} epoch {epoch}/{config.epochs}" if progress else None)
            except FloatingPointError as err:
                raise runs.diverged(config, epoch, state, ckpt_dir, str(err)) from err
            # Validation, then the numbers recorded per epoch (lmtie.analysis)
            valid_ppl = evaluate(model, valid, config.bptt).perplexity
            if not math.isfinite(valid_ppl):
                raise runs.diverged(config, epoch, state, ckpt_dir,
                                    f"validation perplexity is {valid_ppl}")
            numbers = analysis.epoch_numbers(model, corpus, config)
            state.wall_s += time.perf_counter() - epoch_start
            row = schema.EpochRow(epoch=epoch, lr=lr, train_ce=train_ce,
                                  train_aug_kl=train_aug_kl, tokens_per_s=tokens_per_s,
                                  valid_ppl=valid_ppl, **numbers, elapsed_s=state.wall_s)
            # Checkpoints (best.pt when better, last.pt) and the metrics.jsonl row
            runs.save_epoch(run_dir, ckpt_dir, config, fp, row, state, model, optimizer,
                            generator)
            tqdm.write(f"{config.run_id} epoch {epoch}: lr {lr:.4g}  train ppl "
                       f"{math.exp(row.train_ce):.2f}  valid ppl {row.valid_ppl:.2f}  "
                       f"{row.tokens_per_s:.0f} tok/s")
        # The best epoch's weights on the test stream: final.json, test_statistics.json
        best_epoch = identity.load_best(model, ckpt_dir / "best.pt", config, fp,
                                        corpus.sha256, run_dir, state.history)
        finish(config, model, corpus, run_dir, best_epoch, dev, state.history, progress)
    return run_dir


def finish(config: Config, model: RNNLM, corpus: Corpus, run_dir: Path, best_epoch: int,
           dev: torch.device, history: list[schema.EpochRow], progress: bool = False
           ) -> schema.FinalRecord:
    """With ``model`` holding the best checkpoint's weights, measure test perplexity
    (Decision E1), write ``final.json`` and ``test_statistics.json``
    (:func:`lmtie.analysis.test_statistics`); returns the final record. A
    ``config.valid_only`` run (an ablation) touches no test data: ``test_ppl`` is None and
    no test statistics are written.

    Args:
        best_epoch: the epoch (1-based) of the weights in ``model``.
        history: the ``metrics.jsonl`` rows of the run (one per completed epoch).
    """
    final = schema.FinalRecord(
        run_id=config.run_id, corpus=config.corpus, size=config.size, variant=config.variant,
        tied=config.tied, alpha=config.alpha, tau=config.tau, seed=config.seed,
        n_params=model.n_params(), epochs_run=len(history), best_epoch=best_epoch,
        valid_ppl=history[best_epoch - 1].valid_ppl, test_ppl=None,
        eval_batch_size=config.eval_batch_size, test_batch_size=config.test_batch_size,
        suffix=config.suffix, wall_s=history[-1].elapsed_s, device=str(dev))
    if not config.valid_only:
        test = evaluate(model, batchify(corpus.test, config.test_batch_size), config.bptt,
                        unk_id=corpus.vocab.stoi["<unk>"], progress=progress)
        final = schema.FinalRecord(**{**final.__dict__, "test_ppl": test.perplexity})
        schema.write_test_statistics(run_dir, analysis.test_statistics(
            model, corpus, config, test, best_epoch))
    schema.write_final(run_dir, final)
    return final


def evaluate_run(run_dir: str | Path, *, data_dir: str | Path | None = None,
                 checkpoint_dir: str | Path | None = None, device: str = "auto",
                 progress: bool = True) -> dict:
    """Re-measure a finished (or interrupted) run from its best checkpoint; rewrites
    ``final.json`` and ``test_statistics.json`` and returns the final record as a dict.
    Holds the run's locks (:func:`lmtie.identity.owned`) and checks every folder writable
    before the test evaluation.

    Args:
        checkpoint_dir: the folder of ``best.pt``; None: the run's default
            (:func:`lmtie.identity.checkpoint_dir_for`).

    Raises:
        FileNotFoundError: no ``config.json``/``metrics.jsonl`` in ``run_dir``, or no
            ``best.pt`` in the checkpoint dir.
        ValueError: (nothing changed) ``best.pt`` is corrupt, foreign, of another
            fingerprint than the run (names both) or not of its best epoch, or the run's
            fingerprint is not what this code and corpus give it.
        lmtie.lock.RunLockedError: another process is writing this run (names it).
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run dir (no config.json); give "
                                "results/runs/<run_id>")
    config = Config.from_dict(atomic.read_json(run_dir / "config.json"))
    history = schema.read_metrics(run_dir)
    dev = resolve_device(device)
    corpus = Corpus(config.corpus, data_dir)
    fp = identity.fingerprint(config, corpus.sha256)
    ckpt_dir = (identity.checkpoint_dir_for(config, fp) if checkpoint_dir is None
                else Path(checkpoint_dir).expanduser())
    with identity.owned(run_dir, ckpt_dir):
        identity.recorded_epochs(run_dir, config, fp, corpus.sha256,
                                 "Re-measure it with the corpus and the lmtie version it "
                                 "was trained with, or retrain it (lmtie train ... --force)")
        identity.adopt_unkeyed(ckpt_dir, config, fp, corpus.sha256)
        model = RNNLM(len(corpus.vocab), config).to(dev)
        best_epoch = identity.load_best(model, ckpt_dir / "best.pt", config, fp,
                                        corpus.sha256, run_dir, history)
        return finish(config, model, corpus, run_dir, best_epoch, dev, history,
                      progress).to_dict()
