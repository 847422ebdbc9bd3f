"""The saved model's base against the weights it shipped with, read by the evaluator.

Whether a model still holds MobileNetV2 as the kit (or a course's Keras cache) ships it
decides what the student is compared with: an unchanged base is a head-only solution,
compared with the reference before fine-tuning. Decided from the saved weights alone,
whatever the notebook's records claim. Runs in the evaluator's process (it imports Keras).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from grader.checks.measured import BASE_CHANGED, BASE_UNCHANGED
from grader.static.keras_names import IMAGENET_CLASSES, TOP_LAYER

WEIGHTS_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"
"""The base's weight file, as Keras names it in its cache (the kit's, or a course's)."""
KERAS_ROWS = (96, 128, 160, 192, 224)
"""Input sizes Keras ships MobileNetV2 weights for; any other size loads the 224 file."""
CONVOLUTION = "Conv"
"""A layer class with this in its name learns features (Conv2D, DepthwiseConv2D, ...)."""
BASE_FOUND_SHARE = 0.9
"""The share of the shipped base's weighted layers a model must hold to hold the base."""


class ShippedBase:
    """The base's weights as shipped in a Keras cache's ``models/`` folder, per layer
    name, read once per file."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._layers: dict[Path, dict[str, list[Any]]] = {}

    def layers(self, rows: int) -> dict[str, list[Any]] | None:
        if self.folder is None:
            return None
        path = self.folder / WEIGHTS_FILE.format(rows=rows if rows in KERAS_ROWS else 224)
        if path not in self._layers:
            if not path.is_file():
                return None
            import keras

            side = int(path.name.split("_")[-3])
            base = keras.applications.MobileNetV2(
                input_shape=(side, side, 3), include_top=False, weights=str(path)
            )
            self._layers[path] = {layer.name: layer.get_weights() for layer in base.layers}
            keras.backend.clear_session()
        return self._layers[path]


def _leaf_layers(layer: Any) -> list[Any]:
    children = getattr(layer, "layers", None)
    if isinstance(children, (list, tuple)) and children:
        return [leaf for child in children for leaf in _leaf_layers(child)]
    return [layer]


def base_state(model: Any, shipped: dict[str, list[Any]]) -> str | None:
    """``unchanged`` when the model holds the shipped base with the weights it shipped
    with and nothing else that learns features (the base never trained: a head-only
    solution); ``changed`` when it holds the base otherwise (fine-tuned, trained from the
    start, a layer of it missing, renamed or twice, a convolution of its own beside it);
    None when it does not hold that base. Decided from the saved weights alone, whatever
    the notebook claims; ``unchanged`` lowers the bar, so every doubt reads ``changed``."""
    expected = {name: weights for name, weights in shipped.items() if weights}
    seen: dict[str, int] = {}
    changed = False
    for layer in _leaf_layers(model):
        weights = expected.get(layer.name)
        if weights is None:
            changed = changed or (CONVOLUTION in type(layer).__name__ and bool(layer.weights))
            continue
        seen[layer.name] = seen.get(layer.name, 0) + 1
        changed = changed or not _same_weights(layer.get_weights(), weights)
    if not expected or len(seen) < BASE_FOUND_SHARE * len(expected):
        return None
    whole = len(seen) == len(expected) and all(count == 1 for count in seen.values())
    return BASE_UNCHANGED if whole and not changed else BASE_CHANGED


def has_imagenet_top(model: Any) -> bool:
    """Whether the saved model holds ImageNet's classifier: a 1000-way ``predictions``
    layer (``include_top=True``), whatever the records say."""
    return any(
        layer.name == TOP_LAYER and getattr(layer, "units", None) == IMAGENET_CLASSES
        for layer in _leaf_layers(model)
    )


def _same_weights(mine: list[Any], shipped: list[Any]) -> bool:
    import numpy as np

    return len(mine) == len(shipped) and all(
        a.shape == b.shape and np.array_equal(a, b) for a, b in zip(mine, shipped, strict=True)
    )


MOVED_DISTANCE = 0.5
"""A base whose every layer is within this relative distance of the shipped weights
(but not equal) was trained from them; farther, it came from elsewhere (``weights=None``)."""


def base_moved(model: Any, shipped: dict[str, list[Any]]) -> bool | None:
    """True when the model holds every weighted layer of the shipped base once, with the
    shipped shapes and dtypes, and training moved them (some differ, all stay near);
    False when it holds them all unchanged; None when it cannot tell (a layer missing or
    twice, another dtype, weights from elsewhere). Only True may refute a claim, so every
    doubt reads None."""
    import numpy as np

    expected = {name: weights for name, weights in shipped.items() if weights}
    found = [(leaf, expected[leaf.name]) for leaf in _leaf_layers(model) if leaf.name in expected]
    names = {leaf.name for leaf, _ in found}
    if not expected or len(found) != len(expected) or len(names) != len(found):
        return None
    moved = False
    for layer, weights in found:
        mine = layer.get_weights()
        if len(mine) != len(weights) or any(
            a.shape != b.shape or a.dtype != b.dtype for a, b in zip(mine, weights, strict=True)
        ):
            return None
        for a, b in zip(mine, weights, strict=True):
            gap = float(np.linalg.norm(a - b))
            if gap > MOVED_DISTANCE * max(float(np.linalg.norm(b)), 1e-12):
                return None
            moved = moved or gap > 0
    return moved


def base_and_moved(
    model: Any, shipped: ShippedBase | None, side: tuple[int, int]
) -> tuple[str | None, bool | None]:
    """:func:`base_state` and :func:`base_moved` against the shipped file Keras would have
    loaded for this input (224 for a size it ships none for, or a non-square input)."""
    if shipped is None:
        return None, None
    try:
        layers = shipped.layers(side[0] if side[0] == side[1] else 224)
        return (base_state(model, layers), base_moved(model, layers)) if layers else (None, None)
    except Exception:  # a damaged weight file costs the comparison, never the measurement
        return None, None
