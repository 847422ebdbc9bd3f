"""The checks: pure functions from evidence to a verdict.

Each structural check decides from runtime evidence (the model as it was at its first
``fit``, recorded by the probe) and falls back to static evidence (the code) when the
notebook never reached a ``fit``. The verdict records which decided (``source``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from grader.results import (
    SOURCE_NONE,
    SOURCE_RUNTIME,
    SOURCE_STATIC,
    CheckResult,
    Evidence,
)
from grader.rubric.schema import CheckSpec
from grader.static.facts import CodeRef, StaticFacts

POOLING_CLASSES = {
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "GlobalAvgPool2D",
    "GlobalMaxPool2D",
}
AUGMENTATION_PREFIX = "Random"
AUGMENTATION_CLASSES = {"RandAugment", "AugMix", "MixUp", "CutMix", "Solarization"}
BASE_MARKERS = {"Conv1", "out_relu"}
TOP_LAYER = "predictions"
IMAGENET_CLASSES = 1000
ACCURACY_KEYS = ("accuracy", "binary_accuracy", "acc", "compile_metrics")


@dataclass
class Facts:
    """All the evidence about one submission."""

    static: StaticFacts
    notebook: Any = None
    """The submitted notebook (written answers are read from its markdown)."""
    events: list[dict[str, Any]] = field(default_factory=list)
    reference_accuracy: float | None = None
    measured: dict[str, Any] | None = None
    """The trusted evaluator's answer (``accuracy`` or ``error``), None if not run."""
    printed: float | None = None
    """The last accuracy figure the notebook printed."""
    reported: float | None = None
    """The notebook's own evaluate/fit figure recorded by the probe."""

    @property
    def claimed(self) -> list[float]:
        """Figures the student's notebook put forward (to cross-check with the measurement)."""
        return [c for c in (self.reported, self.printed) if c is not None]

    @property
    def first_fit(self) -> dict[str, Any] | None:
        """The first training of a model containing MobileNetV2 (else the first training)."""
        fits = [e for e in self.events if e.get("event") == "fit" and "model" in e]
        with_base = [e for e in fits if find_base(e["model"]) is not None]
        return (with_base or fits or [None])[0]


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("layers", []):
        yield from _walk(child)


def find_base(model: dict[str, Any]) -> dict[str, Any] | None:
    """The MobileNetV2 inside a recorded model tree: the deepest node holding its layers."""
    found = None
    for node in _walk(model):
        names = {child.get("name") for child in node.get("layers", [])}
        if BASE_MARKERS <= names:
            found = node  # _walk is depth-first: a nested base comes after its parent
    return found


def has_top(base: dict[str, Any]) -> bool:
    """Whether the base kept ImageNet's classifier: a 1000-way ``predictions`` layer."""
    return any(_is_imagenet_top(n) for n in _walk(base) if n is not base)


def _is_imagenet_top(node: dict[str, Any]) -> bool:
    return node.get("name") == TOP_LAYER and node.get("units", IMAGENET_CLASSES) == IMAGENET_CLASSES


def _top_pooling(model: dict[str, Any], base: dict[str, Any] | None) -> set[int]:
    """Pooling layers that belong to a kept ImageNet top (they do not make a head)."""
    if base is None or not has_top(base):
        return set()
    if base is not model:
        return {id(n) for n in _walk(base)}
    layers = base.get("layers", [])
    return {id(layers[i - 1]) for i, n in enumerate(layers) if i and _is_imagenet_top(n)}


def _ref(ref: CodeRef | None) -> list[Evidence]:
    return [Evidence(kind="code", text=ref.text, cell=ref.cell, line=ref.line)] if ref else []


def _fact(text: str) -> Evidence:
    return Evidence(kind="fact", text=text)


def _verdict(
    spec: CheckSpec, passed: bool, message: str, source: str, evidence: list[Evidence]
) -> CheckResult:
    return scored_verdict(spec, spec.points if passed else 0.0, message, source, evidence, passed)


def scored_verdict(
    spec: CheckSpec,
    score: float,
    message: str,
    source: str,
    evidence: list[Evidence],
    passed: bool | None = None,
) -> CheckResult:
    """A verdict earning ``score`` points; unless told, it passes with full points."""
    passed = score >= spec.points if passed is None else passed
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
    )


def check_include_top_false(spec: CheckSpec, facts: Facts) -> CheckResult:
    code = _ref(facts.static.include_top_ref)
    fit = facts.first_fit
    base = find_base(fit["model"]) if fit else None
    if base is not None:
        top = has_top(base)
        fact = _fact(
            f"the trained model's MobileNetV2 {'has' if top else 'has no'} "
            f"'{TOP_LAYER}' layer (the ImageNet classifier)"
        )
        message = (
            "MobileNetV2 kept its ImageNet classifier (include_top=True)."
            if top
            else "MobileNetV2 was loaded without its ImageNet classifier."
        )
        return _verdict(spec, not top, message, SOURCE_RUNTIME, code + [fact])
    top = facts.static.include_top
    if top is None:
        return _verdict(
            spec,
            False,
            "No MobileNetV2(...) call was found in the code.",
            SOURCE_STATIC if facts.static.base_calls else SOURCE_NONE,
            code,
        )
    message = (
        "The code loads MobileNetV2 with include_top=False."
        if top is False
        else "The code loads MobileNetV2 with its ImageNet classifier (include_top=True)."
    )
    return _verdict(spec, top is False, message, SOURCE_STATIC, code)


