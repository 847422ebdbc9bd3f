"""The runtime probe: code injected into the student's kernel as a tagged cell.

At every ``compile``/``fit``/``evaluate`` of any Keras model it appends one JSON line
to ``events.jsonl`` in the probe folder: the model's layer tree (class, name,
trainable, parameter counts, nested models), the optimizer and learning rate, and for
``evaluate`` the metrics. ``fit`` is recorded before training starts (so the model *as
it was at the fit* is known even if training is interrupted) and ``fit_end`` after it,
with the epochs run and the history; then the model is saved (``last_model.keras``).
In quick mode it caps epochs and steps. It also seeds Python, NumPy and Keras so that
a notebook graded twice trains the same way.

This module only holds the probe's source and the functions that add and remove its
cell; it never imports TensorFlow itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

PROBE_TAG = "grader-probe"
EVENTS_FILE = "events.jsonl"
MODEL_FILE = "last_model.keras"
SEED = 1234

PROBE_SOURCE = r'''
def _grader_probe_install(cfg):
    import functools, inspect, json, os, random, time
    import numpy as np
    import keras

    random.seed(cfg["seed"]); np.random.seed(cfg["seed"])
    keras.utils.set_random_seed(cfg["seed"])
    events = os.path.join(cfg["dir"], "events.jsonl")
    state = {"fitting": False, "fits": 0}

    def weights_count(weights):
        return int(sum(int(np.prod(w.shape)) for w in weights))

    def tree(layer, depth=0):
        node = {"class": type(layer).__name__, "name": layer.name,
                "trainable": bool(layer.trainable),
                "params_trainable": weights_count(layer.trainable_weights),
                "params_non_trainable": weights_count(layer.non_trainable_weights)}
        if isinstance(getattr(layer, "units", None), int):
            node["units"] = int(layer.units)
        children = getattr(layer, "layers", None)
        if isinstance(children, (list, tuple)) and depth < 4:
            node["layers"] = [tree(c, depth + 1) for c in children if isinstance(c, keras.Layer)]
        return node

    def optimizer_info(model):
        opt = getattr(model, "optimizer", None)
        if opt is None:
            return None
        try:
            lr = float(keras.ops.convert_to_numpy(opt.learning_rate))
        except Exception:
            lr = None
        return {"class": type(opt).__name__, "learning_rate": lr}

    def floats(values):
        out = []
        for v in values:
            try:
                out.append(float(v))
            except (TypeError, ValueError):
                out.append(None)
        return out

    def record(kind, model, **extra):
        try:  # best effort: the probe must never break the student's own call
            entry = {"event": kind, "time": time.time(), "model": tree(model),
                     "optimizer": optimizer_info(model), **extra}
            with open(events, "a") as fh:
                fh.write(json.dumps(entry, default=str) + "\n")
        except Exception as exc:
            try:
                with open(events, "a") as fh:
                    fh.write(json.dumps({"event": kind, "probe_error": repr(exc)}) + "\n")
            except Exception:
                pass

    def cap(bound, key, limit, offset=0):
        current = bound.arguments.get(key)
        bound.arguments[key] = offset + limit if current is None else min(current, offset + limit)

    def batches(data):
        """Batches in a tf.data dataset: None when unknown or not a dataset, -1 if infinite."""
        try:
            return int(data.cardinality())
        except Exception:
            return None

    def cap_steps(bound, key, data, limit):
        """Cap steps the student asked for; add a cap only where Keras can honour it."""
        n = batches(data)
        if bound.arguments.get(key) is not None or (n is not None and (n > limit or n == -1)):
            cap(bound, key, limit)

    def known_steps(bound, key, data):
        """The steps a call will run: the cap, else the data's own batches when known."""
        n = bound.arguments.get(key) or batches(data)
        return n if n is not None and n > 0 else None

    def build_before_tracing(model, data):
        """Make the optimizer's, metrics' and loss's variables before fit traces its step.
        Without a distribution strategy Keras makes them inside the first trace, and
        TensorFlow then traces the whole step again (seconds for a MobileNetV2 model);
        under a strategy Keras builds them first itself, the same way."""
        spec = getattr(data, "element_spec", None)
        if spec is None or model.run_eagerly or getattr(model, "train_function", 1) is not None:
            return
        if getattr(model, "_distribute_strategy", None) is not None:
            return  # Keras builds them itself, in the strategy's scope
        try:
            model._symbolic_build(data_batch=spec)
        except Exception:
            pass  # fit builds them as it always does

    orig_compile, orig_fit = keras.Model.compile, keras.Model.fit
    orig_evaluate = keras.Model.evaluate
    fit_sig, eval_sig = inspect.signature(orig_fit), inspect.signature(orig_evaluate)

    @functools.wraps(orig_compile)
    def compile(self, *args, **kwargs):
        result = orig_compile(self, *args, **kwargs)
        loss = getattr(self, "loss", None)
        record("compile", self, loss={"class": type(loss).__name__ if loss is not None else None,
                                      "name": loss if isinstance(loss, str) else None,
                                      "from_logits": getattr(loss, "from_logits", None)})
        return result

    @functools.wraps(orig_fit)
    def fit(self, *args, **kwargs):
        bound = fit_sig.bind(self, *args, **kwargs)
        bound.apply_defaults()
        requested = bound.arguments.get("epochs")
        eager = False
        if cfg["quick"]:
            steps = cfg["later_steps"] if state["fits"] and cfg["later_steps"] else cfg["max_steps"]
            cap(bound, "epochs", cfg["max_epochs"], bound.arguments.get("initial_epoch") or 0)
            cap_steps(bound, "steps_per_epoch", bound.arguments.get("x"), steps)
            val = bound.arguments.get("validation_data")
            if val is not None:
                cap_steps(bound, "validation_steps", val, cfg["max_validation_steps"])
            state["validation_steps"] = known_steps(bound, "validation_steps", val)
            capped = bound.arguments.get("steps_per_epoch")
            eager = (capped is not None and capped <= cfg["eager_steps"] and not self.run_eagerly
                     and getattr(self, "train_function", 1) is None)
        state["fits"] += 1
        record("fit", self, epochs_requested=requested, epochs=bound.arguments.get("epochs"),
               initial_epoch=bound.arguments.get("initial_epoch") or 0)
        state["fitting"] = True
        if eager:  # a step or two: tracing the step would cost more than it saves
            self.run_eagerly = True
        try:
            if cfg["build_first"] and not eager:
                build_before_tracing(self, bound.arguments.get("x"))
            history = orig_fit(*bound.args, **bound.kwargs)
        finally:
            state["fitting"] = False
            if eager:  # as the student left it: later calls trace as usual
                self.run_eagerly = False
                self.train_function = self.test_function = self.predict_function = None
        hist = {k: floats(v) for k, v in getattr(history, "history", {}).items()}
        target = os.path.join(cfg["dir"], "last_model.keras")
        try:  # write beside, then rename: an interrupted save never leaves half a file
            self.save(target + ".part.keras")
            os.replace(target + ".part.keras", target)
            saved = "last_model.keras"
        except Exception as exc:
            saved = "not saved: %s: %s" % (type(exc).__name__, exc)
        record("fit_end", self, epochs_run=len(getattr(history, "epoch", [])), history=hist,
               saved=saved)
        return history

    def run_few(model, call, steps):
        """Run an evaluation of a step or two eagerly, then leave the model as it was."""
        if not (cfg["quick"] and steps and steps <= cfg["eager_steps"]) or model.run_eagerly:
            return call()
        traced, model.test_function, model.run_eagerly = model.test_function, None, True
        try:
            return call()
        finally:  # as it was: the traced function, if any, is used again
            model.run_eagerly, model.test_function = False, traced

    @functools.wraps(orig_evaluate)
    def evaluate(self, *args, **kwargs):
        if state["fitting"]:  # the validation pass inside fit: fit records it
            return run_few(self, lambda: orig_evaluate(self, *args, **kwargs),
                           state.get("validation_steps"))
        bound = eval_sig.bind(self, *args, **kwargs)
        bound.apply_defaults()
        if cfg["quick"]:
            cap_steps(bound, "steps", bound.arguments.get("x"), cfg["max_validation_steps"])
        result = run_few(self, lambda: orig_evaluate(*bound.args, **bound.kwargs),
                         known_steps(bound, "steps", bound.arguments.get("x")))
        try:
            values = self.get_metrics_result()
            metrics = dict(zip(values, floats(values.values())))
        except Exception:
            metrics = {}
        record("evaluate", self, metrics=metrics)
        return result

    keras.Model.compile, keras.Model.fit, keras.Model.evaluate = compile, fit, evaluate

    def save_named(name):
        """The rubric names the model to measure: save that variable's model instead."""
        model = globals().get(name)
        if isinstance(model, keras.Model):
            target = os.path.join(cfg["dir"], "last_model.keras")
            model.save(target + ".part.keras")
            os.replace(target + ".part.keras", target)
            record("named_model", model, variable=name)

    globals()["_grader_save_named"] = save_named

