"""`mosel model export | check | eval | list`: a model repository from the command line
(docs/models.md)."""

from __future__ import annotations

import sys
from pathlib import Path

from mosel.cli.packs import add_pack_flag, apply_pack_flags


def register(sub) -> None:
    p = sub.add_parser("model", help="model repository: export a pack, check or evaluate a version, list models",
                       description=__doc__.splitlines()[0])
    verbs = p.add_subparsers(dest="verb", metavar="VERB")

    e = verbs.add_parser("export", help="export a trained pack to a new repository version")
    e.add_argument("--model", default="av-digits", help="trained pack to export (default av-digits)")
    e.add_argument("--as", dest="as_name", default=None, help="model name in the repository (default: the pack's)")
    e.add_argument("--version", type=int, default=None, help="version number (default: the next one)")
    e.add_argument("--format", choices=("auto", "pt2", "torchscript"), default="auto",
                   help="artifact format: TorchScript (.pt) or torch.export program (.pt2); auto (default): "
                        "TorchScript where it reproduces the module, else .pt2")
    e.add_argument("--max-batch", type=int, default=32, help="largest batch the artifacts must take (default 32)")
    e.add_argument("--with-data", action="store_true",
                   help="also write the pack's test split as data/test.npz (for `mosel model eval`)")
    _common(e)
    e.set_defaults(func=run_export)

    c = verbs.add_parser("check", help="load every artifact of a version and try it against its manifest")
    c.add_argument("path", help="version directory, e.g. REPO/my-model/1 (or a model directory: its newest)")
    c.set_defaults(func=run_check)

    v = verbs.add_parser("eval", help="accuracy of every configuration on a labelled .npz; writes accuracy.json")
    v.add_argument("path", help="version directory, e.g. REPO/my-model/1")
    v.add_argument("--data", required=True, help="labelled set (.npz: labels + one array per modality)")
    v.add_argument("--batch-size", type=int, default=128)
    v.set_defaults(func=run_eval)

    ls = verbs.add_parser("list", help="models and versions in a repository")
    _common(ls)
    ls.set_defaults(func=run_list)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _common(p) -> None:
    p.add_argument("--model-repository", default=None, metavar="DIR",
                   help="model repository (default $MOSEL_HOME/repository)")
    p.add_argument("--home", default=None, help="state directory with trained packs (default $MOSEL_HOME)")
    add_pack_flag(p)


def _version_dir(path: str) -> Path:
    """A version directory, or a model directory's newest version."""
    from mosel.repository import layout

    folder = Path(path)
    if (folder / "manifest.json").is_file() or not folder.is_dir():
        return folder
    return layout.version_dir(folder.parent, folder.name)


def run_export(args) -> int:
    from mosel.lifecycle.export import export_pack
    from mosel.repository.source import MODEL_ERRORS

    apply_pack_flags(args)
    try:
        folder = export_pack(args.model, home=args.home, repository=args.model_repository, as_name=args.as_name,
                             version=args.version, format=args.format, max_batch=args.max_batch,
                             with_data=args.with_data)
    except (*MODEL_ERRORS, KeyError, ValueError, FileExistsError) as exc:
        print(f"mosel model export: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 2
    print(f"exported {args.model} to {folder}")
    print(f"next: mosel model check {folder}")
    return 0


def run_check(args) -> int:
    from mosel.lifecycle.check import check_version
    from mosel.repository.manifest import ManifestError

    try:
        folder = _version_dir(args.path)
    except ManifestError as exc:
        print(f"mosel model check: {exc}", file=sys.stderr)
        return 2
    version, problems = check_version(folder)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        print(f"{folder}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{folder}: OK -- {version.name} version {version.version}, modalities "
          f"{', '.join(version.modality_names)}, {len(version.labels)} labels, "
          f"{2 ** len(version.modalities) - 1} configurations, batches 1..{version.max_batch}")
    return 0


def run_eval(args) -> int:
    from mosel.lifecycle.evaluate import format_table
    from mosel.lifecycle.model_eval import evaluate_on
    from mosel.repository.data import load_labelled
    from mosel.repository.manifest import ManifestError
    from mosel.repository.source import MODEL_ERRORS, open_version

    try:
        opened = open_version(_version_dir(args.path))
        data = load_labelled(args.data, opened.pack)
        document = evaluate_on(opened, data, source=str(Path(args.data).resolve()), batch_size=args.batch_size)
    except (*MODEL_ERRORS, ManifestError) as exc:
        print(f"mosel model eval: {exc}", file=sys.stderr)
        return 2
    print(format_table(document["configurations"]))  # a small-set warning went to the log
    print(f"wrote {opened.accuracy_path()}")
    return 0


def run_list(args) -> int:
    from mosel.repository import layout

    root = layout.repository_path(args.model_repository)
    names = layout.models(root)
    if not names:
        print(f"{root}: no model (expected {root}/<model>/<version>/manifest.json)")
        return 0
    for name in names:
        print(f"{name}: versions {', '.join(map(str, layout.versions(root, name)))}")
    return 0
