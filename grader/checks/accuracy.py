"""Accuracy figures and the accuracy check's bands.

The figure that earns credit is *measured*: the saved model evaluated by the trusted
evaluator on the hidden holdout split. The student's own figures (the probe's
records of their ``evaluate``/``fit`` and a printed "accuracy" line) are only
cross-checked against it. Full points at or above ``reference - tolerance``, falling
linearly to zero at ``floor``. A notebook that never trained earns nothing.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import nbformat

from grader.checks.facts import (
    EvaluateEvent,
    Facts,
    FitEndEvent,
    FitEvent,
    ProbeEvent,
    verdict,
)
from grader.checks.measured import (
    BASE_CHANGED,
    BASE_UNCHANGED,
    BASIS_FINAL,
    BASIS_HEAD,
    Measurement,
)
from grader.results import SOURCE_MEASURED, SOURCE_NONE, SOURCE_RUNTIME, CheckResult, Evidence
from grader.rubric.schema import CheckSpec
from grader.static.keras_names import ACCURACY_METRICS

CHECK_ACCURACY = "accuracy"
FLAG_MISMATCH = "accuracy_mismatch"
FLAG_UNVERIFIED = "accuracy_unverified"
FLAG_INPUT_SIZE = "accuracy_input_size"
MSG_INPUT_SIZE = (
    " The model reads {rows}x{cols} images; the course's offline kit is made for "
    "{side}x{side}, and its pre-trained features tell the classes apart less well at other "
    "sizes, so part of a gap to the reference may be the kit's: your instructor reviews it."
)
MSG_NO_TRAINING = "The notebook never trained a model, so it earns no accuracy credit."
MSG_NO_FIGURE = "The model was trained but could not be measured and reported no accuracy."
MSG_NO_REFERENCE = "The reference's accuracy is not known, so accuracy cannot be scored."
MSG_BAND = (
    "{kind} accuracy {accuracy:.1%} against the reference's {reference:.1%}: full points "
    "from {full:.1%}, none at or below {floor:.1%}."
)
MSG_UNVERIFIED = (
    " The saved model could not be loaded safely ({error}), so only the notebook's "
    "own figure is known{credit}."
)
MSG_BAND_SEEDS = (
    "{kind} accuracy {accuracy:.1%} against the reference's {reference:.1%} "
    "({low:.1%}-{high:.1%} over {seeds} seeds{phase}): full points from {full:.1%}, "
    "none at or below {floor:.1%}."
)
PHASE = {BASIS_HEAD: ", before fine-tuning", BASIS_FINAL: ""}
MSG_BASIS_HEAD = (
    " The model's base still has its pre-trained weights (the grader compared them), so "
    "it is compared with the reference trained the same way: the head alone."
)
MSG_BASIS_CHANGED = (
    " The model's base was trained too (its weights differ from the pre-trained ones), so "
    "it is compared with the whole reference, fine-tuning included."
)
MSG_BASIS_UNKNOWN = (
    " The grader could not find the pre-trained base in the saved model, so it is compared "
    "with the whole reference, fine-tuning included."
)
MSG_BASIS_WIDE = (
    " Its base still has its pre-trained weights, but under these caps the reference's "
    "own head-only figures spread too widely ({low:.1%}-{high:.1%}) to set a bar, so it is "
    "compared with the whole reference, fine-tuning included."
)
BASIS_SPREAD_TOLERANCES = 2
"""A basis whose reference figures spread wider than this many tolerances sets no bar: its
lowest seed would let anything pass (a reference phase the caps leave unconverged)."""
SAMPLING_ERRORS = 2
"""The full-credit line sits this many holdout sampling errors (at least the rubric's
tolerance) below the reference's lowest seed."""
OUTPUTS_UNLIKE_LOSS = 0.05
"""Past this share of holdout images whose outputs are not probabilities, under a loss that
reads probabilities, the outputs contradict the loss (a float-rounding stray is not)."""
LOSS_MISMATCH_CREDIT = 0.5
"""The most of the accuracy points a model whose outputs contradict its loss earns."""
MSG_LOSS_MISMATCH = (
    " The loss reads the model's outputs as probabilities (from_logits=False), but for "
    "{share:.0%} of the holdout images they are not (outside 0-1): with no sigmoid or "
    "softmax on the last layer, the loss clips those outputs and learns nothing from them, "
    "so how well it separates the classes is the draw's. Such a model earns at most "
    "{cap:.0%} of the accuracy points, whatever it measures."
)
MSG_MISMATCH = "The notebook reported {reported:.1%} but the model measures {measured:.1%}."
PRINTED = re.compile(r"\bacc(?:uracy)?\b[^0-9\n:=]{0,12}[:=]\s*(\d{1,3}(?:\.\d+)?)\s*(%?)", re.I)
PROGRESS = ("━", "/step", "[==", "ETA")


def _accuracy_of(
    figures: Mapping[str, float | None] | Mapping[str, tuple[float | None, ...]],
    prefix: str = "",
) -> float | None:
    """The accuracy among metrics (a figure each) or a history (the last epoch's figure)."""
    for key in ACCURACY_METRICS:
        value = figures.get(prefix + key)
        if isinstance(value, tuple):
            value = value[-1] if value else None
        if value is not None:
            return value
    return None


