"""The folder format: one directory per sample, files a user can write with any tool.

Layout (format version 1)::

    ROOT/
      index.json              optional: {"format_version": 1, "samples": ["<sample_id>", ...]}
      <sample_id>/
        image.png | image.jpg RGB, 8 bit (PNG may also be grey or RGBA; alpha is dropped)
        depth.npy             float32 H x W metres (0 where invalid)          -- or --
        depth.png             uint16 H x W, metres = value / depth_png_scale, 0 = invalid
        valid.png             optional uint8 H x W, 0 = invalid, 255 = valid
        meta.json             RGBDSample.meta_dict() + {"format_version": 1, "files": {...}}

``meta.json`` is written last, so a directory without it is an unfinished sample. Only ``intrinsics``
(fx, fy, cx, cy, width, height) is required in a hand-written ``meta.json``; every other field has the
:class:`RGBDSample` default. Without ``valid.png`` the mask is ``isfinite(depth) & depth > 0``; with it,
the mask is ``valid.png != 0`` intersected with that. Images are read in stored pixel order (EXIF
orientation is ignored, so depth and image stay aligned). Writers are deterministic: the same sample
gives the same bytes (fixed PNG settings, sorted JSON, no timestamps).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # same as metricanything.depth_io, whichever imports cv2 first

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from metricanything.atomic import atomic_path  # noqa: E402
from metricanything.camera import Intrinsics  # noqa: E402
from metricanything.data.sample import RGBDSample  # noqa: E402
from metricanything.errors import DatasetError, InputFileError, InvalidInputError, MetricAnythingError  # noqa: E402

FORMAT_VERSION = 1
IMAGE_NAMES = ("image.png", "image.jpg", "image.jpeg")
DEPTH_NAMES = ("depth.npy", "depth.png")
PNG_COMPRESSION = 1  # fixed: fast to decode and deterministic
DEFAULT_JPEG_QUALITY = 95
_READ_COLOR = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
_READ_RAW = cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION


# ---------------------------------------------------------------------------------------------- codecs
# Byte-level encoders/decoders shared with the shard format (metricanything.data.shards).


def encode_image(image: np.ndarray, fmt: str = "png", jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    """Encode an RGB uint8 H x W x 3 image as PNG or JPEG bytes (fixed settings, deterministic)."""
    fmt = fmt.lower().lstrip(".")
    bgr = np.ascontiguousarray(image[..., ::-1])
    if fmt == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    elif fmt in ("jpg", "jpeg"):
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    else:
        raise InvalidInputError(f"image format must be 'png' or 'jpg', got {fmt!r}")
    if not ok:  # pragma: no cover - cv2 only fails on impossible inputs
        raise InvalidInputError(f"could not encode image as {fmt}")
    return buf.tobytes()


def decode_image(data: bytes, name: str | os.PathLike = "<image>") -> np.ndarray:
    """Decode PNG/JPEG bytes to RGB uint8 H x W x 3 (grey is replicated, alpha dropped, 16 bit scaled)."""
    arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _READ_RAW) if data else None
    if arr is None:
        raise InputFileError(name, "not a readable PNG/JPEG image (empty, truncated or corrupt)")
    if arr.dtype == np.uint16:
        arr = (arr.astype(np.uint32) * 255 + 32767) // 65535
        arr = arr.astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise InputFileError(name, f"image must be 8 or 16 bit, got {arr.dtype}")
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    if arr.shape[2] == 4:
        return cv2.cvtColor(arr, cv2.COLOR_BGRA2RGB)
    if arr.shape[2] == 3:
        return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    raise InputFileError(name, f"image must have 1, 3 or 4 channels, got {arr.shape[2]}")


def encode_mask(valid: np.ndarray) -> bytes:
    """Encode a bool mask as an 8-bit PNG with 0 / 255."""
    ok, buf = cv2.imencode(
        ".png", np.where(valid, np.uint8(255), np.uint8(0)), [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]
    )
    if not ok:  # pragma: no cover
        raise InvalidInputError("could not encode validity mask")
    return buf.tobytes()


def decode_mask(data: bytes, name: str | os.PathLike = "<mask>") -> np.ndarray:
    """Decode a mask PNG (any non-zero value is valid) to bool H x W."""
    arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _READ_RAW) if data else None
    if arr is None:
        raise InputFileError(name, "not a readable PNG mask (empty, truncated or corrupt)")
    if arr.ndim == 3:
        arr = arr[..., 0]
    return arr != 0


def encode_npy(array: np.ndarray) -> bytes:
    """The ``.npy`` bytes of an array (format 1.0 header, deterministic)."""
    import io

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def decode_npy(data: bytes, name: str | os.PathLike = "<npy>") -> np.ndarray:
    """Parse ``.npy`` bytes (no pickles) into an array."""
    import io

    if not data.startswith(b"\x93NUMPY"):
        raise InputFileError(name, "not a .npy array (no .npy header: corrupt, truncated or another format)")
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputFileError(name, f"not a readable .npy array ({exc})") from None


def decode_depth_npy(data: bytes, name: str | os.PathLike = "<depth>") -> np.ndarray:
    """Parse a float depth ``.npy`` (H x W or H x W x 1) into float32 H x W metres."""
    arr = decode_npy(data, name)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2 or arr.dtype.kind != "f":
        raise InputFileError(name, f"depth must be a float H x W array, got {arr.dtype} {arr.shape}")
    return arr.astype(np.float32, copy=False)


def encode_depth_png(depth: np.ndarray, valid: np.ndarray, scale: float) -> bytes:
    """Encode metres as uint16 PNG: value = round(depth * scale), 0 where invalid."""
    if not scale > 0:
        raise InvalidInputError(f"depth PNG scale must be > 0, got {scale}")
    q = np.where(valid, np.round(depth.astype(np.float64) * scale), 0.0)
    if q.max(initial=0) > 65535:
        raise InvalidInputError(
            f"depth up to {depth[valid].max():.3f} m does not fit a 16-bit PNG at scale {scale} (max {65535 / scale:.3f} m)"
        )
    if (q[valid] < 1).any():
        raise InvalidInputError(f"valid depth below {0.5 / scale} m rounds to 0 at scale {scale}; use depth.npy")
    ok, buf = cv2.imencode(".png", q.astype(np.uint16), [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:  # pragma: no cover
        raise InvalidInputError("could not encode depth PNG")
    return buf.tobytes()


def decode_depth_png(data: bytes, scale: float, name: str | os.PathLike = "<depth>") -> np.ndarray:
    """Decode a uint16 depth PNG to float32 metres (0 stays 0 = invalid)."""
    arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _READ_RAW) if data else None
    if arr is None:
        raise InputFileError(name, "not a readable 16-bit PNG depth map (empty, truncated or corrupt)")
    if arr.ndim != 2 or arr.dtype != np.uint16:
        raise InputFileError(name, f"depth PNG must be single-channel uint16, got {arr.dtype} {arr.shape}")
    return (arr.astype(np.float32) / np.float32(scale)).astype(np.float32)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def json_bytes(obj: Any) -> bytes:
    """Deterministic JSON (sorted keys, 2-space indent, trailing newline; numpy scalars become numbers)."""
    try:
        text = json.dumps(obj, sort_keys=True, indent=2, allow_nan=False, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"metadata is not JSON-serialisable: {exc}") from None
    return (text + "\n").encode("utf-8")


def _write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputFileError(path, "file is missing") from None
    except OSError as exc:
        raise InputFileError(path, f"cannot be read ({exc.strerror or exc})") from None


# ---------------------------------------------------------------------------------------------- meta
def sample_from_meta(
    meta: dict[str, Any], image: np.ndarray, depth: np.ndarray, valid: np.ndarray, where: str | os.PathLike
) -> RGBDSample:
    """Build an :class:`RGBDSample` from arrays and a ``meta_dict()``-style dict; errors name ``where``."""
    if not isinstance(meta, dict):
        raise InputFileError(where, "meta must be a JSON object")
    try:
        K = Intrinsics.from_dict(meta["intrinsics"])
    except KeyError:
        raise InputFileError(where, "meta has no complete 'intrinsics' (fx, fy, cx, cy, width, height)") from None
    except (TypeError, ValueError, MetricAnythingError) as exc:
        raise InputFileError(where, f"invalid intrinsics: {exc}") from None
    pose = meta.get("pose")
    extra = meta.get("meta") or {}
    try:
        return RGBDSample(
            image=image,
            depth=depth,
            valid=valid,
            intrinsics=K,
            source_kind=str(meta.get("source_kind", "rendered")),
            sensor=str(meta.get("sensor", "synthetic")),
            metric_scale_trusted=bool(meta.get("metric_scale_trusted", True)),
            camera_id=str(meta.get("camera_id", "")),
            scene_id=str(meta.get("scene_id", "")),
            dataset=str(meta.get("dataset", "")),
            sample_id=str(meta.get("sample_id", "")),
            pose=None if pose is None else np.asarray(pose, dtype=np.float64),
            meta=dict(extra),
        )
    except (InvalidInputError, TypeError, ValueError) as exc:
        raise InputFileError(where, f"inconsistent sample: {exc}") from None


def _clean_depth(depth: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Final mask = stored mask (if any) & finite & > 0; depth zeroed elsewhere."""
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(depth) & (depth > 0)
    if valid is not None:
        ok &= valid
    if not ok.all():
        depth = np.where(ok, depth, np.float32(0)).astype(np.float32, copy=False)
    return depth, ok


