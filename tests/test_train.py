"""Training loop: determinism, resume, NaN guard, evaluation numbers, run files."""

import copy
import json
import math
import re

import pytest
import torch
from helpers import cli_flags

from lmtie import analysis, atomic, data, runs, schema, train
from lmtie.cli import main
from lmtie.config import make_config, preset_configs
from lmtie.data import batchify
from lmtie.model import RNNLM
from lmtie.reference import N_PARAMS_M

TIME_KEYS = {"tokens_per_s", "elapsed_s", "wall_s"}


def tiny_config(variant="real", **overrides):
    values = dict(embedding_dim=12, hidden_size=12, batch_size=4, bptt=5, epochs=3,
                  eval_batch_size=4, suffix="test")
    return make_config("ptb", "small", variant, **{**values, **overrides})


def fit(config, tmp_path, data_dir, **kwargs):
    return train.fit(config, data_dir=data_dir, results_dir=tmp_path,
                     checkpoint_dir=tmp_path / "ckpt" / config.run_id, device="cpu",
                     progress=False, **kwargs)


def without_times(rows):
    return [{k: v for k, v in r.items() if k not in TIME_KEYS} for r in rows]


def test_run_files_and_same_seed_is_identical(tmp_path, tiny_ptb):
    config = tiny_config()
    run_a = fit(config, tmp_path / "a", tiny_ptb)
    run_b = fit(config, tmp_path / "b", tiny_ptb)
    rows_a = atomic.read_jsonl(run_a / "metrics.jsonl")
    assert len(rows_a) == 3 and {"epoch", "lr", "train_ce", "train_aug_kl", "valid_ppl",
                                 "subspace_distance", "tokens_per_s", "elapsed_s"} <= set(rows_a[0])
    assert rows_a[0]["subspace_distance"] is None  # tied: W = Lᵀ, nothing to measure
    assert rows_a[0]["train_aug_kl"] > 0
    corpus = data.Corpus("ptb", tiny_ptb)
    model = RNNLM(len(corpus.vocab), config)
    model.load_state_dict(runs.load_checkpoint(tmp_path / "a" / "ckpt" / config.run_id
                                               / "last.pt")["model"])
    assert rows_a[-1]["target_entropy"] == pytest.approx(  # ỹ of the last epoch's L
        analysis.augmented_target_entropy(model.embedding.weight, corpus.valid[1:], 20.0))
    assert without_times(rows_a) == without_times(atomic.read_jsonl(run_b / "metrics.jsonl"))
    final = atomic.read_json(run_a / "final.json")
    assert final == {**atomic.read_json(run_b / "final.json"), "wall_s": final["wall_s"]}
    assert final["valid_ppl"] == min(r["valid_ppl"] for r in rows_a)
    assert final["best_epoch"] == 1 + [r["valid_ppl"] for r in rows_a].index(final["valid_ppl"])
    assert math.isfinite(final["test_ppl"]) and final["test_batch_size"] == 1
    assert final["tied"] and final["alpha"] == pytest.approx(13.0)
    predictions = schema.read_test_statistics(run_a).to_dict()
    assert len(predictions["phrases"]) == 4 and len(predictions["phrases"][0]["top10"]) == 10
    assert 1 <= predictions["mean_target_rank"] <= final["n_params"]
    assert 0 < predictions["target_entropy"] < predictions["uniform_entropy"]
    assert -1 <= predictions["logit_target_corr"] <= 1
    assert predictions["logit_std"] > 0 and predictions["target_logit_std"] > 0
    articles = torch.tensor([corpus.vocab.stoi[w] for w in ("a", "the")])  # no "an" here
    best = RNNLM(len(corpus.vocab), config)
    best.load_state_dict(runs.load_checkpoint(tmp_path / "a" / "ckpt" / config.run_id
                                              / "best.pt")["model"])
    with torch.no_grad():
        wh, _ = best.eval()(corpus.test[:-1, None], best.init_state(1))
        probs = torch.softmax(wh[:, 0].double(), -1)
    assert predictions["mean_p_articles"] == pytest.approx(
        probs[:, articles].sum(1).mean().item(), rel=1e-5)
    assert predictions["neighbours_k"] == analysis.NEIGHBOURS
    assert 0 < predictions["mean_p_neighbours"] < 1
    env = atomic.read_json(run_a / "env.json")
    assert env["torch"] == torch.__version__ and env["device"] == "cpu"
    assert env["cpu_capability"] in {"DEFAULT", "NO AVX", "AVX2", "AVX512", "ZVECTOR", "SVE256"}
    # the validation stream at the test protocol's batch 1, from the same weights
    assert rows_a[-1]["valid_ppl_test_batch"] == pytest.approx(
        train.evaluate(model, batchify(corpus.valid, 1), config.bptt).perplexity, rel=1e-12)


