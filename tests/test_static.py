"""Tests for grader.static.facts: facts read from notebook code with ast, never executed."""

from __future__ import annotations

import textwrap
import time

import pytest

from grader.static.evidence import CodeRef, StaticFacts
from grader.static.facts import analyze_notebook, analyze_sources
from grader.static.magics import neutralise_magics

TF = "import tensorflow as tf\n"
BASE = TF + "base = tf.keras.applications.MobileNetV2(include_top=False)\n"
AUG = TF + (
    "data_augmentation = tf.keras.Sequential([\n"
    "    tf.keras.layers.RandomFlip('horizontal'),\n"
    "    tf.keras.layers.RandomRotation(0.2),\n"
    "])\n"
)


def analyse(*cells: str) -> StaticFacts:
    """Facts for code cells numbered 0, 1, 2, ... (no markdown in between)."""
    return analyze_sources([(i, textwrap.dedent(cell)) for i, cell in enumerate(cells)])


# --- name resolution -------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "import tensorflow as tf\nb = tf.keras.applications.MobileNetV2(include_top=False)",
        "import tensorflow\nb = tensorflow.keras.applications.MobileNetV2(include_top=False)",
        "import keras\nb = keras.applications.MobileNetV2(include_top=False)",
        "from keras import applications as apps\nb = apps.MobileNetV2(include_top=False)",
        "from tensorflow.keras.applications import MobileNetV2 as MNV2\n"
        "b = MNV2(include_top=False)",
        "from tensorflow.keras.applications.mobilenet_v2 import MobileNetV2\n"
        "b = MobileNetV2(include_top=False)",
        "from keras.applications import mobilenet_v2\n"
        "b = mobilenet_v2.MobileNetV2(include_top=False)",
        "from tensorflow import keras\nb = keras.applications.MobileNetV2(include_top=False)",
        "import tensorflow as tf\nK = tf.keras\nb = K.applications.MobileNetV2(include_top=False)",
        "import tensorflow.keras as tfk\nb = tfk.applications.MobileNetV2(include_top=False)",
        "import tensorflow.keras.applications\n"
        "b = tensorflow.keras.applications.MobileNetV2(include_top=False)",
        "from tensorflow.keras.applications import *\nb = MobileNetV2(include_top=False)",
        "import tf_keras\nb = tf_keras.applications.MobileNetV2(include_top=False)",
    ],
)
def test_base_call_resolved_through_imports(code: str) -> None:
    facts = analyse(code)
    assert len(facts.base_calls) == 1
    assert facts.base_calls[0].line == code.count("\n") + 1
    assert facts.include_top is False
    assert facts.base_names == ["b"]


def test_base_call_resolved_across_cells() -> None:
    facts = analyse(
        "from tensorflow.keras import applications",
        "x = 1",
        "base_model = applications.MobileNetV2(include_top=False)",
    )
    assert facts.base_calls == [
        CodeRef(2, 1, "base_model = applications.MobileNetV2(include_top=False)")
    ]
    assert facts.base_names == ["base_model"]


@pytest.mark.parametrize(
    "code",
    [
        "def MobileNetV2(**kw):\n    return None\nb = MobileNetV2(include_top=False)",
        "from tensorflow.keras.applications import MobileNetV2\n"
        "def MobileNetV2(**kw):\n    return None\nb = MobileNetV2(include_top=False)",
        "b = MobileNetV2(include_top=False)",
        "from mymodels import MobileNetV2\nb = MobileNetV2(include_top=False)",
        "import mymodels\nb = mymodels.MobileNetV2(include_top=False)",
        "import tensorflow as tf\n# b = tf.keras.applications.MobileNetV2(include_top=False)",
        "import tensorflow as tf\ns = 'tf.keras.applications.MobileNetV2(include_top=False)'",
        "import tensorflow as tf\nname = tf.keras.applications.MobileNetV2.__name__",
    ],
)
def test_not_a_keras_base_call(code: str) -> None:
    facts = analyse(code)
    assert facts.base_calls == []
    assert facts.include_top is None
    assert facts.include_top_ref is None
    assert facts.base_names == []


def test_layers_module_alias_resolves_layer_classes() -> None:
    facts = analyse(
        "from tensorflow.keras import layers",
        "aug = layers.RandomFlip('horizontal')\npool = layers.GlobalAveragePooling2D()",
    )
    assert facts.augmentation_layers == ["RandomFlip"]
    assert facts.pooling_layers == ["GlobalAveragePooling2D"]


def test_base_names_include_aliases_and_tuple_targets() -> None:
    facts = analyse(BASE + "alias = base\nother, head = tf.keras.applications.MobileNetV2(), 1")
    assert facts.base_names == ["base", "alias", "other"]
    assert len(facts.base_calls) == 2


# --- include_top and pooling arguments -------------------------------------------------


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("M(include_top=False)", False),
        ("M(include_top=True)", True),
        ("M(input_shape=(160, 160, 3), weights='imagenet')", True),
        ("M()", True),
        ("TOP = False\nM(include_top=TOP)", False),
        ("TOP = False\nT2 = TOP\nM(include_top=T2)", False),
        ("M(include_top=not True)", False),
        ("M(include_top=0)", False),
        ("kw = dict(include_top=False, weights='imagenet')\nM(**kw)", False),
        ("kw = {'include_top': False, 'weights': 'imagenet'}\nM(**kw)", False),
        ("M(**{'include_top': False})", False),
        ("kw = dict(weights='imagenet')\nM(**kw)", True),
        ("kw = {'weights': 'imagenet'}\nkw['include_top'] = False\nM(**kw)", False),
        ("kw = {'include_top': True}\nkw['include_top'] = False\nM(**kw)", False),
        ("M((160, 160, 3), 1.0, False)", False),
        ("M((160, 160, 3), 1.0, True)", True),
        ("M(include_top=flag())", None),
        ("M(include_top=unknown_name)", None),
        ("M(*args)", None),
        ("M(**load_config())", None),
        ("kw = dict(other)\nM(**kw)", None),
        ("M(include_top='False')", True),
    ],
)
def test_include_top_resolution(code: str, expected: bool | None) -> None:
    facts = analyse("from keras.applications import MobileNetV2 as M\n" + code)
    assert facts.include_top is expected
    assert facts.include_top_ref is not None
    assert facts.include_top_ref.line == code.count("\n") + 2