# ---------------------------------------------------------------------------------------------- write
def _check_sample_id(sample_id: str) -> str:
    if not sample_id or sample_id in (".", "..") or "/" in sample_id or "\\" in sample_id or sample_id.startswith("."):
        raise InvalidInputError(f"sample_id {sample_id!r} is not a valid folder name (non-empty, no '/', no leading '.')")
    return sample_id


def write_sample(
    root: str | os.PathLike,
    sample: RGBDSample,
    *,
    image_format: str = "png",
    depth_format: str = "npy",
    depth_png_scale: float = 1000.0,
    jpeg_quality: int = DEFAULT_JPEG_QUALITY,
) -> Path:
    """Write ``sample`` to ``root/<sample.sample_id>/`` and return that directory.

    Each file is written atomically; ``meta.json`` comes last. ``depth_format="png"`` stores uint16
    ``round(depth * depth_png_scale)`` (raises if a valid depth does not fit). Deterministic bytes.
    """
    sample.validate()
    sid = _check_sample_id(sample.sample_id)
    out = Path(root) / sid
    out.mkdir(parents=True, exist_ok=True)
    fmt = image_format.lower().lstrip(".")
    image_name = "image.png" if fmt == "png" else "image.jpg"
    depth, valid = sample.depth, sample.valid
    files = {"image": image_name, "valid": "valid.png"}
    meta = sample.meta_dict()
    meta["format_version"] = FORMAT_VERSION
    if depth_format == "npy":
        files["depth"] = "depth.npy"
        depth_bytes = encode_npy(np.where(valid, depth, np.float32(0)).astype(np.float32))
    elif depth_format == "png":
        files["depth"] = "depth.png"
        meta["depth_png_scale"] = float(depth_png_scale)
        depth_bytes = encode_depth_png(depth, valid, depth_png_scale)
    else:
        raise InvalidInputError(f"depth_format must be 'npy' or 'png', got {depth_format!r}")
    meta["files"] = files
    image_bytes = encode_image(sample.image, fmt, jpeg_quality)  # validates fmt before touching disk
    meta_path = out / "meta.json"
    if meta_path.exists():
        meta_path.unlink()  # mark unfinished while the arrays are being replaced
    _write_bytes(out / image_name, image_bytes)
    _write_bytes(out / files["depth"], depth_bytes)
    _write_bytes(out / "valid.png", encode_mask(valid))
    for stale in (*IMAGE_NAMES, *DEPTH_NAMES):
        if stale not in files.values() and (out / stale).exists():
            (out / stale).unlink()
    _write_bytes(meta_path, json_bytes(meta))
    return out