def test_frozen_target_builds_the_target_from_the_epochs_first_weights(tiny_ptb, monkeypatch):
    """--frozen-target: every step of an epoch builds ỹ from L as it was when the epoch
    began, while the model's L moves; without it ỹ comes from the moving L itself."""
    seen = []
    real_loss = train.lm_loss
    monkeypatch.setattr(train, "lm_loss", lambda wh, b, t, lt, **k: (
        seen.append(lt.detach().clone()), real_loss(wh, b, t, lt, **k))[1])
    corpus = data.Corpus("ptb", tiny_ptb)
    for frozen in (True, False):
        config = tiny_config(frozen_target=frozen, max_batches=4)
        torch.manual_seed(0)
        model = RNNLM(len(corpus.vocab), config)
        start = model.embedding.weight.detach().clone()
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
        seen.clear()
        step = train.sgd_step(model, optimizer, config, torch.Generator().manual_seed(0))
        train.train_epoch(model, batchify(corpus.train, config.batch_size), config.bptt, step,
                          max_batches=config.max_batches)
        assert len(seen) == 4 and not torch.equal(model.embedding.weight, start)
        if frozen:
            assert all(torch.equal(lt, start) for lt in seen)
        else:  # step k sees L after k updates
            assert torch.equal(seen[0], start) and not torch.equal(seen[-1], start)


def test_valid_only_run_touches_no_test_data(tmp_path, tiny_ptb, monkeypatch):
    config = tiny_config(epochs=1, output_bias=True, valid_only=True)
    evaluated = []
    real_evaluate = train.evaluate
    for module in (train, analysis):  # the validation and the numbers of each epoch
        monkeypatch.setattr(module, "evaluate", lambda model, data, *a, **k: (
            evaluated.append((data.shape[1], data.numel())),
            real_evaluate(model, data, *a, **k))[1])
    run_dir = fit(config, tmp_path, tiny_ptb)
    final = atomic.read_json(run_dir / "final.json")
    assert final["test_ppl"] is None and math.isfinite(final["valid_ppl"])
    assert not (run_dir / schema.TEST_STATISTICS).exists()
    assert not (run_dir / schema.LEGACY_TEST_STATISTICS).exists()
    valid = data.Corpus("ptb", tiny_ptb).valid
    # the validation stream at the validation and at the test batch, never the test stream
    assert evaluated == [(b, batchify(valid, b).numel())
                         for b in (config.eval_batch_size, config.test_batch_size)]


