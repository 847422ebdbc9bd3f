"""The kernel side's pure parts, without a kernel: the probe's layer tree, caps and
recording (on stand-ins for Keras's objects), and the one IPython line grammar as the
kernel, the static analysis and the notes use it."""

from __future__ import annotations

import inspect
import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nbformat
import pytest

from grader.checks.notes import PIP_NOTE, SHELL_NOTE, find_notes
from grader.run.kernel import habits
from grader.run.kernel import probe as kernel_probe
from grader.run.kernel import seal as kernel_seal
from grader.run.kernel.habits import (
    INSTALL_LINE,
    SHELL_CELL,
    SHELL_LINE,
    SKIPPED_CELL,
    is_ipython_line,
    neutralise_shell,
)
from grader.run.kernel.probe import (
    Probe,
    Settings,
    cap,
    cap_fit,
    cap_steps,
    known_steps,
    layer_tree,
)
from grader.run.probe import LOADER, ProbeConfig, kernel_settings, module_text, write_seal
from grader.static.magics import neutralise_magics

# --- stand-ins for Keras's objects ------------------------------------------------------


class Weight:
    def __init__(self, *shape: int, trainable: bool = True) -> None:
        self.shape, self.trainable = shape, trainable


class Layer:
    def __init__(self, name: str, trainable: bool = True, **extra: Any) -> None:
        self.name, self.trainable = name, trainable
        own = [Weight(3, 2), Weight(2)] if trainable else [Weight(3, 2, trainable=False)]
        children = [c for c in extra.get("layers", []) if isinstance(c, Layer)]
        self.weights = own + [w for c in children for w in c.weights]
        vars(self).update(extra)


class Dataset:
    """A tf.data stand-in: only its number of batches."""

    def __init__(self, batches: int) -> None:
        self.batches = batches

    def cardinality(self) -> int:
        return self.batches


def test_the_layer_tree_counts_parameters_and_nests_models() -> None:
    # as Keras leaves them: base.trainable = False clears its layers' weights' flags too
    inner = Layer("base", trainable=False, layers=[Layer("conv", trainable=False), "not a layer"])
    model = Layer("model", layers=[inner, Layer("dense", units=5), Layer("odd", units=2.5)])
    tree = layer_tree(model, Layer)
    assert tree["class"] == "Layer" and tree["params_trainable"] == 24  # its own, dense, odd
    base, dense, odd = tree["layers"]
    assert (base["trainable"], base["params_trainable"], base["params_non_trainable"]) == (
        False,
        0,
        12,
    )
    assert [c["name"] for c in base["layers"]] == ["conv"]  # only layers are described
    assert dense["units"] == 5 and "units" not in odd and "layers" not in dense


def test_a_layer_unfrozen_inside_a_frozen_base_is_trained_and_counted() -> None:
    """``base.trainable = False`` then ``base.layers[-1].trainable = True``: Keras trains
    that layer's weights, though the base's own ``trainable_weights`` is empty."""
    inner = Layer("base", trainable=False, layers=[Layer("conv", trainable=False), Layer("top")])
    base = layer_tree(Layer("model", layers=[inner]), Layer)["layers"][0]
    assert (base["trainable"], base["params_trainable"], base["params_non_trainable"]) == (
        False,
        8,
        12,
    )
    frozen_root = layer_tree(Layer("model", trainable=False, layers=[inner]), Layer)
    assert frozen_root["params_trainable"] == 0  # a frozen model trains nothing


@pytest.mark.kernel
def test_the_layer_tree_counts_what_keras_trains() -> None:
    """The stand-ins above against Keras itself: the tree's trainable parameters of a
    frozen base with its last layer unfrozen are the ones the model trains."""
    import keras

    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3)(keras.layers.Dense(3)(inputs))
    base = keras.Model(inputs, hidden, name="base")
    base.trainable = False
    base.layers[-1].trainable = True
    model = keras.Sequential([keras.Input((4,)), base, keras.layers.Dense(1)])
    tree = layer_tree(model, keras.layers.Layer)
    trained = sum(math.prod(w.shape) for w in model.trainable_weights)
    assert tree["params_trainable"] == trained == 12 + 4
    assert tree["layers"][0]["params_trainable"] == 12 and base.trainable_weights == []


