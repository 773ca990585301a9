"""Training sources: a native dataset (KITTI layout) trains without packing; the loader registry gives random
access (also for a loader that only yields samples); source specs for pack / pseudo-label."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from metricanything.camera import Intrinsics
from metricanything.cli import main
from metricanything.data import loaders
from metricanything.data.loaders import load_dataset
from metricanything.data.sample import RGBDSample
from metricanything.data.sources import SourceMixture, build_source, parse_loader_spec
from metricanything.errors import ConfigError, DatasetError
from metricanything.train.config import SourceConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "teacher_test"
DRIVE = "2011_09_26_drive_0001_sync"
H, W = 48, 96


def kitti_root(root: Path, frames: int = 3) -> Path:
    """The annotated KITTI depth layout + KITTI raw frames and calibration (as tests/test_loaders.py writes it)."""
    rng = np.random.default_rng(0)
    for f in range(frames):
        name = f"{f:010d}.png"
        depth = 5.0 + 10.0 * rng.random((H, W))
        depth[rng.random((H, W)) > 0.3] = 0  # sparse LiDAR
        gt = root / "train" / DRIVE / "proj_depth/groundtruth/image_02" / name
        gt.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(gt), np.round(depth * 256).astype(np.uint16))
        img = root / "2011_09_26" / DRIVE / "image_02/data" / name
        img.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(img), rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    (root / "2011_09_26/calib_cam_to_cam.txt").write_text(
        "P_rect_02: 7.2e+01 0 4.75e+01 4.4e+01 0 7.2e+01 2.35e+01 0.2 0 0 1 0.003\n"
    )
    return root


def test_pretrain_two_steps_directly_from_a_kitti_layout_folder(tmp_path: Path) -> None:
    root = kitti_root(tmp_path / "kitti")
    out = tmp_path / "run"
    rc = main([
        "pretrain", "--config", str(CONFIG), "--out", str(out), "--set", "train.steps=2",
        "--set", f"data.sources=[{{kind: loader, name: kitti, path: '{root}', split: train}}]",
        "--set", "data.val_samples=2",
    ])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == 2 and np.isfinite(summary["final_loss"])
    assert summary["data"]["sources"] == [
        {"name": f"kitti@train:{root}", "draws": 4, "bad": 0, "bad_fraction": 0.0}
    ] and summary["data"]["notes"] == []
    assert (out / "model" / "model.safetensors").is_file()
    # the items come from the KITTI frames: LiDAR, with the calibration's focal length (scaled to the crop)
    cfg = load_config(CONFIG, {"data.sources": [{"kind": "loader", "name": "kitti", "path": str(root)}]})
    draw = SourceMixture(cfg.data.sources, cfg.seed).get(0)
    assert draw.sample.dataset == "kitti" and draw.sample.sensor == "lidar"
    assert draw.sample.intrinsics == Intrinsics(72.0, 72.0, 47.5, 23.5, W, H) and not draw.faults


def test_loader_source_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'loader' source needs a name"):
        load_config(CONFIG, {"data.sources": [{"kind": "loader", "path": str(tmp_path)}]})
    with pytest.raises(DatasetError, match="unknown dataset loader 'nope'; choose from booster, diode"):
        build_source(SourceConfig(kind="loader", name="nope", path=str(tmp_path)))
    with pytest.raises(DatasetError, match="KITTI"):
        build_source(SourceConfig(kind="loader", name="kitti", path=str(tmp_path)))


def test_native_loaders_are_indexed_not_loaded(tmp_path: Path) -> None:
    root = kitti_root(tmp_path / "kitti", frames=3)
    ds = load_dataset("kitti", root)
    assert len(ds) == 3 and ds.where(1).endswith("image_02/0000000001.png")
    assert ds[2].sample_id == f"{DRIVE}_image_02_0000000002"  # random access, nothing read before
    copy = pickle.loads(pickle.dumps(ds))  # what a DataLoader worker gets
    assert np.array_equal(copy[0].depth, ds[0].depth)


def test_a_loader_that_only_yields_is_indexed_once_on_disk(tmp_path: Path, monkeypatch) -> None:
    made = []

    def generator_loader(root, split=None):
        for i in range(3):
            made.append(i)
            depth = np.full((4, 6), 1.0 + i, np.float32)
            yield RGBDSample(np.zeros((4, 6, 3), np.uint8), depth, depth > 0, Intrinsics(5, 5, 2.5, 1.5, 6, 4),
                             sample_id=f"g{i}")

    monkeypatch.setitem(loaders.LOADERS, "gen", generator_loader)
    ds = load_dataset("gen", tmp_path)
    assert made == [0, 1, 2] and len(ds) == 3  # one pass
    assert ds[2].sample_id == "g2" and float(ds[1].depth[0, 0]) == 2.0
    assert made == [0, 1, 2]  # random access reads the index, not the generator again
    source = build_source(SourceConfig(kind="loader", name="gen", path=str(tmp_path)))
    assert source.length == 3 and source.name == f"gen:{tmp_path}"


def test_source_specs(tmp_path: Path) -> None:
    from metricanything.train.pseudo_label import parse_data_spec

    assert parse_loader_spec("kitti:/data/kitti") == ("kitti", None, "/data/kitti")
    assert parse_loader_spec("nyu@test:/data/nyu.mat") == ("nyu", "test", "/data/nyu.mat")
    assert parse_loader_spec(str(tmp_path)) is None and parse_loader_spec("a/b:c") is None
    spec = parse_data_spec(f"kitti@train:{tmp_path / 'k'}")
    assert (spec.kind, spec.name, spec.split, spec.path) == ("loader", "kitti", "train", str(tmp_path / "k"))
