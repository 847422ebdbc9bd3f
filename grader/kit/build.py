"""Build the offline asset kit (runs in its own process: it imports TensorFlow).

Run by :func:`grader.kit.assets.build_kit` as ``python -m grader.kit.build DEST``; the
orchestrating process never imports TensorFlow. Writes into DEST:

- ``keras_home/datasets/cats_and_dogs.zip``: the students' training and validation
  images, laid out like the course's ``cats_and_dogs_filtered.zip``;
- ``holdout/{cats,dogs}/``: the hidden holdout split, never inside a student's cache,
  drawn from the course's secret (:func:`holdout_secret`), not from the public seed;
- ``holdout.secret``: that secret (owner-only), outside every kernel's view;
- ``keras_home/models/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}[_no_top].h5``:
  MobileNetV2 weights pre-trained briefly on a related synthetic task (see
  :mod:`grader.kit.synthetic`), their BatchNorm statistics recalibrated, and their last
  1x1 convolution set as a *readout* (:func:`readout`);
- ``keras_home/tensorflow_datasets/cats_vs_dogs/``: the same training and validation
  images as TFDS's prepared ``cats_vs_dogs``, for ``tfds.load`` (:mod:`grader.kit.tfdscopy`;
  only where TFDS is installed);
- ``manifest.json``: counts, seeds, threads, timings, the pre-training accuracy and the
  readout's figures.

Why a readout. A correct head (pooling, dropout, ``Dense(1)``) starts from Glorot
weights and, under Adam at the tutorial's learning rate (1e-4), moves each weight by
about the learning rate a step. On non-negative features the head only gets every
step's sign right when each feature is active for one class and silent for the other;
otherwise the early steps fix a common offset and the seed decides which way the
classes end up. So half the final channels fire where the pre-training task sees
floppy ears and a snout, half where it sees pointed ears, each silent elsewhere (a
threshold at the other kind's 95th percentile). That holds per location, so global
average and global max pooling both read it. Measured through the tutorial's own
pipeline (augmentation, dropout, Adam 1e-4): holdout 0.975-0.991 after 20 head steps in
each of 10 seeds, while one seed was still at chance after 10; the caps give 40.

Why rescaled. Fine-tuning (Adam or RMSprop, 1e-5 in the tutorial) moves each weight by
about its learning rate a step too, which drifted the readout: one of three reference
seeds fell from 0.98 to 0.90 in 12 capped fine-tuning steps. :func:`rescale` multiplies
every convolution's kernel by ``KERNEL_SCALE`` and its BatchNorm's moving statistics to
match: the same function, with weights ten times larger than a fine-tuning step can
move. A base trained from the start at a high rate still loses what it learned.

Why a blank top. The with-top files' 1000-way ``predictions`` layer has zero weights and
zero biases: every image gets the same 1000 probabilities. ImageNet's classes are not the
exercise's, and a head stacked on them learns little in the real setting; left at
Keras's random initialisation, this kit's top passed the readout's two kinds through
cleanly, and a new head on it reached full credit on some seeds. Blank, keeping the top
(``include_top=True`` with a new head) measures chance on every seed.

Why a secret. Everything public (the images students download, the weights) is drawn
from :data:`SEED` and this file: anyone can rebuild it, so the holdout cannot be. It is
drawn from 32 random bytes made at the kit's first build (or ``GRADER_KIT_HOLDOUT_SECRET``,
for a course that grades on several machines and needs one holdout on all of them);
the manifest keeps only its fingerprint, so a reference measured on another holdout is
stale (the kit's digest changes).

``GRADER_KIT_PRETRAIN_SEED`` changes the pre-training's seed (the images stay the same):
a benchmark builds a second kit with it, and with another thread count, to show that
grading does not depend on the build.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from grader.kit.synthetic import (
    EARS_FLOPPY,
    EARS_POINTED,
    PRETRAIN_CLASSES,
    draw_animal,
    draw_head,
    pretrain_batch,
    random_size,
)

SPLITS = {"train": 160, "validation": 160}  # images per class
"""160 validation images a class: the tutorial takes a fifth of the validation batches as its
test set, and at batch 64 (a common variant) 192 images left it empty (3 // 5 = 0)."""
HOLDOUT_PER_CLASS = 160
ROWS = (96, 128, 160, 192, 224)
PRETRAIN_SIDE = 96
PRETRAIN_STEPS = 300
PRETRAIN_BATCH = 32
RECALIBRATION_IMAGES = 256
RECALIBRATION_SIDE = 160
READOUT_IMAGES = 256  # fresh pre-training images the readout is fitted on
READOUT_QUANTILE = 0.95  # a channel's threshold: this quantile of the other kind's peak
READOUT_SPREAD = 2.0  # the two kinds' mean projections sit at -2 and +2
KERNEL_SCALE = 10.0  # see rescale()
SEED = 20240601
PRETRAIN_SEED_ENV = "GRADER_KIT_PRETRAIN_SEED"
HOLDOUT_SECRET_ENV = "GRADER_KIT_HOLDOUT_SECRET"
HOLDOUT_SECRET_FILE = "holdout.secret"
ZIP_ROOT = "cats_and_dogs_filtered"
WEIGHTS_STEM = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}"