def test_include_top_of_first_call_and_multiline_ref() -> None:
    facts = analyse(
        TF,
        "base_model = tf.keras.applications.MobileNetV2(\n"
        "    input_shape=(160, 160, 3),   \n"
        "    include_top=False,\n"
        "    weights='imagenet')\n",
        "second = tf.keras.applications.MobileNetV2(include_top=True)",
    )
    assert facts.include_top is False
    assert facts.include_top_ref == CodeRef(
        1,
        1,
        "base_model = tf.keras.applications.MobileNetV2(\n"
        "    input_shape=(160, 160, 3),\n"
        "    include_top=False,\n"
        "    weights='imagenet')",
    )
    assert [ref.cell for ref in facts.base_calls] == [1, 2]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("M(include_top=False, pooling='avg')", "avg"),
        ("M(include_top=False, pooling='max')", "max"),
        ("M(include_top=False)", None),
        ("M(include_top=False, pooling=None)", None),
        ("P = 'avg'\nM(include_top=False, pooling=P)", "avg"),
        ("kw = dict(include_top=False, pooling='max')\nM(**kw)", "max"),
        ("M(None, 1.0, False, 'imagenet', None, 'avg')", "avg"),
        ("M(include_top=False, pooling='mean')", None),
    ],
)
def test_base_pooling(code: str, expected: str | None) -> None:
    facts = analyse("from tensorflow.keras.applications import MobileNetV2 as M\n" + code)
    assert facts.base_pooling == expected


# --- freezing --------------------------------------------------------------------------

FIT = "model.fit(train_ds, epochs=1)\n"


@pytest.mark.parametrize(
    ("code", "frozen", "ref_line"),
    [
        ("base.trainable = False\n" + FIT, True, 3),
        ("base.trainable = 0\n" + FIT, True, 3),
        ("FREEZE = False\nbase.trainable = FREEZE\n" + FIT, True, 4),
        ("base.trainable = 'False'\n" + FIT, False, None),
        ("# base.trainable = False\n" + FIT, False, None),
        ("'''\nbase.trainable = False\n'''\n" + FIT, False, None),
        ("base.trainable = False\nbase.trainable = True\n" + FIT, False, None),
        ("base.trainable = True\nbase.trainable = False\n" + FIT, True, 4),
        ("base.trainable = False\n" + FIT + "base.trainable = True\n" + FIT, True, 3),
        (FIT + "base.trainable = False\n", False, None),
        ("base.trainable = False\n", True, 3),
        ("for layer in base.layers:\n    layer.trainable = False\n" + FIT, True, 3),
        ("for i, l in enumerate(base.layers):\n    l.trainable = False\n" + FIT, True, 3),
        ("for layer in base.layers[:100]:\n    layer.trainable = False\n" + FIT, False, None),
        ("for layer in base.layers[:-20]:\n    layer.trainable = False\n" + FIT, False, None),
        (
            "for layer in base.layers:\n"
            "    if 'bn' in layer.name:\n"
            "        layer.trainable = False\n" + FIT,
            False,
            None,
        ),
        ("for layer in other.layers:\n    layer.trainable = False\n" + FIT, False, None),
        ("[setattr(l, 'trainable', False) for l in base.layers]\n" + FIT, True, 3),
        ("setattr(base, 'trainable', False)\n" + FIT, True, 3),
        ("if False:\n    base.trainable = False\n" + FIT, False, None),
        ("if True:\n    base.trainable = False\n" + FIT, True, 4),
        ("model.layers[0].trainable = False\n" + FIT, False, None),
        ("base.layers[0].trainable = False\n" + FIT, False, None),
        ("alias = base\nalias.trainable = False\n" + FIT, True, 4),
        ("other = make()\nother.trainable = False\n" + FIT, False, None),
        ("base.trainable = flag\n" + FIT, False, None),
    ],
)
def test_frozen_before_fit(code: str, frozen: bool, ref_line: int | None) -> None:
    facts = analyse(BASE + code)
    assert facts.frozen_before_fit is frozen
    assert (facts.freeze_ref.line if facts.freeze_ref else None) == ref_line
    if facts.freeze_ref:
        assert facts.freeze_ref.cell == 0


def test_loop_freeze_ref_is_the_whole_loop() -> None:
    facts = analyse(BASE, "for layer in base.layers:\n    layer.trainable = False\n", FIT)
    assert facts.freeze_ref == CodeRef(
        1, 1, "for layer in base.layers:\n    layer.trainable = False"
    )


def test_freeze_in_function_counts_at_its_call() -> None:
    facts = analyse(
        TF,
        "def train(model):\n    return model.fit(train_ds, epochs=5)\n",
        "def build():\n"
        "    base = tf.keras.applications.MobileNetV2(include_top=False)\n"
        "    base.trainable = False\n"
        "    return tf.keras.Sequential([base, tf.keras.layers.Dense(1)])\n",
        "model = build()\nhistory = train(model)\n",
    )
    assert facts.frozen_before_fit is True
    assert facts.freeze_ref == CodeRef(2, 3, "    base.trainable = False")
    assert facts.fit_refs == [CodeRef(1, 2, "    return model.fit(train_ds, epochs=5)")]


def test_freeze_in_function_called_after_fit_does_not_count() -> None:
    facts = analyse(
        BASE,
        "def freeze():\n    base.trainable = False\n",
        FIT,
        "freeze()",
    )
    assert facts.frozen_before_fit is False


