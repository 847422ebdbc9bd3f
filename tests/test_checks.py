"""Checks on recorded model trees (no kernel): the verdicts the issue spells out."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import replace
from typing import Any

import nbformat
import pytest

from grader.checks.accuracy import (
    accuracy_flags,
    check_accuracy,
    printed_accuracy,
    score_from,
    self_reported_accuracy,
)
from grader.checks.dispatch import CHECKS, decide
from grader.checks.facts import (
    CompileEvent,
    EvaluateEvent,
    Facts,
    FitEvent,
    NamedModelEvent,
    parse_events,
)
from grader.checks.measured import Measurement
from grader.checks.structural import (
    MSG_FREEZE_REFUTED,
    MSG_TOP_REFUTED,
    check_augmentation,
    check_base_frozen,
    check_include_top_false,
    check_pooling_head,
)
from grader.rubric.schema import KNOWN_CHECKS, CheckSpec
from grader.static.evidence import StaticFacts
from grader.static.facts import analyze_sources
from grader.static.keras_names import AUGMENTATION_CLASSES

SPEC = CheckSpec(id="x", title="X", points=2.0, hint="do it")
ACC = CheckSpec(id="accuracy", title="Acc", points=4.0, hint="train", tolerance=0.05, floor=0.5)


def layer(cls: str, name: str, trainable: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "class": cls,
        "name": name,
        "trainable": True,
        "params_trainable": trainable,
        "params_non_trainable": 0,
        **extra,
    }


def base(trainable: int = 0, top: bool = False, pooling: str | None = None) -> dict[str, Any]:
    layers = [
        layer("InputLayer", "input_layer"),
        layer("Conv2D", "Conv1", trainable),
        layer("ReLU", "out_relu"),
    ]
    if top:
        layers += [
            layer("GlobalAveragePooling2D", "global_average_pooling2d"),
            layer("Dense", "predictions", units=1000),
        ]
    if pooling == "avg":
        layers.append(layer("GlobalAveragePooling2D", "global_average_pooling2d"))
    return layer("Functional", "mobilenetv2_1.00_160", trainable, layers=layers)


def model(*head: dict[str, Any], base_node: dict[str, Any] | None = None) -> dict[str, Any]:
    augment = layer(
        "Sequential",
        "sequential",
        layers=[layer("RandomFlip", "random_flip"), layer("RandomRotation", "random_rotation")],
    )
    children = [layer("InputLayer", "input"), augment, base_node or base(), *head]
    return layer("Functional", "functional", layers=children)


GAP = layer("GlobalAveragePooling2D", "gap")
DENSE = layer("Dense", "dense", 1281, units=1)


def facts_for(
    tree: dict[str, Any] | None,
    static: StaticFacts | None = None,
    events: list[dict[str, Any]] | None = None,
) -> Facts:
    recorded = (
        events
        if events is not None
        else ([{"event": "fit", "model": tree, "history": {}}] if tree else [])
    )
    events = parse_events(recorded)
    return Facts(static=static or StaticFacts(), events=events, reference_accuracy=0.9)


def test_reference_shape_passes_every_structural_check() -> None:
    facts = facts_for(model(GAP, DENSE))
    for check in (
        check_include_top_false,
        check_base_frozen,
        check_augmentation,
        check_pooling_head,
    ):
        result = check(SPEC, facts)
        assert (result.passed, result.score, result.source) == (True, 2.0, "runtime"), result


def test_unfrozen_base_fails_with_the_parameter_count() -> None:
    result = check_base_frozen(SPEC, facts_for(model(GAP, DENSE, base_node=base(2_223_872))))
    assert not result.passed and result.hint == "do it"
    assert "2,223,872 trainable parameters" in result.evidence[-1].text


def test_freezing_is_judged_at_the_first_fit_not_after_fine_tuning() -> None:
    fine_tuned = model(GAP, DENSE, base_node=base(1_800_000))
    events = [
        {"event": "fit", "model": model(GAP, DENSE)},
        {"event": "fit", "model": fine_tuned},
    ]
    assert check_base_frozen(SPEC, facts_for(None, events=events)).passed


def measured_facts(events: list[dict[str, Any]], base_state: str) -> Facts:
    facts = facts_for(None, events=events)
    moved = {"changed": True, "unchanged": False}.get(base_state)
    measured = Measurement(accuracy=0.9, images=8, base=base_state, base_moved=moved)
    return dataclasses.replace(facts, measured=measured)


def test_a_frozen_record_the_evaluator_contradicts_does_not_win() -> None:
    """One fit, recorded with a frozen base, and the saved base's weights are not the
    kit's: a frozen base cannot change in a fit, so the record is refuted."""
    one_fit = [{"event": "fit", "model": model(GAP, DENSE)}, {"event": "fit_end"}]
    result = check_base_frozen(SPEC, measured_facts(one_fit, "changed"))
    assert (result.passed, result.score, result.source) == (False, 0.0, "measured")
    assert result.message == MSG_FREEZE_REFUTED
    assert result.evidence[-1].text == "the evaluator found the saved base's weights changed"
    assert check_base_frozen(SPEC, measured_facts(one_fit, "unchanged")).passed
    unsure = dataclasses.replace(  # changed, but not by training (a Conv head, weights=None)
        measured_facts(one_fit, "changed"),
        measured=Measurement(accuracy=0.9, images=8, base="changed", base_moved=None),
    )
    assert check_base_frozen(SPEC, unsure).passed


