"""``metricanything pseudo-label``: write teacher pseudo-labels (depth + confidence) as shards.

``metricanything pseudo-label --teacher runs/teacher_tiny/model --data render:512 --out runs/pseudo_tiny``;
data-parallel: ``torchrun --nproc_per_node=N -m metricanything.cli pseudo-label ...``. Re-running skips the
blocks already written (resumable by shard).
"""

from __future__ import annotations

import argparse
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--teacher", required=True, help="teacher checkpoint folder (save_pretrained output)")
    parser.add_argument(
        "--data", action="append", required=True, metavar="SPEC",
        help="folder dataset, shard set (dir / .tar / glob), native dataset LOADER[@SPLIT]:ROOT or "
        "render:N[:SEED[:WxH[:KIND,...[:FOVLO-FOVHI]]]] (repeatable)",
    )
    parser.add_argument("--out", required=True, help="output folder for the pseudo-label shards")
    parser.add_argument("--shard-size", type=int, default=None, help="samples per shard (default 64)")
    parser.add_argument(
        "--prompt-mode", choices=("auto", "all", "fraction", "none"), default=None,
        help="auto (default): sparse GT -> all points, dense GT -> --prompt-fraction, none -> prompt-free",
    )
    parser.add_argument("--prompt-fraction", type=float, default=None, help="fraction of dense GT used as prompt (0.01)")
    parser.add_argument("--sparse-threshold", type=float, default=None, help="GT valid fraction counted as sparse (0.05)")
    parser.add_argument("--no-tta", action="store_true", help="no flip test-time augmentation (confidence = 1)")
    parser.add_argument("--min-confidence", type=float, default=None, help="pixels below are invalid (0.5)")
    parser.add_argument("--conf-tau", type=float, default=None, help="confidence = exp(-|ln d - ln d_flip| / tau) (0.05)")
    parser.add_argument("--no-align", action="store_true", help="do not align untrusted-scale GT (it is then unused)")
    parser.add_argument("--image-format", choices=("png", "jpg"), default=None)
    parser.add_argument("--limit", type=int, default=None, help="label only the first N samples")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:1, ...")
    parser.add_argument("--no-progress", action="store_true")


def options(args: argparse.Namespace) -> Any:
    from metricanything.tasks.training import PseudoLabelOptions

    return PseudoLabelOptions(
        teacher=args.teacher, data=list(args.data), out=args.out, shard_size=args.shard_size,
        prompt_mode=args.prompt_mode, prompt_fraction=args.prompt_fraction, sparse_threshold=args.sparse_threshold,
        tta=not args.no_tta, min_confidence=args.min_confidence, conf_tau=args.conf_tau, align=not args.no_align,
        image_format=args.image_format, limit=args.limit, seed=args.seed, device=args.device,
        progress=not args.no_progress,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from metricanything.tasks.training import pseudo_label

    pseudo_label(options(args))
    return 0