def test_function_parameter_shadows_global_base() -> None:
    facts = analyse(BASE, "def f(base):\n    base.trainable = False\n", "f(other)\n" + FIT)
    assert facts.frozen_before_fit is False


# --- augmentation ----------------------------------------------------------------------


def test_augmentation_in_model_via_input_chain() -> None:
    facts = analyse(
        AUG,
        "inputs = tf.keras.Input(shape=(160, 160, 3))\n"
        "x = data_augmentation(inputs)\n"
        "x = tf.keras.applications.mobilenet_v2.preprocess_input(x)\n"
        "outputs = tf.keras.layers.Dense(1)(x)\n"
        "model = tf.keras.Model(inputs, outputs)\n",
    )
    assert facts.augmentation_layers == ["RandomFlip", "RandomRotation"]
    assert facts.augmentation_ref == CodeRef(0, 2, AUG.split("\n", 1)[1].rstrip("\n"))
    assert facts.augmentation_in_model is True
    assert facts.augmentation_in_pipeline is False
    assert facts.augmentation_use_ref == CodeRef(1, 2, "x = data_augmentation(inputs)")


@pytest.mark.parametrize("cls", ["MixUp", "CutMix", "Solarization", "RandAugment", "AugMix"])
def test_augmentation_classes_without_the_random_prefix_count_in_the_code(cls: str) -> None:
    """The code counts the same augmentation classes as the trained model's tree does
    (MixUp, CutMix and Solarization used to count at run time only)."""
    facts = analyse(
        "import keras\n"
        f"aug = keras.Sequential([keras.layers.{cls}()])\n"
        "train = train.map(lambda x, y: (aug(x, training=True), y))\n"
    )
    assert facts.augmentation_layers == [cls]
    assert facts.augmentation_in_pipeline is True


def test_augmentation_in_model_after_other_layers() -> None:
    facts = analyse(
        AUG,
        "from tensorflow.keras import layers\n"
        "inputs = layers.Input(shape=(160, 160, 3))\n"
        "y = layers.Rescaling(1 / 255)(inputs)\n"
        "z = data_augmentation(y, training=True)\n",
    )
    assert facts.augmentation_in_model is True
    assert facts.augmentation_use_ref is not None and facts.augmentation_use_ref.line == 4


def test_augmentation_layers_applied_one_by_one_in_functional_model() -> None:
    facts = analyse(
        "import keras\nfrom keras import layers\n"
        "inputs = keras.Input((160, 160, 3))\n"
        "x = layers.RandomFlip('horizontal')(inputs)\n"
        "x = layers.RandomZoom(0.1)(x)\n"
    )
    assert facts.augmentation_layers == ["RandomFlip", "RandomZoom"]
    assert facts.augmentation_in_model is True
    assert facts.augmentation_use_ref is not None and facts.augmentation_use_ref.line == 4


def test_augmentation_in_model_inside_build_function() -> None:
    facts = analyse(
        AUG,
        "def build():\n"
        "    inp = tf.keras.Input(shape=(160, 160, 3))\n"
        "    h = data_augmentation(inp)\n"
        "    return tf.keras.Model(inp, h)\n",
    )
    assert facts.augmentation_in_model is True


@pytest.mark.parametrize(
    "model_code",
    [
        "model = tf.keras.Sequential([data_augmentation, base, "
        "tf.keras.layers.GlobalAveragePooling2D(), tf.keras.layers.Dense(1)])",
        "model = tf.keras.Sequential([\n"
        "    tf.keras.layers.RandomFlip('horizontal'),\n"
        "    base,\n"
        "    tf.keras.layers.Dense(1),\n"
        "])",
        "model = tf.keras.models.Sequential()\nmodel.add(data_augmentation)\nmodel.add(base)",
        "model = tf.keras.Sequential(layers=[data_augmentation, tf.keras.layers.Dense(1)])",
        "pre = tf.keras.Sequential([data_augmentation, tf.keras.layers.Rescaling(1 / 255)])\n"
        "model = tf.keras.Sequential([pre, base, tf.keras.layers.Dense(1)])",
    ],
)
def test_augmentation_in_model_via_sequential(model_code: str) -> None:
    facts = analyse(AUG, BASE + model_code)
    assert facts.augmentation_in_model is True
    assert facts.augmentation_in_pipeline is False
    assert facts.augmentation_use_ref is not None and facts.augmentation_use_ref.cell == 1


def test_augmentation_sequential_built_with_add_is_not_a_model() -> None:
    facts = analyse(
        "from tensorflow import keras\n"
        "aug = keras.Sequential()\n"
        "aug.add(keras.layers.RandomFlip())\n"
        "aug.add(keras.layers.Rescaling(1 / 255))\n"
        "train_ds = train_ds.map(lambda x, y: (aug(x), y))\n"
    )
    assert facts.augmentation_in_model is False
    assert facts.augmentation_in_pipeline is True
    assert facts.augmentation_use_ref is not None and facts.augmentation_use_ref.line == 5


@pytest.mark.parametrize(
    "pipeline",
    [
        "train_ds = train_ds.map(lambda x, y: (data_augmentation(x, training=True), y))",
        "def augment(image, label):\n"
        "    return data_augmentation(image, training=True), label\n"
        "train_ds = train_ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)",
        "def augment(image, label):\n"
        "    return data_augmentation(image), label\n"
        "train_ds = train_ds.map(lambda a, b: augment(a, b))",
        "train_ds = train_ds.map(lambda x, y: (tf.keras.layers.RandomFlip()(x), y))",
    ],
)
def test_augmentation_in_pipeline(pipeline: str) -> None:
    facts = analyse(AUG, pipeline)
    assert facts.augmentation_in_pipeline is True
    assert facts.augmentation_in_model is False
    assert facts.augmentation_use_ref is not None
    assert facts.augmentation_use_ref.line == pipeline.count("\n") + 1


