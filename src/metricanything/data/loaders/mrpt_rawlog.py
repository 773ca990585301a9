"""MRPT ``.rawlog`` files holding RGB-D observations (``mrpt::obs::CObservation3DRangeScan``).

The reader understands the observations-only rawlog layout: a (optionally gzip-compressed) sequence of serialised
objects, each ``[0x80 | len(class name)] class name [version] ... 0x88``, all little-endian. Each
``CObservation3DRangeScan`` (serialisation versions 9 and 10, MRPT >= 2.0) becomes one sample:

* depth = ``rangeImage`` (uint16) x ``rangeUnits`` metres, 0 = invalid. When ``range_is_depth`` is false the
  stored value is the range along the ray and is converted to z-depth with the depth camera's pinhole model;
* image = ``intensityImage`` (raw BGR or JPEG ``CImage``), converted to RGB;
* intrinsics = ``cameraParamsIntensity`` (the image's own calibration: fx, fy, cx, cy, size) when the depth is
  registered to the image (``relativePoseIntensityWRTDepth`` translation < 1 cm, as OpenNI2 registration gives);
  otherwise the observation is refused (depth and image would not be pixel-aligned). Both cameras' parameters and
  distortion coefficients go to ``meta``; distortion is not undone.

Anything else in the file (other observation classes, externally stored images, pixel labels, grey or confidence
images) raises :class:`InputFileError` naming the file, the byte offset and the construct. ``root`` is a
``.rawlog`` file or a folder searched recursively (there, only the files that start with an RGB-D
observation); ``split`` keeps files whose relative path contains it.
Debian's ``mrpt-common`` ships one such frame (``usr/share/mrpt/datasets/tests_rgbd.rawlog``, BSD-3-Clause).
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from metricanything.camera import Intrinsics
from metricanything.data.loaders._common import finish_depth, no_samples
from metricanything.data.sample import RGBDSample
from metricanything.errors import DatasetError, InputFileError

OBS_CLASS = "mrpt::obs::CObservation3DRangeScan"
END_MARKER = 0x88


class _Reader:
    """Little-endian cursor over the decompressed bytes, raising InputFileError with the offset."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.b, self.o, self.path = data, 0, path

    def fail(self, problem: str) -> InputFileError:
        return InputFileError(self.path, f"byte {self.o}: {problem}")

    def take(self, n: int) -> bytes:
        if n < 0 or self.o + n > len(self.b):
            raise self.fail(f"truncated (needs {n} more bytes, {len(self.b) - self.o} left)")
        out = self.b[self.o:self.o + n]
        self.o += n
        return out

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def u8(self) -> int:
        return self.take(1)[0]

    def boolean(self) -> bool:
        v = self.u8()
        if v > 1:
            raise self.fail(f"expected a bool (0/1), got {v}")
        return bool(v)

    def string(self) -> str:
        (n,) = self.unpack("I")
        return self.take(n).decode("utf-8", errors="replace")

    def array(self, dtype: str, count: int) -> np.ndarray:
        dt = np.dtype(dtype)
        return np.frombuffer(self.take(dt.itemsize * count), dtype=dt, count=count)

    def header(self, expect: str | None = None) -> tuple[str, int]:
        """An object header: returns (class name, version)."""
        first = self.u8()
        if not first & 0x80:
            raise self.fail("old-style (pre-2008) object header: not supported")
        name = self.take(first & 0x7F).decode("ascii", errors="replace")
        version = self.u8()
        if expect is not None and name != expect:
            raise self.fail(f"expected a {expect} object, found {name}")
        return name, version

    def end(self, what: str) -> None:
        m = self.u8()
        if m != END_MARKER:
            raise self.fail(f"missing end-of-object marker after {what} (got 0x{m:02x})")


def _pose3d(r: _Reader) -> np.ndarray:
    """A ``CPose3D`` object (version 3: x, y, z, then the 3 x 3 rotation) as a 4 x 4 matrix."""
    _, v = r.header("mrpt::poses::CPose3D")
    if v != 3:
        raise r.fail(f"CPose3D serialisation version {v} not supported (3 is)")
    vals = r.unpack("12d")
    r.end("CPose3D")
    T = np.eye(4)
    T[:3, 3] = vals[:3]
    T[:3, :3] = np.array(vals[3:]).reshape(3, 3)
    return T


