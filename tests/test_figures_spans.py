"""lmtie.figures_spans: J^aug and ỹ's entropy per epoch of the runs that train with them."""

import dataclasses
import math

from helpers import SMOKE, write_run

from lmtie import atomic, figures_spans, report, schema, tables


def test_augmented_figure_draws_the_runs_that_train_with_it(results):
    real = SMOKE["real"]
    real_dir = results / "runs" / real.run_id
    schema.write_metrics(real_dir, [
        dataclasses.replace(row, train_aug_kl=kl, target_entropy=h)
        for row, kl, h in zip(schema.read_metrics(real_dir), (0.01, 0.02), (9.1, 9.0),
                              strict=True)])
    write_run(results, real.replace(tau=10.0, suffix="smoke-tau10"), [100.0], 95.0)
    tau10 = results / "runs" / real.replace(tau=10.0, suffix="smoke-tau10").run_id
    legacy = {k: v for k, v in schema.read_metrics(tau10)[0].to_dict().items()  # version 1:
              if k not in ("schema_version", "target_entropy", "valid_ppl_test_batch")}
    atomic.write_jsonl(tau10 / "metrics.jsonl", [{**legacy, "train_aug_kl": 0.1}])
    all_runs = report.load_runs(results)
    fig = figures_spans.plot_augmented(report.load_metrics(all_runs),
                                       tables.ablations(all_runs, "smoke"))
    kl_ax, entropy_ax = fig.axes
    assert {line.get_label(): list(line.get_ydata()) for line in kl_ax.lines} == {
        "+REAL (base)": [0.01, 0.02], "τ 10": [0.1]}  # not VD-LSTM
    assert kl_ax.get_yscale() == "log"
    entropies = [list(line.get_ydata()) for line in entropy_ax.lines]
    assert entropies[0] == [9.1, 9.0] and math.isnan(entropies[1][0])
    note = entropy_ax.get_xlabel()  # the missing series is named, with the reason
    assert "τ 10" in note and "older than the entropy field" in note and "base" not in note
    al2 = SMOKE["al"].replace(seed=2)  # a run no ablation shares: a panel of its own
    write_run(results, al2, [100.0, 99.0], 95.0)
    al2_dir = results / "runs" / al2.run_id
    schema.write_metrics(al2_dir, [dataclasses.replace(row, train_aug_kl=0.003)
                                   for row in schema.read_metrics(al2_dir)])
    all_runs = report.load_runs(results)
    fig = figures_spans.plot_augmented(report.load_metrics(all_runs),
                                       tables.ablations(all_runs, "smoke"))
    al_kl = fig.axes[2]
    assert al_kl.get_title() == "ptb small +AL, seed 2: J^aug = KL(ỹ ‖ ŷ), training set"
    assert [line.get_label() for line in al_kl.lines] == ["+AL"]
    vd_only = report.load_runs(results, "smoke").query("variant == 'vd'")
    assert figures_spans.plot_augmented(report.load_metrics(vd_only), tables.ablations(
        all_runs, "smoke")) is None
