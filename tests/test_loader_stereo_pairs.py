"""Calibrated stereo pairs -> SGBM metric depth (metricanything.data.loaders.stereo_pairs)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from metricanything.data.loaders import LOADERS, load_dataset
from metricanything.data.loaders.stereo_pairs import (
    SGBMParams,
    read_stereo_calibration,
    stereo_depth,
)
from metricanything.errors import DatasetError, InputFileError

CAL = {"width": 160, "height": 96, "fx": 100.0, "fy": 100.0, "cx0": 79.5, "cx1": 79.5, "cy": 47.5,
       "baseline_meters": 0.1, "depth_range": [0.3, 5.0]}


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = cv2.GaussianBlur(rng.uniform(0, 255, (h, w)).astype(np.float32), (0, 0), 1.2)
    t = (t - t.min()) / (t.max() - t.min()) * 255
    return t.astype(np.uint8)


def _pair(disp: int, h: int = 96, w: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """Rectified pair of a fronto-parallel textured plane at constant disparity: right(x - d) = left(x)."""
    t = _texture(h, w + disp)
    return np.ascontiguousarray(t[:, :w]), np.ascontiguousarray(t[:, disp:disp + w])


def _write_pair(folder: Path, name: str, left: np.ndarray, right: np.ndarray, cal: dict | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / f"{name}_left.png"), left)
    cv2.imwrite(str(folder / f"{name}_right.png"), right)
    (folder / "stereodemo_calibration.json").write_text(json.dumps(cal or CAL))


def test_calibration_parsing_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "stereodemo_calibration.json"
    p.write_text(json.dumps({**CAL, "left_image_rect_normalized": [0, 0.05, 0.9, 1]}))
    cal = read_stereo_calibration(p)
    assert (cal.width, cal.height, cal.fx, cal.baseline_m) == (160, 96, 100.0, 0.1)
    assert cal.left_rect == (0.0, 0.05, 0.9, 1.0) and cal.depth_range == (0.3, 5.0)
    half = cal.resized(80, 48)
    assert half.fx == 50.0 and half.cx0 == pytest.approx((79.5 + 0.5) / 2 - 0.5)
    p.write_text(json.dumps({k: v for k, v in CAL.items() if k != "baseline_meters"}))
    with pytest.raises(InputFileError, match="baseline_meters"):
        read_stereo_calibration(p)
    p.write_text(json.dumps({**CAL, "depth_range": [5, 1]}))
    with pytest.raises(InputFileError, match="depth_range"):
        read_stereo_calibration(p)
    p.write_text("{not json")
    with pytest.raises(InputFileError, match="JSON"):
        read_stereo_calibration(p)


@pytest.mark.parametrize("disp", [8, 20])
def test_sgbm_recovers_the_metric_depth_of_a_plane(tmp_path: Path, disp: int) -> None:
    left, right = _pair(disp)
    p = tmp_path / "c.json"
    p.write_text(json.dumps(CAL))
    depth, valid, d = stereo_depth(left, right, read_stereo_calibration(p), SGBMParams())
    expected = 100.0 * 0.1 / disp
    assert valid.mean() > 0.5
    np.testing.assert_allclose(np.median(depth[valid]), expected, rtol=0.01)
    assert np.mean(np.abs(depth[valid] / expected - 1) < 0.05) > 0.95
    assert (depth[~valid] == 0).all()


def test_rectification_rect_and_depth_range_invalidate(tmp_path: Path) -> None:
    left, right = _pair(12)
    p = tmp_path / "c.json"
    p.write_text(json.dumps({**CAL, "left_image_rect_normalized": [0.0, 0.0, 0.75, 1.0]}))
    depth, valid, _ = stereo_depth(left, right, read_stereo_calibration(p))
    assert not valid[:, 120:].any() and valid[:, 40:110].mean() > 0.8
    p.write_text(json.dumps({**CAL, "depth_range": [1.0, 5.0]}))  # the plane is at 0.83 m: out of range
    depth, valid, _ = stereo_depth(left, right, read_stereo_calibration(p))
    assert not valid.any()


def test_loader_yields_grey_as_rgb_with_intrinsics(tmp_path: Path) -> None:
    left, right = _pair(10)
    _write_pair(tmp_path / "set", "plane", left, right)
    _write_pair(tmp_path / "set", "other", *_pair(16))
    assert "stereo_pairs" in LOADERS
    samples = list(load_dataset("stereo_pairs", tmp_path))
    assert [s.sample_id for s in samples] == ["set_other", "set_plane"]
    s = samples[1]
    assert s.image.shape == (96, 160, 3) and (s.image[..., 0] == s.image[..., 2]).all()
    assert (s.image[..., 0] == left).all()
    assert (s.source_kind, s.sensor, s.metric_scale_trusted) == ("captured", "stereo", True)
    assert (s.intrinsics.fx, s.intrinsics.cx, s.intrinsics.width) == (100.0, 79.5, 160)
    assert np.median(s.depth[s.valid]) == pytest.approx(1.0, rel=0.01)
    assert [s.sample_id for s in load_dataset("stereo_pairs", tmp_path, split="plane")] == ["set_plane"]


def test_loader_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no stereo-pair samples"):
        load_dataset("stereo_pairs", tmp_path)
    left, right = _pair(10)
    _write_pair(tmp_path, "x", left, right, {**CAL, "width": 100})  # 100x96 calibration for 160x96 images
    with pytest.raises(InputFileError, match="aspect differs"):
        list(load_dataset("stereo_pairs", tmp_path))
    _write_pair(tmp_path, "x", left, right)
    (tmp_path / "x_right.png").write_bytes(b"broken")
    with pytest.raises(InputFileError, match="x_right.png"):
        list(load_dataset("stereo_pairs", tmp_path))


def _package_pairs() -> Path | None:
    env = os.environ.get("METRICANYTHING_SIM2REAL_CACHE")
    root = Path(env) if env else Path(__file__).resolve().parents[1] / "runs" / "sim2real" / "data" / "cache"
    d = root / "stereodemo"
    return d if (d / "oak-d" / "stereodemo_calibration.json").is_file() else None


def test_real_oakd_pairs_from_the_stereodemo_package() -> None:
    root = _package_pairs()
    if root is None:
        pytest.skip("stereodemo pairs not fetched (scripts/sim2real/prepare_data.sh, or METRICANYTHING_SIM2REAL_CACHE)")
    samples = {s.scene_id.rsplit("/", 1)[-1]: s for s in load_dataset("stereo_pairs", root)}
    assert len(samples) == 12
    for s in samples.values():
        assert s.image.shape == (480, 640, 3) and s.intrinsics.fx == pytest.approx(451.0344543457031)
        assert 0.25 < s.valid.mean() < 0.8
        d = s.depth[s.valid]
        assert d.min() >= 1.0 and d.max() <= 5.0
    # a desk seen from about 2 m (calibrated baseline 7.5 cm)
    assert np.median(samples["desk"].depth[samples["desk"].valid]) == pytest.approx(2.0, rel=0.1)
