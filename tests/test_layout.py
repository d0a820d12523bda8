"""lmtie.layout: every path under a results root, and a ResultsDir going where a root goes."""

from pathlib import Path

from lmtie.layout import ResultsDir


def test_every_path_under_the_root():
    results = ResultsDir("results/smoke")
    assert Path(results) == Path("results/smoke") == results.root
    assert results.run("ptb-small-vd-seed1") == Path("results/smoke/runs/ptb-small-vd-seed1")
    assert results.table("table1") == Path("results/smoke/tables/table1.csv")
    assert results.figure("ablations") == Path("results/smoke/figures/ablations.png")
    assert results.subspace("runs") == Path("results/smoke/subspace/runs.jsonl")
    assert results.notebooks == Path("results/smoke/notebooks")
    assert results.report == Path("results/smoke/report.html")
    assert ResultsDir(results).runs == Path("results/smoke/runs")  # a root of a root
