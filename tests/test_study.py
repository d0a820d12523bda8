"""The +REAL study's verdict and evaluation tables from hand-written run files."""

import math

import pandas as pd
import pytest

from lmtie import atomic, schema, study
from lmtie.config import make_config


def write_curve(root, run_id, valid, test_batch=None):
    schema.write_metrics(root / "runs" / run_id, [schema.EpochRow(
        epoch=e, lr=1.0, train_ce=5.0, train_aug_kl=0.0, tokens_per_s=1.0, valid_ppl=v,
        valid_ppl_test_batch=test_batch[e - 1] if test_batch else None,
        subspace_distance=None, target_entropy=None, elapsed_s=1.0)
        for e, v in enumerate(valid, 1)])


def write_run(root, run_id, test_ppl, valid_ppl=100.0, **settings):
    """config.json and final.json of a finished run (its settings parsed from run_id)."""
    _, _, variant, seed, *_ = run_id.split("-")
    config = make_config("ptb", "small", variant, seed=int(seed.removeprefix("seed")),
                         **settings)
    run_dir = root / "runs" / run_id
    atomic.write_json(run_dir / "config.json", config.to_dict())
    schema.write_final(run_dir, schema.FinalRecord(
        run_id=run_id, corpus=config.corpus, size=config.size, variant=config.variant,
        tied=config.tied, alpha=config.alpha, tau=config.tau, seed=config.seed, n_params=1,
        epochs_run=config.epochs, best_epoch=1, valid_ppl=valid_ppl, test_ppl=test_ppl,
        eval_batch_size=20, test_batch_size=1, suffix=config.suffix, wall_s=1.0,
        device="cpu"))


@pytest.fixture
def results(tmp_path):
    write_curve(tmp_path, study.FAITHFUL, [200, 150, 140, 138, 137, 136, 135])
    write_curve(tmp_path, study.RE, [200, 145, 130, 120, 115, 110, 108])
    write_curve(tmp_path, study.REAL_BIAS, [190, 140, 125, 115, 108, 104])
    write_curve(tmp_path, study.RE_BIAS[1], [190, 141, 126, 116])  # the shorter +RE-bias
    write_curve(tmp_path, study.RE_BIAS[0], [190, 141, 126, 116, 109])
    return tmp_path


def test_verdict_at_matched_epochs(results):
    by_run = {h.runs[-1]: h for h in study.HYPOTHESES}  # the short runs
    alpha, frozen, tau40, augbias = (
        "ptb-small-real-seed1-e10-alphadiv35", "ptb-small-real-seed1-e10-frozen",
        "ptb-small-real-seed1-e5-tau40", "ptb-small-real-seed1-e10-bias-augbias")
    write_curve(results, alpha, [199, 144, 128, 117, 110, 105])  # epoch 6: 105 vs +RE 110
    write_curve(results, tau40, [200, 150, 141, 139])  # epoch 4: like +REAL (138)
    write_curve(results, augbias, [190, 141, 126, 116, 111])  # epoch 5: +RE-bias 109
    nodetach = "ptb-small-real-seed1-e10-nodetach-bias"
    write_curve(results, nodetach, [190, 141, 126, 114.5])  # epoch 4: +RE-bias 116
    table = study.verdict(results).set_index("run_id")
    assert set(table.index) == set(by_run)
    write_curve(results, "ptb-small-real-seed2-e5", [150, 150])  # epoch 2: gap 150 - 145 < 6
    assert table.loc["ptb-small-real-seed2-e5", "verdict"] == "not run"
    assert study.verdict(results).set_index("run_id").loc[
        "ptb-small-real-seed2-e5", "verdict"] == "too early"
    row = table.loc[alpha]
    assert (row["epoch"], row["valid_ppl"], row["reference_valid_ppl"]) == (6, 105, 110)
    assert row["vs_reference"] == -5 and row["outcome"] == "beats +RE"
    assert row["verdict"] == "supports"
    write_curve(results, frozen, [200, 148, 136])  # epoch 3: 136 vs +RE 130, +REAL 140
    row = study.verdict(results).set_index("run_id").loc[frozen]
    assert (row["epoch"], row["outcome"], row["verdict"]) == (3, "between +REAL and +RE",
                                                              "partly")
    assert table.loc[tau40, "outcome"] == "fails like its baseline"
    assert table.loc[tau40, "verdict"] == "refutes"
    # the bias family: baseline +REAL with a bias, reference the longer +RE-bias run
    row = table.loc[augbias]
    assert row["reference"] == study.RE_BIAS[0] and row["epoch"] == 5
    assert row["outcome"] == "trains like +RE" and row["baseline_valid_ppl"] == 108
    assert row["verdict"] == "no gain"  # a "beats" question: +REAL with a bias already trains
    row = table.loc[nodetach]
    assert row["outcome"] == "below +RE, within the noise" and row["verdict"] == "open (run longer)"
    assert math.isnan(row["test_ppl"])  # a validation-only run
    full = "ptb-small-real-seed1-nodetach-bias"  # the same reading run in full, test measured
    write_curve(results, full, [190, 141, 126, 114, 107.5])  # epoch 5: +RE-bias 109
    write_run(results, full, 95.5)
    row = study.verdict(results).set_index("hypothesis").loc[
        "stop-gradient reversed, with a free bias"]  # the longer run counts
    assert (row["run_id"], row["epoch"], row["test_ppl"]) == (full, 5, 95.5)
    missing = table.loc["ptb-small-real-seed1-e10-frozen"]
    assert missing["verdict"] == "not run" and pd.isna(missing["epoch"])
    assert missing["command"].startswith("lmtie train --corpus ptb --size small --variant real")
    assert "--frozen-target" in missing["command"]


