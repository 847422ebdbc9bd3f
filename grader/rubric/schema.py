"""Rubric files: TOML, validated on load into :class:`Rubric`.

A wrong key or type is a :class:`~grader.errors.RubricError` naming the file and the
key (``rubric.toml: checks[2].points: expected a number, got 'two'``). Paths inside a
rubric are relative to the rubric file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.errors import RubricError, map_dependency_errors, strerror
from grader.intake.copies import DEFAULT_THRESHOLD
from grader.rubric.limits import Limits
from grader.rubric.published import PUBLISHED_KEYS, PUBLISHED_RUNS, published_runs
from grader.rubric.tomlfields import (
    NUMBER,
    count,
    dataclass_from,
    folders,
    fraction,
    no_unknown,
    path_value,
    strings,
    subtable,
    typed_fields,
    value_of,
)
from grader.run.dataroutes import MOUNT_ROOTS, system_folder

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

KNOWN_CHECKS = ("include_top_false", "base_frozen", "augmentation", "pooling_head", "accuracy")
SECTIONS = {
    "assignment",
    "limits",
    "quick",
    "check",
    "reference",
    "data",
    "checks",
    "late",
    "intake",
}
KIND_CODE, KIND_WRITTEN = "code", "written"
AUGMENTATION_ROUTES = ("model", "pipeline", "generator")
"""Where augmentation may be done: layers in the trained model, the ``tf.data``
pipeline's ``map``, an ``ImageDataGenerator`` with augmentation arguments feeding ``fit``."""
FRACTION_FIELDS = ("tolerance", "floor", "mismatch")
"""Accuracy bands: each a fraction from 0 up to (not including) 1."""
WRITTEN_FIELDS = ("hint", "hidden")
CODE_FIELDS = (*WRITTEN_FIELDS, *FRACTION_FIELDS, "model_variable", "unverified_credit")
"""The optional fields of a written and of a code check: each is read typed like its
default in :class:`CheckSpec`, and is that default when absent."""


@dataclass(frozen=True)
class CheckSpec:
    """One check of the rubric."""

    id: str
    """Which check function decides it (one of ``KNOWN_CHECKS``)."""
    title: str
    """Short title shown in reports."""
    points: float
    """Points for a full pass."""
    hint: str = ""
    """Shown to the student when the check fails."""
    hidden: bool = False
    """Run only in batch grading; never shown by a self-check."""
    tolerance: float = 0.05
    """accuracy: full points at or above reference minus this."""
    floor: float = 0.5
    """accuracy: zero points at or below this accuracy."""
    mismatch: float = 0.2
    """accuracy: a self-reported figure this far from the measured one is flagged."""
    unverified_credit: bool = False
    """accuracy: whether a self-reported figure earns credit when the model cannot be measured."""
    model_variable: str = ""
    """accuracy: the notebook variable holding the model to measure (default: last trained)."""
    routes: tuple[str, ...] = AUGMENTATION_ROUTES
    """augmentation: the routes that count (a course may refuse ``generator``)."""
    kind: str = "code"
    """``code`` (a structural or accuracy check) or ``written`` (a free-text answer)."""
    question: str = ""
    """written: the heading or question the answer follows (matched tolerantly)."""
    concepts: tuple[tuple[str, ...], ...] = ()
    """written: the concepts a good answer covers, each as its phrasings or synonyms."""
    aliases: tuple[str, ...] = ()
    """written: other headings the answer may sit under (e.g. ``Freezing``)."""


@dataclass(frozen=True)
class LatePolicy:
    """When a submission is due and what lateness costs."""

    due: _dt.datetime | None = None
    """The deadline (timezone-aware; a time without a zone is read as UTC)."""
    grace_minutes: float = 0.0
    """Minutes after ``due`` that still count as on time."""
    penalty_per_day: float = 0.1
    """Share of the maximum score lost per started day late."""
    max_penalty: float = 1.0
    """The largest share of the maximum score lateness can cost."""
    name_time_pattern: str = (
        r"[^/]*?_[^_/]+_attempt_(?P<time>\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2})(?=[_.])"
    )
    """Where an LMS file name carries the submission time: a regex with a ``time`` group,
    matched from the name's start, so it describes the part the LMS writes before the
    student's own file name (default: ``{assignment}_{user}_attempt_{time}_{file}``).
    A date the student puts in their own file name is never read."""
    name_time_format: str = "%Y-%m-%d-%H-%M-%S"
    """How that time is written (``strptime``), read as UTC."""


