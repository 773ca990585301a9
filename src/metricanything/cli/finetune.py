"""``metricanything finetune``: continue pretraining a teacher on your own folder dataset, shards or native dataset.

It is ``pretrain`` starting from ``--teacher`` (``model.init``) with ``data.sources`` replaced by ``--data``.
For radar-camera fusion, train with radar-pattern prompts built from the dense/LiDAR GT of each sample:
``metricanything finetune --teacher runs/teacher_tiny/model --data my_radar_set --prompt-pattern radar:64``.
Any other config value can be changed with ``--set`` (the base config defaults to the ``teacher_tiny`` preset
for the optimiser/loss/loop settings; the model itself always comes from ``--teacher``).
"""

from __future__ import annotations

import argparse
from typing import Any

from metricanything.cli.pretrain import add_training_arguments, training_options


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teacher", required=True, help="pretrained teacher checkpoint folder to start from")
    parser.add_argument(
        "--data", action="append", required=True, metavar="PATH",
        help="folder dataset, shard set (dir / .tar / glob) or native dataset LOADER[@SPLIT]:ROOT to fine-tune on "
        "(repeatable, equal weights)",
    )
    parser.add_argument("--val-data", default=None, help="held-out folder/shards for validation (default: rendered)")
    parser.add_argument(
        "--prompt-pattern", default=None,
        help="build every training prompt with this pattern (e.g. radar:64, lidar:16); default: random sparse prompts",
    )
    parser.add_argument("--untrusted", action="store_true", help="the data's metric scale is not trusted (SfM/MVS)")
    add_training_arguments(parser, "teacher_tiny")


def options(args: argparse.Namespace) -> Any:
    from metricanything.tasks.training import FinetuneOptions

    return training_options(args, FinetuneOptions, teacher=args.teacher, data=args.data, val_data=args.val_data,
                            prompt_pattern=args.prompt_pattern, untrusted=args.untrusted)  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from metricanything.tasks.training import run

    run(options(args))
    return 0
