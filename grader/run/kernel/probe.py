"""The runtime probe, inside the student's kernel: what every Keras model was and did.

At every ``compile``/``fit``/``evaluate`` of a Keras model it appends a JSON line to
``events.jsonl`` in the probe folder: the model's layer tree (class, name, trainable,
parameter counts, nested models), the optimizer and learning rate, ``evaluate``'s
metrics. ``fit`` is recorded before training (the model *as it was at the fit* is known
even if training is cut short) and ``fit_end`` after it, with epochs and history; then
the model is saved (``last_model.keras``). Every record is sealed
(:mod:`grader.run.kernel.seal`): numbered, signed with a key the probe reads and deletes
before the student's code runs; a save's record carries the file's digest; a first and
a last record bound them. Quick mode caps epochs and steps and runs a call of a step or
two eagerly (tracing would cost more); Python, NumPy and Keras are seeded so a notebook
graded twice trains the same way. It runs as its file's text in a namespace of its own
(the kernel cannot import grader); :func:`install` imports NumPy and Keras.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any, TypedDict

EVENTS_FILE = "events.jsonl"
MODEL_FILE = "last_model.keras"
FIT_MODEL_FILE = "fit_{n}.keras"
"""The model as it was after the n-th ``fit`` (kept only when ``keep_fits`` is set)."""
TREE_DEPTH = 4
"""Nested models are described this many levels down."""


class Settings(TypedDict):
    """The probe's settings, as the orchestrator writes them into the cell."""

    dir: str
    quick: bool
    max_epochs: int
    max_steps_per_epoch: int
    max_validation_steps: int
    later_steps: int
    eager_steps: int
    build_first: bool
    seed: int
    keep_fits: bool


def weights_count(weights: Iterable[Any]) -> int:
    """The number of values in these weights."""
    return int(sum(int(math.prod(w.shape)) for w in weights))


def layer_tree(layer: Any, layer_type: type, depth: int = 0, trains: Any = None) -> dict:
    """A layer and, for a model, its layers (``layer_type`` ones), as JSON-ready dicts.
    Trainable parameters: the weights a fit of the (trainable) root trains, each whose own
    flag is set, also under a frozen parent (its ``trainable_weights`` is then empty)."""
    weights, trains = list(layer.weights), layer.trainable if trains is None else trains
    trained = [w for w in weights if bool(trains) and bool(getattr(w, "trainable", False))]
    node: dict[str, Any] = {
        "class": type(layer).__name__,
        "name": layer.name,
        "trainable": bool(layer.trainable),
        "params_trainable": weights_count(trained),
        "params_non_trainable": weights_count(weights) - weights_count(trained),
    }
    if isinstance(getattr(layer, "units", None), int):
        node["units"] = int(layer.units)
    children = getattr(layer, "layers", None)
    if isinstance(children, (list, tuple)) and depth < TREE_DEPTH:
        node["layers"] = [
            layer_tree(child, layer_type, depth + 1, trains)
            for child in children
            if isinstance(child, layer_type)
        ]
    return node


def loss_info(loss: Any) -> dict[str, Any]:
    """The compiled loss: class, name (as text or a function's), ``from_logits``."""
    by_name = isinstance(loss, str) or inspect.isfunction(loss)
    return {
        "class": type(loss).__name__ if loss is not None else None,
        "name": (loss if isinstance(loss, str) else loss.__name__) if by_name else None,
        "from_logits": getattr(loss, "from_logits", None),
    }


def floats(values: Iterable[Any]) -> list[float | None]:
    """Each value as a float, or None where it is not a number."""
    return [number(value) for value in values]


def number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def cap(bound: inspect.BoundArguments, key: str, limit: int, offset: int = 0) -> None:
    """At most ``offset + limit`` for this argument (that much when it is unset)."""
    current = bound.arguments.get(key)
    bound.arguments[key] = offset + limit if current is None else min(current, offset + limit)