def test_lambda_parameter_is_not_the_model_tensor() -> None:
    facts = analyse(
        AUG,
        "inputs = tf.keras.Input(shape=(160, 160, 3))\nx = inputs\n",
        "train_ds = train_ds.map(lambda x, y: (data_augmentation(x), y))",
    )
    assert facts.augmentation_in_model is False
    assert facts.augmentation_in_pipeline is True


def test_augmentation_only_plotted_is_neither() -> None:
    facts = analyse(
        AUG,
        "for image, _ in train_dataset.take(1):\n"
        "    first_image = image[0]\n"
        "    augmented_image = data_augmentation(tf.expand_dims(first_image, 0))\n"
        "    plt.imshow(augmented_image[0] / 255)\n",
        "val_ds = val_ds.map(lambda x, y: (x / 255.0, y))",
    )
    assert facts.augmentation_layers == ["RandomFlip", "RandomRotation"]
    assert facts.augmentation_ref is not None and facts.augmentation_ref.cell == 0
    assert facts.augmentation_in_model is False
    assert facts.augmentation_in_pipeline is False
    assert facts.augmentation_use_ref is None


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (
            "from tensorflow.keras.layers.experimental.preprocessing import (\n"
            "    RandomFlip, RandomZoom)\n"
            "a = [RandomFlip('horizontal'), RandomZoom(0.1)]",
            ["RandomFlip", "RandomZoom"],
        ),
        (
            "import tensorflow as tf\n"
            "a = tf.keras.layers.experimental.preprocessing.RandomContrast(0.1)",
            ["RandomContrast"],
        ),
        (
            "from tensorflow.keras import layers\n"
            "a = layers.RandomTranslation(0.1, 0.1)\nb = layers.RandomTranslation(0.2, 0.2)\n"
            "c = layers.RandomBrightness(0.1)",
            ["RandomTranslation", "RandomBrightness"],
        ),
        ("import keras_cv\na = keras_cv.layers.RandAugment(value_range=(0, 255))", ["RandAugment"]),
        ("import tensorflow as tf\ninit = tf.keras.initializers.RandomNormal()", []),
        ("import tensorflow as tf\nimg = tf.image.random_flip_left_right(img)", []),
        ("import tensorflow as tf\n# aug = tf.keras.layers.RandomFlip()", []),
        ("class RandomFlip:\n    pass\naug = RandomFlip()", []),
    ],
)
def test_augmentation_layers_listed(code: str, expected: list[str]) -> None:
    facts = analyse(code)
    assert facts.augmentation_layers == expected
    assert (facts.augmentation_ref is not None) == bool(expected)


# --- pooling, Flatten, preprocess_input ------------------------------------------------


@pytest.mark.parametrize(
    ("code", "pooling", "flatten"),
    [
        ("g = tf.keras.layers.GlobalAveragePooling2D()", ["GlobalAveragePooling2D"], False),
        ("g = tf.keras.layers.GlobalAvgPool2D()", ["GlobalAveragePooling2D"], False),
        ("g = tf.keras.layers.GlobalMaxPooling2D()", ["GlobalMaxPooling2D"], False),
        ("g = tf.keras.layers.GlobalMaxPool2D()", ["GlobalMaxPooling2D"], False),
        ("f = tf.keras.layers.Flatten()", [], True),
        (
            "m = tf.keras.Sequential([tf.keras.layers.Flatten(), "
            "tf.keras.layers.GlobalAveragePooling2D()])",
            ["GlobalAveragePooling2D"],
            True,
        ),
        ("p = model.predict(x).flatten()", [], False),
        ("s = 'tf.keras.layers.GlobalAveragePooling2D()'", [], False),
    ],
)
def test_pooling_and_flatten(code: str, pooling: list[str], flatten: bool) -> None:
    facts = analyse(TF + code)
    assert facts.pooling_layers == pooling
    assert facts.flatten_used is flatten
    assert (facts.pooling_ref is not None) == bool(pooling)
    if pooling:
        assert facts.pooling_ref == CodeRef(0, 2, code)


def test_bare_pooling_name_imported_from_keras() -> None:
    facts = analyse("from keras.layers import GlobalAveragePooling2D as GAP\nx = GAP()(x)")
    assert facts.pooling_layers == ["GlobalAveragePooling2D"]


@pytest.mark.parametrize(
    ("code", "used"),
    [
        ("x = tf.keras.applications.mobilenet_v2.preprocess_input(x)", True),
        (
            "preprocess_input = tf.keras.applications.mobilenet_v2.preprocess_input\n"
            "x = preprocess_input(x)",
            True,
        ),
        (
            "from tensorflow.keras.applications.mobilenet_v2 import preprocess_input as pp\n"
            "x = pp(x)",
            True,
        ),
        (
            "from keras.applications import mobilenet_v2\n"
            "ds = ds.map(lambda x, y: (mobilenet_v2.preprocess_input(x), y))",
            True,
        ),
        (
            "layer = tf.keras.layers.Lambda(tf.keras.applications.mobilenet_v2.preprocess_input)",
            True,
        ),
        ("rescale = tf.keras.layers.Rescaling(1./127.5, offset=-1)", True),
        ("rescale = tf.keras.layers.Rescaling(scale=1 / 127.5, offset=-1.0)", True),
        ("rescale = tf.keras.layers.Rescaling(2 / 255, -1)", True),
        ("rescale = tf.keras.layers.Rescaling(1./255)", False),
        ("rescale = tf.keras.layers.Rescaling(1./127.5)", False),
        ("preprocess_input = tf.keras.applications.mobilenet_v2.preprocess_input", False),
        ("x = tf.keras.applications.resnet50.preprocess_input(x)", False),
        ("# x = tf.keras.applications.mobilenet_v2.preprocess_input(x)", False),
        ("def preprocess_input(x):\n    return x / 255\nx = preprocess_input(x)", False),
    ],
)
def test_preprocess_input_used(code: str, used: bool) -> None:
    assert analyse(TF + code).preprocess_input_used is used


