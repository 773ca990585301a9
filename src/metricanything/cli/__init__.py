"""The ``metricanything`` command: one entry point, one module per subcommand.

Argument parsing only. Each subcommand module ``metricanything.cli.<module>`` defines
``configure(parser)`` (its flags), ``options(args)`` (the parsed flags as the options dataclass of its task) and
``run(args) -> int`` (one call of the task function in :mod:`metricanything.tasks`). A module is imported only
when its subcommand runs, and imports its task inside ``options``/``run``, so ``--help`` stays fast (no torch).
:func:`main` is the one place that turns a :class:`~metricanything.errors.MetricAnythingError` into
``metricanything <cmd>: error: ...`` and exit code 2.
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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = build_parser()
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
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except MetricAnythingError as exc:
        print(f"metricanything {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"metricanything {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
