"""Human-readable outputs: one HTML report per student and a class index page.

Pages are rendered with Jinja2 from ``grader/outputs/templates`` (the environment of
:mod:`grader.outputs.templating`, autoescaping every template), so all
student-controlled text (ids, messages, code, tracebacks, flags, chart labels) is
HTML-escaped. Pages are self-contained: inline CSS and SVG, no external
assets, and a Content-Security-Policy that forbids every script but the class page's
own table sorter (allowed by its hash; it reads no student text as code).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

from grader.checks.review import FLAG_REVIEW
from grader.files import atomic_write_text
from grader.outputs.charts import Chart, bar_chart, curve_series, histogram, line_chart
from grader.outputs.names import INDEX_FILE, REPORTS_DIR, report_names
from grader.outputs.names import report_filename as report_filename  # for older importers
from grader.outputs.provenance import settings as grading_settings
from grader.outputs.readback import damaged
from grader.outputs.templating import (
    NOT_AVAILABLE,
    format_percent,
    format_points,
    is_number,
    render,
    script_hash,
    sort_script,
)
from grader.results import STATUS_GRADED, STATUSES, SubmissionResult

REPORT_TEMPLATE = "report.html.j2"
INDEX_TEMPLATE = "index.html.j2"

ACCURACY_LABELS = {
    "measured": "Measured",
    "reference": "Reference",
    "self_reported": "Self-reported",
}
CODE_ITEMS = {
    "include_top_false": "The code that loads MobileNetV2 without its top classification layers",
    "base_frozen": "The code that makes the base model non-trainable for feature extraction",
    "augmentation": "The data augmentation layers defined in the model",
    "pooling_head": "The new classifier layers added on top of the base model",
}
"""The exercise's "show the code" items, by the check whose evidence answers them."""
ROUTINE_FLAGS = frozenset({FLAG_REVIEW, "nbformat_upgraded"})
"""Flags that alone do not put a submission on the class page's flagged list."""
CURVES = (
    ("Accuracy per epoch", ("accuracy", "val_accuracy"), True),
    ("Loss per epoch", ("loss", "val_loss"), False),
)


def _format_metric(value: Any) -> str:
    """A metric's final value, four decimals when numeric."""
    return f"{value:.4f}" if is_number(value) else format_points(value)


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
                "learning_rate": f"{rate:g}" if is_number(rate) else format_points(rate),
                "metrics": _final_metrics(phase.get("history")),
            }
        )
    return rows


def _cell_time_rows(cell_times: list[float | None]) -> list[tuple[int, str]]:
    """(1-based cell number, seconds) for each cell that has a time."""
    return [
        (index + 1, f"{seconds:.2f}")
        for index, seconds in enumerate(cell_times)
        if is_number(seconds)
    ]


def render_report(
    result: SubmissionResult,
    reference_accuracy: float | None = None,
    reference_history: list[dict[str, Any]] | None = None,
) -> str:
    """One self-contained HTML page for one submission.

    ``reference_accuracy`` is shown as the reference when ``result.accuracy`` has none;
    ``reference_history`` (the reference's training phases) is drawn beside the curves.
    """
    total_time = sum(t for t in result.cell_times if is_number(t))
    return render(
        REPORT_TEMPLATE,
        r=result,
        accuracy_rows=_accuracy_rows(result.accuracy, reference_accuracy),
        accuracy_chart=_accuracy_chart(result.accuracy, reference_accuracy),
        curves=_curves(result.training, reference_history),
        model_rows=model_rows(result.model),
        code_items=_code_items(result),
        training_rows=_training_rows(result.training),
        cell_time_rows=_cell_time_rows(result.cell_times),
        total_cell_time=f"{total_time:.2f}",
    )


def _curves(training: list[dict[str, Any]], reference: list[dict[str, Any]] | None) -> list[Chart]:
    """Charts of accuracy and loss per epoch; empty when nothing was trained."""
    charts = []
    for title, metrics, unit in CURVES:
        chart = line_chart(title, curve_series(training, metrics, reference), metrics[0], unit)
        if chart:
            charts.append(chart)
    return charts


def _accuracy_chart(accuracy: dict[str, Any], reference_accuracy: float | None) -> Chart | None:
    figures = {
        **{"reference": reference_accuracy},
        **{k: v for k, v in accuracy.items() if v is not None},
    }
    bars = [
        (label, figures[key] if is_number(figures.get(key)) else None)
        for key, label in ACCURACY_LABELS.items()
    ]
    return bar_chart("Accuracy: measured, reference, self-reported", bars)


