"""Geometry-exact augmentation: intrinsics follow every resize / crop / flip."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metricanything.camera import Intrinsics, transform_points, unproject
from metricanything.data.augment import (
    color_jitter,
    crop_sample,
    flip_sample,
    random_augment,
    resize_depth,
    resize_sample,
)
from metricanything.data.render import render_scene_sample, render_view
from metricanything.data.sample import RGBDSample
from metricanything.errors import InvalidInputError


def _random_sample(w: int = 40, h: int = 30, seed: int = 0, sparse: bool = False) -> RGBDSample:
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.5, 20.0, (h, w)).astype(np.float32)
    valid = rng.uniform(size=(h, w)) < (0.05 if sparse else 0.9)
    depth = np.where(valid, depth, 0).astype(np.float32)
    K = Intrinsics(35.0 + seed, 36.0, w / 2 - 1.3, h / 2 + 0.7, w, h)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    pose = np.eye(4)
    pose[:3, 3] = [1.0, 2.0, 3.0]
    return RGBDSample(image=image, depth=depth, valid=valid, intrinsics=K, pose=pose, sample_id="r")


def _point(K: Intrinsics, u: float, v: float, z: float) -> np.ndarray:
    z = float(z)
    return np.array([(u - K.cx) * z / K.fx, (v - K.cy) * z / K.fy, z])


@settings(max_examples=30, deadline=None)
@given(left=st.integers(-15, 35), top=st.integers(-15, 25), w=st.integers(1, 50), h=st.integers(1, 40))
def test_crop_keeps_every_pixel_on_its_3d_point_and_pads_invalid(left, top, w, h):
    s = _random_sample()
    c = crop_sample(s, left, top, w, h)
    assert (c.width, c.height) == (w, h)
    for v in range(h):
        for u in range(w):
            su, sv = u + left, v + top
            inside = 0 <= su < s.width and 0 <= sv < s.height
            if not inside:
                assert not c.valid[v, u] and c.depth[v, u] == 0 and not c.image[v, u].any()
                continue
            assert c.valid[v, u] == s.valid[sv, su]
            if c.valid[v, u]:
                np.testing.assert_allclose(_point(c.intrinsics, u, v, c.depth[v, u]),
                                           _point(s.intrinsics, su, sv, s.depth[sv, su]), rtol=1e-12, atol=1e-12)


def test_flip_twice_is_identity_and_flip_mirrors_3d_points():
    s = _random_sample()
    f = flip_sample(s)
    ff = flip_sample(f)
    assert np.array_equal(ff.image, s.image) and np.array_equal(ff.depth, s.depth) and np.array_equal(ff.valid, s.valid)
    assert ff.intrinsics.isclose(s.intrinsics, 1e-12) and np.allclose(ff.pose, s.pose)
    assert f.meta["flipped"] and not ff.meta["flipped"]
    # a pixel's 3D point in the flipped camera is the mirror (x -> -x) of the original point
    pa = unproject(s.depth.astype(np.float64), s.intrinsics)
    pb = unproject(f.depth.astype(np.float64), f.intrinsics)[:, ::-1]
    m = s.valid
    np.testing.assert_allclose(pb[m] * [-1, 1, 1], pa[m], rtol=1e-12, atol=1e-9)
    # and the flipped pose maps it to the same world point
    np.testing.assert_allclose(transform_points(pb[m], f.pose), transform_points(pa[m], s.pose), atol=1e-9)


def test_integer_upscale_maps_pixels_to_the_same_3d_points():
    s = _random_sample()
    r = resize_sample(s, s.width * 3, s.height * 3)
    assert r.intrinsics.isclose(s.intrinsics.resized(s.width * 3, s.height * 3))
    for v, u in [(0, 0), (5, 7), (29, 39), (12, 20)]:
        # output pixel (3u + 1, 3v + 1) has its centre exactly on input pixel (u, v)'s centre
        assert r.valid[3 * v + 1, 3 * u + 1] == s.valid[v, u]
        if s.valid[v, u]:
            np.testing.assert_allclose(_point(r.intrinsics, 3 * u + 1, 3 * v + 1, r.depth[3 * v + 1, 3 * u + 1]),
                                       _point(s.intrinsics, u, v, s.depth[v, u]), rtol=1e-12)


@pytest.mark.parametrize("mode", ["nearest", "splat", "auto"])
def test_resized_depth_is_never_blended(mode):
    s = _random_sample(sparse=mode == "splat")
    for size in [(17, 11), (40, 30), (93, 71)]:
        d, v = resize_depth(s.depth, s.valid, *size, mode=mode)
        assert d.shape == (size[1], size[0]) and np.all(d[~v] == 0)
        assert np.isin(d[v], s.depth[s.valid]).all()


def test_splat_keeps_sparse_points_when_shrinking_and_nearest_wins():
    s = _random_sample(80, 60, sparse=True)
    d, v = resize_depth(s.depth, s.valid, 40, 30, mode="auto")
    n_in = s.valid.sum()
    assert v.sum() >= 0.85 * n_in  # collisions only
    # in each 2x2 block the nearest valid depth wins
    blocks = np.where(s.valid, s.depth, np.inf).reshape(30, 2, 40, 2).min(axis=(1, 3))
    np.testing.assert_array_equal(v, np.isfinite(blocks))
    np.testing.assert_array_equal(d[v], blocks[v])
    dn, vn = resize_depth(s.depth, s.valid, 40, 30, mode="nearest")
    assert vn.sum() < 0.5 * n_in  # what plain nearest would have thrown away


def test_downscaled_render_matches_a_render_with_the_resized_intrinsics():
    sample, scene = render_scene_sample(21, "indoor", (96, 72))
    small = resize_sample(sample, 48, 36)
    _, direct, direct_valid = render_view(scene, small.intrinsics, sample.pose)
    m = small.valid & direct_valid
    rel = np.abs(small.depth[m] - direct[m]) / direct[m]
    assert np.median(rel) < 0.01
    # the same resize with wrong (unchanged-centre) intrinsics would be measurably worse
    bad = Intrinsics(small.intrinsics.fx, small.intrinsics.fy, sample.intrinsics.cx / 2, sample.intrinsics.cy / 2, 48, 36)
    _, wrong, _ = render_view(scene, bad, sample.pose)
    assert np.median(rel) <= np.median(np.abs(small.depth[m] - wrong[m]) / wrong[m])


@settings(max_examples=20, deadline=None)
@given(ow=st.integers(8, 64), oh=st.integers(8, 64), seed=st.integers(0, 10_000))
def test_random_augment_gives_the_exact_size_and_world_consistent_points(ow, oh, seed):
    s = _random_sample(40, 30, seed=seed % 7)
    out = random_augment(s, np.random.default_rng(seed), (ow, oh))
    assert (out.width, out.height) == (ow, oh) and out.image.shape == (oh, ow, 3)
    assert (out.intrinsics.width, out.intrinsics.height) == (ow, oh)
    assert np.all(out.depth[~out.valid] == 0)
    assert np.isin(out.depth[out.valid], s.depth[s.valid]).all()  # never interpolated, never rescaled
    # same seed, same result
    again = random_augment(s, np.random.default_rng(seed), (ow, oh))
    assert np.array_equal(again.image, out.image) and np.array_equal(again.depth, out.depth)


def test_random_augment_keeps_rendered_points_on_the_scene_surfaces():
    sample, scene = render_scene_sample(8, "indoor", (64, 48))
    rng = np.random.default_rng(1)
    for _ in range(4):
        out = random_augment(sample, rng, (40, 40), scale_range=(1.0, 1.6), flip_prob=0.5)
        pts = transform_points(unproject(out.depth.astype(np.float64), out.intrinsics)[out.valid], out.pose)
        dist = scene.distance_to_surface(pts) / out.depth[out.valid]
        assert np.median(dist) < 0.005, out.meta.get("flipped")


def test_color_jitter_changes_only_colours():
    s = _random_sample()
    img = color_jitter(s.image, np.random.default_rng(0), hue=0.1)
    assert img.dtype == np.uint8 and img.shape == s.image.shape and not np.array_equal(img, s.image)
    ident = color_jitter(s.image, np.random.default_rng(0), 0.0, 0.0, 0.0, 0.0)
    assert np.abs(ident.astype(int) - s.image).max() <= 1
    out = random_augment(s, 3, (40, 30), scale_range=(1.0, 1.0), flip_prob=0.0)
    assert np.array_equal(out.depth, s.depth) and np.array_equal(out.valid, s.valid)
    assert out.intrinsics.isclose(s.intrinsics, 1e-9)


def test_bad_sizes_raise():
    s = _random_sample()
    with pytest.raises(InvalidInputError):
        resize_sample(s, 0, 10)
    with pytest.raises(InvalidInputError):
        crop_sample(s, 0, 0, 10, -1)
    with pytest.raises(InvalidInputError):
        resize_depth(s.depth, s.valid, 10, 10, mode="cubic")
