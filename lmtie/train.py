"""Training: ``fit(config)`` writes a run dir; ``evaluate_run`` re-measures one.

Paper: Sec. 6.1 and appendix (SGD, lr decay, clipping, state carried across segments);
Decisions T1, T2, E1 of docs/paper.md.
"""

from __future__ import annotations

import errno
import math
import time
import warnings
from pathlib import Path

import torch
from tqdm import tqdm

from lmtie import identity, precision, reference, runs
from lmtie.analysis import (
    augmented_target_entropy,
    logit_alignment,
    nearest_neighbours,
    prediction_mass,
    subspace_distance,
    top_k_predictions,
)
from lmtie.config import Config
from lmtie.data import Corpus, batchify, bptt_batches, num_bptt_batches
from lmtie.device import keep_freed_memory, resolve_device
from lmtie.evaluation import evaluate
from lmtie.loss import LossParts, lm_loss
from lmtie.model import RNNLM, State

NEIGHBOURS = 10  # predictions.json: mass on the target's nearest words in L


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
    ``test_batch_size``, Decision E1), ``final.json`` and ``predictions.json``. The run dir
    and the checkpoint dir are locked for the whole run (one writer: :mod:`lmtie.lock`);
    ``config.json`` and the checkpoints record the run's fingerprint (:mod:`lmtie.identity`),
    ``env.json`` every start and the checkpoint it continued from.

    Args:
        checkpoint_dir: the folder of ``last.pt`` and ``best.pt``; None:
            ``~/.cache/lmtie/checkpoints/<run_id>-<fingerprint[:12]>/`` (the run's checkpoints
            from before fingerprints, in ``<run_id>/`` beside it, are moved there).
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
    dev = resolve_device(device)
    corpus = Corpus(config.corpus, data_dir)
    fp = identity.fingerprint(config, corpus.sha256)
    run_dir = Path(results_dir) / config.run_id
    ckpt_dir = (identity.checkpoint_dir_for(config, fp) if checkpoint_dir is None
                else Path(checkpoint_dir).expanduser())
    with identity.owned(run_dir, ckpt_dir):
        start = identity.plan_start(config, fp, corpus.sha256, run_dir, ckpt_dir,
                                    resume=resume, force=force)
        _train(config, fp, corpus, run_dir, ckpt_dir, start, dev, progress)
    return run_dir


def _train(config: Config, fp: str, corpus: Corpus, run_dir: Path, ckpt_dir: Path,
           start: identity.Start, dev: torch.device, progress: bool) -> None:
    """The body of :func:`fit`, its run owned and its start decided."""
    last_path, best_path = ckpt_dir / "last.pt", ckpt_dir / "best.pt"
    if dev.type == "cpu":
        keep_freed_memory()
    if config.precision == "bf16" and not precision.native_bf16(dev):
        warnings.warn(f"{config.run_id}: {dev} has no native bf16 (emulated: slower than "
                      "fp32); train with --precision fp32", stacklevel=2)
    torch.manual_seed(config.seed)
    model = RNNLM(len(corpus.vocab), config).to(dev)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)  # dropout masks, on the CPU
    history: list[dict] = []
    best = {"epoch": 0, "valid_ppl": math.inf}
    wall = 0.0
    env = {**runs.environment(dev), "from_checkpoint": start.source}
    if start.checkpoint is not None:
        ckpt = start.checkpoint
        _load_state(model, ckpt["model"], last_path)
        optimizer.load_state_dict(ckpt["optimizer"])
        generator.set_state(ckpt["generator"])
        history, best, wall = ckpt["history"], ckpt["best"], ckpt["wall_s"]
        print(f"{config.run_id}: continuing from {last_path} (epoch {len(history)})", flush=True)
        if (run_dir / "env.json").is_file():  # keep the first start's record
            first = runs.read_json(run_dir / "env.json")
            env = {**first, "resumes": [*first.get("resumes", []), env]}
    runs.write_json(run_dir / "config.json", {**config.to_dict(), "fingerprint": fp})
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
        kept = (f"the last good checkpoint is {last_path} (epoch {len(history)})" if history
                else "no epoch completed, so there is no checkpoint")
        keep = (f"{kept}. The same settings would diverge again (a run is deterministic): "
                "start a changed run, e.g. with another --seed, or a smaller --alpha or larger "
                "--tau")
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
        saved = {"config": config.to_dict(), "fingerprint": fp, "epoch": epoch}
        try:
            if row["valid_ppl"] < best["valid_ppl"]:
                best = {"epoch": epoch, "valid_ppl": row["valid_ppl"]}
                runs.save_checkpoint(best_path, {**saved, "model": model.state_dict()})
            runs.save_checkpoint(last_path, {
                **saved, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(), "history": history, "best": best,
                "wall_s": wall})
            runs.write_jsonl(run_dir / "metrics.jsonl", history)
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise
            raise OSError(errno.ENOSPC, f"{err.strerror}; the last good checkpoint "
                          f"{last_path} is kept: free space, then --resume") from err
        tqdm.write(f"{config.run_id} epoch {epoch}: lr {lr:.4g}  train ppl "
                   f"{math.exp(row['train_ce']):.2f}  valid ppl {row['valid_ppl']:.2f}  "
                   f"{row['tokens_per_s']:.0f} tok/s")
    best_epoch = _load_best(model, best_path, config, fp, corpus.sha256, run_dir, history)
    finish(config, model, corpus, run_dir, best_epoch, dev, history, progress)


