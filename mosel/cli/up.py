"""`mosel up`: run the whole stack locally until Ctrl-C."""

from __future__ import annotations

import signal
import threading

from mosel.config import mosel_home
from mosel.encoder.settings import EncoderSettings
from mosel.engine.settings import SelectionSettings
from mosel.cli.packs import add_pack_flag
from mosel.launch.stack import Stack, StackError, bring_up
from mosel.repository.source import MODEL_ERRORS
from mosel.store.settings import ProfileStoreSettings



def default_ports(modalities) -> dict[str, int]:
    """The services' own default ports; the encoders count up from the first one's, in model order."""
    return {"selection": SelectionSettings.default("port"), "profile_store": ProfileStoreSettings.default("port"),
            **{f"encoder_{m}": EncoderSettings.default("port") + i for i, m in enumerate(modalities)}}

# Flags passed through to the stack's selection services, as `python -m services.selection` has them.
SELECTION_FLAGS = ("policy",)


def register(sub) -> None:
    p = sub.add_parser("up", help="start profile store, encoders and selection service locally; Ctrl-C stops")
    add_stack_flags(p)
    p.add_argument("--free-ports", action="store_true", help="pick free ports instead of the defaults")
    p.set_defaults(func=run)


def add_stack_flags(p, default_size: str | None = None) -> None:
    p.add_argument("--model", default="av-digits", help="model to serve: a repository model or a pack "
                   "(default av-digits)")
    p.add_argument("--model-repository", default=None, metavar="DIR",
                   help="model repository (default $MOSEL_HOME/repository; see docs/models.md)")
    add_pack_flag(p)
    SelectionSettings.add_arguments(p, only=SELECTION_FLAGS)
    p.add_argument("--device", default="cpu", help="torch device for the encoders (default cpu)")
    p.add_argument("--size", default=default_size,
                   help=f"model size to train if no checkpoint exists (default: {default_size or 'default'})")


def stack_from_args(args, **fields) -> Stack:
    """The Stack the stack flags describe (`fields` adds or overrides Stack fields)."""
    return Stack(home=mosel_home(), model=args.model, device=args.device, model_repository=args.model_repository,
                 packs=tuple(args.packs), **fields)


def run(args) -> int:
    stack = stack_from_args(args, selection=SelectionSettings.from_args(args, only=SELECTION_FLAGS))
    try:
        if not args.free_ports:
            stack.ports = default_ports(stack.served_modalities())
        bring_up(stack, size=args.size)
    except MODEL_ERRORS as exc:
        print(f"mosel up: {exc}")
        return 2
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