def _grader_habits_install():
    """Colab/Jupyter habits cost no crash: shell lines print a note, google.colab is inert."""
    import re, sys, types

    shell = re.compile(r"^(\s*)(\w+\s*=\s*)?(!|%pip\b|%conda\b|%system\b|%sx\b)")
    shell_cell = re.compile(r"^\s*%%(bash|sh|script|system)\b")

    def neutralise(lines):
        if lines and shell_cell.match(lines[0]):
            return ["print('[grader] shell cell skipped while grading')\n"]
        out, continued = [], False
        for line in lines:
            match = None if continued else shell.match(line)
            if continued or match:
                if match:
                    indent, target = match.group(1), match.group(2) or ""
                    note = "[grader] skipped while grading: " + line.strip()[:100]
                    out.append(indent + (target + "[]" if target else "print(%r)" % note) + "\n")
                else:
                    out.append("\n")
                continued = line.rstrip("\n").endswith("\\")
            else:
                out.append(line)
        return out

    get_ipython().input_transformers_cleanup.insert(0, neutralise)

    def say(text):
        def inert(*args, **kwargs):
            print("[grader] " + text)
            return {}
        return inert

    colab = types.ModuleType("google.colab")
    drive = types.ModuleType("google.colab.drive")
    files = types.ModuleType("google.colab.files")
    drive.mount = say("Google Drive is not mounted while grading")
    drive.flush_and_unmount = say("Google Drive is not mounted while grading")
    files.upload = say("files.upload() returns nothing while grading")
    files.download = say("files.download() skipped while grading")
    colab.drive, colab.files = drive, files
    sys.modules.update({"google.colab": colab, "google.colab.drive": drive,
                        "google.colab.files": files})
    try:
        import google
        google.colab = colab
    except ImportError:
        pass

