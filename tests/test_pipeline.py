"""lmtie.pipeline: notebook parameters, skipping finished runs, failures, the smoke pipeline
end to end on real PTB (slow), and the report page as a reader's browser shows it: a headless
Chromium (Debian package `chromium`, installed by .ci/run) opens it offline at 1280 px and must
find the summary first, every figure loaded at its design size (so its text reads at the size
it was drawn), nothing wider than the window and no request outside the file (skipped, saying
why, without a browser)."""

import json
import math
import re
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from bs4 import BeautifulSoup
from chromium import find_browser, open_page

from lmtie import atomic, download, identity, pipeline, reference, settings, tables
from lmtie.config import preset_configs
from lmtie.data import split_sha256
from lmtie.summary import SECTIONS

COMMITTED_REPORT = Path(__file__).resolve().parents[1] / "results" / "report.html"
WIDTH = 1280  # CSS px: a laptop window
needs_browser = pytest.mark.skipif(find_browser() is None,
                                   reason="no Chromium installed (apt-get install chromium; "
                                          ".ci/run installs it)")


def test_notebook_01_gets_the_flags_of_the_config():
    config = preset_configs("smoke")[0].replace(tau=10.0, suffix="smoke-tau10",
                                                valid_only=True)
    params = pipeline.train_parameters(config, threads=1)
    assert params == {"flags": "--corpus ptb --size small --variant vd --tau 10.0 --epochs 2 "
                               "--max-batches 100 --suffix smoke-tau10", "threads": 1}
    assert settings.parse_train_flags(params["flags"]) == config
    with pytest.raises(ValueError, match="bptt"):
        pipeline.train_parameters(config.replace(bptt=20))


def test_is_finished_needs_the_same_config_and_a_later_final_json(tmp_path):
    config = preset_configs("smoke")[0]
    run_dir = tmp_path / config.run_id
    atomic.write_json(run_dir / "config.json", config.to_dict())
    assert not pipeline.is_finished(run_dir, config)  # no final.json: unfinished
    atomic.write_json(run_dir / "final.json", {"run_id": config.run_id})
    assert pipeline.is_finished(run_dir, config)
    assert not pipeline.is_finished(run_dir, config.replace(max_batches=50))
    time.sleep(0.01)
    atomic.write_json(run_dir / "config.json", config.to_dict())  # a restart after final.json
    assert not pipeline.is_finished(run_dir, config)


def test_reproduce_checks_its_arguments(tmp_path):
    with pytest.raises(ValueError, match="jobs"):
        pipeline.reproduce("smoke", jobs=0, results_dir=tmp_path)
    with pytest.raises(ValueError, match="preset"):
        pipeline.reproduce("tiny", results_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"01_train\.ipynb"):
        pipeline.reproduce("smoke", results_dir=tmp_path, notebooks_dir=tmp_path)
    assert pipeline.default_results_dir("smoke") == Path("results/smoke")
    assert pipeline.default_results_dir("cpu") == Path("results")


