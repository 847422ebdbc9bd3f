from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from grader.errors import AssetKitError
from grader.kit import assets, complete
from grader.kit.assets import TFDS_FOLDER, Kit, course_kit, prepare_keras_home
from grader.measure.client import MSG_NO_HOLDOUT, Measurer
from grader.rubric.limits import Limits
from grader.run.capture import collect_errors, strip_ansi
from grader.run.execute import RunSettings


def fake_kit(tmp_path: Path) -> Kit:
    home = tmp_path / "kit" / "keras_home"
    (home / "models").mkdir(parents=True)
    (home / "models" / "weights_no_top.h5").write_bytes(b"h5")
    (home / "datasets").mkdir()
    with zipfile.ZipFile(home / "datasets" / "cats_and_dogs.zip", "w") as archive:
        archive.writestr("cats_and_dogs_filtered/train/cats/cat.0.jpg", b"jpg")
    return Kit(keras_home=home, holdout=tmp_path / "kit" / "holdout", version="test")


def test_a_kernels_keras_home_links_the_kit_and_serves_both_path_forms(tmp_path: Path) -> None:
    home = prepare_keras_home(fake_kit(tmp_path), tmp_path / "run" / "keras_home")
    assert (home / "models" / "weights_no_top.h5").read_bytes() == b"h5"
    datasets = home / "datasets"
    assert (datasets / "cats_and_dogs.zip").is_symlink()
    # Cached under the name older copies of the tutorial and students' own code use too:
    # get_file("cats_and_dogs_filtered.zip", origin=..., extract=True) finds it offline.
    assert (datasets / "cats_and_dogs_filtered.zip").resolve() == (
        (datasets / "cats_and_dogs.zip").resolve()
    )
    # Keras 2 code joins dirname(path_to_zip) with the folder, whichever name it cached:
    # the kernel's own extracted copy is there (writable, like Colab's), before any fit.
    extracted = datasets / "cats_and_dogs_filtered" / "train" / "cats" / "cat.0.jpg"
    assert not extracted.is_symlink() and extracted.read_bytes() == b"jpg"
    assert not (home / "holdout").exists()
    assert not (home / TFDS_FOLDER).exists()  # this kit has no TFDS copy


def test_the_kits_tfds_copy_is_linked_for_tfds_load(tmp_path: Path) -> None:
    kit = fake_kit(tmp_path)
    (kit.keras_home / TFDS_FOLDER / "cats_vs_dogs" / "4.0.1").mkdir(parents=True)
    home = prepare_keras_home(kit, tmp_path / "run" / "keras_home")
    assert (home / TFDS_FOLDER).resolve() == (kit.keras_home / TFDS_FOLDER).resolve()
    assert (home / TFDS_FOLDER / "cats_vs_dogs" / "4.0.1").is_dir()


def test_a_large_archive_is_linked_where_keras_3_extracts_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(assets, "MAX_EXTRACTED_BYTES", 10)
    home = prepare_keras_home(fake_kit(tmp_path), tmp_path / "run" / "keras_home")
    alias = home / "datasets" / "cats_and_dogs_filtered"
    assert os.readlink(alias) == "cats_and_dogs_extracted/cats_and_dogs_filtered"
    with zipfile.ZipFile(home / "datasets" / "cats_and_dogs.zip") as archive:
        archive.extractall(home / "datasets" / "cats_and_dogs_extracted")
    assert (alias / "train" / "cats" / "cat.0.jpg").read_bytes() == b"jpg"


def test_a_course_cache_without_models_or_datasets_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AssetKitError, match="no models/ or datasets/"):
        course_kit(tmp_path, None)


def test_evaluation_without_a_holdout_says_so(tmp_path: Path) -> None:
    kit = Kit(keras_home=tmp_path, holdout=None, version="custom")
    measured = Measurer(RunSettings(kit=kit, limits=Limits())).measure(tmp_path / "m.keras", [])
    assert measured is not None and measured.error == MSG_NO_HOLDOUT


def test_cell_errors_are_collected_with_readable_tracebacks() -> None:
    cell = nbformat.v4.new_code_cell("1/0")
    cell.outputs = [
        nbformat.v4.new_output(
            "error",
            ename="ZeroDivisionError",
            evalue="division by zero",
            traceback=["\x1b[31mZeroDivisionError\x1b[0m: boom"],
        )
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("x"), cell])
    [error] = collect_errors(nb)
    assert (error.cell, error.ename, error.traceback) == (
        1,
        "ZeroDivisionError",
        "ZeroDivisionError: boom",
    )
    assert collect_errors(nb, skip={1}) == []
    assert strip_ansi("\x1b[1;32mok\x1b[0m") == "ok"


