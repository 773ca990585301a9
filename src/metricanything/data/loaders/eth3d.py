"""ETH3D high-resolution multi-view: laser-scan depth as raw float32 binaries + COLMAP text calibration.

Layout per scene ``ROOT/<scene>/``:

* ``images/dslr_images_undistorted/<name>.JPG`` (else ``images/dslr_images/``),
* ``dslr_calibration_undistorted/cameras.txt`` and ``images.txt`` (COLMAP text model),
* ``ground_truth_depth/dslr_images/<name>.JPG`` -- despite the suffix a headerless little-endian float32
  array, row-major, ``inf`` (or 0/NaN) = no depth.

The depth array has no header, so its size comes from the camera: it must hold width x height floats of the
COLMAP camera, or of the image on disk (then the intrinsics are rescaled to that image). COLMAP puts pixel
centres at +0.5 (the image spans [0, W]); metricanything puts them at integers, so cx = cx_colmap - 0.5 and
cy = cy_colmap - 0.5. Non-pinhole models contribute their focal/principal point; their distortion coefficients
go to ``meta["distortion"]`` (ETH3D's undistorted calibration is PINHOLE, where this is exact). Poses from
``images.txt`` (world-to-camera quaternion + translation) are stored inverted, camera-to-world.
``split`` selects scenes: None = all, else a comma-separated list of scene names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metricanything.camera import Intrinsics
from metricanything.data.loaders._common import (
    SampleIndex,
    finish_depth,
    lazy,
    no_samples,
    quat_to_matrix,
    read_rgb,
    require_dir,
    rigid,
)
from metricanything.data.sample import RGBDSample
from metricanything.errors import DatasetError, InputFileError, InvalidInputError

# model name -> (number of params, layout of the pinhole part: "f" = f cx cy, "ff" = fx fy cx cy)
COLMAP_MODELS = {
    "SIMPLE_PINHOLE": (3, "f"),
    "PINHOLE": (4, "ff"),
    "SIMPLE_RADIAL": (4, "f"),
    "RADIAL": (5, "f"),
    "OPENCV": (8, "ff"),
    "FULL_OPENCV": (12, "ff"),
    "OPENCV_FISHEYE": (8, "ff"),
    "FOV": (5, "ff"),
    "SIMPLE_RADIAL_FISHEYE": (4, "f"),
    "RADIAL_FISHEYE": (5, "f"),
    "THIN_PRISM_FISHEYE": (12, "ff"),
}


@dataclass(frozen=True)
class ColmapCamera:
    model: str
    width: int
    height: int
    params: tuple[float, ...]

    def intrinsics(self) -> tuple[Intrinsics, list[float]]:
        """Pinhole part in metricanything's pixel convention, and the remaining (distortion) parameters."""
        _, layout = COLMAP_MODELS[self.model]
        p = self.params
        if layout == "f":
            fx = fy = p[0]
            cx, cy, rest = p[1], p[2], list(p[3:])
        else:
            fx, fy, cx, cy, rest = p[0], p[1], p[2], p[3], list(p[4:])
        return Intrinsics(fx, fy, cx - 0.5, cy - 0.5, self.width, self.height), rest


def _content_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise InputFileError(path, "file is missing")
    return [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if not ln.lstrip().startswith("#")]


def read_colmap_cameras(path: Path) -> dict[int, ColmapCamera]:
    """Parse COLMAP ``cameras.txt``: ``CAMERA_ID MODEL WIDTH HEIGHT PARAMS...``."""
    cams = {}
    for ln in _content_lines(path):
        if not ln:
            continue
        tok = ln.split()
        try:
            cid, model, w, h = int(tok[0]), tok[1], int(tok[2]), int(tok[3])
            params = tuple(float(t) for t in tok[4:])
        except (ValueError, IndexError):
            raise InputFileError(path, f"bad camera line {ln[:80]!r}") from None
        if model not in COLMAP_MODELS:
            raise InputFileError(path, f"unsupported camera model {model!r} (supported: {', '.join(COLMAP_MODELS)})")
        if len(params) != COLMAP_MODELS[model][0]:
            raise InputFileError(path, f"camera {cid}: {model} needs {COLMAP_MODELS[model][0]} parameters, got {len(params)}")
        cams[cid] = ColmapCamera(model, w, h, params)
    if not cams:
        raise InputFileError(path, "no cameras")
    return cams


