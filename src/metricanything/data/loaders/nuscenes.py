"""nuScenes-style camera + LiDAR: key-frame LiDAR sweeps projected into each camera with a z-buffer.

Layout: ``ROOT/<version>/{sample_data,calibrated_sensor,ego_pose,sensor}.json`` (plus ``sample.json`` for
scene ids, optional) and the files they name relative to ROOT (``samples/CAM_FRONT/*.jpg``,
``samples/LIDAR_TOP/*.pcd.bin``). A LiDAR file is float32 records of 5 values (x, y, z, intensity, ring).

For every key-frame camera image, the key-frame LiDAR sweep of the same sample is carried
lidar -> ego(t_lidar) -> global -> ego(t_cam) -> camera using ``calibrated_sensor`` (sensor in ego frame) and
``ego_pose`` (ego in global frame); rotations are quaternions (w, x, y, z). Points nearer than ``min_depth``
(default 1 m, as in the nuScenes devkit, to drop returns from the ego vehicle) are discarded, the rest are
splatted with :func:`metricanything.camera.splat_points_to_depth` (nearest wins). ``camera_intrinsic`` gives
K. The sample pose is camera-to-global. ``split`` names the version folder (default: the only ``v1.0-*``
folder); ``cameras`` limits the channels (default: every camera).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from metricanything.camera import Intrinsics, splat_points_to_depth, transform_points
from metricanything.data.loaders._common import (
    SampleIndex,
    lazy,
    no_samples,
    quat_to_matrix,
    read_rgb,
    require_dir,
    rigid,
)
from metricanything.data.sample import RGBDSample
from metricanything.errors import DatasetError, InputFileError


def read_lidar_bin(path: Path, values_per_point: int = 5) -> np.ndarray:
    """x, y, z (N x 3 float64) of a nuScenes ``.pcd.bin`` sweep."""
    if not path.is_file():
        raise InputFileError(path, "LiDAR file is missing")
    raw = np.fromfile(path, dtype="<f4")
    if raw.size % values_per_point:
        raise InputFileError(path, f"{raw.size} floats is not a multiple of {values_per_point} (x, y, z, intensity, ring)")
    return raw.reshape(-1, values_per_point)[:, :3].astype(np.float64)


def _table(folder: Path, name: str, required: bool = True) -> list[dict[str, Any]]:
    path = folder / f"{name}.json"
    if not path.is_file():
        if required:
            raise DatasetError(f"{path}: nuScenes table is missing")
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(path, f"not valid JSON ({exc})") from None
    if not isinstance(data, list):
        raise InputFileError(path, "expected a JSON list of records")
    return data


def _pose(rec: dict[str, Any]) -> np.ndarray:
    return rigid(quat_to_matrix(rec["rotation"]), rec["translation"])


def _load(item: dict[str, Any]) -> RGBDSample:
    root, cam, lidar, min_depth = item["root"], item["cam"], item["lidar"], item["min_depth"]
    img_path = root / cam["filename"]
    image = read_rgb(img_path)
    h, w = image.shape[:2]
    k = np.asarray(item["cam_cs"]["camera_intrinsic"], dtype=np.float64)
    if k.shape != (3, 3):
        raise InputFileError(item["cs_path"], f"calibrated_sensor {cam['calibrated_sensor_token']} has no 3x3 camera_intrinsic")
    K = Intrinsics(k[0, 0], k[1, 1], k[0, 2], k[1, 2], w, h)
    T_ego_lidar = _pose(item["lidar_cs"])
    T_global_ego_l = _pose(item["lidar_ep"])
    T_global_ego_c = _pose(item["cam_ep"])
    T_ego_cam = _pose(item["cam_cs"])
    T_global_cam = T_global_ego_c @ T_ego_cam
    T_cam_lidar = np.linalg.inv(T_global_cam) @ T_global_ego_l @ T_ego_lidar
    pts = transform_points(read_lidar_bin(root / lidar["filename"]), T_cam_lidar)
    pts = pts[pts[:, 2] >= min_depth]
    depth, valid = splat_points_to_depth(pts, K)
    return RGBDSample(
        image, depth, valid, K, source_kind="captured", sensor="lidar", metric_scale_trusted=True,
        camera_id=f"nuscenes_{item['channel']}", scene_id=item["scene"], dataset="nuscenes",
        sample_id=Path(cam["filename"]).name.split(".")[0], pose=T_global_cam,
        meta={"channel": item["channel"], "sample_token": cam["sample_token"], "lidar_points": int(len(pts))},
    )


def load_nuscenes(
    root: str | os.PathLike,
    split: str | None = None,
    cameras: Sequence[str] | None = None,
    min_depth: float = 1.0,
) -> SampleIndex:
    """Iterate key-frame camera images with projected LiDAR depth (see the module docstring)."""
    root = require_dir(root, "nuScenes")
    if split is None:
        versions = sorted(p for p in root.iterdir() if p.is_dir() and (p / "sample_data.json").is_file())
        if len(versions) != 1:
            found = ", ".join(p.name for p in versions) or "none"
            raise DatasetError(f"{root}: expected exactly one version folder with sample_data.json (found: {found}); pass split=")
        meta_dir = versions[0]
    else:
        meta_dir = root / split
    sensors = {r["token"]: r for r in _table(meta_dir, "sensor")}
    calibs = {r["token"]: r for r in _table(meta_dir, "calibrated_sensor")}
    poses = {r["token"]: r for r in _table(meta_dir, "ego_pose")}
    scenes = {r["token"]: r.get("scene_token", "") for r in _table(meta_dir, "sample", required=False)}
    cams, lidars = [], {}
    for sd in _table(meta_dir, "sample_data"):
        if not sd.get("is_key_frame", False):
            continue
        try:
            sensor = sensors[calibs[sd["calibrated_sensor_token"]]["sensor_token"]]
        except KeyError as exc:
            raise InputFileError(meta_dir / "sample_data.json", f"record {sd.get('token')} refers to unknown token {exc}") from None
        if sensor["modality"] == "camera" and (cameras is None or sensor["channel"] in cameras):
            cams.append((sd, sensor["channel"]))
        elif sensor["modality"] == "lidar":
            lidars.setdefault(sd["sample_token"], sd)
    items = []
    for sd, channel in sorted(cams, key=lambda c: (c[0]["sample_token"], c[1])):
        lidar = lidars.get(sd["sample_token"])
        if lidar is None:
            continue
        items.append({
            "image": root / sd["filename"], "root": root, "cam": sd, "lidar": lidar, "channel": channel, "min_depth": float(min_depth),
            "cam_cs": calibs[sd["calibrated_sensor_token"]], "lidar_cs": calibs[lidar["calibrated_sensor_token"]],
            "cam_ep": poses[sd["ego_pose_token"]], "lidar_ep": poses[lidar["ego_pose_token"]],
            "scene": scenes.get(sd["sample_token"], ""), "cs_path": meta_dir / "calibrated_sensor.json",
        })
    if not items:
        raise no_samples(meta_dir, "nuScenes", "key-frame camera sample_data with a key-frame LiDAR sweep of the same sample")
    return lazy(items, _load)