def test_missing_corpus_is_downloaded_first_saying_so(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(download, "download_corpus", lambda c, d: calls.append((c, d)))
    pipeline.ensure_corpora({"ptb"}, tmp_path)
    assert calls == [("ptb", tmp_path)]
    assert f"ptb: not in {tmp_path}; downloading it" in capsys.readouterr().out
    for split in ("train", "valid", "test"):
        (tmp_path / "ptb").mkdir(exist_ok=True)
        (tmp_path / "ptb" / f"ptb.{split}.txt").write_text("a b\n")
    pipeline.ensure_corpora({"ptb"}, tmp_path)
    assert len(calls) == 1  # present: nothing downloaded


def test_without_network_the_download_error_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setitem(download.URLS, "ptb", str(tmp_path / "unreachable.tgz"))
    with pytest.raises(download.DownloadError, match="by hand"):
        pipeline.ensure_corpora({"ptb"}, tmp_path / "data")
    assert not (tmp_path / "data" / "ptb").exists()


@pytest.mark.slow
def test_failed_notebook_names_itself_and_the_cell_and_is_kept(tmp_path):
    source = tmp_path / "broken.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("raise ValueError('no corpus here')"),
        nbformat.v4.new_code_cell("y = 2")]), source)
    output = tmp_path / "out" / "broken.ipynb"
    with pytest.raises(pipeline.NotebookError) as info:
        pipeline.run_notebook(source, output, {})
    message = str(info.value)
    assert "broken.ipynb" in message and "ValueError: no corpus here" in message
    assert "raise ValueError" in message and str(output) in message
    executed = nbformat.read(output, as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert [e.evalue for e in errors] == ["no corpus here"]


def _errors(notebook: Path) -> list[str]:
    nb = nbformat.read(notebook, as_version=4)
    return [f"{o.ename}: {o.evalue}" for c in nb.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if o.output_type == "error"]


def _html_tables(soup: BeautifulSoup) -> list[pd.DataFrame]:
    tables = []
    for table in soup.find_all("table"):
        rows = [[cell.get_text(strip=True) for cell in tr.find_all(["th", "td"])]
                for tr in table.find_all("tr")]
        tables.append(pd.DataFrame(rows[1:], columns=rows[0]) if len(rows) > 1 else None)
    return [t for t in tables if t is not None]


@pytest.mark.slow
def test_smoke_pipeline_end_to_end_on_real_ptb(smoke, data_dir, capsys):
    out, checkpoints, first = smoke.results, smoke.checkpoints, smoke.wall_s
    configs = preset_configs("smoke")
    assert smoke.report == out / "report.html"
    html = smoke.report

    sha = split_sha256("ptb", data_dir)
    for config in configs:  # one local submitit job per run, its log beside the results
        record = atomic.read_json(out / "jobs" / config.run_id / "job.json")
        assert record["executor"] == "local" and Path(record["log"]).is_file()
        fingerprint = identity.fingerprint(config, sha)  # the run's keyed checkpoint folder
        assert (identity.checkpoint_dir_for(config, fingerprint, checkpoints) / "last.pt"
                ).is_file()

    executed = sorted((out / "notebooks").glob("*.ipynb"))
    assert [p.name for p in executed] == sorted(
        [*(f"01_train-{c.run_id}.ipynb" for c in configs), *pipeline.ANALYSIS_NOTEBOOKS,
         pipeline.REPORT_NOTEBOOK])
    assert {p.name: _errors(p) for p in executed} == {p.name: [] for p in executed}

    # table1.csv: the expected columns, our four smoke runs with finite perplexities that
    # beat a uniform guess over the 10,000 words, beside the paper's numbers
    table = pd.read_csv(out / "tables" / "table1_runs.csv")
    assert list(table.columns) == tables.TABLE1_RUN_COLUMNS
    ours = table.dropna(subset=["test_ppl"])
    assert list(ours["run_id"]) == [c.run_id for c in configs]
    for _, row in ours.iterrows():
        assert 1 < row["valid_ppl"] < 10_000 and 1 < row["test_ppl"] < 10_000
        variant = row["run_id"].split("-")[2]
        assert (row["paper_valid_ppl"], row["paper_test_ppl"]) == reference.paper_perplexity(
            "ptb", "small", variant)
        assert row["test_diff"] == pytest.approx(row["test_ppl"] - row["paper_test_ppl"])
        assert (row["epochs_run"], row["max_batches"], row["device"]) == (2, 100, "cpu")
        final = json.loads((out / "runs" / row["run_id"] / "final.json").read_text())
        assert row["test_ppl"] == final["test_ppl"]

    # the console: one line per epoch of each run, no warnings
    for config in configs:
        for epoch in (1, 2):
            assert smoke.console.count(f"[01_train {config.run_id}] epoch {epoch} of 2:") == 1
    assert "warning" not in smoke.console.lower() and "error" not in smoke.console.lower()

    # report.html: the summary first, Table 1 (four cells of ours beside the paper's), the
    # cells to run as commands, the figures embedded, the qualitative tables, the decisions
    # and the provenance; no script (it renders offline)
    soup = BeautifulSoup(html.read_text(encoding="utf-8"), "html.parser")
    assert not soup.find_all("script")
    assert not soup.find_all(src=re.compile("^https?:")) + soup.find_all(
        href=re.compile("^https?:"))  # nothing to fetch: the page renders offline
    text = soup.get_text()
    assert text.index("Preset smoke") < text.index("reproduced = within 3") < text.index(
        "Contents:") < text.index("Table 1: perplexity")
    html_tables = _html_tables(soup)
    table1 = next(t for t in html_tables if "valid, paper" in t.columns)
    assert len(table1) == 4 and list(table1["seeds"]) == ["1 (1 seed)"] * 4
    assert [float(v) for v in table1["test, paper"]] == [87.3, 82.9, 85.1, 82.7]
    assert all(math.isfinite(float(v)) for v in [*table1["valid, ours"], *table1["test, ours"]])
    assert ("for v in vd al re real; do lmtie train --corpus ptb --size medium --variant $v; "
            "done") in text
    images = [img["src"] for img in soup.find_all("img")]
    assert len(images) >= 2 and all(src.startswith("data:image/png;base64,") for src in images)
    assert soup.find(id="subspace").find_next("img")["src"].startswith("data:image/png;base64,")
    qualitative = [t for t in html_tables if "+REAL (large, paper)" in t.columns]
    assert len(qualitative) == 4 and all(len(t) == 10 for t in qualitative)
    assert qualitative[0]["+REAL (large, paper)"].iloc[0] == "federal 0.22"
    assert all(len(t["+REAL (small, ours)"].iloc[0].split()) == 2 for t in qualitative)
    assert all(f"{d} " in text for d in ("A1", "A2", "A3", "D1", "T1", "T2", "E1", "S1"))
    provenance = next(t for t in html_tables if "command" in t.columns)
    assert sorted(provenance["run"]) == sorted(c.run_id for c in configs)
    subspace = pd.read_csv(out / "tables" / "subspace_distance.csv")
    assert sorted(set(subspace["model"])) == ["+AL", "VD-LSTM"] and len(subspace) == 4
    assert subspace["subspace_distance"].between(0, 1).all()

    # a second reproduce skips the finished runs, is fast, and writes the same bytes
    outputs = [*out.glob("tables/*.csv"), *out.glob("figures/*.png"), out / "report.html",
               *(out / "notebooks" / n for n in (*pipeline.ANALYSIS_NOTEBOOKS,
                                                 pipeline.REPORT_NOTEBOOK))]
    before = {p: p.read_bytes() for p in outputs}
    finals = {c.run_id: (out / "runs" / c.run_id / "final.json").stat().st_mtime_ns
              for c in configs}
    capsys.readouterr()
    start = time.perf_counter()
    pipeline.reproduce("smoke", data_dir=data_dir, results_dir=out, checkpoint_root=checkpoints)
    second = time.perf_counter() - start
    printed = capsys.readouterr().out
    print(f"smoke pipeline: {first:.0f} s, again (all runs skipped): {second:.0f} s")
    assert printed.count("skipped: finished") == 4 and "training" not in printed
    assert finals == {c.run_id: (out / "runs" / c.run_id / "final.json").stat().st_mtime_ns
                      for c in configs}
    assert [p for p in outputs if p.read_bytes() != before[p]] == []
    assert second < min(120, first / 2)


def _check_in_browser(report: Path, screenshot: Path) -> None:
    page = open_page(report, WIDTH)
    screenshot.write_bytes(page.png)
    print(f"{report}: {page.width} × {page.height} px at a {WIDTH} px window; {screenshot}")
    headings = [(tag, anchor) for tag, anchor, _ in page.headings]
    assert headings[0][0] == "H1" and headings[1][0] == "H2"  # the title, then the sections
    first_section = page.headings[1][2]
    sections = [text for tag, _, text in page.headings if tag == "H2"]
    assert sections == [title.replace("`", "") for _, title in SECTIONS], (
        "every section title reads as written (p(<unk>) once lost its <unk> as an HTML tag)")
    assert page.text.index("reproduced = within") < page.text.index("Contents:") < (
        page.text.index(first_section)), "the summary and contents come before any section"
    assert page.width <= WIDTH and page.overflowing == [], "nothing wider than the window"
    assert page.images, "the figures are embedded"
    for image in page.images:
        assert image["complete"] and min(image["natural"]) > 0 and min(image["shown"]) > 0, image
        assert image["design"] and image["shown"][0] == pytest.approx(image["design"], abs=1), (
            f"{image['alt']}: shown {image['shown'][0]} px wide, drawn for {image['design']}")
    assert all(url.startswith(("file:", "data:")) for url in page.requests), page.requests


@needs_browser
def test_committed_report_reads_in_a_browser(tmp_path):
    _check_in_browser(COMMITTED_REPORT, tmp_path / "report-1280.png")


@needs_browser
@pytest.mark.slow
def test_smoke_report_reads_in_a_browser(smoke):
    _check_in_browser(smoke.report, smoke.results / "report-1280.png")
