"""Build the offline asset kit (runs in its own process: it imports TensorFlow).

Run by :func:`grader.kit.assets.build_kit` as ``python -m grader.kit.build DEST``; the
orchestrating process never imports TensorFlow. Writes into DEST:

- ``keras_home/datasets/cats_and_dogs.zip``: the students' training and validation
  images, laid out like the course's ``cats_and_dogs_filtered.zip``;
- ``holdout/{cats,dogs}/``: the hidden holdout split, never inside a student's cache;
- ``keras_home/models/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}[_no_top].h5``:
  MobileNetV2 weights pre-trained briefly on a related synthetic task (see
  :mod:`grader.kit.synthetic`), their BatchNorm statistics recalibrated at each size;
- ``manifest.json``: counts, timings and the pre-training accuracy.
"""

from __future__ import annotations

import json
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from grader.kit.synthetic import PRETRAIN_CLASSES, draw_animal, pretrain_batch, random_size

SPLITS = {"train": 160, "validation": 96}  # images per class
HOLDOUT_PER_CLASS = 160
ROWS = (96, 128, 160, 192, 224)
PRETRAIN_SIDE = 96
PRETRAIN_STEPS = 300
PRETRAIN_BATCH = 32
RECALIBRATION_IMAGES = 256
RECALIBRATION_SIDE = 160
SEED = 20240601
ZIP_ROOT = "cats_and_dogs_filtered"
WEIGHTS_STEM = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}"


def say(message: str) -> None:
    print(f"[kit] {message}", flush=True)


def write_images(dest: Path) -> dict[str, int]:
    """The zip students download and the holdout folder they never see."""
    rng = np.random.default_rng(SEED)
    zip_path = dest / "keras_home" / "datasets" / "cats_and_dogs.zip"
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as archive:
        for split, per_class in SPLITS.items():
            for label, name in ((False, "cats"), (True, "dogs")):
                for i in range(per_class):
                    image = draw_animal(rng, label, random_size(rng))
                    path = f"{ZIP_ROOT}/{split}/{name}/{name[:-1]}.{i}.jpg"
                    archive.writestr(path, _jpeg(image))
            counts[split] = 2 * per_class
            say(f"images: {split} {counts[split]}")
    for label, name in ((False, "cats"), (True, "dogs")):
        folder = dest / "holdout" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(HOLDOUT_PER_CLASS):
            draw_animal(rng, label, random_size(rng)).save(
                folder / f"{name[:-1]}.{i}.jpg", quality=90
            )
    counts["holdout"] = 2 * HOLDOUT_PER_CLASS
    say(f"images: holdout {counts['holdout']}")
    return counts


def _jpeg(image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def pretrain(keras):
    """MobileNetV2 trained briefly on the six-way head task; returns (base, batch accuracy)."""
    rng = np.random.default_rng(SEED + 1)
    base = keras.applications.MobileNetV2(
        input_shape=(PRETRAIN_SIDE, PRETRAIN_SIDE, 3), include_top=False, weights=None
    )
    inputs = keras.Input((PRETRAIN_SIDE, PRETRAIN_SIDE, 3))
    x = keras.applications.mobilenet_v2.preprocess_input(inputs)
    x = keras.layers.GlobalAveragePooling2D()(base(x))
    model = keras.Model(inputs, keras.layers.Dense(len(PRETRAIN_CLASSES))(x))
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    accuracy = 0.0
    for step in range(PRETRAIN_STEPS):
        images, labels = pretrain_batch(rng, PRETRAIN_BATCH, PRETRAIN_SIDE)
        _, accuracy = model.train_on_batch(images.astype("float32"), labels)
        if step % 20 == 0 or step == PRETRAIN_STEPS - 1:
            say(f"pre-training step {step + 1}/{PRETRAIN_STEPS} accuracy {float(accuracy):.2f}")
    return base, float(accuracy)


def recalibrate(keras, model, side: int) -> None:
    """Set BatchNorm moving statistics to the averages over fresh images at ``side``."""
    rng = np.random.default_rng(SEED + side)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    chunks = RECALIBRATION_IMAGES // 32
    for k in range(chunks):
        for layer in norms:  # running mean over chunks: new = old * k/(k+1) + batch/(k+1)
            layer.momentum = k / (k + 1)
        images, _ = pretrain_batch(rng, 32, side)
        x = keras.applications.mobilenet_v2.preprocess_input(images.astype("float32"))
        model(x, training=True)
    for layer, momentum in zip(norms, momenta, strict=True):
        layer.momentum = momentum


def calibrated_weights(keras, trained) -> list:
    """The trained weights with BatchNorm statistics recalibrated once, at the students' size.

    Weights do not depend on the input size and the statistics barely do, so one
    recalibration serves every size Keras knows.
    """
    side = RECALIBRATION_SIDE
    base = keras.applications.MobileNetV2(
        input_shape=(side, side, 3), include_top=False, weights=None
    )
    base.set_weights(trained.get_weights())
    recalibrate(keras, base, side)
    return base.get_weights()


def save_weights(keras, trained, dest: Path) -> list[str]:
    """No-top and with-top weight files for every input size Keras knows."""
    models_dir = dest / "keras_home" / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    weights = calibrated_weights(keras, trained)
    written = []
    for rows in ROWS:
        shape = (rows, rows, 3)
        base = keras.applications.MobileNetV2(input_shape=shape, include_top=False, weights=None)
        base.set_weights(weights)
        name = WEIGHTS_STEM.format(rows=rows) + "_no_top.h5"
        base.save(models_dir / name)
        full = keras.applications.MobileNetV2(input_shape=shape, weights=None)
        body = [layer for layer in base.layers if layer.weights]
        targets = [layer for layer in full.layers if layer.weights][: len(body)]
        for source, target in zip(body, targets, strict=True):
            target.set_weights(source.get_weights())
        full.save(models_dir / (WEIGHTS_STEM.format(rows=rows) + ".h5"))
        written.append(name)
        say(f"weights: {rows}x{rows} written")
    return written


def build(dest: Path, version: str) -> None:
    start = time.time()
    counts = write_images(dest)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    keras.utils.set_random_seed(SEED)
    say("pre-training MobileNetV2 on the synthetic head task")
    trained, accuracy = pretrain(keras)
    say(f"pre-training: last batch accuracy {accuracy:.2f}")
    files = save_weights(keras, trained, dest)
    manifest = {
        "version": version,
        "counts": counts,
        "pretrain_batch_accuracy": accuracy,
        "weights": files,
        "seconds": round(time.time() - start, 1),
    }
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2))
    say(f"done in {manifest['seconds']} s")


if __name__ == "__main__":
    build(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "dev")