def test_fine_tuning_after_a_frozen_fit_is_not_a_contradiction() -> None:
    fine_tuned = model(GAP, DENSE, base_node=base(1_800_000))
    two_fits = [{"event": "fit", "model": model(GAP, DENSE)}, {"event": "fit", "model": fine_tuned}]
    result = check_base_frozen(SPEC, measured_facts(two_fits, "changed"))
    assert (result.passed, result.source) == (True, "runtime")
    saved = {"event": "named_model", "variable": "m"}
    named = [{"event": "fit", "model": model(GAP, DENSE)}, saved]
    assert check_base_frozen(SPEC, measured_facts(named, "changed")).passed  # another model


def test_a_no_top_record_the_saved_model_contradicts_does_not_win() -> None:
    """The records (or, without any, the code) say include_top=False; the model the
    evaluator loaded holds ImageNet's classifier: refuted, and the verdict says so."""
    one_fit = [{"event": "fit", "model": model(GAP, DENSE)}, {"event": "fit_end"}]
    facts = measured_facts(one_fit, "unchanged")
    with_top = dataclasses.replace(facts, measured=dataclasses.replace(facts.measured, top=True))
    result = check_include_top_false(SPEC, with_top)
    assert (result.passed, result.source, result.message) == (False, "measured", MSG_TOP_REFUTED)
    assert "1000-way 'predictions' layer" in result.evidence[-1].text
    assert check_include_top_false(SPEC, facts).passed  # top=None: nothing said, nothing refuted
    no_top = dataclasses.replace(facts, measured=dataclasses.replace(facts.measured, top=False))
    assert check_include_top_false(SPEC, no_top).passed
    kept = facts_for(model(DENSE, base_node=base(top=True)))  # the records say so already
    kept = dataclasses.replace(kept, measured=with_top.measured)
    assert check_include_top_false(SPEC, kept).source == "runtime"


def test_kept_top_fails_and_its_pooling_does_not_count() -> None:
    facts = facts_for(model(DENSE, base_node=base(top=True)))
    assert not check_include_top_false(SPEC, facts).passed
    assert not check_pooling_head(SPEC, facts).passed


def test_pooling_argument_on_the_base_counts() -> None:
    assert check_pooling_head(SPEC, facts_for(model(DENSE, base_node=base(pooling="avg")))).passed


def test_flatten_is_not_a_pooling_head() -> None:
    static = analyze_sources([(0, "import tensorflow as tf\nf = tf.keras.layers.Flatten()")])
    result = check_pooling_head(SPEC, facts_for(model(layer("Flatten", "flatten"), DENSE), static))
    assert not result.passed and "Flatten" in result.message


def test_flattened_functional_model_is_understood() -> None:
    flat = layer(
        "Functional",
        "functional",
        layers=[
            layer("InputLayer", "input"),
            layer("Conv2D", "Conv1", 0),
            layer("ReLU", "out_relu"),
            GAP,
            DENSE,
        ],
    )
    facts = facts_for(flat)
    assert check_base_frozen(SPEC, facts).passed
    assert check_include_top_false(SPEC, facts).passed


PIPELINE = """
import tensorflow as tf
aug = tf.keras.Sequential([tf.keras.layers.RandomFlip('horizontal')])
train = train.map(lambda x, y: (aug(x, training=True), y))
"""
PLOT_ONLY = """
import tensorflow as tf
aug = tf.keras.Sequential([tf.keras.layers.RandomFlip('horizontal')])
img = aug(tf.expand_dims(first_image, 0))
"""