EAGER_ACCURACY = """
import sys
import keras
import numpy as np
holdout, target = sys.argv[1], sys.argv[2]
keras.utils.set_random_seed(7)
model = keras.Sequential([
    keras.Input((160, 160, 3)),
    keras.layers.Rescaling(1 / 127.5, offset=-1),
    keras.layers.Conv2D(4, 3, activation="relu"),
    keras.layers.BatchNormalization(),
    keras.layers.GlobalAveragePooling2D(),
    keras.layers.Dense(1),
])
model.save(target)
data = keras.utils.image_dataset_from_directory(
    holdout, image_size=(160, 160), batch_size=32, shuffle=False, verbose=False)
logits = np.concatenate([np.asarray(model(x, training=False)).reshape(-1) for x, _ in data])
labels = np.concatenate([y.numpy() for _, y in data])
right = (logits > 0) == labels
chosen = np.linspace(0, len(labels) - 1, 100).round().astype(int)  # the evaluator's pick
print((logits > 0).mean(), right.mean(), right[chosen].mean())
"""


@pytest.mark.kernel
def test_the_evaluator_measures_what_an_eager_run_of_the_model_gives(tmp_path: Path) -> None:
    """All the holdout: the evaluator traces its step (TensorFlow fuses layers there);
    an independent plain eager run of the same model decides the expected figure."""
    from grader.kit.assets import ensure_kit
    from grader.measure.client import EvaluatorProcess

    holdout, model = ensure_kit(progress=lambda _: None).holdout, tmp_path / "m.keras"
    script = [sys.executable, "-c", EAGER_ACCURACY, str(holdout), str(model)]
    output = subprocess.check_output(script, text=True).split()[-3:]
    positive, expected, expected_of_100 = map(float, output)
    assert 0 < positive < 1  # a model that does not answer one class for every image
    evaluator = EvaluatorProcess(holdout)
    try:
        answer = evaluator.measure(model)
        short_last = evaluator.measure(model, limit=100)  # 32 + 32 + 32 + 4, traced
        few = evaluator.measure(model, limit=40)  # two batches: measured eagerly
    finally:
        evaluator.close()
    assert answer["error"] is None and answer["images"] == 320
    assert answer["accuracy"] == pytest.approx(expected, abs=1e-9)
    assert short_last["accuracy"] == pytest.approx(expected_of_100, abs=1e-9)
    assert few["error"] is None and few["images"] == 40


# --- the holdout: drawn from the course's secret, not the public seed -------------------


def test_the_holdout_follows_the_secret_and_nothing_public(tmp_path: Path) -> None:
    """Anyone can rebuild what is drawn from the public seed; the holdout is drawn from
    the secret alone: the same secret gives the same images, another gives others."""
    from grader.kit.build import write_holdout

    def images(secret: bytes, name: str) -> dict[str, bytes]:
        folder = tmp_path / name
        assert write_holdout(folder, secret, per_class=2) == 4
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*.jpg")}

    first = images(b"course secret", "a")
    assert sorted(first) == ["cats/cat.0.jpg", "cats/cat.1.jpg", "dogs/dog.0.jpg", "dogs/dog.1.jpg"]
    assert images(b"course secret", "b") == first
    other = images(b"another course", "c")
    assert all(other[name] != first[name] for name in first)


def test_the_secret_is_fresh_unless_a_course_shares_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from grader.kit.build import HOLDOUT_SECRET_ENV, fingerprint, holdout_secret

    monkeypatch.delenv(HOLDOUT_SECRET_ENV, raising=False)
    one, two = holdout_secret(), holdout_secret()
    assert len(one) == 32 and one != two
    monkeypatch.setenv(HOLDOUT_SECRET_ENV, "shared by the course's machines")
    assert holdout_secret() == b"shared by the course's machines"
    assert fingerprint(one) != fingerprint(two) and one.hex() not in fingerprint(one)


@pytest.mark.kernel
def test_the_built_kit_keeps_its_secret_from_kernels_and_names_its_fingerprint() -> None:
    from grader.kit.assets import MANIFEST, ensure_kit
    from grader.kit.build import HOLDOUT_SECRET_FILE, fingerprint

    kit = ensure_kit(progress=lambda _: None)
    secret = kit.keras_home.parent / HOLDOUT_SECRET_FILE
    assert secret.stat().st_mode & 0o077 == 0  # the owner's alone
    manifest = json.loads((kit.keras_home.parent / MANIFEST).read_text())
    assert manifest["holdout_fingerprint"] == fingerprint(secret.read_bytes())
    assert not list(kit.keras_home.rglob(HOLDOUT_SECRET_FILE))  # not in what kernels see


