"""Static facts through the student's classes and loops (grader.static.methods and the
``for`` targets of grader.static.scope): models built by methods, the base kept on
``self``, a subclassed ``keras.Model``, models built in a loop over literal lists, and
a baseline trained before the transfer model."""

from __future__ import annotations

import textwrap
import time

from grader.static.evidence import StaticFacts
from grader.static.facts import analyze_sources

TF = "import tensorflow as tf\nfrom tensorflow import keras\n"

BUILDER = """
class Classifier:
    def __init__(self, shape, top={top}):
        self.shape = shape
        self.base = keras.applications.MobileNetV2(input_shape=shape, include_top=top)
        {freeze}

    def augmenter(self):
        return keras.Sequential([keras.layers.RandomFlip('horizontal')])

    def build(self):
        inputs = keras.Input(shape=self.shape)
        x = self.augmenter()(inputs)
        x = self.base(x, training=False)
        x = keras.layers.GlobalAveragePooling2D()(x)
        self.model = keras.Model(inputs, keras.layers.Dense(1)(x))
        return self.model
"""


def analyse(*cells: str) -> StaticFacts:
    return analyze_sources([(i, textwrap.dedent(cell)) for i, cell in enumerate(cells)])


def builder(top: str = "False", freeze: str = "self.base.trainable = False") -> str:
    return TF + BUILDER.format(top=top, freeze=freeze)


def test_a_model_built_by_methods_is_read_through_self_and_the_instance() -> None:
    facts = analyse(
        builder(), "clf = Classifier((160, 160, 3))\nmodel = clf.build()", "model.fit(ds)"
    )
    assert facts.include_top is False
    assert facts.frozen_before_fit
    assert facts.augmentation_in_model
    assert facts.pooling_layers == ["GlobalAveragePooling2D"]


def test_the_trained_models_base_decides_and_a_constructor_argument_reaches_init() -> None:
    demo = "demo = keras.applications.MobileNetV2(include_top=False)\n"
    calls = "clf = Classifier((160, 160, 3), top=True)\nmodel = clf.build()\nmodel.fit(ds)"
    facts = analyse(builder(top="False"), demo + calls)
    assert facts.include_top is True  # what the call passes, not the parameter's default
    facts = analyse(builder(top="True"), demo + calls.replace("top=True", "False"))
    assert facts.include_top is False  # passed by position, after self


def test_a_freeze_through_the_instance_outside_the_class_counts() -> None:
    calls = (
        "clf = Classifier((160, 160, 3))\nclf.base.trainable = False\nm = clf.build()\nm.fit(ds)"
    )
    assert analyse(builder(freeze="pass"), calls).frozen_before_fit
    late = "clf = Classifier((160, 160, 3))\nm = clf.build()\nm.fit(ds)\nclf.base.trainable = False"
    assert not analyse(builder(freeze="pass"), late).frozen_before_fit


def test_a_method_never_called_neither_freezes_nor_trains() -> None:
    code = builder(freeze="pass") + (
        "\n    def freeze(self):\n        self.base.trainable = False\n"
        "\n    def train(self, ds):\n        self.build().fit(ds)\n"
    )
    assert not analyse(code, "clf = Classifier((160, 160, 3))\nclf.train(ds)").frozen_before_fit
    called = "clf = Classifier((160, 160, 3))\nclf.freeze()\nclf.train(ds)"
    assert analyse(code, called).frozen_before_fit


def test_another_classs_attributes_are_not_this_ones() -> None:
    other = "class Other:\n    def __init__(self):\n        self.base = keras.layers.Dense(1)\n"
    calls = "o = Other()\no.base.trainable = False\nclf = Classifier((160, 160, 3))\n"
    facts = analyse(builder(freeze="pass"), other, calls + "m = clf.build()\nm.fit(ds)")
    assert not facts.frozen_before_fit


def test_a_subclassed_model_is_built_from_what_it_keeps_on_self() -> None:
    code = TF + textwrap.dedent(
        """
        demo = keras.applications.MobileNetV2(include_top=True)
        class CatsDogs(keras.Model):
            def __init__(self):
                super().__init__()
                self.base = keras.applications.MobileNetV2(include_top=False)
                self.pool = keras.layers.GlobalAveragePooling2D()
                self.head = keras.layers.Dense(1)

            def call(self, x):
                return self.head(self.pool(self.base(x, training=False)))
        """
    )
    facts = analyse(code, "model = CatsDogs()\nmodel.fit(ds)")
    assert facts.include_top is False  # the trained model's, not the demo's