def _load_state(model: RNNLM, state: dict, path: Path) -> None:
    """``model.load_state_dict(state)``; a state of another shape names ``path``.

    Raises:
        ValueError: the weights in ``path`` do not fit ``model``.
    """
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{path}: its weights do not fit this model "
                         f"({str(err).splitlines()[-1].strip()}); nothing was changed") from None


def _load_best(model: RNNLM, path: Path, config: Config, fp: str, corpus_sha256: dict[str, str],
               run_dir: Path, history: list[dict]) -> int:
    """Load ``best.pt`` at ``path`` into ``model`` and return its epoch, checked to be this
    run's best: its fingerprint ``fp``, and the epoch of the lowest validation perplexity in
    ``history`` (the run dir's ``metrics.jsonl`` rows).

    Raises:
        FileNotFoundError: no checkpoint at ``path``.
        ValueError: (nothing changed) as :func:`lmtie.identity.load_own`, or the checkpoint
            is not of the run dir's best epoch (another copy of the run wrote it).
    """
    best = identity.load_own(path, config, fp, corpus_sha256, identity.BEST_KEYS)
    valid = [row["valid_ppl"] for row in history]
    epoch = 1 + valid.index(min(valid)) if valid else 0
    if best["epoch"] != epoch:
        raise ValueError(
            f"{path}: the best checkpoint is from epoch {best['epoch']}, but {run_dir} records "
            f"its best validation perplexity at epoch {epoch} of {len(history)}: another copy "
            "of this run wrote it; nothing was changed. Point --checkpoint-dir at this run's "
            "own checkpoints, or resume this run (lmtie train ... --resume)")
    _load_state(model, best["model"], path)
    return epoch


def finish(config: Config, model: RNNLM, corpus: Corpus, run_dir: Path, best_epoch: int,
           device: torch.device, history: list[dict], progress: bool = False) -> dict:
    """With ``model`` holding the best checkpoint's weights, measure test perplexity
    (Decision E1), write ``final.json`` and ``predictions.json``; returns the final dict. A
    ``config.valid_only`` run (an ablation) touches no test data: ``test_ppl`` is None and
    no ``predictions.json``.

    Args:
        best_epoch: the epoch (1-based) of the weights in ``model``.
        history: the ``metrics.jsonl`` rows of the run (one per completed epoch).
    """
    final = {
        "run_id": config.run_id, "corpus": config.corpus, "size": config.size,
        "variant": config.variant, "tied": config.tied, "alpha": config.alpha,
        "tau": config.tau, "seed": config.seed, "n_params": model.n_params(),
        "epochs_run": len(history), "best_epoch": best_epoch,
        "valid_ppl": history[best_epoch - 1]["valid_ppl"], "test_ppl": None,
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
        "run_id": config.run_id, "best_epoch": best_epoch, "phrases": phrases,
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
    ``final.json`` and ``predictions.json`` and returns the final dict. Holds the run's locks
    (:func:`lmtie.identity.owned`) and checks every folder writable before the test
    evaluation.

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
    config = Config.from_dict(runs.read_json(run_dir / "config.json"))
    history = runs.read_jsonl(run_dir / "metrics.jsonl")
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
        best_epoch = _load_best(model, ckpt_dir / "best.pt", config, fp, corpus.sha256,
                                run_dir, history)
        return finish(config, model, corpus, run_dir, best_epoch, dev, history, progress)
