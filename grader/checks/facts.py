"""What the checks read, typed: the probe's events, the model tree, all facts of a submission.

The probe writes its events from inside the student's kernel, so they are evidence, not
trusted data. :func:`parse_events` is the one place they become typed values: an entry
that is not an object or names no known event is dropped, a field of the wrong type
reads as absent (a string stays a string, never coerced), a number that is not
finite reads as absent, and every string (names and keys alike) is made encodable
(:func:`~grader.results.encodable`: a lone surrogate cannot reach a file or the store).
Every check after it reads attributes, never dict keys.

:func:`verdict` is the one shape of a check's answer, for every kind of check.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from grader.checks.measured import Measurement, ReferenceBand
from grader.results import CheckResult, Evidence, encodable
from grader.rubric.schema import CheckSpec
from grader.static.evidence import StaticFacts
from grader.static.keras_names import BASE_MARKERS

MAX_TREE_DEPTH = 16
"""Deepest model tree read (the probe records four levels); deeper nodes are dropped."""

History = Mapping[str, tuple[float | None, ...]]
"""Per-metric figures, one per epoch (None where a figure was not a finite number)."""


@dataclass(frozen=True)
class LayerNode:
    """One layer of a recorded model tree (a nested model is a node with ``layers``)."""

    class_name: str
    """The layer's Python class, e.g. ``Dense`` or ``Functional``."""
    name: str
    """The layer's Keras name, e.g. ``out_relu`` (a student may rename a model)."""
    trainable: bool
    """The layer's ``trainable`` flag."""
    params_trainable: int
    """Parameters in its trainable weights (its sublayers' included)."""
    params_non_trainable: int
    """Parameters in its non-trainable weights."""
    units: int | None = None
    """Output units of a layer that has them (``Dense``)."""
    layers: tuple[LayerNode, ...] | None = None
    """Its sublayers; None when it has none to record (not a container, or too deep)."""

    def walk(self) -> Iterator[LayerNode]:
        """This node and every node below it, depth-first."""
        yield self
        for child in self.layers or ():
            yield from child.walk()

    def to_record(self) -> dict[str, Any]:
        """The node as the probe recorded it (the ``model`` of ``results.jsonl``)."""
        record: dict[str, Any] = {
            "class": self.class_name,
            "name": self.name,
            "trainable": self.trainable,
            "params_trainable": self.params_trainable,
            "params_non_trainable": self.params_non_trainable,
        }
        if self.units is not None:
            record["units"] = self.units
        if self.layers is not None:
            record["layers"] = [child.to_record() for child in self.layers]
        return record


@dataclass(frozen=True)
class Optimizer:
    """The model's optimizer when the event was recorded."""

    class_name: str | None
    """Its class, e.g. ``Adam``."""
    learning_rate: float | None
    """Its learning rate then (None when it could not be read as a number)."""


@dataclass(frozen=True, kw_only=True)
class ModelEvent:
    """What every probe event records about the model it concerns."""

    kind: ClassVar[str] = ""
    """The ``event`` the probe writes for this type."""
    model: LayerNode | None = None
    """The model's layer tree at the call (None when the probe could not record it)."""
    optimizer: Optimizer | None = None
    """The model's optimizer, None before ``compile``."""
    time: float | None = None
    """When the probe recorded it (seconds since the epoch, the kernel's clock)."""
    probe_error: str | None = None
    """Set when the probe failed to record this call (its other fields are then absent)."""


@dataclass(frozen=True, kw_only=True)
class CompileEvent(ModelEvent):
    """A ``model.compile(...)``."""

    kind: ClassVar[str] = "compile"
    loss_class: str | None = None
    """The loss's class (``str`` when the loss was given by name)."""
    loss_name: str | None = None
    """The loss's name when it was given as a string."""
    from_logits: bool | None = None
    """The loss's ``from_logits`` (None when the loss has none): how to read the outputs."""


@dataclass(frozen=True, kw_only=True)
class FitEvent(ModelEvent):
    """A ``model.fit(...)``, recorded before training starts (the model as it was then)."""

    kind: ClassVar[str] = "fit"
    epochs_requested: int | None = None
    """The epochs the student asked for."""
    epochs: int | None = None
    """The epochs it runs (the quick mode's cap applied)."""
    initial_epoch: int = 0
    """The epoch it starts from (a fine-tuning phase continues the count)."""
    history: History = field(default_factory=dict)
    """Empty: the history is known at :class:`FitEndEvent`; read alike for both."""


