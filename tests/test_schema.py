"""lmtie.schema: every run file through its record, versions, and migration on read of the
files written before versions (version 1)."""

import csv
import dataclasses
import io
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from lmtie import atomic, schema
from lmtie.config import Config
from lmtie.schema import EpochRow, Figure1Row, SchemaError

ROW = EpochRow(epoch=1, lr=1.0, train_ce=5.0, train_aug_kl=0.1, tokens_per_s=100.0,
               valid_ppl=150.0, valid_ppl_test_batch=151.0, subspace_distance=None,
               target_entropy=9.0, elapsed_s=10.0)
COMMITTED = Path(__file__).resolve().parents[1] / "results"


def test_records_round_trip_with_their_version(tmp_path):
    schema.write_metrics(tmp_path, [ROW, replace(ROW, epoch=2)])
    line = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert line["schema_version"] == EpochRow.VERSION == 2
    assert schema.read_metrics(tmp_path) == [ROW, replace(ROW, epoch=2)]
    entry = schema.DiagnosticsEntry(epoch=3, checkpoint="last", valid_ppl_by_batch={"1": 2.0},
                                    valid_ppl_state_reset=3.0, batch1={"n_tokens": 4})
    schema.write_diagnostics(tmp_path, schema.Diagnostics("r", [entry]))
    assert schema.read_diagnostics(tmp_path, "r").entries == [entry]
    assert schema.read_diagnostics(tmp_path / "none", "r") == schema.Diagnostics("r")


def test_version_1_rows_read_with_none_for_later_fields(tmp_path):
    old = {k: v for k, v in ROW.to_dict().items()
           if k not in ("schema_version", "target_entropy", "valid_ppl_test_batch")}
    atomic.write_jsonl(tmp_path / "metrics.jsonl", [old])
    [row] = schema.read_metrics(tmp_path)
    assert row.target_entropy is None and row.valid_ppl_test_batch is None
    assert row.valid_ppl == 150.0
    atomic.write_jsonl(tmp_path / "metrics.jsonl", [{**old, "schema_version": 2}])
    with pytest.raises(SchemaError, match=r"missing.*target_entropy"):  # v2 always has it
        schema.read_metrics(tmp_path)


def test_newer_versions_and_unknown_fields_are_refused(tmp_path):
    atomic.write_jsonl(tmp_path / "metrics.jsonl", [{**ROW.to_dict(), "schema_version": 9}])
    with pytest.raises(SchemaError, match=r"metrics\.jsonl:1: schema version 9.*update lmtie"):
        schema.read_metrics(tmp_path)
    atomic.write_jsonl(tmp_path / "metrics.jsonl", [{**ROW.to_dict(), "colour": "red"}])
    with pytest.raises(SchemaError, match=r"unknown fields.*colour"):
        schema.read_metrics(tmp_path)


def test_final_json_before_version_3_names_the_suffix_preset(tmp_path):
    final = schema.FinalRecord(
        run_id="r-e2", corpus="ptb", size="small", variant="vd", tied=False, alpha=0.0,
        tau=20.0, seed=1, n_params=10, epochs_run=2, best_epoch=2, valid_ppl=100.0,
        test_ppl=None, eval_batch_size=20, test_batch_size=1, suffix="e2", wall_s=1.0,
        device="cpu")
    old = {("preset" if k == "suffix" else k): v for k, v in final.to_dict().items()}
    for version in (1, 2):
        atomic.write_json(tmp_path / "final.json", {**old, "schema_version": version})
        assert schema.read_final(tmp_path) == final
    schema.write_final(tmp_path, final)
    assert atomic.read_json(tmp_path / "final.json")["schema_version"] == 3


def test_predictions_json_is_read_as_version_1_test_statistics(tmp_path):
    old = {"run_id": "r", "best_epoch": 2, "phrases": [], "mean_p_unk": 0.05,
           "mean_target_rank": 100.0, "n_tokens": 10}  # as the first runs wrote it
    atomic.write_json(tmp_path / "predictions.json", old)
    statistics = schema.read_test_statistics(tmp_path)
    assert statistics.mean_p_unk == 0.05 and statistics.logit_std is None
    schema.write_test_statistics(tmp_path, replace(statistics, logit_std=1.0))
    assert not (tmp_path / "predictions.json").exists()  # migrated
    assert schema.read_test_statistics(tmp_path).logit_std == 1.0


