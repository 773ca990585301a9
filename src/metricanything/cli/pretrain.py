"""``metricanything pretrain``: pretrain the prompt-conditioned teacher (Robust MAE on Sparse Metric Prompts).

One process: ``metricanything pretrain --config configs/teacher_tiny.yaml``. Several (DDP; gloo on CPU,
NCCL on GPU): ``torchrun --nproc_per_node=N -m metricanything.cli pretrain --config ...``.
"""

from __future__ import annotations

import argparse


def add_training_arguments(parser: argparse.ArgumentParser, default_config: str | None) -> None:
    """The options shared by ``pretrain``, ``distill`` and ``finetune``."""
    parser.add_argument(
        "--config",
        default=default_config,
        help="YAML config (a path, or a name under ./configs such as teacher_tiny)"
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
        help="continue from the newest checkpoint in the run directory (starts fresh if there is none); checkpoints "
        "are read as plain data only, a file that pickles code is refused",
    )


def load_training_config(args: argparse.Namespace, extra: list[str] | None = None):
    from metricanything.train.config import load_config

    overrides = list(extra or []) + list(args.overrides)
    if args.out:
        overrides.append(f"out_dir={args.out}")
    return load_config(args.config, overrides)


def configure(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser, "configs/teacher_tiny.yaml")


def run(args: argparse.Namespace) -> int:
    from metricanything.train.pretrain import run_pretrain

    cfg = load_training_config(args)
    result = run_pretrain(cfg, resume=args.resume)
    if result is not None and _is_main():
        print(f"teacher: {result.out_dir / 'model'} (step {result.step}, val {result.val})")
    return 0


def _is_main() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"
