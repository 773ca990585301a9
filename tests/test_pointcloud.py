"""Point clouds: flying-pixel mask, depth -> points, PLY round trips, GLB export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metricanything import pointcloud
from metricanything.camera import Intrinsics, project
from metricanything.errors import InputFileError, InvalidInputError


def _step_scene() -> tuple[np.ndarray, np.ndarray]:
    depth = np.full((8, 10), 4.0, dtype=np.float32)
    depth[:, :5] = 2.0  # a vertical step between columns 4 and 5
    return depth, np.ones_like(depth, dtype=bool)


def test_edge_mask_flags_both_sides_of_a_step_only() -> None:
    depth, valid = _step_scene()
    edge = pointcloud.depth_edge_mask(depth, valid)
    expected = np.zeros_like(valid)
    expected[:, 4:6] = True
    assert np.array_equal(edge, expected)
    grown = pointcloud.depth_edge_mask(depth, valid, dilate=1)
    expected[:, 3:7] = True
    assert np.array_equal(grown, expected)


def test_edge_mask_threshold_is_relative_and_ignores_invalid() -> None:
    depth = np.array([[1.0, 1.04, 1.10]], dtype=np.float32)
    valid = np.ones_like(depth, dtype=bool)
    # 1.0 -> 1.04 is a 4% jump (kept), 1.04 -> 1.10 is 5.8% (> 5%: both flagged)
    assert pointcloud.depth_edge_mask(depth, valid).tolist() == [[False, True, True]]
    assert pointcloud.depth_edge_mask(depth * 100, valid).tolist() == [[False, True, True]]  # scale-free
    assert pointcloud.depth_edge_mask(depth, valid, threshold=0.1).tolist() == [[False, False, False]]
    holes = np.array([[True, False, True]])
    assert pointcloud.depth_edge_mask(np.array([[1.0, 0.0, 5.0]]), holes).tolist() == [[False, False, False]]
    diag = np.array([[1.0, 1.0], [1.0, 3.0]], dtype=np.float32)  # diagonal neighbours count
    assert pointcloud.depth_edge_mask(diag, np.ones((2, 2), bool)).tolist() == [[True, True], [True, True]]
    with pytest.raises(InvalidInputError, match="same H x W"):
        pointcloud.depth_edge_mask(depth, valid[:, :2])


def test_edge_mask_on_a_steep_plane() -> None:
    """A plane n.X = c with n = (0, -3, 1) (normal 71.6 degrees off the optical axis) at f = 100 px changes depth
    by tan(71.6)/f = 3% per pixel near the principal point: kept. Towards the bottom it nears grazing
    incidence and the per-pixel jump passes 5%: flagged, as a real sensor's depth there is unreliable."""
    K = Intrinsics.from_focal(100.0, 64, 48)
    v = np.arange(48, dtype=np.float64)[:, None]
    depth = (2.0 / (1.0 - 3.0 * (v - K.cy) / K.fy)) * np.ones((1, 64))
    edge = pointcloud.depth_edge_mask(depth.astype(np.float32), np.ones((48, 64), bool))
    rel_step = 3.0 / K.fy / (1.0 - 3.0 * (v[:, 0] + 1 - K.cy) / K.fy)  # jump from row v to row v+1
    assert not edge[rel_step < 0.045].any()
    assert edge[1:][rel_step[:-1] > 0.055].all()


def test_depth_to_point_cloud_drops_edges_and_keeps_colours() -> None:
    depth, valid = _step_scene()
    valid[0, 0] = False
    image = np.random.default_rng(0).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    K = Intrinsics(10.0, 12.0, 4.5, 3.5, 10, 8)
    pts, colors = pointcloud.depth_to_point_cloud(depth, valid, K, image)
    keep = valid.copy()
    keep[:, 4:6] = False
    assert pts.dtype == np.float32 and len(pts) == keep.sum() == 8 * 8 - 1
    assert np.array_equal(colors, image[keep])
    uv, z = project(pts, K)  # each point goes back to its own pixel with its depth
    rows, cols = np.nonzero(keep)
    np.testing.assert_allclose(uv, np.stack([cols, rows], axis=1), atol=1e-4)
    np.testing.assert_allclose(z, depth[keep])
    all_pts, none_colors = pointcloud.depth_to_point_cloud(depth, valid, K, drop_edges=False)
    assert len(all_pts) == valid.sum() and none_colors is None
    with pytest.raises(InvalidInputError, match="H x W x 3"):
        pointcloud.depth_to_point_cloud(depth, valid, K, image[:4])


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 300), seed=st.integers(0, 2**31 - 1), with_colors=st.booleans())
def test_ply_round_trip_is_exact(tmp_path: Path, n: int, seed: int, with_colors: bool) -> None:
    rng = np.random.default_rng(seed)
    pts = rng.normal(0, 10, (n, 3)).astype(np.float32)
    colors = rng.integers(0, 256, (n, 3), dtype=np.uint8) if with_colors else None
    path = tmp_path / "c.ply"
    pointcloud.write_ply(path, pts, colors)
    back, back_colors = pointcloud.read_ply(path)
    assert np.array_equal(back, pts)
    assert (back_colors is None) if colors is None else np.array_equal(back_colors, colors)


