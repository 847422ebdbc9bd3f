"""Written answers: find each concept question's answer in the markdown and pre-score it.

No automatic check can grade a free-text answer alone, so these verdicts are
pre-scores for the instructor: the share of the rubric's concepts the answer covers,
always marked ``review_suggested``.

Finding the answer: the markdown cells are split into sections at heading-like lines:
``#`` headings, a line opening in bold (``**Fine-tuning** - ...``), a numbered item
(``2. Fine tuning = ...``, ``Q3: ...``). The section whose heading is most like the
rubric's question or one of its aliases (content words, tolerant of numbering,
punctuation, plurals and word order; a heading saying much else besides is less like
it) is the answer, up to the next heading.
A concept is covered when any of its phrasings appears in the answer, word by word,
each word matched on its stem (``freezing`` matches ``freeze``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import nbformat

from grader.checks.facts import verdict
from grader.results import SOURCE_STATIC, CheckResult, Evidence
from grader.rubric.schema import CheckSpec

MATCH_THRESHOLD = 0.5
"""Share of the question's content words a heading must contain to be its answer."""
THIN_WORDS = 25
MARKDOWN_HEADING = re.compile(r"^\s*#{1,6}\s+(.+)$")
BOLD_LEAD = re.compile(r"^\s*\*\*(.+?)\*\*\s*[:.\-\u2013\u2014]*\s*(.*)$")
NUMBERED = re.compile(r"^\s*(?:\d{1,2}|[Qq]\d{1,2})[.):]\s+(.+)$")
SEPARATOR = re.compile(r"\s*(=|:|\s-\s|\u2013|\u2014)\s*")
LABEL_WORDS = 5
WORD = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset(
    "a an and are as at be by do does for from how i in is it its of on or our the this "
    "to use used using we what when where which who why with you your".split()
)
SUFFIXES = ("ization", "ation", "ings", "ing", "ies", "ied", "ed", "es", "s", "ly")
MSG_MISSING = "No answer found under a heading like {question!r}."
MSG_COVERED = "The answer covers {n} of {total} expected concepts{detail}; please review."
MSG_THIN = " It is short ({words} words)."


@dataclass
class Section:
    """A heading and the markdown under it, up to the next heading."""

    heading: str
    text: str
    cell: int


def stem(word: str) -> str:
    """A crude stem, the same on both sides: ``overfitting`` and ``overfit`` meet."""
    for suffix in SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiouls":
                word = word[:-1]  # overfitt -> overfit, stopp -> stop
            break
    return word[:-1] if word.endswith("e") and len(word) > 4 else word


def words(text: str) -> list[str]:
    return [stem(w) for w in WORD.findall(text.lower())]


def content_words(text: str) -> set[str]:
    return {stem(w) for w in WORD.findall(text.lower()) if w not in STOPWORDS and not w.isdigit()}


def sections(nb: nbformat.NotebookNode) -> list[Section]:
    """Every heading-like line of the markdown cells with the text that follows it."""
    found: list[Section] = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        for line in str(cell.source).splitlines():
            started = _heading(line)
            if started:
                found.append(Section(heading=started[0], text=started[1] + "\n", cell=index))
            elif found:
                found[-1].text += line + "\n"
    return found


def _heading(line: str) -> tuple[str, str] | None:
    """(heading, start of the answer) when ``line`` opens a section, else None."""
    if match := MARKDOWN_HEADING.match(line):
        return match.group(1).strip(" #*"), ""
    if match := BOLD_LEAD.match(line):
        return match.group(1).strip(" .:"), match.group(2)
    if match := NUMBERED.match(line):
        item = match.group(1)
        label, separator, rest = _split_label(item)
        return (label, rest) if separator else (" ".join(item.split()[:LABEL_WORDS]), item)
    return None


def _split_label(item: str) -> tuple[str, str, str]:
    match = SEPARATOR.search(item)
    if match and len(item[: match.start()].split()) <= LABEL_WORDS:
        return item[: match.start()], match.group(0), item[match.end() :]
    return item, "", ""


def find_answer(nb: nbformat.NotebookNode, spec: CheckSpec) -> Section | None:
    """The section whose heading best matches the question or one of its aliases.

    A heading may answer a phrasing when it holds more than half of that phrasing's
    content words. Of those, the best match of heading and phrasing wins (the harmonic
    mean of the two shares of content words they have in common: a reader takes "4. Why
    use data augmentation" over "7. Take a screenshot of the data augmentation layers
    defined in the model", and "Q1. What is transfer learning, how is it different from
    training from scratch?" over a notebook's title "Transfer learning and
    fine-tuning"), then the share of all the phrasing's words, then the later heading.
    Headings with no text under them (a section of code cells) are not answers.
    """
    best, best_score = None, (0.0, 0.0)
    for section in (s for s in sections(nb) if s.text.strip()):  # a heading over code only
        heading_content, heading_all = content_words(section.heading), set(words(section.heading))
        for phrasing in (spec.question, *spec.aliases):
            wanted, every = content_words(phrasing), set(words(phrasing))
            shared = len(wanted & heading_content)
            if shared / (len(wanted) or 1) <= MATCH_THRESHOLD:
                continue
            score = (
                2 * shared / (len(wanted) + len(heading_content)),
                len(every & heading_all) / (len(every) or 1),
            )
            if score >= best_score:
                best, best_score = section, score
    return best


def covers(answer: list[str], phrasing: str) -> bool:
    """Whether the stemmed words of ``phrasing`` appear in order, next to each other."""
    target = words(phrasing)
    n = len(target)
    return bool(target) and any(answer[i : i + n] == target for i in range(len(answer) - n + 1))


def check_written(spec: CheckSpec, nb: nbformat.NotebookNode) -> CheckResult:
    """The pre-scored verdict of one written item (never "passed" without review)."""
    section = find_answer(nb, spec)
    if section is None or not section.text.strip():
        message = MSG_MISSING.format(question=spec.question)
        return verdict(spec, message, SOURCE_STATIC, [], score=0.0, review=True)
    answer = words(section.text)
    covered = [c for c in spec.concepts if any(covers(answer, p) for p in c)]
    share = len(covered) / len(spec.concepts)
    detail = f" ({', '.join(c[0] for c in covered)})" if covered else ""
    message = MSG_COVERED.format(n=len(covered), total=len(spec.concepts), detail=detail)
    if len(answer) < THIN_WORDS:
        message += MSG_THIN.format(words=len(answer))
    evidence = [Evidence(kind="text", text=section.text.strip()[:2000], cell=section.cell)]
    score = round(share * spec.points, 2)
    return verdict(spec, message, SOURCE_STATIC, evidence, score=score, review=True)
