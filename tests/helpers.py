"""Helpers shared by the test files: run dirs written as ``fit`` writes them, with chosen
numbers; the lines a figure draws; an error's message; the flags the command line has; a
small model and an LSTMCell reference of its masked LSTM; the tiny Figure 1 setup and rows."""

import contextlib
import io
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from lmtie import atomic, cli, reference, schema
from lmtie.config import Config, make_config, preset_configs
from lmtie.figure1 import Figure1Setup
from lmtie.model import RNNLM

SMOKE = {c.variant: c for c in preset_configs("smoke")}
ENV = {"git_sha": "0123456789abcdef0123", "python": "3.11.7", "torch": "2.13.0",
       "device": "cpu", "threads": 1, "start_time": "2025-01-01T00:00:00Z"}


def top10(first: str) -> list[list]:
    words = [first, "the", "a", "<unk>", "N", "of", "to", "in", "and", "null"]
    return [[w, round(0.2 - 0.02 * i, 3)] for i, w in enumerate(words)]


def write_run(results: Path, config: Config, valid: list[float], test: float | None,
              distances: list[float] | None = None, first_word: str = "federal",
              p_unk: float = 0.05, rank: float = 120.0) -> Path:
    """A finished run dir as ``fit`` writes it, with chosen numbers."""
    run_dir = results / "runs" / config.run_id
    atomic.write_json(run_dir / "config.json", config.to_dict())
    atomic.write_json(run_dir / "env.json", ENV)
    schema.write_metrics(run_dir, [schema.EpochRow(
        epoch=e, lr=1.0, train_ce=math.log(v + 20), train_aug_kl=0.0, tokens_per_s=1000.0,
        valid_ppl=v, valid_ppl_test_batch=None,
        subspace_distance=None if distances is None else distances[e - 1],
        target_entropy=None, elapsed_s=10.0 * e) for e, v in enumerate(valid, 1)])
    best = int(np.argmin(valid)) + 1
    if not config.valid_only:  # an ablation has no test-set numbers (train.finish)
        schema.write_test_statistics(run_dir, schema.TestStatistics(
            run_id=config.run_id, best_epoch=best, n_tokens=82_429,
            mean_p_unk=p_unk, mean_target_rank=rank, target_entropy=9.0,
            uniform_entropy=math.log(10_000), logit_std=None, target_logit_std=None,
            logit_target_corr=None, mean_p_articles=None, mean_p_neighbours=None,
            neighbours_k=None,
            phrases=[{"context": p["context"], "target": p["target"],
                      "top10": top10(first_word)} for p in reference.PHRASES]))
    schema.write_final(run_dir, schema.FinalRecord(
        run_id=config.run_id, corpus=config.corpus, size=config.size,
        variant=config.variant, tied=config.tied, alpha=config.alpha,
        tau=config.tau, seed=config.seed, n_params=2_640_000 if config.tied else
        4_650_000, epochs_run=len(valid), best_epoch=best, valid_ppl=min(valid),
        test_ppl=test, eval_batch_size=20, test_batch_size=1,
        suffix=config.suffix, wall_s=10.0 * len(valid), device="cpu"))
    return run_dir


def plotted(fig) -> list[list[float]]:
    """The y values of the lines of the first panel (seaborn adds empty legend proxies)."""
    return sorted([float(y) for y in line.get_ydata()] for line in fig.axes[0].lines
                  if len(line.get_ydata()))


def error(kind: type[Exception], function, *args) -> str:
    with pytest.raises(kind) as info:
        function(*args)
    return str(info.value)


def cli_flags(*commands: str) -> set[str]:
    """The option strings of ``lmtie <command>`` for each command, from its ``--help``."""
    flags = set()
    for command in commands:
        text = io.StringIO()
        with contextlib.redirect_stdout(text), contextlib.suppress(SystemExit):
            cli.main([command, "--help"])
        flags |= set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", text.getvalue()))
    return flags


def small_model(variant="vd", **overrides):
    torch.manual_seed(0)
    config = make_config("ptb", "small", variant, **overrides)
    return RNNLM(50, config.replace(embedding_dim=16, hidden_size=16)), config



def reference_lstm(model, x, state, masks):
    """PyTorch's LSTMCell on the model's own tensors (so autograd reaches them), written
    independently of lmtie: m_l on h for the recurrence and on the output, at every step."""
    h0, c0 = state
    cell = torch.nn.LSTMCell(x.shape[-1], model.hidden_size, dtype=x.dtype)
    new_h, new_c = [], []
    for layer in range(model.num_layers):
        weights = {"weight_ih": getattr(model.lstm, f"weight_ih_l{layer}"),
                   "weight_hh": getattr(model.lstm, f"weight_hh_l{layer}"),
                   "bias_ih": getattr(model.lstm, f"bias_ih_l{layer}"),
                   "bias_hh": getattr(model.lstm, f"bias_hh_l{layer}")}
        if layer:  # the next layer's input size is H
            cell = torch.nn.LSTMCell(model.hidden_size, model.hidden_size, dtype=x.dtype)
        h, c, m, out = h0[layer], c0[layer], masks[layer], []
        for t in range(x.shape[0]):
            h, c = torch.func.functional_call(cell, weights, (x[t], (m * h, c)))  # same m ...
            out.append(m * h)  # ... and on the output to the next layer / softmax
        x = torch.stack(out)
        new_h.append(h)
        new_c.append(c)
    return x, (torch.stack(new_h), torch.stack(new_c))


FIGURE1_VOCAB = 50  # words of the synthetic stream (the conftest's ``markov_ids``)
FIGURE1_TINY = Figure1Setup(slice_tokens=600, hidden_size=8, num_layers=1, batch_size=4,
                            bptt=10, lr=1e-2, epochs=30, halvings=0)  # a fixed 30 epochs


def figure1_row(beta: float, tau: float, seed: int, distance: float, epochs: int = 20,
                **values) -> schema.Figure1Row:
    """A Figure 1 row with chosen numbers (zeros and empty curves elsewhere)."""
    fields = dict(beta=beta, tau=tau, seed=seed, slice_start=0, epochs=epochs, final_loss=0.0,
                  final_ce=0.0, final_aug_kl=None, initial_distance=0.0,
                  final_distance=distance, final_residual=0.0, wall_s=0.0,
                  distance_per_epoch=[], centred_distance_per_epoch=[], loss_per_epoch=[],
                  setup=Figure1Setup().to_dict())
    return schema.Figure1Row(**{**fields, **values})