def test_kill_and_resume_equals_uninterrupted(tmp_path, tiny_ptb, monkeypatch):
    config = tiny_config("al")
    whole = fit(config, tmp_path / "whole", tiny_ptb)
    real_epoch, calls = train.train_epoch, []

    def dies_in_epoch_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the process is killed mid-epoch
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(train, "train_epoch", dies_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        fit(config, tmp_path / "killed", tiny_ptb)
    monkeypatch.setattr(train, "train_epoch", real_epoch)
    killed_dir = tmp_path / "killed" / "runs" / config.run_id
    assert len(atomic.read_jsonl(killed_dir / "metrics.jsonl")) == 2
    with pytest.raises(ValueError, match="--resume"):
        fit(config, tmp_path / "killed", tiny_ptb)
    resumed = fit(config, tmp_path / "killed", tiny_ptb, resume=True)
    env = atomic.read_json(resumed / "env.json")
    assert len(env["resumes"]) == 1 and env["resumes"][0]["start_time"] >= env["start_time"]
    assert without_times(atomic.read_jsonl(resumed / "metrics.jsonl")) == without_times(
        atomic.read_jsonl(whole / "metrics.jsonl"))
    a, b = atomic.read_json(resumed / "final.json"), atomic.read_json(whole / "final.json")
    assert {k: v for k, v in a.items() if k not in TIME_KEYS} == {
        k: v for k, v in b.items() if k not in TIME_KEYS}
    other = config.replace(tau=10.0)  # same run_id and checkpoint dir, another config
    with pytest.raises(ValueError, match=r"belongs to another run.*tau 20\.0 instead of 10\.0"):
        train.fit(other, data_dir=tiny_ptb, results_dir=tmp_path / "other",
                  checkpoint_dir=tmp_path / "killed" / "ckpt" / config.run_id, device="cpu",
                  progress=False, resume=True)


def test_nan_guard_keeps_last_good_checkpoint(tmp_path, tiny_ptb, monkeypatch):
    config = tiny_config()
    train_rows = batchify(data.Corpus("ptb", tiny_ptb).train, config.batch_size)
    per_epoch = data.num_bptt_batches(train_rows, config.bptt)
    real_loss, calls = train.lm_loss, []

    def poisoned(*args, **kwargs):
        parts = real_loss(*args, **kwargs)
        calls.append(1)
        if len(calls) > per_epoch + 3:  # epoch 1 is clean; in epoch 2 the loss turns NaN
            return type(parts)(parts.objective * math.nan, parts.ce * math.nan,
                               parts.aug_kl, parts.n_tokens)
        return parts

    monkeypatch.setattr(train, "lm_loss", poisoned)
    with pytest.raises(FloatingPointError, match=r"non-finite.*last good checkpoint.*epoch 1"):
        fit(config, tmp_path, tiny_ptb)
    ckpt = runs.load_checkpoint(tmp_path / "ckpt" / config.run_id / "last.pt")
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values())


def test_nan_guard_advice_names_options_that_exist(tmp_path, tiny_ptb, monkeypatch, capsys):
    real_loss = train.lm_loss

    def poisoned(*args, **kwargs):
        parts = real_loss(*args, **kwargs)
        return type(parts)(parts.objective * torch.nan, parts.ce * torch.nan, parts.aug_kl,
                           parts.n_tokens)

    monkeypatch.setattr(train, "lm_loss", poisoned)
    assert main(["train", "--variant", "vd", "--epochs", "2", "--results-dir", str(tmp_path),
                 "--checkpoint-dir", str(tmp_path / "C"), "--data-dir", str(tiny_ptb),
                 "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lmtie train: error: ") and "Traceback" not in err
    assert "non-finite training loss" in err and "no checkpoint" in err
    named = set(re.findall(r"--[a-z][a-z-]+", err))
    assert named and named <= cli_flags("train")


def test_bad_inputs(tmp_path, tiny_ptb):
    with pytest.raises(FileNotFoundError, match="lmtie data download"):
        fit(tiny_config(), tmp_path, tmp_path / "nowhere")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ValueError, match=r"bad\.json"):
        atomic.read_json(tmp_path / "bad.json")
    json.dumps(tiny_config().to_dict())  # config.json is plain JSON


