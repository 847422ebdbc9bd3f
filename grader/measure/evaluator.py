"""The trusted evaluator: measures a saved model on the hidden holdout split.

Runs in its own process (it imports TensorFlow; the orchestrator never does):
``python -m grader.measure.evaluator --serve HOLDOUT`` imports TensorFlow and decodes the
holdout once, then answers one JSON request per line on stdin until stdin closes.
:class:`grader.measure.client.EvaluatorProcess` drives it: it is started while the
student's notebook is still running, so TensorFlow's import and the holdout's
decoding cost the student nothing, and a batch worker keeps it for every student it
grades.

The model is loaded with ``safe_mode=True``, so a Lambda layer or any other serialized
code in a student's file is refused rather than run; nothing is unpickled. Before Keras
reads it, the archive's members are checked (:func:`archive_problem`): a small file whose
config unpacks to tens of megabytes is refused, as is an input larger than
:data:`MAX_SIDE` (the holdout is decoded at the model's input size). The client kills
an evaluator that grows past its memory limit or overruns its time. Between
models the Keras session is cleared. The holdout folder is never visible to a
student's kernel.
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from pathlib import Path
from typing import Any

from grader.kit.assets import KIT_SIDE
from grader.measure.weights import ShippedBase, base_and_moved, has_imagenet_top

BATCH_SIZE = 32
DEFAULT_SIDE = KIT_SIDE
"""The size a model whose input does not say one is measured at: the kit's own."""
TRACE_FROM_BATCHES = 3
"""Measure with a traced step from this many batches on: tracing costs about a second
more than one eager batch and saves about half a second on each later one."""
MAX_SIDE = 448
"""Larger model inputs are not measured: the holdout is decoded at the model's input size
(320 images at 448 px take 0.8 GB as floats; at 1024 px a 16 KB model took 10 GB)."""
MAX_CONFIG_BYTES = 4 * 2**20
"""A saved model's ``config.json`` may unpack to this much (MobileNetV2 with a head: about
0.2 MB); one of 60 MB from a 61 KB file took the evaluator from 1.1 to 2.6 GB."""
MAX_UNPACKED_BYTES = 1024 * 2**20
MAX_MEMBERS = 64
SERVE_FLAG = "--serve"
ANSWER_PREFIX = "GRADER-EVALUATOR "
"""Marks the answer line: anything else a library prints on stdout is ignored."""


def _output_rule(model: Any, hint: str | None = None) -> str:
    """How to read the model's outputs: ``logit``, ``probability`` or ``argmax``.

    ``hint`` comes from the loss the student compiled with (``from_logits``); without
    it, the last layer's activation decides.
    """
    units = int(model.outputs[0].shape[-1] or 1)
    if units > 1:
        return "argmax"
    if hint in ("logit", "probability"):
        return hint
    activation = getattr(model.layers[-1], "activation", None)
    name = getattr(activation, "__name__", str(activation))
    return "probability" if name == "sigmoid" else "logit"


def _input_side(model: Any) -> tuple[int, int]:
    shape = model.inputs[0].shape
    rows, cols = shape[1], shape[2]
    return (int(rows or DEFAULT_SIDE), int(cols or DEFAULT_SIDE))


def _predictor(model: Any, batches: list[tuple[Any, Any]]) -> Any:
    """The model's inference step: traced once when there are enough batches to repay
    the tracing (TensorFlow then fuses convolutions, batch norms and activations, about
    twice as fast as eager); eager for a batch or two, or if the model cannot be traced."""

    def eager(images: Any) -> Any:
        return model(images, training=False)

    if len(batches) < TRACE_FROM_BATCHES:
        return eager
    import tensorflow as tf

    images = batches[0][0]  # any batch size, so a short last batch is not traced again
    signature = [tf.TensorSpec((None, *images.shape[1:]), tf.as_dtype(images.dtype))]
    traced: Any = tf.function(eager, input_signature=signature)

    def predict(images: Any) -> Any:
        nonlocal traced
        if traced is not None:
            try:
                return traced(images)
            except Exception:  # measured eagerly instead
                traced = None
        return eager(images)

    return predict