def say(message: str) -> None:
    print(f"[kit] {message}", flush=True)


def write_images(dest: Path, secret: bytes) -> dict[str, int]:
    """The zip students download (from the public seed) and the holdout folder they
    never see (from ``secret``)."""
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
    counts["holdout"] = write_holdout(dest / "holdout", secret, HOLDOUT_PER_CLASS)
    say(f"images: holdout {counts['holdout']}")
    return counts


def holdout_secret() -> bytes:
    """``GRADER_KIT_HOLDOUT_SECRET`` (any text), else 32 fresh random bytes."""
    shared = os.environ.get(HOLDOUT_SECRET_ENV)
    return shared.encode() if shared else secrets.token_bytes(32)


def fingerprint(secret: bytes) -> str:
    """What the manifest says of the secret: enough to tell two holdouts apart."""
    return hashlib.sha256(b"grader-holdout|" + secret).hexdigest()[:16]


def write_holdout(folder: Path, secret: bytes, per_class: int) -> int:
    """``per_class`` images of each class drawn from ``secret``; the number written."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(secret).digest(), "big"))
    for label, name in ((False, "cats"), (True, "dogs")):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = draw_animal(rng, label, random_size(rng))
            image.save(folder / name / f"{name[:-1]}.{i}.jpg", quality=90)
    return 2 * per_class


def keep_secret(dest: Path, secret: bytes) -> None:
    fd = os.open(dest / HOLDOUT_SECRET_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secret)


def _jpeg(image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def pretrain_seed() -> int:
    """The pre-training's seed: ``$GRADER_KIT_PRETRAIN_SEED``, else the kit's own."""
    return int(os.environ.get(PRETRAIN_SEED_ENV) or SEED + 1)


def pretrain(keras):
    """MobileNetV2 trained briefly on the six-way head task; returns (base, batch accuracy)."""
    rng = np.random.default_rng(pretrain_seed())
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


def calibrated(keras, trained):
    """The trained base at the students' size, its BatchNorm statistics recalibrated once.

    Weights do not depend on the input size and the statistics barely do, so one
    recalibration serves every size Keras knows.
    """
    side = RECALIBRATION_SIDE
    base = keras.applications.MobileNetV2(
        input_shape=(side, side, 3), include_top=False, weights=None
    )
    base.set_weights(trained.get_weights())
    recalibrate(keras, base, side)
    return base


def readout_images(side: int) -> tuple[np.ndarray, np.ndarray]:
    """Fresh pre-training heads of two of its kinds: pointed ears without a snout (0) and
    floppy ears with one (1), whiskers at random, as :func:`pretrain_batch` draws them."""
    rng = np.random.default_rng(SEED + 7)
    labels = np.arange(READOUT_IMAGES) % 2
    images = np.empty((READOUT_IMAGES, side, side, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        ears = EARS_FLOPPY if label else EARS_POINTED
        head = draw_head(rng, ears, bool(label), bool(rng.random() < 0.5), random_size(rng))
        images[i] = np.asarray(head.resize((side, side), Image.BILINEAR))
    return images, labels


def readout_direction(h: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
    """Fisher's direction between the two kinds, over every location of every image,
    scaled so their mean projections sit at -READOUT_SPREAD and +READOUT_SPREAD."""
    per_location = np.repeat(labels, h.shape[1] * h.shape[2])
    flat = h.reshape(-1, h.shape[-1]).astype("float64")
    zero, one = flat[per_location == 0], flat[per_location == 1]
    scatter = np.cov(zero.T) + np.cov(one.T) + 1e-3 * np.eye(flat.shape[1])
    u = np.linalg.solve(scatter, one.mean(0) - zero.mean(0))
    low, high = float((zero @ u).mean()), float((one @ u).mean())
    scale = 2 * READOUT_SPREAD / (high - low)
    return u * scale, -(low + high) / 2 * scale


def readout(keras, base) -> dict[str, float]:
    """Set ``Conv_1`` and ``Conv_1_bn`` so half the final channels carry each kind (see
    the module's docstring); returns the figures the manifest keeps."""
    images, labels = readout_images(int(base.input.shape[1]))
    inputs = keras.applications.mobilenet_v2.preprocess_input(images.astype("float32"))
    inner = keras.Model(base.input, base.get_layer("block_16_project_BN").output)
    h = np.asarray(inner.predict(inputs, verbose=0, batch_size=32))
    u, offset = readout_direction(h, labels)
    d = h @ u + offset  # (images, rows, cols): the projection at each location
    floppy_at = float(np.quantile(d[labels == 0].max(axis=(1, 2)), READOUT_QUANTILE))
    pointed_at = float(np.quantile((-d[labels == 1]).max(axis=(1, 2)), READOUT_QUANTILE))
    half = base.get_layer("Conv_1").filters // 2
    kernel = np.concatenate([np.repeat(u[:, None], half, 1), np.repeat(-u[:, None], half, 1)], 1)
    base.get_layer("Conv_1").set_weights([kernel[None, None].astype("float32")])
    norm = base.get_layer("Conv_1_bn")
    shift = np.concatenate([np.full(half, offset - floppy_at), np.full(half, -offset - pointed_at)])
    ones = np.ones(2 * half, dtype="float32")
    norm.set_weights([ones, shift.astype("float32"), 0 * ones, (1 - norm.epsilon) * ones])
    pooled = np.clip(d[..., None] * [1, -1] - [floppy_at, pointed_at], 0, 6).mean(axis=(1, 2))
    return {
        "floppy_threshold": round(floppy_at, 3),
        "pointed_threshold": round(pointed_at, 3),
        "pooled_accuracy": round(float(np.mean((pooled[:, 0] > pooled[:, 1]) == labels)), 3),
    }


def rescale(keras, base, scale: float = KERNEL_SCALE) -> int:
    """Each convolution's kernel times ``scale``, its BatchNorm's moving mean times
    ``scale`` and variance so that variance + epsilon grows by its square: the base
    computes the same in inference, and a fixed-size optimizer step moves it ``scale``
    times less. Returns the number of pairs rescaled."""
    layers = base.layers
    pairs = 0
    for before, layer in zip(layers, layers[1:], strict=False):
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        if not isinstance(before, keras.layers.Conv2D | keras.layers.DepthwiseConv2D):
            raise RuntimeError(f"{layer.name} does not follow a convolution")
        kernel, *rest = before.get_weights()
        before.set_weights([kernel * scale, *rest])
        gamma, beta, mean, variance = layer.get_weights()
        spread = scale**2 * (variance + layer.epsilon) - layer.epsilon  # exact, epsilon kept
        layer.set_weights([gamma, beta, mean * scale, spread])
        pairs += 1
    return pairs


def save_weights(keras, trained, dest: Path) -> list[str]:
    """No-top and with-top weight files for every input size Keras knows."""
    models_dir = dest / "keras_home" / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    weights = trained.get_weights()
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
        blank_top(full.get_layer("predictions"))
        full.save(models_dir / (WEIGHTS_STEM.format(rows=rows) + ".h5"))
        written.append(name)
        say(f"weights: {rows}x{rows} written")
    return written


def tfds_copy(dest: Path) -> int:
    """The students' images again as TFDS's prepared ``cats_vs_dogs`` (0: TFDS is not
    installed, or could not write it: the kit is whole without it)."""
    from grader.kit.tfdscopy import write_tfds_copy

    try:
        written = write_tfds_copy(
            dest / "keras_home" / "datasets" / "cats_and_dogs.zip", dest / "keras_home"
        )
    except Exception as exc:  # TFDS's own failure costs only this route
        say(f"tfds copy not written: {type(exc).__name__}: {exc}")
        return 0
    say(f"images: tfds cats_vs_dogs {written}")
    return written


def blank_top(predictions) -> None:
    """Zero the top's kernel and bias (see the module's docstring: why a blank top)."""
    predictions.set_weights([np.zeros_like(w) for w in predictions.get_weights()])


def build(dest: Path, version: str) -> None:
    start = time.time()
    secret = holdout_secret()
    counts = write_images(dest, secret)
    keep_secret(dest, secret)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    keras.utils.set_random_seed(pretrain_seed())
    say("pre-training MobileNetV2 on the synthetic head task")
    trained, accuracy = pretrain(keras)
    say(f"pre-training: last batch accuracy {accuracy:.2f}")
    base = calibrated(keras, trained)
    figures = readout(keras, base)
    figures["rescaled_pairs"] = rescale(keras, base)
    say(f"readout: {figures}")
    files = save_weights(keras, base, dest)
    counts["tfds"] = tfds_copy(dest)
    manifest = {
        "version": version,
        "counts": counts,
        "pretrain_seed": pretrain_seed(),
        "holdout_fingerprint": fingerprint(secret),
        "threads": os.environ.get("TF_NUM_INTRAOP_THREADS") or os.environ.get("OMP_NUM_THREADS"),
        "pretrain_batch_accuracy": accuracy,
        "readout": figures,
        "weights": files,
        "seconds": round(time.time() - start, 1),
    }
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2))
    say(f"done in {manifest['seconds']} s")


if __name__ == "__main__":
    build(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "dev")