def check_base_frozen(spec: CheckSpec, facts: Facts) -> CheckResult:
    code = _ref(facts.static.freeze_ref)
    fit = facts.first_fit
    base = find_base(fit["model"]) if fit else None
    if base is not None:
        trainable = _base_trainable_params(base, fit["model"])
        fact = _fact(f"the base had {trainable:,} trainable parameters at the first fit")
        message = (
            "The convolutional base was frozen when training started."
            if trainable == 0
            else "The convolutional base was still trainable at the first fit."
        )
        return _verdict(spec, trainable == 0, message, SOURCE_RUNTIME, code + [fact])
    if facts.static.frozen_before_fit:
        return _verdict(
            spec, True, "The code freezes the base before training.", SOURCE_STATIC, code
        )
    return _verdict(
        spec,
        False,
        "No freezing of the base (trainable = False) before training was found.",
        SOURCE_STATIC,
        code,
    )


def _base_trainable_params(base: dict[str, Any], model: dict[str, Any]) -> int:
    """Trainable parameters of the base; in a flattened model, of the layers up to out_relu."""
    if base is not model:
        return int(base.get("params_trainable", 0))
    names = [child.get("name") for child in base.get("layers", [])]
    end = names.index("out_relu") + 1
    return sum(int(n.get("params_trainable", 0)) for n in base["layers"][:end])


def _is_augmentation(node: dict[str, Any]) -> bool:
    cls = node.get("class", "")
    return cls.startswith(AUGMENTATION_PREFIX) or cls in AUGMENTATION_CLASSES


def check_augmentation(spec: CheckSpec, facts: Facts) -> CheckResult:
    static = facts.static
    defined = _ref(static.augmentation_ref)
    used = _ref(static.augmentation_use_ref)
    fit = facts.first_fit
    if fit is not None:
        layers = sorted({n["class"] for n in _walk(fit["model"]) if _is_augmentation(n)})
        if layers:
            fact = _fact(f"the trained model contains {', '.join(layers)}")
            return _verdict(
                spec,
                True,
                "Data augmentation is part of the trained model.",
                SOURCE_RUNTIME,
                used + [fact],
            )
    if static.augmentation_in_pipeline:
        return _verdict(
            spec,
            True,
            "Data augmentation is applied in the tf.data pipeline.",
            SOURCE_STATIC,
            used or defined,
        )
    if static.augmentation_in_model and fit is None:
        return _verdict(
            spec,
            True,
            "The code puts data augmentation into the model.",
            SOURCE_STATIC,
            used or defined,
        )
    source = SOURCE_RUNTIME if fit is not None else SOURCE_STATIC
    if static.augmentation_layers:
        return _verdict(
            spec,
            False,
            "Augmentation layers are defined but never applied to the training data.",
            source,
            defined,
        )
    return _verdict(spec, False, "No data augmentation layers were found.", source, [])


def check_pooling_head(spec: CheckSpec, facts: Facts) -> CheckResult:
    static = facts.static
    code = _ref(static.pooling_ref) or _ref(static.include_top_ref if static.base_pooling else None)
    fit = facts.first_fit
    if fit is not None:
        model = fit["model"]
        base = find_base(model)
        skip = _top_pooling(model, base)
        pools = sorted(
            {
                n["class"]
                for n in _walk(model)
                if n.get("class") in POOLING_CLASSES and id(n) not in skip
            }
        )
        if pools:
            return _verdict(
                spec,
                True,
                f"The classifier head pools the features ({pools[0]}).",
                SOURCE_RUNTIME,
                code + [_fact(f"the trained model contains {pools[0]}")],
            )
        detail = " (Flatten was used instead)" if static.flatten_used else ""
        return _verdict(
            spec,
            False,
            f"The trained model has no global pooling head{detail}.",
            SOURCE_RUNTIME,
            code,
        )
    if static.pooling_layers or static.base_pooling in ("avg", "max"):
        return _verdict(spec, True, "The code builds a pooling head.", SOURCE_STATIC, code)
    return _verdict(
        spec, False, "No global pooling layer was found in the code.", SOURCE_STATIC, []
    )


CHECKS: dict[str, Callable[[CheckSpec, Facts], CheckResult]] = {
    "include_top_false": check_include_top_false,
    "base_frozen": check_base_frozen,
    "augmentation": check_augmentation,
    "pooling_head": check_pooling_head,
}
