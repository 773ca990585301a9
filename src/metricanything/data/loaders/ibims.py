"""iBims-1: indoor laser-scan ground truth, in either of its two published layouts.

* **raw** (``ibims1_core_raw``): ``imagelist.txt`` (optional; else every ``rgb/*.png``), ``rgb/<n>.png``,
  ``depth/<n>.png`` (uint16, metres = value * 50 / 65535), ``mask_invalid/<n>.png`` and
  ``mask_transp/<n>.png`` (non-zero = usable, zero = invalid / transparent), ``calib/<n>.txt`` holding
  ``fx,fy,cx,cy``.
* **mat** (``ibims1_core_mat``): ``<n>.mat`` (MATLAB v5) with a struct ``data`` whose fields ``rgb`` (uint8
  H x W x 3), ``depth`` (metres), ``mask_invalid``, ``mask_transp`` and ``calib`` (3 x 3 K) are read.

valid = depth > 0 and mask_invalid != 0 and (mask_transp != 0 unless ``keep_transparent``), the benchmark's
own mask. Intrinsics are used as published. ``split`` is unused (iBims-1 is a test set).
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
    read_mask_png,
    read_numbers,
    read_png_raw,
    read_rgb,
    require_dir,
)
from metricanything.data.sample import RGBDSample
from metricanything.errors import InputFileError

IBIMS_PNG_MAX_DEPTH = 50.0  # metres at value 65535


def _sample(name: str, image, depth, valid, K: Intrinsics) -> RGBDSample:
    return RGBDSample(
        image, depth, valid, K, source_kind="captured", sensor="lidar", metric_scale_trusted=True,
        camera_id="ibims1", scene_id=name.rsplit("_", 1)[0], dataset="ibims1", sample_id=name,
    )


def _load_raw(item: tuple[Path, str, bool]) -> RGBDSample:
    root, name, keep_transparent = item
    img_path, depth_path = root / "rgb" / f"{name}.png", root / "depth" / f"{name}.png"
    image = read_rgb(img_path)
    raw = read_png_raw(depth_path, np.uint16)
    mask = raw > 0
    for sub in ("mask_invalid",) if keep_transparent else ("mask_invalid", "mask_transp"):
        p = root / sub / f"{name}.png"
        if p.is_file():
            m = read_mask_png(p)
            if m.shape != raw.shape:
                raise InputFileError(p, f"mask shape {m.shape} differs from depth {raw.shape}")
            mask &= m
    depth, valid = finish_depth(raw.astype(np.float64) * (IBIMS_PNG_MAX_DEPTH / 65535.0), mask)
    check_same_size(image, depth, img_path, depth_path)
    fx, fy, cx, cy = read_numbers(root / "calib" / f"{name}.txt", 4)
    return _sample(name, image, depth, valid, Intrinsics(fx, fy, cx, cy, depth.shape[1], depth.shape[0]))


def _load_mat(item: tuple[Path, bool]) -> RGBDSample:
    import scipy.io

    path, keep_transparent = item
    try:
        data = scipy.io.loadmat(str(path))["data"]
        field = lambda k: np.asarray(data[k][0][0])  # noqa: E731
        image = field("rgb").astype(np.uint8)
        raw = field("depth").astype(np.float32)
        mask = field("mask_invalid") != 0
        if not keep_transparent:
            mask &= field("mask_transp") != 0
        calib = field("calib").astype(np.float64)
    except (KeyError, ValueError, IndexError, TypeError) as exc:
        raise InputFileError(path, f"not an iBims-1 .mat (struct 'data' with rgb/depth/mask_invalid/mask_transp/calib): {exc}") from None
    except Exception as exc:  # scipy's readers raise assorted types for corrupt files
        raise InputFileError(path, f"not a readable MATLAB v5 file ({exc})") from None
    if calib.shape == (3, 3):
        fx, fy, cx, cy = calib[0, 0], calib[1, 1], calib[0, 2], calib[1, 2]
    elif calib.size == 4:
        fx, fy, cx, cy = calib.ravel()
    else:
        raise InputFileError(path, f"calib must be 3x3 or 4 values, got shape {calib.shape}")
    depth, valid = finish_depth(raw, mask)
    if image.ndim != 3 or image.shape[:2] != depth.shape:
        raise InputFileError(path, f"rgb {image.shape} and depth {depth.shape} do not match")
    return _sample(path.stem, np.ascontiguousarray(image), depth, valid, Intrinsics(fx, fy, cx, cy, depth.shape[1], depth.shape[0]))


def load_ibims(root: str | os.PathLike, split: str | None = None, keep_transparent: bool = False) -> SampleIndex:
    """Iterate iBims-1 samples from the raw (PNG) or mat layout under ``root``."""
    root = require_dir(root, "iBims-1")
    if (root / "rgb").is_dir() and (root / "depth").is_dir():
        listing = root / "imagelist.txt"
        if listing.is_file():
            names = listing.read_text(encoding="utf-8").split()
        else:
            names = sorted(p.stem for p in (root / "rgb").glob("*.png"))
        if not names:
            raise no_samples(root, "iBims-1", "rgb/*.png")
        return lazy([(root, n, keep_transparent) for n in names], _load_raw)
    mats = sorted(root.glob("*.mat"))
    if not mats:
        raise no_samples(root, "iBims-1", "rgb/ + depth/ + calib/ folders (raw) or <name>.mat files (mat)")
    return lazy([(m, keep_transparent) for m in mats], _load_mat)
