"""Sandbox uids: one per kernel or evaluator, never the same twice within a boot."""

from __future__ import annotations

import os
from pathlib import Path

UID_BASE = 1_500_000_000
"""Sandbox uids start here and count up, one per kernel or evaluator, never the same twice
within a boot (:func:`next_uid`): not after 512 kernels in one worker, not across reused
pids, not between two graders running at once."""
UID_COUNT = 2**31 - 1 - UID_BASE
UID_COUNTER = Path("/run/grader-uids")
"""The boot's uid counter (root's alone): the boot's id and the next uid's offset."""
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def next_uid(counter: Path = UID_COUNTER) -> int:
    """A uid no sandbox has had since the machine booted (under a lock, so graders running
    at once never take the same one); after the whole range, the oldest again."""
    import fcntl  # not at import: grader --help and --static import this module anywhere

    try:
        boot = BOOT_ID.read_text().strip()
    except OSError:
        boot = "unknown"
    descriptor = os.open(counter, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "r+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        words = handle.read().split()
        offset = 0
        if len(words) == 2 and words[0] == boot and words[1].isdigit():
            offset = int(words[1]) % UID_COUNT
        handle.seek(0)
        handle.truncate()
        handle.write(f"{boot} {offset + 1}\n")
    return UID_BASE + offset
