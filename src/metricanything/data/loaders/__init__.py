"""Real-dataset loaders reading each dataset's native layout: the registry.

``LOADERS[name](root, split=None, **options)`` returns the dataset as an index of sample references
(:class:`~metricanything.data.loaders._common.SampleIndex`: ``len``, ``ds[k]``, iteration, ``where(k)``):
layout problems raise :class:`~metricanything.errors.DatasetError` at once; per-file problems raise
:class:`~metricanything.errors.InputFileError` naming the file when that sample is read. :func:`load_dataset`
is the one way in (names, aliases, a missing root); it also turns a loader that only yields samples into an
index, once (:func:`as_index`). Conventions per dataset are in each module's docstring and in
``docs/design.md``. ``pack --help`` and training configs (``{kind: loader, name: ...}``) list
:func:`loader_names`.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from metricanything.data.folder import FolderDataset
from metricanything.data.loaders._common import SampleIndex
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


def load_folder(root: str | os.PathLike, split: str | None = None) -> FolderDataset:
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


def loader_names() -> list[str]:
    """The registered loader names, sorted."""
    return sorted(LOADERS)


def load_dataset(name: str, root: str | os.PathLike, split: str | None = None, **options: Any) -> Sequence[RGBDSample]:
    """Samples of dataset ``name`` (a key of :data:`LOADERS` or an alias) stored natively under ``root``."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in LOADERS:
        raise DatasetError(f"unknown dataset loader {name!r}; choose from {', '.join(loader_names())}")
    if not os.path.exists(root):
        raise DatasetError(f"{os.fspath(root)}: {name} root does not exist")
    return as_index(LOADERS[key](root, split=split, **options), f"{key}:{os.fspath(root)}")


def as_index(samples: Iterable[RGBDSample], where: str) -> Sequence[RGBDSample]:
    """``samples`` with random access: as they are when they have ``len`` and ``[k]``; otherwise written once,
    in order, to temporary shards (deleted when the process that wrote them exits) and read back by index."""
    if hasattr(samples, "__len__") and hasattr(samples, "__getitem__"):
        return samples  # type: ignore[return-value]
    from metricanything.data.shards import ShardIndex, ShardWriter

    folder = tempfile.mkdtemp(prefix="metricanything-index-")
    owner = os.getpid()
    atexit.register(lambda: os.getpid() == owner and shutil.rmtree(folder, ignore_errors=True))
    with ShardWriter(folder, "spool") as writer:
        for sample in samples:
            writer.write(sample)
    if writer.count == 0:
        raise DatasetError(f"{where}: the loader yielded no samples")
    return ShardIndex(folder)


__all__ = ["LOADERS", "SampleIndex", "as_index", "load_dataset", "loader_names", *(f.__name__ for f in LOADERS.values())]