@dataclass(frozen=True, kw_only=True)
class FitEndEvent(ModelEvent):
    """The end of a ``fit`` that returned."""

    kind: ClassVar[str] = "fit_end"
    epochs_run: int | None = None
    """Epochs that ran."""
    history: History = field(default_factory=dict)
    """The training history: per metric, one figure per epoch."""
    saved: str | None = None
    """The saved model's file name, or ``not saved: ...`` with the reason."""


@dataclass(frozen=True, kw_only=True)
class EvaluateEvent(ModelEvent):
    """A ``model.evaluate(...)`` outside ``fit``."""

    kind: ClassVar[str] = "evaluate"
    metrics: Mapping[str, float | None] = field(default_factory=dict)
    """The metrics it returned, by name."""


@dataclass(frozen=True, kw_only=True)
class NamedModelEvent(ModelEvent):
    """The model in the notebook variable the rubric names, saved for measuring."""

    kind: ClassVar[str] = "named_model"
    variable: str | None = None
    """The variable's name."""


ProbeEvent = CompileEvent | FitEvent | FitEndEvent | EvaluateEvent | NamedModelEvent
"""Any event the probe records."""


# --- the parse ------------------------------------------------------------------------


def _str(value: Any) -> str | None:
    return encodable(value) if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if number and math.isfinite(value) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def parse_layer(raw: Any, depth: int = 0) -> LayerNode | None:
    """A recorded layer tree; None when ``raw`` is not an object or lies too deep."""
    if not isinstance(raw, dict) or depth > MAX_TREE_DEPTH:
        return None
    children = raw.get("layers")
    layers = None
    if isinstance(children, list):
        parsed = (parse_layer(child, depth + 1) for child in children)
        layers = tuple(node for node in parsed if node is not None)
    return LayerNode(
        class_name=_str(raw.get("class")) or "",
        name=_str(raw.get("name")) or "",
        trainable=bool(_bool(raw.get("trainable"))),
        params_trainable=_int(raw.get("params_trainable")) or 0,
        params_non_trainable=_int(raw.get("params_non_trainable")) or 0,
        units=_int(raw.get("units")),
        layers=layers,
    )


def model_record(raw: Any) -> dict[str, Any] | None:
    """A recorded model tree read again as :func:`parse_layer` reads the probe's: every
    field of the wrong type absent or zero, strings encodable (None: no tree)."""
    node = parse_layer(raw)
    return node.to_record() if node is not None else None


def _optimizer(raw: Any) -> Optimizer | None:
    if not isinstance(raw, dict):
        return None
    return Optimizer(_str(raw.get("class")), _float(raw.get("learning_rate")))


def _history(raw: Any) -> dict[str, tuple[float | None, ...]]:
    series = _dict(raw).items()
    return {
        encodable(k): tuple(_float(v) for v in vs)
        for k, vs in series
        if isinstance(k, str) and isinstance(vs, list)
    }


def _metrics(raw: Any) -> dict[str, float | None]:
    items = _dict(raw).items()
    return {encodable(key): _float(value) for key, value in items if isinstance(key, str)}


def _common(raw: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": parse_layer(raw.get("model")),
        "optimizer": _optimizer(raw.get("optimizer")),
        "time": _float(raw.get("time")),
        "probe_error": _str(raw.get("probe_error")),
    }


def _compile(raw: dict[str, Any]) -> CompileEvent:
    loss = _dict(raw.get("loss"))
    return CompileEvent(
        **_common(raw),
        loss_class=_str(loss.get("class")),
        loss_name=_str(loss.get("name")),
        from_logits=_bool(loss.get("from_logits")),
    )


def _fit(raw: dict[str, Any]) -> FitEvent:
    return FitEvent(
        **_common(raw),
        epochs_requested=_int(raw.get("epochs_requested")),
        epochs=_int(raw.get("epochs")),
        initial_epoch=_int(raw.get("initial_epoch")) or 0,
        history=_history(raw.get("history")),
    )


def _fit_end(raw: dict[str, Any]) -> FitEndEvent:
    return FitEndEvent(
        **_common(raw),
        epochs_run=_int(raw.get("epochs_run")),
        history=_history(raw.get("history")),
        saved=_str(raw.get("saved")),
    )