# --- fit -------------------------------------------------------------------------------


def test_fit_refs_in_execution_order() -> None:
    facts = analyse(
        "history = model.fit(train_ds,\n                    epochs=10)\n",
        "# model.fit(again)\ntext = 'model.fit(x)'\n",
        "scaler.fit(X)\nmodel.fit(train_ds, epochs=20, initial_epoch=10)",
    )
    assert facts.fit_refs == [
        CodeRef(0, 1, "history = model.fit(train_ds,\n                    epochs=10)"),
        CodeRef(2, 1, "scaler.fit(X)"),
        CodeRef(2, 2, "model.fit(train_ds, epochs=20, initial_epoch=10)"),
    ]


# --- magics and unparsable cells -------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "code", "lines"),
    [
        ("!pip install x", "pass", [1]),
        ("%matplotlib inline\nimport os", "pass\nimport os", [1]),
        ("%pip install tensorflow\nimport os", "pass\nimport os", [1]),
        ("x = !ls\nfiles, y = %sx ls", "pass\npass", [1, 2]),
        ("%%capture\n!pip install x\nimport os", "pass\npass\nimport os", [1, 2]),
        ("\n%%time\nx = 1", "\npass\nx = 1", [2]),
        ("%%bash\necho hi\n\nls -l", "pass\npass\n\npass", [1, 2, 4]),
        ("%%writefile a.py\nimport os\ndef f(:", "pass\npass\npass", [1, 2, 3]),
        ("?len\nlen?\ntf.keras.layers??", "pass\npass\npass", [1, 2, 3]),
        ("for i in range(2):\n    !echo {i}\n", "for i in range(2):\n    pass\n", [2]),
        ("!pip install a \\\n    b\nimport os", "pass\npass\nimport os", [1, 2]),
        ("x = (1\n% 2)", "x = (1\n% 2)", []),
        ("s = '''\n!not magic\n%not magic\n'''", "s = '''\n!not magic\n%not magic\n'''", []),
        ("y = a % b\nz = a != b\nq = 1  # why?", "y = a % b\nz = a != b\nq = 1  # why?", []),
        ("x = [1,  # (\n]\n%time f()", "x = [1,  # (\n]\npass", [3]),
        ("'a = %d' % 3\nd['k'] = v", "'a = %d' % 3\nd['k'] = v", []),
        ("", "", []),
    ],
)
def test_neutralise_magics(source: str, code: str, lines: list[int]) -> None:
    assert neutralise_magics(source) == (code, lines)


def test_magics_are_reported_and_the_rest_is_analysed() -> None:
    facts = analyse(
        "!pip install -q tensorflow\n%matplotlib inline\nimport tensorflow as tf",
        "%%time\nbase = tf.keras.applications.MobileNetV2(include_top=False)",
        "%%bash\necho tf.keras.applications.MobileNetV2()",
    )
    assert facts.magic_lines == [
        CodeRef(0, 1, "!pip install -q tensorflow"),
        CodeRef(0, 2, "%matplotlib inline"),
        CodeRef(1, 1, "%%time"),
        CodeRef(2, 1, "%%bash"),
        CodeRef(2, 2, "echo tf.keras.applications.MobileNetV2()"),
    ]
    assert facts.unparsable_cells == []
    assert facts.base_calls == [
        CodeRef(1, 2, "base = tf.keras.applications.MobileNetV2(include_top=False)")
    ]


def test_unparsable_cell_is_skipped() -> None:
    facts = analyse(
        "import tensorflow as tf",
        "def broken(:\n    base.trainable = False",
        "base = tf.keras.applications.MobileNetV2(include_top=False)\nbase.trainable = False",
    )
    assert facts.unparsable_cells == [1]
    assert facts.include_top is False
    assert facts.frozen_before_fit is True
    assert facts.freeze_ref == CodeRef(2, 2, "base.trainable = False")


@pytest.mark.parametrize(
    "cells",
    [
        [],
        [""],
        ["# only a comment"],
        ["x = (" * 150 + ")" * 150],
        ["x = " + " + ".join(["a"] * 3000)],
        ["a = b\nb = a\nc = a.b.c(d)\nd = c"],
        ["import tensorflow as tf\nx = tf" + ".keras" * 3000 + ".MobileNetV2()"],
        ["def f():\n    return g()\ndef g():\n    return f()\nf()\nf.trainable = False"],
        ["def f():\n" + "    g(); g()\n" * 5 + "def g():\n" + "    f(); f()\n" * 5 + "f()\ng()"],
        [
            "import keras\n"
            + "".join(f"s{i + 1} = keras.Sequential([s{i}, s{i}])\n" for i in range(60))
        ],
        ["import tensorflow as tf\ntf.keras.applications.MobileNetV2(*a, **b)\nfor x in y:\n"],
        ["x = '\\d'\n\x00"],
    ],
)
def test_never_raises(cells: list[str]) -> None:
    facts = analyze_sources(list(enumerate(cells)))
    assert isinstance(facts, StaticFacts)


def test_crlf_sources_keep_line_numbers() -> None:
    facts = analyse("import tensorflow as tf\r\n\r\nb = tf.keras.applications.MobileNetV2()\r\n")
    assert facts.base_calls == [CodeRef(0, 3, "b = tf.keras.applications.MobileNetV2()")]
    assert facts.include_top is True


# --- notebooks with markdown -----------------------------------------------------------