def test_the_layer_tree_stops_four_models_down() -> None:
    model = Layer("leaf")
    for depth in range(6):
        model = Layer(f"level{depth}", layers=[model])
    names, node = [], layer_tree(model, Layer)
    while "layers" in node:
        names.append(node["name"])
        node = node["layers"][0]
    assert names == ["level5", "level4", "level3", "level2"] and node["name"] == "level1"


def fit_signature(
    self: object,
    x: object = None,
    epochs: int = 1,
    initial_epoch: int = 0,
    steps_per_epoch: int | None = None,
    validation_data: object = None,
    validation_steps: int | None = None,
) -> None:
    """Keras's ``fit`` arguments that the caps read."""


def bound(**arguments: Any) -> inspect.BoundArguments:
    call = inspect.signature(fit_signature).bind(None, **arguments)
    call.apply_defaults()
    return call


SETTINGS: Settings = kernel_settings(ProbeConfig(dir=Path("/tmp"), quick=True, max_epochs=2))


def test_cap_counts_epochs_from_the_initial_epoch() -> None:
    call = bound(epochs=20, initial_epoch=10)
    cap(call, "epochs", 2, call.arguments["initial_epoch"])
    assert call.arguments["epochs"] == 12
    call = bound(epochs=1)
    cap(call, "epochs", 2)
    assert call.arguments["epochs"] == 1


@pytest.mark.parametrize(
    ("data", "asked", "steps"),
    [
        (Dataset(100), None, 10),  # more batches than the cap
        (Dataset(-1), None, 10),  # an infinite dataset
        (Dataset(4), None, None),  # fewer: Keras runs them all, no cap added
        ([1, 2, 3], None, None),  # not a dataset: Keras could not honour a cap
        ([1, 2, 3], 50, 10),  # what the student asked, capped
        (Dataset(100), 3, 3),
    ],
)
def test_cap_steps_adds_a_cap_only_where_keras_can_honour_it(
    data: object, asked: int | None, steps: int | None
) -> None:
    call = bound(x=data, steps_per_epoch=asked)
    cap_steps(call, "steps_per_epoch", data, 10)
    assert call.arguments["steps_per_epoch"] == steps


def test_known_steps_are_the_cap_or_the_datasets_own() -> None:
    assert known_steps(bound(steps_per_epoch=2), "steps_per_epoch", Dataset(9)) == 2
    assert known_steps(bound(), "steps_per_epoch", Dataset(9)) == 9
    assert known_steps(bound(), "steps_per_epoch", Dataset(-1)) is None
    assert known_steps(bound(), "steps_per_epoch", [1, 2]) is None


def test_cap_fit_uses_the_later_steps_from_the_second_fit_on() -> None:
    later: Settings = {**SETTINGS, "later_steps": 4}
    first = bound(x=Dataset(100), epochs=5, validation_data=Dataset(50))
    assert cap_fit(first, later, later=False) == 3  # the validation steps it will run
    assert (first.arguments["epochs"], first.arguments["steps_per_epoch"]) == (2, 10)
    second = bound(x=Dataset(100), epochs=5)
    assert cap_fit(second, later, later=True) is None
    assert second.arguments["steps_per_epoch"] == 4
    third = bound(x=Dataset(100))
    cap_fit(third, SETTINGS, later=True)  # no later_steps: the first fit's cap
    assert third.arguments["steps_per_epoch"] == 10


# --- the probe's recording, on a stand-in model -----------------------------------------


class History:
    def __init__(self, epochs: int) -> None:
        self.epoch = list(range(epochs))
        self.history = {"loss": [0.5] * epochs, "odd": ["n/a"] * epochs}


class Model(Layer):
    """A Keras model stand-in: its fit notes how it was called and whether eagerly."""

    def __init__(self) -> None:
        super().__init__("model", layers=[Layer("dense", units=1)])
        self.run_eagerly, self.optimizer, self.loss = False, None, None
        self.train_function = self.test_function = self.predict_function = None
        self.calls: list[tuple[dict[str, Any], bool]] = []

    def compile(self, optimizer: str = "adam", loss: str = "mse") -> None:
        self.optimizer = SimpleNamespace(learning_rate=0.01)
        self.loss = loss

    def fit(
        self,
        x: object = None,
        epochs: int = 1,
        initial_epoch: int = 0,
        steps_per_epoch: int | None = None,
        validation_data: object = None,
        validation_steps: int | None = None,
    ) -> History:
        arguments = {"epochs": epochs, "steps_per_epoch": steps_per_epoch}
        self.calls.append((arguments, self.run_eagerly))
        self.train_function = "traced"
        return History(epochs - initial_epoch)

    def evaluate(self, x: object = None, steps: int | None = None) -> float:
        return 0.5

    def save(self, path: str) -> None:
        Path(path).write_text("model")