def _evaluate(raw: dict[str, Any]) -> EvaluateEvent:
    return EvaluateEvent(**_common(raw), metrics=_metrics(raw.get("metrics")))


def _named_model(raw: dict[str, Any]) -> NamedModelEvent:
    return NamedModelEvent(**_common(raw), variable=_str(raw.get("variable")))


PARSERS = {
    CompileEvent.kind: _compile,
    FitEvent.kind: _fit,
    FitEndEvent.kind: _fit_end,
    EvaluateEvent.kind: _evaluate,
    NamedModelEvent.kind: _named_model,
}


def parse_events(raw: Iterable[Any]) -> list[ProbeEvent]:
    """The probe's raw records as typed events, in order; unknown or malformed ones dropped."""
    events: list[ProbeEvent] = []
    for entry in raw:
        kind = entry.get("event") if isinstance(entry, dict) else None
        parse = PARSERS.get(kind) if isinstance(kind, str) else None
        if parse is not None:
            events.append(parse(entry))
    return events


def history_record(history: History) -> dict[str, list[float | None]]:
    """A history as results and reports keep it: per metric, a list of figures."""
    return {metric: list(figures) for metric, figures in history.items()}


# --- reading the model tree ------------------------------------------------------------


def find_base(model: LayerNode) -> LayerNode | None:
    """The MobileNetV2 inside a recorded model tree: the deepest node holding its layers."""
    found = None
    for node in model.walk():
        names = {child.name for child in node.layers or ()}
        if BASE_MARKERS <= names:
            found = node  # walk is depth-first: a nested base comes after its parent
    return found


# --- all the evidence, and the verdict -------------------------------------------------


@dataclass
class Facts:
    """All the evidence about one submission."""

    static: StaticFacts
    """What the code says, without running it."""
    notebook: Any = None
    """The submitted notebook (written answers are read from its markdown)."""
    events: list[ProbeEvent] = field(default_factory=list)
    """The probe's events, in order (empty when the notebook was not run)."""
    reference_accuracy: float | None = None
    """The reference solution's figure students are scored against."""
    reference_band: ReferenceBand | None = None
    """The reference's figures over several seeds, per basis (None: the one figure)."""
    measured: Measurement | None = None
    """The trusted evaluator's answer, None if nothing was measured."""
    printed: float | None = None
    """The last accuracy figure the notebook printed."""
    reported: float | None = None
    """The notebook's own evaluate/fit figure recorded by the probe."""

    @property
    def measured_accuracy(self) -> float | None:
        """The holdout accuracy the trusted evaluator measured, if it could."""
        return self.measured.accuracy if self.measured is not None else None

    @property
    def claimed(self) -> list[float]:
        """Figures the student's notebook put forward (to cross-check with the measurement)."""
        return [c for c in (self.reported, self.printed) if c is not None]

    @property
    def first_fit(self) -> FitEvent | None:
        """The first training of a model containing MobileNetV2 (else the first training)."""
        fits = [e for e in self.events if isinstance(e, FitEvent) and e.model is not None]
        with_base = [e for e in fits if e.model is not None and find_base(e.model) is not None]
        return (with_base or fits or [None])[0]

    @property
    def trained_model(self) -> LayerNode | None:
        """The model tree at :attr:`first_fit` (None when nothing was trained)."""
        fit = self.first_fit
        return fit.model if fit is not None else None


def verdict(
    spec: CheckSpec,
    message: str,
    source: str,
    evidence: list[Evidence],
    *,
    passed: bool | None = None,
    score: float | None = None,
    review: bool = False,
) -> CheckResult:
    """The verdict of ``spec``: the one shape of every check's answer.

    Give ``passed`` (full points or none), ``score`` (it passes at full points), or both.
    A pre-score (``review``) never passes: the instructor decides. The hint is shown
    whenever it did not pass.
    """
    if score is None:
        score = spec.points if passed else 0.0
    passed = not review and (score >= spec.points if passed is None else passed)
    return CheckResult(
        id=spec.id,
        passed=passed,
        score=score,
        max_score=spec.points,
        message=message,
        source=source,
        title=spec.title,
        hint="" if passed else spec.hint,
        evidence=evidence,
        hidden=spec.hidden,
        review=review,
    )
