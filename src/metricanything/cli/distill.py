"""``metricanything distill``: distil the prompt-free student from teacher pseudo-labels (+ optional GT).

``metricanything distill --config student_tiny --set distill.teacher=runs/teacher_tiny/model``;
DDP: ``torchrun --nproc_per_node=N -m metricanything.cli distill --config ...``.
"""

from __future__ import annotations

import argparse
from typing import Any

from metricanything.cli.pretrain import add_training_arguments, training_options


def configure(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser, "student_tiny")
    parser.add_argument("--teacher", default=None, help="teacher checkpoint to initialise the encoder from (distill.teacher)")
    parser.add_argument(
        "--data", action="append", default=[], metavar="PATH",
        help="pseudo-label shards (repeatable); replaces data.sources with these shard sets, equal weights",
    )


def options(args: argparse.Namespace) -> Any:
    from metricanything.tasks.training import DistillOptions

    return training_options(args, DistillOptions, teacher=args.teacher, data=args.data)


def run(args: argparse.Namespace) -> int:
    from metricanything.tasks.training import run

    run(options(args))
    return 0
