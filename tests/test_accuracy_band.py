"""The accuracy check compares like with like: the basis the trusted side confirmed, the
reference's spread over its seeds, and the holdout's own sampling error.

The base comparison runs on real Keras layers (no kernel, no kit): the evaluator's
``base_state`` reads the weights a saved model holds, whatever the notebook claims.
"""

from __future__ import annotations

import keras
import pytest

from grader.checks.accuracy import bar_for, check_accuracy, sampling_error
from grader.checks.facts import Facts, parse_events
from grader.checks.measured import (
    BASE_CHANGED,
    BASE_UNCHANGED,
    BASIS_FINAL,
    BASIS_HEAD,
    Measurement,
    ReferenceBand,
    parse_measurement,
)
from grader.measure.weights import base_state
from grader.rubric.schema import CheckSpec
from grader.static.evidence import StaticFacts

ACC = CheckSpec(id="accuracy", title="Acc", points=2.0, hint="train", tolerance=0.05, floor=0.5)
TRAINED = parse_events([{"event": "fit", "model": {"class": "Functional", "name": "m"}}])
BAND = ReferenceBand(final=(0.95, 0.93, 0.96), head=(0.90, 0.88, 0.91))


def facts(measured: float, base: str | None, images: int = 320, band=BAND) -> Facts:
    answer = Measurement(accuracy=measured, images=images, base=base)
    return Facts(
        static=StaticFacts(),
        events=TRAINED,
        reference_accuracy=0.95,
        reference_band=band,
        measured=answer,
    )


def test_a_base_the_evaluator_found_unchanged_is_compared_with_the_head_only_reference() -> None:
    bar = bar_for(ACC, facts(0.86, BASE_UNCHANGED))
    assert bar is not None and bar.basis == BASIS_HEAD
    assert (bar.low, bar.reference, bar.high, bar.seeds) == (0.88, 0.90, 0.91, 3)
    assert bar.full_at == pytest.approx(0.88 - 0.05)
    result = check_accuracy(ACC, facts(0.86, BASE_UNCHANGED))
    assert result.passed and result.score == 2.0
    assert "88.0%-91.0% over 3 seeds, before fine-tuning" in result.message
    assert "pre-trained weights" in result.message


@pytest.mark.parametrize("base", [BASE_CHANGED, None])
def test_a_trained_or_unknown_base_is_compared_with_the_whole_reference(base) -> None:
    """Only the trusted side's finding lowers the bar: a fine-tuned base, or one the
    evaluator could not find, meets the reference after fine-tuning."""
    bar = bar_for(ACC, facts(0.86, base))
    assert bar is not None and bar.basis == BASIS_FINAL
    assert bar.full_at == pytest.approx(0.93 - 0.05)
    result = check_accuracy(ACC, facts(0.86, base))
    assert not result.passed and 0 < result.score < 2.0
    assert "before fine-tuning" not in result.message
    reason = "was trained too" if base == BASE_CHANGED else "could not find the pre-trained base"
    assert reason in result.message  # the student is told why


def test_the_full_credit_line_allows_the_holdouts_sampling_error_when_larger() -> None:
    few = bar_for(ACC, facts(0.9, BASE_CHANGED, images=32))
    many = bar_for(ACC, facts(0.9, BASE_CHANGED, images=320))
    assert sampling_error(0.93, 32) > 0.025  # 2 errors exceed the 0.05 tolerance
    assert few.full_at == pytest.approx(0.93 - 2 * sampling_error(0.93, 32))
    assert many.full_at == pytest.approx(0.93 - 0.05)  # 2 x 0.014 < 0.05


def test_a_head_only_reference_too_spread_to_set_a_bar_is_not_used() -> None:
    """An unconverged head phase (0.53-0.81 over its seeds) would put the full-credit line
    at chance: head-only work then meets the whole reference, and is told why."""
    wide = ReferenceBand(final=(0.92, 0.875, 0.915), head=(0.71, 0.81, 0.53))
    bar = bar_for(ACC, facts(0.6, BASE_UNCHANGED, band=wide))
    assert bar is not None and bar.basis == BASIS_FINAL and bar.too_wide == (0.53, 0.81)
    result = check_accuracy(ACC, facts(0.6, BASE_UNCHANGED, band=wide))
    assert result.score < 1.0  # a weak head-only model no longer passes on a bar at chance
    assert "spread too widely (53.0%-81.0%)" in result.message


def test_without_a_band_the_one_reference_figure_sets_the_bar_as_before() -> None:
    result = check_accuracy(ACC, facts(0.91, BASE_UNCHANGED, band=None))
    assert result.passed  # 0.91 >= 0.95 - 0.05
    assert "over" not in result.message and "full points from 90.0%" in result.message


def test_a_reference_band_without_head_figures_compares_everyone_with_the_final_ones() -> None:
    bar = bar_for(ACC, facts(0.9, BASE_UNCHANGED, band=ReferenceBand(final=(0.94, 0.92))))
    assert bar is not None and bar.basis == BASIS_FINAL and bar.low == 0.92