def batches(data: Any) -> int | None:
    """Batches in a tf.data dataset: None when unknown or not a dataset, -1 if infinite."""
    try:
        return int(data.cardinality())
    except Exception:
        return None


def cap_steps(bound: inspect.BoundArguments, key: str, data: Any, limit: int) -> None:
    """Cap steps the student asked for; add a cap only where Keras can honour it."""
    n = batches(data)
    if bound.arguments.get(key) is not None or (n is not None and (n > limit or n == -1)):
        cap(bound, key, limit)


def known_steps(bound: inspect.BoundArguments, key: str, data: Any) -> int | None:
    """The steps a call will run: the cap, else the data's own batches when known."""
    n = bound.arguments.get(key) or batches(data)
    return n if n is not None and n > 0 else None


def cap_fit(bound: inspect.BoundArguments, settings: Settings, later: bool) -> int | None:
    """Quick mode's caps on a ``fit`` call's arguments (``later``: not the kernel's first
    fit); returns the validation steps each epoch will run, when known."""
    steps = settings["max_steps_per_epoch"]
    if later and settings["later_steps"]:
        steps = settings["later_steps"]
    cap(bound, "epochs", settings["max_epochs"], bound.arguments.get("initial_epoch") or 0)
    cap_steps(bound, "steps_per_epoch", bound.arguments.get("x"), steps)
    validation = bound.arguments.get("validation_data")
    if validation is not None:
        cap_steps(bound, "validation_steps", validation, settings["max_validation_steps"])
    return known_steps(bound, "validation_steps", validation)


def build_before_tracing(model: Any, data: Any) -> None:
    """Make the optimizer's, metrics' and loss's variables before fit traces its step.

    Without a distribution strategy Keras makes them inside the first trace, and
    TensorFlow then traces the whole step again (seconds for a MobileNetV2 model);
    under a strategy Keras builds them first itself, the same way.
    """
    spec = getattr(data, "element_spec", None)
    if spec is None or model.run_eagerly or getattr(model, "train_function", 1) is not None:
        return
    if getattr(model, "_distribute_strategy", None) is not None:
        return  # Keras builds them itself, in the strategy's scope
    try:
        model._symbolic_build(data_batch=spec)
    except Exception:
        pass  # fit builds them as it always does


def save_atomically(model: Any, target: str) -> None:
    """Write beside, then rename: an interrupted save never leaves half a file."""
    model.save(target + ".part.keras")
    os.replace(target + ".part.keras", target)


def metrics_result(model: Any) -> dict[str, float | None]:
    """The metrics of the model's last evaluation, by name ({} when unreadable)."""
    try:
        values = model.get_metrics_result()
        return dict(zip(values, floats(values.values()), strict=False))
    except Exception:
        return {}


def append_event(path: str, entry: dict[str, Any]) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(entry, default=str) + "\n")


