"""`mosel up`: run the whole stack locally until Ctrl-C."""

from __future__ import annotations

import signal
import threading

from mosel.config import mosel_home
from mosel.encoder.settings import EncoderSettings
from mosel.engine.settings import SelectionSettings
from mosel.launch.stack import Stack, StackError, bring_up
from mosel.store.settings import ProfileStoreSettings

# The services' own default ports; the encoders count up from the first one's.
DEFAULT_PORTS = {"selection": SelectionSettings.default("port"),
                 "profile_store": ProfileStoreSettings.default("port"),
                 **{f"encoder_{m}": EncoderSettings.default("port") + i for i, m in enumerate(Stack.modalities)}}
# Flags passed through to the stack's selection services, as `python -m services.selection` has them.
SELECTION_FLAGS = ("policy",)


def register(sub) -> None:
    p = sub.add_parser("up", help="start profile store, encoders and selection service locally; Ctrl-C stops")
    add_stack_flags(p)
    p.add_argument("--free-ports", action="store_true", help="pick free ports instead of the defaults")
    p.set_defaults(func=run)


def add_stack_flags(p, default_size: str | None = None) -> None:
    p.add_argument("--model", default="av-digits", help="model to serve (default av-digits)")
    SelectionSettings.add_arguments(p, only=SELECTION_FLAGS)
    p.add_argument("--device", default="cpu", help="torch device for the encoders (default cpu)")
    p.add_argument("--size", default=default_size,
                   help=f"model size to train if no checkpoint exists (default: {default_size or 'default'})")


def run(args) -> int:
    ports = {} if args.free_ports else DEFAULT_PORTS
    stack = Stack(home=mosel_home(), model=args.model, device=args.device, ports=ports,
                  selection=SelectionSettings.from_args(args, only=SELECTION_FLAGS))
    try:
        bring_up(stack, size=args.size)
    except StackError as exc:
        print(f"mosel up failed: {exc}")
        return 1
    print("\nMOSEL stack is SERVING:")
    for name, svc in stack.services.items():
        print(f"  {name:<16} {svc.address:<18} log {svc.log_path}")
    print("Ctrl-C stops every service (each drains in-flight work).")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.is_set():
        if any(s.proc.poll() is not None for s in stack.services.values()):
            dead = [n for n, s in stack.services.items() if s.proc.poll() is not None]
            print(f"service(s) exited unexpectedly: {dead}; stopping the rest")
            break
        stop.wait(0.5)
    codes = stack.stop()
    print("stopped: " + ", ".join(f"{n}={c}" for n, c in codes.items()))
    return 0 if all(c == 0 for c in codes.values()) else 1