_grader_habits_install()
_grader_probe_install(__GRADER_CONFIG__)
del _grader_probe_install, _grader_habits_install
'''


@dataclass(frozen=True)
class ProbeConfig:
    """What the probe needs to know inside the kernel."""

    dir: Path
    """Folder the kernel writes events and the saved model into."""
    quick: bool = False
    """Cap epochs and steps."""
    max_epochs: int = 2
    max_steps: int = 10
    max_validation_steps: int = 3
    later_steps: int = 0
    """Steps per epoch from the second ``fit`` on (0: ``max_steps``)."""
    eager_steps: int = 0
    """Run a ``fit`` capped at this many steps or fewer eagerly (0: never)."""
    build_first: bool = True
    """Make the optimizer's and metrics' variables before a ``fit`` traces its step, so
    TensorFlow traces it once (False: as Keras alone does, twice; a benchmark's baseline)."""
    seed: int = SEED
    model_variable: str | None = None
    """Measure the model in this notebook variable instead of the last one trained."""


def probe_cell(config: ProbeConfig) -> nbformat.NotebookNode:
    """The tagged code cell that installs the probe."""
    cfg = {
        "dir": str(config.dir),
        "quick": config.quick,
        "max_epochs": config.max_epochs,
        "max_steps": config.max_steps,
        "max_validation_steps": config.max_validation_steps,
        "later_steps": config.later_steps,
        "eager_steps": config.eager_steps,
        "build_first": config.build_first,
        "seed": config.seed,
    }
    source = PROBE_SOURCE.replace("__GRADER_CONFIG__", repr(cfg)).strip()
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = [PROBE_TAG]
    return cell


def inject(nb: nbformat.NotebookNode, config: ProbeConfig) -> nbformat.NotebookNode:
    """A copy of ``nb`` with the probe cell first (and, when the rubric names the model to
    measure, a last cell saving that variable's model)."""
    copy = nbformat.from_dict(nb)
    copy.cells.insert(0, probe_cell(config))
    if config.model_variable:
        final = nbformat.v4.new_code_cell(f"_grader_save_named({config.model_variable!r})")
        final.metadata["tags"] = [PROBE_TAG]
        copy.cells.append(final)
    return copy


def is_probe(cell: nbformat.NotebookNode) -> bool:
    return PROBE_TAG in cell.get("metadata", {}).get("tags", [])


def strip(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Remove the probe cells (the stored notebook is the student's own)."""
    nb.cells = [cell for cell in nb.cells if not is_probe(cell)]
    return nb


def read_events(probe_dir: Path) -> list[dict[str, Any]]:
    """The events the probe recorded; unreadable lines are skipped."""
    path = probe_dir / EVENTS_FILE
    if not path.exists():
        return []
    events = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict):
            events.append(entry)
    return events
