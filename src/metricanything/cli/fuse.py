"""``metricanything fuse``: per-view metric depth + known poses -> one voxel-downsampled coloured point cloud."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from metricanything.errors import InputFileError, InvalidInputError


def configure(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("views (one of)")
    src.add_argument("--data", type=Path, help="folder-format dataset whose samples carry pose and intrinsics")
    src.add_argument("--images", type=Path, nargs="+", help="image files (with --poses)")
    parser.add_argument(
        "--poses",
        type=Path,
        help='JSON: {"<image file name>": {"pose": 4x4 camera-to-world (OpenCV frame), '
        '"intrinsics": {"fx","fy","cx","cy"}}}',
    )
    parser.add_argument(
        "--depth-source",
        choices=["model", "gt"],
        default="model",
        help="predict depth with a model (default) or use the dataset's own depth (--data only)",
    )
    parser.add_argument("--model", help="checkpoint dir / .pt / hub id (default: the bundled student)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--voxel", type=float, default=0.02, help="voxel size in metres (0 keeps every point)")
    parser.add_argument(
        "--free-space-tol",
        type=float,
        default=None,
        help="drop points another view saw as empty space by this relative margin (e.g. 0.05)",
    )
    parser.add_argument("--out", "-o", type=Path, required=True, help="output .ply or .glb")


def _load_views_from_images(images: list[Path], poses_path: Path):
    from metricanything.camera import Intrinsics
    from metricanything.depth_io import read_image

    try:
        spec = json.loads(poses_path.read_text())
    except FileNotFoundError:
        raise InputFileError(poses_path, "file not found") from None
    except json.JSONDecodeError as exc:
        raise InputFileError(poses_path, f"not valid JSON ({exc})") from None
    views = []
    for path in images:
        entry = spec.get(path.name) or spec.get(path.stem)
        if entry is None or "pose" not in entry:
            raise InputFileError(poses_path, f"no pose for image {path.name!r}")
        image = read_image(path)
        h, w = image.shape[:2]
        K = None
        if "intrinsics" in entry:
            k = entry["intrinsics"]
            try:
                K = Intrinsics(k["fx"], k["fy"], k["cx"], k["cy"], w, h)
            except KeyError as exc:
                raise InputFileError(poses_path, f"intrinsics of {path.name!r} lack {exc}") from None
        views.append((path.stem, image, K, np.asarray(entry["pose"], dtype=np.float64), None))
    return views


def run(args: argparse.Namespace) -> int:
    from metricanything.pointcloud import write_glb, write_ply
    from metricanything.tasks.fuse import fuse_views

    if (args.data is None) == (args.images is None):
        raise InvalidInputError("give exactly one of --data DIR or --images ... --poses FILE")
    if args.out.suffix.lower() not in (".ply", ".glb"):
        raise InvalidInputError(f"--out must end in .ply or .glb, got {args.out}")
    if args.data is not None:
        from metricanything.data.folder import FolderDataset

        views = []
        for s in FolderDataset(args.data):
            if s.pose is None:
                raise InputFileError(args.data / s.sample_id, "sample has no pose; fuse needs known poses")
            views.append((s.sample_id, s.image, s.intrinsics, s.pose, s))
    else:
        if args.poses is None:
            raise InvalidInputError("--images needs --poses FILE")
        if args.depth_source == "gt":
            raise InvalidInputError("--depth-source gt needs --data (images alone carry no depth)")
        views = _load_views_from_images(args.images, args.poses)

    depths, valids, Ks, poses, images = [], [], [], [], []
    model = None
    for name, image, K, pose, sample in views:
        if args.depth_source == "gt":
            depth, valid = sample.depth, sample.valid
        else:
            from metricanything.api import infer, load_model
            from metricanything.models.bundled import resolve_model

            if model is None:
                model = load_model(resolve_model(args.model, "student"), device=args.device)
            result = infer(model, image, intrinsics=K)
            depth, valid, K = result.depth, result.valid, result.intrinsics
            print(f"{name}: depth from model, intrinsics {result.intrinsics_source.value}")
        depths.append(depth)
        valids.append(valid)
        Ks.append(K)
        poses.append(pose)
        images.append(image)
    fused = fuse_views(
        depths, valids, Ks, poses, images, voxel_size=args.voxel or None, free_space_tol=args.free_space_tol
    )
    if args.out.suffix.lower() == ".ply":
        write_ply(args.out, fused.points, fused.colors)
    else:
        write_glb(args.out, fused.points, fused.colors)
    print(f"fused {len(views)} views ({sum(fused.points_per_view)} points) -> {len(fused.points)} points: {args.out}")
    return 0