def test_augmentation_in_the_pipeline_counts_though_not_in_the_model() -> None:
    no_aug = layer("Functional", "f", layers=[base(), GAP, DENSE])
    result = check_augmentation(SPEC, facts_for(no_aug, analyze_sources([(0, PIPELINE)])))
    assert (result.passed, result.source) == (True, "static")


def test_augmentation_defined_but_unused_fails() -> None:
    no_aug = layer("Functional", "f", layers=[base(), GAP, DENSE])
    result = check_augmentation(SPEC, facts_for(no_aug, analyze_sources([(0, PLOT_ONLY)])))
    assert not result.passed and "never applied" in result.message


GENERATOR = """
from tensorflow.keras.preprocessing.image import ImageDataGenerator
train_gen = ImageDataGenerator(rescale=1/255, rotation_range=20, horizontal_flip=True)
plain = ImageDataGenerator(rescale=1/255)
train = train_gen.flow_from_directory('train', target_size=(160, 160))
val = plain.flow_from_directory('validation', target_size=(160, 160))
"""
RESCALE_ONLY = """
from tensorflow.keras.preprocessing.image import ImageDataGenerator
gen = ImageDataGenerator(rescale=1/255, horizontal_flip=False)
train = gen.flow_from_directory('train')
"""


def test_an_augmenting_image_generator_counts_where_the_rubric_takes_that_route() -> None:
    no_aug = layer("Functional", "f", layers=[base(), GAP, DENSE])
    facts = facts_for(no_aug, analyze_sources([(0, GENERATOR)]))
    result = check_augmentation(SPEC, facts)
    assert (result.passed, result.source) == (True, "static")
    assert result.message == (
        "Data augmentation is done by an ImageDataGenerator that feeds training."
    )
    assert "train_gen.flow_from_directory" in result.evidence[0].text
    layers_only = replace(SPEC, routes=("model", "pipeline"))
    refused = check_augmentation(layers_only, facts)
    assert not refused.passed and refused.message.endswith(
        "This course does not count that route (it counts: model, pipeline)."
    )
    rescaled = check_augmentation(SPEC, facts_for(no_aug, analyze_sources([(0, RESCALE_ONLY)])))
    assert not rescaled.passed and rescaled.message == "No data augmentation layers were found."


CRASHED = """
import tensorflow as tf
base = tf.keras.applications.MobileNetV2(input_shape=(160, 160, 3), include_top=False)
base.trainable = False
gap = tf.keras.layers.GlobalAveragePooling2D()
"""


def test_static_evidence_decides_when_training_never_happened() -> None:
    facts = facts_for(None, analyze_sources([(3, CRASHED)]))
    top = check_include_top_false(SPEC, facts)
    assert (top.passed, top.source) == (True, "static")
    assert top.evidence[0].cell == 3 and "include_top=False" in top.evidence[0].text
    assert check_base_frozen(SPEC, facts).passed
    assert check_pooling_head(SPEC, facts).passed
    assert not check_augmentation(SPEC, facts).passed


@pytest.mark.parametrize(
    ("accuracy", "points"),
    [(0.95, 4.0), (0.85, 4.0), (0.849, 3.99), (0.675, 2.0), (0.5, 0.0), (0.3, 0.0)],
)
def test_accuracy_bands(accuracy: float, points: float) -> None:
    assert score_from(accuracy, 0.9 - ACC.tolerance, ACC) == pytest.approx(points, abs=0.01)


def test_never_trained_earns_no_accuracy_even_if_it_evaluated_high() -> None:
    events = [{"event": "evaluate", "metrics": {"accuracy": 0.99}}]
    result = check_accuracy(ACC, facts_for(None, events=events))
    assert (result.score, result.passed) == (0.0, False)
    assert "never trained" in result.message


def test_self_reported_prefers_the_last_evaluate_after_the_last_fit() -> None:
    events = [
        {"event": "evaluate", "metrics": {"accuracy": 0.1}},
        {"event": "fit", "model": {}, "history": {"val_accuracy": [0.6, 0.7]}},
        {"event": "evaluate", "metrics": {"loss": 0.3, "accuracy": 0.8}},
    ]
    assert self_reported_accuracy(parse_events(events)) == 0.8
    assert self_reported_accuracy(parse_events(events[:2])) == 0.7
    facts = facts_for(None, events=events)
    facts.measured = Measurement(accuracy=0.8, images=320)
    result = check_accuracy(ACC, facts)
    assert result.score == pytest.approx(3.43, abs=0.01) and not result.passed
    assert result.source == "measured"
    assert "Measured accuracy 80.0%" in result.message and "90.0%" in result.message