def _notebook_dict() -> dict:
    return {
        "cells": [
            {"cell_type": "markdown", "source": "# Transfer learning\n`base.trainable = False`"},
            {"cell_type": "code", "source": ["import tensorflow as tf\n", "!nvidia-smi"]},
            {"cell_type": "markdown", "source": ["Build the base model:"]},
            {"cell_type": "raw", "source": "base.trainable = True"},
            {
                "cell_type": "code",
                "source": [
                    "IMG_SHAPE = (160, 160, 3)\n",
                    "base_model = tf.keras.applications.MobileNetV2(input_shape=IMG_SHAPE,\n",
                    "                                               include_top=False)\n",
                    "base_model.trainable = False",
                ],
            },
            {"cell_type": "markdown", "source": "Train it."},
            {"cell_type": "code", "source": "model.fit(train_ds)"},
        ]
    }


def test_notebook_dict_refs_count_markdown_cells() -> None:
    facts = analyze_notebook(_notebook_dict())
    assert facts.magic_lines == [CodeRef(1, 2, "!nvidia-smi")]
    assert facts.base_calls == [
        CodeRef(
            4,
            2,
            "base_model = tf.keras.applications.MobileNetV2(input_shape=IMG_SHAPE,\n"
            "                                               include_top=False)",
        )
    ]
    assert facts.freeze_ref == CodeRef(4, 4, "base_model.trainable = False")
    assert facts.frozen_before_fit is True
    assert facts.fit_refs == [CodeRef(6, 1, "model.fit(train_ds)")]


def test_nbformat_notebook_node() -> None:
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.from_dict(
        {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, **_notebook_dict()}
    )
    facts = analyze_notebook(nb)
    assert facts.base_names == ["base_model"]
    assert facts.freeze_ref is not None and facts.freeze_ref.cell == 4


# --- the TensorFlow tutorial -----------------------------------------------------------

TUTORIAL_CELLS = [
    """\
    import matplotlib.pyplot as plt
    import numpy as np
    import os
    import tensorflow as tf
    """,
    """\
    _URL = 'https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip'
    path_to_zip = tf.keras.utils.get_file('cats_and_dogs.zip', origin=_URL, extract=True)
    PATH = os.path.join(os.path.dirname(path_to_zip), 'cats_and_dogs_filtered')

    train_dir = os.path.join(PATH, 'train')
    validation_dir = os.path.join(PATH, 'validation')

    BATCH_SIZE = 32
    IMG_SIZE = (160, 160)

    train_dataset = tf.keras.utils.image_dataset_from_directory(train_dir,
                                                                shuffle=True,
                                                                batch_size=BATCH_SIZE,
                                                                image_size=IMG_SIZE)
    validation_dataset = tf.keras.utils.image_dataset_from_directory(validation_dir,
                                                                     shuffle=True,
                                                                     batch_size=BATCH_SIZE,
                                                                     image_size=IMG_SIZE)
    """,
    """\
    class_names = train_dataset.class_names

    plt.figure(figsize=(10, 10))
    for images, labels in train_dataset.take(1):
      for i in range(9):
        ax = plt.subplot(3, 3, i + 1)
        plt.imshow(images[i].numpy().astype("uint8"))
        plt.title(class_names[labels[i]])
        plt.axis("off")
    """,
    """\
    val_batches = tf.data.experimental.cardinality(validation_dataset)
    test_dataset = validation_dataset.take(val_batches // 5)
    validation_dataset = validation_dataset.skip(val_batches // 5)

    AUTOTUNE = tf.data.AUTOTUNE

    train_dataset = train_dataset.prefetch(buffer_size=AUTOTUNE)
    validation_dataset = validation_dataset.prefetch(buffer_size=AUTOTUNE)
    test_dataset = test_dataset.prefetch(buffer_size=AUTOTUNE)
    """,
    """\
    data_augmentation = tf.keras.Sequential([
      tf.keras.layers.RandomFlip('horizontal'),
      tf.keras.layers.RandomRotation(0.2),
    ])
    """,
    """\
    for image, _ in train_dataset.take(1):
      plt.figure(figsize=(10, 10))
      first_image = image[0]
      for i in range(9):
        ax = plt.subplot(3, 3, i + 1)
        augmented_image = data_augmentation(tf.expand_dims(first_image, 0))
        plt.imshow(augmented_image[0] / 255)
        plt.axis('off')
    """,
    """\
    preprocess_input = tf.keras.applications.mobilenet_v2.preprocess_input
    rescale = tf.keras.layers.Rescaling(1./127.5, offset=-1)
    """,
    """\
    # Create the base model from the pre-trained model MobileNet V2
    IMG_SHAPE = IMG_SIZE + (3,)
    base_model = tf.keras.applications.MobileNetV2(input_shape=IMG_SHAPE,
                                                   include_top=False,
                                                   weights='imagenet')
    """,
    """\
    image_batch, label_batch = next(iter(train_dataset))
    feature_batch = base_model(image_batch)
    print(feature_batch.shape)
    """,
    """\
    base_model.trainable = False
    """,
    """\
    base_model.summary()
    """,
    """\
    global_average_layer = tf.keras.layers.GlobalAveragePooling2D()
    feature_batch_average = global_average_layer(feature_batch)
    print(feature_batch_average.shape)
    """,
    """\
    prediction_layer = tf.keras.layers.Dense(1, activation='sigmoid')
    prediction_batch = prediction_layer(feature_batch_average)
    print(prediction_batch.shape)
    """,
    """\
    inputs = tf.keras.Input(shape=(160, 160, 3))
    x = data_augmentation(inputs)
    x = preprocess_input(x)
    x = base_model(x, training=False)
    x = global_average_layer(x)
    x = tf.keras.layers.Dropout(0.2)(x)
    outputs = prediction_layer(x)
    model = tf.keras.Model(inputs, outputs)
    """,
    """\
    tf.keras.utils.plot_model(model, show_shapes=True)
    """,
    """\
    base_learning_rate = 0.0001
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=base_learning_rate),
                  loss=tf.keras.losses.BinaryCrossentropy(),
                  metrics=[tf.keras.metrics.BinaryAccuracy(threshold=0.5, name='accuracy')])
    """,
    """\
    initial_epochs = 10

    loss0, accuracy0 = model.evaluate(validation_dataset)
    """,
    """\
    history = model.fit(train_dataset,
                        epochs=initial_epochs,
                        validation_data=validation_dataset)
    """,
    """\
    acc = history.history['accuracy']
    val_acc = history.history['val_accuracy']
    plt.plot(acc, label='Training Accuracy')
    plt.show()
    """,
    """\
    base_model.trainable = True
    print("Number of layers in the base model: ", len(base_model.layers))

    # Fine-tune from this layer onwards
    fine_tune_at = 100

    # Freeze all the layers before the `fine_tune_at` layer
    for layer in base_model.layers[:fine_tune_at]:
      layer.trainable = False
    """,
    """\
    model.compile(loss=tf.keras.losses.BinaryCrossentropy(),
                  optimizer=tf.keras.optimizers.RMSprop(learning_rate=base_learning_rate/10),
                  metrics=[tf.keras.metrics.BinaryAccuracy(threshold=0.5, name='accuracy')])
    """,
    """\
    fine_tune_epochs = 10
    total_epochs =  initial_epochs + fine_tune_epochs

    history_fine = model.fit(train_dataset,
                             epochs=total_epochs,
                             initial_epoch=len(history.epoch),
                             validation_data=validation_dataset)
    """,
    """\
    loss, accuracy = model.evaluate(test_dataset)
    image_batch, label_batch = test_dataset.as_numpy_iterator().next()
    predictions = model.predict_on_batch(image_batch).flatten()
    predictions = tf.nn.sigmoid(predictions)
    predictions = tf.where(predictions < 0.5, 0, 1)
    """,
]


