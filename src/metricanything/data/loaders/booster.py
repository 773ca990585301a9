"""Booster (stereo with non-Lambertian surfaces): disparity ``.npy`` + OpenCV XML calibration -> metric depth.

Layout: ``ROOT/{train,test}/{balanced,unbalanced}/<scene>/`` with ``camera_00/im*.png`` (the left camera, one
image per illumination), ``disp_00.npy`` (float disparity, pixels), ``mask_00.png`` (0 = excluded) and
``calib_00-02.xml`` (OpenCV FileStorage XML). The calibration is read as the authors' released evaluation
(``dataset/eval_booster.py``) reads it:

* intrinsics fx, fy, cx, cy: the top-level ``mtxL`` node (the left camera matrix, 3 x 3, from its ``<data>``);
  a calibration without ``mtxL`` is an error naming the file (``proj_matL`` is not used: its fx differs, e.g.
  4,600 vs 4,742 px on one scene, which would scale every GT depth by 0.97);
* baseline (mm): the top-level ``baselineLR``; without it, ``-proj_matR[0, 3] / fx`` (fx from ``mtxL``);
* depth_m = (fx * baseline) / (disp + 1e-6) / 1000 in float32 (the disparity as float32), valid = disp > 0
  and mask_00 != 0.

Every image of a scene is one sample sharing the scene's depth. ``split``: None (all under ROOT) or a
sub-path such as ``"train"`` or ``"train/balanced"``.
"""

from __future__ import annotations

import functools
import math
import os
import xml.etree.ElementTree as ET
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
    read_rgb,
    require_dir,
)
from metricanything.data.sample import RGBDSample
from metricanything.errors import DatasetError, InputFileError


def read_opencv_xml(path: Path) -> dict[str, np.ndarray | float | str]:
    """Top-level nodes of an OpenCV FileStorage XML: matrices as arrays, numbers as floats, other text as str.

    A matrix node (``type_id="opencv-matrix"``) must have ``rows`` x ``cols`` values in ``<data>``; a node with a
    ``<data>`` child but no ``rows`` / ``cols`` gives the flat array of its values.
    """
    if not path.is_file():
        raise InputFileError(path, "file is missing")
    try:
        tree = ET.parse(path)
    except ET.ParseError as exc:
        raise InputFileError(path, f"not valid XML ({exc})") from None
    out: dict[str, np.ndarray | float | str] = {}
    for node in tree.getroot():
        try:
            if node.get("type_id") == "opencv-matrix" or node.find("data") is not None:
                data = np.array([float(t) for t in (node.findtext("data") or "").split()])
                if node.find("rows") is not None or node.get("type_id") == "opencv-matrix":
                    data = data.reshape(int(node.findtext("rows")), int(node.findtext("cols")))
                out[node.tag] = data
            elif node.text and node.text.strip():
                text = node.text.strip()
                try:
                    out[node.tag] = float(text)
                except ValueError:
                    out[node.tag] = text  # e.g. a calibration date: kept, never read as a number
        except (TypeError, ValueError):
            raise InputFileError(path, f"cannot parse node <{node.tag}>") from None
    return out


def read_booster_calib(path: Path) -> tuple[float, float, float, float, float]:
    """``(fx, fy, cx, cy, baseline_mm)`` of a Booster ``calib_00-02.xml``, read as the released evaluation does.

    fx, fy, cx, cy come from ``mtxL`` (3 x 3); the baseline from ``baselineLR``, else ``-proj_matR[0, 3] / fx``.
    """
    calib = read_opencv_xml(path)
    if "mtxL" not in calib:
        raise InputFileError(path, "has no mtxL (the left camera matrix, which gives fx, fy, cx, cy)")
    K = np.asarray(calib["mtxL"], dtype=np.float64)
    if K.size != 9:
        raise InputFileError(path, f"mtxL must hold 9 values (3 x 3), got {K.size}")
    K = K.reshape(3, 3)
    fx, fy, cx, cy = float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])
    if not (np.isfinite([fx, fy, cx, cy]).all() and fx > 0 and fy > 0):
        raise InputFileError(path, f"mtxL gives fx {fx}, fy {fy}: focal lengths must be finite and > 0")
    if isinstance(calib.get("baselineLR"), float):
        baseline = float(calib["baselineLR"])
    elif "proj_matR" in calib and np.size(calib["proj_matR"]) == 12:
        baseline = -float(np.asarray(calib["proj_matR"]).reshape(3, 4)[0, 3]) / fx
    else:
        raise InputFileError(path, "needs baselineLR (mm) or proj_matR (3 x 4) for the baseline")
    if not (math.isfinite(baseline) and baseline > 0):
        raise InputFileError(path, f"baseline must be finite and > 0 mm, got {baseline}")
    return fx, fy, cx, cy, baseline


@functools.lru_cache(maxsize=1)  # every image of a scene shares its depth
def _scene_depth(scene: Path) -> tuple[Intrinsics, np.ndarray, np.ndarray, float]:
    fx, fy, cx, cy, baseline = read_booster_calib(scene / "calib_00-02.xml")
    disp_path = scene / "disp_00.npy"
    try:
        disp = np.load(disp_path, allow_pickle=False).astype(np.float32)
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
    K = Intrinsics(fx, fy, cx, cy, disp.shape[1], disp.shape[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        # float32 arithmetic in the released order: (fx * baseline) / (disp + 1e-6) / 1000
        z = np.float32(fx * baseline) / (disp + np.float32(1e-6)) / np.float32(1000.0)
    z = np.where(valid, z, 0.0)
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


def load_booster(root: str | os.PathLike, split: str | None = None) -> SampleIndex:
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