class Holdout:
    """The holdout images, decoded once per input size; the usual size is kept, another
    only until a third is asked for (a student's model decides the size)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._images: dict[tuple[int, int], tuple[Any, Any]] = {}

    def batches(self, side: tuple[int, int], limit: int = 0) -> list[tuple[Any, Any]]:
        """Batches of (images, labels); ``limit`` images spread evenly when not 0."""
        import numpy as np

        if side not in self._images:
            import keras

            for other in [s for s in self._images if s != (DEFAULT_SIDE, DEFAULT_SIDE)]:
                del self._images[other]
            data = keras.utils.image_dataset_from_directory(
                self.folder, image_size=side, batch_size=BATCH_SIZE, shuffle=False, verbose=False
            )
            parts = [(images.numpy(), labels.numpy()) for images, labels in data]
            self._images[side] = (
                np.concatenate([p[0] for p in parts]),
                np.concatenate([p[1] for p in parts]),
            )
        images, labels = self._images[side]
        if 0 < limit < len(labels):  # every k-th image: all classes keep their share
            chosen = np.linspace(0, len(labels) - 1, limit).round().astype(int)
            images, labels = images[chosen], labels[chosen]
        return [
            (images[i : i + BATCH_SIZE], labels[i : i + BATCH_SIZE])
            for i in range(0, len(labels), BATCH_SIZE)
        ]


def measure(
    holdout: Path | Holdout,
    model_path: Path,
    hint: str | None = None,
    limit: int = 0,
    shipped: ShippedBase | None = None,
) -> dict[str, Any]:
    """Accuracy of the model on the holdout images (``limit`` of them when not 0), or
    the reason it could not be measured; with ``shipped``, whether its base still has the
    shipped weights (``base``); for a loss that reads probabilities, the share of images
    whose outputs are not (``outside``)."""
    import keras

    images_of = holdout if isinstance(holdout, Holdout) else Holdout(holdout)
    problem = archive_problem(model_path)
    if problem is not None:
        return {"accuracy": None, "error": problem}
    try:
        model = keras.saving.load_model(model_path, safe_mode=True, compile=False)
    except Exception as exc:  # any refusal is reported, never raised
        return {"accuracy": None, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    shape = tuple(model.inputs[0].shape) if model.inputs else ()
    if len(shape) != 4:
        return {"accuracy": None, "error": f"the model's input {shape} is not a batch of images"}
    rule, side = _output_rule(model, hint), _input_side(model)
    if max(side) > MAX_SIDE:
        return {"accuracy": None, "error": f"the model's input is {side}: over {MAX_SIDE} px"}
    base, moved = base_and_moved(model, shipped, side)
    batches = images_of.batches(side, limit)
    correct, total, outside = _count(_predictor(model, batches), batches, rule, hint)
    return {
        "accuracy": correct / total if total else None,
        "images": total,
        "rule": rule,
        "outside": outside / total if total and hint == "probability" else None,
        "base": base,
        "base_moved": moved,
        "top": has_imagenet_top(model),
        "side": list(side),
        "error": None,
    }


PROBABILITY_SLACK = 1e-3
"""How far outside 0-1 a probability may sit: float rounding (half precision included)."""


def not_probabilities(outputs: Any) -> Any:
    """Per image, whether its outputs cannot be probabilities: a value outside 0-1 (or not
    a number). A loss that reads outputs as probabilities (``from_logits=False``) clips
    such values and learns nothing from them. Rows need not sum to 1: Keras's categorical
    losses normalise them, and a sigmoid per unit or half precision leaves them off 1."""
    import numpy as np

    rows = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
    bad = ((rows < -PROBABILITY_SLACK) | (rows > 1 + PROBABILITY_SLACK)).any(axis=1)
    return bad | ~np.isfinite(rows).all(axis=1)


def _count(
    predict: Any, batches: list[tuple[Any, Any]], rule: str, hint: str | None
) -> tuple[int, int, int]:
    """Images classified right, images measured, and (for a loss that reads probabilities)
    images whose outputs are not probabilities."""
    import numpy as np

    correct = total = outside = 0
    for images, labels in batches:
        outputs = np.asarray(predict(images))
        if rule == "argmax":
            predicted = outputs.argmax(axis=-1)
        else:
            predicted = outputs.reshape(-1) > (0.5 if rule == "probability" else 0.0)
        correct += int((predicted.astype(int) == labels).sum())
        total += int(labels.shape[0])
        if hint == "probability":
            outside += int(not_probabilities(outputs).sum())
    return correct, total, outside


def archive_problem(path: Path) -> str | None:
    """Why a ``.keras`` file is refused before Keras reads it (None: it may be loaded).
    The sizes are the archive's own declarations, which :mod:`zipfile` also holds reads to."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        return f"the saved model is not a .keras archive ({type(exc).__name__})"
    config = sum(m.file_size for m in members if m.filename == "config.json")
    if len(members) > MAX_MEMBERS:
        return f"the saved model's archive has {len(members)} members (over {MAX_MEMBERS})"
    if config > MAX_CONFIG_BYTES:
        return f"the saved model's config unpacks to {config / 2**20:.0f} MB (over 4 MB)"
    if sum(m.file_size for m in members) > MAX_UNPACKED_BYTES:
        return "the saved model unpacks to more than 1024 MB"
    return None


def serve(holdout_folder: Path) -> int:
    """Answer ``{"model": PATH, "hint": ..., "limit": N, "weights": DIR}`` lines until
    stdin closes (``weights``: the Keras cache's ``models/`` folder the base came from)."""
    import keras

    holdout = Holdout(holdout_folder)
    shipped: dict[str, ShippedBase] = {}
    holdout.batches((DEFAULT_SIDE, DEFAULT_SIDE))  # the usual size, decoded while waiting
    for line in sys.stdin:
        try:
            request = json.loads(line)
            weights = request.get("weights")
            if weights is not None and weights not in shipped:
                shipped[weights] = ShippedBase(Path(weights))
            answer = measure(
                holdout,
                Path(request["model"]),
                request.get("hint"),
                request.get("limit", 0),
                shipped.get(weights) if weights is not None else None,
            )
        except Exception as exc:  # a bad request is answered, never fatal
            answer = {"accuracy": None, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        finally:
            keras.backend.clear_session()
        sys.stdout.write("\n" + ANSWER_PREFIX + json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


def main(argv: list[str]) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if len(argv) != 2 or argv[0] != SERVE_FLAG:
        sys.stderr.write(f"usage: python -m grader.measure.evaluator {SERVE_FLAG} HOLDOUT\n")
        return 2
    return serve(Path(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
