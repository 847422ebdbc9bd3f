"""Sealed records: the probe's way to tell its own records from lines written by hand.

The orchestrator writes a fresh random key into the probe's folder (:data:`SEAL_FILE`)
before the kernel starts. The probe's first cell runs before any of the student's code:
:func:`sealer` reads the key, deletes the file and keeps the key only in the closure of
the function it returns. That function numbers each record (``seq``) and signs it
(``seal``, an HMAC-SHA256 of the record's canonical text). The orchestrator checks every
line read back with :func:`check` and keeps only those signed with the run's key, in
order, each number once: a line appended to ``events.jsonl`` by the notebook is not the
probe's. The record of every model the probe saves carries the file's digest
(:func:`file_digest`), so a model dropped in its place does not pass either.

This is a cost, not a proof: the key is in the kernel's memory, and a student who reads
this file and digs the key out of the probe's closure can still sign a record. What the
trusted side measures for itself (the evaluator's look at the saved model) and the code
are the cross-checks beyond it.

It runs in the kernel as its file's text (see :mod:`grader.run.probe`) and in the
orchestrator as a module: standard library only (the orchestrator hashes files with
:func:`grader.intake.notebooks.file_digest`; :func:`file_digest` here is the kernel's).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

SEAL_FILE = "seal.key"
"""The run's key in the probe's folder, until the probe has read it."""
SEAL_KEY, SEQ_KEY = "seal", "seq"
"""The two fields the seal adds to a record."""
INSTALLED = "probe_installed"
"""The probe's first record, written as it installs: without it, records were removed."""
CLOSED = "probe_closed"
"""The probe's last record, written by the injected last cell with the run's closing
nonce (in that cell's source alone): records removed before it leave a gap in the
numbers; without it last, with that nonce (the cell having run), the tail was removed."""
NONCE_KEY = "nonce"
DIGEST_KEY = "model_sha256"
"""The field of a save's record (``fit_end``, ``named_model``) with the saved file's digest."""


CLOSING: list[Callable[[str], None]] = []
"""The installed probe's way to write :data:`CLOSED` (set by its ``install``)."""


def close(nonce: str) -> None:
    """The injected last cell calls this (through ``sys.modules``: a notebook that cleared
    its globals with ``%reset -f`` still closes): the probe's closing record."""
    CLOSING[0](nonce)


def canonical(entry: dict[str, Any]) -> bytes:
    """The text a seal signs: the record, keys sorted, as JSON (the same from the line read)."""
    return json.dumps(entry, sort_keys=True, default=str).encode()


def seal_of(key: bytes, entry: dict[str, Any]) -> str:
    return hmac.new(key, canonical(entry), hashlib.sha256).hexdigest()


def sealer(folder: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Read and delete the run's key; a function that numbers and seals one record.
    Without a key (a kernel started by hand, a folder the kernel cannot read) it raises
    :class:`OSError`: the probe fails to install, which the row names as grader's fault,
    rather than signing records no run accepts."""
    path = os.path.join(folder, SEAL_FILE)
    with open(path, "rb") as fh:
        key = fh.read()
    os.unlink(path)
    if not key:
        raise OSError(f"{path}: the run's key is empty")
    numbers = itertools.count(1)

    def seal(entry: dict[str, Any]) -> dict[str, Any]:
        # As the orchestrator will read it back (string keys, default=str), and before a
        # number is spent: a record that cannot be written leaves no gap.
        normal = json.loads(json.dumps(entry, default=str))
        numbered = {**normal, SEQ_KEY: next(numbers)}
        return {**numbered, SEAL_KEY: seal_of(key, numbered)}

    return seal


def file_digest(path: str) -> str:
    """The SHA-256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Checked:
    """The records that passed :func:`check`, and how many did not."""

    records: list[dict[str, Any]] = field(default_factory=list)
    """The probe's own records, in order, without their seal fields."""
    rejected: int = 0
    """Lines not signed with the run's key, or out of order, or repeated."""
    missing: int = 0
    """Numbers skipped: records the probe wrote that are no longer there."""
    installed: bool = False
    """Whether the probe's first record (:data:`INSTALLED`) is among them."""

    @property
    def closed_with(self) -> str | None:
        """The nonce of the closing record (:data:`CLOSED`) when it is the last record."""
        last = self.records[-1] if self.records else {}
        nonce = last.get(NONCE_KEY)
        return nonce if last.get("event") == CLOSED and isinstance(nonce, str) else None

    @property
    def model_digest(self) -> str | None:
        """The digest of the model file the probe saved last (None: it saved none). A
        save that failed records none and leaves the file before it in place."""
        saves = [r[DIGEST_KEY] for r in self.records if isinstance(r.get(DIGEST_KEY), str)]
        return saves[-1] if saves else None


def check(key: bytes, entries: Iterable[dict[str, Any]]) -> Checked:
    """The entries sealed with ``key``, each number once and in order."""
    checked, last = Checked(), 0
    for entry in entries:
        body = {k: v for k, v in entry.items() if k != SEAL_KEY}
        number = body.get(SEQ_KEY)
        if not _signed(key, body, entry.get(SEAL_KEY)) or type(number) is not int or number <= last:
            checked.rejected += 1
            continue
        checked.missing += number - last - 1
        last = number
        checked.installed = checked.installed or body.get("event") == INSTALLED
        checked.records.append({k: v for k, v in body.items() if k != SEQ_KEY})
    return checked


def _signed(key: bytes, body: dict[str, Any], seal: Any) -> bool:
    if not key or not isinstance(seal, str) or not seal.isascii():
        return False
    return hmac.compare_digest(seal_of(key, body), seal)
