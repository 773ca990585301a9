"""ScanNet-style RGB-D sequences (the SensReader export): uint16 millimetre depth + a 4x4 depth intrinsic.

Per scene ``ROOT/<scene>/``: ``color/<i>.jpg``, ``depth/<i>.png`` (uint16 mm, 0 = invalid),
``intrinsic/intrinsic_depth.txt`` (4x4; its top-left 3x3 is K for the depth frames) and optionally
``pose/<i>.txt`` (4x4 camera-to-world; rows of ``-inf``/``nan`` mean no pose). ScanNet's colour frames are larger
(1296 x 968) than its depth (640 x 480); the colour image is resized to the depth size (area interpolation) and
the sample uses the depth intrinsics, the usual practice (colour and depth cameras differ by a few pixels).
``split``: None = every scene folder (or ROOT itself if it is a scene); otherwise a scene list file
``ROOT/<split>.txt`` or ``ROOT/scannetv2_<split>.txt``. ``frame_stride`` keeps every n-th frame.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from metricanything.camera import Intrinsics
from metricanything.data.loaders._common import (
    SampleIndex,
    finish_depth,
    lazy,
    no_samples,
    read_numbers,
    read_png_raw,
    read_rgb,
    require_dir,
)
from metricanything.data.sample import RGBDSample
from metricanything.errors import DatasetError, InputFileError


def _is_scene(p: Path) -> bool:
    return (p / "depth").is_dir() and (p / "intrinsic" / "intrinsic_depth.txt").is_file()


def _frame_key(p: Path) -> tuple[int, str]:
    return (int(p.stem), p.stem) if p.stem.isdigit() else (1 << 62, p.stem)


def _load(item: tuple[Path, Path]) -> RGBDSample:
    scene, depth_path = item
    raw = read_png_raw(depth_path, np.uint16)
    depth, valid = finish_depth(raw.astype(np.float64) / 1000.0, raw > 0)
    h, w = depth.shape
    k = read_numbers(scene / "intrinsic" / "intrinsic_depth.txt", 16).reshape(4, 4)
    K = Intrinsics(k[0, 0], k[1, 1], k[0, 2], k[1, 2], w, h)
    img_path = next((p for p in (scene / "color" / f"{depth_path.stem}{s}" for s in (".jpg", ".png")) if p.is_file()), None)
    if img_path is None:
        raise InputFileError(scene / "color" / f"{depth_path.stem}.jpg", "colour frame is missing")
    image = read_rgb(img_path)
    resized = image.shape[:2] != (h, w)
    if resized:
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    pose = None
    pose_path = scene / "pose" / f"{depth_path.stem}.txt"
    if pose_path.is_file():
        with np.errstate(invalid="ignore"):
            T = read_numbers(pose_path, 16).reshape(4, 4)
        pose = T if np.isfinite(T).all() else None
    return RGBDSample(
        image, depth, valid, K, source_kind="captured", sensor="structured_light", metric_scale_trusted=True,
        camera_id=f"scannet_{scene.name}", scene_id=scene.name, dataset="scannet",
        sample_id=f"{scene.name}_{depth_path.stem}", pose=pose, meta={"color_resized_to_depth": resized},
    )


def load_scannet(root: str | os.PathLike, split: str | None = None, frame_stride: int = 1) -> SampleIndex:
    """Iterate ScanNet-style frames (see the module docstring)."""
    root = require_dir(root, "ScanNet")
    if frame_stride < 1:
        raise DatasetError(f"frame_stride must be >= 1, got {frame_stride}")
    if _is_scene(root):
        scenes = [root]
    elif split is None:
        scenes = sorted(p for p in root.iterdir() if _is_scene(p))
    else:
        listing = next((p for p in (root / f"{split}.txt", root / f"scannetv2_{split}.txt") if p.is_file()), None)
        if listing is None:
            raise DatasetError(f"{root}: no scene list {split}.txt or scannetv2_{split}.txt for split {split!r}")
        scenes = [root / n for n in listing.read_text(encoding="utf-8").split()]
        missing = [s for s in scenes if not _is_scene(s)]
        if missing:
            raise DatasetError(f"{missing[0]}: scene listed in {listing.name} is missing or incomplete")
    items = [(s, d) for s in scenes for d in sorted((s / "depth").glob("*.png"), key=_frame_key)[::frame_stride]]
    if not items:
        raise no_samples(root, "ScanNet", "<scene>/{color/*.jpg, depth/*.png, intrinsic/intrinsic_depth.txt}")
    return lazy(items, _load)
