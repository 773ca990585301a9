"""``metricanything distill``: distil the prompt-free student from teacher pseudo-labels (+ optional GT).

``metricanything distill --config configs/student_tiny.yaml --set distill.teacher=runs/teacher_tiny/model``;
DDP: ``torchrun --nproc_per_node=N -m metricanything.cli distill --config ...``.
"""

from __future__ import annotations

import argparse

from metricanything.cli.pretrain import _is_main, add_training_arguments, load_training_config


def configure(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser, "configs/student_tiny.yaml")
    parser.add_argument("--teacher", default=None, help="teacher checkpoint to initialise the encoder from (distill.teacher)")
    parser.add_argument(
        "--data", action="append", default=[], metavar="PATH",
        help="pseudo-label shards (repeatable); replaces data.sources with these shard sets, equal weights",
    )


def run(args: argparse.Namespace) -> int:
    from metricanything.train.distill import run_distill

    extra = []
    if args.teacher:
        extra.append(f"distill.teacher={args.teacher}")
    if args.data:
        items = ", ".join(f"{{kind: shards, path: {p!r}}}" for p in args.data)
        extra.append(f"data.sources=[{items}]")
    cfg = load_training_config(args, extra)
    result = run_distill(cfg, resume=args.resume)
    if _is_main():
        print(f"student: {result.out_dir / 'model'} (step {result.step}, val {result.val})")
    return 0
