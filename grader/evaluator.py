"""The trusted evaluator: measures a saved model on the hidden holdout split.

Runs in its own process (it imports TensorFlow; the orchestrator never does):
``python -m grader.evaluator HOLDOUT MODEL.keras`` prints one JSON object. The model
is loaded with ``safe_mode=True``, so a Lambda layer or any other serialized code in
a student's file is refused rather than run; nothing is unpickled. The holdout folder
is never visible to a student's kernel.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

BATCH_SIZE = 32
DEFAULT_SIDE = 160


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


def measure(holdout: Path, model_path: Path, hint: str | None = None) -> dict[str, Any]:
    """Accuracy of the model on the holdout images, or the reason it could not be measured."""
    import keras
    import numpy as np

    try:
        model = keras.saving.load_model(model_path, safe_mode=True, compile=False)
    except Exception as exc:  # noqa: BLE001 - any refusal is reported, never raised
        return {"accuracy": None, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    data = keras.utils.image_dataset_from_directory(
        holdout,
        image_size=_input_side(model),
        batch_size=BATCH_SIZE,
        shuffle=False,
        verbose=False,
    )
    rule = _output_rule(model, hint)
    correct = total = 0
    for images, labels in data:
        outputs = np.asarray(model(images, training=False))
        if rule == "argmax":
            predicted = outputs.argmax(axis=-1)
        else:
            predicted = outputs.reshape(-1) > (0.5 if rule == "probability" else 0.0)
        correct += int((predicted.astype(int) == labels.numpy()).sum())
        total += int(labels.shape[0])
    return {
        "accuracy": correct / total if total else None,
        "images": total,
        "rule": rule,
        "error": None,
    }


def main(argv: list[str]) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    holdout, model_path = Path(argv[0]), Path(argv[1])
    result = measure(holdout, model_path, argv[2] if len(argv) > 2 else None)
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


# --- orchestrator side (no TensorFlow imported here) ---------------------------------

MSG_NO_HOLDOUT = "no holdout split configured"
MSG_EVALUATOR_FAILED = "the evaluator failed: {detail}"


def evaluate_in_subprocess(
    model_path: Path, holdout: Path | None, timeout_s: float = 300.0, hint: str | None = None
) -> dict[str, Any]:
    """Run :func:`measure` in a fresh trusted process; never raises for a bad model."""
    import subprocess

    if holdout is None or not holdout.is_dir():
        return {"accuracy": None, "error": MSG_NO_HOLDOUT}
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERAS_")}
    env.update({"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONHASHSEED": "0", "CUDA_VISIBLE_DEVICES": ""})
    command = [sys.executable, "-m", "grader.evaluator", str(holdout), str(model_path)]
    command += [hint] if hint else []
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return {"accuracy": None, "error": MSG_EVALUATOR_FAILED.format(detail="timed out")}
    lines = proc.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
        return {"accuracy": None, "error": MSG_EVALUATOR_FAILED.format(detail=detail)}


def output_hint(events: list[dict[str, Any]]) -> str | None:
    """``logit`` or ``probability`` from the last compile's loss, when the probe saw it."""
    for event in reversed(events):
        if event.get("event") == "compile":
            from_logits = (event.get("loss") or {}).get("from_logits")
            if from_logits is None:
                return None
            return "logit" if from_logits else "probability"
    return None
