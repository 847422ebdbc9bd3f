"""The kernel's own pid namespace: a small init inside, a watcher outside.

After the launcher has unshared a pid namespace, its next child is that namespace's
init (pid 1). :func:`enter_pid_namespace` forks it: the launcher itself stays outside
as the process jupyter_client knows, forwards every signal jupyter_client sends (an
interrupt, a shutdown) to init, and exits as init exits; if the grader that started it
dies first without ending its kernel, it kills init (:func:`wait_unless_orphaned`).
Init takes its own process group (so that jupyter_client's signal to the launcher's
group reaches the kernel once, through init, and never twice) and dies with the launcher
(``PR_SET_PDEATHSIG``).

:func:`run_as_init` then starts the kernel as init's child, forwards the same signals
to it, reaps every orphan the kernel leaves (init's duty), and hands the kernel's wait
status to the launcher, which ends the same way (an exit code as that code, a signal
as that signal). The kernel's parent is init (pid 1), which ipykernel takes for "orphaned" and
exits; its ``JPY_PARENT_PID`` is therefore 1, which says so (:data:`PARENT_VARIABLE`).
When init exits the kernel of Linux kills everything left in the namespace: a
daemon a notebook started cannot outlive its kernel, and the host's processes were
never visible to it.

Only the standard library is used (this runs before every kernel).
"""

from __future__ import annotations

import ctypes
import os
import resource
import select
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1
PARENT_VARIABLE = "JPY_PARENT_PID"
"""ipykernel's parent pid (it exits when its parent changes): 1, init, where there is one."""
FORWARDED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
"""What jupyter_client may send a kernel: an interrupt, a polite end, a user signal."""


def _forward_to(pid: int) -> None:
    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for signum in FORWARDED:
        signal.signal(signum, forward)


_PIPES: dict[str, int] = {}
"""Init's ends of its two pipes to the launcher: ``alive`` (read: it ends, empty, when the
launcher is gone) and ``status`` (write: the kernel's wait status, for the launcher)."""


def exit_like(status: int) -> None:
    """End as a process with wait ``status`` did: the same exit code, or the same signal
    (without a core dump), so that jupyter_client sees what the kernel died of."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        signal.signal(number, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [number])
        os.kill(os.getpid(), number)
        os._exit(128 + number)  # a signal that does not end a process by default
    os._exit(os.waitstatus_to_exitcode(status))


def die_with_launcher() -> None:
    """In init: be killed when the launcher dies (set again after a change of uid, which
    clears it), and end now if it died before this was set."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    alive = _PIPES.get("alive")
    if alive is not None and select.select([alive], [], [], 0)[0]:
        os._exit(1)  # readable: the launcher's end is closed, it is gone


def enter_pid_namespace() -> None:
    """Fork the new namespace's init; in the launcher, watch it and never return."""
    sys.stdout.flush()
    sys.stderr.flush()
    alive_read, alive_write = os.pipe()
    status_read, status_write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(alive_write)
        os.close(status_read)
        _PIPES.update(alive=alive_read, status=status_write)
        die_with_launcher()
        os.setpgid(0, 0)
        return
    os.close(alive_read)
    os.close(status_write)
    _forward_to(child)
    status = wait_unless_orphaned(child, GRADER[0])
    os.close(alive_write)  # init's kernel is gone or going: it need not read the end
    told = os.read(status_read, 32).decode().strip()
    exit_like(int(told) if told.lstrip("-").isdigit() else status)


GRADER: list[int | None] = [None]
"""The grader process that started the launcher (set by the launcher from its policy, else
its parent at start): when it dies without ending its kernel (killed, crashed), the
kernel must not live on. None: not watched."""


def watched_grader(policy: dict) -> int:
    """The grader's pid as its policy names it (``grader_pid``), else the launcher's parent."""
    named = policy.get("grader_pid")
    return named if isinstance(named, int) and named > 0 else os.getppid()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def wait_unless_orphaned(child: int, parent: int | None) -> int:
    """``child``'s wait status; if ``parent`` dies first, the child is killed (and with it
    everything in the kernel's namespace) and reaped. Watched through pidfds where Linux
    has them (no polling), else by polling every second. The grader may be pid 1 (a
    container's entry point): only its death counts, never who it is."""
    watched: list[int] = []
    orphaned = False
    if parent is not None:
        try:
            watched = [os.pidfd_open(parent)]
            watched.append(os.pidfd_open(child))
        except ProcessLookupError:  # gone before the launcher looked
            orphaned = True
        except (AttributeError, OSError):  # no pidfd here: poll
            for fd in watched:
                os.close(fd)
            watched = []
    while not orphaned:
        if len(watched) == 2:
            ready = select.select(watched, [], [])[0]
            orphaned = watched[0] in ready and watched[1] not in ready
        elif parent is not None:
            orphaned = not _alive(parent)
        done, status = os.waitpid(child, 0 if parent is None else os.WNOHANG)
        if done == child:
            return status
        if len(watched) < 2 and not orphaned:
            select.select([], [], [], 1.0)
    os.kill(child, signal.SIGKILL)
    return os.waitpid(child, 0)[1]


def run_as_init(start: Callable[[], None]) -> None:
    """In init: fork the kernel (``start`` never returns in it), forward signals to it,
    reap orphans until it exits, then tell the launcher its status and exit."""
    for signum in FORWARDED:  # none reaches the kernel before its own handlers exist
        signal.signal(signum, signal.SIG_IGN)
    sys.stdout.flush()
    sys.stderr.flush()
    kernel = os.fork()
    if kernel == 0:
        for fd in _PIPES.values():
            os.close(fd)
        for signum in FORWARDED:
            signal.signal(signum, signal.SIG_DFL)
        try:
            start()
        except BaseException as exc:  # exec failed: say why, as a failed exec would
            print(f"grader.run.kernel.launch: {exc}", file=sys.stderr, flush=True)
        os._exit(127)
    _forward_to(kernel)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(1)
        if pid == kernel:
            if "status" in _PIPES:
                os.write(_PIPES["status"], f"{status}\n".encode())
            os._exit(1)
