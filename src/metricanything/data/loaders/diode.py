"""DIODE: ``<name>.png`` + ``<name>_depth.npy`` (float32 H x W x 1, metres) + ``<name>_depth_mask.npy``.

Layout: ``ROOT/{train,val}/{indoors,outdoor}/scene_*/scan_*/<name>{.png,_depth.npy,_depth_mask.npy}``.
Every image is 1024 x 768 from the same FARO scanner camera: fx = fy = 886.81, cx = 512, cy = 384 (the
published values, used as is). valid = mask != 0 and depth finite and > 0. ``split``: None (everything under
ROOT), ``"train"``, ``"val"``, or a sub-path such as ``"val/indoors"``.
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
    read_rgb,
    require_dir,
)
from metricanything.data.sample import RGBDSample
from metricanything.errors import DatasetError, InputFileError

DIODE_INTRINSICS = Intrinsics(886.81, 886.81, 512.0, 384.0, 1024, 768)


def _npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputFileError(path, "file is missing")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputFileError(path, f"not a readable .npy ({exc})") from None
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise InputFileError(path, f"expected H x W or H x W x 1, got shape {arr.shape}")
    return arr


def _load(depth_path: Path) -> RGBDSample:
    stem = depth_path.name[: -len("_depth.npy")]
    img_path = depth_path.with_name(stem + ".png")
    image = read_rgb(img_path)
    raw = _npy(depth_path)
    mask_path = depth_path.with_name(stem + "_depth_mask.npy")
    mask = _npy(mask_path) != 0 if mask_path.is_file() else None
    if mask is not None and mask.shape != raw.shape:
        raise InputFileError(mask_path, f"mask shape {mask.shape} differs from depth {raw.shape}")
    depth, valid = finish_depth(raw, mask)
    check_same_size(image, depth, img_path, depth_path)
    h, w = depth.shape
    if w * DIODE_INTRINSICS.height != h * DIODE_INTRINSICS.width:
        raise InputFileError(depth_path, f"{w}x{h} is not a (rescaled) 1024x768 DIODE frame; intrinsics unknown")
    K = DIODE_INTRINSICS if (w, h) == DIODE_INTRINSICS.size else DIODE_INTRINSICS.resized(w, h)
    parts = depth_path.parts
    env = "outdoor" if "outdoor" in parts else ("indoors" if "indoors" in parts else "")
    return RGBDSample(
        image, depth, valid, K, source_kind="captured", sensor="lidar", metric_scale_trusted=True,
        camera_id="diode", scene_id=f"{depth_path.parent.parent.name}/{depth_path.parent.name}", dataset="diode",
        sample_id=stem, meta={"environment": env} if env else {},
    )


def load_diode(root: str | os.PathLike, split: str | None = None) -> SampleIndex:
    """Iterate DIODE samples (see the module docstring)."""
    root = require_dir(root, "DIODE")
    base = root / split if split else root
    if not base.is_dir():
        raise DatasetError(f"{base}: DIODE split folder not found")
    items = sorted(base.rglob("*_depth.npy"))
    if not items:
        raise no_samples(base, "DIODE", "**/<name>_depth.npy next to <name>.png")
    return lazy(items, _load)