def small_model(name: str = "base", blocks: int = 1):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="Conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn_Conv1")(x)
    for i in range(1, blocks):
        x = keras.layers.Conv2D(4, 1, name=f"block_{i}_conv")(x)
    base = keras.Model(inputs, x, name=name)
    outer_in = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(base(outer_in))
    return base, keras.Model(outer_in, keras.layers.Dense(1, name="head")(pooled))


def test_base_state_reads_the_weights_the_model_holds() -> None:
    base, model = small_model()
    shipped = {layer.name: layer.get_weights() for layer in base.layers}
    assert base_state(model, shipped) == BASE_UNCHANGED  # nested base, head trained or not
    kernel, bias = base.get_layer("Conv1").get_weights()
    base.get_layer("Conv1").set_weights([kernel + 1e-6, bias])
    assert base_state(model, shipped) == BASE_CHANGED  # fine-tuned by the smallest step
    _, other = small_model()
    renamed = {f"x_{name}": weights for name, weights in shipped.items()}
    assert base_state(other, renamed) is None  # not the shipped base: no finding


def test_a_base_trained_then_partly_renamed_or_beside_a_trained_copy_reads_changed() -> None:
    """``unchanged`` lowers the bar: a fine-tuned layer renamed out of the comparison, or a
    shipped base kept untouched beside a trunk that learns, must not earn it."""
    base, model = small_model(blocks=12)
    shipped = {layer.name: layer.get_weights() for layer in base.layers}
    assert base_state(model, shipped) == "unchanged"
    base.get_layer("block_11_conv").name = "my_head_conv"  # trained, then renamed away
    assert base_state(model, shipped) == "changed"
    base, model = small_model()
    shipped = {layer.name: layer.get_weights() for layer in base.layers}
    inputs = keras.Input((8, 8, 3))
    decoy = keras.layers.Conv2D(4, 3, name="my_trunk")(inputs)
    pooled = keras.layers.Concatenate()(
        [keras.layers.GlobalAveragePooling2D()(base(inputs)), keras.layers.Flatten()(decoy)]
    )
    both = keras.Model(inputs, keras.layers.Dense(1)(pooled))
    assert base_state(both, shipped) == "changed"  # a convolution of its own beside the base


def test_calibration_gives_the_band_per_basis_and_warns_when_the_draw_decides() -> None:
    from grader.batch.calibrate import _calibration, calibration_lines
    from grader.measure.reference import ReferenceFigures

    seeds = [
        {"seed": 1234, "final": 0.95, "head": 0.70},
        {"seed": 1235, "final": 0.94, "head": 0.90},
        {"seed": 1236, "final": 0.96, "head": 0.86},
    ]
    figures = ReferenceFigures("k", 0.95, None, 0.95, 60.0, [], seeds=seeds)
    calibration = _calibration("quick", figures, ACC, images=320)
    assert calibration.bars["final"].full_at == pytest.approx(0.94 - 0.05)
    assert "head" not in calibration.bars  # 0.70-0.90: too wide to set a bar
    assert len(calibration.warnings) == 2
    assert "head figures spread 20.0%" in calibration.warnings[0]
    assert "compared with the whole reference" in calibration.warnings[1]
    lines = calibration_lines(calibration)
    assert "  seed 1235: after the first fit 0.900, after the last 0.940" in lines


def test_the_evaluators_answer_is_parsed_as_hostile_input() -> None:
    """It measured a student's file: anything out of type or range reads as absent."""
    good = {"accuracy": 0.9, "images": 320, "rule": "logit", "base": "unchanged", "error": None}
    assert parse_measurement(good) == Measurement(0.9, 320, "logit", BASE_UNCHANGED, None)
    bad = {"accuracy": 1.5, "images": "320", "rule": "<b>", "base": True, "error": "x" * 5000}
    parsed = parse_measurement(bad)
    assert parsed is not None and (parsed.accuracy, parsed.images) == (None, 0)
    assert parsed.rule is None and parsed.base is None and len(parsed.error or "") == 400
    assert parse_measurement({"accuracy": float("nan")}).accuracy is None
    assert parse_measurement(["not", "a", "dict"]).error  # type: ignore[arg-type]
    assert parse_measurement(None) is None
    assert parse_measurement({"side": [224, 224]}).side == (224, 224)
    for side in ([224], [0, 160], [True, 160], [160.0, 160], "160", [10**6, 160], None):
        assert parse_measurement({"side": side}).side is None, side
    assert parse_measurement({"side": [224, 224], "made_for": 160}).made_for is None  # ours


# --- the loss and the outputs: a probability loss over outputs that are not ------------


def test_outputs_that_cannot_be_probabilities_are_told_per_image() -> None:
    import numpy as np

    from grader.measure.evaluator import not_probabilities

    one_unit = np.array([[0.0], [1.0], [0.5], [1.7], [-0.2], [np.nan]])
    assert not_probabilities(one_unit).tolist() == [False, False, False, True, True, True]
    two_units = np.array([[0.3, 0.7], [0.3, 0.3], [1.2, -0.2], [0.2, 0.8 + 4e-4]])
    # rows need not sum to 1 (a sigmoid per unit; float16 softmax): only the range counts
    assert not_probabilities(two_units).tolist() == [False, False, True, False]