class Probe:
    """The probe in one kernel: its settings, Keras's own methods, what it has seen."""

    def __init__(
        self, settings: Settings, keras: Any, namespace: dict[str, Any], seal: ModuleType
    ) -> None:
        self.settings = settings
        self.keras = keras
        self.namespace = namespace
        """The notebook's globals, where :meth:`save_named` finds the model."""
        self.events = os.path.join(settings["dir"], EVENTS_FILE)
        self.model_path = os.path.join(settings["dir"], MODEL_FILE)
        self.seal = seal.sealer(settings["dir"])
        self.digest = seal.file_digest
        self.model_digest: str | None = None
        """The digest of the model file last saved (each save's record carries it)."""
        self.fitting = False
        self.fits = 0
        self.validation_steps: int | None = None
        self.keras_compile = keras.Model.compile
        self.keras_fit = keras.Model.fit
        self.keras_evaluate = keras.Model.evaluate
        self.fit_signature = inspect.signature(self.keras_fit)
        self.evaluate_signature = inspect.signature(self.keras_evaluate)

    def mark(self, event: str, **extra: str) -> None:
        """A bare record: the first (installed) and the last (closed), see the seal."""
        append_event(self.events, self.seal({"event": event, "time": time.time(), **extra}))

    def record(self, kind: str, model: Any, **extra: Any) -> None:
        """Append one event; best effort: the probe must never break the student's call."""
        try:
            entry = {
                "event": kind,
                "time": time.time(),
                "model": layer_tree(model, self.keras.Layer),
                "optimizer": self.optimizer_info(model),
                **extra,
            }
            append_event(self.events, self.seal(entry))
        except Exception as exc:
            kept = {k: v for k, v in extra.items() if k == "model_sha256"}  # the save stands
            try:
                failed = {"event": kind, "probe_error": repr(exc), **kept}
                append_event(self.events, self.seal(failed))
            except Exception:
                pass

    def optimizer_info(self, model: Any) -> dict[str, Any] | None:
        opt = getattr(model, "optimizer", None)
        if opt is None:
            return None
        try:
            lr: float | None = float(self.keras.ops.convert_to_numpy(opt.learning_rate))
        except Exception:
            lr = None
        return {"class": type(opt).__name__, "learning_rate": lr}

    def compile(self, model: Any, *args: Any, **kwargs: Any) -> Any:
        result = self.keras_compile(model, *args, **kwargs)
        self.record("compile", model, loss=loss_info(getattr(model, "loss", None)))
        return result

    def fit(self, model: Any, *args: Any, **kwargs: Any) -> Any:
        """Record the fit, train (capped in quick mode), record its end, save the model."""
        bound = self.fit_signature.bind(model, *args, **kwargs)
        bound.apply_defaults()
        requested = bound.arguments.get("epochs")
        eager = self.cap_fit(model, bound)
        self.fits += 1
        self.record(
            "fit",
            model,
            epochs_requested=requested,
            epochs=bound.arguments.get("epochs"),
            initial_epoch=bound.arguments.get("initial_epoch") or 0,
        )
        history = self.train(model, bound, eager)
        self.record(
            "fit_end",
            model,
            epochs_run=len(getattr(history, "epoch", [])),
            history={k: floats(v) for k, v in getattr(history, "history", {}).items()},
            saved=self.save(model),
            model_sha256=self.model_digest,
        )
        return history

    def cap_fit(self, model: Any, bound: inspect.BoundArguments) -> bool:
        """Quick mode's caps; True when the capped fit is short enough to run eagerly."""
        if not self.settings["quick"]:
            return False
        self.validation_steps = cap_fit(bound, self.settings, later=self.fits > 0)
        capped = bound.arguments.get("steps_per_epoch")
        return (
            capped is not None
            and capped <= self.settings["eager_steps"]
            and not model.run_eagerly
            and getattr(model, "train_function", 1) is None
        )

    def train(self, model: Any, bound: inspect.BoundArguments, eager: bool) -> Any:
        """Keras's own fit; an eager one leaves the model as the student had it."""
        self.fitting = True
        if eager:  # a step or two: tracing the step would cost more than it saves
            model.run_eagerly = True
        try:
            if self.settings["build_first"] and not eager:
                build_before_tracing(model, bound.arguments.get("x"))
            return self.keras_fit(*bound.args, **bound.kwargs)
        finally:
            self.fitting = False
            if eager:  # as the student left it: later calls trace as usual
                model.run_eagerly = False
                model.train_function = model.test_function = model.predict_function = None

    def save(self, model: Any) -> str:
        """Save the trained model (and, when asked, a copy named for this fit, so each
        phase can be measured); what was saved, or why not."""
        try:
            self.model_digest = None
            save_atomically(model, self.model_path)
            self.model_digest = self.digest(self.model_path)
            if self.settings.get("keep_fits"):
                kept = os.path.join(self.settings["dir"], FIT_MODEL_FILE.format(n=self.fits))
                shutil.copyfile(self.model_path, kept)
            return MODEL_FILE
        except Exception as exc:
            return f"not saved: {type(exc).__name__}: {exc}"

    def run_few(self, model: Any, call: Callable[[], Any], steps: int | None) -> Any:
        """Run an evaluation of a step or two eagerly, then leave the model as it was."""
        few = self.settings["quick"] and steps and steps <= self.settings["eager_steps"]
        if not few or model.run_eagerly:
            return call()
        traced, model.test_function, model.run_eagerly = model.test_function, None, True
        try:
            return call()
        finally:  # as it was: the traced function, if any, is used again
            model.run_eagerly, model.test_function = False, traced

    def evaluate(self, model: Any, *args: Any, **kwargs: Any) -> Any:
        """Evaluate (capped in quick mode) and record the metrics; fit's own validation
        pass is not recorded (fit records it)."""
        if self.fitting:
            return self.run_few(
                model, lambda: self.keras_evaluate(model, *args, **kwargs), self.validation_steps
            )
        bound = self.evaluate_signature.bind(model, *args, **kwargs)
        bound.apply_defaults()
        data = bound.arguments.get("x")
        if self.settings["quick"]:
            cap_steps(bound, "steps", data, self.settings["max_validation_steps"])
        result = self.run_few(
            model,
            lambda: self.keras_evaluate(*bound.args, **bound.kwargs),
            known_steps(bound, "steps", data),
        )
        self.record("evaluate", model, metrics=metrics_result(model))
        return result

    def save_named(self, name: str) -> None:
        """The rubric names the model to measure: save that variable's model instead."""
        model = self.namespace.get(name)
        if isinstance(model, self.keras.Model):
            self.model_digest = None
            save_atomically(model, self.model_path)
            self.model_digest = self.digest(self.model_path)
            self.record("named_model", model, variable=name, model_sha256=self.model_digest)


