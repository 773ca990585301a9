"""MRPT rawlog RGB-D observations (metricanything.data.loaders.mrpt_rawlog), on tiny files written here."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from metricanything.data.loaders import LOADERS, load_dataset
from metricanything.data.loaders.mrpt_rawlog import read_rawlog_observations
from metricanything.errors import DatasetError, InputFileError

H, W = 3, 4


def _head(name: str, version: int) -> bytes:
    return bytes([0x80 | len(name)]) + name.encode() + bytes([version])


def _string(s: str) -> bytes:
    return struct.pack("<I", len(s)) + s.encode()


def _pose(t=(0.0, 0.0, 0.0)) -> bytes:
    return _head("mrpt::poses::CPose3D", 3) + struct.pack("<12d", *t, 1, 0, 0, 0, 1, 0, 0, 0, 1) + b"\x88"


def _camera(fx, fy, cx, cy, version: int = 4) -> bytes:
    body = struct.pack("<d", 0.0) + struct.pack("<8d", 0.1, -0.2, 0, 0, 0, 0, 0, 0) + struct.pack("<4d", fx, fy, cx, cy)
    body += struct.pack("<II", H, W)
    if version >= 5:
        body += _string("cam")
    if version >= 6:
        body += b"\x01"
    return _head("mrpt::img::TCamera", version) + body + b"\x88"


def _observation(range_mm: np.ndarray, bgr: np.ndarray, *, offset: float = 0.0, range_is_depth: bool = True,
                 n_points: int = 2, obs_class: str = "mrpt::obs::CObservation3DRangeScan") -> bytes:
    b = _head(obs_class, 9) + struct.pack("<f", 5.0) + _pose()
    b += b"\x01" + struct.pack("<I", n_points) + bytes(n_points * 16)  # 3D points, skipped by the reader
    b += b"\x01" + struct.pack("<f", 0.001) + struct.pack("<II", H, W) + range_mm.astype("<u2").tobytes()
    b += b"\x01" + _head("mrpt::img::CImage", 9) + b"\x00\x01" + struct.pack("<ii", -W, -H) + bgr.tobytes() + b"\x88"
    b += b"\x00"  # no confidence image
    b += _camera(570.0, 540.0, 1.5, 1.0) + _camera(520.0, 490.0, 1.6, 1.1, version=6) + _pose((offset, 0.0, 0.0))
    b += struct.pack("<f", 0.01) + struct.pack("<Q", 123456789) + _string("OPENNI2")
    b += b"\x00" + _string("") + b"\x00" + _string("")
    b += bytes([int(range_is_depth)]) + b"\x00" + b"\x00" + b"\x88"
    return b


@pytest.fixture
def frame() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    range_mm = rng.integers(500, 4000, (H, W)).astype(np.uint16)
    range_mm[0, 0] = 0  # invalid
    bgr = rng.integers(0, 256, (H, W, 3)).astype(np.uint8)
    return range_mm, bgr


def test_reads_depth_image_and_intrinsics(tmp_path: Path, frame) -> None:
    range_mm, bgr = frame
    p = tmp_path / "one.rawlog"
    p.write_bytes(gzip.compress(_observation(range_mm, bgr) + _observation(range_mm[::-1].copy(), bgr)))
    assert "mrpt_rawlog" in LOADERS
    samples = list(load_dataset("mrpt_rawlog", p))
    assert [s.sample_id for s in samples] == ["one_0000", "one_0001"]
    s = samples[0]
    np.testing.assert_allclose(s.depth[s.valid], range_mm[range_mm > 0] * np.float32(0.001), rtol=1e-6)
    assert not s.valid[0, 0] and s.depth[0, 0] == 0 and s.valid.sum() == H * W - 1
    assert (s.image == bgr[..., ::-1]).all()  # stored BGR -> RGB
    K = s.intrinsics
    assert (K.fx, K.fy, K.cx, K.cy, K.width, K.height) == (520.0, 490.0, 1.6, 1.1, W, H)
    assert (s.source_kind, s.sensor, s.metric_scale_trusted) == ("captured", "rgbd", True)
    assert s.meta["sensor_label"] == "OPENNI2" and s.meta["camera_depth"]["fx"] == 570.0
    assert s.meta["camera_depth"]["dist"][:2] == [0.1, -0.2]


def test_range_along_the_ray_becomes_z_depth(tmp_path: Path, frame) -> None:
    range_mm, bgr = frame
    p = tmp_path / "r.rawlog"
    p.write_bytes(_observation(range_mm, bgr, range_is_depth=False))  # uncompressed works too
    s = next(iter(load_dataset("mrpt_rawlog", p)))
    u = (np.arange(W) - 1.5) / 570.0
    v = (np.arange(H) - 1.0) / 540.0
    expect = range_mm * 0.001 / np.sqrt(1 + u[None, :] ** 2 + v[:, None] ** 2)
    np.testing.assert_allclose(s.depth[s.valid], expect[range_mm > 0], rtol=1e-5)


def test_errors_name_file_and_problem(tmp_path: Path, frame) -> None:
    range_mm, bgr = frame
    data = _observation(range_mm, bgr)
    p = tmp_path / "cut.rawlog"
    p.write_bytes(data[:-40])
    with pytest.raises(InputFileError, match="cut.rawlog.*truncated"):
        read_rawlog_observations(p)
    p = tmp_path / "other.rawlog"
    p.write_bytes(_observation(range_mm, bgr, obs_class="mrpt::obs::CSensoryFrame"))
    with pytest.raises(InputFileError, match="CSensoryFrame not supported"):
        read_rawlog_observations(p)
    p = tmp_path / "unreg.rawlog"
    p.write_bytes(_observation(range_mm, bgr, offset=0.025))
    with pytest.raises(InputFileError, match="not registered.*2.5 cm"):
        list(load_dataset("mrpt_rawlog", p))
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("mrpt_rawlog", tmp_path / "nothing.rawlog")


def test_folder_keeps_only_rgbd_rawlogs(tmp_path: Path, frame) -> None:
    range_mm, bgr = frame
    (tmp_path / "a.rawlog").write_bytes(gzip.compress(_observation(range_mm, bgr)))
    (tmp_path / "b.rawlog").write_bytes(gzip.compress(_observation(range_mm, bgr, obs_class="mrpt::obs::CSensoryFrame")))
    assert [s.sample_id for s in load_dataset("mrpt_rawlog", tmp_path)] == ["a_0000"]
    (tmp_path / "a.rawlog").unlink()
    with pytest.raises(DatasetError, match="no MRPT rawlog samples"):
        load_dataset("mrpt_rawlog", tmp_path)


def test_real_frame_from_debian_mrpt_common() -> None:
    env = os.environ.get("METRICANYTHING_SIM2REAL_CACHE")
    root = Path(env) if env else Path(__file__).resolve().parents[1] / "runs" / "sim2real" / "data" / "cache"
    p = root / "mrpt" / "tests_rgbd.rawlog"
    if not p.is_file():
        pytest.skip("mrpt-common frame not fetched (scripts/sim2real/prepare_data.sh, or METRICANYTHING_SIM2REAL_CACHE)")
    (s,) = list(load_dataset("mrpt_rawlog", p))
    assert s.image.shape == (480, 640, 3) and s.meta["sensor_label"] == "OPENNI2"
    assert s.valid.mean() == pytest.approx(0.889, abs=0.002)
    assert np.median(s.depth[s.valid]) == pytest.approx(2.028, abs=0.002)
    assert s.intrinsics.fx == pytest.approx(521.18, abs=0.01) and s.intrinsics.fy == pytest.approx(493.03, abs=0.01)
    # the colour image is a real, well-exposed frame (a bookshelf against a bright wall)
    assert 80 < s.image.mean() < 200 and s.image.std() > 30
