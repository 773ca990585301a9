"""The ``metricanything`` command: one entry point, one module per subcommand.

Argument parsing only. Each subcommand module ``metricanything.cli.<module>`` defines
``configure(parser)`` (its flags), ``options(args)`` (the parsed flags as the options dataclass of its task) and
``run(args) -> int`` (one call of the task function in :mod:`metricanything.tasks`). A module is imported only
when its subcommand runs, and imports its task inside ``options``/``run``, so ``--help`` stays fast (no torch).
:func:`main` is the one place that turns an error into one line: a
:class:`~metricanything.errors.MetricAnythingError` (or an ``OSError`` naming a path) into
``metricanything <cmd>: error: ...`` and exit code 2, anything else into a one-line message with a hint to rerun
with ``--debug`` (which shows the traceback) and exit code 1. ``--quiet`` / ``--verbose`` (before or after the
command) set :func:`metricanything.progress.set_verbosity`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from metricanything import __version__
from metricanything.errors import MetricAnythingError

#: subcommand -> (module under metricanything.cli, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "quickstart": ("quickstart", "render -> pretrain -> pseudo-label -> distil -> evaluate -> infer, with an HTML report"),
    "infer": ("infer", "metric depth for images, folders, globs or videos (optionally with a sparse depth prompt)"),
    "render": ("render", "render a heterogeneous synthetic RGB-D dataset in the folder format"),
    "pack": ("pack", "pack folder datasets into WebDataset-style tar shards"),
    "pretrain": ("pretrain", "pretrain the prompt-conditioned teacher (Robust MAE)"),
    "pseudo-label": ("pseudo_label", "write teacher pseudo-labels as shards"),
    "distill": ("distill", "distil the prompt-free student from pseudo-labels"),
    "finetune": ("finetune", "fine-tune a pretrained teacher on your own dataset (e.g. radar-camera fusion)"),
    "eval": ("evaluate", "evaluate models and baselines on a benchmark protocol"),
    "fuse": ("fuse", "fuse per-view metric depth with known poses into one point cloud"),
    "export": ("export", "export a checkpoint to ONNX"),
    "smoke": ("smoke", "a seconds-long end-to-end check of the geometry and file layer"),
    "app": ("app", "a local web app: drop an image, see its metric depth, 3D point cloud and downloads"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="metricanything",
        description="MetricAnything: metric depth from any image, with or without sparse metric prompts.",
    )
    parser.add_argument("--version", action="version", version=f"metricanything {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


GLOBAL_FLAGS = ("--debug", "-q", "--quiet", "-v", "--verbose")


def _add_global_flags(parser: argparse.ArgumentParser) -> None:
    """``--debug``, ``--quiet``, ``--verbose`` on every subcommand (a command's own ``--quiet`` is kept)."""
    have = parser._option_string_actions  # noqa: SLF001 - the public API has no "is this flag defined"
    if "--debug" not in have:
        parser.add_argument("--debug", action="store_true",
                            help="show the full traceback of an error (default: one line with the fix)")  # fmt: skip
    if "--quiet" not in have:
        parser.add_argument("-q", "--quiet", action="store_true", help="print only errors and the final summary")
    if "--verbose" not in have:
        parser.add_argument("-v", "--verbose", action="store_true", help="print more detail")


def _error_line(name: str, exc: BaseException) -> tuple[str, int]:
    """The one-line message and exit code of an error that ends command ``name``."""
    prefix = f"metricanything {name}: error:"
    if isinstance(exc, MetricAnythingError):
        return f"{prefix} {exc}", 2
    if isinstance(exc, OSError) and (exc.filename or exc.filename2):
        where = exc.filename if exc.filename is not None else exc.filename2
        return (f"{prefix} {where}: {exc.strerror or exc} (check the path, its permissions and the free disk "
                "space; rerun with --debug for the traceback)", 2)  # fmt: skip
    if isinstance(exc, MemoryError):
        return f"{prefix} out of memory (use smaller images, --batch-size 1 or a smaller model)", 1
    text = " ".join(str(exc).split())[:500]
    return (f"{prefix} unexpected {type(exc).__name__}: {text} (this is a bug or an unchecked input; rerun with "
            "--debug to see the traceback and include it in a report)", 1)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run ``metricanything [--debug] [--quiet|--verbose] COMMAND ...``; returns the exit code.

    Exit codes: 0 success; 1 some inputs failed (e.g. images of an ``infer`` folder) or an unexpected internal
    error; 2 an input, option or environment error (the message names the file or flag and the fix); 130
    interrupted. Without ``--debug`` no error prints a traceback.
    """
    from metricanything.progress import NORMAL, QUIET, VERBOSE, set_verbosity

    argv = list(sys.argv[1:] if argv is None else argv)
    top = build_parser()
    top.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    top.add_argument("-q", "--quiet", action="store_true", help="print only errors and final summaries")
    top.add_argument("-v", "--verbose", action="store_true", help="print more detail")
    lead: set[str] = set()
    while argv and argv[0] in GLOBAL_FLAGS:
        lead.add({"-q": "--quiet", "-v": "--verbose"}.get(argv[0], argv[0]))
        argv.pop(0)
    if not argv or argv[0] in ("-h", "--help", "--version"):
        top.parse_args(argv or ["--help"])
        return 0
    name = argv[0]
    if name not in SUBCOMMANDS:
        top.error(f"unknown command {name!r}; choose from {', '.join(SUBCOMMANDS)}")
    module_name, help_text = SUBCOMMANDS[name]
    module = importlib.import_module(f"metricanything.cli.{module_name}")
    parser = argparse.ArgumentParser(prog=f"metricanything {name}", description=help_text)
    module.configure(parser)
    _add_global_flags(parser)
    args = parser.parse_args(argv[1:])
    args.debug = bool(args.debug or "--debug" in lead)
    args.quiet = bool(args.quiet or "--quiet" in lead)
    args.verbose = bool(args.verbose or "--verbose" in lead)
    if args.quiet and args.verbose:
        print(f"metricanything {name}: error: --quiet and --verbose exclude each other; give one", file=sys.stderr)
        return 2
    if args.quiet and hasattr(args, "no_progress"):
        args.no_progress = True
    set_verbosity(QUIET if args.quiet else VERBOSE if args.verbose else NORMAL)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print(f"metricanything {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the one place that turns any error into a one-line message
        if args.debug:
            raise
        line, code = _error_line(name, exc)
        print(line, file=sys.stderr)
        return code
    finally:
        set_verbosity(NORMAL)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