def legacy_csv(path: Path, rows: list[Figure1Row], centred: bool) -> None:
    """A Figure 1 table as version 1 wrote it: CSV, JSON text in cells, nan for no J^aug."""
    names = [f.name for f in dataclasses.fields(Figure1Row)]
    version_1 = names[:names.index("setup") + 1]  # the fields after it came with version 3
    columns = [c for c in version_1 if centred or c != "centred_distance_per_epoch"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        values = row.to_dict()
        writer.writerow({c: json.dumps(values[c], sort_keys=True, separators=(",", ":"))
                         if isinstance(values[c], list | dict) else
                         (math.nan if values[c] is None else values[c]) for c in columns})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(out.getvalue())


@pytest.mark.parametrize("centred", [True, False])
def test_figure1_csv_of_version_1_reads_and_migrates(tmp_path, centred):
    row = Figure1Row(beta=0.0, tau=10.0, seed=1, slice_start=5, epochs=2, final_loss=4.0,
                     final_ce=4.0, final_aug_kl=None, initial_distance=0.98,
                     final_distance=0.97, final_residual=0.9, wall_s=3.0,
                     distance_per_epoch=[0.975, 0.97], centred_distance_per_epoch=[0.5, 0.4],
                     loss_per_epoch=[4.5, 4.0], setup={"epochs": 2, "hidden_size": 16})
    path = schema.figure1_path(tmp_path, "both")
    legacy_csv(path.with_suffix(".csv"), [row], centred)
    [read] = schema.read_figure1_rows(path)
    assert read == (row if centred else replace(row, centred_distance_per_epoch=[]))
    schema.write_figure1_rows(path, [read])
    assert path.is_file() and not path.with_suffix(".csv").exists()
    assert schema.read_figure1_rows(path) == [read]


def test_figure1_rows_of_versions_2_and_3_read_without_the_later_fields(tmp_path):
    values = {"beta": 1.0, "tau": 10.0, "seed": 1, "slice_start": 5, "epochs": 1,
              "final_loss": 4.0, "final_ce": 6.0, "final_aug_kl": 1e-5,
              "initial_distance": 0.98, "final_distance": 0.9, "final_residual": 0.5,
              "wall_s": 3.0, "distance_per_epoch": [0.9], "centred_distance_per_epoch": [0.8],
              "loss_per_epoch": [4.0], "setup": {"epochs": 1}, "schema_version": 2}
    row = Figure1Row.from_dict(values)
    assert row.residual_per_epoch == [] and row.sine_by_hidden_direction == []
    assert row.converged is None and row.least_squares_distance is None
    version_3 = {**values, "residual_per_epoch": [0.5], "converged": True, "lr_halvings": 4,
                 "hidden_singular_values": [2.0, 1.0], "hidden_effective_rank": 1.9,
                 "sine_by_hidden_direction": [0.1, 0.9], "least_squares_distance": 0.06,
                 "schema_version": 3}
    row = Figure1Row.from_dict(version_3)
    assert row.least_squares_distance == 0.06
    assert row.optimum_distance is None and row.optimum_converged is None
    path = tmp_path / "runs.jsonl"
    new = replace(row, slice_loss=4.1, optimum_loss=3.9, optimum_distance=0.15,
                  optimum_residual=0.03, optimum_gradient=1e-7, optimum_iterations=5,
                  optimum_converged=True)
    schema.write_figure1_rows(path, [new])
    assert schema.read_figure1_rows(path) == [new]
    assert atomic.read_jsonl(path)[0]["schema_version"] == 4


@pytest.mark.skipif(not (COMMITTED / "runs").is_dir(), reason="no committed results")
def test_committed_run_files_load():
    """Every run file committed under results/ reads through its record."""
    for run_dir in sorted((COMMITTED / "runs").iterdir()):
        if (run_dir / "metrics.jsonl").is_file():
            assert schema.read_metrics(run_dir), run_dir
        if (run_dir / "final.json").is_file():  # version 2: its suffix as "preset"
            final = schema.read_final(run_dir)
            config = Config.from_dict(atomic.read_json(run_dir / "config.json"))
            assert final.run_id == run_dir.name == config.run_id
            assert final.suffix == config.suffix
        if schema.test_statistics_path(run_dir).is_file():
            assert schema.read_test_statistics(run_dir).phrases
        schema.read_diagnostics(run_dir, run_dir.name)
    for sweep in ("both", "convergence"):
        rows = schema.read_figure1_rows(schema.figure1_path(COMMITTED, sweep))
        assert rows and all(r.setup["hidden_size"] == 300 for r in rows)
