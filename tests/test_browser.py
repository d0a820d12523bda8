"""The report as a reader's browser shows it: a headless Chromium (Debian package `chromium`,
installed by .ci/run) opens the page offline at 1280 px and must find the summary first, every
figure loaded at its design size (so its text reads at the size it was drawn), nothing wider
than the window and no request outside the file. Skipped, saying why, without a browser."""

from pathlib import Path

import pytest
from chromium import find_browser, open_page

COMMITTED = Path(__file__).resolve().parents[1] / "results" / "report.html"
WIDTH = 1280  # CSS px: a laptop window

needs_browser = pytest.mark.skipif(find_browser() is None,
                                   reason="no Chromium installed (apt-get install chromium; "
                                          ".ci/run installs it)")


def _check(report: Path, screenshot: Path) -> None:
    page = open_page(report, WIDTH)
    screenshot.write_bytes(page.png)
    print(f"{report}: {page.width} × {page.height} px at a {WIDTH} px window; {screenshot}")
    headings = [(tag, anchor) for tag, anchor, _ in page.headings]
    assert headings[0][0] == "H1" and headings[1][0] == "H2"  # the title, then the sections
    first_section = page.headings[1][2]
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
    _check(COMMITTED, tmp_path / "report-1280.png")


@needs_browser
@pytest.mark.slow
def test_smoke_report_reads_in_a_browser(smoke):
    _check(smoke.report, smoke.results / "report-1280.png")
