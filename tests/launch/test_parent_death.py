"""Services die with the process that started them, even a SIGKILLed one (issue #15).

A real parent process (python -c) starts a profile store, the cheapest service, writes the
store's pid to a file and sleeps; the test SIGKILLs the parent and waits for the store to go.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from mosel.config import repo_root
from mosel.launch.stack import Stack
from mosel.server.parent_watch import PARENT_PID_ENV, pid_alive, watch_parent
from mosel.store.settings import ProfileStoreSettings

LINUX = sys.platform.startswith("linux")

# argv: tmp dir, how ("main": launch() from the main thread; "thread": from a thread that has
# exited by then; "watch": started through a shell, so the store's parent is not the process
# named by MOSEL_PARENT_PID: no PDEATHSIG, the poll alone), and an unused extra argument.
PARENT = textwrap.dedent("""
    import os, shlex, subprocess, sys, threading, time
    from dataclasses import replace
    from pathlib import Path

    import mosel.launch.stack as st
    from mosel.store.settings import ProfileStoreSettings

    tmp, how, extra = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    settings = ProfileStoreSettings(port=0, db=str(tmp / "store.sqlite"), grace_s=5.0)
    env = {"MOSEL_HOME": str(tmp), "PYTHONUNBUFFERED": "1"}

    def start():
        svc = st.launch("profile_store", settings, tmp / "logs", env)
        st.wait_ready([svc], 120.0)
        return svc.proc

    if how == "main":
        proc = start()
    elif how == "thread":
        box = []
        t = threading.Thread(target=lambda: box.append(start()))
        t.start()
        t.join()
        proc = box[0]
        time.sleep(1.0)  # the thread that launched it is gone: the store must live on
        if proc.poll() is not None:
            sys.exit(f"the store died with the launching thread (code {proc.returncode})")
    else:
        ready = tmp / "ready"
        (tmp / "logs").mkdir()
        with open(tmp / "logs" / "profile_store.log", "w") as log:
            command = shlex.join(replace(settings, ready_file=str(ready)).command()) + "; true"  # no exec
            proc = subprocess.Popen(["sh", "-c", command], stdout=log,
                                    stderr=subprocess.STDOUT, env={**os.environ, **env, "MOSEL_PARENT_PID": str(os.getpid())})
        deadline = time.monotonic() + 120
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit("the store did not come up")
            time.sleep(0.05)
    (tmp / "pid.tmp").write_text(str(proc.pid))
    os.replace(tmp / "pid.tmp", tmp / "pid")
    time.sleep(600)
""")


def _until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not within {timeout_s:.0f}s")
        time.sleep(0.1)


def _kill_parent_and_wait(tmp_path: Path, how: str, extra: str = "") -> str:
    """Run the parent, SIGKILL it once its store is up, wait for the store to exit; the store's log."""
    out = open(tmp_path / "parent.out", "w")
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path), how, extra or "-"], cwd=str(repo_root()),
                              stdout=out, stderr=subprocess.STDOUT)
    child = None
    log = tmp_path / "logs" / "profile_store.log"
    try:
        pid_file = tmp_path / "pid"
        deadline = time.monotonic() + 180
        while not pid_file.exists():
            if parent.poll() is not None:
                pytest.fail(f"the parent exited ({parent.returncode}):\n{(tmp_path / 'parent.out').read_text()}\n"
                            f"store log:\n{log.read_text() if log.exists() else '(none)'}")
            if time.monotonic() > deadline:
                pytest.fail("the store did not come up in 180s")
            time.sleep(0.1)
        child = int(pid_file.read_text())
        assert pid_alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        _until(lambda: not pid_alive(child), 60, f"the store (pid {child}) exiting after its parent was killed")
        return log.read_text()
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child is not None and pid_alive(child):
            os.kill(child, signal.SIGKILL)
        out.close()


def test_store_dies_with_a_killed_parent(tmp_path):
    log = _kill_parent_and_wait(tmp_path, "main")
    assert "draining (grace" in log, log  # the SIGTERM drain path, not a hard kill


def test_store_launched_from_a_thread_outlives_the_thread_not_the_parent(tmp_path):
    log = _kill_parent_and_wait(tmp_path, "thread")
    assert "draining (grace" in log, log


@pytest.mark.skipif(not LINUX, reason="PR_SET_PDEATHSIG is Linux only")
def test_the_kernel_stops_a_store_launched_from_a_thread(tmp_path):
    """PDEATHSIG (asked for by the store itself) stopped it, before the 0.5 s poll noticed;
    and it did not fire when the launching thread exited (the fork came from the spawner thread)."""
    log = _kill_parent_and_wait(tmp_path, "thread")
    assert "received SIGTERM" in log and "draining (grace" in log, log
    assert "is gone: stopping" not in log, log


def test_parent_watch_alone_stops_a_store(tmp_path):
    """Through a shell, so no PDEATHSIG: the service's own watch of MOSEL_PARENT_PID stops it."""
    log = _kill_parent_and_wait(tmp_path, "watch")
    assert "is gone: stopping" in log and "draining (grace" in log, log


# -- the watch alone, in this process ------------------------------------------------------

def test_watch_parent_needs_the_env_var():
    assert watch_parent(env={}) is None
    assert watch_parent(env={PARENT_PID_ENV: "not-a-pid"}) is None


def test_watch_parent_fires_once_the_process_is_gone():
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    gone = threading.Event()
    try:
        thread = watch_parent(env={PARENT_PID_ENV: str(other.pid)}, interval_s=0.05, on_gone=gone.set)
        assert thread is not None
        assert not gone.wait(0.5)
        other.kill()
        other.wait()
        assert gone.wait(30)
        thread.join(5)
        assert not thread.is_alive()
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()


def test_watch_parent_stops_when_told():
    stop, gone = threading.Event(), threading.Event()
    thread = watch_parent(env={PARENT_PID_ENV: str(os.getpid())}, interval_s=0.05, on_gone=gone.set, stop=stop)
    stop.set()
    thread.join(5)
    assert not thread.is_alive() and not gone.is_set()


# -- a stack that fails half way stops what it started -------------------------------------

def test_a_failed_start_stops_the_services_already_started(tmp_path, monkeypatch):
    import mosel.launch.stack as st

    real_launch, launched = st.launch, []

    def launch(name, settings, log_dir, env=None):
        if launched:
            raise OSError("no second service")
        launched.append(real_launch(name, settings, log_dir, env))
        return launched[-1]

    monkeypatch.setattr(st, "launch", launch)
    stack = Stack(home=tmp_path)
    settings = ProfileStoreSettings(port=0, db=str(tmp_path / "store.sqlite"), grace_s=5.0)
    with pytest.raises(OSError):
        stack._start([("store_a", settings), ("store_b", settings)], timeout_s=120)
    assert launched and launched[0].proc.poll() is not None  # stopped, not left running
    assert stack.services == {}


def test_an_interrupted_start_stops_the_services_already_started(tmp_path, monkeypatch):
    import mosel.launch.stack as st

    launched = []

    def wait_ready(services, timeout_s):
        launched.extend(services)
        raise KeyboardInterrupt  # Ctrl-C while waiting: was not caught before

    monkeypatch.setattr(st, "wait_ready", wait_ready)
    stack = Stack(home=tmp_path)
    settings = ProfileStoreSettings(port=0, db=str(tmp_path / "store.sqlite"), grace_s=5.0)
    with pytest.raises(KeyboardInterrupt):
        stack._start([("profile_store", settings)], timeout_s=120)
    assert launched and launched[0].proc.poll() is not None
    assert stack.services == {}
