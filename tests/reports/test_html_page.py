"""The report in a real headless browser (Debian's Chromium driven by Playwright): it renders with
no console errors and no request beyond the page itself, every image and audio clip loads, and
the clip table sorts on a header click and filters as text is typed.

Skipped, saying why, only when no Chromium is installed (the ``browser`` fixture of
tests/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stethoscope.reports import build_report


def _open(browser, html: Path):
    """The page at ``html`` and what it logged: console errors, page errors and the requests
    made."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    log: dict[str, list[str]] = {"errors": [], "requests": []}
    page.on("console", lambda m: log["errors"].append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: log["errors"].append(str(e)))
    page.on("request", lambda r: log["requests"].append(r.url))
    page.goto(html.resolve().as_uri(), wait_until="load")
    return page, log


def _images_loaded(page) -> list[bool]:
    return page.eval_on_selector_all("img", "els => els.map(i => i.complete && i.naturalWidth > 0)")


def _column(page, index: int) -> list[str]:
    """The cells of column ``index`` (0-based) of the visible clip-table rows, in page order."""
    return page.eval_on_selector_all(
        "#clips tbody tr:not([hidden])",
        f"rows => rows.map(r => r.cells[{index}].getAttribute('data-v') ?? "
        f"r.cells[{index}].textContent)",
    )


def test_report_renders_and_its_clip_table_sorts_and_filters(
    browser, workspace, results_folder, tmp_path
):
    _, _, test = workspace
    results_dir = results_folder(test, tmp_path / "results")
    out = build_report(results_dir, tmp_path / "report.html")
    page, log = _open(browser, out)

    assert page.title() == "Stethoscope report: dcase_ae"
    loaded = _images_loaded(page)
    assert len(loaded) == 8 and all(loaded)  # fan: ROC, histogram, 4 maps; gearbox: ROC, histogram
    page.wait_for_function(
        "() => [...document.querySelectorAll('audio')].every(a => a.readyState >= 1)",
        timeout=10_000,
    )
    durations = page.eval_on_selector_all("audio", "els => els.map(a => a.duration)")
    assert durations == pytest.approx([2.0] * 4, abs=0.01)  # the four mapped clips, playable

    score = page.locator("#clips th", has_text="score")
    score.click()
    ascending = [float(v) for v in _column(page, 5)]
    assert len(ascending) == 16 and ascending == sorted(ascending)
    assert score.get_attribute("aria-sort") == "ascending"
    score.click()
    assert [float(v) for v in _column(page, 5)] == sorted(ascending, reverse=True)
    page.locator("#clips th", has_text="machine").click()
    machines = _column(page, 1)
    assert machines == sorted(machines) and machines[0] == "fan" and machines[-1] == "gearbox"

    page.fill("#clip-filter", "gearbox anomalous")
    assert _column(page, 1) == ["gearbox"] * 4 and _column(page, 4) == ["anomalous"] * 4
    assert page.inner_text("#clip-count") == "4"
    page.fill("#clip-filter", "")
    assert len(_column(page, 0)) == 16 and page.inner_text("#clip-count") == "16"

    assert log["errors"] == []
    assert all(
        url == out.resolve().as_uri() or url.startswith("data:") for url in log["requests"]
    ), log["requests"]


def test_bench_report_renders(browser, bench_dir, tmp_path):
    out = build_report(bench_dir, tmp_path / "bench.html")
    page, log = _open(browser, out)
    assert page.title() == "Stethoscope benchmark: dcase_ae"
    assert _images_loaded(page) == [True]
    assert page.locator("table").count() == 2 and log["errors"] == []
