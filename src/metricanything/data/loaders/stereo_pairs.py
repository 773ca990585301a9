"""Calibrated, rectified stereo pairs -> semi-dense metric depth with OpenCV semi-global matching.

Layout (the one the PyPI package ``stereodemo`` ships in ``stereodemo/datasets/oak-d``; real pairs captured with an
OAK-D Lite, CC BY 4.0)::

    ROOT/[...]/<name>_left.png, <name>_right.png     rectified pair (grey or colour, same size)
    ROOT/[...]/stereodemo_calibration.json           (or stereo_calibration.json) next to them

    {"width": 640, "height": 480, "fx": .., "fy": .., "cx0": .., "cx1": .., "cy": .., "baseline_meters": ..,
     "depth_range": [min_m, max_m], "left_image_rect_normalized": [x0, y0, w, h]}   (last two optional)

Depth of the left image: z = fx * baseline / (d - (cx0 - cx1)) with d the SGBM disparity (1/16 px). A pixel is
valid when the left-right check agrees within ``lr_max_diff`` px, the depth is inside ``depth_range`` and the
pixel is inside ``left_image_rect_normalized`` (the part of the rectified left image that holds real pixels).
The result is noisy and semi-dense, as stereo is: ``source_kind="captured"``, ``sensor="stereo"``,
``metric_scale_trusted=True`` (metric through the calibrated baseline). Intrinsics are the calibration's
(fx, fy, cx0, cy) rescaled to the image when its size differs from ``width`` x ``height`` (same aspect).
Grey images become 3 equal channels. ``split`` keeps pairs whose relative path contains it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from metricanything.camera import Intrinsics
from metricanything.data.loaders._common import finish_depth, lazy, no_samples, require_dir
from metricanything.data.sample import RGBDSample
from metricanything.errors import InputFileError

CALIBRATION_NAMES = ("stereodemo_calibration.json", "stereo_calibration.json")
_REQUIRED = ("width", "height", "fx", "fy", "cx0", "cx1", "cy", "baseline_meters")


@dataclass(frozen=True)
class StereoCalibration:
    """A rectified pair's calibration (pixels of a ``width`` x ``height`` image, baseline in metres)."""

    width: int
    height: int
    fx: float
    fy: float
    cx0: float
    cx1: float
    cy: float
    baseline_m: float
    depth_range: tuple[float, float] = (0.3, 20.0)
    left_rect: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)

    def resized(self, width: int, height: int) -> StereoCalibration:
        """The same calibration for a resized copy (pixel-edge convention, like :meth:`Intrinsics.resized`)."""
        sx, sy = width / self.width, height / self.height
        return StereoCalibration(
            width, height, self.fx * sx, self.fy * sy, (self.cx0 + 0.5) * sx - 0.5, (self.cx1 + 0.5) * sx - 0.5,
            (self.cy + 0.5) * sy - 0.5, self.baseline_m, self.depth_range, self.left_rect,
        )

    @property
    def intrinsics(self) -> Intrinsics:
        return Intrinsics(self.fx, self.fy, self.cx0, self.cy, self.width, self.height)


