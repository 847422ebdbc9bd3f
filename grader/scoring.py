"""Accuracy figures and the accuracy check's bands.

Full points at or above ``reference - tolerance``, falling linearly to zero at
``floor`` (chance). A notebook that never trained earns nothing, whatever it printed.
"""

from __future__ import annotations

from typing import Any

from grader.checks import ACCURACY_KEYS, Facts
from grader.results import SOURCE_NONE, SOURCE_RUNTIME, CheckResult, Evidence
from grader.rubric import CheckSpec

MSG_NO_TRAINING = "The notebook never trained a model, so it earns no accuracy credit."
MSG_NO_FIGURE = "The model was trained but no accuracy figure was recorded."
MSG_NO_REFERENCE = "The reference's accuracy is not known, so accuracy cannot be scored."


def _accuracy_of(metrics: dict[str, Any], prefix: str = "") -> float | None:
    for key in ACCURACY_KEYS:
        value = metrics.get(prefix + key)
        if isinstance(value, list):
            value = value[-1] if value else None
        if isinstance(value, (int, float)):
            return float(value)
    return None


def self_reported_accuracy(events: list[dict[str, Any]]) -> float | None:
    """The student's own figure: the last evaluate after the last fit, else its validation."""
    fits = [i for i, e in enumerate(events) if e.get("event") == "fit"]
    if not fits:
        return None
    for event in reversed(events[fits[-1] :]):
        if event.get("event") == "evaluate":
            value = _accuracy_of(event.get("metrics", {}))
            if value is not None:
                return value
    history = events[fits[-1]].get("history", {})
    return _accuracy_of(history, "val_") or _accuracy_of(history)


def band_score(accuracy: float, reference: float, spec: CheckSpec) -> float:
    """Points for ``accuracy`` under the rubric's bands."""
    full_at = reference - spec.tolerance
    if accuracy >= full_at:
        return spec.points
    if accuracy <= spec.floor or full_at <= spec.floor:
        return 0.0
    return round(spec.points * (accuracy - spec.floor) / (full_at - spec.floor), 2)


def check_accuracy(spec: CheckSpec, facts: Facts) -> CheckResult:
    def verdict(score: float, message: str, source: str, evidence: list[Evidence]) -> CheckResult:
        return CheckResult(
            id=spec.id,
            passed=score >= spec.points,
            score=score,
            max_score=spec.points,
            message=message,
            source=source,
            title=spec.title,
            hint="" if score >= spec.points else spec.hint,
            evidence=evidence,
        )

    if facts.first_fit is None:
        return verdict(0.0, MSG_NO_TRAINING, SOURCE_NONE, [])
    accuracy = self_reported_accuracy(facts.events)
    if accuracy is None:
        return verdict(0.0, MSG_NO_FIGURE, SOURCE_RUNTIME, [])
    reference = facts.reference_accuracy
    if reference is None:
        return verdict(0.0, MSG_NO_REFERENCE, SOURCE_RUNTIME, [])
    score = band_score(accuracy, reference, spec)
    message = (
        f"Accuracy {accuracy:.1%} against the reference's {reference:.1%}: full points "
        f"from {reference - spec.tolerance:.1%}, none at or below {spec.floor:.1%}."
    )
    fact = Evidence(kind="fact", text=f"accuracy from the notebook's own evaluate: {accuracy:.4f}")
    return verdict(score, message, SOURCE_RUNTIME, [fact])
