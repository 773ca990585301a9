"""Booster (stereo with non-Lambertian surfaces): disparity ``.npy`` + OpenCV XML calibration -> metric depth.

Layout: ``ROOT/{train,test}/{balanced,unbalanced}/<scene>/`` with ``camera_00/im*.png`` (the left camera, one
image per illumination), ``disp_00.npy`` (float disparity, pixels), ``mask_00.png`` (0 = excluded) and
``calib_00-02.xml`` (OpenCV FileStorage: ``proj_matL`` 3x4 and ``baselineLR`` in mm). As in the official
evaluation, depth_m = fx * baselineLR / (disp + 1e-6) / 1000 and valid = disp > 0 and mask_00 != 0. Every
image of a scene is one sample sharing the scene's depth. Intrinsics: fx, fy, cx, cy of ``proj_matL``.
``split``: None (all under ROOT) or a sub-path such as ``"train"`` or ``"train/balanced"``.
"""

from __future__ import annotations

import functools
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from metricanything.camera import Intrinsics
from metricanything.data.loaders._common import (
    check_same_size,
    finish_depth,
    lazy,
    no_samples,
    read_mask_png,
    read_rgb,
    require_dir,
)
from metricanything.data.sample import RGBDSample
from metricanything.errors import DatasetError, InputFileError


def read_opencv_xml(path: Path) -> dict[str, np.ndarray | float]:
    """Top-level nodes of an OpenCV FileStorage XML: matrices as arrays, scalars as floats."""
    if not path.is_file():
        raise InputFileError(path, "file is missing")
    try:
        tree = ET.parse(path)
    except ET.ParseError as exc:
        raise InputFileError(path, f"not valid XML ({exc})") from None
    out: dict[str, np.ndarray | float] = {}
    for node in tree.getroot():
        try:
            if node.get("type_id") == "opencv-matrix":
                rows, cols = int(node.findtext("rows")), int(node.findtext("cols"))
                data = np.array([float(t) for t in (node.findtext("data") or "").split()])
                out[node.tag] = data.reshape(rows, cols)
            elif node.text and node.text.strip():
                out[node.tag] = float(node.text.strip())
        except (TypeError, ValueError):
            raise InputFileError(path, f"cannot parse node <{node.tag}>") from None
    return out


@functools.lru_cache(maxsize=1)  # every image of a scene shares its depth
def _scene_depth(scene: Path) -> tuple[Intrinsics, np.ndarray, np.ndarray, float]:
    calib_path = scene / "calib_00-02.xml"
    calib = read_opencv_xml(calib_path)
    if "proj_matL" not in calib or "baselineLR" not in calib:
        raise InputFileError(calib_path, "needs proj_matL and baselineLR")
    P = np.asarray(calib["proj_matL"])
    disp_path = scene / "disp_00.npy"
    try:
        disp = np.load(disp_path, allow_pickle=False).astype(np.float64)
    except (ValueError, OSError, EOFError) as exc:
        raise InputFileError(disp_path, f"not a readable .npy ({exc})") from None
    if disp.ndim == 3 and disp.shape[2] == 1:
        disp = disp[..., 0]
    if disp.ndim != 2:
        raise InputFileError(disp_path, f"disparity must be H x W, got {disp.shape}")
    valid = np.isfinite(disp) & (disp > 0)
    mask_path = scene / "mask_00.png"
    if mask_path.is_file():
        mask = read_mask_png(mask_path)
        if mask.shape != disp.shape:
            raise InputFileError(mask_path, f"mask shape {mask.shape} differs from disparity {disp.shape}")
        valid &= mask
    baseline = float(calib["baselineLR"])
    K = Intrinsics(P[0, 0], P[1, 1], P[0, 2], P[1, 2], disp.shape[1], disp.shape[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(valid, K.fx * baseline / (disp + 1e-6) / 1000.0, 0.0)
    depth, valid = finish_depth(z, valid)
    return K, depth, valid, baseline


def _load(item: tuple[Path, Path, str]) -> RGBDSample:
    scene, img_path, split = item
    K, depth, valid, baseline = _scene_depth(scene)
    depth, valid = depth.copy(), valid.copy()
    image = read_rgb(img_path)
    check_same_size(image, depth, img_path, scene / "disp_00.npy")
    return RGBDSample(
        image, depth, valid, K, source_kind="captured", sensor="stereo", metric_scale_trusted=True,
        camera_id="booster_cam00", scene_id=scene.name, dataset="booster", sample_id=f"{scene.name}_{img_path.stem}",
        meta={"baseline_mm": baseline, "subset": split},
    )


def load_booster(root: str | os.PathLike, split: str | None = None) -> Iterator[RGBDSample]:
    """Iterate Booster samples (see the module docstring)."""
    root = require_dir(root, "Booster")
    base = root / split if split else root
    if not base.is_dir():
        raise DatasetError(f"{base}: Booster split folder not found")
    items = []
    for disp in sorted(base.rglob("disp_00.npy")):
        scene = disp.parent
        rel = scene.parent.relative_to(root).as_posix()
        for img in sorted((scene / "camera_00").glob("im*.png")):
            items.append((scene, img, rel))
    if not items:
        raise no_samples(base, "Booster", "<scene>/{camera_00/im*.png, disp_00.npy, calib_00-02.xml}")
    return lazy(items, _load)