TRAINED = [
    {"event": "fit", "model": {}, "history": {}},
    {"event": "evaluate", "metrics": {"accuracy": 0.99}},
]


def test_a_claim_far_from_the_measurement_is_flagged_and_earns_only_the_measured() -> None:
    facts = facts_for(None, events=TRAINED)
    facts.measured, facts.reported, facts.printed = Measurement(0.55, 320), 0.99, 0.99
    result = check_accuracy(ACC, facts)
    assert result.score == pytest.approx(0.57, abs=0.01)
    assert "reported 99.0% but the model measures 55.0%" in result.message
    assert accuracy_flags(ACC, facts) == ["accuracy_mismatch"]
    facts.reported = facts.printed = 0.6
    assert accuracy_flags(ACC, facts) == []


def test_a_model_at_a_size_the_kit_is_not_made_for_is_flagged_for_review_below_full() -> None:
    facts = facts_for(None, events=TRAINED)
    facts.measured = Measurement(0.8, 320, side=(224, 224), made_for=160)
    result = check_accuracy(ACC, facts)
    assert result.score < ACC.points
    assert "reads 224x224 images; the course's offline kit is made for 160x160" in result.message
    assert accuracy_flags(ACC, facts) == ["accuracy_input_size"]
    for measured in (
        Measurement(0.8, 320, side=(160, 160), made_for=160),  # the kit's own size
        Measurement(0.8, 320, side=(224, 224), made_for=None),  # a course's own cache
        Measurement(0.9, 320, side=(224, 224), made_for=160),  # full points: nothing to review
    ):
        facts.measured = measured
        assert accuracy_flags(ACC, facts) == [], measured
        assert "offline kit is made for" not in check_accuracy(ACC, facts).message
    # full points capped by a loss that contradicts its outputs: the size is not the cause
    facts.measured = Measurement(0.9, 320, side=(224, 224), made_for=160, outside=0.5)
    result = check_accuracy(ACC, facts)
    assert result.score < ACC.points and "offline kit is made for" not in result.message
    assert accuracy_flags(ACC, facts) == []


def test_a_model_that_cannot_be_loaded_safely_is_unverified() -> None:
    facts = facts_for(None, events=TRAINED)
    facts.measured = Measurement(error="Lambda layer refused")
    facts.reported = 0.99
    result = check_accuracy(ACC, facts)
    assert (result.score, result.source) == (0.0, "runtime")
    assert "Lambda layer refused" in result.message
    assert accuracy_flags(ACC, facts) == ["accuracy_unverified"]
    generous = CheckSpec(id="accuracy", title="A", points=4.0, unverified_credit=True)
    assert check_accuracy(generous, facts).score == 4.0


def test_printing_a_high_accuracy_without_training_is_flagged() -> None:
    facts = facts_for(None, events=[])
    facts.printed = 0.99
    result = check_accuracy(ACC, facts)
    assert result.score == 0.0 and "without training" in result.message


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Test accuracy : 0.8125\n", 0.8125),
        ("accuracy: 99%\n", 0.99),
        ("Accuracy = 87.5\n", 0.875),
        ("loss 0.3\n", None),
    ],
)
def test_printed_accuracy(text: str, value: float | None) -> None:
    cell = nbformat.v4.new_code_cell("print(...)")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
    assert printed_accuracy(nbformat.v4.new_notebook(cells=[cell])) == value


def test_a_from_scratch_baseline_trained_first_does_not_hide_the_transfer_model() -> None:
    baseline = layer(
        "Sequential", "baseline", layers=[layer("Conv2D", "c", 896), layer("Flatten", "f"), DENSE]
    )
    events = [{"event": "fit", "model": baseline}, {"event": "fit", "model": model(GAP, DENSE)}]
    facts = facts_for(None, events=events)
    assert check_pooling_head(SPEC, facts).passed
    assert check_augmentation(SPEC, facts).passed


def test_the_base_is_found_by_its_layers_not_by_the_students_names() -> None:
    named = model(GAP, DENSE)
    named["name"] = "mobilenetv2_catsdogs"  # the student's own model name
    assert check_base_frozen(SPEC, facts_for(named)).passed
    flat = layer(
        "Functional",
        "functional",
        layers=[
            layer("InputLayer", "input"),
            layer("Conv2D", "Conv1", 0),
            layer("ReLU", "out_relu"),
            GAP,
            layer("Dense", "predictions", 1281, units=1),
        ],
    )
    facts = facts_for(flat)
    assert check_base_frozen(SPEC, facts).passed
    assert check_pooling_head(SPEC, facts).passed


