"""Does +REAL work? The controlled runs of the +REAL study, read from their run files.

Each hypothesis names one reading of the paper (or one mechanism) that the failure of +REAL
(W = Lᵀ, b = 0, J^aug at τ = 20) could hang on, the validation-only run that switches it, the
run it changes (its baseline) and the +RE run it should match. The verdict compares them at
the last epoch all three reached (the run and its +RE only, where the question is whether the
reading beats +RE): validation perplexity only. A reading that beat +RE by more than
``BEATS`` points is also run to the full schedule with ``--measure-test``: its test perplexity
is shown beside the faithful one, labelled as that reading. Nothing here trains: missing runs
show the command that makes them.

Paper: Sec. 3-4, 6.3 (our addition: issue 13, the evidence for why +REAL fails here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lmtie import atomic, schema
from lmtie.config import Config, at_seed, make_config, seed_of
from lmtie.layout import ResultsDir
from lmtie.report import read_metrics

FAITHFUL = "ptb-small-real-seed1"  # +REAL as we read the paper (40 epochs)
RE = "ptb-small-re-seed1"
SEEDS = ("ptb-small-real-seed2",)  # the faithful +REAL at other seeds (full schedule)
RE_BIAS = ("ptb-small-re-seed1-e25-bias", "ptb-small-re-seed1-bias")  # the longer one is used
REAL_BIAS = "ptb-small-real-seed1-bias"
# Perplexity points within which two runs count as the same: the spread of one setting over
# seeds and CPUs here (+REAL at epoch 5, seed 1 vs 2: 137.33 vs 139.47; at epoch 10, AMD vs
# Intel CPU: 134.51 vs 136.60).
NOISE = 3.0
BEATS = 1.0  # points below +RE that ask for a full-schedule run of the reading (issue 13)
FULL_EPOCHS = make_config("ptb", "small", "real").epochs  # the schedule of every study run
VERDICT_COLUMNS = ["hypothesis", "run_id", "epoch", "seeds", "valid_ppl", "baseline_valid_ppl",
                   "reference_valid_ppl", "vs_reference", "outcome", "verdict", "test_ppl",
                   "baseline", "reference", "command"]


@dataclass(frozen=True)
class Hypothesis:
    """One reading of the failure and the run that tests it.

    Attributes:
        name: what the failure would hang on, in one line.
        label: the change in a few words (the conclusion's lists).
        runs: run_ids of the runs that switch it (a short run, and the same reading at the
            full schedule where it was run in full); the one with most epochs counts.
        baseline: run_id of the run it departs from (+REAL, with or without a bias).
        reference: run_ids of the +RE run(s) it should match; the one with most epochs counts.
        command: the ``lmtie train`` flags that make ``run`` (after ``--corpus ptb --size
            small``).
        question: "trains": does the change remove the failure of its baseline (the
            faithful +REAL)? "beats": does it make +REAL beat +RE (its baseline, +REAL with a
            bias, already trains, and does not limit the epoch compared)?
    """

    name: str
    label: str
    runs: tuple[str, ...]
    baseline: str
    reference: tuple[str, ...]
    command: str
    question: str = "trains"


HYPOTHESES = (
    Hypothesis("J^aug weighs 35 times too much (KL averaged over batch × time, CE summed "
               "over time): α/35", "α/35", ("ptb-small-real-seed1-e10-alphadiv35",),
               FAITHFUL, (RE,),
               "--variant real --epochs 10 --alpha 0.37142857142857144 --suffix "
               "e10-alphadiv35"),
    Hypothesis("the target moves with the tied L (feedback): ỹ from L frozen for each epoch",
               "ỹ from L frozen each epoch",
               ("ptb-small-real-seed1-e10-frozen",), FAITHFUL, (RE,),
               "--variant real --epochs 10 --frozen-target"),
    Hypothesis("stop-gradient on ỹ (Decision A2) reversed", "no stop-gradient on ỹ",
               ("ptb-small-real-seed1-e5-nodetach",), FAITHFUL, (RE,),
               "--variant real --epochs 5 --no-detach-target"),
    Hypothesis("the target is too sharp: τ = 40 (α = 26)", "τ = 40",
               ("ptb-small-real-seed1-e5-tau40",), FAITHFUL, (RE,),
               "--variant real --epochs 5 --tau 40"),
    Hypothesis("the seed: seed 2", "seed 2", ("ptb-small-real-seed2-e5",), FAITHFUL, (RE,),
               "--variant real --epochs 5 --seed 2"),
    Hypothesis("b = 0 (Sec. 4's RE): a free output bias b in J", "a free output bias",
               (REAL_BIAS,), FAITHFUL, RE_BIAS, "--variant real --output-bias"),
    Hypothesis("b in J and in ŷ = softmax((W h + b)/τ), Sec. 3's 'ŷ is y_t at τ'", "b in ŷ too",
               ("ptb-small-real-seed1-e10-bias-augbias",), REAL_BIAS, RE_BIAS,
               "--variant real --epochs 10 --output-bias --aug-bias", "beats"),
    Hypothesis("stop-gradient reversed, with a free bias", "no stop-gradient, with a bias",
               ("ptb-small-real-seed1-nodetach-bias", "ptb-small-real-seed1-e10-nodetach-bias"),
               REAL_BIAS, RE_BIAS,
               "--variant real --no-detach-target --output-bias --measure-test", "beats"),
)


def _curve(results_dir: str | Path, run_id: str) -> pd.Series:
    """Validation perplexity by epoch of ``run_id`` (empty when it has no completed epoch)."""
    run_dir = ResultsDir(results_dir).run(run_id)
    path = run_dir / "metrics.jsonl"
    if not path.is_file() or not schema.read_metrics(run_dir):  # not started, or in epoch 1
        return pd.Series(dtype=float)
    return read_metrics(run_dir).set_index("epoch")["valid_ppl"]


def _other_seeds(results_dir: Path, run_id: str, reference: str, epoch: int
                 ) -> list[tuple[str, float, float]]:
    """The same reading at the other seeds: (run_id, its validation perplexity, its +RE's)
    at ``epoch`` for every seed s ≠ 1 whose run (``run_id`` at seed s) and +RE
    (``reference`` at seed s) have both reached ``epoch``; a seed still short of it is left
    out until it gets there. [] when ``run_id`` is not of seed 1. Raises: ValueError
    (``run_id`` names no seed; a corrupt metrics file)."""
    if seed_of(run_id) != 1:
        return []
    found = []
    for path in sorted(ResultsDir(results_dir).runs.iterdir()):
        try:
            seed = seed_of(path.name)
        except ValueError:  # no seed in the folder's name: not a run of this reading
            continue
        if seed == 1 or at_seed(path.name, 1) != run_id:
            continue
        curve = _curve(results_dir, path.name)
        other = _curve(results_dir, at_seed(reference, seed))
        if epoch in curve.index and epoch in other.index:
            found.append((path.name, float(curve[epoch]), float(other[epoch])))
    return found


def _longest(results_dir: Path, run_ids: tuple[str, ...]) -> tuple[str, pd.Series]:
    """The run of ``run_ids`` with most completed epochs (the first listed on a tie) and its
    curve. Raises: ValueError (corrupt metrics file)."""
    curves = {r: _curve(results_dir, r) for r in run_ids}
    run_id = max(curves, key=lambda r: len(curves[r]))
    return run_id, curves[run_id]


def test_perplexity(results_dir: str | Path, run_id: str) -> float:
    """The test perplexity in ``run_id``'s ``final.json`` when the run went the full schedule
    of its size; NaN while it trains, for a validation-only run and for a shortened one (a
    5-epoch run of another seed measures the test set too, but is no reading run in full).
    Raises: ValueError (a corrupt run file)."""
    run_dir = ResultsDir(results_dir).run(run_id)
    if not (run_dir / schema.FINAL).is_file():
        return math.nan
    config = Config.from_dict(atomic.read_json(run_dir / "config.json"))
    full = make_config(config.corpus, config.size, config.variant)
    test = schema.read_final(run_dir).test_ppl
    if test is None or config.epochs < full.epochs or config.max_batches is not None:
        return math.nan
    return float(test)


def _outcome(valid: float, baseline: float, reference: float) -> str:
    """What the run did, from three perplexities at one epoch (see :func:`verdict`)."""
    if valid < reference - NOISE:
        return "beats +RE"  # (beyond NOISE; with seeds, :func:`verdict` asks every seed)
    if valid < reference - BEATS:
        return "below +RE, within the noise"
    if valid <= reference + NOISE:
        return "trains like +RE"
    if math.isnan(baseline):  # the baseline stopped before this epoch
        return "worse than +RE"
    if valid < baseline - NOISE:
        return "between +REAL and +RE"
    return "fails like its baseline" if valid <= baseline + NOISE else "worse than its baseline"


_VERDICTS = {  # (question, outcome) -> verdict on the hypothesis
    "trains": {"beats +RE": "supports", "below +RE, within the noise": "supports",
               "trains like +RE": "supports", "between +REAL and +RE": "partly"},
    "beats": {"beats +RE": "supports", "below +RE in every seed": "supports",
              "below +RE, within the noise": "open (run longer)", "trains like +RE": "no gain"},
}


def verdict(results_dir: str | Path) -> pd.DataFrame:
    """One row per hypothesis (``VERDICT_COLUMNS``) at the last epoch its run, its baseline
    and its reference all reached; for a "beats" question, the last epoch of the run and its
    reference (``baseline_valid_ppl`` NaN where the baseline stopped earlier).

    ``seeds``: for a "beats" question, the reading's seeds paired with +RE's at that epoch
    (:func:`_other_seeds`; 1 elsewhere); ``valid_ppl``, ``reference_valid_ppl`` and
    ``test_ppl`` are then means over them, and the outcome is "below +RE in every seed" when
    each seed is more than ``BEATS`` below its +RE (the seeds measure the noise, so
    ``NOISE`` no longer applies). ``vs_reference`` = run − reference (perplexity points).
    ``outcome``: "beats +RE" (more than ``NOISE`` below), "below +RE, within the noise"
    (more than ``BEATS`` below), "trains like +RE" (within ``NOISE`` above), "between +REAL and +RE"
    (more than ``NOISE`` below the baseline), "fails like its baseline" (within ``NOISE``),
    "worse than its baseline", or "worse than +RE" (the baseline stopped earlier).
    ``verdict`` on the hypothesis' question: "trains" (does the failure hang on it?):
    supports (beats or trains like +RE) / partly (between) / refutes, or "too early" while
    the baseline is within 2 × ``NOISE`` of its reference (the failure not visible yet);
    "beats" (does it make +REAL beat +RE?): supports (beyond the noise, or in every seed) /
    open (run longer; below +RE by more than ``BEATS``, within the noise, before the full
    schedule) / within the noise (more seeds; the same at the full schedule, ``FULL_EPOCHS``,
    where only other seeds can tell) / no gain (like +RE) / refutes. "not run" (with the
    command) while a run has no epoch. ``test_ppl``: the run's test perplexity where it was
    run in full with ``--measure-test`` (else NaN).

    Raises:
        ValueError: a corrupt ``metrics.jsonl`` (names it).
    """
    root = Path(results_dir)
    rows = []
    for h in HYPOTHESES:
        run_id, curve = _longest(root, h.runs)
        reference, reference_curve = _longest(root, h.reference)
        baseline_curve = _curve(root, h.baseline)
        row = {"hypothesis": h.name, "run_id": run_id, "baseline": h.baseline,
               "reference": reference, "test_ppl": test_perplexity(root, run_id),
               "command": f"lmtie train --corpus ptb --size small {h.command}"}
        matched = [curve, reference_curve] + [baseline_curve] * (h.question == "trains")
        common = set.intersection(*(set(c.index) for c in matched))
        if not common:
            rows.append({**row, "verdict": "not run"})
            continue
        epoch = max(common)
        valid, ref = float(curve[epoch]), float(reference_curve[epoch])
        baseline = float(baseline_curve.get(epoch, math.nan))
        outcome = _outcome(valid, baseline, ref)
        seeds = [(run_id, valid, ref)]
        if h.question == "beats":  # the reading at other seeds, paired with +RE's
            seeds += _other_seeds(root, run_id, reference, epoch)
        if len(seeds) > 1:
            valid, ref = (sum(s[i] for s in seeds) / len(seeds) for i in (1, 2))
            outcome = ("below +RE in every seed" if max(v - f for _, v, f in seeds) < -BEATS
                       else _outcome(valid, baseline, ref))
            tests = [t for t in (test_perplexity(root, s[0]) for s in seeds) if not math.isnan(t)]
            row["test_ppl"] = sum(tests) / len(tests) if tests else math.nan
        judged = _VERDICTS[h.question].get(outcome, "refutes")
        if h.question == "trains" and baseline - ref < 2 * NOISE:
            judged = "too early"  # the baseline's failure is not visible yet at this epoch
        if judged == "open (run longer)" and epoch >= FULL_EPOCHS:
            judged = "within the noise (more seeds)"  # no longer run left to compare
        rows.append({**row, "epoch": epoch, "seeds": len(seeds), "valid_ppl": valid,
                     "baseline_valid_ppl": baseline,
                     "reference_valid_ppl": ref, "vs_reference": valid - ref,
                     "outcome": outcome, "verdict": judged})
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)


OPEN = ["open (run longer)", "within the noise (more seeds)", "too early", "partly", "not run"]


def _findings(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The rows of a :func:`verdict` table under each finding: "trains" (the failure hangs on
    the reading), "fails" (it does not), "beats" (+REAL beats +RE beyond the noise), "no
    gain" (like +RE) and "open"."""
    asked = table["hypothesis"].map({h.name: h.question for h in HYPOTHESES})
    return {"trains": table[(asked == "trains") & (table["verdict"] == "supports")],
            "fails": table[table["verdict"] == "refutes"],
            "beats": table[(asked == "beats") & (table["verdict"] == "supports")],
            "no gain": table[table["verdict"] == "no gain"],
            "open": table[table["verdict"].isin(OPEN)]}


def headline(table: pd.DataFrame) -> str:
    """The conclusion of a :func:`verdict` table in one sentence for the report's opening:
    the readings under which +REAL trains like +RE, those under which it still fails, those
    that make it beat +RE beyond ``NOISE`` (labels only; "none" for an empty list), and the
    open ones with their verdict, their distance to +RE and their test perplexity where the
    table has them."""
    labels = {h.name: h.label for h in HYPOTHESES}

    def listed(rows: pd.DataFrame) -> str:
        names = rows["hypothesis"].map(labels).tolist()
        return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1
                            else names) or "none"

    def measured(row: pd.Series) -> str:
        parts = [row["verdict"]]
        if pd.notna(row.get("vs_reference")):
            seeds = f", mean of {row['seeds']:.0f} seeds" if row.get("seeds", 1) > 1 else ""
            parts.append(f"{row['vs_reference']:+.2f} vs +RE at epoch {row['epoch']:.0f}{seeds}")
        if pd.notna(row.get("test_ppl")):
            parts.append(f"test {row['test_ppl']:.2f}")
        return f"{labels[row['hypothesis']]} ({', '.join(parts)})"

    found = _findings(table)
    text = (f"over {len(table)} readings of the paper (validation, matched epochs) it trains "
            f"like +RE with {listed(found['trains'])}; still fails with "
            f"{listed(found['fails'])}; beats +RE beyond the noise with {listed(found['beats'])}")
    if not found["open"].empty:
        text += "; open: " + "; ".join(measured(r) for _, r in found["open"].iterrows())
    return text


def conclusion(table: pd.DataFrame, diagnosed: pd.DataFrame, results_dir: str | Path
               ) -> list[str]:
    """The study's conclusion as Markdown bullets, from a :func:`verdict` table and an
    :func:`evaluation` table: the readings under which +REAL trains, those that leave it
    failing, whether any beats +RE, what is open, the test perplexity of each reading run in
    full beside the faithful +REAL's and +RE's, and the valid/test ratios with the most the
    evaluation batch moved a diagnosed checkpoint. Raises: ValueError (a corrupt run file)."""
    labels = {h.name: h.label for h in HYPOTHESES}

    def listed(rows: pd.DataFrame) -> str:
        return "; ".join(f"{labels[r.hypothesis]} ({r.valid_ppl:.2f} vs +RE "
                         f"{r.reference_valid_ppl:.2f} at epoch {r.epoch:.0f})"
                         for r in rows.itertuples()) or "none"

    found = _findings(table)
    lines = [
        f"- **+REAL trains like +RE with:** {listed(found['trains'])}.",
        f"- **+REAL still fails with:** {listed(found['fails'])}.",
        f"- **Beats +RE by more than the noise ({NOISE:g} points):** {listed(found['beats'])}; "
        f"no gain: {listed(found['no gain'])}.",
        "- **Open:** " + ("; ".join(f"{labels[r.hypothesis]} ({r.verdict})"
                                    for r in found["open"].itertuples()) or "nothing") + "."]
    faithful, plain = test_perplexity(results_dir, FAITHFUL), test_perplexity(results_dir, RE)
    lines += [f"- **{labels[r.hypothesis]}, run in full** (`{r.run_id}`"
              + (f" and {r.seeds - 1:.0f} more seeds" if r.seeds > 1 else "")
              + f", labelled as that reading, never in Table 1's place): test {r.test_ppl:.2f}"
              + (" (mean)" if r.seeds > 1 else "")
              + f" against the faithful +REAL's {faithful:.2f} and +RE's {plain:.2f}."
              for r in table[table["test_ppl"].notna()].itertuples()]
    ratios = {r: _valid_over_test(results_dir, r) for r in (FAITHFUL, *SEEDS, RE)}
    ratios = {r: v for r, v in ratios.items() if not math.isnan(v)}
    if ratios and not diagnosed.empty:
        batch = (diagnosed["batch20_over_batch1"] - 1).abs().max()
        lines.append("- **Valid (batch 20) / test (batch 1) at the best epoch:** " + ", ".join(
            f"{r.removeprefix('ptb-small-')} {v:.2f}" for r, v in ratios.items())
            + f"; on the same checkpoint batch 20 and batch 1 differ by at most "
            f"{100 * batch:.2f} % ({len(diagnosed)} diagnosed), so the batch does not make it.")
    return lines


def _valid_over_test(results_dir: str | Path, run_id: str) -> float:
    """Validation over test perplexity at the best epoch of a finished run with a test number
    (``final.json``); NaN otherwise. Raises: ValueError (a corrupt file)."""
    run_dir = ResultsDir(results_dir).run(run_id)
    final = schema.read_final(run_dir) if (run_dir / schema.FINAL).is_file() else None
    if final is None or final.test_ppl is None:
        return math.nan
    return final.valid_ppl / final.test_ppl


def curves(results_dir: str | Path) -> pd.DataFrame:
    """Validation curves of every run the verdict uses, long format: ``run_id``, ``epoch``,
    ``valid_ppl``, ``family`` ("no bias" for the faithful +REAL's changes, "free bias" for
    those with b). Empty when none has run. Raises: ValueError (corrupt metrics file)."""
    root = Path(results_dir)
    biased = {REAL_BIAS, *RE_BIAS, *(r for h in HYPOTHESES if h.baseline == REAL_BIAS
                                     for r in h.runs)}
    run_ids = dict.fromkeys(r for h in HYPOTHESES for r in (*h.runs, h.baseline, *h.reference))
    frames = [_curve(root, r).rename("valid_ppl").reset_index().assign(
        run_id=r, family="free bias" if r in biased else "no bias") for r in run_ids]
    frames = [f for f in frames if not f.empty]
    columns = ["run_id", "epoch", "valid_ppl", "family"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(
        columns=columns)


EVALUATION_COLUMNS = ["run_id", "epoch", "checkpoint", "valid_ppl_batch1", "valid_ppl_batch10",
                      "valid_ppl_batch20", "batch20_over_batch1", "valid_ppl_state_reset",
                      "best_temperature", "valid_ppl_best_temperature", "median_rank",
                      "share_top10", "nll_share_worst1pct", "mean_confidence", "top1_accuracy",
                      "chunk_ppl_min", "chunk_ppl_max"]


def evaluation(results_dir: str | Path) -> pd.DataFrame:
    """The ``lmtie diagnose`` entries of every run (``EVALUATION_COLUMNS``, one row per run and
    checkpoint epoch): perplexity by evaluation batch and with the state reset, the best
    temperature of the grid, target ranks, the loss tail, calibration, and the lowest and
    highest perplexity of the stream's contiguous pieces (NaN for entries measured before
    pieces were). Validation set only.
    Raises: ValueError (a corrupt ``diagnostics.json``, named)."""
    rows = []
    for path in sorted(ResultsDir(results_dir).runs.glob(f"*/{schema.DIAGNOSTICS}")):
        for e in schema.read_diagnostics(path.parent, path.parent.name).entries:
            by_batch, one = e.valid_ppl_by_batch, e.batch1
            rows.append({
                "run_id": path.parent.name, "epoch": e.epoch, "checkpoint": e.checkpoint,
                **{f"valid_ppl_batch{b}": by_batch[str(b)] for b in (1, 10, 20)},
                "batch20_over_batch1": by_batch["20"] / by_batch["1"],
                "valid_ppl_state_reset": e.valid_ppl_state_reset,
                "best_temperature": one["best_temperature"],
                "valid_ppl_best_temperature": min(one["perplexity_by_temperature"].values()),
                "median_rank": one["rank"]["median"], "share_top10": one["rank"]["share_top10"],
                "nll_share_worst1pct": one["tail"]["nll_share_worst0.01"],
                **one["calibration"],
                "chunk_ppl_min": min(one.get("chunks", [math.nan])),
                "chunk_ppl_max": max(one.get("chunks", [math.nan]))})
    frame = pd.DataFrame(rows, columns=EVALUATION_COLUMNS)
    return frame.astype({c: float for c in EVALUATION_COLUMNS[3:]}) if rows else frame


def valid_over_test_batch(results_dir: str | Path, run_ids: list[str]) -> pd.DataFrame:
    """Per epoch, validation perplexity at the validation batch over that at the test batch
    (``valid_ppl / valid_ppl_test_batch``) for the runs that record both: whether the batch
    alone moves the number. Columns ``run_id``, ``epoch``, ``ratio``. Raises: ValueError."""
    frames = []
    for run_id in run_ids:
        if _curve(Path(results_dir), run_id).empty:  # not started, or in its first epoch
            continue
        m = read_metrics(ResultsDir(results_dir).run(run_id))
        if m["valid_ppl_test_batch"].notna().any():
            frames.append(pd.DataFrame({"run_id": run_id, "epoch": m["epoch"],
                                        "ratio": m["valid_ppl"] / m["valid_ppl_test_batch"]}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["run_id", "epoch", "ratio"]).astype({"ratio": float})