def _camera(r: _Reader) -> dict[str, Any]:
    """A ``TCamera`` object (versions 3-6)."""
    _, v = r.header("mrpt::img::TCamera")
    if not 4 <= v <= 6:
        raise r.fail(f"TCamera serialisation version {v} not supported (4-6 are)")
    (focal_m,) = r.unpack("d")
    dist = list(r.unpack("8d"))
    fx, fy, cx, cy = r.unpack("4d")
    nrows, ncols = r.unpack("II")
    name = r.string() if v >= 5 else ""
    model = r.u8() if v >= 6 else None
    r.end("TCamera")
    return {"fx": fx, "fy": fy, "cx": cx, "cy": cy, "width": ncols, "height": nrows, "dist": dist,
            "focal_length_m": focal_m, "name": name, "distortion_model": model}


def _image(r: _Reader) -> np.ndarray:
    """A colour ``CImage`` object (version 9): raw BGR (negative sizes) or JPEG; returned as RGB."""
    _, v = r.header("mrpt::img::CImage")
    if v != 9:
        raise r.fail(f"CImage serialisation version {v} not supported (9 is)")
    if r.boolean():
        raise r.fail(f"externally stored image ({r.string()!r}) not supported: load the rawlog with its images")
    if not r.boolean():
        raise r.fail("grey CImage not supported (a colour intensity image is needed)")
    w, h = r.unpack("ii")
    if w < 0 and h < 0:
        img = r.array("u1", 3 * w * h).reshape(-h, -w, 3)
    elif w > 0 and h > 0:
        (n,) = r.unpack("I")
        img = cv2.imdecode(np.frombuffer(r.take(n), np.uint8), cv2.IMREAD_COLOR)
        if img is None or img.shape[:2] != (h, w):
            raise r.fail("embedded JPEG image is unreadable or of the wrong size")
    else:
        raise r.fail(f"bad CImage size {w} x {h}")
    r.end("CImage")
    return np.ascontiguousarray(img[..., ::-1])


def _observation(r: _Reader, version: int) -> dict[str, Any]:
    if version not in (9, 10):
        raise r.fail(f"CObservation3DRangeScan serialisation version {version} not supported (9, 10 are)")
    out: dict[str, Any] = {}
    (out["max_range"],) = r.unpack("f")
    out["sensor_pose"] = _pose3d(r)
    if r.boolean():  # 3D points (x, y, z float32 + pixel indices uint16): not needed, skipped
        (n,) = r.unpack("I")
        r.take(n * (3 * 4 + 2 * 2))
    has_range = r.boolean()
    (units,) = r.unpack("f")
    if not has_range:
        raise r.fail("observation without a range image")
    rows, cols = r.unpack("II")
    out["range"] = r.array("<u2", rows * cols).reshape(rows, cols).astype(np.float32) * np.float32(units)
    out["range_units"] = float(units)
    if not r.boolean():
        raise r.fail("observation without an intensity image")
    out["image"] = _image(r)
    if r.boolean():
        raise r.fail("confidence images are not supported")
    out["camera_depth"] = _camera(r)
    out["camera_image"] = _camera(r)
    out["pose_image_wrt_depth"] = _pose3d(r)
    (out["std_error"],) = r.unpack("f")
    (out["timestamp"],) = r.unpack("Q")
    out["sensor_label"] = r.string()
    if r.boolean():
        raise r.fail(f"externally stored 3D points ({r.string()!r}) not supported")
    r.string()
    if r.boolean():
        raise r.fail(f"externally stored range image ({r.string()!r}) not supported")
    r.string()
    out["range_is_depth"] = r.boolean()
    out["intensity_channel"] = r.u8()
    if r.boolean():
        raise r.fail("pixel labels are not supported")
    if version >= 10:
        for _ in range(r.u8()):
            r.string()
            c, rr = r.unpack("II")
            r.take(2 * c * rr)
    r.end(OBS_CLASS)
    return out


