"""Rubric files: TOML, validated on load into :class:`Rubric`.

A wrong key or type is a :class:`~grader.errors.RubricError` naming the file and the
key (``rubric.toml: checks[2].points: expected a number, got 'two'``). Paths inside a
rubric are relative to the rubric file.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.errors import RubricError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

KNOWN_CHECKS = ("include_top_false", "base_frozen", "augmentation", "pooling_head", "accuracy")
SECTIONS = {"assignment", "limits", "quick", "reference", "data", "checks"}
NUMBER = (int, float)


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


@dataclass(frozen=True)
class Limits:
    """Time limits for one notebook."""

    cell_timeout_s: float = 240.0
    """Seconds one cell may run before it is interrupted."""
    notebook_timeout_s: float = 900.0
    """Seconds all cells of one notebook may run together."""


@dataclass(frozen=True)
class QuickMode:
    """Caps applied by the probe in quick mode."""

    max_epochs: int = 2
    """Epochs per ``fit`` call (counted from ``initial_epoch``)."""
    max_steps_per_epoch: int = 10
    """Training batches per epoch."""
    max_validation_steps: int = 3
    """Batches per validation pass and per ``evaluate``."""


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
    """Time limits."""
    quick: QuickMode = field(default_factory=QuickMode)
    """Quick-mode caps."""
    reference_notebook: Path | None = None
    """The reference solution, resolved against the rubric's folder."""
    keras_home: Path | None = None
    """A real Keras cache (models/, datasets/); None means the offline asset kit."""
    holdout: Path | None = None
    """Hidden holdout images (class sub-folders); None means the kit's."""
    digest: str = ""
    """SHA-256 of the rubric file's bytes (part of cache keys)."""

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
    try:
        raw_bytes = path.read_bytes()
    except OSError as exc:
        raise RubricError(name, "", f"cannot read the rubric ({exc.strerror})") from exc
    try:
        raw = tomllib.loads(raw_bytes.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RubricError(name, "", f"not valid TOML ({exc})") from exc
    _no_unknown(name, "", raw, SECTIONS)
    base = path.parent
    section = _table(name, raw, "assignment")
    _no_unknown(name, "assignment", section, {"title"})
    reference = _table(name, raw, "reference")
    _no_unknown(name, "reference", reference, {"notebook"})
    data = _table(name, raw, "data")
    _no_unknown(name, "data", data, {"keras_home", "holdout"})
    reference_notebook = _path(name, base, "reference.notebook", reference.get("notebook"))
    if reference_notebook is not None and not reference_notebook.is_file():
        raise RubricError(name, "reference.notebook", f"no such notebook: {reference_notebook}")
    return Rubric(
        path=path,
        title=_get(name, "assignment.title", section, "title", str, "Assignment"),
        checks=_checks(name, raw.get("checks")),
        limits=_dataclass_from(name, raw, "limits", Limits),
        quick=_dataclass_from(name, raw, "quick", QuickMode),
        reference_notebook=reference_notebook,
        keras_home=_path(name, base, "data.keras_home", data.get("keras_home")),
        holdout=_path(name, base, "data.holdout", data.get("holdout")),
        digest=hashlib.sha256(raw_bytes).hexdigest(),
    )


def _table(name: str, raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise RubricError(name, key, f"expected a table, got {value!r}")
    return value


def _no_unknown(name: str, where: str, table: dict[str, Any], allowed: set[str]) -> None:
    for key in table:
        if key not in allowed:
            full = f"{where}.{key}" if where else key
            raise RubricError(
                name, full, f"unknown key (expected one of: {', '.join(sorted(allowed))})"
            )


def _get(name: str, full: str, table: dict[str, Any], key: str, kind: Any, default: Any) -> Any:
    value = table.get(key, default)
    bad_bool = kind in (NUMBER, int) and isinstance(value, bool)
    if not isinstance(value, kind) or bad_bool:
        expected = {str: "a string", bool: "true or false", int: "an integer"}.get(kind, "a number")
        raise RubricError(name, full, f"expected {expected}, got {value!r}")
    return value


def _dataclass_from(name: str, raw: dict[str, Any], key: str, cls: type) -> Any:
    table = _table(name, raw, key)
    defaults = cls()
    allowed = set(cls.__dataclass_fields__)
    _no_unknown(name, key, table, allowed)
    values = {}
    for field_name in allowed:
        default = getattr(defaults, field_name)
        kind = int if isinstance(default, int) else NUMBER
        value = _get(name, f"{key}.{field_name}", table, field_name, kind, default)
        if value <= 0:
            raise RubricError(name, f"{key}.{field_name}", f"must be positive, got {value!r}")
        values[field_name] = value
    return cls(**values)


def _checks(name: str, raw: Any) -> tuple[CheckSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise RubricError(name, "checks", "expected at least one [[checks]] table")
    allowed = set(CheckSpec.__dataclass_fields__)
    checks: list[CheckSpec] = []
    for i, table in enumerate(raw):
        where = f"checks[{i}]"
        if not isinstance(table, dict):
            raise RubricError(name, where, f"expected a [[checks]] table, got {table!r}")
        _no_unknown(name, where, table, allowed)
        check_id = _get(name, f"{where}.id", table, "id", str, None)
        if check_id not in KNOWN_CHECKS:
            raise RubricError(
                name,
                f"{where}.id",
                f"unknown check {check_id!r} (known: {', '.join(KNOWN_CHECKS)})",
            )
        if check_id in {c.id for c in checks}:
            raise RubricError(name, f"{where}.id", f"check {check_id!r} appears twice")
        for key in ("tolerance", "floor", "mismatch"):
            value = table.get(key, 0.5)
            if isinstance(value, NUMBER) and not 0 <= value < 1:
                raise RubricError(name, f"{where}.{key}", f"must be between 0 and 1, got {value!r}")
        points = _get(name, f"{where}.points", table, "points", NUMBER, None)
        if points < 0:
            raise RubricError(name, f"{where}.points", f"must not be negative, got {points!r}")
        checks.append(
            CheckSpec(
                id=check_id,
                title=_get(name, f"{where}.title", table, "title", str, check_id),
                points=float(points),
                hint=_get(name, f"{where}.hint", table, "hint", str, ""),
                hidden=_get(name, f"{where}.hidden", table, "hidden", bool, False),
                tolerance=float(_get(name, f"{where}.tolerance", table, "tolerance", NUMBER, 0.05)),
                floor=float(_get(name, f"{where}.floor", table, "floor", NUMBER, 0.5)),
                mismatch=float(_get(name, f"{where}.mismatch", table, "mismatch", NUMBER, 0.2)),
                model_variable=_get(
                    name, f"{where}.model_variable", table, "model_variable", str, ""
                ),
                unverified_credit=_get(
                    name, f"{where}.unverified_credit", table, "unverified_credit", bool, False
                ),
            )
        )
    return tuple(checks)


def _path(name: str, base: Path, key: str, value: Any) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise RubricError(name, key, f"expected a path string, got {value!r}")
    return (base / value).resolve()