# --- the evaluator's own limits ----------------------------------------------------------


def test_an_archive_that_would_unpack_too_large_is_refused_before_keras_reads_it(
    tmp_path: Path,
) -> None:
    from grader.measure.evaluator import MAX_MEMBERS, archive_problem

    def archive(name: str, members: dict[str, bytes]) -> Path:
        path = tmp_path / name
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for member, data in members.items():
                zf.writestr(member, data)
        return path

    normal = archive("ok.keras", {"config.json": b"{}", "metadata.json": b"{}"})
    assert archive_problem(normal) is None
    bomb = archive("bomb.keras", {"config.json": b" " * (5 * 2**20)})  # 5 MB in a few kB
    assert bomb.stat().st_size < 64 * 1024
    assert archive_problem(bomb) == "the saved model's config unpacks to 5 MB (over 4 MB)"
    many = archive("many.keras", {f"m{i}": b"" for i in range(MAX_MEMBERS + 1)})
    assert "members" in str(archive_problem(many))
    (tmp_path / "text.keras").write_text("not a zip")
    assert "not a .keras archive" in str(archive_problem(tmp_path / "text.keras"))


def test_an_evaluator_past_its_memory_limit_is_killed_and_the_model_not_measured(
    tmp_path: Path,
) -> None:
    """Held to 1 MB, any evaluator is past it at once: killed, that model's answer names
    the limit, and the next request gets a fresh process."""
    from grader.measure.client import EvaluatorProcess

    (tmp_path / "m.keras").write_bytes(b"not read: the evaluator is gone first")
    evaluator = EvaluatorProcess(tmp_path, memory_mb=1)
    try:
        answer = evaluator.measure(tmp_path / "m.keras", timeout_s=60)
        assert answer == {
            "accuracy": None,
            "error": "the evaluator failed: it used more than 1 MB measuring this model",
        }
        assert not evaluator.running
    finally:
        evaluator.close(kill=True)


def test_a_base_moved_by_training_is_told_from_one_built_elsewhere() -> None:
    """Only weights near the shipped ones, all layers there once, read as trained."""
    import numpy as np

    from grader.measure.weights import base_moved

    class Leaf:
        def __init__(self, name: str, weights: list) -> None:
            self.name, self.weights = name, weights

        def get_weights(self) -> list:
            return self.weights

    class Model:
        def __init__(self, *layers: Leaf) -> None:
            self.layers = list(layers)

    def conv(value: float, dtype: str = "float32") -> Leaf:
        return Leaf("Conv1", [np.full((3, 3), value, dtype)])

    def bn(value: float) -> Leaf:
        return Leaf("bn", [np.full(3, value, "float32")])

    shipped = {"Conv1": conv(1.0).weights, "bn": bn(2.0).weights, "no_weights": []}
    same, nudged = Model(conv(1.0), bn(2.0)), Model(conv(1.01), bn(2.0))
    random, half = Model(conv(-1.0), bn(0.0)), Model(conv(1.0, "float16"), bn(2.0))
    cut = Model(conv(1.0))
    assert (base_moved(same, shipped), base_moved(nudged, shipped)) == (False, True)
    assert [base_moved(m, shipped) for m in (random, half, cut)] == [None, None, None]


def test_the_evaluator_sees_imagenets_classifier_in_the_saved_model() -> None:
    """A 1000-way ``predictions`` layer, nested or not, is the kept top; a head of its own
    named so is not; the answer's field is read as a flag or not at all."""
    from grader.checks.measured import parse_measurement
    from grader.measure.weights import has_imagenet_top

    class Layer:
        def __init__(self, name: str, units: int | None = None, layers: list | None = None):
            self.name, self.units, self.layers = name, units, layers

    top = Layer("mobilenetv2_1.00_160", layers=[Layer("Conv1"), Layer("predictions", 1000)])
    assert has_imagenet_top(Layer("model", layers=[top, Layer("dense", 1)]))
    assert not has_imagenet_top(Layer("model", layers=[Layer("predictions", 1)]))
    assert parse_measurement({"accuracy": 0.5, "top": True}).top is True
    assert parse_measurement({"accuracy": 0.5, "top": "yes"}).top is None


