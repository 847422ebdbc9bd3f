"""The kit's images as TensorFlow Datasets' ``cats_vs_dogs``, prepared for offline loads.

The tutorial before 2020, and many students' copies of it, load the data with
``tfds.load('cats_vs_dogs', split=[...], as_supervised=True)``. TFDS loads a dataset
without downloading when its data folder already holds it prepared (the folder in
``TFDS_DATA_DIR``). The kit builder writes its own train and validation images there as
``cats_vs_dogs`` at the version TFDS registers, with the registered dataset's features
(the same records the real one holds: the JPEG image, its file name, the label ``cat``
or ``dog``), so the real loading code finds them; kernels get ``TFDS_DATA_DIR`` pointing
at it, read-only. Runs in the kit builder's process (imports TensorFlow and TFDS) only
where the ``course`` extra installed TFDS; elsewhere the kit is built without it.
"""

from __future__ import annotations

import io
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from grader.kit.assets import TFDS_FOLDER

DATASET = "cats_vs_dogs"
LABELS = {"cats": 0, "dogs": 1}
"""The kit's class folders as the registered dataset's labels (``cat``, ``dog``)."""


def _examples(archive: Path) -> Iterator[dict[str, Any]]:
    import numpy as np
    from PIL import Image

    with zipfile.ZipFile(archive) as zf:
        for name in sorted(n for n in zf.namelist() if n.endswith(".jpg")):
            kind = name.split("/")[-2]
            if kind in LABELS:
                image = np.asarray(Image.open(io.BytesIO(zf.read(name))).convert("RGB"))
                yield {"image": image, "image/filename": name, "label": LABELS[kind]}


def write_tfds_copy(archive: Path, keras_home: Path) -> int:
    """Write the archive's images as prepared ``cats_vs_dogs`` under ``keras_home``;
    returns how many (0 where TFDS is not installed)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        return 0
    import tensorflow as tf

    registered = tfds.builder(DATASET, data_dir=str(keras_home / "unused"))
    features = registered.info.features
    examples = list(_examples(archive))
    signature = {
        "image": tf.TensorSpec((None, None, 3), tf.uint8),
        "image/filename": tf.TensorSpec((), tf.string),
        "label": tf.TensorSpec((), tf.int64),
    }
    data = tf.data.Dataset.from_generator(lambda: iter(examples), output_signature=signature)
    tfds.dataset_builders.store_as_tfds_dataset(
        name=DATASET,
        version=str(registered.VERSION),
        features=features,
        split_datasets={"train": data},
        data_dir=str(keras_home / TFDS_FOLDER),
        description="The grader's offline kit: synthetic cats and dogs, not the real images.",
    )
    shutil.rmtree(keras_home / TFDS_FOLDER / "downloads", ignore_errors=True)  # left empty
    return len(examples)