KERAS = SimpleNamespace(Model=Model, Layer=Layer, ops=SimpleNamespace(convert_to_numpy=float))


def events(folder: Path) -> list[dict[str, Any]]:
    lines = (folder / kernel_probe.EVENTS_FILE).read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_a_fit_is_recorded_before_and_after_and_its_model_saved_atomically(
    tmp_path: Path,
) -> None:
    config: Settings = {**SETTINGS, "dir": str(tmp_path), "eager_steps": 10}
    write_seal(tmp_path)
    probe, model = Probe(config, KERAS, {}, kernel_seal), Model()
    probe.compile(model, loss="mse")
    history = probe.fit(model, Dataset(100), epochs=5)
    assert model.calls == [({"epochs": 2, "steps_per_epoch": 10}, True)]  # capped, eager
    assert (model.run_eagerly, model.train_function) == (False, None)  # as the student had it
    compiled, fit, end = events(tmp_path)
    assert compiled["loss"] == {"class": "str", "name": "mse", "from_logits": None}
    assert compiled["optimizer"] == {"class": "SimpleNamespace", "learning_rate": 0.01}
    assert (fit["event"], fit["epochs_requested"], fit["epochs"], fit["initial_epoch"]) == (
        "fit",
        5,
        2,
        0,
    )
    assert fit["model"]["layers"][0]["units"] == 1
    assert end["event"] == "fit_end" and end["epochs_run"] == len(history.epoch) == 2
    assert end["history"] == {"loss": [0.5, 0.5], "odd": [None, None]}
    assert end["saved"] == kernel_probe.MODEL_FILE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl", "last_model.keras"]


def test_save_named_saves_the_notebooks_variable_only_when_it_is_a_model(
    tmp_path: Path,
) -> None:
    namespace: dict[str, Any] = {"final_model": Model(), "text": "not a model"}
    write_seal(tmp_path)
    probe = Probe({**SETTINGS, "dir": str(tmp_path)}, KERAS, namespace, kernel_seal)
    probe.save_named("text")
    probe.save_named("missing")
    assert not (tmp_path / kernel_probe.MODEL_FILE).exists()
    probe.save_named("final_model")
    assert [(e["event"], e["variable"]) for e in events(tmp_path)] == [
        ("named_model", "final_model")
    ]
    assert (tmp_path / kernel_probe.MODEL_FILE).read_text() == "model"


def test_a_recording_that_fails_leaves_a_probe_error_and_the_call_goes_on(
    tmp_path: Path,
) -> None:
    write_seal(tmp_path)
    probe, model = Probe({**SETTINGS, "dir": str(tmp_path)}, KERAS, {}, kernel_seal), Model()
    del model.weights  # the layer tree cannot be read
    assert probe.evaluate(model, Dataset(2)) == 0.5
    (entry,) = events(tmp_path)
    assert entry["event"] == "evaluate" and "AttributeError" in entry["probe_error"]


# --- the shell-line grammar -------------------------------------------------------------

SKIP = "print('[grader] skipped while grading: {}')\n"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["!pip install x\n", "import os\n"], [SKIP.format("!pip install x"), "import os\n"]),
        (
            ["for i in range(2):\n", "    !echo {i}\n"],
            ["for i in range(2):\n", "    " + SKIP.format("!echo {i}")],
        ),
        (["x = !ls\n", "%sx ls\n"], ["x = []\n", SKIP.format("%sx ls")]),
        (
            ["%pip install a \\\n", "    b\n", "c = 1\n"],
            [SKIP.format("%pip install a \\\\"), "\n", "c = 1\n"],
        ),
        (["%%bash\n", "ls\n"], [SKIPPED_CELL]),
        (["%matplotlib inline\n", "y = a % b\n", "z = a != b\n"], None),
        (["%time f()\n", "len?\n"], None),
        # choices: what IPython reads as a shell line, the kernel skips too
        (["\n", "%%bash\n", "ls\n"], [SKIPPED_CELL]),  # a cell magic after blank lines
        (["self.out = !ls\n", "a, b = %system ls\n"], ["self.out = []\n", "a, b = []\n"]),
        (["s = '''\n", "!not shell\n", "'''\n"], None),  # inside a string
        (["x = [1,\n", "%sx]\n"], None),  # inside brackets
    ],
)
def test_neutralise_shell(lines: list[str], expected: list[str] | None) -> None:
    assert neutralise_shell(lines) == (lines if expected is None else expected)


