"""The checks: pure functions from evidence to a verdict.

Each structural check decides from runtime evidence (the model as it was at its first
``fit``, recorded by the probe) and falls back to static evidence (the code) when the
notebook never reached a ``fit``. The verdict records which decided (``source``).
What the trusted side measured for itself overrules a record it contradicts
(:func:`freeze_refuted`, :func:`top_refuted`): the verdict then says so, and its
source is ``measured``.
"""

from __future__ import annotations

from grader.checks.facts import Facts, FitEvent, LayerNode, NamedModelEvent, find_base, verdict
from grader.results import (
    SOURCE_MEASURED,
    SOURCE_NONE,
    SOURCE_RUNTIME,
    SOURCE_STATIC,
    CheckResult,
    Evidence,
)
from grader.rubric.schema import CheckSpec
from grader.static.evidence import CodeRef
from grader.static.keras_names import (
    IMAGENET_CLASSES,
    POOLING_CLASSES,
    TOP_LAYER,
    is_augmentation_class,
)

CHECK_INCLUDE_TOP_FALSE = "include_top_false"
CHECK_BASE_FROZEN = "base_frozen"
CHECK_AUGMENTATION = "augmentation"
CHECK_POOLING_HEAD = "pooling_head"
LAST_BASE_LAYER = "out_relu"
MSG_TOP_REFUTED = (
    "The probe's record (or the code) says MobileNetV2 was loaded without its ImageNet "
    "classifier, but the saved model holds it (include_top=True)."
)
MSG_FREEZE_REFUTED = (
    "The probe's record says the base was frozen, but the saved model's base no longer has "
    "the weights it shipped with after a single fit: it was trained."
)


def has_top(base: LayerNode) -> bool:
    """Whether the base kept ImageNet's classifier: a 1000-way ``predictions`` layer."""
    return any(_is_imagenet_top(n) for n in base.walk() if n is not base)


def _is_imagenet_top(node: LayerNode) -> bool:
    return node.name == TOP_LAYER and node.units in (None, IMAGENET_CLASSES)


def _top_pooling(model: LayerNode, base: LayerNode | None) -> set[int]:
    """Pooling layers that belong to a kept ImageNet top (they do not make a head)."""
    if base is None or not has_top(base):
        return set()
    if base is not model:
        return {id(n) for n in base.walk()}
    layers = base.layers or ()
    return {id(layers[i - 1]) for i, n in enumerate(layers) if i and _is_imagenet_top(n)}


def _ref(ref: CodeRef | None) -> list[Evidence]:
    return [Evidence(kind="code", text=ref.text, cell=ref.cell, line=ref.line)] if ref else []


def _fact(text: str) -> Evidence:
    return Evidence(kind="fact", text=text)


def check_include_top_false(spec: CheckSpec, facts: Facts) -> CheckResult:
    code = _ref(facts.static.include_top_ref)
    model = facts.trained_model
    base = find_base(model) if model else None
    if top_refuted(facts, base):
        measured = _fact(f"the evaluator found a 1000-way '{TOP_LAYER}' layer in the saved model")
        return verdict(spec, MSG_TOP_REFUTED, SOURCE_MEASURED, code + [measured], passed=False)
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
        return verdict(spec, message, SOURCE_RUNTIME, code + [fact], passed=not top)
    top = facts.static.include_top
    if top is None:
        others = facts.static.other_bases
        instead = f"; it loads {' and '.join(others)} instead" if others else ""
        return verdict(
            spec,
            f"No MobileNetV2(...) call was found in the code{instead}.",
            SOURCE_STATIC if facts.static.base_calls else SOURCE_NONE,
            code,
            passed=False,
        )
    message = (
        "The code loads MobileNetV2 with include_top=False."
        if top is False
        else "The code loads MobileNetV2 with its ImageNet classifier (include_top=True)."
    )
    return verdict(spec, message, SOURCE_STATIC, code, passed=top is False)


def top_refuted(facts: Facts, base: LayerNode | None) -> bool:
    """Whether the evaluator contradicts "no ImageNet classifier": the records' base (or,
    without records, the code) has none, and the saved model it measured holds one."""
    if facts.measured is None or facts.measured.top is not True:
        return False
    return not has_top(base) if base is not None else facts.static.include_top is False


def check_base_frozen(spec: CheckSpec, facts: Facts) -> CheckResult:
    code = _ref(facts.static.freeze_ref)
    model = facts.trained_model
    base = find_base(model) if model else None
    if model is not None and base is not None:
        trainable = _base_trainable_params(base, model)
        fact = _fact(f"the base had {trainable:,} trainable parameters at the first fit")
        if trainable == 0 and freeze_refuted(facts):
            measured = _fact("the evaluator found the saved base's weights changed")
            evidence = code + [fact, measured]
            return verdict(spec, MSG_FREEZE_REFUTED, SOURCE_MEASURED, evidence, passed=False)
        message = (
            "The convolutional base was frozen when training started."
            if trainable == 0
            else "The convolutional base was still trainable at the first fit."
        )
        return verdict(spec, message, SOURCE_RUNTIME, code + [fact], passed=trainable == 0)
    if facts.static.frozen_before_fit:
        return verdict(
            spec, "The code freezes the base before training.", SOURCE_STATIC, code, passed=True
        )
    return verdict(
        spec,
        "No freezing of the base (trainable = False) before training was found.",
        SOURCE_STATIC,
        code,
        passed=False,
    )