def test_claiming_an_accuracy_without_training_is_a_mismatch() -> None:
    facts = facts_for(None, events=[])
    facts.printed = 0.99
    assert accuracy_flags(ACC, facts) == ["accuracy_mismatch"]
    facts.printed = None
    assert accuracy_flags(ACC, facts) == []


def test_parse_events_keeps_known_events_typed_and_drops_the_rest() -> None:
    raw: list[Any] = [
        "not an object",
        {"event": "unknown_kind", "model": {}},
        {"event": ["fit"]},
        {"event": "compile", "loss": {"class": "BinaryCrossentropy", "from_logits": 1}},
        {"event": "fit", "epochs_requested": "10", "epochs": 2, "initial_epoch": True},
        {"event": "fit", "probe_error": "RuntimeError('x')"},
        {"event": "evaluate", "metrics": {"accuracy": "0.99", "loss": 0.5}},
        {"event": "named_model", "variable": 7},
    ]
    events = parse_events(raw)
    assert [type(e) for e in events] == [
        CompileEvent,
        FitEvent,
        FitEvent,
        EvaluateEvent,
        NamedModelEvent,
    ]
    compile_event, fit, failed, evaluate, named = events
    assert compile_event.loss_class == "BinaryCrossentropy"
    assert compile_event.from_logits is None  # 1 is not a bool: read as absent
    assert (fit.epochs_requested, fit.epochs, fit.initial_epoch) == (None, 2, 0)
    assert failed.model is None and failed.probe_error == "RuntimeError('x')"
    assert evaluate.metrics == {"accuracy": None, "loss": 0.5}  # a string is never a number
    assert named.variable is None


def test_a_figure_that_is_not_finite_reads_as_absent() -> None:
    """NaN and infinity (a diverged training) become None, so results.jsonl stays JSON."""
    raw = [
        {"event": "fit", "model": {}, "optimizer": {"class": "Adam", "learning_rate": math.inf}},
        {"event": "fit_end", "epochs_run": 2, "history": {"loss": [0.5, math.nan]}},
        {"event": "evaluate", "metrics": {"accuracy": math.nan}},
    ]
    fit, end, evaluate = parse_events(raw)
    assert fit.optimizer is not None and fit.optimizer.learning_rate is None
    assert end.history == {"loss": (0.5, None)}
    assert evaluate.metrics == {"accuracy": None}
    assert self_reported_accuracy([fit, end, evaluate]) is None


def test_the_layer_tree_reads_back_as_the_probe_recorded_it() -> None:
    tree = model(GAP, DENSE)
    tree["layers"][0]["layers"] = []  # a container with no children keeps its empty list
    (fit,) = parse_events([{"event": "fit", "model": tree}])
    assert fit.model is not None and fit.model.to_record() == tree
    bad = {**layer("Dense", "d"), "layers": ["not a layer", layer("ReLU", "r")]}
    (fit,) = parse_events([{"event": "fit", "model": bad}])
    assert fit.model is not None and [n.name for n in fit.model.layers or ()] == ["r"]


@pytest.mark.parametrize("cls", sorted(AUGMENTATION_CLASSES) + ["RandomFlip"])
def test_code_and_trained_model_count_the_same_augmentation_classes(cls: str) -> None:
    """One vocabulary: a class that counts in the trained model counts in the code."""
    head = [layer(cls, "augment"), GAP, DENSE]
    trained = check_augmentation(SPEC, facts_for(layer("Functional", "f", layers=[base(), *head])))
    assert (trained.passed, trained.source) == (True, "runtime")
    code = f"import keras\naug = keras.Sequential([keras.layers.{cls}()])\nds = ds.map(aug)\n"
    untrained = check_augmentation(SPEC, facts_for(None, analyze_sources([(0, code)])))
    assert (untrained.passed, untrained.source) == (True, "static")


def test_every_check_the_rubric_knows_has_one_decider() -> None:
    assert set(CHECKS) == set(KNOWN_CHECKS)
    hidden = CheckSpec(id="base_frozen", title="B", points=2.0, hidden=True)
    assert decide(hidden, facts_for(model(GAP, DENSE))).hidden


def test_a_notebook_built_on_another_base_is_told_which() -> None:
    static = StaticFacts(other_bases=["InceptionV3"])
    result = check_include_top_false(SPEC, facts_for(None, static=static))
    assert not result.passed
    assert result.message == (
        "No MobileNetV2(...) call was found in the code; it loads InceptionV3 instead."
    )