LATE_FIELDS = tuple(f for f in LatePolicy.__dataclass_fields__ if f != "due")
"""``[late]``'s fields read like ``CODE_FIELDS`` (``due`` is parsed on its own)."""


@dataclass(frozen=True)
class QuickMode:
    """Caps applied by the probe in quick mode."""

    max_epochs: int = 4
    """Epochs per ``fit`` call (counted from ``initial_epoch``)."""
    max_steps_per_epoch: int = 10
    """Training batches per epoch. With ``max_epochs``, the first ``fit``'s budget: 40
    steps, twice what a correct head at the tutorial's learning rate (1e-4) needed on
    the kit in every seed measured (see :mod:`grader.kit.build`)."""
    max_validation_steps: int = 1
    """Batches per validation pass and per ``evaluate``."""
    later_fit_steps: int = 2
    """Training batches per epoch in the second and later ``fit`` calls (fine-tuning at
    a tenth of the rate moves the figure little, and its steps cost twice a head's);
    0: ``max_steps_per_epoch``."""
    eager_steps: int = 0
    """A ``fit`` capped at this many steps or fewer runs eagerly: for a couple of steps,
    tracing the training step costs more than it saves. 0: never."""
    holdout_images: int = 0
    """The evaluator measures this many holdout images, spread evenly (0: all)."""


SELF_CHECK_CAPS = QuickMode(eager_steps=1, holdout_images=128)
"""``grader check``'s caps (``[check]``): quick mode's training budget (a head that has
not converged tells a student nothing: 20 steps left even the reference at chance on
unlucky seeds), one-batch validations run eagerly, 128 holdout images."""


@dataclass(frozen=True)
class IntakeConfig:
    """How submissions from an LMS are identified and compared (``[intake]``)."""

    patterns: tuple[str, ...] = ()
    """Regexes with a named group ``student``, matched (``re.search``) against each
    file's path relative to the submissions folder or archive, ``/``-separated; tried
    before the built-in Canvas and Moodle patterns."""
    copy_threshold: float = DEFAULT_THRESHOLD
    """Code similarity (above 0, at most 1) from which two students' notebooks are
    flagged as a possible copy; byte-identical files always are."""


@dataclass(frozen=True)
class Rubric:
    """A validated rubric."""

    path: Path
    """The TOML file it was read from."""
    title: str
    """The assignment's title."""
    checks: tuple[CheckSpec, ...]
    """Checks in the order they are reported."""
    limits: Limits = field(default_factory=Limits)
    """Time, memory, process, file-size and output limits for each notebook (``[limits]``)."""
    quick: QuickMode = field(default_factory=QuickMode)
    """``--quick`` caps (``[quick]``)."""
    selfcheck: QuickMode = SELF_CHECK_CAPS
    """The student self-check's caps (``[check]``)."""
    reference_notebook: Path | None = None
    """The reference solution, resolved against the rubric's folder."""
    keras_home: Path | None = None
    """A real Keras cache (models/, datasets/); None means the offline asset kit."""
    holdout: Path | None = None
    """Hidden holdout images (class sub-folders); None means the kit's."""
    mounts: tuple[str, ...] = MOUNT_ROOTS
    """Drive and Kaggle folders under which the course's data is served where a notebook
    names it (``[data] mounts``; empty: none)."""
    digest: str = ""
    """SHA-256 of the rubric file's bytes (part of cache keys)."""
    late: LatePolicy | None = None
    """The deadline and late penalty (``[late]``); None: no penalty."""
    published_accuracy: dict[str, float] = field(default_factory=dict)
    """The reference's accuracy per mode, published for students who have no reference
    notebook (``[reference] check_accuracy`` / ``full_accuracy`` / ``quick_accuracy``)."""
    published_runs: dict[str, list[dict[str, float | int | None]]] = field(default_factory=dict)
    """Per mode, the reference's runs behind the published figure, as stored runs are
    (``seed``, ``final``, ``head``): the band a student is compared with, as in grading."""
    hidden_checks: int = 0
    """Checks left out of this rubric that grading runs (``[assignment] hidden_checks``,
    written by ``grader publish student``): counted for the student, never named."""
    intake: IntakeConfig = field(default_factory=IntakeConfig)
    """Student-id patterns and the copy threshold (``[intake]``)."""
    canvas_id: int | None = None
    """The assignment's id in Canvas (``[assignment] canvas_id``, the number in its
    address): canvas.csv's column is then ``Title (id)``, matched by id, not by title."""

    @property
    def check_ids(self) -> list[str]:
        return [c.id for c in self.checks]

    @property
    def max_score(self) -> float:
        return float(sum(c.points for c in self.checks))


