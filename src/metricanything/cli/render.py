"""``metricanything render``: write a heterogeneous synthetic RGB-D dataset in the folder format."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output folder (folder dataset format)")
    parser.add_argument("--num", type=int, default=200, help="number of samples (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="seed; the same seed gives byte-identical output")
    parser.add_argument("--size", default=None, help="force WIDTHxHEIGHT (default: random per sample, ~256^2)")
    parser.add_argument(
        "--sources", default=None,
        help="comma-separated source kinds, sample i gets kind i mod K (default rendered,lidar,tof,stereo,sfm,mvs; "
        "also structured_light)",
    )
    parser.add_argument("--fov-deg", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                        help="horizontal field of view range in degrees (default 25 100: wide to tele); e.g. "
                        "55 65 for one camera rig")
    parser.add_argument("--depth-format", choices=("npy", "png"), default="npy", help="depth file format")
    parser.add_argument("--workers", type=int, default=1, help="parallel render processes (default 1)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def options(args: argparse.Namespace) -> Any:
    from metricanything.tasks.render import RenderOptions, parse_size

    return RenderOptions(
        out=args.out, num=args.num, seed=args.seed, size=parse_size(args.size) if args.size else None,
        sources=args.sources, fov_deg=tuple(args.fov_deg) if args.fov_deg else None, depth_format=args.depth_format,
        workers=args.workers, progress=not args.no_progress,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from metricanything.tasks.render import run

    run(options(args))
    return 0