def self_reported_accuracy(events: Sequence[ProbeEvent]) -> float | None:
    """The student's own figure: the last evaluate after the last fit, else its validation."""
    fits = [i for i, e in enumerate(events) if isinstance(e, (FitEvent, FitEndEvent))]
    if not fits:
        evaluations = [e for e in events if isinstance(e, EvaluateEvent)]
        return _accuracy_of(evaluations[-1].metrics) if evaluations else None
    for event in reversed(events[fits[-1] :]):
        if isinstance(event, EvaluateEvent):
            value = _accuracy_of(event.metrics)
            if value is not None:
                return value
    last = events[fits[-1]]
    history = last.history if isinstance(last, (FitEvent, FitEndEvent)) else {}
    return _accuracy_of(history, "val_") or _accuracy_of(history)


def printed_accuracy(nb: nbformat.NotebookNode) -> float | None:
    """The last "accuracy" figure the notebook printed (stream or text outputs)."""
    found = None
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            text = output.get("text") or output.get("data", {}).get("text/plain") or ""
            text = text if isinstance(text, str) else "".join(text)
            lines = [ln for ln in text.splitlines() if not any(p in ln for p in PROGRESS)]
            for match in PRINTED.finditer("\n".join(lines)):
                value = float(match.group(1)) / (
                    100 if match.group(2) or float(match.group(1)) > 1 else 1
                )
                if 0.0 <= value <= 1.0:
                    found = value
    return found


def score_from(accuracy: float, full_at: float, spec: CheckSpec) -> float:
    """Full points from ``full_at``, falling linearly to none at the rubric's floor."""
    if accuracy <= spec.floor:
        return 0.0
    if accuracy >= full_at:
        return spec.points
    return round(spec.points * (accuracy - spec.floor) / (full_at - spec.floor), 2)


@dataclass(frozen=True)
class Bar:
    """What a figure is compared with: the reference trained as the student trained."""

    reference: float
    """The reference's central figure on this basis (median over its seeds)."""
    low: float
    high: float
    """The lowest and highest of the reference's seeds."""
    seeds: int
    basis: str
    """``head`` (before fine-tuning) or ``final``."""
    full_at: float
    """Full points from this figure."""
    too_wide: tuple[float, float] | None = None
    """The head-only reference's spread, when it was too wide to use (then ``final``)."""


def sampling_error(accuracy: float, images: int) -> float:
    """The standard error of an accuracy measured on ``images`` holdout images."""
    return math.sqrt(accuracy * (1 - accuracy) / images) if images > 0 else 0.0


def bar_for(spec: CheckSpec, facts: Facts) -> Bar | None:
    """The bar for this submission: like with like, on a basis the trusted side confirmed
    (the evaluator found the base's weights unchanged: head only), the full-credit line
    below the reference's lowest seed by its tolerance or the holdout's sampling error."""
    band, measured = facts.reference_band, facts.measured
    if band is None:
        ref = facts.reference_accuracy
        return None if ref is None else Bar(ref, ref, ref, 1, BASIS_FINAL, ref - spec.tolerance)
    unchanged = measured is not None and measured.base == BASE_UNCHANGED and bool(band.head)
    too_wide = None
    if unchanged and max(band.head) - min(band.head) > BASIS_SPREAD_TOLERANCES * spec.tolerance:
        unchanged, too_wide = False, (min(band.head), max(band.head))
    basis = BASIS_HEAD if unchanged else BASIS_FINAL
    figures = band.figures(basis)
    low = min(figures)
    error = sampling_error(low, measured.images if measured is not None else 0)
    allowance = max(spec.tolerance, SAMPLING_ERRORS * error)
    median = statistics.median(figures)
    return Bar(median, low, max(figures), len(figures), basis, low - allowance, too_wide)


def accuracy_flags(spec: CheckSpec, facts: Facts) -> list[str]:
    """``accuracy_unverified`` / ``accuracy_mismatch`` for a model that trained, and
    ``accuracy_input_size`` for one below full points at a size the kit is not made for."""
    if facts.first_fit is None:  # any accuracy it claims cannot come from a trained model
        return [FLAG_MISMATCH] if facts.claimed else []
    measured = facts.measured_accuracy
    if measured is None:
        return [FLAG_UNVERIFIED] if facts.first_fit is not None else []
    gaps = [abs(claim - measured) for claim in facts.claimed]
    flags = [FLAG_MISMATCH] if any(gap > spec.mismatch for gap in gaps) else []
    bar = bar_for(spec, facts) if unlike_kit(facts.measured) else None
    size = bar is not None and size_may_explain(spec, facts, measured, bar)
    return flags + ([FLAG_INPUT_SIZE] if size else [])


def size_may_explain(spec: CheckSpec, facts: Facts, measured: float, bar: Bar) -> bool:
    """Whether a measured figure below full points may be the kit's doing: the model's
    input size is not the kit's, and the figure itself (before any cap) is below full."""
    return unlike_kit(facts.measured) and score_from(measured, bar.full_at, spec) < spec.points


