"""A service exits when the process that launched it dies.

`mosel.launch.stack.launch()` puts the launcher's pid in MOSEL_PARENT_PID. `watch_parent()`
(started by `install_signal_handlers`, so every service has it) polls from a daemon thread
and, once that process is gone, sends SIGTERM to its own process: the service drains as if
it had been stopped by hand (in-flight calls get their grace, then it exits).

On Linux the watch first asks the kernel for SIGTERM on the parent's death
(PR_SET_PDEATHSIG, from the child itself: a preexec_fn in the parent would make Popen fork
rather than vfork, which aborts children of processes running gRPC); the polling is the
portable backstop, and it also covers a parent that died before the child could ask.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
from typing import Callable, Mapping

log = logging.getLogger(__name__)

PARENT_PID_ENV = "MOSEL_PARENT_PID"
POLL_S = 0.5


def pid_alive(pid: int) -> bool:
    """Whether a process has this pid (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    if sys.platform.startswith("linux"):
        try:  # a dead process nobody has reaped yet still answers kill(0)
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except (OSError, IndexError):
            pass
    return True


def parent_gone(pid: int, direct: bool) -> bool:
    """`direct`: pid was our parent when the watch began, so the parent is gone once we were
    reparented (exact, immune to pid reuse); otherwise (started through a wrapper) once no
    process has that pid."""
    return os.getppid() != pid if direct else not pid_alive(pid)


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def ask_kernel_for_sigterm() -> bool:
    """Linux: SIGTERM to this process when the thread that started it exits (spawn() starts
    children from a thread that lives as long as its process). False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0


def _terminate_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def watch_parent(env: Mapping[str, str] | None = None, interval_s: float = POLL_S,
                 on_gone: Callable[[], None] = _terminate_self,
                 stop: threading.Event | None = None) -> threading.Thread | None:
    """Start the watch when MOSEL_PARENT_PID is set (None otherwise). `on_gone` runs once,
    from the watch thread; `stop` set ends the watch (e.g. a drain is under way already)."""
    raw = (os.environ if env is None else env).get(PARENT_PID_ENV, "").strip()
    if not raw:
        return None
    try:
        pid = int(raw)
    except ValueError:
        log.warning("ignoring %s=%r (not a pid)", PARENT_PID_ENV, raw)
        return None
    if pid <= 1:
        return None
    direct = os.getppid() == pid
    if direct:
        ask_kernel_for_sigterm()
    stop = stop or threading.Event()

    def run() -> None:
        while not parent_gone(pid, direct):
            if stop.wait(interval_s):
                return
        if stop.is_set():
            return
        log.warning("the process that launched this service (pid %d) is gone: stopping", pid)
        on_gone()

    thread = threading.Thread(target=run, name="parent-watch", daemon=True)
    thread.start()
    return thread