def load_rubric(path: str | Path) -> Rubric:
    """Read and validate a rubric file."""
    path = Path(path)
    name = str(path)
    with map_dependency_errors(
        "rubric", lambda exc: RubricError(name, "", f"cannot read the rubric ({strerror(exc)})")
    ):
        raw_bytes = path.read_bytes()
    with map_dependency_errors(
        "rubric", lambda exc: RubricError(name, "", f"not valid TOML ({exc})")
    ):
        raw = tomllib.loads(raw_bytes.decode("utf-8"))
    no_unknown(name, "", raw, SECTIONS)
    base = path.parent
    section = subtable(name, raw, "assignment")
    no_unknown(name, "assignment", section, {"title", "canvas_id", "hidden_checks"})
    reference = subtable(name, raw, "reference")
    run_keys = {f"{mode}_{run}" for mode in PUBLISHED_KEYS for run in PUBLISHED_RUNS}
    no_unknown(name, "reference", reference, {"notebook", *PUBLISHED_KEYS.values(), *run_keys})
    data = subtable(name, raw, "data")
    no_unknown(name, "data", data, {"keras_home", "holdout", "mounts"})
    reference_notebook = path_value(name, base, "reference.notebook", reference.get("notebook"))
    if reference_notebook is not None and not reference_notebook.is_file():
        raise RubricError(name, "reference.notebook", f"no such notebook: {reference_notebook}")
    return Rubric(
        path=path,
        title=value_of(name, "assignment.title", section, "title", str, "Assignment"),
        canvas_id=value_of(name, "assignment.canvas_id", section, "canvas_id", int, 0) or None,
        hidden_checks=count(name, "assignment.hidden_checks", section.get("hidden_checks", 0)),
        checks=_checks(name, raw.get("checks")),
        limits=dataclass_from(name, raw, "limits", Limits),
        quick=dataclass_from(name, raw, "quick", QuickMode),
        selfcheck=dataclass_from(name, raw, "check", QuickMode, SELF_CHECK_CAPS),
        reference_notebook=reference_notebook,
        keras_home=path_value(name, base, "data.keras_home", data.get("keras_home")),
        holdout=path_value(name, base, "data.holdout", data.get("holdout")),
        mounts=folders(name, "data.mounts", data.get("mounts", list(MOUNT_ROOTS)), system_folder),
        digest=hashlib.sha256(raw_bytes).hexdigest(),
        late=_late(name, raw),
        published_accuracy={
            mode: fraction(name, f"reference.{key}", reference[key])
            for mode, key in PUBLISHED_KEYS.items()
            if key in reference
        },
        published_runs=published_runs(name, reference),
        intake=_intake(name, raw),
    )


