"""Multi-view fusion against the renderer's analytic geometry."""

from __future__ import annotations

import numpy as np
import pytest

from metricanything.camera import Intrinsics
from metricanything.errors import InvalidInputError
from metricanything.tasks.fuse import fuse_views, voxel_downsample


def _views():
    from metricanything.data.render import render_views_with_scene

    return render_views_with_scene(seed=7, n_views=3, size=(96, 72), family="indoor")


def test_fused_cloud_lies_on_the_analytic_surfaces():
    views, scene = _views()
    fused = fuse_views(
        [v.depth for v in views], [v.valid for v in views], [v.intrinsics for v in views],
        [v.pose for v in views], [v.image for v in views], voxel_size=0.02,
    )
    assert len(fused.points) > 1000
    assert all(n > 0 for n in fused.points_per_view)
    # distance to the surface relative to each point's depth in the first camera's frame
    dist = scene.distance_to_surface(fused.points)
    cams = np.stack([v.pose[:3, 3] for v in views])
    rng = np.linalg.norm(fused.points[:, None, :] - cams[None], axis=2).min(axis=1)
    assert np.median(dist / rng) <= 0.02
    # voxel downsampling really merged points
    assert len(fused.points) < sum(fused.points_per_view)


def test_wrong_pose_is_detected_by_the_geometry_check():
    views, scene = _views()
    bad_pose = views[1].pose.copy()
    bad_pose[:3, 3] += np.array([0.5, 0.0, 0.3])
    fused = fuse_views([views[1].depth], [views[1].valid], [views[1].intrinsics], [bad_pose], voxel_size=None)
    good = fuse_views([views[1].depth], [views[1].valid], [views[1].intrinsics], [views[1].pose], voxel_size=None)
    assert np.median(scene.distance_to_surface(fused.points)) > 5 * np.median(scene.distance_to_surface(good.points))


def test_voxel_downsample_averages_points_and_colours():
    pts = np.array([[0.01, 0.01, 0.01], [0.03, 0.03, 0.03], [1.05, 0.0, 0.0]])
    cols = np.array([[0, 0, 0], [100, 200, 50], [7, 7, 7]], dtype=np.uint8)
    p, c = voxel_downsample(pts, cols, 0.1)
    order = np.argsort(p[:, 0])
    np.testing.assert_allclose(p[order], [[0.02, 0.02, 0.02], [1.05, 0.0, 0.0]], atol=1e-6)
    np.testing.assert_array_equal(c[order], [[50, 100, 25], [7, 7, 7]])
    with pytest.raises(InvalidInputError):
        voxel_downsample(pts, cols, 0.0)


def test_free_space_check_removes_floaters():
    K = Intrinsics.from_focal(50.0, 32, 32)
    wall = np.full((32, 32), 4.0, dtype=np.float32)
    valid = np.ones_like(wall, dtype=bool)
    floater = wall.copy()
    floater[10:12, 10:12] = 1.0  # view 1 claims something at 1 m where view 0 sees the wall at 4 m
    eye = np.eye(4)
    fused = fuse_views([wall, floater], [valid, valid], [K, K], [eye, eye], drop_edges=False, free_space_tol=0.05)
    assert fused.points_per_view == [32 * 32, 32 * 32 - 4]


def test_cli_fuse_on_rendered_folder(tmp_path):
    from metricanything.cli import main
    from metricanything.data.folder import write_sample
    from metricanything.pointcloud import read_ply

    views, scene = _views()
    for v in views:
        write_sample(tmp_path / "views", v)
    out = tmp_path / "cloud.ply"
    assert main(["fuse", "--data", str(tmp_path / "views"), "--depth-source", "gt", "--out", str(out)]) == 0
    pts, cols = read_ply(out)
    assert cols is not None and len(pts) > 1000
    assert np.median(scene.distance_to_surface(pts)) < 0.02
