"""Human-readable outputs: one HTML report per student and a class index page.

Pages are rendered with Jinja2 from ``grader/templates`` with autoescaping on for
every template, so all student-controlled text (ids, messages, code, tracebacks,
flags) is HTML-escaped. Pages are self-contained: inline CSS, no scripts, no
external assets, and a Content-Security-Policy that forbids scripts anyway.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from grader.export import atomic_write_text
from grader.results import STATUSES, SubmissionResult

TEMPLATE_PACKAGE = "grader"
TEMPLATE_FOLDER = "templates"
REPORT_TEMPLATE = "report.html.j2"
INDEX_TEMPLATE = "index.html.j2"

REPORTS_DIR = "reports"
INDEX_FILE = "index.html"
REPORT_SUFFIX = ".html"

FILENAME_MAX = 100
FILENAME_FALLBACK = "unnamed"
FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
FILENAME_REPLACEMENT = "_"
WINDOWS_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL"}
    | {f"COM{i}" for i in range(1, 10)}
    | {f"LPT{i}" for i in range(1, 10)}
)

ACCURACY_LABELS = {
    "self_reported": "Self-reported",
    "measured": "Measured",
    "reference": "Reference",
}
NOT_AVAILABLE = "—"


@functools.lru_cache(maxsize=1)
def _environment() -> Environment:
    """The Jinja2 environment shared by all pages (autoescape everywhere, strict undefined)."""
    env = Environment(
        loader=PackageLoader(TEMPLATE_PACKAGE, TEMPLATE_FOLDER),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["points"] = format_points
    env.filters["percent"] = format_percent
    return env


def _is_number(value: Any) -> bool:
    """True for a finite int or float (bools excluded)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def format_points(value: Any) -> str:
    """Points without noise: ``3.0`` → ``3``, ``2.5`` → ``2.5``."""
    if not _is_number(value):
        return NOT_AVAILABLE if value is None else str(value)
    return f"{value:g}"


def format_percent(value: Any) -> str:
    """An accuracy as a percentage; values in [0, 1] are fractions, larger ones percents."""
    if not _is_number(value):
        return NOT_AVAILABLE if value is None else str(value)
    percent = value * 100 if 0 <= value <= 1 else value
    return f"{percent:.1f} %"


def _format_metric(value: Any) -> str:
    """A metric's final value, four decimals when numeric."""
    return f"{value:.4f}" if _is_number(value) else format_points(value)


def _accuracy_rows(
    accuracy: dict[str, Any], reference_accuracy: float | None
) -> list[tuple[str, str]]:
    """(label, percentage) rows: known keys first, in a fixed order, then any others."""
    figures = dict(accuracy)
    if "reference" not in figures and reference_accuracy is not None:
        figures["reference"] = reference_accuracy
    ordered = [k for k in ACCURACY_LABELS if k in figures]
    ordered += [k for k in figures if k not in ACCURACY_LABELS]
    return [
        (ACCURACY_LABELS.get(k, k.replace("_", " ").capitalize()), format_percent(figures[k]))
        for k in ordered
    ]


def _final_metrics(history: Any) -> list[tuple[str, str]]:
    """(metric, last value) for each metric of a Keras-style history dict."""
    if not isinstance(history, dict):
        return []
    rows = []
    for name, values in history.items():
        if isinstance(values, (list, tuple)):
            last = values[-1] if values else None
        else:
            last = values
        rows.append((str(name), _format_metric(last)))
    return rows