# --- Every cell of the ``paper`` preset (slow) ---------------------------------------------
# Every cell of the ``paper`` preset runs end to end on the CPU, so that a week-long GPU grid
# cannot fail on a path nobody ran: WikiText-2's 33,278-word vocabulary, the medium and large
# models, each variant. Each cell trains two batches (batch 4, bptt 10, the cell's own model,
# vocabulary, dropout, loss and schedule otherwise), validates once and runs the test and
# prediction step, on the real corpora cut short: 200 training tokens, 300 validation tokens
# (two segments a column at the validation batch of 20) and 100 test tokens. The streams read at
# batch 1 (validation at the test batch, test perplexity, prediction mass) cost a large model a
# pass over its weights per token, so they are kept short. Two CPU-side float64 analyses whose
# cost grows with the cell but whose code does not change with it are replaced by stubs of their
# shape: ``nearest_neighbours`` (V²·D flops, over a minute for WikiText-2 medium on one core) and
# ``subspace_distance`` (an SVD of the (V, H) matrices, seconds for PTB large);
# tests/test_analysis.py covers them. Slow: 75 CPU-seconds (user + sys) and
# 4 GB of checkpoints written for the 21 tests; 11 minutes of wall time on this project's shared
# 2-core machine with two training runs beside it, where PTB large (about 80 s a cell) and
# WikiText-2 medium (about 40 s) are most of it.

CELLS = preset_configs("paper")
SHORT = {"train": 200, "valid": 300, "test": 100}


@pytest.fixture(scope="module")
def corpora(data_dir):
    """PTB and WikiText-2 as loaded (and verified) in full, once."""
    return {name: data.Corpus(name, data_dir) for name in ("ptb", "wikitext-2")}


def expected_params(config, vocab_size):
    """Unique trainable parameters, counted by hand: L, W and b unless tied, and two LSTM
    layers with one bias per gate."""
    d, h = config.embedding_dim, config.hidden_size
    lstm = 4 * h * (d + h) + 4 * h + 4 * h * (h + h) + 4 * h
    return vocab_size * d + lstm + (0 if config.tied else vocab_size * h + vocab_size)


def test_the_paper_preset_has_the_twenty_cells_of_table_1():
    assert len(CELLS) == 20
    assert {(c.corpus, c.size) for c in CELLS} == {
        ("ptb", "small"), ("ptb", "medium"), ("ptb", "large"), ("wikitext-2", "small"),
        ("wikitext-2", "medium")}


@pytest.mark.slow
@pytest.mark.parametrize("config", CELLS, ids=[c.run_id for c in CELLS])
def test_paper_cell_trains_validates_and_tests(config, corpora, tmp_path, monkeypatch):
    def short_corpus(name, data_dir=None):
        corpus = copy.copy(corpora[name])
        for split, n in SHORT.items():
            setattr(corpus, split, getattr(corpora[name], split)[:n])
        return corpus

    monkeypatch.setattr(train, "Corpus", short_corpus)
    monkeypatch.setattr(analysis, "nearest_neighbours", lambda weight, k: torch.arange(
        1, k + 1).expand(weight.shape[0], k))
    monkeypatch.setattr(analysis, "subspace_distance", lambda a, b: 0.5)
    cell = config.replace(epochs=1, max_batches=2, batch_size=4, bptt=10)
    run_dir = train.fit(cell, results_dir=tmp_path, checkpoint_dir=tmp_path / "ckpt",
                        device="cpu", progress=False)

    vocab_size = len(corpora[config.corpus].vocab)
    assert vocab_size == data.EXPECTED[config.corpus]["vocab_size"]
    final = schema.read_final(run_dir)
    assert final.n_params == expected_params(config, vocab_size)
    paper = N_PARAMS_M.get((config.corpus, config.size, config.tied))
    if paper is not None:
        assert round(final.n_params / 1e6, len(str(paper).split(".")[1])) == paper
    # two SGD steps from a uniform initialisation: finite and about as uncertain as uniform
    for ppl in (final.valid_ppl, final.test_ppl):
        assert math.isfinite(ppl) and 0.2 * vocab_size < ppl < 5 * vocab_size
    (row,) = schema.read_metrics(run_dir)
    assert (row.subspace_distance is None) == config.tied
    assert 0 < row.target_entropy <= math.log(vocab_size) + 1e-6
    statistics = schema.read_test_statistics(run_dir)
    assert statistics.n_tokens == SHORT["test"] - 1
    assert len(statistics.phrases) == (4 if config.corpus == "ptb" else 0)
    assert all(len(p["top10"]) == 10 for p in statistics.phrases)
    assert 0 < statistics.mean_p_unk < 1