def tiny_holdout(folder) -> None:
    import numpy as np

    for label, value in (("cats", 40), ("dogs", 200)):
        (folder / label).mkdir(parents=True)
        for i in range(4):
            image = np.full((8, 8, 3), value + i, dtype="uint8")
            keras.utils.save_img(folder / label / f"{i}.png", image, scale=False)


@pytest.mark.parametrize(
    ("activation", "hint", "outside"),
    [(None, "probability", 1.0), ("sigmoid", "probability", 0.0), (None, "logit", None)],
)
def test_the_evaluator_counts_outputs_a_probability_loss_cannot_read(
    tmp_path, activation, hint, outside
) -> None:
    """A Dense(1) with no activation emits any number; under ``from_logits=False`` the
    loss reads it as a probability. The evaluator tells from the outputs themselves."""
    from grader.measure.evaluator import measure

    tiny_holdout(tmp_path / "holdout")
    inputs = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    dense = keras.layers.Dense(1, activation=activation, kernel_initializer="ones")
    keras.Model(inputs, dense(pooled)).save(tmp_path / "m.keras")
    answer = measure(tmp_path / "holdout", tmp_path / "m.keras", hint=hint)
    assert answer["error"] is None and answer["images"] == 8
    assert answer["outside"] == outside


def mismatched(measured: float, outside: float | None) -> Facts:
    answer = Measurement(accuracy=measured, images=320, base=BASE_CHANGED, outside=outside)
    return Facts(static=StaticFacts(), events=TRAINED, reference_band=BAND, measured=answer)


def test_outputs_that_contradict_the_loss_earn_at_most_half_the_points() -> None:
    """``from_logits=False`` over a linear output: on some draws its outputs separate the
    classes anyway (it measured full credit on 1 seed in 3); the evaluator's finding caps
    it, whatever the draw, and says why."""
    capped = check_accuracy(ACC, mismatched(0.99, outside=0.87))
    assert not capped.passed and capped.score == 1.0
    assert "from_logits=False" in capped.message and "87%" in capped.message
    assert "at most 50% of the accuracy points" in capped.message
    assert check_accuracy(ACC, mismatched(0.6, outside=0.87)).score < 1.0  # lower stays lower
    assert check_accuracy(ACC, mismatched(0.99, outside=0.01)).score == 2.0  # strays
    assert check_accuracy(ACC, mismatched(0.99, outside=None)).score == 2.0  # logits: not read
    evidence = [e.text for e in capped.evidence]
    assert "outputs that are not probabilities, under a loss for them: 87.0%" in evidence


@pytest.mark.parametrize(
    ("loss", "hint"),
    [
        ({"class": "BinaryCrossentropy", "from_logits": True}, "logit"),
        ({"class": "BinaryCrossentropy", "from_logits": False}, "probability"),
        ({"class": "str", "name": "binary_crossentropy"}, "probability"),
        ({"class": "str", "name": "SparseCategoricalCrossentropy"}, "probability"),
        ({"class": "str", "name": "mse"}, None),
        ({"class": "MeanSquaredError"}, None),
    ],
)
def test_the_output_rule_follows_the_loss_and_keras_defaults_for_a_loss_by_name(loss, hint) -> None:
    from grader.measure.client import output_hint

    events = parse_events([{"event": "compile", "model": {"class": "Functional"}, "loss": loss}])
    assert output_hint(events) == hint
    model = {"class": "Functional", "name": "m"}
    later = {"event": "compile", "model": {"class": "Sequential"}, "loss": {"name": "mse"}}
    trained = [{"event": "compile", "model": model, "loss": loss}, {"event": "fit", "model": model}]
    assert output_hint(parse_events([*trained, later])) == hint  # the saved model's compile


def test_the_outside_share_is_parsed_as_hostile_input() -> None:
    assert parse_measurement({"accuracy": 0.9, "outside": 0.25}).outside == 0.25
    for bad in (1.5, -0.1, "0.5", True, float("inf")):
        assert parse_measurement({"accuracy": 0.9, "outside": bad}).outside is None


def test_a_loss_passed_as_a_function_is_read_by_its_name() -> None:
    """``loss=keras.losses.binary_crossentropy`` reads probabilities, as its string does."""
    from grader.measure.client import output_hint
    from grader.run.kernel.probe import loss_info

    found = loss_info(keras.losses.binary_crossentropy)
    assert found["name"] == "binary_crossentropy" and found["from_logits"] is None
    compiled = {"event": "compile", "model": {"class": "Functional"}, "loss": found}
    assert output_hint(parse_events([compiled])) == "probability"
    assert loss_info(lambda y, p: 0.0)["name"] == "<lambda>"  # no Keras name: not read
    assert loss_info(keras.losses.BinaryCrossentropy(from_logits=True))["name"] is None