def test_a_loop_over_a_literal_list_binds_each_item() -> None:
    loop = TF + textwrap.dedent(
        """
        for name, Pooling in [('avg', keras.layers.GlobalAveragePooling2D),
                              ('max', keras.layers.GlobalMaxPooling2D)]:
            base = keras.applications.MobileNetV2(include_top=False)
            base.trainable = False
            x = Pooling()(base.output)
            model = keras.Model(base.input, keras.layers.Dense(1)(x))
            model.fit(ds)
        """
    )
    facts = analyse(loop)
    assert facts.pooling_layers and facts.frozen_before_fit and facts.include_top is False
    for items in (
        "GlobalAveragePooling2D, keras.layers.Flatten",
        "Flatten, keras.layers.GlobalAveragePooling2D",
    ):
        poolings = f"poolings = [keras.layers.{items}]\n"
        facts = analyse(TF + poolings + "for P in poolings:\n    x = P()(y)\n")
        assert facts.flatten_used and facts.pooling_layers == ["GlobalAveragePooling2D"], items


def test_a_loop_over_anything_else_binds_nothing_known() -> None:
    facts = analyse(TF + "for P in get_layers():\n    x = P()(y)\n")
    assert not facts.pooling_layers and not facts.flatten_used


def test_a_baseline_trained_first_does_not_decide_when_the_base_was_frozen() -> None:
    baseline = "cnn = keras.Sequential([keras.layers.Conv2D(8, 3), keras.layers.Flatten()])\n"
    baseline += "cnn.fit(ds)\n"
    base = "base = keras.applications.MobileNetV2(include_top=False)\n"
    model = "model = keras.Sequential([base, keras.layers.GlobalAveragePooling2D()])\n"
    freeze = "base.trainable = False\n"
    assert analyse(TF + baseline, base + freeze + model + "model.fit(ds)").frozen_before_fit
    late = base + model + "model.fit(ds)\n" + freeze
    assert not analyse(TF + baseline, late).frozen_before_fit


def test_hostile_recursion_and_long_loops_stay_fast() -> None:
    """Review findings: a parameter reached again while decided, and a loop over a long
    literal, once made the analysis exponential or quadratic."""
    recursive = TF + (
        "def make(top):\n"
        "    base = keras.applications.MobileNetV2(include_top=top)\n"
        "    return make(top) or make(top)\n"
        "make(False)\n"
    )
    loops = "U = [" + ", ".join(f"L{i}" for i in range(10000)) + "]\n"
    loops += "for u in U:\n    v = u\n" * 200
    start = time.monotonic()
    analyse(recursive)
    analyse(loops)
    assert time.monotonic() - start < 10


def test_a_loop_over_constants_leaves_the_value_unknown() -> None:
    loop = TF + (
        "base = keras.applications.MobileNetV2(include_top=False)\n"
        "base.trainable = False\n"
        "model = keras.Sequential([base, keras.layers.GlobalAveragePooling2D()])\n"
        "for trainable in [False, True]:\n"
        "    base.trainable = trainable\n"
        "    model.fit(ds)\n"
    )
    assert analyse(loop).frozen_before_fit  # the first fit runs frozen


def test_a_def_used_but_not_called_by_name_still_runs() -> None:
    static = TF + (
        "base = keras.applications.MobileNetV2(include_top=False)\n"
        "class FT:\n"
        "    @staticmethod\n"
        "    def freeze():\n"
        "        base.trainable = False\n"
        "FT.freeze()\n"
        "model = keras.Sequential([base, keras.layers.GlobalAveragePooling2D()])\n"
        "model.fit(ds)\n"
    )
    assert analyse(static).frozen_before_fit
    assert not analyse(static.replace("FT.freeze()\n", "")).frozen_before_fit  # never used


UTILS = """
base = keras.applications.MobileNetV2(input_shape=(160, 160, 3), include_top=False)

class Utils:
    @staticmethod
    def freeze(m, flag):
        m.trainable = flag

    @staticmethod
    def train(model, ds):
        return model.fit(ds, epochs=2)

    @classmethod
    def head(cls, b):
        x = keras.layers.GlobalAveragePooling2D()(b.output)
        return keras.Model(b.input, keras.layers.Dense(1)(x))
"""


def test_static_and_class_methods_called_through_the_class_take_their_arguments() -> None:
    calls = "Utils.freeze(base, {flag})\nmodel = Utils.head(base)\nUtils.train(model, ds)\n"
    fine_tune = "base.trainable = True\nmodel.fit(ds, epochs=1)\n"
    facts = analyse(TF + UTILS, calls.format(flag="False"), fine_tune)
    assert facts.frozen_before_fit  # the first fit is the one inside Utils.train
    assert facts.pooling_layers == ["GlobalAveragePooling2D"]  # cls is not ``b``
    assert not analyse(TF + UTILS, calls.format(flag="True"), fine_tune).frozen_before_fit