def _training_rows(training: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One display row per training phase; missing keys shown as a dash."""
    rows = []
    for number, phase in enumerate(training, start=1):
        phase = phase if isinstance(phase, dict) else {}
        rate = phase.get("learning_rate")
        rows.append(
            {
                "number": number,
                "epochs": format_points(phase.get("epochs")),
                "optimizer": NOT_AVAILABLE
                if phase.get("optimizer") is None
                else str(phase["optimizer"]),
                "learning_rate": f"{rate:g}" if _is_number(rate) else format_points(rate),
                "metrics": _final_metrics(phase.get("history")),
            }
        )
    return rows


def _cell_time_rows(cell_times: list[float | None]) -> list[tuple[int, str]]:
    """(1-based cell number, seconds) for each cell that has a time."""
    return [
        (index + 1, f"{seconds:.2f}")
        for index, seconds in enumerate(cell_times)
        if _is_number(seconds)
    ]


def render_report(result: SubmissionResult, reference_accuracy: float | None = None) -> str:
    """One self-contained HTML page for one submission.

    ``reference_accuracy`` is shown as the reference when ``result.accuracy`` has none.
    """
    template = _environment().get_template(REPORT_TEMPLATE)
    total_time = sum(t for t in result.cell_times if _is_number(t))
    return template.render(
        r=result,
        accuracy_rows=_accuracy_rows(result.accuracy, reference_accuracy),
        training_rows=_training_rows(result.training),
        cell_time_rows=_cell_time_rows(result.cell_times),
        total_cell_time=f"{total_time:.2f}",
    )


def report_filename(student: str) -> str:
    """A safe file name stem (without ``.html``) for a student's report.

    Accents are dropped (``é`` → ``e``); any character outside ``[A-Za-z0-9._-]``
    becomes ``_``; leading dots become ``_``; Windows device names get a ``_``
    prefix; the result is at most 100 characters and never empty.
    """
    decomposed = unicodedata.normalize("NFKD", student or "")
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    name = FILENAME_UNSAFE.sub(FILENAME_REPLACEMENT, stripped)
    dots = len(name) - len(name.lstrip("."))
    name = FILENAME_REPLACEMENT * dots + name[dots:]
    if name.split(".")[0].upper() in WINDOWS_RESERVED:
        name = FILENAME_REPLACEMENT + name
    return name[:FILENAME_MAX] or FILENAME_FALLBACK


def _report_names(results: list[SubmissionResult]) -> list[str]:
    """Report file names (with ``.html``) aligned with ``results``.

    Names are unique even on case-insensitive disks; clashes get ``_2``, ``_3``... in
    (student, file) order, so the names do not depend on the order of ``results``.
    """
    order = sorted(range(len(results)), key=lambda i: (results[i].student, results[i].file))
    used: set[str] = set()
    names = [""] * len(results)
    for index in order:
        stem = report_filename(results[index].student)
        candidate, counter = stem, 1
        while candidate.casefold() in used:
            counter += 1
            suffix = f"_{counter}"
            candidate = stem[: FILENAME_MAX - len(suffix)] + suffix
        used.add(candidate.casefold())
        names[index] = candidate + REPORT_SUFFIX
    return names


def _check_rates(results: list[SubmissionResult], check_ids: list[str]) -> list[dict[str, Any]]:
    """Per check: title, passed count over all submissions, and the rate as a percentage."""
    rows = []
    total = len(results)
    for check_id in check_ids:
        found = [c for r in results for c in r.checks if c.id == check_id]
        passed = sum(1 for c in found if c.passed)
        title = next((c.title for c in found if c.title), "")
        rate = format_percent(passed / total) if total else NOT_AVAILABLE
        rows.append({"id": check_id, "title": title, "passed": passed, "rate": rate})
    return rows


def _status_counts(results: list[SubmissionResult]) -> list[tuple[str, int]]:
    """(status, count) for every known status, then any unexpected ones."""
    counts = Counter(r.status for r in results)
    extra = sorted(s for s in counts if s not in STATUSES)
    return [(s, counts.get(s, 0)) for s in (*STATUSES, *extra)]


def render_index(results: list[SubmissionResult], check_ids: list[str]) -> str:
    """The class page: status counts, mean score, pass rate per check, links to reports."""
    names = _report_names(results)
    rows = sorted(
        (
            {"r": r, "href": f"{REPORTS_DIR}/{quote(name)}"}
            for r, name in zip(results, names, strict=True)
        ),
        key=lambda row: (row["r"].student, row["r"].file),
    )
    scores = [r.score for r in results]
    mean = format_points(round(sum(scores) / len(scores), 2)) if scores else NOT_AVAILABLE
    best_max = max((r.max_score for r in results), default=0.0)
    return (
        _environment()
        .get_template(INDEX_TEMPLATE)
        .render(
            total=len(results),
            status_counts=_status_counts(results),
            mean_score=mean,
            max_score=format_points(best_max),
            check_rates=_check_rates(results, list(check_ids)),
            rows=rows,
        )
    )


def write_reports(
    results: list[SubmissionResult],
    out_dir: Path,
    check_ids: list[str],
    reference_accuracy: float | None = None,
) -> list[Path]:
    """Write ``out_dir/reports/<name>.html`` per result and ``out_dir/index.html``.

    Returns the report paths in the order of ``results``, then the index path.
    """
    out_dir = Path(out_dir)
    paths = []
    for result, name in zip(results, _report_names(results), strict=True):
        path = out_dir / REPORTS_DIR / name
        atomic_write_text(path, render_report(result, reference_accuracy))
        paths.append(path)
    index = out_dir / INDEX_FILE
    atomic_write_text(index, render_index(results, check_ids))
    paths.append(index)
    return paths
