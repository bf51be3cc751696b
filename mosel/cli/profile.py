"""`mosel profile`: measure a model's encoder and fusion-head latency by batch size and
store one LatencyProfile per precision (variant "<device kind>-<precision>")."""

from __future__ import annotations

import time

from mosel.config import mosel_home
from mosel.lifecycle.profile import (DEFAULT_REPEATS, DEFAULT_WARMUP, PLACEMENTS, PRECISIONS, format_profile,
                                     probe_precision, profile_latency)
from mosel.launch.store_session import store_session
from mosel.cli.packs import add_pack_flag, apply_pack_flags
from mosel.repository.data import load_labelled
from mosel.repository.source import MODEL_ERRORS, open_model


def register(sub) -> None:
    p = sub.add_parser("profile", help="measure encoder/head latency by batch size and store the profile")
    add_store_flag(p)
    p.add_argument("--model", default="av-digits", help="model to profile (default av-digits)")
    p.add_argument("--device", default="cpu", help="torch device for the encoders (default cpu)")
    p.add_argument("--precision", default="fp32",
                   help="comma-separated precisions among fp32,fp16,bf16, or 'all' (default fp32); "
                        "ones the device cannot run are skipped and reported")
    p.add_argument("--max-batch", type=int, default=32, help="largest batch size measured (default 32)")
    p.add_argument("--warmup", type=int, default=DEFAULT_WARMUP,
                   help=f"untimed runs per batch size (default {DEFAULT_WARMUP})")
    p.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                   help=f"timed runs per batch size (default {DEFAULT_REPEATS})")
    p.add_argument("--placement", default="shared", choices=PLACEMENTS,
                   help="shared: encoders on one device, latencies add (default); separate: one device each")
    p.add_argument("--size", default=None, help="model size to train if no checkpoint exists (default: default)")
    p.add_argument("--model-repository", default=None, metavar="DIR",
                   help="model repository (default $MOSEL_HOME/repository; see docs/models.md)")
    p.add_argument("--data", default=None, metavar="FILE.npz",
                   help="profile on these items (the `mosel model eval` format); default: the pack's test "
                        "split, or random items of the longest length for a repository model")
    add_pack_flag(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def add_store_flag(p) -> None:
    p.add_argument("--store", default=None, metavar="HOST:PORT",
                   help="profile store address (default: 127.0.0.1:50051 if serving, else a temporary store "
                        "on $MOSEL_HOME/profile_store.sqlite)")


def parse_precisions(text: str) -> list[str]:
    if text.strip() == "all":
        return list(PRECISIONS)
    out = []
    for p in (x.strip() for x in text.split(",")):
        if not p:
            continue
        if p not in PRECISIONS:
            raise ValueError(f"unknown precision {p!r}; expected {', '.join(PRECISIONS)} or 'all'")
        if p not in out:
            out.append(p)
    if not out:
        raise ValueError("no precision given")
    return out


def run(args) -> int:
    from mosel.lifecycle.publish import publish

    try:
        precisions = parse_precisions(args.precision)
    except ValueError as exc:
        print(f"mosel profile: {exc}")
        return 2
    if args.max_batch < 1 or args.warmup < 0 or args.repeats < 1:
        print("mosel profile: need --max-batch >= 1, --warmup >= 0, --repeats >= 1")
        return 2
    home = mosel_home()
    progress = not args.no_progress
    ran, skipped = [], []
    apply_pack_flags(args)
    with store_session(args.store, home, say=print) as session:
        client = session.client
        try:
            versions = publish(client, args.model, home, size=args.size, progress=progress,
                               repository=args.model_repository)
            opened = open_model(args.model, home=home, repository=args.model_repository)
            data = load_labelled(args.data, opened.pack) if args.data else None
        except (*MODEL_ERRORS, KeyError) as exc:
            print(f"mosel profile: {exc.args[0] if isinstance(exc, KeyError) else exc}")
            return 2
        print(f"{args.model}: manifest v{versions['manifest']}, accuracy profile v{versions['accuracy']} "
              f"in the {session.describe()}")
        for precision in precisions:
            ok, why = probe_precision(args.model, precision, device=args.device, opened=opened)
            if not ok:
                print(f"skipping {precision}: {why}")
                skipped.append(precision)
                continue
            started = time.perf_counter()
            profile = profile_latency(args.model, device=args.device, precision=precision,
                                      max_batch=args.max_batch, warmup=args.warmup, repeats=args.repeats,
                                      progress=progress, placement=args.placement, opened=opened, data=data)
            took = time.perf_counter() - started
            ref = client.put_latency_profile(profile)
            print()
            print(format_profile(profile))
            print(f"measured in {took:.1f} s; stored latency profile v{ref.version} [{ref.variant}] "
                  f"(code {profile.code_version}, checkpoint {profile.checkpoint_sha256[:12]})")
            ran.append(precision)
    print(f"\nprecisions profiled: {', '.join(ran) or 'none'}"
          + (f"; skipped: {', '.join(skipped)}" if skipped else ""))
    if not ran:
        return 1
    # A precision asked for by name that could not run is an error; 'all' only reports.
    return 1 if skipped and args.precision.strip() != "all" else 0