def test_one_helper_called_with_false_then_true_is_two_events() -> None:
    helper = TF + (
        "base = keras.applications.MobileNetV2(include_top=False)\n"
        "model = keras.Sequential([base, keras.layers.GlobalAveragePooling2D()])\n"
        "def set_trainable(m, flag):\n    m.trainable = flag\n"
        "def set_layers(m, flag):\n    for layer in m.layers:\n        layer.trainable = flag\n"
    )
    for name in ("set_trainable", "set_layers"):
        runs = f"{name}(base, {{}})\nmodel.fit(ds)\n{name}(base, {{}})\nmodel.fit(ds)\n"
        assert analyse(helper, runs.format("False", "True")).frozen_before_fit, name
        assert not analyse(helper, runs.format("True", "False")).frozen_before_fit, name


def test_a_constant_kept_on_self_reaches_the_base_call() -> None:
    code = TF + textwrap.dedent(
        """
        class Net:
            def __init__(self, top={top}):
                self.top = top
                self.base = keras.applications.MobileNetV2(include_top=self.top)
        """
    )
    assert analyse(code.format(top="False"), "net = Net()").include_top is False
    assert analyse(code.format(top="True"), "net = Net()").include_top is True
    assert analyse(code.format(top="False"), "net = Net(top=True)").include_top is True


def test_a_method_defined_twice_is_the_last_definition() -> None:
    code = TF + textwrap.dedent(
        """
        base = keras.applications.MobileNetV2(include_top=False)
        model = keras.Sequential([base, keras.layers.GlobalAveragePooling2D()])
        class Steps:
            def freeze(self):
                pass

            def freeze(self):
                base.trainable = False
        """
    )
    assert analyse(code, "Steps().freeze()\nmodel.fit(ds)").frozen_before_fit


def test_a_slice_of_the_bases_layers_only_unfreezes() -> None:
    head = TF + (
        "base = keras.applications.MobileNetV2(include_top=False)\n"
        "model = keras.Sequential([base, keras.layers.GlobalAveragePooling2D()])\n"
    )
    loop = "for layer in base.layers[{part}]:\n    layer.trainable = {flag}\n"
    cases = {  # what runs before the first fit, and whether the base is then all frozen
        "base.trainable = False\n" + loop.format(part="-6:", flag=True): False,
        loop.format(part=":-6", flag=False): False,  # the last six still train
        "base.trainable = False\n" + loop.format(part=":-6", flag=False): True,
        "base.trainable = False\n[setattr(x, 'trainable', 1) for x in base.layers[-3:]]\n": False,
    }
    for before, frozen in cases.items():
        assert analyse(head, before + "model.fit(ds)\n").frozen_before_fit is frozen, before
    fine_tune = "base.trainable = True\n" + loop.format(part=":100", flag=False) + "model.fit(ds)\n"
    assert analyse(head, "base.trainable = False\nmodel.fit(ds)\n" + fine_tune).frozen_before_fit


MODEL = TF + (
    "base = keras.applications.MobileNetV2(include_top=False)\n"
    "model = keras.Sequential([base, keras.layers.GlobalAveragePooling2D()])\n"
)


def test_a_def_runs_when_its_caller_runs_wherever_it_is_defined() -> None:
    """Review findings: a helper defined below the ``def`` calling it was never called;
    one called only from a ``def`` that never runs, or only named as another object's
    attribute, was."""
    cases = {  # code after the model, and whether the base is frozen at the first fit
        "def main():\n    freeze()\n    model.fit(ds)\n"
        "def freeze():\n    base.trainable = False\nmain()\n": True,
        "class C:\n    def __init__(self):\n        self._freeze()\n"
        "    def _freeze(self):\n        base.trainable = False\nC()\nmodel.fit(ds)\n": True,
        "def freeze():\n    base.trainable = False\n"
        "def unused():\n    freeze()\nmodel.fit(ds)\n": False,
        "def summary():\n    base.trainable = False\nmodel.summary()\nmodel.fit(ds)\n": False,
        "def a():\n    b()\ndef b():\n    a()\n    base.trainable = False\nmodel.fit(ds)\n": False,
        "def train():\n    model.fit(ds)\ndef main():\n    train()\n"
        "    base.trainable = False\n    model.fit(ds)\nmain()\n": False,
    }
    for code, frozen in cases.items():
        assert analyse(MODEL, code).frozen_before_fit is frozen, code


def test_an_attribute_of_an_unknown_object_is_not_a_module_level_self() -> None:
    code = "class X: pass\n{name} = X()\n{name}.base = base\n"
    code += "other = elsewhere()\nother.base.trainable = False\nmodel.fit(ds)\n"
    for name in ("self", "obj"):
        assert not analyse(MODEL, code.format(name=name)).frozen_before_fit, name


def test_a_parameters_constant_does_not_depend_on_which_read_comes_first() -> None:
    chain = "a0 = False\n" + "".join(f"a{i + 1} = a{i}\n" for i in range(23))
    make = "def make(x):\n    base = keras.applications.MobileNetV2(include_top=x)\n{extra}"
    for extra in ("", "    y = x\n    base.trainable = y\n"):
        code = TF + chain + make.format(extra=extra) + "    return base\nm = make(a23)\nm.fit(d)\n"
        assert analyse(code).include_top is False, extra
