"""The class batch's pages in a real headless browser (Debian's chromium, Playwright).

Opened from disk, as an instructor or a student opens them: no console errors, no
script from student content ran (file name, markdown, outputs and error messages of
``tests/fixtures/hostile/=HYPERLINK(...)...ipynb`` carry payloads), the charts are
drawn, the students table sorts. Screenshots are saved under the batch's output folder.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.kernel

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOSTILE_PREFIX = "=HYPERLINK(1)"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert CHROMIUM, "chromium is not installed: `make test` installs it (apt-get install chromium)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def open_page(browser: Any, path: Path) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    problems: list[str] = []
    page.on(
        "console",
        lambda m: (
            problems.append(f"console {m.type}: {m.text}")
            if m.type in ("error", "warning")
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    return page, problems


def records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def report_of(out: Path, student: str) -> Path:
    from grader.outputs.report import _report_names
    from grader.results import SubmissionResult

    results = [SubmissionResult.from_record(r) for r in records(out)]
    names = dict(zip([r.student for r in results], _report_names(results), strict=True))
    return out / "reports" / names[student]


def test_a_students_report_has_its_charts_and_no_errors(browser: Any, graded: tuple) -> None:
    out = graded[0]
    page, problems = open_page(browser, report_of(out, "s1001_nguyen"))
    assert problems == []
    assert page.locator("#curves svg.chart").count() == 2  # accuracy and loss
    assert page.locator("#curves polyline[stroke-dasharray]").count() >= 1  # the reference
    assert page.locator("#accuracy svg.chart rect").count() >= 2
    assert page.locator("#model details").count() >= 1  # the base's layers, folded
    shots = out / "screenshots"
    shots.mkdir(exist_ok=True)
    page.screenshot(path=str(shots / "report_s1001.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.screenshot(path=str(shots / "report_s1001_phone.png"), full_page=True)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 400, "the report scrolls sideways on a phone"


def test_student_payloads_stay_text(browser: Any, graded: tuple) -> None:
    out = graded[0]
    hostile = next(r for r in records(out) if r["file"].startswith(HOSTILE_PREFIX))
    page, problems = open_page(browser, report_of(out, hostile["student"]))
    assert problems == []
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.locator("script").count() == 0 and page.locator("img").count() == 0
    assert "<script>alert(2)" in page.inner_text("dl.meta")  # the file name, shown as text
    assert '<script>window.pwned = "error"</script>' in page.inner_text("#errors")
    page.screenshot(path=str(out / "screenshots" / "report_hostile.png"), full_page=True)


def test_index_has_histogram_flags_and_sorts(browser: Any, graded: tuple) -> None:
    out = graded[0]
    page, problems = open_page(browser, out / "index.html")
    assert problems == []
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.locator("#distribution svg.chart rect").count() >= 1
    assert page.locator("#flagged li").count() >= 5
    page.locator("#students-table th", has_text="Score").click()
    values = page.eval_on_selector_all(
        "#students-table tbody td[data-value]", "cells => cells.map(c => +c.dataset.value)"
    )
    assert values == sorted(values)
    page.locator("#students-table th", has_text="Score").click()
    values = page.eval_on_selector_all(
        "#students-table tbody td[data-value]", "cells => cells.map(c => +c.dataset.value)"
    )
    assert values == sorted(values, reverse=True)
    page.screenshot(path=str(out / "screenshots" / "index.png"), full_page=True)
    assert problems == []
