"""Prompt inputs of ``metricanything infer``: prompt files and folders, LiDAR sweeps, PNG prompt scales.

Used by :func:`metricanything.tasks.infer.run_inference` (names are re-exported there).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from metricanything.camera import Intrinsics, splat_points_to_depth, transform_points
from metricanything.depth_io import PNG_SCALE_MM
from metricanything.errors import InputFileError, InvalidInputError
from metricanything.pointcloud import rigid_transform_problem

if TYPE_CHECKING:
    from metricanything.tasks.infer import InferOptions, InputImage

#: largest value of a 16-bit PNG
U16 = 65535

#: LiDAR record lengths (float32 values per point) tried when ``point_dims`` looks wrong
_LIDAR_DIMS = (3, 4, 5, 6)


def _column_spread(points: np.ndarray) -> float:
    """max / min inter-quartile range over the columns of ``points`` (1 when every column looks alike)."""
    q = np.nanpercentile(points, [25, 75], axis=0)
    iqr = np.maximum(q[1] - q[0], 1e-12)
    return float(iqr.max() / iqr.min())


def check_point_dims(raw: np.ndarray, dims: int, path: Path, calib_path: Path) -> None:
    """Refuse a ``.bin`` sweep read with the wrong ``point_dims``.

    Read with the wrong record length, every column of the array cycles through all the file's fields (x, y,
    z, intensity, ring, ...), so all columns look alike; read right, they differ (intensity spans ~1, x tens of
    metres). The declared ``dims`` is refused when its columns look alike and another record length that
    divides the file gives clearly distinct columns.
    """
    if raw.size < 40 * dims:
        return
    finite = raw[np.isfinite(raw)] if not np.isfinite(raw).all() else raw
    if finite.size != raw.size:
        return
    spread = {d: _column_spread(raw.reshape(-1, d)[:4096]) for d in _LIDAR_DIMS if raw.size % d == 0 and d <= raw.size // 40}
    own = spread.get(dims)
    if own is None:
        return
    best = max(spread, key=spread.get)
    if best != dims and own < 1.5 and spread[best] > 3 * own:
        raise InputFileError(
            path,
            f"read with point_dims={dims} (from {calib_path}), its columns are mixed up: the file looks like "
            f"{best} float32 values per point (KITTI 4: x y z intensity; nuScenes 5: x y z intensity ring). Set "
            f'"point_dims": {best} in {calib_path}',
        )


def read_lidar_prompt(points_path: Path, calib_path: Path, K: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Project a LiDAR sweep into the image with the z-buffer: ``(depth, mask)`` at K's size.

    ``points_path``: ``.bin`` float32 records (``point_dims`` floats each, x y z first; KITTI 4, nuScenes 5)
    or ``.npy`` N x >=3. ``calib_path`` JSON: ``{"T_cam_lidar": 4x4 (LiDAR -> camera, OpenCV frame),
    "point_dims": 4}``. A ``.bin`` read with the wrong ``point_dims`` is refused (:func:`check_point_dims`).
    """
    calib_path = Path(calib_path)
    try:
        calib = json.loads(calib_path.read_text())
    except FileNotFoundError:
        raise InputFileError(calib_path, "LiDAR calibration file (--lidar-calib) not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(calib_path, f"not valid JSON ({exc})") from None
    except IsADirectoryError:
        raise InputFileError(calib_path, "--lidar-calib must be a JSON file, got a folder") from None
    if not isinstance(calib, dict) or "T_cam_lidar" not in calib:
        raise InputFileError(calib_path, "missing 'T_cam_lidar' (4x4 LiDAR-to-camera transform)")
    try:
        T = np.asarray(calib["T_cam_lidar"], dtype=np.float64)
    except (TypeError, ValueError):
        raise InputFileError(calib_path, "'T_cam_lidar' must be a 4x4 array of numbers") from None
    if T.shape != (4, 4):
        raise InputFileError(calib_path, f"'T_cam_lidar' must be 4x4, got {T.shape}")
    problem = rigid_transform_problem(T)
    if problem:
        raise InputFileError(calib_path, f"'T_cam_lidar' is not a rigid transform: {problem}")
    points_path = Path(points_path)
    if not points_path.is_file():
        raise InputFileError(points_path, "LiDAR points file not found")
    if points_path.suffix.lower() == ".bin":
        dims = calib.get("point_dims", 4)
        if isinstance(dims, bool) or not isinstance(dims, int) or not 3 <= dims <= 64:
            raise InputFileError(calib_path, f"'point_dims' must be an integer >= 3 (KITTI 4, nuScenes 5), got {dims!r}")
        raw = np.fromfile(points_path, dtype="<f4")
        if raw.size == 0:
            raise InputFileError(points_path, "LiDAR file is empty")
        if raw.size % dims:
            raise InputFileError(
                points_path,
                f"size ({raw.size} float32 values) is not a multiple of point_dims={dims} from {calib_path}",
            )
        check_point_dims(raw, dims, points_path, calib_path)
        pts = raw.reshape(-1, dims)[:, :3]
    elif points_path.suffix.lower() == ".npy":
        try:
            pts = np.load(points_path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputFileError(points_path, f"unreadable .npy ({exc})") from None
        if pts.ndim != 2 or pts.shape[1] < 3 or not np.issubdtype(pts.dtype, np.number):
            raise InputFileError(points_path, f"LiDAR .npy must be N x >=3 numbers, got {pts.shape} {pts.dtype}")
        pts = pts[:, :3].astype(np.float64)
    else:
        raise InputFileError(points_path, "LiDAR points (with --lidar-calib) must be .bin or .npy")
    pts = pts[np.isfinite(pts).all(axis=1)]
    depth, mask = splat_points_to_depth(transform_points(pts, T), K)
    if not mask.any():
        raise InputFileError(points_path, f"no LiDAR point projects into the image (check T_cam_lidar in {calib_path})")
    return depth, mask


#: prompt file suffixes looked up in a ``--prompt`` folder, in order
PROMPT_FOLDER_SUFFIXES = (".npy", ".csv", ".png", ".bin")


def find_prompt_file(prompt: Path, item: InputImage) -> Path:
    """``prompt`` itself if a file, else ``prompt/<stem>.{npy,csv,png,bin}`` for a folder of prompts.

    A folder without a prompt for this image is an error (never a silent prompt-free run).
    """
    if prompt.is_file():
        return prompt
    if prompt.is_dir():
        stem = item.path.stem if item.frame is None else item.name
        for ext in PROMPT_FOLDER_SUFFIXES:
            cand = prompt / f"{stem}{ext}"
            if cand.is_file():
                return cand
        raise InputFileError(
            prompt,
            f"the --prompt folder has no prompt for image {item.path.name if item.frame is None else item.name} "
            f"(looked for {stem}{{{','.join(PROMPT_FOLDER_SUFFIXES)}}}); add one, or run the images without a "
            "prompt in a separate infer run without --prompt",
        )
    raise InputFileError(prompt, "--prompt file or folder not found")




def prompt_png_scale(path: Path, options: InferOptions) -> tuple[float, str]:
    """Metres per unit of a PNG prompt and where that came from: ``--prompt-png-scale``, else the
    ``depth_png_scale_m`` of an ``intrinsics.json`` beside it (an ``infer`` output folder), else millimetres."""
    if options.prompt_png_scale is not None:
        return float(options.prompt_png_scale), "--prompt-png-scale"
    sidecar = path.parent / "intrinsics.json"
    if sidecar.is_file():
        try:
            value = json.loads(sidecar.read_text(encoding="utf-8")).get("depth_png_scale_m")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, OSError):
            value = None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
            return float(value), f"depth_png_scale_m of {sidecar}"
    return PNG_SCALE_MM, "millimetres (default)"


def prompt_for(item: InputImage, options: InferOptions, K: Intrinsics | None) -> tuple[object, dict]:
    """The prompt of ``item`` (``None`` without ``--prompt``) and what to record about it in ``intrinsics.json``."""
    from metricanything.prompts.prompt import Prompt, read_prompt_file

    if options.prompt is None:
        return None, {}
    path = find_prompt_file(Path(options.prompt), item)
    h, w = item.image.shape[:2]
    record: dict = {"prompt": str(path)}
    if options.lidar_calib is not None:
        if K is None:
            raise InvalidInputError(
                "a LiDAR prompt (--lidar-calib) needs this image's intrinsics to project the points: pass --fx or "
                "--fov-x, or put a sidecar intrinsics JSON next to the image"
            )
        depth, mask = read_lidar_prompt(path, options.lidar_calib, K)
        prompt = Prompt.from_map(depth, mask)
    elif path.suffix.lower() == ".bin":
        raise InputFileError(
            path,
            "a .bin prompt is a LiDAR sweep: add --lidar-calib CALIB.json "
            '({"T_cam_lidar": 4x4 LiDAR-to-camera, "point_dims": 4}) and the camera focal (--fx or --fov-x)',
        )
    else:
        scale = PNG_SCALE_MM
        if path.suffix.lower() == ".png":
            scale, origin = prompt_png_scale(path, options)
            record.update(prompt_png_scale_m=scale, prompt_png_scale_from=origin)
        prompt = read_prompt_file(path, w, h, png_scale=scale)
    zmax = float(prompt.z.max())
    limit = U16 * options.depth_png_scale
    if zmax > limit:
        fit = next((s for s in (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0) if zmax / s <= U16), None)
        raise InputFileError(
            path,
            f"prompt depths reach {zmax:.6g} m but depth.png holds at most {limit:g} m at --depth-png-scale "
            f"{options.depth_png_scale:g}; prompt depths are metres (a 16-bit PNG prompt: millimetres unless "
            "--prompt-png-scale says otherwise): check the units"
            + (f", or rerun with --depth-png-scale {fit:g}" if fit else " (no 16-bit PNG scale holds this depth)"),
        )
    record["prompt_points"] = int(prompt.num_points)
    return prompt, record
