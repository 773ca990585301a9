"""SUN RGB-D: per-frame folders with a JPEG, a bit-rotated 16-bit depth PNG and ``intrinsics.txt``.

A frame folder (found recursively under ROOT, e.g. ``SUNRGBD/kv1/NYUdata/NYU0001/``) holds ``image/*.jpg``,
``depth/*.png`` (or ``depth_bfx/*.png`` with ``refined=True``) and ``intrinsics.txt`` (3x3 K, row-major).
The PNG stores millimetres rotated right by 3 bits within 16 bits, so
depth_mm = (v >> 3) | ((v << 13) & 0xFFFF), metres = depth_mm / 1000; 0 = invalid. The official toolbox then
clips at 8 m; this loader does not (pass ``max_depth`` to mark farther pixels invalid explicitly).
Sensor by sub-folder: kv1 -> structured_light (Kinect v1), kv2 -> tof (Kinect v2), realsense and xtion ->
structured_light. ``split`` keeps frames whose relative path contains it (e.g. ``"kv2"``, ``"NYUdata"``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from metricanything.camera import Intrinsics
from metricanything.data.loaders._common import (
    SampleIndex,
    check_same_size,
    finish_depth,
    lazy,
    no_samples,
    read_numbers,
    read_png_raw,
    read_rgb,
    require_dir,
)
from metricanything.data.sample import RGBDSample
from metricanything.errors import InputFileError

SENSOR_BY_FOLDER = {"kv1": "structured_light", "kv2": "tof", "realsense": "structured_light", "xtion": "structured_light"}


def decode_sunrgbd_depth(v: np.ndarray) -> np.ndarray:
    """Undo SUN RGB-D's 3-bit rotation: uint16 PNG values -> metres (float32; 0 stays 0)."""
    v = v.astype(np.uint32)
    mm = ((v >> 3) | ((v << 13) & 0xFFFF)) & 0xFFFF
    return (mm.astype(np.float64) / 1000.0).astype(np.float32)


def _first(folder: Path, patterns: tuple[str, ...]) -> Path:
    for pat in patterns:
        found = sorted(folder.glob(pat))
        if found:
            return found[0]
    raise InputFileError(folder, f"no {' or '.join(patterns)} file")


def _load(item: tuple[Path, Path, bool, float | None]) -> RGBDSample:
    frame, root, refined, max_depth = item
    img_path = _first(frame / "image", ("*.jpg", "*.png"))
    depth_dir = frame / ("depth_bfx" if refined else "depth")
    depth_path = _first(depth_dir, ("*.png",))
    image = read_rgb(img_path)
    meters = decode_sunrgbd_depth(read_png_raw(depth_path, np.uint16))
    mask = None if max_depth is None else meters <= max_depth
    depth, valid = finish_depth(meters, mask)
    check_same_size(image, depth, img_path, depth_path)
    k = read_numbers(frame / "intrinsics.txt", 9).reshape(3, 3)
    K = Intrinsics(k[0, 0], k[1, 1], k[0, 2], k[1, 2], depth.shape[1], depth.shape[0])
    rel = frame.relative_to(root).parts
    device = next((p for p in rel if p in SENSOR_BY_FOLDER), "")
    return RGBDSample(
        image, depth, valid, K, source_kind="captured", sensor=SENSOR_BY_FOLDER.get(device, "rgbd"),
        metric_scale_trusted=True, camera_id=f"sunrgbd_{device or 'unknown'}", scene_id=frame.name, dataset="sunrgbd",
        sample_id="_".join(rel), meta={"device": device, "refined_depth": refined},
    )


def load_sunrgbd(
    root: str | os.PathLike, split: str | None = None, refined: bool = False, max_depth: float | None = None
) -> SampleIndex:
    """Iterate SUN RGB-D frames under ``root`` (see the module docstring)."""
    root = require_dir(root, "SUN RGB-D")
    frames = sorted(p.parent for p in root.rglob("intrinsics.txt") if (p.parent / "image").is_dir() and (p.parent / "depth").is_dir())
    if split:
        frames = [f for f in frames if split in f.relative_to(root).as_posix()]
    if not frames:
        raise no_samples(root, "SUN RGB-D", "<frame>/{image/*.jpg, depth/*.png, intrinsics.txt}")
    return lazy([(f, root, refined, max_depth) for f in frames], _load)
