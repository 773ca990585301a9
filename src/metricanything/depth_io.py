"""Depth, image and intrinsics files: read and write them exactly, fail loudly on bad input.

Depth in memory is always ``(depth float32 H x W in metres, valid bool H x W)``. Depth under ``valid=False``
carries no meaning; writers store 0 there, and every reader marks non-finite and non-positive values invalid.

Formats (chosen by suffix in :func:`read_depth` / :func:`write_depth`):

* ``.png`` -- single-channel 16-bit PNG, ``metres = value * scale``. The default scale is 1 mm
  (:data:`PNG_SCALE_MM`); KITTI's 1/256 m is :data:`PNG_SCALE_KITTI`. Value 0 means invalid. A valid depth
  that does not fit (rounds to 0 or above 65535) raises instead of being clipped.
* ``.npy`` -- a float32 H x W array (invalid stored as 0). Bit-exact.
* ``.npz`` -- arrays ``depth`` (float32) and ``valid`` (bool). Bit-exact, the mask travels explicitly.
* ``.pfm`` -- Middlebury/Netpbm float map (``Pf`` grey), little-endian, rows stored bottom-to-top. Bit-exact.
  The header scale's sign gives the byte order; its magnitude is reported by :func:`read_pfm` but not applied
  (every PFM writer we know uses 1).
* ``.exr`` -- 32-bit float through OpenCV, only when OpenCV was built with OpenEXR. OpenCV also requires
  ``OPENCV_IO_ENABLE_OPENEXR=1`` in the environment *before cv2 is first imported*; this module sets it (with
  ``setdefault``) before importing cv2, so import ``metricanything.depth_io`` before anything else imports cv2,
  or export the variable yourself. :func:`exr_available` says whether EXR works in this process.

Every reader raises :class:`~metricanything.errors.InputFileError` naming the file and the problem for missing,
corrupt, truncated or wrong-shape files. Every writer is atomic (temporary sibling, then rename).
"""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")

import cv2  # noqa: E402  (must come after the environment variable above)
import numpy as np  # noqa: E402
from PIL import Image, ImageOps, UnidentifiedImageError  # noqa: E402

from metricanything.atomic import atomic_open, atomic_path, write_text_atomic  # noqa: E402
from metricanything.camera import Intrinsics  # noqa: E402
from metricanything.errors import InputFileError, InvalidInputError  # noqa: E402
from metricanything.metrics import checked_valid  # noqa: E402

PathLike = str | os.PathLike

#: metres per PNG unit for millimetre PNGs (the default)
PNG_SCALE_MM: float = 1e-3
#: metres per PNG unit for KITTI depth PNGs
PNG_SCALE_KITTI: float = 1.0 / 256.0
#: file suffixes :func:`read_depth` understands
DEPTH_SUFFIXES = (".png", ".npy", ".npz", ".pfm", ".exr")
#: diagonal of the 36 x 24 mm full frame, in mm (sqrt(36^2 + 24^2))
FULL_FRAME_DIAGONAL_MM: float = math.hypot(36.0, 24.0)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EXIF_IFD = 0x8769
_TAG_FOCAL_35MM = 0xA405


