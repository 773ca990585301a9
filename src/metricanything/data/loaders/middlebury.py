"""Middlebury 2014 stereo: PFM disparity + ``calib.txt`` -> metric depth.

Scene folders (found recursively under ROOT) hold ``im0.png``, ``disp0.pfm`` (2014 scenes) or ``disp0GT.pfm``
(MiddEval3) and ``calib.txt``::

    cam0=[f 0 cx0; 0 f cy; 0 0 1]
    cam1=[f 0 cx1; 0 f cy; 0 0 1]
    doffs=...      # x-difference of principal points, cx1 - cx0
    baseline=...   # millimetres
    width=... height=...

depth_m = baseline_mm * f / (d + doffs) / 1000. Disparity ``inf`` (or non-finite, or d + doffs <= 0) is invalid.
Intrinsics are cam0's. When the disparity map is not ``width`` x ``height`` (a rescaled copy), f, cx, cy and
doffs are rescaled with it (disparity scales with the image, so depth is unchanged). ``split`` keeps scene folders
whose relative path contains it (e.g. ``"perfect"``, ``"trainingQ"``).
"""

from __future__ import annotations

import os
import re
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
from metricanything.depth_io import read_pfm
from metricanything.errors import InputFileError

_MATRIX = re.compile(r"\[([^\]]*)\]")


def read_middlebury_calib(path: Path) -> dict[str, float | np.ndarray]:
    """``calib.txt`` as a dict: ``cam0``/``cam1`` 3x3 arrays, numbers for the rest."""
    if not path.is_file():
        raise InputFileError(path, "file is missing")
    out: dict[str, float | np.ndarray] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if "=" not in line:
            continue
        key, _, value = (s.strip() for s in line.partition("="))
        try:
            if key in ("cam0", "cam1"):
                m = _MATRIX.search(value)
                nums = [float(t) for t in (m.group(1) if m else value).replace(";", " ").split()]
                out[key] = np.array(nums, dtype=np.float64).reshape(3, 3)
            else:
                out[key] = float(value)
        except ValueError:
            raise InputFileError(path, f"cannot parse {key}={value!r}") from None
    for need in ("cam0", "doffs", "baseline"):
        if need not in out:
            raise InputFileError(path, f"missing {need}=")
    return out


def disparity_to_depth(disp: np.ndarray, f: float, baseline_mm: float, doffs: float) -> tuple[np.ndarray, np.ndarray]:
    """Metric depth (m) and validity from Middlebury disparity."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        denom = disp.astype(np.float64) + doffs
        ok = np.isfinite(disp) & (denom > 0)
        z = np.where(ok, baseline_mm * f / np.where(ok, denom, 1.0) / 1000.0, 0.0)
    return finish_depth(z, ok)


def _load(scene: Path) -> RGBDSample:
    calib_path = scene / "calib.txt"
    calib = read_middlebury_calib(calib_path)
    disp_path = next(p for p in (scene / "disp0.pfm", scene / "disp0GT.pfm") if p.is_file())
    disp, _ = read_pfm(disp_path)
    if disp.ndim != 2:
        raise InputFileError(disp_path, "disparity PFM must be single-channel")
    h, w = disp.shape
    cam0 = calib["cam0"]
    K = Intrinsics(cam0[0, 0], cam0[1, 1], cam0[0, 2], cam0[1, 2], int(calib.get("width", w)), int(calib.get("height", h)))
    doffs = float(calib["doffs"])
    if K.size != (w, h):
        s = w / K.width
        if abs(h / K.height - s) > 0.01 * s:
            raise InputFileError(disp_path, f"disparity is {w}x{h}, calib.txt says {K.width}x{K.height} (aspect differs)")
        K, doffs = K.resized(w, h), doffs * s
    depth, valid = disparity_to_depth(disp, K.fx, float(calib["baseline"]), doffs)
    img_path = scene / "im0.png"
    image = read_rgb(img_path)
    check_same_size(image, depth, img_path, disp_path)
    return RGBDSample(
        image, depth, valid, K, source_kind="captured", sensor="structured_light", metric_scale_trusted=True,
        camera_id=f"middlebury_{scene.name}", scene_id=scene.name, dataset="middlebury", sample_id=scene.name,
        meta={"baseline_mm": float(calib["baseline"]), "doffs": doffs},
    )


def load_middlebury(root: str | os.PathLike, split: str | None = None) -> SampleIndex:
    """Iterate Middlebury 2014 / MiddEval3 scenes under ``root`` (see the module docstring)."""
    root = require_dir(root, "Middlebury")
    scenes = sorted(
        {p.parent for pat in ("disp0.pfm", "disp0GT.pfm") for p in root.rglob(pat) if (p.parent / "calib.txt").is_file()}
    )
    if split:
        scenes = [s for s in scenes if split in s.relative_to(root).as_posix()]
    if not scenes:
        raise no_samples(root, "Middlebury", "<scene>/{im0.png, disp0.pfm|disp0GT.pfm, calib.txt}")
    return lazy(scenes, _load)
