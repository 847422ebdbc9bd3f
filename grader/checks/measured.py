"""What the trusted side measured: the evaluator's answer, and the reference's band.

The evaluator runs in a process of its own and answers in JSON; :func:`parse_measurement`
is the one place its answer becomes a value, every field checked for its type and range
(it loaded a student's file: a broken answer reads as "not measured", never as a figure;
its text is made encodable, :func:`~grader.results.encodable`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from grader.results import encodable

BASIS_HEAD, BASIS_FINAL = "head", "final"
BASE_UNCHANGED, BASE_CHANGED = "unchanged", "changed"
BASE_STATES = (BASE_UNCHANGED, BASE_CHANGED)
"""What the evaluator can say of the base's weights (:mod:`grader.measure.evaluator`)."""
OUTPUT_RULES = ("logit", "probability", "argmax")
MAX_ERROR_CHARS = 400
MAX_READ_SIDE = 4096
"""The largest input size an answer may name (the evaluator refuses far smaller ones)."""
MSG_NO_ANSWER = "the evaluator gave no usable answer"


@dataclass(frozen=True)
class Measurement:
    """The trusted evaluator's answer for one saved model."""

    accuracy: float | None = None
    """Share of the holdout images classified right; None when it could not measure."""
    images: int = 0
    """Holdout images measured."""
    rule: str | None = None
    """How the outputs were read: ``logit``, ``probability`` or ``argmax``."""
    base: str | None = None
    """``unchanged`` when the model's base still has the weights it shipped with,
    ``changed`` when it has others, None when the base was not found or not compared."""
    base_moved: bool | None = None
    """True when the base holds the shipped layers, trained away from the shipped weights
    but near them; False when unchanged; None when the evaluator could not tell."""
    top: bool | None = None
    """Whether the saved model holds ImageNet's 1000-way classifier (None: not told)."""
    outside: float | None = None
    """For a loss that reads the outputs as probabilities (``from_logits=False``): the
    share of images whose outputs are not (outside 0-1). None when
    the loss reads logits, or when not told."""
    side: tuple[int, int] | None = None
    """The saved model's input size (rows, columns) as the evaluator loaded it."""
    made_for: int | None = None
    """The input size the grader's own kit's base is made for (None: a course's own
    Keras cache); set by the measurer, which knows the kit, never by the answer."""
    error: str | None = None
    """Why it could not measure."""


def parse_measurement(answer: Mapping[str, Any] | None) -> Measurement | None:
    """The evaluator's answer as a :class:`Measurement` (None for no answer at all)."""
    if answer is None:
        return None
    if not isinstance(answer, Mapping):
        return Measurement(error=MSG_NO_ANSWER)
    accuracy = answer.get("accuracy")
    images = answer.get("images")
    error = answer.get("error")
    valid_images = isinstance(images, int) and not isinstance(images, bool) and images >= 0
    return Measurement(
        accuracy=_share(accuracy),
        images=images if valid_images else 0,
        rule=_choice(answer.get("rule"), OUTPUT_RULES),
        base=_choice(answer.get("base"), BASE_STATES),
        base_moved=_flag(answer.get("base_moved")),
        top=_flag(answer.get("top")),
        outside=_share(answer.get("outside")),
        side=_side(answer.get("side")),
        error=encodable(error[:MAX_ERROR_CHARS]) if isinstance(error, str) else None,
    )


def _side(value: Any) -> tuple[int, int] | None:
    if not isinstance(value, list) or len(value) != 2:
        return None
    whole = all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    return (value[0], value[1]) if whole and all(0 < v <= MAX_READ_SIDE for v in value) else None


def _share(value: Any) -> float | None:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if number and math.isfinite(value) and 0 <= value <= 1 else None


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _choice(value: Any, allowed: tuple[str, ...]) -> str | None:
    return value if value in allowed else None


@dataclass(frozen=True)
class ReferenceBand:
    """The reference's measured figures over its seeds, per basis of comparison."""

    final: tuple[float, ...]
    """After its last ``fit``: the whole exercise, fine-tuning included."""
    head: tuple[float, ...] = ()
    """After its first ``fit``: the head trained on the frozen base (empty: not known)."""

    def figures(self, basis: str) -> tuple[float, ...]:
        return self.head if basis == BASIS_HEAD and self.head else self.final