def _checks(name: str, raw: Any) -> tuple[CheckSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise RubricError(name, "checks", "expected at least one [[checks]] table")
    checks: list[CheckSpec] = []
    for i, table in enumerate(raw):
        where = f"checks[{i}]"
        if not isinstance(table, dict):
            raise RubricError(name, where, f"expected a [[checks]] table, got {table!r}")
        no_unknown(name, where, table, set(CheckSpec.__dataclass_fields__))
        check_id = value_of(name, f"{where}.id", table, "id", str, None)
        kind = value_of(name, f"{where}.kind", table, "kind", str, KIND_CODE)
        if kind not in (KIND_CODE, KIND_WRITTEN):
            raise RubricError(name, f"{where}.kind", f"expected 'code' or 'written', got {kind!r}")
        taken = {c.id for c in checks} | (set(KNOWN_CHECKS) if kind == KIND_WRITTEN else set())
        if kind == KIND_CODE and check_id not in KNOWN_CHECKS:
            known = ", ".join(KNOWN_CHECKS)
            raise RubricError(name, f"{where}.id", f"unknown check {check_id!r} (known: {known})")
        if check_id in taken:
            raise RubricError(name, f"{where}.id", f"check {check_id!r} appears twice")
        make = _written if kind == KIND_WRITTEN else _code
        checks.append(make(name, where, table, check_id))
    return tuple(checks)


def _code(name: str, where: str, table: dict[str, Any], check_id: str) -> CheckSpec:
    """A structural or accuracy check: its points and, for accuracy, its bands."""
    for key in FRACTION_FIELDS:
        value = table.get(key, 0.0)
        if isinstance(value, NUMBER) and not 0 <= value < 1:
            raise RubricError(name, f"{where}.{key}", f"must be between 0 and 1, got {value!r}")
    routes = strings(name, f"{where}.routes", table.get("routes", list(AUGMENTATION_ROUTES)))
    if not set(routes) <= set(AUGMENTATION_ROUTES):
        known = ", ".join(AUGMENTATION_ROUTES)
        raise RubricError(name, f"{where}.routes", f"expected some of {known}, got {routes!r}")
    return CheckSpec(
        id=check_id,
        title=value_of(name, f"{where}.title", table, "title", str, check_id),
        points=_points(name, where, table),
        routes=tuple(routes),
        **typed_fields(name, where, table, CheckSpec, CODE_FIELDS),
    )


def _points(name: str, where: str, table: dict[str, Any]) -> float:
    points = value_of(name, f"{where}.points", table, "points", NUMBER, None)
    if points < 0:
        raise RubricError(name, f"{where}.points", f"must not be negative, got {points!r}")
    return float(points)


def _written(name: str, where: str, table: dict[str, Any], check_id: str) -> CheckSpec:
    """A free-text answer check: its question and the concepts a good answer covers."""
    question = value_of(name, f"{where}.question", table, "question", str, None)
    concepts = table.get("concepts")
    valid = (
        isinstance(concepts, list)
        and concepts
        and all(
            isinstance(c, list) and c and all(isinstance(p, str) and p.strip() for p in c)
            for c in concepts
        )
    )
    if not valid:
        raise RubricError(
            name, f"{where}.concepts", "expected a list of concepts, each a list of phrasings"
        )
    points = value_of(name, f"{where}.points", table, "points", NUMBER, None)
    if points < 0 or not question.strip():
        raise RubricError(name, where, "a written check needs a question and points >= 0")
    return CheckSpec(
        id=check_id,
        title=value_of(name, f"{where}.title", table, "title", str, question),
        points=float(points),
        **typed_fields(name, where, table, CheckSpec, WRITTEN_FIELDS),
        kind=KIND_WRITTEN,
        question=question,
        concepts=tuple(tuple(p.strip() for p in c) for c in concepts),
        aliases=tuple(strings(name, f"{where}.aliases", table.get("aliases", []))),
    )


def _late(name: str, raw: dict[str, Any]) -> LatePolicy | None:
    table = subtable(name, raw, "late")
    if not table:
        return None
    no_unknown(name, "late", table, set(LatePolicy.__dataclass_fields__))
    due = table.get("due")
    if isinstance(due, str):
        text = due
        with map_dependency_errors(
            "rubric", lambda _: RubricError(name, "late.due", f"not an ISO date and time: {text!r}")
        ):
            due = _dt.datetime.fromisoformat(text)
    if not isinstance(due, _dt.datetime):
        raise RubricError(name, "late.due", "expected a date and time, e.g. 2026-11-20T23:59:00Z")
    if due.tzinfo is None:
        due = due.replace(tzinfo=_dt.timezone.utc)
    policy = LatePolicy(due=due, **typed_fields(name, "late", table, LatePolicy, LATE_FIELDS))
    for key in LATE_FIELDS:
        if isinstance(getattr(policy, key), float) and getattr(policy, key) < 0:
            raise RubricError(name, f"late.{key}", "must not be negative")
    return policy


def _intake(name: str, raw: dict[str, Any]) -> IntakeConfig:
    """The ``[intake]`` section: student-id patterns and the copy threshold."""
    table = subtable(name, raw, "intake")
    no_unknown(name, "intake", table, set(IntakeConfig.__dataclass_fields__))
    patterns = strings(name, "intake.patterns", table.get("patterns", []))
    for i, pattern in enumerate(patterns):
        key = f"intake.patterns[{i}]"
        with map_dependency_errors(
            "rubric", lambda exc, key=key: RubricError(name, key, f"not a valid regex ({exc})")
        ):
            regex = re.compile(pattern)
        if "student" not in regex.groupindex:
            raise RubricError(name, key, "needs a named group (?P<student>...)")
    threshold = value_of(
        name, "intake.copy_threshold", table, "copy_threshold", NUMBER, DEFAULT_THRESHOLD
    )
    if not 0 < threshold <= 1:
        raise RubricError(
            name, "intake.copy_threshold", f"must be above 0 and at most 1, got {threshold!r}"
        )
    return IntakeConfig(patterns=tuple(patterns), copy_threshold=float(threshold))
