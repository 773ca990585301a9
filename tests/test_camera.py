"""Camera geometry: intrinsics through image operations, projection round trips, z-buffer splatting."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metricanything.camera import (
    Intrinsics,
    IntrinsicsSource,
    pixel_grid,
    project,
    splat_points_to_depth,
    transform_points,
    unproject,
)
from metricanything.errors import InvalidInputError

sizes = st.integers(min_value=1, max_value=4096)
focals = st.floats(min_value=1.0, max_value=1e4, allow_nan=False)
centres = st.floats(min_value=-1e3, max_value=5e3, allow_nan=False)


@st.composite
def intrinsics(draw) -> Intrinsics:
    return Intrinsics(draw(focals), draw(focals), draw(centres), draw(centres), draw(sizes), draw(sizes))


@st.composite
def small_intrinsics(draw) -> Intrinsics:
    w = draw(st.integers(8, 64))
    h = draw(st.integers(8, 64))
    f = draw(st.floats(10.0, 200.0))
    cx = draw(st.floats(-5.0, w + 5.0))
    cy = draw(st.floats(-5.0, h + 5.0))
    return Intrinsics(f, f * draw(st.floats(0.8, 1.25)), cx, cy, w, h)


@given(intrinsics(), sizes, sizes)
def test_resize_and_back_is_identity(K: Intrinsics, w2: int, h2: int) -> None:
    back = K.resized(w2, h2).resized(K.width, K.height)
    assert back.size == K.size
    assert back.isclose(K, atol=1e-9)


@given(intrinsics(), st.integers(-500, 500), st.integers(-500, 500), sizes, sizes)
def test_crop_then_pad_back_is_identity(K: Intrinsics, left: int, top: int, w: int, h: int) -> None:
    cropped = K.cropped(left, top, w, h)
    assert cropped.size == (w, h)
    back = cropped.padded(left, top, K.width - left - w, K.height - top - h)
    assert back.size == K.size and back.isclose(K, atol=1e-9)


@given(intrinsics(), st.integers(0, 300), st.integers(0, 300), st.integers(0, 300), st.integers(0, 300))
def test_pad_then_crop_back_is_identity(K: Intrinsics, left: int, top: int, right: int, bottom: int) -> None:
    padded = K.padded(left, top, right, bottom)
    assert padded.size == (K.width + left + right, K.height + top + bottom)
    assert padded.cropped(left, top, K.width, K.height).isclose(K, atol=1e-9)


@given(intrinsics())
def test_flips_are_involutions(K: Intrinsics) -> None:
    assert K.flipped_horizontally().flipped_horizontally().isclose(K, atol=1e-9)
    assert K.flipped_vertically().flipped_vertically().isclose(K, atol=1e-9)
    assert K.flipped_horizontally().fx == K.fx and K.flipped_vertically().cy == pytest.approx(K.height - 1 - K.cy)


@given(small_intrinsics(), st.floats(-2, 2), st.floats(-2, 2), st.floats(0.2, 50))
def test_operations_move_projections_like_the_image(K: Intrinsics, x: float, y: float, z: float) -> None:
    """Each operation's intrinsics project a point where the transformed image shows it."""
    (u, v), _ = project(np.array([x, y, z]), K)
    (uf, vf), _ = project(np.array([-x, y, z]), K.flipped_horizontally())
    assert uf == pytest.approx(K.width - 1 - u, abs=1e-6) and vf == pytest.approx(v, abs=1e-6)
    (uv_, vv_), _ = project(np.array([x, -y, z]), K.flipped_vertically())
    assert vv_ == pytest.approx(K.height - 1 - v, abs=1e-6) and uv_ == pytest.approx(u, abs=1e-6)
    (uc, vc), _ = project(np.array([x, y, z]), K.cropped(3, 5, 4, 4))
    assert uc == pytest.approx(u - 3, abs=1e-6) and vc == pytest.approx(v - 5, abs=1e-6)
    W2, H2 = 2 * K.width + 1, K.height // 2 + 1
    (ur, vr), _ = project(np.array([x, y, z]), K.resized(W2, H2))
    assert ur == pytest.approx((u + 0.5) * W2 / K.width - 0.5, abs=1e-6)
    assert vr == pytest.approx((v + 0.5) * H2 / K.height - 0.5, abs=1e-6)


def test_resize_maps_image_edges_to_image_edges() -> None:
    K = Intrinsics(100.0, 100.0, 15.5, 11.5, 32, 24)  # principal point at the exact image centre
    R = K.resized(64, 48)
    assert (R.fx, R.fy, R.cx, R.cy) == (200.0, 200.0, 31.5, 23.5)
    assert R.fov_x == pytest.approx(K.fov_x) and R.fov_y == pytest.approx(K.fov_y)


@given(intrinsics())
def test_matrix_and_dict_round_trips(K: Intrinsics) -> None:
    M = K.as_matrix()
    assert M.shape == (3, 3) and M[0, 0] == K.fx and M[1, 2] == K.cy and M[2, 2] == 1.0
    assert Intrinsics.from_matrix(M, K.width, K.height) == K
    assert Intrinsics.from_dict(K.to_dict()) == K


@given(st.floats(1.0, 179.0), sizes, sizes)
def test_fov_round_trip(fov: float, w: int, h: int) -> None:
    K = Intrinsics.from_fov(fov, w, h)
    assert K.fov_x == pytest.approx(fov, rel=1e-9)
    assert K.cx == (w - 1) / 2 and K.cy == (h - 1) / 2 and K.fx == K.fy


