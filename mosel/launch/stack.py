"""Start the whole stack locally as separate processes, exactly as one would deploy it:
profile store, one encoder service per modality, selection service.

Used by `mosel up`, `mosel demo`, the benchmarks and the integration tests. Each service is
launched from its settings object (`settings.command()`), gets a free port (or a fixed
one), reports readiness through a ready file, and logs to `<home>/logs/<service>.log`,
whose first line is the command that started it. `stop()` sends SIGTERM so every service
drains. Every process started here (`spawn()`) dies with the process that started it, even a
killed one: see `spawn()`.
"""

from __future__ import annotations

import os
import queue
import shlex
import signal
import socket
import subprocess
import tempfile
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path

from mosel.config import repo_root
from mosel.encoder.settings import EncoderSettings
from mosel.engine.settings import SelectionSettings
from mosel.server.flags import ServiceSettings
from mosel.server.parent_watch import PARENT_PID_ENV
from mosel.store.settings import ProfileStoreSettings


def free_port() -> int:
    """A loopback port free right now (for endpoints whose port is not reported back)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StackError(RuntimeError):
    pass


@dataclass
class ServiceProcess:
    name: str
    proc: subprocess.Popen
    ready_file: Path
    log_path: Path
    port: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log_path, lines)


def log_tail(path: Path, lines: int = 20) -> str:
    """The last lines of a service's log (for error messages)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def terminate(proc: subprocess.Popen, grace_s: float = 30.0) -> int:
    """SIGTERM (a service drains), SIGKILL if it outlasts grace_s; its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class _Spawner:
    """One thread that lives as long as the process and forks every child asked for from
    another thread than the main one. PDEATHSIG fires when the *thread* that forked the child
    exits, so a child forked by a short-lived thread (a worker, a fixture's helper) would be
    SIGTERMed while its parent process lives on; the main thread lasts as long as the process."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, name="mosel-spawner", daemon=True).start()

    def _run(self) -> None:
        while True:
            future, start = self._jobs.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(start())
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    future.set_exception(exc)

    def run(self, start) -> subprocess.Popen:
        future: Future = Future()
        self._jobs.put((future, start))
        return future.result()


_spawner: _Spawner | None = None
_spawner_lock = threading.Lock()


def _the_spawner() -> _Spawner:
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = _Spawner()
        return _spawner


def spawn(command: list[str], env: dict | None = None, **popen_kwargs) -> subprocess.Popen:
    """subprocess.Popen for a child that must not outlive this process, even when this process
    is killed: on Linux the kernel sends it SIGTERM when this process dies (PR_SET_PDEATHSIG,
    the fork done from a thread that lasts as long as the process), and MOSEL_PARENT_PID tells
    a service (mosel.server.parent_watch) whom to watch, everywhere. `env` defaults to
    os.environ."""
    env = {**(os.environ if env is None else env), PARENT_PID_ENV: str(os.getpid())}

    # No preexec_fn: it makes Popen fork() instead of vfork, and gRPC's fork handlers then run
    # in the child of a process with gRPC threads and abort it (SIGABRT, "epoll_wait error:
    # Bad file descriptor"). The child asks for PDEATHSIG itself (mosel.server.parent_watch).
    def start() -> subprocess.Popen:
        return subprocess.Popen(command, env=env, **popen_kwargs)

    if threading.current_thread() is threading.main_thread():
        return start()
    return _the_spawner().run(start)


def launch(name: str, settings: ServiceSettings, log_dir: Path, env: dict | None = None) -> ServiceProcess:
    """Start the service `settings` describe, with a ready file, stdout and stderr to log_dir/name.log."""
    log_dir.mkdir(parents=True, exist_ok=True)
    ready = Path(tempfile.mkdtemp(prefix=f"mosel-{name}-")) / "port"
    command = replace(settings, ready_file=str(ready)).command()
    log_path = log_dir / f"{name}.log"
    with open(log_path, "w") as log_file:
        log_file.write(shlex.join(command) + "\n")  # so a service that fails can be rerun by hand
        log_file.flush()
        proc = spawn(command, stdout=log_file, stderr=subprocess.STDOUT, cwd=str(repo_root()),
                     env={**os.environ, **(env or {})})
    return ServiceProcess(name, proc, ready, log_path)


def wait_ready(services: list[ServiceProcess], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    pending = list(services)
    while pending:
        for svc in list(pending):
            if svc.ready_file.exists():
                svc.port = int(svc.ready_file.read_text().strip())
                pending.remove(svc)
            elif svc.proc.poll() is not None:
                raise StackError(f"{svc.name} exited with code {svc.proc.returncode} before it was ready; "
                                 f"log {svc.log_path}:\n{svc.log_tail()}")
        if pending and time.monotonic() > deadline:
            names = ", ".join(s.name for s in pending)
            raise StackError(f"not ready after {timeout_s:.0f}s: {names}; see logs in {pending[0].log_path.parent}")
        if pending:
            time.sleep(0.05)


@dataclass
class Stack:
    home: Path
    model: str = "av-digits"
    modalities: tuple[str, ...] = ()  # the model's own when empty (read from its manifest)
    device: str = "cpu"
    model_repository: str | None = None  # default $MOSEL_HOME/repository (see mosel.repository)
    packs: tuple[str, ...] = ()  # plug-in packs (MODULE:CLASS) every service loads
    ports: dict[str, int] = field(default_factory=dict)  # service name -> fixed port (default: free port)
    # What every selection service of the stack starts from (policy, scheduling knobs); its
    # port, store, model and encoders are the stack's.
    selection: SelectionSettings = field(default_factory=SelectionSettings)
    store_db: str | None = None
    metrics: bool = False  # give every service a /metrics endpoint on a free port (see metrics_ports)
    services: dict[str, ServiceProcess] = field(default_factory=dict)
    metrics_ports: dict[str, int] = field(default_factory=dict)  # service name -> its /metrics port

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def env(self) -> dict:
        return {"MOSEL_HOME": str(self.home), "PYTHONUNBUFFERED": "1"}

    def endpoint(self, name: str) -> str:
        return self.services[name].address

    def open_model(self):
        """The stack's model, found as its services will find it."""
        from mosel.models.registry import use_packs
        from mosel.repository.source import open_model

        use_packs(self.packs)
        return open_model(self.model, home=self.home, repository=self.model_repository)

    def served_modalities(self) -> tuple[str, ...]:
        if not self.modalities:
            self.modalities = tuple(self.open_model().pack.modality_names)
        return self.modalities

    def start_store(self, timeout_s: float = 60.0) -> str:
        db = self.store_db or str(self.home / "profile_store.sqlite")
        settings = ProfileStoreSettings(port=self.ports.get("profile_store", 0), db=db)
        return self._start([("profile_store", settings)], timeout_s)[0].address

    def start_serving(self, timeout_s: float = 120.0) -> None:
        """Encoders, then the selection service (the store must be up and hold the model)."""
        self._start([(f"encoder_{m}", EncoderSettings(model=self.model, modality=m, device=self.device,
                                                      port=self.ports.get(f"encoder_{m}", 0), **self._model_source))
                     for m in self.served_modalities()], timeout_s)
        self.start_selection("selection", self.selection.policy, timeout_s)

    def start_selection(self, name: str, policy: str, timeout_s: float = 120.0) -> str:
        """A selection service with `policy` on the running store and encoders; returns its address.
        Several can run side by side (e.g. one per policy, for comparisons on the same encoders)."""
        settings = replace(self.selection, port=self.ports.get(name, 0), profile_store=self.endpoint("profile_store"),
                           models=(self.model,), policy=policy, **self._model_source,
                           encoders=tuple(f"{m}={self.endpoint('encoder_' + m)}" for m in self.served_modalities()))
        return self._start([(name, settings)], timeout_s)[0].address

    @property
    def _model_source(self) -> dict:
        return {"model_repository": self.model_repository, "packs": self.packs}

    def _start(self, named: list[tuple[str, ServiceSettings]], timeout_s: float) -> list[ServiceProcess]:
        if self.metrics:
            for name, _ in named:
                self.metrics_ports[name] = free_port()
            named = [(name, replace(settings, metrics_port=self.metrics_ports[name])) for name, settings in named]
        started = []
        try:
            for name, settings in named:
                svc = launch(name, settings, self.log_dir, self.env)
                started.append(svc)
                self.services[name] = svc  # at once: stop() must find it if the next launch fails
            wait_ready(started, timeout_s)
        except BaseException:  # incl. KeyboardInterrupt: nothing started here is left running
            self.stop()
            raise
        return started

    def stop_service(self, name: str, grace_s: float = 30.0) -> int | None:
        """SIGTERM one service (it drains), kill it if it outlasts grace_s; its exit code
        (None if the stack runs no such service)."""
        svc = self.services.pop(name, None)
        if svc is None:
            return None
        return terminate(svc.proc, grace_s)

    def stop(self, grace_s: float = 30.0) -> dict[str, int]:
        """SIGTERM in reverse start order (front door first, so it drains before encoders go)."""
        return {name: self.stop_service(name, grace_s) for name in reversed(list(self.services))}


def _ensure_matrix(client, stack: Stack, progress: bool, say) -> None:
    """Profile (short: warmup 1, repeats 3) and solve when the store has no matrix for the model."""
    import grpc

    from mosel.lifecycle.solve import solve_from_store
    from mosel.lifecycle.profile import profile_latency

    try:
        ref = client.get_strategy_matrix(stack.model)
        say(f"      strategy matrix v{ref.ref.version} [{ref.ref.variant}]")
        return
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.NOT_FOUND:
            raise
    say("      no strategy matrix yet: quick latency profile (warmup 1, repeats 3) and solve ...")
    profile = profile_latency(stack.model, device=stack.device, warmup=1, repeats=3, progress=progress,
                              opened=stack.open_model())
    latency_ref = client.put_latency_profile(profile)
    result = solve_from_store(client, stack.model, device=stack.device)
    say(f"      latency profile v{latency_ref.version} [{latency_ref.variant}], "
        f"strategy matrix v{result.ref.version} ({result.solve_ms:.0f} ms solve)")


def bring_up(stack: Stack, size: str | None = None, progress: bool = True, say=print,
             ensure_matrix: bool = True) -> Stack:
    """Store, then make sure the store holds the trained model (and, with `ensure_matrix`, a
    strategy matrix: a short profile and a solve when it has none), then encoders and selection.
    If any step fails, every service it started is stopped before the error propagates."""
    from mosel.models.registry import use_packs

    use_packs(stack.packs)
    say(f"[1/3] profile store (state in {stack.home}) ...")
    address = stack.start_store()
    try:
        _publish(stack, address, size, progress, say, ensure_matrix)
        say(f"[3/3] encoders {', '.join(stack.served_modalities())} and selection service ...")
        stack.start_serving()
    except BaseException:  # whatever fails half way (a bad model, Ctrl-C): stop what started
        stack.stop()
        raise
    return stack


def _publish(stack: Stack, address: str, size: str | None, progress: bool, say, ensure_matrix: bool) -> None:
    from mosel.lifecycle.publish import publish
    from mosel.store.client import ProfileStoreClient

    client = ProfileStoreClient(address)
    try:
        client.wait_ready(30.0)
        say(f"[2/3] model {stack.model}: checkpoint, accuracy profile ...")
        versions = publish(client, stack.model, stack.home, size=size, progress=progress,
                           repository=stack.model_repository)
        say(f"      manifest v{versions['manifest']}, accuracy profile v{versions['accuracy']}, "
            f"size preset {versions['size'] or '?'}")
        if size and versions["size"] and size != versions["size"]:
            # a home keeps the checkpoint it has: say so rather than serve another size silently
            say(f"      (serving the existing {versions['size']} checkpoint in {stack.home}; "
                f"`mosel train --model {stack.model} --size {size}` replaces it)")
        if ensure_matrix:
            _ensure_matrix(client, stack, progress, say)
    finally:
        client.close()
