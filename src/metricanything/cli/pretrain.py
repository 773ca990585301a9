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


def load_training_config(args: argparse.Namespace, stage: str, extra: dict[str, Any] | None = None):
    """The stage's config from ``--config``, the command's own options (``extra``), ``--set`` and ``--out``."""
    from metricanything.config import merge_overrides, parse_set
    from metricanything.train.config import load_config

    out = {"out_dir": args.out} if args.out else {}
    return load_config(args.config, merge_overrides(extra, parse_set(args.overrides), out), stage=stage)


def configure(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser, "teacher_tiny")


def run(args: argparse.Namespace) -> int:
    from metricanything.train.pretrain import run_pretrain

    cfg = load_training_config(args, "pretrain")
    result = run_pretrain(cfg, resume=args.resume)
    if result is not None and _is_main():
        print(f"teacher: {result.out_dir / 'model'} (step {result.step}, val {result.val})")
    return 0


def _is_main() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"
