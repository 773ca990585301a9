"""Multi-view reconstruction: per-view metric depth + known camera poses -> one coloured point cloud.

Each view's valid, edge-filtered pixels are unprojected (OpenCV camera frame), moved to the world frame with
its camera-to-world pose, and all views are merged. Optionally, points of one view that other views see as
*in front of* their own surface (free-space violations) are removed, and the union is voxel-downsampled:
each occupied voxel of side ``voxel_size`` becomes one point at the mean position and mean colour of the
points that fell into it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metricanything.api import infer, load_model
from metricanything.atomic import check_output_file
from metricanything.camera import Intrinsics, project, transform_points
from metricanything.data.folder import FolderDataset
from metricanything.depth_io import read_image
from metricanything.errors import InputFileError, InvalidInputError
from metricanything.models.bundled import resolve_model
from metricanything.pointcloud import (
    DEFAULT_EDGE_THRESHOLD,
    depth_to_point_cloud,
    rigid_transform_problem,
    write_glb,
    write_ply,
)
from metricanything.tasks.options import option


@dataclass
class FusedCloud:
    """The fused cloud: world-frame float32 points N x 3, uint8 colours N x 3 (or None), points per view."""

    points: np.ndarray
    colors: np.ndarray | None
    points_per_view: list[int]


def voxel_downsample(
    points: np.ndarray, colors: np.ndarray | None, voxel_size: float
) -> tuple[np.ndarray, np.ndarray | None]:
    """Average points (and colours) per occupied voxel of side ``voxel_size`` metres."""
    if not voxel_size > 0:
        raise InvalidInputError(f"voxel size must be positive, got {voxel_size}")
    if len(points) == 0:
        return points.astype(np.float32), colors
    keys = np.floor(np.asarray(points, dtype=np.float64) / voxel_size).astype(np.int64)
    _, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    n = len(counts)
    summed = np.zeros((n, 3), dtype=np.float64)
    np.add.at(summed, inverse, points)
    out_pts = (summed / counts[:, None]).astype(np.float32)
    out_cols = None
    if colors is not None:
        csum = np.zeros((n, 3), dtype=np.float64)
        np.add.at(csum, inverse, colors.astype(np.float64))
        out_cols = np.clip(np.rint(csum / counts[:, None]), 0, 255).astype(np.uint8)
    return out_pts, out_cols


def _free_space_violations(
    world_pts: np.ndarray, depth: np.ndarray, valid: np.ndarray, K: Intrinsics, pose: np.ndarray, tol: float
) -> np.ndarray:
    """True for points that view (depth, K, pose) sees clearly *behind* a point it observed nearer.

    A point projecting into a valid pixel with observed depth d, at camera depth z < d * (1 - tol), lies in
    space that view saw as empty: it is a floater and gets flagged.
    """
    cam = transform_points(world_pts, np.linalg.inv(pose))
    uv, z = project(cam, K)
    with np.errstate(invalid="ignore"):
        ui = np.floor(uv[:, 0] + 0.5)
        vi = np.floor(uv[:, 1] + 0.5)
        inside = np.isfinite(ui) & (ui >= 0) & (ui < K.width) & (vi >= 0) & (vi < K.height) & (z > 0)
    bad = np.zeros(len(world_pts), dtype=bool)
    idx = np.nonzero(inside)[0]
    u, v = ui[idx].astype(np.int64), vi[idx].astype(np.int64)
    seen = valid[v, u]
    observed = depth[v, u]
    bad[idx] = seen & (z[idx] < observed * (1.0 - tol))
    return bad


def fuse_views(
    depths: Sequence[np.ndarray],
    valids: Sequence[np.ndarray],
    intrinsics: Sequence[Intrinsics],
    poses: Sequence[np.ndarray],
    images: Sequence[np.ndarray] | None = None,
    voxel_size: float | None = None,
    drop_edges: bool = True,
    edge_threshold: float = DEFAULT_EDGE_THRESHOLD,
    free_space_tol: float | None = None,
) -> FusedCloud:
    """Fuse per-view metric depth maps with known camera-to-world poses (4x4, OpenCV camera frame).

    ``voxel_size`` (metres) averages points per voxel; None keeps every point. ``free_space_tol`` (e.g. 0.05)
    removes points that another view saw as empty space by more than that relative margin; None disables it.
    """
    n = len(depths)
    if n == 0:
        raise InvalidInputError("fuse_views needs at least one view")
    if not (len(valids) == len(intrinsics) == len(poses) == n) or (images is not None and len(images) != n):
        raise InvalidInputError("depths, valids, intrinsics, poses (and images) must have one entry per view")
    clouds, colours, counts = [], [], []
    for i in range(n):
        pose = np.asarray(poses[i], dtype=np.float64)
        problem = rigid_transform_problem(pose)
        if problem:
            raise InvalidInputError(f"view {i}: the pose is not a rigid camera-to-world transform: {problem}")
        pts, cols = depth_to_point_cloud(
            depths[i], valids[i], intrinsics[i], None if images is None else images[i], drop_edges, edge_threshold
        )
        world = transform_points(pts, pose)
        if free_space_tol is not None:
            keep = np.ones(len(world), dtype=bool)
            for j in range(n):
                if j != i:
                    keep &= ~_free_space_violations(
                        world, np.asarray(depths[j]), np.asarray(valids[j], bool), intrinsics[j],
                        np.asarray(poses[j], np.float64), free_space_tol,
                    )
            world, cols = world[keep], (None if cols is None else cols[keep])
        clouds.append(world)
        colours.append(cols)
        counts.append(len(world))
    points = np.concatenate(clouds).astype(np.float32)
    colors = None if images is None else np.concatenate(colours)
    if voxel_size is not None:
        points, colors = voxel_downsample(points, colors, voxel_size)
    return FusedCloud(points=points, colors=colors, points_per_view=counts)


# ---------------------------------------------------------------------------------------------- the command
@dataclass
class FuseOptions:
    """What ``metricanything fuse`` takes: the views (``data`` or ``images`` + ``poses``), the depth source,
    the model, the voxel size and the output ``.ply`` / ``.glb``."""

    out: Path = option("--out", Path("cloud.ply"), always=True)
    data: Path | None = option("--data", None)
    images: list[Path] | None = option("--images", None, many="nargs")
    poses: Path | None = option("--poses", None)
    depth_source: str = option("--depth-source", "model")  # model | gt (the dataset's own depth, --data only)
    model: str | None = option("--model", None)
    device: str = option("--device", "cpu")
    voxel: float = option("--voxel", 0.02)  # 0 keeps every point
    free_space_tol: float | None = option("--free-space-tol", None)


_POSE_FORM = "a 4x4 camera-to-world matrix [[R, t], [0, 0, 0, 1]] with R a rotation (OpenCV camera frame)"


def checked_pose(value: Any, where: str | Path, name: str) -> np.ndarray:
    """``value`` as a 4x4 rigid camera-to-world pose; :class:`InputFileError` naming ``where`` and ``name`` if not."""
    try:
        pose = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputFileError(where, f"pose of {name!r} is not a matrix of numbers; expected {_POSE_FORM}") from None
    problem = rigid_transform_problem(pose)
    if problem:
        raise InputFileError(where, f"pose of {name!r} is not rigid: {problem}; expected {_POSE_FORM}")
    return pose


def _views_from_images(images: Sequence[Path], poses_path: Path) -> list[tuple[str, np.ndarray, Any, np.ndarray, Any]]:
    try:
        spec = json.loads(Path(poses_path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputFileError(poses_path, "--poses file not found") from None
    except IsADirectoryError:
        raise InputFileError(poses_path, "--poses must be a JSON file, got a folder") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(poses_path, f"not valid JSON ({exc})") from None
    if not isinstance(spec, dict):
        raise InputFileError(poses_path, 'expected {"<image file name>": {"pose": 4x4, "intrinsics": {...}}, ...}')
    views = []
    for path in map(Path, images):
        entry = spec.get(path.name) or spec.get(path.stem)
        if not isinstance(entry, dict) or "pose" not in entry:
            raise InputFileError(poses_path, f"no pose for image {path.name!r} (a key {path.name!r} with a 'pose')")
        image = read_image(path)
        h, w = image.shape[:2]
        K = None
        if "intrinsics" in entry:
            k = entry["intrinsics"]
            try:
                K = Intrinsics(float(k["fx"]), float(k["fy"]), float(k["cx"]), float(k["cy"]), w, h)
            except KeyError as exc:
                raise InputFileError(poses_path, f"intrinsics of {path.name!r} lack {exc}") from None
            except (TypeError, ValueError, InvalidInputError) as exc:
                raise InputFileError(poses_path, f"intrinsics of {path.name!r} are invalid ({exc})") from None
        views.append((path.stem, image, K, checked_pose(entry["pose"], poses_path, path.name), None))
    return views


def _views(o: FuseOptions) -> list[tuple[str, np.ndarray, Any, np.ndarray, Any]]:
    """(name, image, intrinsics or None, camera-to-world pose, sample or None) per view."""
    if (o.data is None) == (o.images is None):
        raise InvalidInputError("give exactly one of --data DIR or --images ... --poses FILE")
    if o.data is None:
        if o.poses is None:
            raise InvalidInputError("--images needs --poses FILE")
        if o.depth_source == "gt":
            raise InvalidInputError("--depth-source gt needs --data (images alone carry no depth)")
        return _views_from_images(o.images or [], o.poses)
    views = []
    for s in FolderDataset(o.data):
        if s.pose is None:
            raise InputFileError(Path(o.data) / s.sample_id, "sample has no pose; fuse needs known poses")
        pose = checked_pose(s.pose, Path(o.data) / s.sample_id / "meta.json", s.sample_id)
        views.append((s.sample_id, s.image, s.intrinsics, pose, s))
    return views


def run(options: FuseOptions) -> FusedCloud:
    """Depth per view (the model's or the dataset's), fused with :func:`fuse_views` and written to ``out``."""
    o = options
    if Path(o.out).suffix.lower() not in (".ply", ".glb"):
        raise InvalidInputError(f"--out must end in .ply or .glb, got {o.out}")
    if not (o.voxel >= 0 and np.isfinite(o.voxel)):
        raise InvalidInputError(f"--voxel {o.voxel}: must be a size in metres >= 0 (0 keeps every point)")
    if o.free_space_tol is not None and not (0 < o.free_space_tol < 1):
        raise InvalidInputError(f"--free-space-tol {o.free_space_tol}: must be a relative margin in (0, 1), e.g. 0.05")
    check_output_file(o.out, "--out")
    views = _views(o)
    depths, valids, Ks, model = [], [], [], None
    for name, image, K, _pose, sample in views:
        if o.depth_source == "gt":
            depth, valid = sample.depth, sample.valid
        else:
            if model is None:
                model = load_model(resolve_model(o.model, "student"), device=o.device)
            result = infer(model, image, intrinsics=K)
            depth, valid, K = result.depth, result.valid, result.intrinsics
            print(f"{name}: depth from model, intrinsics {result.intrinsics_source.value}")
        depths.append(depth)
        valids.append(valid)
        Ks.append(K)
    fused = fuse_views(depths, valids, Ks, [v[3] for v in views], [v[1] for v in views],
                       voxel_size=o.voxel or None, free_space_tol=o.free_space_tol)  # fmt: skip
    (write_ply if Path(o.out).suffix.lower() == ".ply" else write_glb)(o.out, fused.points, fused.colors)
    print(f"fused {len(views)} views ({sum(fused.points_per_view)} points) -> {len(fused.points)} points: {o.out}")
    return fused