@settings(max_examples=50, deadline=None)
@given(small_intrinsics(), st.integers(0, 2**31 - 1), st.sampled_from([np.float32, np.float64]))
def test_project_unproject_returns_pixel_grid(K: Intrinsics, seed: int, dtype) -> None:
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.05, 200.0, (K.height, K.width)).astype(dtype)
    pts = unproject(depth, K)
    assert pts.dtype == dtype and pts.shape == (K.height, K.width, 3)
    np.testing.assert_array_equal(pts[..., 2], depth)
    uv, z = project(pts, K)
    u, v = pixel_grid(K.width, K.height)
    assert np.abs(uv[..., 0] - u).max() < 1e-4 and np.abs(uv[..., 1] - v).max() < 1e-4
    np.testing.assert_allclose(z, depth, rtol=1e-12)


def test_project_marks_points_behind_camera_nan() -> None:
    K = Intrinsics.from_focal(10.0, 8, 8)
    uv, z = project(np.array([[0.0, 0.0, -1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 2.0]]), K)
    assert np.isnan(uv[:2]).all() and uv[2].tolist() == [3.5 + 5.0, 3.5]
    assert z.tolist() == [-1.0, 0.0, 2.0]


def test_splat_keeps_the_nearest_point_whatever_the_order() -> None:
    K = Intrinsics.from_focal(20.0, 9, 7)  # centre pixel (4, 3)
    ray = np.array([0.05, -0.1, 1.0])
    far, near, mid = 9.0 * ray, 2.0 * ray, 5.0 * ray
    for order in ([far, near, mid], [near, mid, far], [mid, far, near]):
        pts = np.stack(order)
        depth, valid, index = splat_points_to_depth(pts, K, return_index=True)
        (u, v), _ = project(near, K)
        pu, pv = math.floor(u + 0.5), math.floor(v + 0.5)
        assert valid.sum() == 1 and valid[pv, pu]
        assert depth[pv, pu] == np.float32(2.0)
        assert np.array_equal(pts[index[pv, pu]], near)
        assert (index[~valid] == -1).all() and (depth[~valid] == 0).all()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 400))
def test_splat_matches_brute_force_z_buffer(seed: int, n: int) -> None:
    rng = np.random.default_rng(seed)
    K = Intrinsics(12.0, 14.0, 7.3, 5.1, 16, 12)
    pts = np.stack([rng.uniform(-2, 2, n), rng.uniform(-2, 2, n), rng.uniform(-1, 6, n)], axis=1)
    depth, valid, index = splat_points_to_depth(pts, K, return_index=True)
    expected = np.full((K.height, K.width), np.inf)
    uv, z = project(pts, K)
    for (u, v), zi in zip(uv, z, strict=True):
        if zi <= 0:
            continue
        pu, pv = math.floor(u + 0.5), math.floor(v + 0.5)
        if 0 <= pu < K.width and 0 <= pv < K.height:
            expected[pv, pu] = min(expected[pv, pu], zi)
    assert np.array_equal(valid, np.isfinite(expected))
    np.testing.assert_array_equal(depth[valid], expected[valid].astype(np.float32))
    np.testing.assert_array_equal(pts[index[valid], 2], expected[valid])


def test_transform_points() -> None:
    T = np.eye(4)
    T[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]  # 90 degrees about z
    T[:3, 3] = [1.0, 2.0, 3.0]
    out = transform_points(np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]]), T)
    np.testing.assert_allclose(out, [[1.0, 3.0, 3.0], [1.0, 2.0, 5.0]])
    with pytest.raises(InvalidInputError, match="4x4"):
        transform_points(np.zeros((1, 3)), np.eye(3))


@pytest.mark.parametrize(
    "args",
    [
        (0.0, 1.0, 0.0, 0.0, 4, 4),
        (-1.0, 1.0, 0.0, 0.0, 4, 4),
        (1.0, float("nan"), 0.0, 0.0, 4, 4),
        (1.0, 1.0, float("inf"), 0.0, 4, 4),
        (1.0, 1.0, 0.0, 0.0, 0, 4),
        (1.0, 1.0, 0.0, 0.0, 4, 2.5),
    ],
)
def test_intrinsics_validation(args) -> None:
    with pytest.raises(InvalidInputError):
        Intrinsics(*args)


def test_other_validation_errors() -> None:
    K = Intrinsics.from_focal(10.0, 8, 6)
    with pytest.raises(InvalidInputError, match="skew"):
        Intrinsics.from_matrix(np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), 4, 4)
    with pytest.raises(InvalidInputError, match="3x3"):
        Intrinsics.from_matrix(np.eye(4), 4, 4)
    with pytest.raises(InvalidInputError, match="field of view"):
        Intrinsics.from_fov(180.0, 4, 4)
    with pytest.raises(InvalidInputError, match="8x6"):
        unproject(np.ones((8, 6)), K)
    with pytest.raises(InvalidInputError, match="H x W"):
        unproject(np.ones((6, 8, 1)), K)
    with pytest.raises(InvalidInputError, match="last axis"):
        project(np.ones((5, 2)), K)
    with pytest.raises(ValueError):  # InvalidInputError is a ValueError for generic callers
        Intrinsics(1.0, 1.0, 0.0, 0.0, -3, 3)


def test_intrinsics_is_immutable_and_source_enum() -> None:
    K = Intrinsics.from_focal(10.0, 8, 6)
    with pytest.raises(AttributeError):
        K.fx = 3.0  # type: ignore[misc]
    assert IntrinsicsSource("exif") is IntrinsicsSource.EXIF and IntrinsicsSource.GIVEN.value == "given"
