"""The procedural renderer: determinism, exact z-depth, camera diversity, scene families."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metricanything.camera import Intrinsics, transform_points, unproject
from metricanything.data.render import (
    Scene,
    look_at_pose,
    make_scene,
    render_sample,
    render_scene_sample,
    render_view,
    render_views_with_scene,
    sample_camera,
)
from metricanything.errors import InvalidInputError


def _material_rows(n: int) -> np.ndarray:
    m = np.zeros((n, 14))
    m[:, 0:3] = 0.6
    m[:, 7] = 1.0
    return m


def _world_points(sample) -> np.ndarray:
    pts = unproject(sample.depth.astype(np.float64), sample.intrinsics)[sample.valid]
    return transform_points(pts, sample.pose)


def test_same_seed_gives_identical_bytes_and_different_seeds_differ():
    a = render_sample(11, size=(48, 40))
    b = render_sample(11, size=(48, 40))
    c = render_sample(12, size=(48, 40))
    assert a.image.tobytes() == b.image.tobytes()
    assert a.depth.tobytes() == b.depth.tobytes()
    assert a.valid.tobytes() == b.valid.tobytes()
    assert a.meta == b.meta and a.intrinsics == b.intrinsics and np.array_equal(a.pose, b.pose)
    assert a.depth.tobytes() != c.depth.tobytes()
    assert a.source_kind == "rendered" and a.sensor == "synthetic" and a.metric_scale_trusted
    assert a.scene_id and a.camera_id and a.sample_id


def test_fronto_parallel_wall_gives_exact_depth():
    # wall at x = 3.25 facing -x; camera at the origin looking along +x
    scene = Scene("test", planes=[[3.25, 0, 0, -1, 0, 0]], spheres=[], boxes=[], cylinders=[],
                  materials=_material_rows(1))
    pose = look_at_pose(np.zeros(3), np.array([1.0, 0.0, 0.0]))
    K = Intrinsics(40.0, 41.0, 15.3, 11.7, 32, 24)
    _, depth, valid = render_view(scene, K, pose)
    assert valid.all()
    np.testing.assert_allclose(depth, 3.25, rtol=1e-6)


@settings(max_examples=15, deadline=None)
@given(
    dist=st.floats(0.5, 40.0),
    yaw=st.floats(-0.6, 0.6),
    pitch=st.floats(-0.5, 0.5),
    fov=st.floats(25.0, 100.0),
)
def test_tilted_plane_depth_matches_the_analytic_plane(dist, yaw, pitch, fov):
    normal = np.array([-math.cos(pitch) * math.cos(yaw), -math.cos(pitch) * math.sin(yaw), -math.sin(pitch)])
    point = np.array([dist, 0.0, 0.0])
    scene = Scene("test", planes=[[*point, *normal]], spheres=[], boxes=[], cylinders=[], materials=_material_rows(1))
    eye = np.array([0.0, 0.0, 0.0])
    pose = look_at_pose(eye, np.array([1.0, 0.1, 0.05]), roll=0.1)
    K = Intrinsics.from_fov(fov, 24, 18)
    _, depth, valid = render_view(scene, K, pose)
    assert valid.any()
    # analytic: z = ((p0 - o).n) / (d.n) with d = R (x, y, 1)
    u, v = np.meshgrid(np.arange(24.0), np.arange(18.0))
    d_cam = np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones_like(u)], -1)
    d_world = d_cam @ pose[:3, :3].T
    with np.errstate(divide="ignore", invalid="ignore"):
        z = ((point - eye) @ normal) / (d_world @ normal)
    expect_valid = np.isfinite(z) & (z > 1e-3)
    np.testing.assert_array_equal(valid, expect_valid)
    # float32 ray casting: the relative error grows as the ray grazes the plane (1 / |cos| of the incidence)
    cos_incidence = np.abs(d_world @ normal) / np.linalg.norm(d_world, axis=-1)
    rtol = 2e-5 + 2e-6 / np.maximum(cos_incidence, 1e-6)
    assert np.all(np.abs(depth[valid] - z[valid]) <= rtol[valid] * np.abs(z[valid]))


@pytest.mark.parametrize("family,seed", [("indoor", 3), ("outdoor", 4)])
def test_rendered_points_lie_on_the_analytic_surfaces(family, seed):
    sample, scene = render_scene_sample(seed, family, (64, 48))
    pts = _world_points(sample)
    dist = scene.distance_to_surface(pts)
    rel = dist / sample.depth[sample.valid]
    assert np.quantile(rel, 0.999) < 1e-4
    # and ray_depth agrees with the depth map pixel by pixel
    K, R, eye = sample.intrinsics, sample.pose[:3, :3], sample.pose[:3, 3]
    u, v = np.meshgrid(np.arange(K.width, dtype=float), np.arange(K.height, dtype=float))
    d = np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones_like(u)], -1).reshape(-1, 3) @ R.T
    t = scene.ray_depth(eye[None], d).reshape(K.height, K.width)
    np.testing.assert_array_equal(np.isfinite(t), sample.valid)
    np.testing.assert_allclose(t[sample.valid], sample.depth[sample.valid], rtol=1e-4)


def test_at_least_9900_distinct_intrinsics_in_10000_cameras():
    rng = np.random.default_rng(0)
    free = {tuple(sample_camera(rng).to_dict().values()) for _ in range(10_000)}
    assert len(free) >= 9_900
    fixed = {tuple(sample_camera(rng, (64, 48)).to_dict().values()) for _ in range(10_000)}
    assert len(fixed) >= 9_900
    # the spread: wide to tele, varied sizes and aspects, principal point jitter
    cams = [sample_camera(rng) for _ in range(2000)]
    fovs = np.array([c.fov_x for c in cams])
    assert fovs.min() < 30 and fovs.max() > 95 and fovs.min() >= 25 - 1e-6 and fovs.max() <= 100 + 1e-6
    aspects = np.array([c.width / c.height for c in cams])
    assert aspects.min() < 0.8 and aspects.max() > 1.9
    assert len({c.size for c in cams}) > 500
    off = np.array([(c.cx - (c.width - 1) / 2) / c.width for c in cams])
    assert off.std() > 0.015 and np.abs(off).max() <= 0.04 + 1e-9
    assert all(abs(c.fy / c.fx - 1) <= 0.015 + 1e-12 for c in cams)


def test_indoor_depth_stays_within_half_a_metre_to_ten_metres():
    for seed in range(8):
        s = render_sample(seed, "indoor", (40, 30) if seed % 2 else (24, 36))
        assert s.valid.all()
        d = s.depth[s.valid]
        assert d.min() >= 0.5 and d.max() <= 10.0, (seed, d.min(), d.max())


def test_outdoor_sky_is_invalid_and_sky_coloured():
    seen_sky = 0
    for seed in range(6):
        s, scene = render_scene_sample(seed, "outdoor", (48, 36))
        d = s.depth[s.valid]
        assert d.max() <= 80.0 and d.min() >= 0.5
        assert np.all(s.depth[~s.valid] == 0)
        if (~s.valid).any():
            seen_sky += 1
            K, R = s.intrinsics, s.pose[:3, :3]
            v, u = np.nonzero(~s.valid)
            dirs = np.stack([(u - K.cx) / K.fx, (v - K.cy) / K.fy, np.ones(len(u))], -1) @ R.T
            assert np.all(dirs[:, 2] > 0)  # sky is above the horizon
            assert np.all(np.isinf(scene.ray_depth(s.pose[:3, 3][None], dirs)))
            sky = s.image[~s.valid].astype(int)
            assert np.all(sky[:, 2] > sky[:, 0])  # bluish gradient
    assert seen_sky >= 2


def test_views_share_scene_and_camera_and_overlap():
    views, scene = render_views_with_scene(5, 3, (48, 36), family="indoor")
    assert len({v.scene_id for v in views}) == 1
    assert all(v.intrinsics == views[0].intrinsics for v in views)
    assert not np.allclose(views[0].pose, views[1].pose)
    for v in views:
        assert np.median(scene.distance_to_surface(_world_points(v))) < 1e-4
    # points of view 0 project into view 1 at the depth view 1 sees there (where not occluded)
    pts = _world_points(views[0])
    T = np.linalg.inv(views[1].pose)
    cam = transform_points(pts, T)
    K = views[1].intrinsics
    u = np.floor(K.fx * cam[:, 0] / cam[:, 2] + K.cx + 0.5).astype(int)
    v = np.floor(K.fy * cam[:, 1] / cam[:, 2] + K.cy + 0.5).astype(int)
    inside = (cam[:, 2] > 0) & (u >= 0) & (u < K.width) & (v >= 0) & (v < K.height)
    assert inside.mean() > 0.2
    z1 = views[1].depth[v[inside], u[inside]]
    agree = np.abs(z1 - cam[inside, 2]) < 0.05 * cam[inside, 2]
    assert agree.mean() > 0.5


def test_bad_inputs_raise():
    with pytest.raises(InvalidInputError):
        make_scene("underwater", 0)
    with pytest.raises(InvalidInputError):
        render_sample(-1)
    with pytest.raises(InvalidInputError):
        render_views_with_scene(0, 0)
    with pytest.raises(InvalidInputError):
        Scene("bad", planes=[[0, 0, 0, 0, 0, 1]], spheres=[], boxes=[], cylinders=[], materials=np.zeros((2, 14)))


@settings(max_examples=15, deadline=None)
@given(lo=st.floats(10.0, 120.0), width=st.floats(0.0, 40.0), seed=st.integers(0, 2**31))
def test_fov_range_bounds_the_camera_and_keeps_the_rng_stream(lo, width, seed):
    """A FoV range restricts the horizontal FoV and consumes the generator exactly like the default range."""
    hi = min(lo + width, 170.0)
    rng_a, rng_b = np.random.default_rng(seed), np.random.default_rng(seed)
    K = sample_camera(rng_a, fov_deg=(lo, hi))
    K0 = sample_camera(rng_b)
    fov = 2 * math.degrees(math.atan(K.width / (2 * K.fx)))
    assert lo - 1e-6 <= fov <= hi + 1e-6
    assert (K.width, K.height, K.cx, K.cy) == (K0.width, K0.height, K0.cx, K0.cy)
    assert rng_a.uniform() == rng_b.uniform()  # same number of draws


def test_a_camera_rig_renders_the_same_scene_with_its_own_fov():
    from metricanything.data.mixture import MixedRenderDataset

    wide = render_sample(11, size=(64, 48))
    rig = render_sample(11, size=(64, 48), fov_deg=(60.0, 60.0))
    assert rig.scene_id == wide.scene_id and np.array_equal(rig.pose, wide.pose)
    assert rig.intrinsics.fx == pytest.approx(64 / (2 * math.tan(math.radians(30.0))))
    ds = MixedRenderDataset(4, seed=2, size=(32, 24), sources="rendered,stereo", fov_deg=[50, 70])
    for s in ds:
        assert 50 - 1e-6 <= math.degrees(2 * math.atan(32 / (2 * s.intrinsics.fx))) <= 70 + 1e-6
    with pytest.raises(InvalidInputError):
        render_sample(1, size=(32, 24), fov_deg=(70.0, 50.0))
    with pytest.raises(InvalidInputError):
        MixedRenderDataset(1, fov_deg=[0, 50])
