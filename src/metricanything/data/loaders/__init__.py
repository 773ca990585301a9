"""Real-dataset loaders reading each dataset's native layout; every one yields :class:`RGBDSample` s.

``LOADERS[name](root, split=None, **options)`` returns an iterable of samples (layout problems raise
:class:`~metricanything.errors.DatasetError` at once; per-file problems raise
:class:`~metricanything.errors.InputFileError` naming the file when that sample is read).
Conventions per dataset are in each module's docstring and in ``docs/design.md``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from metricanything.data.folder import FolderDataset
from metricanything.data.loaders.booster import load_booster
from metricanything.data.loaders.diode import load_diode
from metricanything.data.loaders.eth3d import load_eth3d
from metricanything.data.loaders.ibims import load_ibims
from metricanything.data.loaders.kitti import load_kitti
from metricanything.data.loaders.middlebury import load_middlebury
from metricanything.data.loaders.mrpt_rawlog import load_mrpt_rawlog
from metricanything.data.loaders.nuscenes import load_nuscenes
from metricanything.data.loaders.nyu import load_nyu
from metricanything.data.loaders.scannet import load_scannet
from metricanything.data.loaders.stereo_pairs import load_stereo_pairs
from metricanything.data.loaders.sunrgbd import load_sunrgbd
from metricanything.data.sample import RGBDSample
from metricanything.errors import DatasetError


def load_folder(root: str | os.PathLike, split: str | None = None) -> Iterable[RGBDSample]:
    """The project's own folder format (``split`` is a sub-folder, if given)."""
    return FolderDataset(os.path.join(os.fspath(root), split) if split else root)


LOADERS: dict[str, Callable[..., Iterable[RGBDSample]]] = {
    "folder": load_folder,
    "kitti": load_kitti,
    "nyu": load_nyu,
    "eth3d": load_eth3d,
    "diode": load_diode,
    "ibims": load_ibims,
    "middlebury": load_middlebury,
    "booster": load_booster,
    "sunrgbd": load_sunrgbd,
    "scannet": load_scannet,
    "nuscenes": load_nuscenes,
    "stereo_pairs": load_stereo_pairs,
    "mrpt_rawlog": load_mrpt_rawlog,
}
ALIASES = {"nyuv2": "nyu", "nyu_depth_v2": "nyu", "ibims1": "ibims", "ibims-1": "ibims", "sun_rgbd": "sunrgbd", "middlebury2014": "middlebury"}


def load_dataset(name: str, root: str | os.PathLike, split: str | None = None, **options: Any) -> Iterable[RGBDSample]:
    """Samples of dataset ``name`` (a key of :data:`LOADERS`) stored natively under ``root``."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in LOADERS:
        raise DatasetError(f"unknown dataset loader {name!r}; choose from {', '.join(sorted(LOADERS))}")
    if not os.path.exists(root):
        raise DatasetError(f"{os.fspath(root)}: {name} root does not exist")
    return LOADERS[key](root, split=split, **options)


__all__ = ["LOADERS", "load_dataset", *(f.__name__ for f in LOADERS.values())]
