from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from grader.run.kernel import habits as kernel_habits
from grader.run.kernel import probe as kernel_probe
from grader.run.kernel import seal as kernel_seal
from grader.run.kernel.probe import Settings
from grader.run.probe import (
    CLOSE_CALL,
    PROBE_TAG,
    ProbeConfig,
    inject,
    is_probe,
    probe_cell,
    read_events,
    strip,
)


def install_calls(source: str) -> list[ast.Call]:
    """The ``<module>.install(...)`` calls of the probe cell, in order."""
    calls = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)]
    return [c for c in calls if isinstance(c.func, ast.Attribute) and c.func.attr == "install"]


def test_probe_cell_is_valid_python_with_its_config() -> None:
    cell = probe_cell(ProbeConfig(dir=Path("/tmp/p"), quick=True, max_epochs=3))
    assert cell.metadata["tags"] == [PROBE_TAG]
    habits, probe = install_calls(cell.source)
    assert habits.args == []
    config = ast.literal_eval(probe.args[0])
    assert config == {
        "dir": "/tmp/p",
        "quick": True,
        "max_epochs": 3,
        "max_steps_per_epoch": 10,
        "max_validation_steps": 3,
        "later_steps": 0,
        "eager_steps": 0,
        "build_first": True,
        "seed": 1234,
        "keep_fits": False,
    }
    assert set(config) == set(Settings.__annotations__)  # the kernel side's keys


def test_the_probe_cell_carries_every_kernel_module_verbatim() -> None:
    """The cell holds each module's file text as a string constant, which it runs in a
    module of its own: the kernel cannot import grader."""
    source = probe_cell(ProbeConfig(dir=Path("/tmp"))).source
    constants = {
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    modules = (kernel_habits, kernel_probe, kernel_seal)
    texts = [Path(str(m.__file__)).read_text() for m in modules]
    assert all(text in constants for text in texts)
    for text in [*texts, source]:
        imported = [
            name
            for node in ast.walk(ast.parse(text))
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for name in (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            )
        ]
        assert not [name for name in imported if name and name.split(".")[0] == "grader"]


def test_inject_then_strip_gives_back_the_students_cells() -> None:
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("# hi"), nbformat.v4.new_code_cell("x = 1")]
    )
    running = inject(nb, ProbeConfig(dir=Path("/tmp")), nonce="n0")
    assert len(running.cells) == 4 and is_probe(running.cells[0])
    assert running.cells[-1].source == f"{CLOSE_CALL}('n0')" and is_probe(running.cells[-1])
    assert len(nb.cells) == 2  # the original is not modified
    assert strip(running).cells == nb.cells


def test_read_events_skips_garbage(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_text('{"event": "fit"}\nnot json\n[1]\n{"event": "x"}\n')
    assert [e["event"] for e in read_events(tmp_path)] == ["fit", "x"]
    assert read_events(tmp_path / "none") == []


def test_a_named_model_variable_adds_a_final_probe_cell() -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    running = inject(nb, ProbeConfig(dir=Path("/tmp"), model_variable="final_model"))
    assert running.cells[-2].source == "_grader_save_named('final_model')"
    assert is_probe(running.cells[-2]) and running.cells[-1].source.startswith(CLOSE_CALL)
    assert strip(running).cells == nb.cells


TRACE_COUNTING_CELLS = [
    """import numpy as np
import tensorflow as tf
traced, eager_evaluations = [], []
x = np.random.rand(64, 8).astype("float32")
y = (x.sum(axis=1) > 4).astype("float32")
data = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
model = tf.keras.Sequential([tf.keras.Input((8,)), tf.keras.layers.Dense(1)])
model.compile(optimizer="adam", loss="mse", metrics=["mae"])
train_step, test_step = model.train_step, model.test_step
def counting_train_step(batch):
    traced.append(tf.executing_eagerly())
    return train_step(batch)
def noting_test_step(batch):
    eager_evaluations.append(tf.executing_eagerly())
    return test_step(batch)
model.train_step, model.test_step = counting_train_step, noting_test_step""",
    "model.fit(data, epochs=3, verbose=0)\nprint('train_step calls', traced)",
    "model.evaluate(data.take(1), verbose=0)\nprint('eager', eager_evaluations)",
]


@pytest.mark.kernel
@pytest.mark.parametrize(("build_first", "traces"), [(True, "[False]"), (False, "[False, False]")])
def test_a_capped_fit_traces_its_step_once_and_a_one_batch_evaluate_runs_eagerly(
    build_first: bool, traces: str
) -> None:
    """Keras makes the optimizer's and metrics' variables inside the first trace unless
    they exist already, and TensorFlow then traces the step twice; the probe makes them
    first (``build_first=False``: Keras alone). An evaluation of one batch runs eagerly
    (tracing it costs more than it saves)."""
    from grader.kit.assets import ensure_kit
    from grader.run.execute import RunSettings, run_notebook
    from grader.run.sandbox import paths_to_hide

    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(source) for source in TRACE_COUNTING_CELLS]
    )
    config = ProbeConfig(
        dir=Path("."), quick=True, max_steps_per_epoch=4, eager_steps=1, build_first=build_first
    )
    hide = paths_to_hide(Path.home(), Path.cwd())  # as grading does: Python is bound back
    settings = RunSettings(kit=ensure_kit(progress=lambda _: None), probe=config, hide=hide)
    run = run_notebook(nb, "counting.ipynb", settings)
    run.cleanup()
    printed = ["".join(o.get("text", "") for o in c.outputs) for c in run.nb.cells]
    assert run.errors == [], run.errors
    events = [e["event"] for e in run.events]  # sealed in a real kernel, and all accepted
    expected = ["probe_installed", "compile", "fit", "fit_end", "evaluate", "probe_closed"]
    assert (events, run.evidence_forged) == (expected, [])
    assert run.model_path is not None and run.model_path.name == "last_model.keras"
    assert printed[1] == f"train_step calls {traces}\n"  # traced, never run eagerly
    assert printed[2] == "eager [True]\n"
