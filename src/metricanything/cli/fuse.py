"""``metricanything fuse``: per-view metric depth + known poses -> one voxel-downsampled coloured point cloud."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("views (one of)")
    src.add_argument("--data", type=Path, help="folder-format dataset whose samples carry pose and intrinsics")
    src.add_argument("--images", type=Path, nargs="+", help="image files (with --poses)")
    parser.add_argument("--poses", type=Path,
                        help='JSON: {"<image file name>": {"pose": 4x4 camera-to-world (OpenCV frame), '
                        '"intrinsics": {"fx","fy","cx","cy"}}}')  # fmt: skip
    parser.add_argument("--depth-source", choices=["model", "gt"], default="model",
                        help="predict depth with a model (default) or use the dataset's own depth (--data only)")
    parser.add_argument("--model", help="checkpoint dir / .pt / hub id (default: the bundled student)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--voxel", type=float, default=0.02, help="voxel size in metres (0 keeps every point)")
    parser.add_argument("--free-space-tol", type=float, default=None,
                        help="drop points another view saw as empty space by this relative margin (e.g. 0.05)")
    parser.add_argument("--out", "-o", type=Path, required=True, help="output .ply or .glb")


def options(args: argparse.Namespace) -> Any:
    from metricanything.tasks.fuse import FuseOptions

    return FuseOptions(out=args.out, data=args.data, images=args.images, poses=args.poses,
                       depth_source=args.depth_source, model=args.model, device=args.device, voxel=args.voxel,
                       free_space_tol=args.free_space_tol)  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from metricanything.tasks.fuse import run

    run(options(args))
    return 0
