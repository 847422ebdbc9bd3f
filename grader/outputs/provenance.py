"""What graded each row, and whether a class was graded under one setting or several.

Every stored result carries its :attr:`~grader.results.SubmissionResult.provenance`:
the rubric's digest, the mode, the asset kit, the reference's figures and grader's
version and code. A class regraded in parts (one late notebook, a student named with
``--student``) may hold rows graded under different ones: the spreadsheets give each
row a short ``graded_under`` label and the class page says which rows differ.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from grader.results import SubmissionResult

LABEL_CHARS = 8
UNRECORDED = "unrecorded"
"""The label of a row stored before rows carried their provenance."""
SHOWN_FIELDS = ("mode", "rubric", "kit", "reference", "grader")
"""The fields the class page names, in this order (digests shortened)."""
SHORT_DIGEST = 12
KEPT_WHOLE = 24
"""A value this short (a mode, grader's ``version+digest``) is shown whole."""


@dataclass
class Setting:
    """One set of grading inputs, and the students graded under it."""

    label: str
    """A short label of the provenance (:func:`label`)."""
    provenance: dict[str, str]
    """The provenance itself."""
    students: list[str] = field(default_factory=list)
    """Who was graded under it, sorted."""

    def described(self) -> str:
        """The setting in one line, digests shortened."""
        if not self.provenance:
            return "not recorded (graded by an earlier grader)"
        parts = [
            f"{name} {_short(self.provenance[name])}"
            for name in SHOWN_FIELDS
            if self.provenance.get(name)
        ]
        return ", ".join(parts)


def label(provenance: dict[str, str]) -> str:
    """A short, stable label for one provenance; :data:`UNRECORDED` for none."""
    if not provenance:
        return UNRECORDED
    text = json.dumps(provenance, sort_keys=True, ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:LABEL_CHARS]


def settings(results: list[SubmissionResult]) -> list[Setting]:
    """The class's settings, the most common first (one when the class is consistent)."""
    found: dict[str, Setting] = {}
    for result in results:
        name = label(result.provenance)
        found.setdefault(name, Setting(name, dict(result.provenance))).students.append(
            result.student
        )
    for setting in found.values():
        setting.students.sort()
    return sorted(found.values(), key=lambda s: (-len(s.students), s.label))


def _short(value: str) -> str:
    """A digest cut to :data:`SHORT_DIGEST` characters; a word (a mode) as it is."""
    head, _, tail = value.partition(":")
    if tail:  # the reference: '<key>:<accuracy>'
        return f"{head[:SHORT_DIGEST]} (accuracy {tail})"
    return value if len(value) <= KEPT_WHOLE else value[:SHORT_DIGEST]
