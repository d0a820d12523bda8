"""lmtie.report: run files → frames, in the paper's order, with every error naming the file
and the fix; tables as CSV and back; and the report side (report, tables, figures, the page,
the papermill driver) never importing the training code."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import ENV, SMOKE, error

from lmtie import atomic, report, schema, tables

COMMITTED = Path(__file__).resolve().parents[1] / "results" / "runs"
REPORT_SIDE = ("report", "tables", "claims", "study", "summary", "figures", "figures_spans",
               "render", "schema", "settings", "layout", "pipeline")
TRAINING = ("lmtie.train", "lmtie.model", "lmtie.loss", "lmtie.figure1")


def test_load_runs_reads_run_files_in_paper_order(results):
    frame = report.load_runs(results, "smoke")
    assert list(frame["run_id"]) == ["ptb-small-vd-seed1-smoke", "ptb-small-real-seed1-smoke"]
    assert list(frame["valid_ppl"]) == [100.0, 90.0]
    assert list(frame["test_ppl"]) == [95.0, 85.0]
    assert list(frame["mean_p_unk"]) == [0.06, 0.03]
    assert list(frame["suffix"]) == ["smoke", "smoke"]
    assert list(frame["git_sha"]) == [ENV["git_sha"]] * 2
    assert len(report.load_runs(results)) == 2  # no preset: every run dir
    assert list(frame.columns) == report.RUN_COLUMNS
    empty = report.load_runs(results, "cpu")  # the cpu preset's runs are not there
    assert empty.empty and list(empty.columns) == report.RUN_COLUMNS
    assert tables.table1_runs(empty)["command"].notna().sum() == 20


def test_missing_final_json_after_the_last_epoch_names_the_file_and_the_fix(results):
    path = results / "runs" / SMOKE["vd"].run_id / "final.json"
    path.unlink()  # both epochs of the smoke config ran: the final evaluation is missing
    message = error(FileNotFoundError, report.load_runs, results, "smoke")
    assert str(path) in message and "lmtie evaluate" in message and "--resume" in message


def test_run_without_final_json_is_in_progress_and_claims_no_numbers(results):
    run_dir = results / "runs" / SMOKE["vd"].run_id
    (run_dir / "final.json").unlink()
    schema.write_metrics(run_dir, schema.read_metrics(run_dir)[:1])  # killed in epoch 2
    frame = report.load_runs(results, "smoke")
    row = frame[frame["run_id"] == SMOKE["vd"].run_id].iloc[0]
    assert row["status"] == "in progress (epoch 1 of 2)" and row["epochs_run"] == 1
    assert row["command"].endswith("--resume") and pd.isna(row["test_ppl"])
    table = tables.table1_runs(frame)
    shown = table[table["run_id"] == SMOKE["vd"].run_id].iloc[0]
    assert pd.isna(shown["valid_ppl"]) and pd.isna(shown["test_diff"])
    assert SMOKE["vd"].run_id not in set(tables.test_statistics(frame)["run_id"])
    assert len(report.load_metrics(frame)) == 3  # its curve so far is still shown
    (run_dir / "metrics.jsonl").write_text("")  # in its first epoch
    frame = report.load_runs(results, "smoke")
    assert "in progress (epoch 0 of 2)" in set(frame["status"])
    assert len(report.load_metrics(frame)) == 2  # the other runs' epochs only


def test_corrupt_or_incomplete_final_json_names_the_file(results):
    path = results / "runs" / SMOKE["real"].run_id / "final.json"
    path.write_text('{"valid_ppl": 90.0, ')
    assert str(path) in error(ValueError, report.load_runs, results, "smoke")
    path.write_text('{"valid_ppl": 90.0}')
    message = error(ValueError, report.load_runs, results, "smoke")
    assert str(path) in message and "test_ppl" in message


def test_run_of_another_config_is_refused_for_a_preset(results):
    path = results / "runs" / SMOKE["vd"].run_id / "config.json"
    atomic.write_json(path, SMOKE["vd"].replace(max_batches=50).to_dict())
    assert str(path) in error(ValueError, report.load_runs, results, "smoke")


def test_metrics_missing_or_corrupt_names_the_file(results):
    frame = report.load_runs(results, "smoke")
    path = results / "runs" / SMOKE["vd"].run_id / "metrics.jsonl"
    path.write_text(path.read_text() + "{not json\n")
    assert f"{path}:3" in error(ValueError, report.load_metrics, frame)
    path.unlink()
    assert str(path) in error(FileNotFoundError, report.load_metrics, frame)


def test_tables_survive_csv_round_trip(results, tmp_path):
    long = tables.qualitative(report.load_runs(results, "smoke"))
    report.save_table(long, tmp_path / "tables" / "qualitative.csv")
    back = report.read_table(tmp_path, "qualitative")
    assert (back["word"] == long["word"]).all()  # "null" and "N" stay words
    report.save_table(tables.table1_runs(report.load_runs(results)), tmp_path / "tables" / "t.csv")
    table = report.read_table(tmp_path, "t")
    assert table["valid_ppl"].notna().sum() == 2 and table["command"].notna().all()
    cells = tables.table1(table)  # from the CSV as from the frame
    assert cells.equals(tables.table1(tables.table1_runs(report.load_runs(results))))
    with pytest.raises(FileNotFoundError, match=r"missing\.csv"):
        report.read_table(tmp_path, "missing")


@pytest.mark.parametrize("name", ["final.json", "metrics.jsonl"])
def test_nan_in_a_run_file_is_a_report_error(tmp_path, name):
    run_dir = tmp_path / "runs" / "ptb-small-vd-seed1"
    shutil.copytree(COMMITTED / "ptb-small-vd-seed1", run_dir)
    path = run_dir / name
    text = path.read_text()
    path.write_text(re.sub(r'"valid_ppl": [0-9.]+', '"valid_ppl": NaN', text, count=1))
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}(:1)? holds NaN"):
        report.load_metrics(report.load_runs(tmp_path))


def test_report_side_imports_no_training_code():
    code = ("import sys\n"
            f"for name in {REPORT_SIDE!r}: __import__('lmtie.' + name)\n"
            f"print([m for m in {TRAINING!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
