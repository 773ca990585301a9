"""Named evaluation prompt patterns: each pattern's defining property, modifiers, reproducibility, parsing."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from metricanything.camera import Intrinsics
from metricanything.errors import InvalidInputError
from metricanything.prompts import PATTERNS, make_prompt, parse_pattern
from metricanything.prompts.patterns import (
    RADAR_BAND_DEG,
    RADAR_RANGE_SIGMA,
    block_means,
    default_intrinsics,
    lidar_beam_elevations,
)

H, W = 70, 90  # not multiples of 8 or 16: partial blocks are exercised


def _scene(seed: int = 0, h: int = H, w: int = W, hole: bool = True):
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:h, 0:w]
    depth = (3.0 + 0.05 * u + 0.02 * v + rng.uniform(0, 0.5, (h, w))).astype(np.float32)
    valid = rng.random((h, w)) > 0.1
    if hole:
        valid[10:30, 20:45] = False
    K = Intrinsics.from_fov(70.0, w, h)
    return depth, valid, K


def _ray_elevation(u: np.ndarray, v: np.ndarray, K: Intrinsics) -> np.ndarray:
    x, y = (u - K.cx) / K.fx, (v - K.cy) / K.fy
    return np.arctan2(-y, np.hypot(x, 1.0))


def _check_on_gt(p, depth, valid):
    ui, vi = p.pixel_indices()
    assert valid[vi, ui].all()
    np.testing.assert_allclose(p.z, depth[vi, ui], rtol=1e-6)


def test_points_and_density():
    depth, valid, K = _scene()
    p = make_prompt("points:500", depth, valid, K)
    assert p.num_points == 500 and p.to_map()[1].sum() == 500
    _check_on_gt(p, depth, valid)
    q = make_prompt("density:0.01", depth, valid, K)
    assert q.num_points == round(0.01 * valid.sum())
    _check_on_gt(q, depth, valid)
    # more points than valid pixels: all valid pixels
    small = np.zeros_like(valid)
    small[3, 4] = small[5, 6] = True
    assert make_prompt("points:500", depth, small, K).num_points == 2


@pytest.mark.parametrize("k", [8, 16])
def test_downsample_values_equal_block_means(k):
    depth, valid, K = _scene()
    p = make_prompt(f"downsample:{k}", depth, valid, K)
    expected = {}
    for by in range(math.ceil(H / k)):
        for bx in range(math.ceil(W / k)):
            blk_d = depth[by * k:(by + 1) * k, bx * k:(bx + 1) * k]
            blk_v = valid[by * k:(by + 1) * k, bx * k:(bx + 1) * k]
            if blk_v.any():
                bh, bw = blk_d.shape
                expected[(bx * k + (bw - 1) / 2, by * k + (bh - 1) / 2)] = blk_d[blk_v].astype(np.float64).mean()
    got = {(float(u), float(v)): float(z) for u, v, z in p.to_points()}
    assert set(got) == set(expected)
    for key, z in expected.items():
        assert got[key] == pytest.approx(z, rel=1e-9)
    # blocks without valid GT give no point (the hole empties at least one block for k = 8)
    n_blocks = math.ceil(H / k) * math.ceil(W / k)
    assert len(got) < n_blocks if k == 8 else len(got) <= n_blocks
    mean, count = block_means(depth, valid, k)
    assert mean.shape == (math.ceil(H / k), math.ceil(W / k)) and count.sum() == valid.sum()


@pytest.mark.parametrize("n", [8, 16, 64])
def test_lidar_occupies_n_scan_curves(n):
    h, w = 192, 256  # 64 beams are 3 px apart: curves are separable
    depth = np.full((h, w), 6.0, np.float32)
    valid = np.ones((h, w), bool)
    K = Intrinsics.from_fov(60.0, w, h)
    p = make_prompt(f"lidar:{n}", depth, valid, K)
    _check_on_gt(p, depth, valid)
    beams = lidar_beam_elevations(K, n)
    elev = _ray_elevation(p.u, p.v, K)
    nearest = np.abs(elev[:, None] - beams[None, :]).min(axis=1)
    assert nearest.max() <= 0.5 / K.fy + 1e-9  # every return lies on a beam
    # cluster the elevations: exactly n separated scan curves
    spacing, band = beams[1] - beams[0], 1.0 / K.fy
    assert spacing > band  # beams are separable at this resolution
    e = np.sort(elev)
    gaps = np.diff(e) > 0.9 * (spacing - band)
    assert gaps.sum() + 1 == n
    assert len(set(np.abs(elev[:, None] - beams[None, :]).argmin(axis=1).tolist())) == n
    # each curve is densely sampled in azimuth (about one return every 2 px at the image centre)
    assert p.num_points >= n * w / 2 * 0.6


def test_lidar_with_holes_and_default_intrinsics():
    depth, valid, _ = _scene()
    p = make_prompt("lidar:16", depth, valid)  # K=None: focal = image height
    _check_on_gt(p, depth, valid)
    Kd = default_intrinsics(W, H)
    elev = _ray_elevation(p.u, p.v, Kd)
    assert np.abs(elev[:, None] - lidar_beam_elevations(Kd, 16)[None]).min(1).max() <= 0.5 / Kd.fy + 1e-9


def _checker_image(h: int, w: int) -> np.ndarray:
    board = ((np.indices((h, w)) // 12).sum(0) % 2 * 190 + 30).astype(np.uint8)
    return np.repeat(cv2.GaussianBlur(board, (3, 3), 0)[..., None], 3, axis=2)


@pytest.mark.parametrize("det", ["orb", "fast"])
def test_keypoints_are_detector_corners_with_valid_gt(det):
    depth, valid, K = _scene(hole=True)
    img = _checker_image(H, W)
    p = make_prompt(f"keypoints:{det}", depth, valid, K, image=img)
    gray = img[..., 0]
    detector = (cv2.ORB_create(nfeatures=1000, edgeThreshold=15, patchSize=15) if det == "orb"
                else cv2.FastFeatureDetector_create(threshold=20, nonmaxSuppression=True))
    kp = np.array([k.pt for k in detector.detect(gray, None)])
    pix = {(int(math.floor(u + 0.5)), int(math.floor(v + 0.5))) for u, v in kp}
    expected = {(u, v) for u, v in pix if valid[v, u]}
    got = set(zip(*(a.tolist() for a in p.pixel_indices()), strict=True))
    assert len(expected) > 10 and got == expected
    _check_on_gt(p, depth, valid)
    with pytest.raises(InvalidInputError, match="needs the image"):
        make_prompt(f"keypoints:{det}", depth, valid, K)


def test_extreme_has_exactly_n():
    depth, valid, K = _scene()
    for seed in range(5):
        p = make_prompt("extreme:5", depth, valid, K, seed=seed)
        assert p.num_points == 5 and p.to_map()[1].sum() == 5
        _check_on_gt(p, depth, valid)
    few = np.zeros_like(valid)
    few[0, :3] = True
    with pytest.raises(InvalidInputError, match="at least 5"):
        make_prompt("extreme:5", depth, few, K)


def test_radar_near_horizontal_plane_sparse_and_noisy():
    depth, valid, K = _scene(hole=False)
    ratios = []
    for seed in range(40):
        p = make_prompt("radar:50", depth, valid, K, seed=seed)
        assert 0 < p.num_points <= 50
        ui, vi = p.pixel_indices()
        assert valid[vi, ui].all()
        elev = _ray_elevation(p.u, p.v, K)
        assert np.abs(elev).max() <= max(math.radians(RADAR_BAND_DEG), 1 / K.fy) + 1e-9
        # sparse in azimuth: at most one point per azimuth sector
        az = np.arctan2((p.u - K.cx) / K.fx, 1.0)
        left, right = -math.atan((K.cx + 0.5) / K.fx), math.atan((W - 0.5 - K.cx) / K.fx)
        sectors = np.floor((az - left) / (right - left) * 50).astype(int)
        assert len(set(sectors.tolist())) == p.num_points
        ratios.append(np.log(p.z / depth[vi, ui]))
    r = np.concatenate(ratios)
    assert abs(r.std() - RADAR_RANGE_SIGMA) < 0.01 and abs(r.mean()) < 0.01


def test_noise_modifier_is_lognormal_and_keeps_locations():
    depth, valid, K = _scene()
    base = make_prompt("points:2000", depth, valid, K, seed=7)
    noisy = make_prompt("points:2000+noise:0.05", depth, valid, K, seed=7)
    np.testing.assert_array_equal(base.u, noisy.u)
    np.testing.assert_array_equal(base.v, noisy.v)
    r = np.log(noisy.z / base.z)
    assert abs(r.std() - 0.05) < 0.005 and abs(r.mean()) < 0.005
    assert (noisy.z > 0).all()


def test_outlier_modifier_replaces_the_fraction():
    depth, valid, K = _scene()
    base = make_prompt("points:1000", depth, valid, K, seed=3)
    bad = make_prompt("points:1000+outliers:0.1", depth, valid, K, seed=3)
    changed = bad.z != base.z
    assert changed.sum() == 100
    gt = depth[valid]
    assert bad.z[changed].min() >= gt.min() - 1e-9 and bad.z[changed].max() <= gt.max() + 1e-9
    # combined, in order: the outliers replace (noisy) values
    both = make_prompt("points:1000+noise:0.05+outliers:0.1", depth, valid, K, seed=3)
    assert both.num_points == 1000


@pytest.mark.parametrize(
    "spec", ["points:300", "density:0.02", "downsample:8", "lidar:8", "extreme:5", "radar:50", "points:50+noise:0.1+outliers:0.2"]
)
def test_reproducible_from_seed(spec):
    depth, valid, K = _scene()
    a = make_prompt(spec, depth, valid, K, seed=11).to_points()
    b = make_prompt(spec, depth, valid, K, seed=11).to_points()
    np.testing.assert_array_equal(a, b)
    if spec.split(":")[0] in ("points", "density", "extreme", "radar"):
        c = make_prompt(spec, depth, valid, K, seed=12).to_points()
        assert a.shape != c.shape or not np.array_equal(a, c)


def test_parse_pattern_and_errors():
    s = parse_pattern(" Lidar:16 + noise:0.05+outliers:0.1")
    assert (s.name, s.arg, s.modifiers) == ("lidar", 16, (("noise", 0.05), ("outliers", 0.1)))
    assert str(s) == "lidar:16+noise:0.05+outliers:0.1"
    assert parse_pattern("keypoints").arg == "orb"
    with pytest.raises(InvalidInputError, match="unknown prompt pattern 'sonar'") as ei:
        parse_pattern("sonar:3")
    for name in PATTERNS:
        assert name in str(ei.value)
    with pytest.raises(InvalidInputError, match="unknown prompt modifier 'blur'"):
        parse_pattern("points:5+blur:2")
    with pytest.raises(InvalidInputError, match="needs an argument"):
        parse_pattern("points")
    with pytest.raises(InvalidInputError, match="int"):
        parse_pattern("points:abc")
    with pytest.raises(InvalidInputError, match="one of"):
        parse_pattern("keypoints:sift")
    with pytest.raises(InvalidInputError):
        parse_pattern("")


def test_make_prompt_input_validation():
    depth, valid, K = _scene()
    with pytest.raises(InvalidInputError, match="intrinsics"):
        make_prompt("points:5", depth, valid, Intrinsics.from_fov(60, W + 1, H))
    with pytest.raises(InvalidInputError, match="bool"):
        make_prompt("points:5", depth, valid.astype(np.uint8), K)
    bad = depth.copy()
    bad[valid.nonzero()[0][0], valid.nonzero()[1][0]] = np.nan
    with pytest.raises(InvalidInputError, match="finite"):
        make_prompt("points:5", bad, valid, K)
    with pytest.raises(InvalidInputError, match="density"):
        make_prompt("density:2", depth, valid, K)
    # no valid GT: an empty prompt, never zeros posing as depth
    empty = make_prompt("points:5", depth, np.zeros_like(valid), K)
    assert empty.num_points == 0 and not empty.encode().has_prompt[0]