def test_a_reading_within_the_noise_at_the_full_schedule_asks_for_seeds(results):
    last = study.FULL_EPOCHS
    reading = "ptb-small-real-seed1-nodetach-bias"
    write_curve(results, study.REAL_BIAS, [100.0] * 31)  # its baseline stopped at epoch 31
    write_curve(results, reading, [100.0] * (last - 2) + [98.0, 98.0])  # 2 below from 39 on
    write_curve(results, study.RE_BIAS[1], [100.0] * (last - 1))  # the longer +RE-bias, at 39
    row = study.verdict(results).set_index("run_id").loc[reading]
    assert (row["reference"], row["epoch"], row["vs_reference"]) == (study.RE_BIAS[1], 39, -2)
    assert row["verdict"] == "open (run longer)"  # the reference can still go to epoch 40
    write_curve(results, study.RE_BIAS[1], [100.0] * last)
    row = study.verdict(results).set_index("run_id").loc[reading]
    assert (row["epoch"], row["outcome"]) == (last, "below +RE, within the noise")
    assert row["verdict"] == "within the noise (more seeds)"
    assert math.isnan(row["baseline_valid_ppl"])  # a "beats" question: run vs +RE only
    write_curve(results, reading, [100.0] * (last - 1) + [104.0])  # 4 above +RE-bias
    assert study.verdict(results).set_index("run_id").loc[reading, "outcome"] == "worse than +RE"
    write_curve(results, reading, [100.0] * (last - 2) + [98.0, 98.0])
    open_ = study.conclusion(study.verdict(results), study.evaluation(results), results)[3]
    assert "no stop-gradient, with a bias (within the noise (more seeds))" in open_
    write_run(results, reading, 95.5)  # run in full with its test set measured
    line = study.headline(study.verdict(results))
    assert "beats +RE beyond the noise with none; open: " in line
    assert "b in ŷ too (not run)" in line  # no numbers for a run that has none
    assert line.endswith("; no stop-gradient, with a bias (within the noise (more seeds), "
                         "-2.00 vs +RE at epoch 40, test 95.50)")


