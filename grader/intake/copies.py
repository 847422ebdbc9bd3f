"""Copy detection: byte-identical and near-identical notebooks across students.

Two notebooks are compared twice:

* **bytes** - the same SHA-256 is always a match (``identical``, similarity 1.0);
* **code** - the code cells' source only (outputs and markdown are ignored), as one
  stream of tokens: comments, blank lines, whitespace, quote style and cell
  boundaries drop out, and every name the notebook defines itself (variables,
  functions, parameters, ``as`` aliases) becomes one placeholder, so that renaming
  variables changes nothing. The stream is cut into overlapping runs of
  :data:`SHINGLE_TOKENS` tokens; the similarity is the Jaccard index of the two sets
  of runs (shared runs / all runs).

A notebook whose JSON cannot be read is compared byte-wise only, and so is one with
very little code (fewer than :data:`MIN_SHINGLES` runs): two untouched templates are
not evidence of copying. Pairs are found with a prefix filter (see
:func:`_candidates`), so a class of 300 takes about a second, mostly tokenising.

Reading the code is linear in its length whatever it holds (an unclosed string, a
thousand unclosed ``def f(``), reads at most :data:`MAX_CODE_CHARS` of each notebook,
and stops after :data:`BUDGET_S` seconds for the class: notebooks not read by then are
compared byte-wise only, so copy detection can never hold up a class's outputs.

Calibration (``tests/test_similarity.py``): the 13 sample students and the reference
solution, all written from the same course template, reach at most 0.855 pairwise;
:data:`DEFAULT_THRESHOLD` is 0.9. Copies score 1.0 when only outputs, whitespace,
comments, cell boundaries or markdown change; 0.94-0.97 with the quotes and two
hyperparameters changed; 0.95-1.0 with seven variables renamed; 0.92-0.95 with all
of that at once. A copy edited as much as two honest tutorial-followers differ (a
handful of changed statements) is not flagged: the flag is for review, not a verdict.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import time
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

FLAG_POSSIBLE_COPY = "possible_copy"
DEFAULT_THRESHOLD = 0.9
SHINGLE_TOKENS = 7
MIN_SHINGLES = 20
MAX_NAMED = 3
MAX_CODE_CHARS = 1_000_000
"""Code read per notebook (the course's notebooks hold about 20 000 characters)."""
BUDGET_S = 60.0
"""Seconds to read a class's code; the notebooks left are compared byte-wise only."""
MSG_PREFIX = "possible copy: "
MSG_IDENTICAL = "identical to {other}'s file"
MSG_SAME_CODE = "same code as {other}'s (only outputs, markdown, comments, layout or names differ)"
MSG_SIMILAR = "code {percent}% similar to {other}'s"
MSG_MORE = "and {count} more"

TOKEN = re.compile(
    r"""
    (?P<string>[rRbBuUfF]{0,2}
        (?:'''(?:\\.?|[^\\])*?(?:'''|\Z)|\"\"\"(?:\\.?|[^\\])*?(?:\"\"\"|\Z)
          |'(?:\\.?|[^'\\\n])*(?:'|(?=\n)|\Z)|"(?:\\.?|[^"\\\n])*(?:"|(?=\n)|\Z)))
    |(?P<comment>\#[^\n]*)
    |(?P<word>\w+)
    |(?P<space>\s+)
    |(?P<op>.)
    """,
    re.VERBOSE | re.DOTALL,
)
"""One token of Python source (also of code that does not parse). A string that is
never closed runs to the end of its line (triple-quoted: of the source), so that no
input makes the scan go back: it is linear in the source's length."""
STRING_BODY = re.compile(r"""^[rRbBuUfF]{0,2}('''|\"\"\"|'|")(?P<body>.*)\1$""", re.DOTALL)
NAME_LIST = r"[A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*"
DEFINITION = re.compile(
    rf"""^[ \t]*\(?(?P<assigned>{NAME_LIST})\)?[ \t]*=(?!=)
    |\bfor\s+\(?(?P<loop>{NAME_LIST})\)?\s+in\b
    |\b(?:def|class)\s+(?P<defined>\w+)(?:\s*\((?P<params>[^)]{0, 2000})\))?
    |\bas\s+(?P<alias>\w+)""",
    re.VERBOSE | re.MULTILINE,
)
"""Where code names something: assignment targets, loop variables, functions, classes,
their parameters and ``as`` aliases (a regex, so that code that does not parse counts)."""
PARAMETER = re.compile(r"^[\s*]*([A-Za-z_]\w*)")
PLACEHOLDER = "\x00name"
"""What every name the notebook defines becomes: renaming variables changes nothing."""


@dataclass
class Match:
    """Another student whose notebook looks like a copy of this one."""

    other: str
    """The other student's identifier."""
    similarity: float
    """How alike the two notebooks' code is, 0..1 (1.0 for byte-identical files)."""
    identical: bool
    """Whether the two files are byte-identical."""


def find_copies(
    notebooks: Mapping[str, bytes],
    threshold: float = DEFAULT_THRESHOLD,
    budget_s: float = BUDGET_S,
) -> dict[str, list[Match]]:
    """Every student whose notebook matches another's, with those matches.

    ``notebooks`` maps student id to the notebook file's raw bytes; ``threshold``
    (0 < threshold <= 1) is the code similarity from which two notebooks match. The
    result maps each student with at least one match to its matches, most similar
    first (then identical files first, then by id); students without one are absent.
    Code is read for ``budget_s`` seconds at most (then byte-wise only).
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be above 0 and at most 1, got {threshold!r}")
    students = sorted(notebooks)
    found: dict[str, list[Match]] = {}
    identical = _identical_pairs(students, notebooks)
    for first, second in sorted(identical):
        _record(found, first, second, 1.0, True)
    shingles = _shingles_within(students, notebooks, budget_s)
    comparable = [s for s in students if len(shingles[s]) >= MIN_SHINGLES]
    for first, second in sorted(_candidates(comparable, shingles, threshold) - identical):
        score = jaccard(shingles[first], shingles[second])
        if score >= threshold:
            _record(found, first, second, score, False)
    for matches in found.values():
        matches.sort(key=lambda m: (-m.similarity, not m.identical, m.other))
    return found


def _shingles_within(
    students: list[str], notebooks: Mapping[str, bytes], budget_s: float
) -> dict[str, frozenset[int]]:
    """Each notebook's shingles, read until ``budget_s`` is spent (then none: byte-wise)."""
    deadline = time.monotonic() + budget_s
    shingles = {}
    for student in students:
        late = time.monotonic() >= deadline
        shingles[student] = frozenset() if late else code_shingles(notebooks[student])
    return shingles


def _record(
    found: dict[str, list[Match]], first: str, second: str, score: float, identical: bool
) -> None:
    found.setdefault(first, []).append(Match(second, score, identical))
    found.setdefault(second, []).append(Match(first, score, identical))


def _identical_pairs(students: list[str], notebooks: Mapping[str, bytes]) -> set[tuple[str, str]]:
    """Pairs (in id order) of students whose files have the same SHA-256."""
    groups: dict[str, list[str]] = {}
    for student in students:
        groups.setdefault(hashlib.sha256(notebooks[student]).hexdigest(), []).append(student)
    return {pair for group in groups.values() for pair in itertools.combinations(group, 2)}


def _candidates(
    students: list[str], shingles: Mapping[str, frozenset[int]], threshold: float
) -> set[tuple[str, str]]:
    """Pairs (in id order) that may reach ``threshold``: a superset of those that do.

    Prefix filtering: order all shingles rarest first; two sets with a Jaccard index of
    at least t share one of the first ``n - ceil(t * n) + 1`` shingles of each (n: the
    set's size). Template code shared by the whole class sorts last, so honest pairs
    rarely become candidates and most of the class's n² pairs are never compared.
    """
    frequency = Counter(h for student in students for h in shingles[student])
    index: dict[int, list[str]] = {}
    pairs: set[tuple[str, str]] = set()
    for student in students:  # sorted, so every earlier student's id is smaller
        ordered = sorted(shingles[student], key=lambda h: (frequency[h], h))
        prefix = len(ordered) - math.ceil(threshold * len(ordered) - 1e-9) + 1
        for h in ordered[:prefix]:
            bucket = index.setdefault(h, [])
            pairs.update((other, student) for other in bucket)
            bucket.append(student)
    return pairs


def jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    """Shared elements over all elements (0.0 when either set is empty)."""
    if not a or not b:
        return 0.0
    shared = len(a & b)
    return shared / (len(a) + len(b) - shared)


def similarity(first: bytes, second: bytes) -> float:
    """How alike two notebook files are: 1.0 when byte-identical, else code Jaccard."""
    if first == second:
        return 1.0
    return jaccard(code_shingles(first), code_shingles(second))


def code_shingles(raw: bytes) -> frozenset[int]:
    """Hashes of every run of :data:`SHINGLE_TOKENS` code tokens (empty if unreadable).

    Python's ``hash`` of strings differs between processes: compare shingles made in
    the same process only (the similarities themselves do not depend on it)."""
    sources = code_sources(raw)
    tokens = code_tokens(sources, defined_names(sources))
    if len(tokens) < SHINGLE_TOKENS:
        return frozenset([hash(tuple(tokens))]) if tokens else frozenset()
    return frozenset(
        hash(tuple(tokens[i : i + SHINGLE_TOKENS])) for i in range(len(tokens) - SHINGLE_TOKENS + 1)
    )


def code_sources(raw: bytes) -> list[str]:
    """The code cells' source of a notebook file, read defensively ([] if unreadable)."""
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return []
    if not isinstance(data, dict):
        return []
    cells: Any = data.get("cells")
    if cells is None:  # nbformat 3: cells live in worksheets, source under "input"
        worksheets = data.get("worksheets")
        cells = [
            c
            for w in (worksheets if isinstance(worksheets, list) else [])
            if isinstance(w, dict) and isinstance(w.get("cells"), list)
            for c in w["cells"]
        ]
    if not isinstance(cells, list):
        return []
    sources, left = [], MAX_CODE_CHARS
    for cell in cells:
        if isinstance(cell, dict) and cell.get("cell_type") == "code" and left > 0:
            sources.append(_source(cell)[:left])
            left -= len(sources[-1])
    return sources


def _source(cell: Mapping[str, Any]) -> str:
    value = cell.get("source", cell.get("input", ""))
    if isinstance(value, list):
        return "".join(v for v in value if isinstance(v, str))
    return value if isinstance(value, str) else ""


def defined_names(sources: Iterable[str]) -> set[str]:
    """Names the code defines itself (variables, functions, parameters, aliases)."""
    names: set[str] = set()
    for source in sources:
        for match in DEFINITION.finditer(source):
            for group in ("assigned", "loop", "defined", "alias"):
                if match.group(group):
                    names.update(n.strip() for n in match.group(group).split(","))
            for param in (match.group("params") or "").split(","):
                found = PARAMETER.match(param)
                if found:
                    names.add(found.group(1))
    return names


def code_tokens(sources: Iterable[str], names: Collection[str] = ()) -> list[str]:
    """Code tokens of all cells in order: comments and whitespace dropped, strings
    reduced to their body (``'a'`` and ``"a"`` are one token), and each of ``names``
    replaced by :data:`PLACEHOLDER`."""
    tokens: list[str] = []
    for source in sources:
        for match in TOKEN.finditer(source):
            kind = match.lastgroup
            if kind in ("comment", "space"):
                continue
            text = match.group()
            if kind == "string":
                body = STRING_BODY.match(text)
                text = "'" + (body.group("body") if body else text)
            elif kind == "word" and text in names:
                text = PLACEHOLDER
            tokens.append(text)
    return tokens


def copy_message(matches: list[Match]) -> str:
    """One line for a student's matches, e.g. ``possible copy: identical to s1004's file``."""
    parts = [_describe(m) for m in matches[:MAX_NAMED]]
    if len(matches) > MAX_NAMED:
        parts.append(MSG_MORE.format(count=len(matches) - MAX_NAMED))
    return MSG_PREFIX + "; ".join(parts)


def _describe(match: Match) -> str:
    if match.identical:
        return MSG_IDENTICAL.format(other=match.other)
    if match.similarity >= 1.0:
        return MSG_SAME_CODE.format(other=match.other)
    percent = min(math.floor(match.similarity * 100 + 1e-9), 99)
    return MSG_SIMILAR.format(percent=percent, other=match.other)