SHELL_LINES = [
    "!ls",
    "  !!ls",
    "x = !ls",
    "a.b, c[0] = !ls",
    "%pip install x",
    "%conda list",
    "%system ls",
    "files = %sx ls",
    "!pip3 install x",
    "!apt-get install y",
]
INSTALL_LINES = [
    "!pip install x",
    "! pip install x",
    "%pip install x",
    "%conda install y",
    "!conda install y",
    "!apt-get install y",
    "!pip3 install x",
]
NOT_SHELL = [
    "%matplotlib inline",
    "%time f()",
    "%pipx",
    "y = a % b",
    "z = a != b",
    "x = y  # !not",
    "'%s' % x",
]


def test_the_grammar_nests_installs_in_shell_lines_in_ipython_lines() -> None:
    assert all(SHELL_LINE.match(line) and is_ipython_line(line) for line in SHELL_LINES)
    assert all(INSTALL_LINE.match(line) and SHELL_LINE.match(line) for line in INSTALL_LINES)
    assert not [line for line in NOT_SHELL if SHELL_LINE.match(line) or INSTALL_LINE.match(line)]
    assert SHELL_CELL.match("%%bash") and SHELL_CELL.match("  %%script bash")
    assert not SHELL_CELL.match("%%capture")


def test_the_static_analysis_reads_every_shell_line_as_ipython() -> None:
    code, replaced = neutralise_magics("\n".join(SHELL_LINES))
    assert [line.strip() for line in code.split("\n")] == ["pass"] * len(SHELL_LINES)
    assert replaced == list(range(1, len(SHELL_LINES) + 1))


def test_every_line_the_kernel_skips_is_noted_to_the_student() -> None:
    """A choice: ``%system`` and ``%sx`` lines, and assignments to attributes or tuples,
    are skipped while grading, so the student is told, as for ``!`` lines."""
    quiet = ["%time f()", "%pipx", "y = a % b", "z = a != b"]
    cells = [nbformat.v4.new_code_cell(line) for line in [*SHELL_LINES, *quiet]]
    notes = find_notes(nbformat.v4.new_notebook(cells=cells))
    noted = {note.cell: note.text for note in notes}
    assert sorted(noted) == list(range(len(SHELL_LINES)))
    installs = [i for i, line in enumerate(SHELL_LINES) if INSTALL_LINE.match(line)]
    assert [i for i, text in noted.items() if text == PIP_NOTE] == installs
    assert {text for text in noted.values()} == {PIP_NOTE, SHELL_NOTE}


# --- the habits installed in a real IPython shell ---------------------------------------

HABITS_RUN = """
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
shell.run_cell(LOADER + f"_grader_module('_grader_habits', {TEXT}).install()\\n"
               + "del _grader_module")
assert "_grader_habits" in sys.modules
shell.run_cell(LOADER + f"probe = _grader_module('_grader_probe', {PROBE})")
assert sys.modules["_grader_probe"] is shell.user_ns.pop("probe")  # install not called: no Keras
assert "keras" not in sys.modules and sys.modules["_grader_probe"].Settings
shell.user_ns.pop("_grader_module")
assert not [name for name in shell.user_ns if "grader" in name]
shell.run_cell("x = !echo hi\\nprint('x is', x)\\n!echo shell ran")
shell.run_cell("\\n%%bash\\necho shell ran")
shell.run_cell("from google.colab import drive\\nprint(drive.mount('/content/drive'))")
"""


def test_the_habits_cell_skips_shell_lines_in_a_real_ipython_shell() -> None:
    """The loader runs each kernel module as a module of its own: the notebook's globals
    gain no name, and shell lines and cells print a note instead of running."""
    texts = f"TEXT = {module_text(habits)!r}\nPROBE = {module_text(kernel_probe)!r}\n"
    script = f"import sys\nLOADER = {LOADER!r}\n" + texts + HABITS_RUN
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "x is []",
        "[grader] skipped while grading: !echo shell ran",
        "[grader] shell cell skipped while grading",
        "[grader] Google Drive is not mounted while grading: the course's data is served at "
        "the Drive path the notebook names",
        "{}",
    ]