def test_a_reading_at_more_seeds_is_paired_with_plus_re_at_the_same_seeds(results):
    """Seed 2 of the reading and of +RE with a bias: means over the seeds paired at the
    matched epoch; "below +RE in every seed" (each more than BEATS below) supports it, where
    one seed alone was within the 3-point noise; a seed short of the epoch waits."""
    last = study.FULL_EPOCHS
    reading, reference = "ptb-small-real-seed1-nodetach-bias", study.RE_BIAS[1]
    write_curve(results, study.REAL_BIAS, [100.0] * 31)
    write_curve(results, reading, [100.0] * (last - 1) + [98.0])  # seed 1: −2 at epoch 40
    write_curve(results, reference, [100.0] * last)
    write_run(results, reading, 95.0)
    seed2, reference2 = "ptb-small-real-seed2-nodetach-bias", "ptb-small-re-seed2-bias"
    write_curve(results, seed2, [99.0] * (last - 1))  # epoch 39 of 40: not counted yet
    write_curve(results, reference2, [101.0] * last)
    row = study.verdict(results).set_index("run_id").loc[reading]
    assert (row["seeds"], row["valid_ppl"], row["verdict"]) == (
        1, 98.0, "within the noise (more seeds)")
    write_curve(results, seed2, [99.0] * last)  # seed 2: 99 vs 101, −2
    write_run(results, seed2, 97.0)
    write_curve(results, "ptb-small-real-seed1-e10-nodetach-bias", [100.0] * 10)  # not a seed
    row = study.verdict(results).set_index("run_id").loc[reading]
    assert (row["seeds"], row["valid_ppl"], row["reference_valid_ppl"]) == (2, 98.5, 100.5)
    assert (row["outcome"], row["verdict"]) == ("below +RE in every seed", "supports")
    assert row["test_ppl"] == 96.0  # the mean of the seeds' test perplexities
    assert "beats +RE beyond the noise with no stop-gradient, with a bias" in study.headline(
        study.verdict(results))
    found = study.conclusion(study.verdict(results), study.evaluation(results), results)
    assert "`ptb-small-real-seed1-nodetach-bias` and 1 more seeds" in found[4]
    assert "test 96.00 (mean)" in found[4]
    write_curve(results, seed2, [100.8] * last)  # seed 2: only 0.2 below its +RE
    row = study.verdict(results).set_index("run_id").loc[reading]
    assert row["vs_reference"] == pytest.approx(-1.1)  # mean of −2 and −0.2
    assert row["outcome"] == "below +RE, within the noise"  # not every seed by > 1
    assert row["verdict"] != "supports"


def test_curves_and_batch_ratio(results):
    frame = study.curves(results)
    assert set(frame["family"]) == {"no bias", "free bias"}
    assert frame[frame["run_id"] == study.RE]["valid_ppl"].tolist()[-1] == 108
    write_curve(results, "ptb-small-real-seed2", [210, 160], test_batch=[200, 150])
    ratio = study.valid_over_test_batch(results, ["ptb-small-real-seed2", study.RE, "absent"])
    assert ratio["run_id"].unique().tolist() == ["ptb-small-real-seed2"]  # +RE lacks the field
    assert ratio["ratio"].tolist() == pytest.approx([210 / 200, 160 / 150])


def test_evaluation_rows_from_diagnostics(results):
    entry = schema.DiagnosticsEntry(
        epoch=7, checkpoint="last", valid_ppl_by_batch={"1": 100.0, "10": 101.0, "20": 102.0},
        valid_ppl_state_reset=130.0,
        batch1={"best_temperature": 1.25,
                "perplexity_by_temperature": {"1": 100.0, "1.25": 97.0},
                "rank": {"median": 4.0, "share_top10": 0.6},
                "tail": {"nll_share_worst0.01": 0.05},
                "calibration": {"mean_confidence": 0.4, "top1_accuracy": 0.3}})
    schema.write_diagnostics(results / "runs" / study.FAITHFUL,
                             schema.Diagnostics(study.FAITHFUL, [entry]))
    row = study.evaluation(results).iloc[0]
    assert row["run_id"] == study.FAITHFUL and row["epoch"] == 7
    assert row["batch20_over_batch1"] == pytest.approx(1.02)
    assert row["valid_ppl_best_temperature"] == 97.0 and row["mean_confidence"] == 0.4
    assert math.isnan(row["chunk_ppl_min"])  # measured before the stream was cut in pieces
    entry.batch1["chunks"] = [120.0, 80.0, 95.0]
    schema.write_diagnostics(results / "runs" / study.FAITHFUL,
                             schema.Diagnostics(study.FAITHFUL, [entry]))
    row = study.evaluation(results).iloc[0]
    assert (row["chunk_ppl_min"], row["chunk_ppl_max"]) == (80.0, 120.0)


