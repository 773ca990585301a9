"""KITTI depth (prediction/completion benchmark): 16-bit PNG ground truth in metres * 256, 0 = invalid.

Two native layouts are read:

* **annotated** (``data_depth_annotated``): ``ROOT/{train,val}/<drive>/proj_depth/groundtruth/image_0{2,3}/
  <frame>.png``; the RGB frame comes from KITTI raw, ``RAW/<date>/<drive>/image_0X/data/<frame>.png``, and the
  intrinsics from ``RAW/<date>/calib_cam_to_cam.txt`` (``P_rect_0X``: fx = P[0,0], fy = P[1,1], cx = P[0,2],
  cy = P[1,2]). ``RAW`` is ``raw_root`` or the first of ROOT, ROOT/raw, ROOT's parent that holds ``<date>/``.
* **selection** (``depth_selection/val_selection_cropped``): ``groundtruth_depth/<drive>_groundtruth_depth_
  <frame>_image_0X.png``, ``image/<drive>_image_<frame>_image_0X.png`` and ``intrinsics/<same>.txt`` (the 3x3
  matrix as 9 numbers, row-major).

``split``: ``"train"``/``"val"`` (annotated), ``"val_selection_cropped"`` (selection), or None: the selection
if present, else every annotated split found. Depth is LiDAR (sensor ``lidar``, captured, metric).
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
    key_value_lines,
    lazy,
    no_samples,
    read_numbers,
    read_png_raw,
    read_rgb,
    require_dir,
)
from metricanything.data.sample import RGBDSample
from metricanything.errors import DatasetError, InputFileError

KITTI_DEPTH_SCALE = 256.0


def read_kitti_depth(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A KITTI depth PNG as (metres float32, valid): value / 256, 0 = invalid."""
    raw = read_png_raw(path, np.uint16)
    return finish_depth(raw.astype(np.float32) / np.float32(KITTI_DEPTH_SCALE), raw > 0)


def read_cam_to_cam(path: Path, camera: int, width: int, height: int) -> Intrinsics:
    """Intrinsics of rectified camera ``camera`` (2 or 3) from ``calib_cam_to_cam.txt``'s ``P_rect_0X``."""
    kv = key_value_lines(path)
    key = f"P_rect_{camera:02d}"
    if key not in kv:
        raise InputFileError(path, f"no {key} line")
    try:
        P = np.array([float(t) for t in kv[key].split()]).reshape(3, 4)
    except ValueError:
        raise InputFileError(path, f"{key} must hold 12 numbers") from None
    return Intrinsics(P[0, 0], P[1, 1], P[0, 2], P[1, 2], width, height)


def _find_selection(root: Path) -> Path | None:
    for cand in (root, root / "val_selection_cropped", root / "depth_selection" / "val_selection_cropped"):
        if (cand / "groundtruth_depth").is_dir() and (cand / "image").is_dir():
            return cand
    return None


def _selection_items(sel: Path) -> list[tuple[Path, Path, Path]]:
    items = []
    for gt in sorted((sel / "groundtruth_depth").glob("*.png")):
        name = gt.name.replace("_groundtruth_depth_", "_image_", 1)
        items.append((gt, sel / "image" / name, (sel / "intrinsics" / name).with_suffix(".txt")))
    return items


def _load_selection(item: tuple[Path, Path, Path]) -> RGBDSample:
    gt, img_path, k_path = item
    image = read_rgb(img_path)
    depth, valid = read_kitti_depth(gt)
    check_same_size(image, depth, img_path, gt)
    k = read_numbers(k_path, 9).reshape(3, 3)
    K = Intrinsics(k[0, 0], k[1, 1], k[0, 2], k[1, 2], depth.shape[1], depth.shape[0])
    stem = img_path.stem  # <drive>_image_<frame>_image_0X
    drive = stem.split("_image_")[0]
    return RGBDSample(
        image, depth, valid, K, source_kind="captured", sensor="lidar", metric_scale_trusted=True,
        camera_id=f"kitti_{drive[:10]}_cam{stem[-1]}", scene_id=drive, dataset="kitti", sample_id=stem,
    )


def _raw_candidates(root: Path, raw_root: str | os.PathLike | None) -> list[Path]:
    return [Path(raw_root)] if raw_root is not None else [root, root / "raw", root.parent]


def _annotated_items(root: Path, splits: list[str], raws: list[Path]) -> list[tuple[Path, Path, Path, int]]:
    items = []
    for split in splits:
        for gt_dir in sorted((root / split).glob("*/proj_depth/groundtruth/image_0[23]")):
            drive = gt_dir.parents[2].name
            date = drive[:10]
            cam = int(gt_dir.name[-1])
            raw = next((r for r in raws if (r / date / drive).is_dir()), None)
            if raw is None:
                raise DatasetError(
                    f"{root / split / drive}: KITTI raw frames for {drive} not found under "
                    f"{', '.join(str(r / date) for r in raws)} (pass raw_root=)"
                )
            for gt in sorted(gt_dir.glob("*.png")):
                img = raw / date / drive / f"image_0{cam}" / "data" / gt.name
                items.append((gt, img, raw / date / "calib_cam_to_cam.txt", cam))
    return items


def _load_annotated(item: tuple[Path, Path, Path, int]) -> RGBDSample:
    gt, img_path, calib, cam = item
    image = read_rgb(img_path)
    depth, valid = read_kitti_depth(gt)
    check_same_size(image, depth, img_path, gt)
    K = read_cam_to_cam(calib, cam, depth.shape[1], depth.shape[0])
    drive = gt.parents[3].name
    return RGBDSample(
        image, depth, valid, K, source_kind="captured", sensor="lidar", metric_scale_trusted=True,
        camera_id=f"kitti_{drive[:10]}_cam{cam}", scene_id=drive, dataset="kitti",
        sample_id=f"{drive}_image_0{cam}_{gt.stem}",
    )


def load_kitti(
    root: str | os.PathLike, split: str | None = None, raw_root: str | os.PathLike | None = None
) -> SampleIndex:
    """Iterate KITTI depth samples (see the module docstring for layouts and ``split``)."""
    root = require_dir(root, "KITTI")
    sel = _find_selection(root) if split in (None, "val_selection_cropped") else None
    if sel is not None:
        items = _selection_items(sel)
        if not items:
            raise no_samples(sel, "KITTI", "groundtruth_depth/*.png")
        return lazy(items, _load_selection)
    if split == "val_selection_cropped":
        raise DatasetError(f"{root}: no val_selection_cropped/groundtruth_depth folder")
    splits = [split] if split is not None else [s for s in ("train", "val") if (root / s).is_dir()]
    items = _annotated_items(root, splits, _raw_candidates(root, raw_root))
    if not items:
        raise no_samples(
            root, "KITTI", "{train,val}/<drive>/proj_depth/groundtruth/image_0X/*.png or depth_selection/val_selection_cropped"
        )
    return lazy(items, _load_annotated)
