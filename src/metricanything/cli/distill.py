"""``metricanything distill``: distil the prompt-free student from teacher pseudo-labels (+ optional GT).

``metricanything distill --config student_tiny --set distill.teacher=runs/teacher_tiny/model``;
DDP: ``torchrun --nproc_per_node=N -m metricanything.cli distill --config ...``.
"""

from __future__ import annotations

import argparse

from metricanything.cli.pretrain import _is_main, add_training_arguments, load_training_config


def configure(parser: argparse.ArgumentParser) -> None:
    add_training_arguments(parser, "student_tiny")
    parser.add_argument("--teacher", default=None, help="teacher checkpoint to initialise the encoder from (distill.teacher)")
    parser.add_argument(
        "--data", action="append", default=[], metavar="PATH",
        help="pseudo-label shards (repeatable); replaces data.sources with these shard sets, equal weights",
    )


def run(args: argparse.Namespace) -> int:
    from metricanything.train.distill import run_distill

    extra: dict[str, object] = {}
    if args.teacher:
        extra["distill.teacher"] = args.teacher
    if args.data:
        extra["data.sources"] = [{"kind": "shards", "path": p} for p in args.data]
    cfg = load_training_config(args, "distill", extra)
    result = run_distill(cfg, resume=args.resume)
    if _is_main():
        print(f"student: {result.out_dir / 'model'} (step {result.step}, val {result.val})")
    return 0