def test_ply_layout_and_foreign_files(tmp_path: Path) -> None:
    pts = np.array([[1.0, -2.0, 3.5]], dtype=np.float32)
    pointcloud.write_ply(tmp_path / "a.ply", pts, np.array([[10, 20, 30]], np.uint8))
    raw = (tmp_path / "a.ply").read_bytes()
    header, body = raw.split(b"end_header\n")
    assert b"format binary_little_endian 1.0" in header and b"property uchar red" in header
    assert body == pts.astype("<f4").tobytes() + bytes([10, 20, 30])
    ascii_ply = (
        "ply\nformat ascii 1.0\nelement vertex 2\nproperty double x\nproperty double y\nproperty double z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty float nx\n"
        "element face 1\nproperty list uchar int vertex_indices\nend_header\n"
        "0 1 2 255 0 0 0.5\n3 4 5 0 255 0 0.5\n3 0 1 1\n"
    )
    (tmp_path / "ascii.ply").write_text(ascii_ply)
    p, c = pointcloud.read_ply(tmp_path / "ascii.ply")
    assert p.tolist() == [[0, 1, 2], [3, 4, 5]] and c.tolist() == [[255, 0, 0], [0, 255, 0]]
    big = b"ply\nformat binary_big_endian 1.0\nelement vertex 1\nproperty float x\nproperty float y\n"
    big += b"property float z\nend_header\n" + np.array([1, 2, 3], ">f4").tobytes()
    (tmp_path / "big.ply").write_bytes(big)
    p, c = pointcloud.read_ply(tmp_path / "big.ply")
    assert p.tolist() == [[1, 2, 3]] and c is None


def test_bad_ply_files(tmp_path: Path) -> None:
    pointcloud.write_ply(tmp_path / "a.ply", np.ones((5, 3), np.float32))
    raw = (tmp_path / "a.ply").read_bytes()
    (tmp_path / "trunc.ply").write_bytes(raw[:-10])
    with pytest.raises(InputFileError, match="truncated PLY") as exc:
        pointcloud.read_ply(tmp_path / "trunc.ply")
    assert "trunc.ply" in str(exc.value)
    (tmp_path / "nomagic.ply").write_bytes(b"hello")
    with pytest.raises(InputFileError, match="magic"):
        pointcloud.read_ply(tmp_path / "nomagic.ply")
    (tmp_path / "nohdr.ply").write_bytes(b"ply\nformat ascii 1.0\n")
    with pytest.raises(InputFileError, match="end_header"):
        pointcloud.read_ply(tmp_path / "nohdr.ply")
    with pytest.raises(InputFileError, match="does not exist"):
        pointcloud.read_ply(tmp_path / "missing.ply")
    with pytest.raises(InvalidInputError, match="N x 3"):
        pointcloud.write_ply(tmp_path / "b.ply", np.ones((4, 2)))
    with pytest.raises(InvalidInputError, match="not finite"):
        pointcloud.write_ply(tmp_path / "b.ply", np.array([[np.nan, 0, 1]]))
    with pytest.raises(InvalidInputError, match="uint8"):
        pointcloud.write_ply(tmp_path / "b.ply", np.ones((1, 3)), np.ones((1, 3)))
    assert not (tmp_path / "b.ply").exists()


def test_glb_export_reads_back_with_trimesh(tmp_path: Path) -> None:
    trimesh = pytest.importorskip("trimesh")
    pts = np.array([[0.0, 0.5, 2.0], [1.0, -1.0, 3.0], [-0.5, 0.25, 4.0]], dtype=np.float32)
    colors = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)
    pointcloud.write_glb(tmp_path / "c.glb", pts, colors)
    scene = trimesh.load(tmp_path / "c.glb")
    (cloud,) = scene.geometry.values()
    np.testing.assert_allclose(cloud.vertices, pts * np.array([1, -1, -1]), atol=1e-6)  # OpenCV -> glTF axes
    assert np.array_equal(np.asarray(cloud.colors)[:, :3], colors)
    pointcloud.write_glb(tmp_path / "raw.glb", pts, None, opencv_to_gl=False)
    (raw,) = trimesh.load(tmp_path / "raw.glb").geometry.values()
    np.testing.assert_allclose(raw.vertices, pts, atol=1e-6)
    with pytest.raises(InvalidInputError, match="empty"):
        pointcloud.write_glb(tmp_path / "e.glb", np.zeros((0, 3), np.float32))