def test_tensorflow_tutorial() -> None:
    cells: list[dict] = []
    for source in TUTORIAL_CELLS:
        cells.append({"cell_type": "markdown", "source": "Some explanation."})
        cells.append({"cell_type": "code", "source": textwrap.dedent(source)})
    facts = analyze_notebook({"cells": cells})
    assert facts.unparsable_cells == [] and facts.magic_lines == []
    assert facts.include_top is False
    assert facts.include_top_ref is not None and facts.include_top_ref.cell == 2 * 7 + 1
    assert facts.include_top_ref.line == 3
    assert facts.base_pooling is None
    assert facts.base_names == ["base_model"]
    assert facts.frozen_before_fit is True
    assert facts.freeze_ref == CodeRef(2 * 9 + 1, 1, "base_model.trainable = False")
    assert facts.augmentation_layers == ["RandomFlip", "RandomRotation"]
    assert facts.augmentation_ref is not None and facts.augmentation_ref.cell == 2 * 4 + 1
    assert facts.augmentation_in_model is True
    assert facts.augmentation_in_pipeline is False
    assert facts.augmentation_use_ref == CodeRef(2 * 13 + 1, 2, "x = data_augmentation(inputs)")
    assert facts.pooling_layers == ["GlobalAveragePooling2D"]
    assert facts.pooling_ref is not None and facts.pooling_ref.cell == 2 * 11 + 1
    assert facts.flatten_used is False
    assert facts.preprocess_input_used is True
    assert [(ref.cell, ref.line) for ref in facts.fit_refs] == [(2 * 17 + 1, 1), (2 * 21 + 1, 4)]


def test_another_pretrained_base_is_named_once_each_in_order() -> None:
    facts = analyse(
        "from tensorflow.keras.applications import InceptionV3",
        "import tensorflow as tf\nscratch = tf.keras.applications.VGG16(weights=None)",
        "base = InceptionV3(include_top=False)\n"
        "x = tf.keras.applications.inception_v3.preprocess_input(x)",
    )
    assert facts.other_bases == ["VGG16", "InceptionV3"]
    assert facts.base_calls == [] and facts.include_top is None
    assert analyse(BASE).other_bases == []


# --- through the student's own functions ------------------------------------------------

AUGMENTER = TF + (
    "def data_augmenter():\n"
    "    augment = tf.keras.Sequential()\n"
    "    augment.add(tf.keras.layers.RandomFlip('horizontal'))\n"
    "    augment.add(tf.keras.layers.RandomRotation(0.2))\n"
    "    return augment\n"
)
BUILDER = (
    "def build(shape=(160, 160, 3), augment={default}):\n"
    "    base = tf.keras.applications.MobileNetV2(input_shape=shape, include_top=False)\n"
    "    base.trainable = False\n"
    "    inputs = tf.keras.Input(shape=shape)\n"
    "    x = augment(inputs)\n"
    "    x = base(x, training=False)\n"
    "    x = tf.keras.layers.GlobalAveragePooling2D()(x)\n"
    "    return tf.keras.Model(inputs, tf.keras.layers.Dense(1)(x))\n"
)


@pytest.mark.parametrize(
    ("default", "call"),
    [
        ("data_augmenter()", "build()"),  # the parameter's default
        ("None", "build((160, 160, 3), data_augmenter())"),  # passed by position
        ("None", "build(augment=data_augmenter())"),  # by keyword
        ("None", "layers = data_augmenter()\nmodel = build(augment=layers)"),
    ],
)
def test_augmentation_through_a_function_and_its_parameter(default: str, call: str) -> None:
    """The DeepLearning.AI shape: augmentation returned by one function, handed to the
    one that builds the model as a parameter."""
    model = call if "model =" in call else f"model = {call}"
    facts = analyse(AUGMENTER, BUILDER.format(default=default), model + "\nmodel.fit(ds)")
    assert facts.augmentation_in_model and facts.frozen_before_fit
    assert facts.include_top is False and facts.pooling_layers == ["GlobalAveragePooling2D"]


def test_a_parameter_never_given_augmentation_is_not_augmentation() -> None:
    facts = analyse(AUGMENTER, BUILDER.format(default="None"), "model = build()\nmodel.fit(ds)")
    assert not facts.augmentation_in_model