def read_rawlog_observations(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every ``CObservation3DRangeScan`` of a rawlog as a dict of arrays and calibration (see module doc)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "file is missing")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise InputFileError(path, f"corrupt gzip stream ({e})") from None
    r = _Reader(raw, path)
    obs = []
    while r.o < len(r.b):
        name, version = r.header()
        if name != OBS_CLASS:
            raise r.fail(f"object of class {name} not supported (only {OBS_CLASS} observations-only rawlogs)")
        obs.append(_observation(r, version))
    if not obs:
        raise InputFileError(path, f"no {OBS_CLASS} observation in the file")
    return obs


def observation_to_sample(obs: dict[str, Any], path: Path, index: int) -> RGBDSample:
    """One decoded observation -> :class:`RGBDSample` (depth registered to the intensity image)."""
    cam_d, cam_i = obs["camera_depth"], obs["camera_image"]
    rng = obs["range"]
    h, w = rng.shape
    if obs["image"].shape[:2] != (h, w):
        raise InputFileError(path, f"observation {index}: image {obs['image'].shape[:2]} and range image {(h, w)} differ")
    offset = float(np.linalg.norm(obs["pose_image_wrt_depth"][:3, 3]))
    if offset > 0.01:
        raise InputFileError(
            path, f"observation {index}: depth is not registered to the image (camera offset {offset * 100:.1f} cm)"
        )
    if not obs["range_is_depth"]:  # range along the ray -> z-depth (depth camera pinhole, no distortion)
        u = (np.arange(w, dtype=np.float32) - cam_d["cx"]) / cam_d["fx"]
        v = (np.arange(h, dtype=np.float32) - cam_d["cy"]) / cam_d["fy"]
        rng = rng / np.sqrt(1.0 + u[None, :] ** 2 + v[:, None] ** 2)
    depth, valid = finish_depth(rng)
    K = Intrinsics(cam_i["fx"], cam_i["fy"], cam_i["cx"], cam_i["cy"], w, h)
    if (cam_i["width"], cam_i["height"]) not in ((w, h), (0, 0)):
        K = Intrinsics(cam_i["fx"], cam_i["fy"], cam_i["cx"], cam_i["cy"], cam_i["width"], cam_i["height"]).resized(w, h)
    sid = f"{path.stem}_{index:04d}"
    label = obs["sensor_label"] or "rgbd"
    return RGBDSample(
        obs["image"], depth, valid, K, source_kind="captured", sensor="rgbd", metric_scale_trusted=True,
        camera_id=f"mrpt_{label}_{K.fx:.2f}", scene_id=path.stem, dataset="mrpt_rawlog", sample_id=sid,
        meta={
            "sensor_label": obs["sensor_label"], "timestamp": int(obs["timestamp"]),
            "range_units_m": obs["range_units"], "max_range_m": float(obs["max_range"]),
            "intrinsics_from": "cameraParamsIntensity (depth registered to the image)",
            "camera_depth": cam_d, "camera_image": cam_i, "image_to_depth_offset_m": offset,
        },
    )


def _starts_with_rgbd(path: Path) -> bool:
    """Whether the file's first object is a ``CObservation3DRangeScan`` (reads only its first bytes)."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(2)
        opener = gzip.open if magic == b"\x1f\x8b" else open
        with opener(path, "rb") as fh:
            head = fh.read(1 + len(OBS_CLASS))
    except (OSError, EOFError):
        return False
    return head == bytes([0x80 | len(OBS_CLASS)]) + OBS_CLASS.encode()


def load_mrpt_rawlog(root: str | os.PathLike, split: str | None = None) -> Iterator[RGBDSample]:
    """Iterate the RGB-D observations of one ``.rawlog`` file or of every ``.rawlog`` under a folder."""
    root = Path(root)
    if root.is_file():
        files, base = [root], root.parent
    elif root.is_dir():
        # a folder: only the rawlogs of RGB-D observations (MRPT ships other kinds next to them)
        files, base = [f for f in sorted(root.rglob("*.rawlog")) if _starts_with_rgbd(f)], root
    else:
        raise DatasetError(f"{root}: MRPT rawlog file or folder does not exist")
    if split:
        files = [f for f in files if split in f.relative_to(base).as_posix()]
    if not files:
        raise no_samples(root, "MRPT rawlog", "*.rawlog files of CObservation3DRangeScan objects")

    def samples() -> Iterator[RGBDSample]:
        for f in files:
            for i, obs in enumerate(read_rawlog_observations(f)):
                yield observation_to_sample(obs, f, i)

    return samples()
