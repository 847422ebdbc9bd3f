"""The Keras names the checks recognise, written once.

Both sides of a structural check read these: static analysis (:mod:`grader.static.facts`)
finds the classes in the code, the runtime checks (:mod:`grader.checks.structural`) find
them in the model tree the probe recorded. One set each, so that what counts as data
augmentation or a pooling head in the code is what counts in the trained model.
"""

from __future__ import annotations

KERAS_ROOTS = frozenset({"tensorflow", "keras", "tf_keras", "keras_core", "keras_cv"})
"""Top-level modules a Keras class can be imported from."""
IMPLICIT_ALIASES = {"tf": "tensorflow"}
"""Names a notebook commonly uses without importing them under that name."""

BASE_CLASS = "MobileNetV2"
"""The pretrained convolutional base of the assignment."""
APPLICATIONS_MODULE = "applications"
"""Keras's module of pretrained bases: a class called from it that is not
:data:`BASE_CLASS` (``InceptionV3``, ``VGG16``, ...) is another base, named in verdicts."""
BASE_MARKERS = frozenset({"Conv1", "out_relu"})
"""Layer names that mark a MobileNetV2 base in a model tree: its first and last layers."""
TOP_LAYER = "predictions"
"""The name of the ImageNet classifier layer a base keeps with ``include_top=True``."""
IMAGENET_CLASSES = 1000
"""Units of that classifier."""

POOLING_CLASSES = {
    "GlobalAveragePooling2D": "GlobalAveragePooling2D",
    "GlobalAvgPool2D": "GlobalAveragePooling2D",
    "GlobalMaxPooling2D": "GlobalMaxPooling2D",
    "GlobalMaxPool2D": "GlobalMaxPooling2D",
}
"""Global pooling layers (a pooling head), each alias mapped to its canonical name."""

AUGMENTATION_PREFIX = "Random"
"""Keras's random augmentation layers: ``RandomFlip``, ``RandomRotation``, ..."""
AUGMENTATION_CLASSES = frozenset({"RandAugment", "AugMix", "MixUp", "CutMix", "Solarization"})
"""Augmentation layers whose names do not start with :data:`AUGMENTATION_PREFIX`."""

PREPROCESSING_CLASSES = frozenset(
    {"Input", "InputLayer", "Rescaling", "Resizing", "CenterCrop", "Normalization", "Lambda"}
)
"""Layers that prepare the input: neither augmentation nor part of the model proper."""
INPUT_CLASS = "Input"
SEQUENTIAL_CLASS = "Sequential"
FLATTEN_CLASS = "Flatten"
RESCALING_CLASS = "Rescaling"
PREPROCESS_FUNCTION = "preprocess_input"
PREPROCESS_MODULES = frozenset({"mobilenet_v2", "mobilenet"})
"""Modules whose ``preprocess_input`` maps pixels as MobileNetV2 expects."""

CROSSENTROPY_LOSSES = frozenset(
    {
        "binary_crossentropy",
        "categorical_crossentropy",
        "sparse_categorical_crossentropy",
        "binary_focal_crossentropy",
        "categorical_focal_crossentropy",
    }
)
"""Losses Keras takes by name (``loss="binary_crossentropy"``, or its class's name): by
name they read the outputs as probabilities (``from_logits=False``)."""
ACCURACY_METRICS = ("accuracy", "binary_accuracy", "acc", "compile_metrics")
"""Metric names an accuracy figure is recorded under, in order of preference."""


GENERATOR_CLASS = "ImageDataGenerator"
"""Keras's legacy image generator: augmentation when given one of :data:`GENERATOR_AUGMENTS`."""
GENERATOR_AUGMENTS = frozenset(
    {
        "rotation_range",
        "width_shift_range",
        "height_shift_range",
        "shear_range",
        "zoom_range",
        "horizontal_flip",
        "vertical_flip",
        "brightness_range",
        "channel_shift_range",
    }
)
GENERATOR_FLOWS = frozenset({"flow", "flow_from_directory", "flow_from_dataframe"})
"""A generator's methods that make the batches ``fit`` trains on."""


def is_augmentation_class(name: str) -> bool:
    """Whether a Keras layer class is a data augmentation layer."""
    return name.startswith(AUGMENTATION_PREFIX) or name in AUGMENTATION_CLASSES


def is_augmentation_call(parts: list[str] | None) -> bool:
    """Whether a resolved dotted name (``tf.keras.layers.RandomFlip``) is an augmentation layer."""
    if not parts or "layers" not in parts:
        return False
    return is_augmentation_class(parts[-1])


def is_other_base(parts: list[str]) -> bool:
    """A class of Keras's applications that is not the assignment's base."""
    return APPLICATIONS_MODULE in parts[:-1] and parts[-1][:1].isupper() and parts[-1] != BASE_CLASS