@pytest.mark.parametrize(
    ("demo", "top"),
    [
        ("demo = tf.keras.applications.MobileNetV2(include_top=True)\n", False),
        ("", False),
    ],
)
def test_include_top_is_read_from_the_base_the_fit_trains(demo: str, top: bool) -> None:
    """A demo of the full ImageNet network built first is not the model trained."""
    facts = analyse(TF + demo, BUILDER.format(default="None"), "m = build()\nm.fit(ds)")
    assert facts.include_top is top and len(facts.base_calls) == (2 if demo else 1)
    assert "include_top=False" in (facts.include_top_ref.text if facts.include_top_ref else "")


def test_the_trained_base_is_found_through_added_layers() -> None:
    facts = analyse(
        TF + "shown = tf.keras.applications.MobileNetV2(include_top=True)\n",
        TF + "from tensorflow.keras.applications import MobileNetV2 as Backbone\n"
        "backbone = Backbone(include_top=False)\n"
        "model = tf.keras.Sequential()\nmodel.add(backbone)\nmodel.fit(ds)",
    )
    assert facts.include_top is False


def test_the_trained_model_keeping_its_top_is_still_read_as_such() -> None:
    facts = analyse(
        TF + "extractor = tf.keras.applications.MobileNetV2(include_top=False)\n",
        TF + "full = tf.keras.applications.MobileNetV2(include_top=True)\n"
        "model = tf.keras.Sequential([full, tf.keras.layers.Dense(1)])\nmodel.fit(ds)",
    )
    assert facts.include_top is True


SEQ_OF = "tf.keras.Sequential([{aug}, base, tf.keras.layers.Dense(1)])"


@pytest.mark.parametrize(
    "code",
    [
        # every call overrides the default: the default never reaches the model
        "def build(aug=data_augmenter()):\n    return " + SEQ_OF.format(aug="aug") + "\n"
        "build(aug=None).fit(ds)",
        # one branch returns nothing
        "def maybe(flag):\n    if flag:\n        return data_augmenter()\n    return None\n"
        + SEQ_OF.format(aug="maybe(False)")
        + ".fit(ds)",
        # a nested def's parameter is its own, not the enclosing function's
        "def build(aug):\n    def helper(aug=data_augmenter()):\n        return aug\n"
        "    return " + SEQ_OF.format(aug="aug") + "\nbuild(None).fit(ds)",
        # a method is not a module-level function
        "class A:\n    def make(self):\n        return data_augmenter()\n"
        + SEQ_OF.format(aug="make()")
        + ".fit(ds)",
    ],
    ids=["overridden_default", "branch_returns_none", "nested_param", "method_name"],
)
def test_what_does_not_reach_the_model_is_not_augmentation(code: str) -> None:
    assert not analyse(AUGMENTER, BASE, code).augmentation_in_model


@pytest.mark.parametrize(
    ("calls", "frozen"),
    [
        ("freeze(base)\nmodel.fit(ds)", True),
        ("freeze(tf.keras.layers.Dense(3))\nmodel.fit(ds)\nfreeze(base)", False),
        ("model.fit(ds)\nfreeze(base)", False),
    ],
)
def test_a_freezing_helper_counts_at_the_call_that_passes_the_base(
    calls: str, frozen: bool
) -> None:
    code = "def freeze(m):\n    m.trainable = False\nmodel = tf.keras.Sequential([base])\n"
    assert analyse(BASE, code + calls).frozen_before_fit is frozen


def test_a_freezing_helpers_default_base_counts_only_where_a_call_leaves_it_out() -> None:
    helper = "def freeze(m=base):\n    m.trainable = False\nmodel = tf.keras.Sequential([base])\n"
    assert not analyse(
        BASE, helper + "freeze(tf.keras.layers.Dense(1))\nmodel.fit(ds)"
    ).frozen_before_fit
    assert analyse(BASE, helper + "freeze()\nmodel.fit(ds)").frozen_before_fit


@pytest.mark.parametrize(
    "trained",
    [
        # the first fit is an ImageDataGenerator's: the model's fit comes later
        "gen = tf.keras.preprocessing.image.ImageDataGenerator()\ngen.fit(x)\n"
        "model = tf.keras.Sequential([good, tf.keras.layers.Dense(1)])\nmodel.fit(ds)",
        # a def that is never called trains nothing
        "def demo():\n    full.fit(x)\n"
        "model = tf.keras.Sequential([good, tf.keras.layers.Dense(1)])\nmodel.fit(ds)",
        # reading another base's shape does not build on it
        "inputs = tf.keras.Input(shape=full.input_shape[1:])\n"
        "tf.keras.Model(inputs, tf.keras.layers.Dense(1)(good(inputs))).fit(ds)",
    ],
    ids=["generator_fit_first", "uncalled_def", "shape_read"],
)
def test_the_trained_base_is_the_one_the_model_is_built_from(trained: str) -> None:
    bases = TF + (
        "full = tf.keras.applications.MobileNetV2(include_top=True)\n"
        "good = tf.keras.applications.MobileNetV2(include_top=False)\n"
    )
    assert analyse(bases, trained).include_top is False


@pytest.mark.parametrize("calls", [1, 2, 3])
def test_recursive_helpers_are_read_in_bounded_time(calls: int) -> None:
    """A function calling itself twice doubled the work per level (past 100 s at two)."""
    body = "".join(f"    walk(m, n - {i + 1})\n" for i in range(calls))
    code = "def walk(m, n):\n    if n <= 0:\n        m.trainable = False\n        return\n"
    code += body + "head = tf.keras.layers.Dense(1)\nwalk(head, 3)\n"
    code += "model = tf.keras.Sequential([base, head])\nmodel.fit(ds)"
    started = time.monotonic()
    facts = analyse(BASE, code)
    assert not facts.frozen_before_fit and time.monotonic() - started < 10