def unlike_kit(measured: Measurement | None) -> bool:
    """Whether the model's input size is not the one the grader's own kit is made for."""
    if measured is None or measured.side is None or measured.made_for is None:
        return False
    return measured.side != (measured.made_for, measured.made_for)


def check_accuracy(spec: CheckSpec, facts: Facts) -> CheckResult:
    """Points in the bands for the measured figure (else, if the rubric allows, the claim)."""
    evidence = _accuracy_evidence(facts)
    if facts.first_fit is None:
        message = MSG_NO_TRAINING + _mismatch_note(spec, facts)
        return verdict(spec, message, SOURCE_NONE, evidence, score=0.0)
    bar = bar_for(spec, facts)
    measured = facts.measured_accuracy
    if bar is None:
        return verdict(spec, MSG_NO_REFERENCE, SOURCE_NONE, evidence, score=0.0)
    if measured is not None:
        base = facts.measured.base if facts.measured is not None else None
        message = _band_message("Measured", measured, bar, spec, base)
        score = score_from(measured, bar.full_at, spec)
        if outputs_unlike_loss(facts):
            score = min(score, round(spec.points * LOSS_MISMATCH_CREDIT, 2))
            share = facts.measured.outside if facts.measured is not None else None
            message += MSG_LOSS_MISMATCH.format(share=share, cap=LOSS_MISMATCH_CREDIT)
        if size_may_explain(spec, facts, measured, bar):
            rows, cols = facts.measured.side or (0, 0)
            message += MSG_INPUT_SIZE.format(rows=rows, cols=cols, side=facts.measured.made_for)
        message += _mismatch_note(spec, facts)
        return verdict(spec, message, SOURCE_MEASURED, evidence, score=score)
    reported = self_reported_accuracy(facts.events)
    if reported is None:
        return verdict(spec, MSG_NO_FIGURE, SOURCE_RUNTIME, evidence, score=0.0)
    message = _band_message("Self-reported", reported, bar, spec)
    credit = "" if spec.unverified_credit else "; the rubric gives no credit for it"
    error = (facts.measured.error if facts.measured else None) or "no saved model"
    message += MSG_UNVERIFIED.format(error=error, credit=credit)
    score = score_from(reported, bar.full_at, spec) if spec.unverified_credit else 0.0
    return verdict(spec, message, SOURCE_RUNTIME, evidence, score=score)


def outputs_unlike_loss(facts: Facts) -> bool:
    """Whether the trusted evaluator found the outputs are not what the loss reads them as:
    a loss for probabilities (``from_logits=False``) over outputs that are not."""
    outside = facts.measured.outside if facts.measured is not None else None
    return outside is not None and outside > OUTPUTS_UNLIKE_LOSS


def _basis_reason(bar: Bar, base: str | None) -> str:
    if bar.basis == BASIS_HEAD:
        return MSG_BASIS_HEAD
    if bar.too_wide is not None:
        return MSG_BASIS_WIDE.format(low=bar.too_wide[0], high=bar.too_wide[1])
    return MSG_BASIS_CHANGED if base == BASE_CHANGED else MSG_BASIS_UNKNOWN


def _band_message(
    kind: str, accuracy: float, bar: Bar, spec: CheckSpec, base: str | None = None
) -> str:
    figures = {"kind": kind, "accuracy": accuracy, "reference": bar.reference}
    limits = {"full": bar.full_at, "floor": spec.floor}
    if bar.seeds == 1:
        return MSG_BAND.format(**figures, **limits)
    spread = {"low": bar.low, "high": bar.high, "seeds": bar.seeds, "phase": PHASE[bar.basis]}
    return MSG_BAND_SEEDS.format(**figures, **spread, **limits) + _basis_reason(bar, base)


def _mismatch_note(spec: CheckSpec, facts: Facts) -> str:
    measured = facts.measured_accuracy
    claims = [c for c in facts.claimed if measured is None or abs(c - measured) > spec.mismatch]
    if not claims:
        return ""
    if measured is None:
        return f" It reported {max(claims):.1%} without training a model."
    return " " + MSG_MISMATCH.format(
        reported=max(claims, key=lambda c: abs(c - measured)), measured=measured
    )


def _accuracy_evidence(facts: Facts) -> list[Evidence]:
    lines = []
    measured = facts.measured_accuracy
    if measured is not None:
        images = facts.measured.images
        lines.append(f"measured on {images} holdout images (never trained on): {measured:.4f}")
        if facts.measured.outside is not None:
            share = facts.measured.outside
            lines.append(f"outputs that are not probabilities, under a loss for them: {share:.1%}")
    reported = self_reported_accuracy(facts.events)
    if reported is not None:
        lines.append(f"the notebook's own evaluate: {reported:.4f}")
    if facts.printed is not None:
        lines.append(f"printed by the notebook: {facts.printed:.4f}")
    return [Evidence(kind="fact", text=line) for line in lines]