def read_colmap_images(path: Path) -> dict[str, tuple[int, np.ndarray]]:
    """Parse COLMAP ``images.txt`` -> {image name: (camera id, camera-to-world 4x4)}.

    Every image takes two lines: ``IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME`` and its 2-D points.
    """
    out = {}
    lines = _content_lines(path)
    i = 0
    while i < len(lines):
        ln = lines[i]
        if not ln:
            i += 1
            continue
        tok = ln.split(maxsplit=9)
        try:
            q = [float(t) for t in tok[1:5]]
            t = [float(v) for v in tok[5:8]]
            cam_id, name = int(tok[8]), tok[9].strip()
            w2c = rigid(quat_to_matrix(q), t)
        except (ValueError, IndexError):
            raise InputFileError(path, f"bad image line {ln[:80]!r}") from None
        out[name] = (cam_id, np.linalg.inv(w2c))
        i += 2  # skip the POINTS2D line
    return out


def read_eth3d_depth(path: Path, width: int, height: int) -> np.ndarray:
    """Headerless little-endian float32 depth of ``width`` x ``height`` (raises if the size differs)."""
    if not path.is_file():
        raise InputFileError(path, "depth file is missing")
    n = path.stat().st_size
    if n != width * height * 4:
        raise InputFileError(path, f"{n} bytes is not {width}x{height} float32 ({width * height * 4} bytes)")
    return np.fromfile(path, dtype="<f4").reshape(height, width).astype(np.float32)


def _scene_items(scene: Path) -> list[tuple]:
    calib = scene / "dslr_calibration_undistorted"
    cams = read_colmap_cameras(calib / "cameras.txt")
    images = read_colmap_images(calib / "images.txt")
    items = []
    for name, (cid, pose) in sorted(images.items()):
        if cid not in cams:
            raise InputFileError(calib / "images.txt", f"image {name} uses unknown camera {cid}")
        base = Path(name).name
        depth = scene / "ground_truth_depth" / "dslr_images" / base
        if not depth.is_file():
            continue  # images without ground truth (e.g. test views)
        img = next(
            (p for p in (scene / "images" / "dslr_images_undistorted" / base, scene / "images" / name, scene / "images" / "dslr_images" / base) if p.is_file()),
            scene / "images" / "dslr_images_undistorted" / base,
        )
        items.append((scene.name, base, img, depth, cams[cid], cid, pose))
    return items


def _load(item: tuple) -> RGBDSample:
    scene, base, img_path, depth_path, cam, cid, pose = item
    image = read_rgb(img_path)
    K, dist = cam.intrinsics()
    h, w = image.shape[:2]
    size = depth_path.stat().st_size if depth_path.is_file() else -1
    if size == cam.width * cam.height * 4:
        raw = read_eth3d_depth(depth_path, cam.width, cam.height)
        if raw.shape != (h, w):
            raise InputFileError(img_path, f"image is {w}x{h}, depth and camera are {cam.width}x{cam.height}")
    else:
        raw = read_eth3d_depth(depth_path, w, h)  # depth at the image's resolution: rescale the camera
        try:
            K = K.resized(w, h)
        except InvalidInputError as exc:  # pragma: no cover - sizes are positive here
            raise InputFileError(depth_path, str(exc)) from None
    depth, valid = finish_depth(raw)
    meta = {"camera_model": cam.model}
    if dist:
        meta["distortion"] = dist
    return RGBDSample(
        image, depth, valid, K, source_kind="captured", sensor="lidar", metric_scale_trusted=True,
        camera_id=f"eth3d_{scene}_{cid}", scene_id=scene, dataset="eth3d", sample_id=f"{scene}_{Path(base).stem}",
        pose=pose, meta=meta,
    )


def load_eth3d(root: str | os.PathLike, split: str | None = None) -> SampleIndex:
    """Iterate ETH3D samples of every scene under ``root`` (or ``root`` itself if it is one scene)."""
    root = require_dir(root, "ETH3D")
    if (root / "dslr_calibration_undistorted").is_dir():
        scenes = [root]
    else:
        scenes = sorted(p for p in root.iterdir() if (p / "dslr_calibration_undistorted").is_dir())
    if split is not None:
        wanted = {s.strip() for s in split.split(",") if s.strip()}
        missing = wanted - {s.name for s in scenes}
        if missing:
            raise DatasetError(f"{root}: ETH3D scenes not found: {', '.join(sorted(missing))}")
        scenes = [s for s in scenes if s.name in wanted]
    items = [it for s in scenes for it in _scene_items(s)]
    if not items:
        raise no_samples(root, "ETH3D", "<scene>/dslr_calibration_undistorted/ + ground_truth_depth/dslr_images/")
    return lazy(items, _load)
