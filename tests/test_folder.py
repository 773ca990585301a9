"""Folder format: exact round trips, deterministic bytes, hand-written samples and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metricanything.camera import Intrinsics
from metricanything.data.folder import FolderDataset, read_sample, write_index, write_sample
from metricanything.data.sample import RGBDSample
from metricanything.errors import DatasetError, InputFileError, InvalidInputError


def make_sample(seed: int = 0, h: int = 24, w: int = 32, sid: str = "s0", **kw) -> RGBDSample:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 200 // max(w, 1), yy * 200 // max(h, 1), np.full_like(xx, 120)], axis=-1)
    image = (base + rng.integers(0, 8, (h, w, 3))).astype(np.uint8)  # smooth: JPEG keeps it close
    depth = rng.uniform(0.3, 40.0, (h, w)).astype(np.float32)
    valid = rng.random((h, w)) > 0.3
    depth[~valid] = 0
    K = Intrinsics(40.0 + seed, 41.5, w / 2 - 0.25, h / 2 + 0.5, w, h)
    fields = dict(
        source_kind="reconstructed", sensor="sfm", metric_scale_trusted=False, camera_id="cam7", scene_id="sc1",
        dataset="unit", sample_id=sid, pose=np.eye(4) * 2 - np.diag([1, 1, 1, 1.0]) + 0.1, meta={"true_scale": 0.4},
    )
    fields.update(kw)
    return RGBDSample(image, depth, valid, K, **fields)


def assert_same(a: RGBDSample, b: RGBDSample) -> None:
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.valid, b.valid)
    assert np.array_equal(a.depth[a.valid], b.depth[b.valid])
    assert a.intrinsics == b.intrinsics
    for f in ("source_kind", "sensor", "metric_scale_trusted", "camera_id", "scene_id", "dataset", "sample_id", "meta"):
        assert getattr(a, f) == getattr(b, f), f
    assert (a.pose is None and b.pose is None) or np.array_equal(a.pose, b.pose)


def test_roundtrip_npy_png_is_exact(tmp_path: Path) -> None:
    s = make_sample()
    d = write_sample(tmp_path, s)
    assert d == tmp_path / "s0"
    assert sorted(p.name for p in d.iterdir()) == ["depth.npy", "image.png", "meta.json", "valid.png"]
    r = read_sample(d)
    assert_same(s, r)
    assert r.depth.dtype == np.float32 and (r.depth[~r.valid] == 0).all()
    meta = json.loads((d / "meta.json").read_text())
    assert meta["format_version"] == 1 and meta["intrinsics"]["fx"] == 40.0


def test_depth_png_and_jpeg_variants(tmp_path: Path) -> None:
    s = make_sample(1)
    d = write_sample(tmp_path, s, image_format="jpg", depth_format="png", depth_png_scale=1000.0)
    names = sorted(p.name for p in d.iterdir())
    assert names == ["depth.png", "image.jpg", "meta.json", "valid.png"]
    r = read_sample(d)
    assert np.array_equal(r.valid, s.valid)
    assert np.abs(r.depth[r.valid] - s.depth[s.valid]).max() <= 0.0005 + 1e-6  # 1 mm quantisation
    err = np.abs(r.image.astype(int) - s.image.astype(int))
    assert err.mean() < 6  # lossy but the same picture, channels in RGB order
    assert np.abs(r.image[..., 2].astype(int) - 124).mean() < 8
    # rewriting as npy/png removes the stale variants
    write_sample(tmp_path, s)
    assert sorted(p.name for p in d.iterdir()) == ["depth.npy", "image.png", "meta.json", "valid.png"]


def test_depth_png_refuses_values_that_do_not_fit(tmp_path: Path) -> None:
    s = make_sample(2)
    with pytest.raises(InvalidInputError, match="16-bit"):
        write_sample(tmp_path, s, depth_format="png", depth_png_scale=10000.0)  # 40 m * 1e4 > 65535


def test_writes_are_deterministic(tmp_path: Path) -> None:
    s = make_sample(3)
    a = write_sample(tmp_path / "a", s)
    b = write_sample(tmp_path / "b", s)
    for name in ("image.png", "depth.npy", "valid.png", "meta.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert not [p for p in a.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_hand_written_sample_minimal_meta(tmp_path: Path) -> None:
    d = tmp_path / "mine"
    d.mkdir()
    img = np.zeros((4, 5, 3), np.uint8)
    img[..., 0] = 200  # red in RGB
    cv2.imwrite(str(d / "image.png"), img[..., ::-1])
    depth = np.array([[1, 2, np.nan, np.inf, 0]] * 4, dtype=np.float64)
    np.save(d / "depth.npy", depth[..., None])  # H x W x 1 float64 is accepted
    (d / "meta.json").write_text(json.dumps({"intrinsics": {"fx": 5, "fy": 5, "cx": 2, "cy": 1.5, "width": 5, "height": 4}}))
    s = read_sample(d)
    assert s.sample_id == "mine" and s.source_kind == "rendered" and s.metric_scale_trusted
    assert s.image[0, 0].tolist() == [200, 0, 0]
    assert s.valid[0].tolist() == [True, True, False, False, False]
    assert s.depth[0, :2].tolist() == [1.0, 2.0] and (s.depth[~s.valid] == 0).all()


def test_valid_png_restricts_mask(tmp_path: Path) -> None:
    d = write_sample(tmp_path, make_sample(4))
    mask = np.zeros((24, 32), np.uint8)
    mask[:, :10] = 255
    cv2.imwrite(str(d / "valid.png"), mask)
    s = read_sample(d)
    assert not s.valid[:, 10:].any()


@pytest.mark.parametrize(
    "victim, content, match",
    [
        ("image.png", b"not a png", "image.png: not a readable"),
        ("depth.npy", b"\x93NUMPY garbage", "depth.npy: not a readable"),
        ("valid.png", b"", "valid.png: not a readable"),
        ("meta.json", b"{broken", "meta.json: not valid JSON"),
    ],
)
def test_corrupt_parts_name_the_file(tmp_path: Path, victim: str, content: bytes, match: str) -> None:
    d = write_sample(tmp_path, make_sample(5))
    (d / victim).write_bytes(content)
    with pytest.raises(InputFileError, match=match) as info:
        read_sample(d)
    assert info.value.path.endswith(victim)


def test_missing_parts_and_bad_meta(tmp_path: Path) -> None:
    d = write_sample(tmp_path, make_sample(6))
    (d / "depth.npy").unlink()
    with pytest.raises(InputFileError, match="depth.npy: file is missing"):
        read_sample(d)
    d = write_sample(tmp_path, make_sample(6))
    meta = json.loads((d / "meta.json").read_text())
    meta["format_version"] = 99
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(InputFileError, match="newer than supported"):
        read_sample(d)
    meta["format_version"] = 1
    meta["intrinsics"]["width"] = 99
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(InputFileError, match="meta.json: inconsistent sample"):
        read_sample(d)
    del meta["intrinsics"]
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(InputFileError, match="intrinsics"):
        read_sample(d)
    with pytest.raises(InputFileError, match="does not exist"):
        read_sample(tmp_path / "nope")


def test_bad_sample_ids_are_refused(tmp_path: Path) -> None:
    for sid in ("", "a/b", "..", ".hidden"):
        with pytest.raises(InvalidInputError, match="sample_id"):
            write_sample(tmp_path, make_sample(sid=sid))


def test_folder_dataset_scan_index_and_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        FolderDataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no samples"):
        FolderDataset(tmp_path / "empty")
    root = tmp_path / "ds"
    for i in (2, 0, 1):
        write_sample(root, make_sample(i, sid=f"id{i}"))
    (root / "unfinished").mkdir()  # no meta.json: not a sample
    ds = FolderDataset(root)
    assert ds.sample_ids == ["id0", "id1", "id2"] and len(ds) == 3
    assert ds[1].intrinsics.fx == 41.0
    assert [s.sample_id for s in ds] == ["id0", "id1", "id2"]
    write_index(root, ["id2", "id0"])
    assert [s.sample_id for s in FolderDataset(root)] == ["id2", "id0"]
    write_index(root)
    assert FolderDataset(root).sample_ids == ["id0", "id1", "id2"]
    (root / "index.json").write_text("[1, 2]")
    with pytest.raises(DatasetError, match="index.json: malformed"):
        FolderDataset(root)


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 12), w=st.integers(1, 12), seed=st.integers(0, 2**31 - 1), fmt=st.sampled_from(["npy", "png"]))
def test_roundtrip_property(tmp_path_factory, h: int, w: int, seed: int, fmt: str) -> None:
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.001, 60.0, (h, w)).astype(np.float32)
    valid = rng.random((h, w)) > 0.5
    depth[~valid] = 0
    s = RGBDSample(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), depth, valid, Intrinsics.from_focal(10, w, h), sample_id="p")
    root = tmp_path_factory.mktemp("prop")
    r = read_sample(write_sample(root, s, depth_format=fmt))
    assert np.array_equal(r.image, s.image) and np.array_equal(r.valid, s.valid)
    tol = 0.0005 + 1e-5 if fmt == "png" else 0.0
    assert np.abs(r.depth - s.depth).max(initial=0) <= tol