def write_index(root: str | os.PathLike, sample_ids: Sequence[str] | None = None) -> Path:
    """Write ``root/index.json`` listing ``sample_ids`` (default: every complete sample folder, sorted)."""
    root = Path(root)
    ids = list(sample_ids) if sample_ids is not None else _scan(root)
    path = root / "index.json"
    _write_bytes(path, json_bytes({"format_version": FORMAT_VERSION, "samples": ids}))
    return path


# ---------------------------------------------------------------------------------------------- read
def _pick(directory: Path, names: Sequence[str], what: str) -> Path:
    for n in names:
        if (directory / n).is_file():
            return directory / n
    raise InputFileError(directory / names[0], f"{what} is missing (looked for {', '.join(names)})")


def read_sample(directory: str | os.PathLike) -> RGBDSample:
    """Read one sample folder written by :func:`write_sample` or by hand (see the module docstring)."""
    d = Path(directory)
    if not d.is_dir():
        raise InputFileError(d, "sample folder does not exist")
    meta_path = d / "meta.json"
    raw = _read_bytes(meta_path)
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(meta_path, f"not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise InputFileError(meta_path, "must hold a JSON object")
    version = meta.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InputFileError(meta_path, f"format_version {version!r} is newer than supported ({FORMAT_VERSION})")
    files = meta.get("files") or {}
    image_path = d / files["image"] if "image" in files else _pick(d, IMAGE_NAMES, "image")
    depth_path = d / files["depth"] if "depth" in files else _pick(d, DEPTH_NAMES, "depth")
    image = decode_image(_read_bytes(image_path), image_path)
    if depth_path.suffix == ".png":
        scale = meta.get("depth_png_scale")
        if not isinstance(scale, (int, float)) or not scale > 0:
            raise InputFileError(meta_path, "depth.png needs a positive 'depth_png_scale' (value per metre)")
        depth = decode_depth_png(_read_bytes(depth_path), float(scale), depth_path)
    else:
        depth = decode_depth_npy(_read_bytes(depth_path), depth_path)
    valid_path = d / files.get("valid", "valid.png")
    valid = None
    if valid_path.is_file() or "valid" in files:
        valid = decode_mask(_read_bytes(valid_path), valid_path)
        if valid.shape != depth.shape:
            raise InputFileError(valid_path, f"mask is {valid.shape[1]}x{valid.shape[0]}, depth is {depth.shape[1]}x{depth.shape[0]}")
    if image.shape[:2] != depth.shape:
        raise InputFileError(
            depth_path, f"depth is {depth.shape[1]}x{depth.shape[0]} but {image_path.name} is {image.shape[1]}x{image.shape[0]}"
        )
    depth, valid = _clean_depth(depth, valid)
    if not meta.get("sample_id"):
        meta = {**meta, "sample_id": d.name}
    return sample_from_meta(meta, image, depth, valid, meta_path)


def _scan(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / "meta.json").is_file())


