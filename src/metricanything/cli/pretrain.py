"""``metricanything pretrain``: pretrain the prompt-conditioned teacher (Robust MAE on Sparse Metric Prompts).

One process: ``metricanything pretrain --config teacher_tiny`` (a shipped preset; any YAML path works too).
Several (DDP; gloo on CPU, NCCL on GPU): ``torchrun --nproc_per_node=N -m metricanything.cli pretrain --config ...``.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_training_arguments(parser: argparse.ArgumentParser, default_config: str | None) -> None:
    """The options shared by ``pretrain``, ``distill`` and ``finetune``."""
    from metricanything.config import list_configs

    parser.add_argument(
        "--config",
        default=default_config,
        help="training config: a shipped preset (" + ", ".join(list_configs()) + ") or a path to a YAML file"
        + (f"; default {default_config}" if default_config else ""),
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.steps=500 --set optim.lr=1e-4 (repeatable; YAML values)",
    )
    parser.add_argument("--out", default=None, help="run directory (overrides out_dir)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest checkpoint in the run directory (starts fresh if there is none); only "
        "settings that do not change the computation so far (train.steps, logging and checkpoint intervals, "
        "threads, ...) may differ from the checkpoint's, other changes are refused; checkpoints are read as "
        "plain data only, a file that pickles code is refused",
    )


def configure(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser, "teacher_tiny")


def training_options(args: argparse.Namespace, cls: type | None = None, **fields: Any) -> Any:
    """The training options (``cls``, default :class:`~metricanything.tasks.training.TrainOptions`) of the shared
    arguments plus the command's own ``fields``."""
    from metricanything.config import parse_set
    from metricanything.tasks.training import TrainOptions

    return (cls or TrainOptions)(config=args.config, overrides=parse_set(args.overrides), out=args.out,
                                 resume=args.resume, **fields)  # fmt: skip


def options(args: argparse.Namespace) -> Any:
    return training_options(args)


def run(args: argparse.Namespace) -> int:
    from metricanything.tasks.training import run

    run(options(args))
    return 0