def _code_items(result: SubmissionResult) -> list[dict[str, Any]]:
    """The exercise's four "show the code" items, with the code each check found."""
    checks = {c.id: c for c in result.checks if not c.hidden}
    items = []
    for check_id, title in CODE_ITEMS.items():
        if check_id in checks:
            code = [e for e in checks[check_id].evidence if e.kind == "code" and e.cell is not None]
            items.append({"title": title, "code": code})
    return items


def model_rows(tree: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The model's top-level layers; a nested model (the base) lists its layers too."""
    if not isinstance(tree, dict):
        return []
    rows = []
    for layer in tree.get("layers", []) or [tree]:
        children = [_layer_row(c) for c in layer.get("layers", []) if isinstance(c, dict)]
        rows.append({**_layer_row(layer), "children": children})
    return rows


def _layer_row(layer: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": str(layer.get("name", "")),
        "cls": str(layer.get("class", "")),
        "trainable": bool(layer.get("trainable")),
        "trainable_params": f"{int(layer.get('params_trainable') or 0):,}",
        "frozen_params": f"{int(layer.get('params_non_trainable') or 0):,}",
    }


def _report_names(results: list[SubmissionResult]) -> list[str]:
    """Report file names (with ``.html``) aligned with ``results``."""
    return report_names([(r.student, r.file) for r in results])


def _check_rates(results: list[SubmissionResult], check_ids: list[str]) -> list[dict[str, Any]]:
    """Per check: title, passed count over all submissions, and the rate as a percentage."""
    rows = []
    total = len(results)
    for check_id in check_ids:
        found = [c for r in results for c in r.checks if c.id == check_id]
        passed = sum(1 for c in found if c.passed)
        title = next((c.title for c in found if c.title), "")
        rate = format_percent(passed / total) if total else NOT_AVAILABLE
        if any(c.review for c in found):  # pre-scored answers: never "passed" by grader
            mean = sum(c.score for c in found) / len(found)
            passed, rate = "pre-scored", f"mean {mean:.2f} / {found[0].max_score:g}"
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
    return render(
        INDEX_TEMPLATE,
        total=len(results),
        status_counts=_status_counts(results),
        mean_score=mean,
        max_score=format_points(best_max),
        check_rates=_check_rates(results, list(check_ids)),
        rows=rows,
        flagged=[row for row in rows if _flagged(row["r"])],
        histogram=histogram("Score distribution", scores, best_max),
        settings=grading_settings(results),
        sort_script=sort_script(),
        sort_script_hash=script_hash(sort_script()),
    )


def _flagged(result: SubmissionResult) -> bool:
    """Worth a look: not graded cleanly, or a flag beyond the routine ones."""
    return result.status != STATUS_GRADED or bool(set(result.flags) - ROUTINE_FLAGS)


def guarded_page(
    result: SubmissionResult,
    reference_accuracy: float | None,
    reference_history: list[dict[str, Any]] | None,
) -> tuple[str, SubmissionResult]:
    """The student's page and the result the class page shows: when the stored result
    cannot be drawn, an error page and row for that student alone, saying why."""
    try:
        return render_report(result, reference_accuracy, reference_history), result
    except Exception as exc:  # one student's record must never cost the class its pages
        stand_in = damaged(result.student, result.file, f"{type(exc).__name__}: {exc}")
        return render_report(stand_in, reference_accuracy), stand_in


def write_reports(
    results: list[SubmissionResult],
    out_dir: Path,
    check_ids: list[str],
    reference_accuracy: float | None = None,
    reference_history: list[dict[str, Any]] | None = None,
) -> list[Path]:
    """Write ``out_dir/reports/<name>.html`` per result and ``out_dir/index.html``.

    Returns the report paths in the order of ``results``, then the index path.
    """
    out_dir = Path(out_dir)
    paths, shown = [], []
    for result, name in zip(results, _report_names(results), strict=True):
        path = out_dir / REPORTS_DIR / name
        page, result = guarded_page(result, reference_accuracy, reference_history)
        atomic_write_text(path, page)
        paths.append(path)
        shown.append(result)
    index = out_dir / INDEX_FILE
    atomic_write_text(index, render_index(shown, check_ids))
    paths.append(index)
    return paths