class FolderDataset:
    """A folder-format dataset: ``len``, ``ds[i]`` (an :class:`RGBDSample`) and iteration in id order.

    The sample list comes from ``root/index.json`` when present, otherwise from the sub-folders that hold
    a ``meta.json`` (sorted by name).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: folder dataset root does not exist or is not a directory")
        index = self.root / "index.json"
        if index.is_file():
            try:
                data = json.loads(index.read_text(encoding="utf-8"))
                ids = data["samples"] if isinstance(data, dict) else data
                if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                    raise TypeError("'samples' must be a list of strings")
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
                raise DatasetError(f"{index}: malformed index ({exc})") from None
            self.sample_ids = list(ids)
        else:
            self.sample_ids = _scan(self.root)
        if not self.sample_ids:
            raise DatasetError(f"{self.root}: no samples (no sub-folder with a meta.json, and no index.json)")

    def __len__(self) -> int:
        return len(self.sample_ids)

    def __getitem__(self, i: int) -> RGBDSample:
        return read_sample(self.root / self.sample_ids[i])

    def where(self, i: int) -> str:
        """The folder of sample ``i``."""
        return str(self.root / self.sample_ids[i])

    def __iter__(self) -> Iterator[RGBDSample]:
        for sid in self.sample_ids:
            yield read_sample(self.root / sid)

    def __repr__(self) -> str:
        return f"FolderDataset({str(self.root)!r}, {len(self)} samples)"


def is_folder_dataset(root: str | os.PathLike) -> bool:
    """True when ``root`` looks like a folder-format dataset (index.json or a sample sub-folder)."""
    root = Path(root)
    if not root.is_dir():
        return False
    if (root / "index.json").is_file():
        return True
    return any(p.is_dir() and (p / "meta.json").is_file() for p in root.iterdir())