def built_kit_without_tfds(cache: Path, images: int = 0) -> Path:
    """A kit folder as the builder leaves it where TFDS was not installed: a manifest and
    the archive (``images`` real JPEGs a class), no TFDS copy."""
    from PIL import Image

    root = assets.kit_dir(cache)
    (root / "keras_home" / "datasets").mkdir(parents=True)
    (root / assets.MANIFEST).write_text(json.dumps({"counts": {"tfds": 0}}))
    with zipfile.ZipFile(root / complete.ARCHIVE, "w") as archive:
        for kind in ("cats", "dogs") if images else ():
            for i in range(images):
                picture = Image.new("RGB", (24, 16), (40 * i, 90 if kind == "cats" else 200, 30))
                buffer = io.BytesIO()
                picture.save(buffer, format="JPEG")
                archive.writestr(f"cats_and_dogs_filtered/train/{kind}/{i}.jpg", buffer.getvalue())
    return root


def test_a_kit_needs_its_tfds_copy_only_once_per_installed_tfds(tmp_path: Path) -> None:
    root = built_kit_without_tfds(tmp_path)
    assert not complete.needs_tfds(root, None)  # TFDS not installed: nothing to add
    assert complete.needs_tfds(root, "4.9.10")
    (root / complete.TFDS_RECORD).write_text(json.dumps({"tfds_version": "4.9.10"}))
    assert not complete.needs_tfds(root, "4.9.10")  # tried with this version already
    assert complete.needs_tfds(root, "4.9.11")
    (root / complete.TFDS_RECORD).write_text("[not a record")
    assert complete.needs_tfds(root, "4.9.10")
    (root / "keras_home" / TFDS_FOLDER).mkdir()
    assert not complete.needs_tfds(root, "4.9.11")  # the copy is there


def test_a_failed_completion_is_recorded_and_not_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = built_kit_without_tfds(tmp_path)
    (root / complete.ARCHIVE).unlink()  # the completing process refuses this kit
    monkeypatch.setattr(complete, "installed_tfds", lambda: "4.9.10")
    said: list[str] = []
    assert complete.complete_tfds(root, said.append) == 0
    record = json.loads((root / complete.TFDS_RECORD).read_text())
    assert record["tfds_version"] == "4.9.10" and "not a built kit" in record["detail"]
    assert "could not be written" in said[-1]
    assert complete.complete_tfds(root, said.append) is None  # once per TFDS version


def test_a_kit_whose_record_cannot_be_written_still_grades(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review finding: an OSError writing the record escaped ensure_kit and stopped every
    grading start; it is said, and the kit is used without its TFDS copy."""
    root = built_kit_without_tfds(tmp_path)
    (root / complete.ARCHIVE).unlink()
    (root / complete.TFDS_RECORD).mkdir()  # unwritable as a file, even for root
    monkeypatch.setattr(complete, "installed_tfds", lambda: "4.9.10")
    said: list[str] = []
    assert complete.complete_tfds(root, said.append) == 0
    assert any("record could not be written" in line for line in said)


@pytest.mark.kernel
def test_a_kit_built_before_tfds_was_installed_gets_its_copy_and_tfds_load_reads_it(
    tmp_path: Path,
) -> None:
    pytest.importorskip("tensorflow_datasets")
    root = built_kit_without_tfds(tmp_path, images=3)
    said: list[str] = []
    kit = assets.ensure_kit(tmp_path, progress=said.append)
    assert any("Adding the TFDS copy" in line for line in said)
    assert json.loads((root / complete.TFDS_RECORD).read_text())["written"] == 6
    assert json.loads((root / assets.MANIFEST).read_text()) == {"counts": {"tfds": 0}}
    assert not list(root.glob(".tfds-*"))  # no staging left in the kit
    load = (
        "import sys, tensorflow_datasets as tfds\n"
        "ds = tfds.load('cats_vs_dogs', split='train', as_supervised=True, data_dir=sys.argv[1],"
        " download=False)\n"
        "print(sorted(int(label) for _, label in ds))\n"
    )
    home = prepare_keras_home(kit, tmp_path / "run" / "keras_home")
    done = subprocess.run(
        [sys.executable, "-c", load, str(home / TFDS_FOLDER)], capture_output=True, text=True
    )
    assert done.stdout.split("\n")[-2] == "[0, 0, 0, 1, 1, 1]", done.stderr[-2000:]
    said.clear()
    assets.ensure_kit(tmp_path, progress=said.append)
    assert said == []  # complete: nothing to add again


def test_the_size_the_kit_is_made_for_is_the_one_its_builder_calibrates_at() -> None:
    from grader.kit.build import RECALIBRATION_SIDE

    assert assets.KIT_SIDE == RECALIBRATION_SIDE
