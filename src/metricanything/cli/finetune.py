"""``metricanything finetune``: continue pretraining a teacher on your own folder dataset, shards or native dataset.

It is ``pretrain`` starting from ``--teacher`` (``model.init``) with ``data.sources`` replaced by ``--data``.
For radar-camera fusion, train with radar-pattern prompts built from the dense/LiDAR GT of each sample:
``metricanything finetune --teacher runs/teacher_tiny/model --data my_radar_set --prompt-pattern radar:64``.
Any other config value can be changed with ``--set`` (the base config defaults to the ``teacher_tiny`` preset
for the optimiser/loss/loop settings; the model itself always comes from ``--teacher``).
"""

from __future__ import annotations

import argparse

from metricanything.cli.pretrain import _is_main, add_training_arguments, load_training_config


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


def _source(path: str, untrusted: bool) -> dict[str, object]:
    from metricanything.train.pseudo_label import parse_data_spec

    src = parse_data_spec(path)
    if src.kind == "render":
        return {"kind": "render", "num_samples": src.num_samples, "seed": src.seed}
    entry = {"kind": src.kind, "path": src.path, "name": src.name, "split": src.split}
    if untrusted:
        entry["metric_scale_trusted"] = False
    return {k: v for k, v in entry.items() if v is not None}


def run(args: argparse.Namespace) -> int:
    from metricanything.train.pretrain import run_pretrain

    extra: dict[str, object] = {
        "model.init": args.teacher,
        "model.overrides": {},
        "data.sources": [_source(p, args.untrusted) for p in args.data],
    }
    if args.val_data:
        extra["data.val_sources"] = [_source(args.val_data, False)]
    if args.prompt_pattern:
        extra["prompts.pattern"] = args.prompt_pattern
    cfg = load_training_config(args, "pretrain", extra)
    result = run_pretrain(cfg, resume=args.resume)
    if _is_main():
        print(f"fine-tuned teacher: {result.out_dir / 'model'} (step {result.step}, val {result.val})")
    return 0
