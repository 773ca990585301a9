"""Shared helpers for the native-layout dataset loaders."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from metricanything.data.sample import RGBDSample
from metricanything.depth_io import read_image
from metricanything.errors import DatasetError, InputFileError

T = TypeVar("T")
_RAW = cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION


def require_dir(root: str | os.PathLike, dataset: str) -> Path:
    """``root`` as a Path, or :class:`DatasetError` naming it when it is not a directory."""
    p = Path(root)
    if not p.is_dir():
        raise DatasetError(f"{p}: {dataset} root does not exist or is not a directory")
    return p


def no_samples(root: Path, dataset: str, expected: str) -> DatasetError:
    return DatasetError(f"{root}: no {dataset} samples found (expected {expected})")


class SampleIndex(Sequence[RGBDSample]):
    """A dataset as an index of sample references: ``len``, ``ds[k]`` (loads sample k) and iteration.

    ``items`` are cheap references (paths, indices) listed once when the loader opens the dataset, so layout
    errors surface at once; ``load(item)`` reads one sample when asked (per-file problems raise then).
    ``where(k)`` names sample k's files for messages. Picklable when ``load`` is a module-level function.
    """

    def __init__(self, items: Sequence[T], load: Callable[[T], RGBDSample]) -> None:
        self.items = list(items)
        self.load = load

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> RGBDSample:  # type: ignore[override]
        return self.load(self.items[k])

    def __iter__(self) -> Iterator[RGBDSample]:
        for item in self.items:
            yield self.load(item)

    def where(self, k: int) -> str:
        """The first path among sample k's references (or the reference itself)."""
        item = self.items[k]
        parts = item if isinstance(item, tuple) else tuple(item.values()) if isinstance(item, dict) else (item,)
        return str(next((p for p in parts if isinstance(p, Path)), item))


def lazy(items: Sequence[T], load: Callable[[T], RGBDSample]) -> SampleIndex:
    """The dataset of ``items`` loaded one at a time by ``load`` (see :class:`SampleIndex`)."""
    return SampleIndex(items, load)


def read_rgb(path: Path) -> np.ndarray:
    """uint8 RGB H x W x 3, writable (InputFileError when missing/corrupt)."""
    image = read_image(path)
    return image if image.flags.writeable else image.copy()  # PIL-backed arrays are read-only


def read_png_raw(path: Path, dtype: type | None = np.uint16) -> np.ndarray:
    """A single-channel PNG in its stored integer type (checked against ``dtype`` when given)."""
    if not path.is_file():
        raise InputFileError(path, "file is missing")
    arr = cv2.imread(str(path), _RAW)
    if arr is None:
        raise InputFileError(path, "not a readable PNG (corrupt or truncated)")
    if arr.ndim == 3:
        if arr.shape[2] == 1 or np.all(arr == arr[..., :1]):
            arr = arr[..., 0]
        else:
            raise InputFileError(path, f"expected a single-channel PNG, got {arr.shape[2]} channels")
    if dtype is not None and arr.dtype != dtype:
        raise InputFileError(path, f"expected a {np.dtype(dtype).name} PNG, got {arr.dtype}")
    return arr


def read_mask_png(path: Path) -> np.ndarray:
    """Any-depth PNG mask: non-zero = True."""
    return read_png_raw(path, dtype=None) != 0


def read_numbers(path: Path, count: int | None = None) -> np.ndarray:
    """All numbers in a text file (separators: whitespace, commas, semicolons, brackets)."""
    if not path.is_file():
        raise InputFileError(path, "file is missing")
    text = path.read_text(encoding="utf-8", errors="replace")
    for ch in ",;[]":
        text = text.replace(ch, " ")
    try:
        vals = np.array([float(t) for t in text.split()], dtype=np.float64)
    except ValueError as exc:
        raise InputFileError(path, f"expected only numbers ({exc})") from None
    if count is not None and vals.size != count:
        raise InputFileError(path, f"expected {count} numbers, found {vals.size}")
    return vals


def key_value_lines(path: Path, sep: str = ":") -> dict[str, str]:
    """``key<sep> value`` lines as a dict (whitespace stripped; other lines ignored)."""
    if not path.is_file():
        raise InputFileError(path, "file is missing")
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if sep in line:
            k, _, v = line.partition(sep)
            out[k.strip()] = v.strip()
    return out


def finish_depth(depth: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """float32 depth with 0 outside the mask; mask = given & finite & > 0."""
    depth = np.asarray(depth, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(depth) & (depth > 0)
    if valid is not None:
        ok &= valid
    return np.where(ok, depth, np.float32(0)).astype(np.float32), ok


def check_same_size(image: np.ndarray, depth: np.ndarray, image_path: Path, depth_path: Path) -> None:
    if image.shape[:2] != depth.shape:
        raise InputFileError(
            depth_path,
            f"depth is {depth.shape[1]}x{depth.shape[0]} but the image {image_path.name} is {image.shape[1]}x{image.shape[0]}",
        )


def quat_to_matrix(q: Sequence[float]) -> np.ndarray:
    """Rotation matrix of a unit quaternion given as (w, x, y, z)."""
    w, x, y, z = (float(v) for v in q)
    n = w * w + x * x + y * y + z * z
    if n < 1e-12:
        raise ValueError("zero quaternion")
    s = 2.0 / n
    return np.array(
        [
            [1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w)],
            [s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w)],
            [s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y)],
        ]
    )


def rigid(R: np.ndarray, t: Sequence[float]) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(t, dtype=np.float64)
    return T
