"""The one record every data source yields: :class:`RGBDSample`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from metricanything.camera import Intrinsics
from metricanything.errors import InvalidInputError

#: How the depth was obtained.
SOURCE_KINDS = ("rendered", "captured", "reconstructed")
#: Which sensor / process produced it (open set; these are the ones the project simulates or loads).
SENSORS = ("synthetic", "lidar", "tof", "structured_light", "rgbd", "stereo", "sfm", "mvs", "radar", "pseudo")


@dataclass
class RGBDSample:
    """An RGB image with metric z-depth, an explicit validity mask and its intrinsics.

    * ``image``: uint8 H x W x 3, RGB.
    * ``depth``: float32 H x W, metres (OpenCV z-depth). Values where ``valid`` is False carry no meaning
      (producers store 0 there); never read them.
    * ``valid``: bool H x W. Where True, depth is finite and > 0.
    * ``metric_scale_trusted``: False for sources whose global scale is unknown (SfM/MVS); such depth is
      only correct up to one factor per scene and must go through prompt preparation (PDSA).
    * ``pose``: optional 4x4 camera-to-world transform (OpenCV camera frame), for multi-view work.
    * ``meta``: free-form JSON-serialisable extras (e.g. ``{"true_scale": 0.4}`` for simulated SfM).
    """

    image: np.ndarray
    depth: np.ndarray
    valid: np.ndarray
    intrinsics: Intrinsics
    source_kind: str = "rendered"
    sensor: str = "synthetic"
    metric_scale_trusted: bool = True
    camera_id: str = ""
    scene_id: str = ""
    dataset: str = ""
    sample_id: str = ""
    pose: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def height(self) -> int:
        return int(self.depth.shape[0])

    @property
    def width(self) -> int:
        return int(self.depth.shape[1])

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` naming the problem if the record breaks its contract."""
        where = f"sample {self.sample_id!r}" if self.sample_id else "sample"
        img, dep, val = self.image, self.depth, self.valid
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise InvalidInputError(f"{where}: image must be uint8 H x W x 3, got {getattr(img, 'dtype', type(img))} {getattr(img, 'shape', '')}")
        if not isinstance(dep, np.ndarray) or dep.dtype != np.float32 or dep.ndim != 2:
            raise InvalidInputError(f"{where}: depth must be float32 H x W, got {getattr(dep, 'dtype', type(dep))} {getattr(dep, 'shape', '')}")
        if not isinstance(val, np.ndarray) or val.dtype != np.bool_ or val.shape != dep.shape:
            raise InvalidInputError(f"{where}: valid must be a bool mask of the depth's shape {dep.shape}")
        if img.shape[:2] != dep.shape:
            raise InvalidInputError(f"{where}: image {img.shape[:2]} and depth {dep.shape} differ in size")
        if (self.intrinsics.height, self.intrinsics.width) != dep.shape:
            raise InvalidInputError(
                f"{where}: intrinsics are {self.intrinsics.width}x{self.intrinsics.height}, depth is {dep.shape[1]}x{dep.shape[0]}"
            )
        if self.source_kind not in SOURCE_KINDS:
            raise InvalidInputError(f"{where}: source_kind must be one of {SOURCE_KINDS}, got {self.source_kind!r}")
        d = dep[val]
        if d.size and not (np.isfinite(d).all() and (d > 0).all()):
            raise InvalidInputError(f"{where}: valid depth must be finite and > 0")
        if self.pose is not None and np.asarray(self.pose).shape != (4, 4):
            raise InvalidInputError(f"{where}: pose must be 4x4, got {np.asarray(self.pose).shape}")

    def replace(self, **changes: Any) -> RGBDSample:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def meta_dict(self) -> dict[str, Any]:
        """Everything but the arrays, JSON-serialisable (the folder/shard ``meta.json``)."""
        return {
            "intrinsics": self.intrinsics.to_dict(),
            "source_kind": self.source_kind,
            "sensor": self.sensor,
            "metric_scale_trusted": bool(self.metric_scale_trusted),
            "camera_id": self.camera_id,
            "scene_id": self.scene_id,
            "dataset": self.dataset,
            "sample_id": self.sample_id,
            "pose": None if self.pose is None else np.asarray(self.pose, dtype=np.float64).tolist(),
            "meta": self.meta,
        }