# ---------------------------------------------------------------------------------------------- helpers
def _require_file(path: PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputFileError(p, "file does not exist")
    if not p.is_file():
        raise InputFileError(p, "is not a regular file")
    return p


def _suffix(path: PathLike) -> str:
    return Path(path).suffix.lower()


def _as_depth_and_valid(depth: np.ndarray, valid: np.ndarray | None, what: str) -> tuple[np.ndarray, np.ndarray]:
    depth = np.asarray(depth)
    if depth.ndim == 3 and 1 in (depth.shape[0], depth.shape[-1]):
        depth = depth.reshape(depth.shape[1:] if depth.shape[0] == 1 else depth.shape[:2])
    if depth.ndim != 2:
        raise InvalidInputError(f"{what}: depth must be H x W, got shape {depth.shape}")
    if not np.issubdtype(depth.dtype, np.floating) and not np.issubdtype(depth.dtype, np.integer):
        raise InvalidInputError(f"{what}: depth must be numeric, got dtype {depth.dtype}")
    depth = depth.astype(np.float32, copy=False)
    return depth, checked_valid(depth, valid, where=f"{what}: ")


def _valid_from_depth(depth: np.ndarray) -> np.ndarray:
    return np.isfinite(depth) & (depth > 0)


# ---------------------------------------------------------------------------------------------- PFM
def read_pfm(path: PathLike) -> tuple[np.ndarray, float]:
    """Read a PFM file bit-exactly: ``(data, scale)`` with data float32 H x W (``Pf``) or H x W x 3 (``PF``).

    Rows come back top-to-bottom (the file stores them bottom-to-top). ``scale`` is the header value's
    magnitude, returned as is and not applied to the data.
    """
    p = _require_file(path)
    raw = p.read_bytes()
    pos = 0

    def next_line() -> str:
        nonlocal pos
        end = raw.find(b"\n", pos)
        if end < 0 or end - pos > 256:
            raise InputFileError(p, "bad PFM header (missing line break)")
        line = raw[pos:end]
        pos = end + 1
        try:
            return line.decode("ascii").strip()
        except UnicodeDecodeError as exc:
            raise InputFileError(p, "bad PFM header (not ASCII)") from exc

    kind = next_line()
    if kind not in ("Pf", "PF"):
        raise InputFileError(p, f"bad PFM header: magic is {kind[:8]!r}, expected 'Pf' or 'PF'")
    dims = next_line().split()
    if len(dims) == 1:  # width and height on separate lines is tolerated
        dims.append(next_line())
    try:
        width, height = (int(v) for v in dims)
    except ValueError as exc:
        raise InputFileError(p, f"bad PFM header: size line {' '.join(dims)!r} is not two integers") from exc
    if width < 1 or height < 1:
        raise InputFileError(p, f"bad PFM header: size {width}x{height} is not positive")
    scale_line = next_line()
    try:
        scale = float(scale_line)
    except ValueError as exc:
        raise InputFileError(p, f"bad PFM header: scale {scale_line!r} is not a number") from exc
    if scale == 0 or not math.isfinite(scale):
        raise InputFileError(p, f"bad PFM header: scale {scale_line!r} must be finite and non-zero")
    channels = 3 if kind == "PF" else 1
    expected = width * height * channels * 4
    have = len(raw) - pos
    if have < expected:
        raise InputFileError(p, f"truncated PFM: {have} data bytes, expected {expected} for {width}x{height}x{channels}")
    if have > expected:
        raise InputFileError(p, f"PFM has {have - expected} unexpected trailing bytes after {width}x{height}x{channels}")
    dtype = np.dtype("<f4") if scale < 0 else np.dtype(">f4")
    data = np.frombuffer(raw, dtype=dtype, count=width * height * channels, offset=pos)
    data = data.reshape((height, width, channels) if channels == 3 else (height, width))
    return np.ascontiguousarray(np.flipud(data)).astype(np.float32), abs(scale)


def write_pfm(path: PathLike, data: np.ndarray, scale: float = 1.0) -> None:
    """Write float32 H x W (``Pf``) or H x W x 3 (``PF``) as little-endian PFM, rows bottom-to-top; atomic."""
    data = np.asarray(data)
    if data.ndim == 2:
        kind = "Pf"
    elif data.ndim == 3 and data.shape[2] == 3:
        kind = "PF"
    else:
        raise InvalidInputError(f"{os.fspath(path)}: PFM data must be H x W or H x W x 3, got shape {data.shape}")
    if scale <= 0:
        raise InvalidInputError(f"PFM scale must be positive (the sign encodes byte order), got {scale}")
    h, w = data.shape[:2]
    header = f"{kind}\n{w} {h}\n{-float(scale)!r}\n".encode("ascii")
    body = np.ascontiguousarray(np.flipud(data.astype("<f4", copy=False))).tobytes()
    with atomic_open(path, "wb") as f:
        f.write(header)
        f.write(body)


# ---------------------------------------------------------------------------------------------- EXR
@functools.lru_cache(maxsize=1)
def exr_available() -> bool:
    """True when this OpenCV build can write and read 32-bit float EXR in this process."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            probe = Path(tmp) / "probe.exr"
            data = np.array([[1.5, 2.25]], dtype=np.float32)
            if not cv2.imwrite(str(probe), data):
                return False
            back = cv2.imread(str(probe), cv2.IMREAD_UNCHANGED)
            return back is not None and np.array_equal(np.asarray(back, dtype=np.float32).reshape(1, 2), data)
    except cv2.error:
        return False


def _exr_unavailable(path: PathLike) -> InputFileError:
    return InputFileError(
        path,
        "EXR is not available: this OpenCV build lacks OpenEXR or OPENCV_IO_ENABLE_OPENEXR=1 was not set "
        "before cv2 was imported; use .npz, .pfm or .png instead",
    )


def _read_exr(p: Path) -> np.ndarray:
    if not exr_available():
        raise _exr_unavailable(p)
    data = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise InputFileError(p, "corrupt or truncated EXR file")
    if data.ndim == 3:
        if data.shape[2] != 1 and not (
            np.array_equal(data[..., 0], data[..., 1]) and np.array_equal(data[..., 0], data[..., 2])
        ):
            raise InputFileError(p, f"EXR depth must have one channel, got {data.shape[2]}")
        data = data[..., 0]
    return data.astype(np.float32)


# ---------------------------------------------------------------------------------------------- PNG
def _read_png16(p: Path, scale: float) -> np.ndarray:
    raw = np.fromfile(p, dtype=np.uint8)
    if raw[: len(_PNG_SIGNATURE)].tobytes() != _PNG_SIGNATURE:
        raise InputFileError(p, "not a PNG file (bad signature)")
    data = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    if data is None:
        raise InputFileError(p, "corrupt or truncated PNG data")
    if data.ndim != 2:
        raise InputFileError(p, f"depth PNG must have a single channel, got {data.shape[2]} channels")
    if data.dtype != np.uint16:
        raise InputFileError(p, f"depth PNG must be 16-bit, got {data.dtype} (8-bit PNGs cannot hold metric depth)")
    return (data.astype(np.float64) * scale).astype(np.float32)  # float64 product, one rounding


def encode_depth_png16(depth: np.ndarray, valid: np.ndarray, scale: float = PNG_SCALE_MM) -> np.ndarray:
    """Quantise depth to uint16 ``round(depth / scale)`` with 0 where invalid; raise if a valid value won't fit."""
    if not (scale > 0 and math.isfinite(scale)):
        raise InvalidInputError(f"PNG depth scale must be positive and finite, got {scale}")
    q = np.zeros(depth.shape, dtype=np.float64)
    q[valid] = np.round(depth[valid].astype(np.float64) / scale)
    too_big = int(np.count_nonzero(q > 65535))
    if too_big:
        raise InvalidInputError(
            f"{too_big} valid depths exceed {65535 * scale:g} m, the largest a 16-bit PNG with scale {scale:g} m "
            f"holds (max depth {float(depth[valid].max()):g} m); use a coarser scale or .npz/.pfm"
        )
    too_small = int(np.count_nonzero(valid & (q < 1)))
    if too_small:
        raise InvalidInputError(
            f"{too_small} valid depths are below {scale / 2:g} m and would round to 0 (= invalid) with scale "
            f"{scale:g} m; use a finer scale or .npz/.pfm"
        )
    return q.astype(np.uint16)


# ---------------------------------------------------------------------------------------------- depth
def read_depth(
    path: PathLike, *, scale: float = PNG_SCALE_MM, key: str = "depth"
) -> tuple[np.ndarray, np.ndarray]:
    """Read a depth map: ``(depth float32 H x W metres, valid bool H x W)``.

    ``scale`` (metres per unit) applies to 16-bit PNGs only. ``key`` names the depth array in ``.npz``
    (a ``valid`` array, if present, is used as the mask; a single-array archive is accepted whatever its
    name). For the other formats, valid = finite and > 0.
    """
    p = _require_file(path)
    suffix = _suffix(p)
    if suffix == ".png":
        depth = _read_png16(p, scale)
        valid = depth > 0
        return depth, valid
    if suffix == ".npy":
        try:
            with open(p, "rb") as fh:
                arr = np.load(fh, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise InputFileError(p, f"corrupt or truncated .npy file ({exc})") from exc
        return _finish(p, arr, None)
    if suffix == ".npz":
        try:
            with open(p, "rb") as fh, np.load(fh, allow_pickle=False) as z:
                names = list(z.files)
                if key in names:
                    arr = z[key]
                elif len(names) == 1:
                    arr = z[names[0]]
                else:
                    raise InputFileError(p, f"no array {key!r} in .npz (has {', '.join(names) or 'nothing'})")
                valid = z["valid"] if "valid" in names and key in names else None
        except InputFileError:
            raise
        except Exception as exc:  # zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError
            raise InputFileError(p, f"corrupt or truncated .npz file ({type(exc).__name__}: {exc})") from exc
        return _finish(p, arr, valid)
    if suffix == ".pfm":
        data, _ = read_pfm(p)
        if data.ndim != 2:
            raise InputFileError(p, "depth PFM must be single-channel ('Pf'), got a 3-channel 'PF' file")
        return _finish(p, data, None)
    if suffix == ".exr":
        return _finish(p, _read_exr(p), None)
    raise InputFileError(p, f"unknown depth format {suffix!r}; expected one of {', '.join(DEPTH_SUFFIXES)}")


def _finish(p: Path, arr: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(arr)
    if arr.ndim == 3 and 1 in (arr.shape[0], arr.shape[-1]):
        arr = arr.reshape(arr.shape[1:] if arr.shape[0] == 1 else arr.shape[:2])
    if arr.ndim != 2:
        raise InputFileError(p, f"depth must be a 2-D H x W array, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise InputFileError(p, f"depth must be numeric, got dtype {arr.dtype}")
    depth = arr.astype(np.float32, copy=False)
    ok = _valid_from_depth(depth)
    if valid is None:
        return depth, ok
    valid = np.asarray(valid)
    if valid.shape != depth.shape:
        raise InputFileError(p, f"'valid' mask shape {valid.shape} differs from depth shape {depth.shape}")
    valid = valid.astype(bool)
    bad = int(np.count_nonzero(valid & ~ok))
    if bad:
        raise InputFileError(p, f"{bad} pixels are marked valid but their depth is not finite and > 0")
    return depth, valid


def write_depth(
    path: PathLike, depth: np.ndarray, valid: np.ndarray | None = None, *, scale: float = PNG_SCALE_MM
) -> None:
    """Write a depth map (metres) atomically; the format follows the suffix (see the module docstring).

    ``valid`` defaults to finite and > 0. Invalid pixels are stored as 0 (PNG, npy, PFM, EXR); ``.npz``
    also stores the mask. ``scale`` (metres per unit) applies to 16-bit PNGs only.
    """
    suffix = _suffix(path)
    depth, valid = _as_depth_and_valid(depth, valid, os.fspath(path))
    stored = np.where(valid, depth, np.float32(0)).astype(np.float32)
    if suffix == ".png":
        q = encode_depth_png16(depth, valid, scale)
        with atomic_path(path) as tmp:
            if not cv2.imwrite(str(tmp), q):
                raise InputFileError(path, "OpenCV could not write the 16-bit PNG")
    elif suffix == ".npy":
        with atomic_open(path, "wb") as f:
            np.save(f, stored, allow_pickle=False)
    elif suffix == ".npz":
        with atomic_open(path, "wb") as f:
            np.savez_compressed(f, depth=stored, valid=valid)
    elif suffix == ".pfm":
        write_pfm(path, stored)
    elif suffix == ".exr":
        if not exr_available():
            raise _exr_unavailable(path)
        with atomic_path(path) as tmp:
            if not cv2.imwrite(str(tmp), stored, [cv2.IMWRITE_EXR_TYPE, cv2.IMWRITE_EXR_TYPE_FLOAT]):
                raise InputFileError(path, "OpenCV could not write the EXR file")
    else:
        raise InvalidInputError(
            f"{os.fspath(path)}: unknown depth format {suffix!r}; expected one of {', '.join(DEPTH_SUFFIXES)}"
        )


# ---------------------------------------------------------------------------------------------- images
def _too_large(p: Path, exc: Exception) -> InputFileError:
    limit = Image.MAX_IMAGE_PIXELS or 0
    return InputFileError(
        p,
        f"image declares a size too large to decode safely ({exc}); the limit is {2 * limit / 1e6:.0f} megapixels "
        "(a file this large is usually damaged or crafted): downscale the image or check the file",
    )


def _open_image(p: Path) -> Image.Image:
    try:
        img = Image.open(p)
    except UnidentifiedImageError as exc:
        raise InputFileError(p, "not a recognised image file") from exc
    except Image.DecompressionBombError as exc:
        raise _too_large(p, exc) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputFileError(p, f"corrupt or unreadable image ({exc})") from exc
    try:
        img.load()
    except Image.DecompressionBombError as exc:
        img.close()
        raise _too_large(p, exc) from exc
    except (OSError, SyntaxError, ValueError, MemoryError) as exc:
        img.close()
        raise InputFileError(p, f"corrupt or truncated image ({type(exc).__name__}: {exc})") from exc
    return img


def read_image(path: PathLike) -> np.ndarray:
    """Read an image as uint8 H x W x 3 RGB, rotated/flipped upright by its EXIF orientation tag.

    Grey images are replicated to three channels, alpha is dropped, 16-bit images are divided by 257.
    """
    p = _require_file(path)
    img = _open_image(p)
    try:
        img = ImageOps.exif_transpose(img)
    except Exception as exc:  # malformed EXIF blocks
        raise InputFileError(p, f"unreadable EXIF orientation ({exc})") from exc
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        arr = np.clip(np.round(arr / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode == "F":
        raise InputFileError(p, "floating-point image cannot be read as RGB (is this a depth map?)")
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(arr)


def write_image(path: PathLike, image: np.ndarray, quality: int = 95) -> None:
    """Write a uint8 H x W x 3 (RGB) or H x W (grey) image atomically; format from the suffix (png/jpg/...)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise InvalidInputError(f"{os.fspath(path)}: image must be uint8, got {image.dtype}")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise InvalidInputError(f"{os.fspath(path)}: image must be H x W, H x W x 3 or x 4, got {image.shape}")
    suffix = _suffix(path)
    img = Image.fromarray(np.ascontiguousarray(image))
    kwargs: dict[str, Any] = {}
    if suffix in (".jpg", ".jpeg"):
        kwargs["quality"] = int(quality)
        if img.mode == "RGBA":
            img = img.convert("RGB")
    with atomic_path(path) as tmp:
        try:
            img.save(tmp, format=Image.registered_extensions().get(suffix), **kwargs)
        except (KeyError, ValueError, OSError) as exc:
            raise InvalidInputError(f"{os.fspath(path)}: cannot write image ({exc})") from exc


def focal_px_from_35mm(f35_mm: float, width: int, height: int) -> float:
    """Focal length in pixels from a 35 mm-equivalent focal length.

    The 35 mm equivalent is defined on the diagonal (CIPA DC-008): the image diagonal corresponds to the
    43.27 mm diagonal of a 36 x 24 mm frame, so ``f_px = f35 * sqrt(W^2 + H^2) / sqrt(36^2 + 24^2)``. This
    holds for any aspect ratio and orientation (it is symmetric in W and H).
    """
    return float(f35_mm) * math.hypot(width, height) / FULL_FRAME_DIAGONAL_MM


def read_exif_focal_px(
    source: PathLike | Image.Image, width: int | None = None, height: int | None = None
) -> float | None:
    """EXIF ``FocalLengthIn35mmFilm`` converted to pixels for a ``width`` x ``height`` image, or None.

    ``width``/``height`` default to the image's own size; pass the size of the pixels you actually use (the
    35 mm equivalent describes the field of view, so it converts correctly at any resolution). Returns None
    when the tag is missing or 0 (unknown). See :func:`focal_px_from_35mm` for the conversion.
    """
    if isinstance(source, Image.Image):
        value, size = _exif_focal_35mm(source), source.size
    else:
        p = _require_file(source)
        try:
            with Image.open(p) as img:
                value, size = _exif_focal_35mm(img), img.size
        except UnidentifiedImageError as exc:
            raise InputFileError(p, "not a recognised image file") from exc
        except Image.DecompressionBombError as exc:
            raise _too_large(p, exc) from exc
        except OSError as exc:
            raise InputFileError(p, f"unreadable image ({exc})") from exc
    if width is None or height is None:
        width, height = size
    if value is None:
        return None
    return focal_px_from_35mm(value, int(width), int(height))


def _exif_focal_35mm(img: Image.Image) -> float | None:
    """The positive ``FocalLengthIn35mmFilm`` value of an open image, or None (missing, 0 or malformed)."""
    try:
        exif = img.getexif()
        value = exif.get_ifd(_EXIF_IFD).get(_TAG_FOCAL_35MM)
        if value is None:
            value = exif.get(_TAG_FOCAL_35MM)
        f35 = float(value[0] if isinstance(value, tuple) else value) if value is not None else 0.0
    except Exception:  # malformed EXIF is treated as absent
        return None
    return f35 if f35 > 0 and math.isfinite(f35) else None


# ---------------------------------------------------------------------------------------------- intrinsics
def _num(p: Path, d: dict, key: str) -> float:
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputFileError(p, f"intrinsics field {key!r} must be a finite number, got {value!r}")
    return float(value)


def parse_intrinsics(
    data: Any, source: PathLike = "<intrinsics>", width: int | None = None, height: int | None = None
) -> Intrinsics:
    """Parse an intrinsics dict (see :func:`read_intrinsics_json`); errors name ``source``."""
    p = Path(source)
    if not isinstance(data, dict):
        raise InputFileError(p, f"intrinsics JSON must be an object, got {type(data).__name__}")
    d = dict(data)
    if "cam_in" in d and "fx" not in d:
        cam = d["cam_in"]
        if not isinstance(cam, (list, tuple)) or len(cam) != 4:
            raise InputFileError(p, f"'cam_in' must be a list [fx, fy, cx, cy], got {cam!r}")
        d.update(zip(("fx", "fy", "cx", "cy"), cam, strict=True))
    elif "K" in d and "fx" not in d:
        try:
            K = np.asarray(d["K"], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InputFileError(p, f"'K' is not a numeric 3x3 matrix ({exc})") from exc
        if K.shape != (3, 3):
            raise InputFileError(p, f"'K' must be 3x3, got shape {K.shape}")
        d.update(fx=K[0, 0], fy=K[1, 1], cx=K[0, 2], cy=K[1, 2])
    if "fx" not in d:
        raise InputFileError(
            p, "intrinsics JSON has no 'fx' (expected {'fx','fy','cx','cy'[,'width','height']} or {'cam_in': [fx, fy, cx, cy]})"
        )
    fx = _num(p, d, "fx")
    fy = _num(p, d, "fy") if "fy" in d else fx
    file_w = int(_num(p, d, "width")) if "width" in d else None
    file_h = int(_num(p, d, "height")) if "height" in d else None
    if (file_w is None) != (file_h is None):
        raise InputFileError(p, "intrinsics JSON must give both 'width' and 'height' or neither")
    w = file_w if file_w is not None else width
    h = file_h if file_h is not None else height
    if w is None or h is None:
        raise InputFileError(p, "intrinsics JSON has no 'width'/'height' and no image size was given")
    cx = _num(p, d, "cx") if "cx" in d else (w - 1) / 2.0
    cy = _num(p, d, "cy") if "cy" in d else (h - 1) / 2.0
    try:
        K = Intrinsics(fx, fy, cx, cy, w, h)
    except InvalidInputError as exc:
        raise InputFileError(p, f"invalid intrinsics: {exc}") from exc
    if width is not None and height is not None and (width, height) != (w, h):
        if abs(width / height - w / h) > 0.01 * (w / h):
            raise InputFileError(
                p, f"intrinsics are for a {w}x{h} image but the image is {width}x{height} (different aspect ratio)"
            )
        K = K.resized(int(width), int(height))
    return K


def read_intrinsics_json(path: PathLike, width: int | None = None, height: int | None = None) -> Intrinsics:
    """Read a sidecar intrinsics JSON.

    Accepted forms: ``{"fx", "fy", "cx", "cy"[, "width", "height"]}``, the official release's
    ``{"cam_in": [fx, fy, cx, cy]}`` and ``{"K": 3x3}``. ``fy`` defaults to ``fx``; ``cx``/``cy`` default to
    the image centre ((W-1)/2, (H-1)/2). ``width``/``height`` give the image size when the file has none; when
    both exist and differ with the same aspect ratio (within 1%), the intrinsics are rescaled to the image
    with :meth:`Intrinsics.resized`, otherwise that is an error.
    """
    p = _require_file(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(p, f"not valid JSON ({exc})") from exc
    return parse_intrinsics(data, p, width, height)


def write_intrinsics_json(path: PathLike, K: Intrinsics, extra: dict[str, Any] | None = None) -> None:
    """Write ``{"fx","fy","cx","cy","width","height", **extra}`` atomically (readable by :func:`read_intrinsics_json`)."""
    payload = K.to_dict()
    if extra:
        payload.update({k: (v.value if hasattr(v, "value") else v) for k, v in extra.items()})
    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")