def wrapping(original: Callable[..., Any], method: Callable[..., Any]) -> Callable[..., Any]:
    """A stand-in for Keras's ``original`` method that calls the probe's ``method``."""

    @functools.wraps(original)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        return method(self, *args, **kwargs)

    wrapper.__signature__ = inspect.signature(original)  # type: ignore[attr-defined]
    del wrapper.__wrapped__  # left by functools.wraps: a way round the probe's caps
    return wrapper


def install(
    settings: Settings, namespace: dict[str, Any], seal: ModuleType
) -> Callable[[str], None]:
    """Seed, wrap ``keras.Model``'s compile, fit and evaluate; returns ``save_named``
    (the notebook's last, injected cell calls it when the rubric names the model).
    ``seal`` is :mod:`grader.run.kernel.seal`, run as a module of its own."""
    import keras
    import numpy as np

    random.seed(settings["seed"])
    np.random.seed(settings["seed"])
    keras.utils.set_random_seed(settings["seed"])
    probe = Probe(settings, keras, namespace, seal)
    probe.mark(seal.INSTALLED)
    seal.CLOSING[:] = [lambda nonce: probe.mark(seal.CLOSED, **{seal.NONCE_KEY: nonce})]
    for name in ("compile", "fit", "evaluate"):
        original, method = getattr(probe, f"keras_{name}"), getattr(probe, name)
        wrap_everywhere(keras.Model, name, wrapping(original, method))

    def save_named(name: str) -> None:
        probe.save_named(name)

    return save_named


def wrap_everywhere(model: type, name: str, wrapper: Callable[..., Any]) -> None:
    """Put ``wrapper`` in place of ``name`` on ``model`` and on every class it inherits
    the method from (Keras's backend trainer, its base trainer), so that calling the
    trainer's own method on a model is recorded and capped too."""
    for cls in model.__mro__:
        if name in vars(cls) and cls is not object:
            setattr(cls, name, wrapper)
    setattr(model, name, wrapper)
