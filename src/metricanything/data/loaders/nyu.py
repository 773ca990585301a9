"""NYU Depth v2, labelled subset: ``nyu_depth_v2_labeled.mat`` (MATLAB v7.3 = HDF5), read with h5py.

MATLAB stores ``images`` as H x W x 3 x N and ``depths`` as H x W x N (metres, column-major); HDF5 shows the
axes reversed, so h5py sees ``images`` (N, 3, W, H) uint8 and ``depths`` (N, W, H): image i is
``images[i].transpose(2, 1, 0)`` and depth i is ``depths[i].T``. ``depths`` is the in-painted (dense) map every
benchmark uses; ``raw=True`` reads ``rawDepths`` instead (0 = no Kinect return). Intrinsics are the toolbox's
RGB camera (fx 518.8579, fy 519.4696, cx 325.5824, cy 253.7362 at 640 x 480), used as published.

``root``: the ``.mat`` file or a folder holding it. ``split``: None (all 1449), ``"train"`` (795) or ``"test"``
(654) via the official ``splits.mat`` (``trainNdxs``/``testNdxs``, 1-based) next to the ``.mat``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metricanything.camera import Intrinsics
from metricanything.data.loaders._common import SampleIndex, finish_depth, lazy
from metricanything.data.sample import RGBDSample
from metricanything.errors import DatasetError, InputFileError

NYU_INTRINSICS = Intrinsics(518.8579, 519.4696, 325.5824, 253.7362, 640, 480)
MAT_NAME = "nyu_depth_v2_labeled.mat"


def _split_indices(splits_path: Path, split: str) -> np.ndarray:
    import scipy.io

    if not splits_path.is_file():
        raise DatasetError(f"{splits_path}: split {split!r} needs the official splits.mat next to {MAT_NAME}")
    key = {"train": "trainNdxs", "test": "testNdxs"}.get(split)
    if key is None:
        raise DatasetError(f"NYU split must be 'train' or 'test' (or None for all), got {split!r}")
    try:
        data = scipy.io.loadmat(str(splits_path))
    except Exception as exc:  # scipy raises several types for bad files
        raise InputFileError(splits_path, f"not a readable MATLAB file ({exc})") from None
    if key not in data:
        raise InputFileError(splits_path, f"has no {key}")
    return np.asarray(data[key], dtype=np.int64).ravel() - 1


class _NyuFile:
    """The ``.mat`` file opened on first use in each process (an HDF5 handle must not cross a fork)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: Any = None
        self._pid = -1

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_file": None, "_pid": -1}

    def get(self) -> Any:
        if self._file is None or self._pid != os.getpid():
            import h5py

            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        return self._file


@dataclass(frozen=True)
class _NyuItem:
    mat: _NyuFile
    index: int
    depth_key: str
    intrinsics: Intrinsics

    def __str__(self) -> str:
        return f"{self.mat.path}[{self.index}]"


def _load(item: _NyuItem) -> RGBDSample:
    f, i = item.mat.get(), item.index
    image = np.ascontiguousarray(np.asarray(f["images"][i], dtype=np.uint8).transpose(2, 1, 0))
    depth, valid = finish_depth(np.asarray(f[item.depth_key][i], dtype=np.float32).T)
    return RGBDSample(
        image, np.ascontiguousarray(depth), np.ascontiguousarray(valid), item.intrinsics,
        source_kind="captured", sensor="structured_light", metric_scale_trusted=True,
        camera_id="nyu_kinect_v1", scene_id="", dataset="nyu", sample_id=f"nyu_{i:04d}",
        meta={"index": i, "inpainted": item.depth_key == "depths"},
    )


def load_nyu(
    root: str | os.PathLike, split: str | None = None, raw: bool = False, intrinsics: Intrinsics | None = None
) -> SampleIndex:
    """The labelled NYU Depth v2 images (see the module docstring), read one at a time.

    ``intrinsics`` overrides the published ones (required when the arrays are not 640 x 480, e.g. a crop).
    """
    from metricanything.extras import require_extra

    h5py = require_extra("h5py", "reading NYU Depth v2 (MATLAB v7.3 .mat)")
    root = Path(root)
    mat = root / MAT_NAME if root.is_dir() else root
    if not mat.is_file():
        raise DatasetError(f"{mat}: NYU Depth v2 labelled .mat not found")
    try:
        f = h5py.File(mat, "r")
    except OSError as exc:
        raise InputFileError(mat, f"not an HDF5 (MATLAB v7.3) file ({exc})") from None
    depth_key = "rawDepths" if raw else "depths"
    with f:
        for key in ("images", depth_key):
            if key not in f:
                raise InputFileError(mat, f"has no {key!r} dataset")
        n = f["images"].shape[0]
        if f["images"].ndim != 4 or f["images"].shape[1] != 3 or f[depth_key].shape != (n, *f["images"].shape[2:]):
            raise InputFileError(mat, f"unexpected array shapes images {f['images'].shape}, {depth_key} {f[depth_key].shape}")
        size = (f["images"].shape[2], f["images"].shape[3])  # (W, H)
    K = intrinsics or NYU_INTRINSICS
    if size != K.size:
        raise InputFileError(
            mat, f"images are {size[0]}x{size[1]} but the intrinsics are for {K.width}x{K.height}; pass intrinsics="
        )
    indices = np.arange(n) if split is None else _split_indices(mat.parent / "splits.mat", split)
    if indices.size and (indices.min() < 0 or indices.max() >= n):
        raise DatasetError(f"{mat.parent / 'splits.mat'}: indices outside 1..{n}")
    handle = _NyuFile(mat)
    return lazy([_NyuItem(handle, int(i), depth_key, K) for i in indices], _load)
