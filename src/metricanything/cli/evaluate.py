"""``metricanything eval``: evaluate models and baselines on a benchmark protocol.

Examples::

    metricanything eval --model runs/teacher --benchmark synthetic_indoor \\
        --prompt points:500 downsample:8 lidar:16 extreme:5 \\
        --compare baseline:nearest baseline:linear baseline:ipbasic baseline:prompt_median baseline:train_median
    metricanything eval --model runs/student --benchmark booster --root /data/booster
    metricanything eval --model teacher_dir --model student_dir --data folder:../shared/real_frames
    metricanything eval --list
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", default=[], metavar="CKPT",
                        help="checkpoint folder / file of a teacher or student (repeatable)")  # fmt: skip
    parser.add_argument("--benchmark", metavar="NAME", help="benchmark name (see --list) or a benchmark YAML path")
    parser.add_argument("--data", metavar="LOADER:PATH",
                        help="evaluate this dataset (e.g. folder:PATH for any folder-format dataset) with the "
                             "--benchmark protocol, by default 'real_dev': completion at 1 %% and "
                             "0.1 %% random prompts and a 16-beam LiDAR on held-out pixels next to linear / nearest "
                             "interpolation, and monocular depth next to the per-frame oracle constant")  # fmt: skip
    parser.add_argument("--prompt", nargs="+", metavar="PATTERN",
                        help="prompt pattern(s), one result column each (e.g. points:500 downsample:8 lidar:16 "
                             "extreme:5 frac:0.01); 'none' is a prompt-free column; default: the benchmark's own")  # fmt: skip
    parser.add_argument("--out", metavar="DIR", type=Path, help="output folder (default: eval_results/<benchmark>)")
    parser.add_argument("--compare", nargs="+", default=[], metavar="NAME",
                        help="more models/baselines side by side: checkpoint paths or baseline:nearest, "
                             "baseline:linear, baseline:ipbasic, baseline:prompt_median, "
                             "baseline:train_median[=METRES]")  # fmt: skip
    parser.add_argument("--root", metavar="PATH", help="dataset root (overrides the benchmark's environment variable)")
    parser.add_argument("--limit", type=int, metavar="N", help="evaluate only the first N samples")
    parser.add_argument("--frames", nargs="+", metavar="ID", help="evaluate only these sample ids")
    parser.add_argument("--panels", type=int, default=3, metavar="N", help="qualitative panels: first N samples")
    parser.add_argument("--device", default="cpu", help="device for models (cpu, cuda, ...)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"), help="model precision")
    parser.add_argument("--list", action="store_true", help="list the shipped benchmarks and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def options(args: argparse.Namespace) -> Any:
    from metricanything.tasks.evaluate import EvalOptions

    return EvalOptions(
        models=args.model, benchmark=args.benchmark, data=args.data, prompts=args.prompt, out=args.out,
        compare=args.compare, root=args.root, limit=args.limit, frames=args.frames, panels=args.panels,
        device=args.device, precision=args.precision, list_only=args.list, progress=not args.quiet,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from metricanything.tasks.evaluate import run

    run(options(args))
    return 0