def freeze_refuted(facts: Facts) -> bool:
    """Whether the evaluator contradicts a frozen base: the notebook trained once (so the
    saved model is that fit's) and the saved base holds every shipped layer, trained away
    from the kit's weights (``base_moved``). A frozen base cannot change in a fit (its
    BatchNorm layers run in inference mode too); where the evaluator cannot tell (a base
    cut short, another dtype, weights from elsewhere) nothing is refuted."""
    fits = [e for e in facts.events if isinstance(e, FitEvent)]
    named = any(isinstance(e, NamedModelEvent) for e in facts.events)
    measured = facts.measured
    return len(fits) == 1 and not named and measured is not None and measured.base_moved is True


def _base_trainable_params(base: LayerNode, model: LayerNode) -> int:
    """Trainable parameters of the base; in a flattened model, of the layers up to out_relu."""
    if base is not model:
        return base.params_trainable
    layers = base.layers or ()
    end = [child.name for child in layers].index(LAST_BASE_LAYER) + 1
    return sum(n.params_trainable for n in layers[:end])


MSG_IN_MODEL = "Data augmentation is part of the trained model."
MSG_IN_MODEL_CODE = "The code puts data augmentation into the model."
MSG_IN_PIPELINE = "Data augmentation is applied in the tf.data pipeline."
MSG_IN_GENERATOR = "Data augmentation is done by an ImageDataGenerator that feeds training."
MSG_ROUTE_REFUSED = "{done} This course does not count that route (it counts: {routes})."


def check_augmentation(spec: CheckSpec, facts: Facts) -> CheckResult:
    """Where augmentation is done decides (the route named); a route the rubric's
    ``routes`` leaves out fails, saying so."""
    static = facts.static
    defined = _ref(static.augmentation_ref)
    used = _ref(static.augmentation_use_ref)
    model = facts.trained_model
    if model is not None:
        layers = sorted({n.class_name for n in model.walk() if is_augmentation_class(n.class_name)})
        if layers:
            fact = _fact(f"the trained model contains {', '.join(layers)}")
            return _route(spec, "model", MSG_IN_MODEL, SOURCE_RUNTIME, used + [fact])
    if static.augmentation_in_pipeline:
        return _route(spec, "pipeline", MSG_IN_PIPELINE, SOURCE_STATIC, used or defined)
    if static.augmentation_in_generator:
        return _route(spec, "generator", MSG_IN_GENERATOR, SOURCE_STATIC, used or defined)
    if static.augmentation_in_model and model is None:
        return _route(spec, "model", MSG_IN_MODEL_CODE, SOURCE_STATIC, used or defined)
    source = SOURCE_RUNTIME if model is not None else SOURCE_STATIC
    if static.augmentation_layers:
        return verdict(
            spec,
            "Augmentation layers are defined but never applied to the training data.",
            source,
            defined,
            passed=False,
        )
    return verdict(spec, "No data augmentation layers were found.", source, [], passed=False)


def _route(
    spec: CheckSpec, route: str, done: str, source: str, code: list[Evidence]
) -> CheckResult:
    if route in spec.routes:
        return verdict(spec, done, source, code, passed=True)
    refused = MSG_ROUTE_REFUSED.format(done=done, routes=", ".join(spec.routes) or "none")
    return verdict(spec, refused, source, code, passed=False)


def check_pooling_head(spec: CheckSpec, facts: Facts) -> CheckResult:
    static = facts.static
    code = _ref(static.pooling_ref) or _ref(static.include_top_ref if static.base_pooling else None)
    model = facts.trained_model
    if model is not None:
        skip = _top_pooling(model, find_base(model))
        pools = sorted(
            {
                n.class_name
                for n in model.walk()
                if n.class_name in POOLING_CLASSES and id(n) not in skip
            }
        )
        if pools:
            return verdict(
                spec,
                f"The classifier head pools the features ({pools[0]}).",
                SOURCE_RUNTIME,
                code + [_fact(f"the trained model contains {pools[0]}")],
                passed=True,
            )
        detail = " (Flatten was used instead)" if static.flatten_used else ""
        return verdict(
            spec,
            f"The trained model has no global pooling head{detail}.",
            SOURCE_RUNTIME,
            code,
            passed=False,
        )
    if static.pooling_layers or static.base_pooling in ("avg", "max"):
        return verdict(spec, "The code builds a pooling head.", SOURCE_STATIC, code, passed=True)
    return verdict(
        spec, "No global pooling layer was found in the code.", SOURCE_STATIC, [], passed=False
    )