def read_stereo_calibration(path: str | os.PathLike) -> StereoCalibration:
    """Parse a ``stereodemo_calibration.json`` (InputFileError naming the file and the problem)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "file is missing")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputFileError(path, f"not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise InputFileError(path, "expected a JSON object")
    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        raise InputFileError(path, f"missing keys {missing} (needs {', '.join(_REQUIRED)})")
    try:
        cal = StereoCalibration(
            int(d["width"]), int(d["height"]), float(d["fx"]), float(d["fy"]), float(d["cx0"]), float(d["cx1"]),
            float(d["cy"]), float(d["baseline_meters"]),
            tuple(float(v) for v in d.get("depth_range", (0.3, 20.0))),  # type: ignore[arg-type]
            tuple(float(v) for v in d.get("left_image_rect_normalized", (0.0, 0.0, 1.0, 1.0))),  # type: ignore[arg-type]
        )
    except (TypeError, ValueError) as e:
        raise InputFileError(path, f"non-numeric calibration value ({e})") from None
    if cal.width < 1 or cal.height < 1 or cal.fx <= 0 or cal.fy <= 0 or cal.baseline_m <= 0:
        raise InputFileError(path, "width, height, fx, fy and baseline_meters must be positive")
    if len(cal.depth_range) != 2 or not 0 < cal.depth_range[0] < cal.depth_range[1]:
        raise InputFileError(path, f"depth_range must be [min, max] with 0 < min < max, got {list(cal.depth_range)}")
    if len(cal.left_rect) != 4:
        raise InputFileError(path, "left_image_rect_normalized must hold 4 numbers (x0, y0, w, h)")
    return cal


@dataclass(frozen=True)
class SGBMParams:
    """OpenCV StereoSGBM settings (disparities in pixels at the image's size)."""

    block_size: int = 5
    uniqueness: int = 10
    speckle_window: int = 100
    speckle_range: int = 2
    lr_max_diff: float = 1.0


def _sgbm(left: np.ndarray, right: np.ndarray, min_disp: int, num_disp: int, p: SGBMParams) -> np.ndarray:
    ch = 1 if left.ndim == 2 else 3
    m = cv2.StereoSGBM_create(
        minDisparity=min_disp, numDisparities=num_disp, blockSize=p.block_size,
        P1=8 * ch * p.block_size**2, P2=32 * ch * p.block_size**2, disp12MaxDiff=-1,
        uniquenessRatio=p.uniqueness, speckleWindowSize=p.speckle_window, speckleRange=p.speckle_range,
        mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY,
    )
    # SGBM leaves the first min_disp + num_disp columns unmatched: pad them (replicated border) and crop again
    pad = min_disp + num_disp
    lp = cv2.copyMakeBorder(left, 0, 0, pad, 0, cv2.BORDER_REPLICATE)
    rp = cv2.copyMakeBorder(right, 0, 0, pad, 0, cv2.BORDER_REPLICATE)
    return m.compute(lp, rp)[:, pad:].astype(np.float32) / 16.0


def stereo_depth(
    left: np.ndarray, right: np.ndarray, cal: StereoCalibration, params: SGBMParams = SGBMParams()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(depth float32 m, valid bool, left disparity px) of a rectified pair; see the module docstring."""
    if left.shape != right.shape:
        raise ValueError(f"left {left.shape} and right {right.shape} images differ in size")
    h, w = left.shape[:2]
    dcx = cal.cx0 - cal.cx1
    fb = cal.fx * cal.baseline_m
    lo = max(0, int(np.floor(fb / cal.depth_range[1] + dcx)) - 1)
    hi = int(np.ceil(fb / cal.depth_range[0] + dcx)) + 1
    num = max(16, int(np.ceil((hi - lo) / 16.0)) * 16)
    disp_l = _sgbm(left, right, lo, num, params)
    # right-view disparity: match the mirrored pair (mirrored right as "left"), mirror back
    disp_r = _sgbm(np.ascontiguousarray(right[:, ::-1]), np.ascontiguousarray(left[:, ::-1]), lo, num, params)[:, ::-1]
    ok = disp_l >= lo
    xs = np.arange(w, dtype=np.float32)[None, :] - disp_l
    xr = np.clip(np.round(xs).astype(np.int64), 0, w - 1)
    dr = np.take_along_axis(disp_r, xr, axis=1)
    ok &= (xs >= 0) & (dr >= lo) & (np.abs(dr - disp_l) <= params.lr_max_diff)
    x0, y0, rw, rh = cal.left_rect
    rect = np.zeros((h, w), bool)
    rect[int(np.ceil(y0 * h)):int(np.floor((y0 + rh) * h)), int(np.ceil(x0 * w)):int(np.floor((x0 + rw) * w))] = True
    ok &= rect
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(ok, fb / np.where(ok, disp_l - dcx, 1.0), 0.0)
    ok &= (z >= cal.depth_range[0]) & (z <= cal.depth_range[1])
    depth, valid = finish_depth(z, ok)
    return depth, valid, disp_l


def _read_grey_or_rgb(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputFileError(path, "file is missing")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise InputFileError(path, "not a readable image")
    if img.dtype != np.uint8:
        raise InputFileError(path, f"expected an 8-bit image, got {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    if img.ndim == 3 and np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2]):
        img = img[..., 0]
    return img if img.ndim == 2 else np.ascontiguousarray(img[..., ::-1])  # BGR -> RGB


def _find_calibration(folder: Path) -> Path | None:
    return next((folder / n for n in CALIBRATION_NAMES if (folder / n).is_file()), None)


def load_stereo_pair(left_path: Path, params: SGBMParams = SGBMParams(), root: Path | None = None) -> RGBDSample:
    """One sample from ``<name>_left.png`` (its ``_right`` partner and calibration next to it)."""
    name = left_path.name[: -len("_left.png")]
    right_path = left_path.with_name(f"{name}_right.png")
    cal_path = _find_calibration(left_path.parent)
    if cal_path is None:
        raise InputFileError(left_path.parent / CALIBRATION_NAMES[0], "calibration file is missing")
    cal = read_stereo_calibration(cal_path)
    left, right = _read_grey_or_rgb(left_path), _read_grey_or_rgb(right_path)
    if left.shape[:2] != right.shape[:2]:
        raise InputFileError(right_path, f"size {right.shape[1]}x{right.shape[0]} differs from the left image's")
    h, w = left.shape[:2]
    if (w, h) != (cal.width, cal.height):
        if abs(w / cal.width - h / cal.height) > 0.01 * w / cal.width:
            raise InputFileError(cal_path, f"calibration is {cal.width}x{cal.height}, images are {w}x{h} (aspect differs)")
        cal = cal.resized(w, h)
    if left.ndim != right.ndim:  # one grey, one colour: match on grey
        left = left if left.ndim == 2 else cv2.cvtColor(left, cv2.COLOR_RGB2GRAY)
        right = right if right.ndim == 2 else cv2.cvtColor(right, cv2.COLOR_RGB2GRAY)
    depth, valid, _ = stereo_depth(left, right, cal, params)
    image = np.repeat(left[..., None], 3, axis=2) if left.ndim == 2 else left
    rel = left_path.parent.relative_to(root).as_posix() if root is not None else left_path.parent.name
    scene = f"{rel}/{name}" if rel not in ("", ".") else name
    return RGBDSample(
        np.ascontiguousarray(image), depth, valid, cal.intrinsics, source_kind="captured", sensor="stereo",
        metric_scale_trusted=True, camera_id=f"stereo_{cal.fx:.3f}_{cal.baseline_m:.4f}", scene_id=scene,
        dataset="stereo_pairs", sample_id=scene.replace("/", "_"),
        meta={
            "baseline_m": cal.baseline_m, "cx1": cal.cx1, "depth_range": list(cal.depth_range),
            "matcher": {"method": "OpenCV StereoSGBM 3-way + left-right check", **params.__dict__},
            "grey": bool(left.ndim == 2), "calibration_file": cal_path.name,
        },
    )


def load_stereo_pairs(
    root: str | os.PathLike, split: str | None = None, params: SGBMParams | None = None
) -> Iterator[RGBDSample]:
    """Iterate the rectified pairs under ``root`` (see the module docstring)."""
    root = require_dir(root, "stereo pairs")
    lefts = sorted(
        p for p in root.rglob("*_left.png")
        if p.with_name(p.name[: -len("_left.png")] + "_right.png").is_file() and _find_calibration(p.parent)
    )
    if split:
        lefts = [p for p in lefts if split in p.relative_to(root).as_posix()]
    if not lefts:
        raise no_samples(root, "stereo-pair", "<name>_left.png + <name>_right.png + stereodemo_calibration.json")
    prm = params or SGBMParams()
    return lazy(lefts, lambda p: load_stereo_pair(p, prm, root))