def test_conclusion_lists_each_reading_under_its_finding(results):
    write_curve(results, "ptb-small-real-seed1-e10-alphadiv35", [199, 144, 128, 117, 110, 105])
    write_curve(results, "ptb-small-real-seed1-e5-tau40", [200, 150, 141, 139])
    write_curve(results, "ptb-small-real-seed1-e10-bias-augbias", [190, 141, 126, 116, 111])
    full = "ptb-small-real-seed1-nodetach-bias"
    write_curve(results, full, [190, 141, 126, 116, 104])  # epoch 5: 104 vs +RE-bias 109
    write_run(results, full, 80.25)
    write_run(results, study.FAITHFUL, 109.07)
    write_run(results, study.RE, 86.93)
    short = "ptb-small-real-seed2-e5"  # shortened, not an ablation: it measured the test set
    write_curve(results, short, [200, 151, 142, 140, 139])
    write_run(results, short, 133.07, epochs=5)
    lines = study.conclusion(study.verdict(results), study.evaluation(results), results)
    trains, fails, beats, open_, tested = lines  # nothing diagnosed: no line on the ratio
    assert trains == ("- **+REAL trains like +RE with:** α/35 (105.00 vs +RE 110.00 at epoch "
                      "6); a free output bias (108.00 vs +RE 109.00 at epoch 5).")
    assert fails == ("- **+REAL still fails with:** τ = 40 (139.00 vs +RE 120.00 at epoch 4); "
                     "seed 2 (139.00 vs +RE 115.00 at epoch 5).")
    assert beats.startswith("- **Beats +RE by more than the noise (3 points):** no stop-gradient, "
                            "with a bias (104.00 vs +RE 109.00 at epoch 5); no gain: b in ŷ too")
    assert "ỹ from L frozen each epoch (not run)" in open_
    assert tested == ("- **no stop-gradient, with a bias, run in full** "
                      "(`ptb-small-real-seed1-nodetach-bias`, labelled as that reading, never in "
                      "Table 1's place): test 80.25 against the faithful +REAL's 109.07 and "
                      "+RE's 86.93.")


def test_conclusion_states_the_valid_over_test_ratios_and_the_batch(results):
    for run_id, (valid, test) in {study.FAITHFUL: (129.56, 109.07),
                                  study.SEEDS[0]: (125.35, 107.22),
                                  study.RE: (91.7101, 86.9254)}.items():
        write_run(results, run_id, test, valid)
    for run_id, batch20 in ((study.FAITHFUL, 100.2), (study.RE, 99.9)):
        entry = schema.DiagnosticsEntry(
            epoch=10, checkpoint="last",
            valid_ppl_by_batch={"1": 100.0, "10": 100.0, "20": batch20},
            valid_ppl_state_reset=120.0,
            batch1={"best_temperature": 1.0, "perplexity_by_temperature": {"1": 100.0},
                    "rank": {"median": 9.0, "share_top10": 0.5},
                    "tail": {"nll_share_worst0.01": 0.03},
                    "calibration": {"mean_confidence": 0.3, "top1_accuracy": 0.2}})
        schema.write_diagnostics(results / "runs" / run_id, schema.Diagnostics(run_id, [entry]))
    line = study.conclusion(study.verdict(results), study.evaluation(results), results)[-1]
    assert line == ("- **Valid (batch 20) / test (batch 1) at the best epoch:** real-seed1 1.19, "
                    "real-seed2 1.17, re-seed1 1.06; on the same checkpoint batch 20 and batch "
                    "1 differ by at most 0.20 % (2 diagnosed), so the batch does not make it.")
