"""Sensor simulators: their statistics, not just their shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metricanything.camera import Intrinsics
from metricanything.data.render import render_sample
from metricanything.data.sample import RGBDSample
from metricanything.data.sensors import (
    SENSOR_KINDS,
    SENSOR_SIMULATORS,
    lidar_beam_residual_deg,
    right_view_occlusion,
    simulate,
    simulate_lidar,
    simulate_reconstruction,
    simulate_stereo,
    simulate_structured_light,
    simulate_tof,
)
from metricanything.errors import InvalidInputError


def _ramp_sample(w: int = 96, h: int = 96, z0: float = 1.0, z1: float = 8.0, seed: int = 0) -> RGBDSample:
    """Depth growing down the rows from z0 to z1, a strongly textured image."""
    rng = np.random.default_rng(seed)
    depth = np.repeat(np.linspace(z0, z1, h, dtype=np.float32)[:, None], w, axis=1)
    image = rng.integers(60, 255, (h, w, 3), dtype=np.uint8)
    K = Intrinsics.from_focal(80.0, w, h)
    return RGBDSample(image=image, depth=depth, valid=np.ones((h, w), bool), intrinsics=K, sample_id="ramp")


def _slope_of_error_vs_depth(exact: np.ndarray, noisy: np.ndarray) -> float:
    """Slope of log(robust std of the error) against log(depth) over depth quantile bins."""
    err = noisy - exact
    edges = np.quantile(exact, np.linspace(0, 1, 7))
    zs, ss = [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (exact >= lo) & (exact <= hi)
        e = err[m]
        zs.append(np.median(exact[m]))
        ss.append(1.4826 * np.median(np.abs(e - np.median(e))))
    return float(np.polyfit(np.log(zs), np.log(ss), 1)[0])


@pytest.fixture(scope="module")
def outdoor() -> RGBDSample:
    return render_sample(4, "outdoor", (128, 96))


@pytest.fixture(scope="module")
def indoor() -> RGBDSample:
    return render_sample(3, "indoor", (96, 72))


def test_lidar_pixels_lie_on_the_beam_scan_curves(outdoor):
    K = outdoor.intrinsics
    n_beams = 16
    half = K.fov_y / 2
    out = simulate_lidar(outdoor, 0, n_beams=n_beams, elevation_range_deg=(-half, half * 0.5),
                         offset_m=(0.05, -0.2, -0.1), rotation_deg=(0.5, -0.5, 0.3), dropout=0.0, dark_dropout=0.0,
                         range_sigma_m=0.02)
    assert out.source_kind == "captured" and out.sensor == "lidar" and out.metric_scale_trusted
    sim = out.meta["sim"]
    spacing = sim["beam_spacing_deg"]
    assert spacing > 3 * math.degrees(1 / K.fy)  # beams several pixels apart: the test is meaningful
    res = lidar_beam_residual_deg(out)
    assert len(res) > 200
    pix = math.degrees(1 / K.fy)
    # valid pixels sit on the beams (within the beam tolerance + pixel quantisation), far tighter than
    # random pixels would (uniform residual in [0, spacing / 2], median spacing / 4)
    assert np.quantile(res, 0.95) <= sim["beam_tolerance_deg"] + pix
    assert np.median(res) < 0.25 * spacing / 4
    # about N scan curves: the valid pixels cluster on most beams inside the view, and no others
    beams = sim["elevation_range_deg"][0] + spacing * np.arange(n_beams)
    from metricanything.data.sensors import _rotation, lidar_angles, unproject

    pts = unproject(out.depth.astype(np.float64), K)[out.valid]
    elev = np.degrees(lidar_angles((pts - np.array(sim["offset_m"])) @ _rotation(*np.radians(sim["rotation_deg"])))[0])
    nearest = np.abs(elev[:, None] - beams[None]).argmin(axis=1)
    occupied = np.bincount(nearest, minlength=n_beams) >= 5
    assert occupied.sum() >= n_beams - 3
    # sparse, and consistent with the exact depth (no see-through from the sensor offset)
    assert 0.01 < out.valid.mean() < 0.3
    rel = np.abs(out.depth[out.valid] - outdoor.depth[out.valid]) / outdoor.depth[out.valid]
    assert np.quantile(rel, 0.95) < 0.03


def test_lidar_offset_creates_occlusion_shadows():
    # a near box in front of a far wall; a sensor 0.5 m above the camera cannot see the wall just below the box
    h = w = 96
    depth = np.full((h, w), 10.0, np.float32)
    depth[30:60, 30:66] = 2.0
    image = np.full((h, w, 3), 128, np.uint8)
    s = RGBDSample(image=image, depth=depth, valid=np.ones((h, w), bool), intrinsics=Intrinsics.from_focal(60.0, w, h))
    out = simulate_lidar(s, 0, n_beams=64, elevation_range_deg=(-35.0, 35.0), offset_m=(0.0, -0.5, 0.0),
                         rotation_deg=(0.0, 0.0, 0.0), dropout=0.0, dark_dropout=0.0, range_sigma_m=0.0, azimuth_res_deg=0.1)
    # shadow: from 0.5 m above, the box hides the wall for rows below it up to ~ 60 + f*0.5*(1/2 - 1/10) px
    shadow = out.valid[61:70, 32:64]
    visible_wall = out.valid[75:90, 32:64]
    assert shadow.sum() == 0
    assert visible_wall.sum() > 10
    assert np.all(out.depth[out.valid & (depth == 10.0)] > 9.0)


def test_lidar_loses_returns_on_dark_surfaces():
    s = _ramp_sample(64, 64, 2.0, 6.0)
    image = s.image.copy()
    image[:, :32] = 3  # left half black
    out = simulate_lidar(s.replace(image=image), 1, n_beams=32, elevation_range_deg=(-25.0, 25.0),
                         offset_m=(0.0, 0.0, 0.0), rotation_deg=(0.0, 0.0, 0.0), dropout=0.0, dark_dropout=1.0)
    assert not out.valid[:, :31].any() and out.valid[:, 33:].sum() > 50
    assert out.meta["sim"]["dark_dropout"] == 1.0


def test_tof_noise_grows_with_depth_squared_and_respects_range():
    s = _ramp_sample()
    out = simulate_tof(s, 1, max_range_m=7.0, min_range_m=0.1, sigma_k=0.004, dark_threshold=0.0, grazing_deg=90.0,
                       flying_prob=0.0, dropout=0.0)
    assert out.sensor == "tof" and out.source_kind == "captured"
    m = out.valid
    assert s.depth[m].max() <= 7.0 and s.depth[s.valid & ~m].min() > 7.0
    slope = _slope_of_error_vs_depth(s.depth[m], out.depth[m])
    assert 1.6 < slope < 2.4
    # sigma = k z^2 at the far end
    far = m & (s.depth > 6.0)
    rel = (out.depth[far] - s.depth[far]) / (0.004 * s.depth[far] ** 2)
    assert 0.85 < rel.std() < 1.15


def test_tof_holes_on_dark_and_grazing_surfaces_and_flying_pixels_at_edges():
    h = w = 64
    depth = np.full((h, w), 3.0, np.float32)
    depth[:, 40:] = 1.5  # a depth edge at column 40
    image = np.full((h, w, 3), 150, np.uint8)
    image[:16] = 5  # dark band
    s = RGBDSample(image=image, depth=depth, valid=np.ones((h, w), bool), intrinsics=Intrinsics.from_focal(60.0, w, h))
    out = simulate_tof(s, 2, max_range_m=5.0, min_range_m=0.1, sigma_k=0.0, dark_threshold=0.1, grazing_deg=85.0,
                       flying_prob=1.0, dropout=0.0)
    assert not out.valid[:14].any()  # dark: no returned light
    assert out.valid[20:, :38].all()
    flying = out.valid & ~np.isclose(out.depth, depth)
    cols = np.nonzero(flying)[1]
    assert len(cols) > 20 and cols.min() >= 38 and cols.max() <= 41
    assert np.all((out.depth[flying] >= 1.5) & (out.depth[flying] <= 3.0))
    # grazing: a floor seen at a shallow angle
    ramp = 1.0 / np.linspace(1.0, 0.02, h, dtype=np.float32)  # depth explodes towards the top rows
    s2 = s.replace(depth=np.repeat(ramp[::-1, None], w, 1).astype(np.float32), image=np.full((h, w, 3), 150, np.uint8))
    out2 = simulate_tof(s2, 2, max_range_m=100.0, min_range_m=0.1, sigma_k=0.0, dark_threshold=0.0, grazing_deg=80.0,
                        flying_prob=0.0, dropout=0.0)
    assert out2.valid[-10:].all() and not out2.valid[1:5].any()


def test_structured_light_has_projector_shadows_and_quantised_depth():
    h = w = 64
    depth = np.full((h, w), 4.05, np.float32)
    depth[20:40, 20:40] = 1.0
    image = np.random.default_rng(0).integers(80, 255, (h, w, 3), dtype=np.uint8)
    s = RGBDSample(image=image, depth=depth, valid=np.ones((h, w), bool), intrinsics=Intrinsics.from_focal(60.0, w, h))
    out = simulate_structured_light(s, 0, baseline_m=0.1, quant_k=0.01, sigma_k=0.0, max_range_m=6.0, min_range_m=0.2,
                                    dark_threshold=0.0, grazing_deg=89.0, flying_prob=0.0, dropout=0.0)
    # projector 0.1 m to the right: a band left of the near square is not lit (disparity 6 - 1.48 = 4.5 px)
    assert not out.valid[22:38, 16:19].any()
    assert out.valid[22:38, 5:14].all()
    assert out.sensor == "structured_light"
    step = 0.01 * 4.05**2
    np.testing.assert_allclose(out.depth[out.valid & (depth > 4)], round(4.05 / step) * step, rtol=1e-6)
    assert abs(round(4.05 / step) * step - 4.05) > 0.03  # quantisation really moved the value


def test_stereo_error_grows_as_z_squared_and_textureless_areas_are_invalid():
    s = _ramp_sample(seed=3)
    image = s.image.copy()
    image[:, :16] = 120  # textureless strip
    s = s.replace(image=image)
    out = simulate_stereo(s, 5, baseline_m=0.2, disparity_sigma_px=0.2, texture_threshold=0.01)
    assert out.sensor == "stereo" and out.source_kind == "captured"
    assert not out.valid[:, :12].any()
    m = out.valid
    assert m[:, 24:].mean() > 0.95
    slope = _slope_of_error_vs_depth(s.depth[m], out.depth[m])
    assert 1.6 < slope < 2.4
    # the first-order model: sigma_z = z^2 sigma_d / (f B)
    far = m & (s.depth > 6.0)
    pred = s.depth[far] ** 2 * 0.2 / (80.0 * 0.2)
    ratio = np.std(out.depth[far] - s.depth[far]) / np.mean(pred)
    assert 0.8 < ratio < 1.25


def test_right_view_occlusion_band_width_is_the_disparity_jump():
    disp = np.full((4, 40), 2.0)
    disp[:, 20:30] = 7.0
    occ, outside = right_view_occlusion(disp, np.ones_like(disp, bool))
    assert occ[0].nonzero()[0].tolist() == [15, 16, 17, 18, 19]  # 7 - 2 = 5 px left of the object
    assert outside[0].nonzero()[0].tolist() == [0, 1]


def test_sfm_scale_is_recorded_untrusted_and_outlier_fraction_holds(indoor):
    out, outliers = simulate_reconstruction(indoor, 7, mode="sfm", outlier_fraction=0.08, n_points=300)
    assert out.source_kind == "reconstructed" and out.sensor == "sfm" and not out.metric_scale_trusted
    s = out.meta["true_scale"]
    assert 0.2 <= s <= 5.0
    n = out.valid.sum()
    assert 150 <= n <= 300 and out.valid.mean() < 0.1  # sparse keypoints
    ratio = out.depth[out.valid] / indoor.depth[out.valid]
    inl = ~outliers[out.valid]
    assert abs(np.median(ratio[inl]) / s - 1) < 0.01
    assert np.all(np.abs(np.log(ratio[~inl] / s)) > 0.25)  # gross
    assert abs(out.meta["outlier_fraction"] - 0.08) <= 1.0 / n
    assert abs(outliers.sum() / n - out.meta["outlier_fraction"]) < 1e-12
    # keypoints sit on local maxima of texture, and on stronger texture than a typical pixel
    import cv2

    from metricanything.data.sensors import texture_strength

    tex = texture_strength(indoor.image, 3)
    local_max = cv2.dilate(tex, np.ones((3, 3), np.uint8))
    assert np.all(tex[out.valid] >= local_max[out.valid] - 1e-4)
    assert np.median(tex[out.valid]) > 1.3 * np.median(tex)


def test_reconstruction_scales_span_the_log_uniform_range():
    s = _ramp_sample(32, 32)
    scales = np.array([simulate_reconstruction(s, seed, mode="mvs")[0].meta["true_scale"] for seed in range(150)])
    assert scales.min() >= 0.2 and scales.max() <= 5.0
    logs = np.log(scales)
    assert abs(logs.mean()) < 0.3 and logs.std() > 0.6  # uniform on [log .2, log 5]: std 0.93


def test_mvs_is_semi_dense_on_texture(indoor):
    out, outliers = simulate_reconstruction(indoor, 3, mode="mvs", outlier_fraction=0.02, texture_threshold=0.01)
    assert out.sensor == "mvs" and not out.metric_scale_trusted
    assert 0.02 < out.valid.mean() < 0.95
    from metricanything.data.sensors import texture_strength

    assert np.all(texture_strength(indoor.image, 3)[out.valid] >= 0.01)
    assert abs(out.meta["outlier_fraction"] - 0.02) <= 1.0 / out.valid.sum()


@pytest.mark.parametrize("sensor", sorted(SENSOR_SIMULATORS))
def test_every_simulator_is_deterministic_and_labelled(indoor, sensor):
    a = simulate(indoor, sensor, np.random.default_rng(9))
    b = simulate(indoor, sensor, np.random.default_rng(9))
    assert a.depth.tobytes() == b.depth.tobytes() and a.valid.tobytes() == b.valid.tobytes()
    assert a.meta == b.meta
    kind, trusted = SENSOR_KINDS[sensor]
    assert (a.source_kind, a.sensor, a.metric_scale_trusted) == (kind, sensor, trusted)
    assert a.image is indoor.image or np.array_equal(a.image, indoor.image)
    assert a.intrinsics == indoor.intrinsics
    assert a.meta["sim"]["sensor"] == sensor
    assert np.all(a.depth[~a.valid] == 0)
    if sensor == "synthetic":
        assert np.array_equal(a.depth, indoor.depth)
    else:
        assert a.valid.sum() < indoor.valid.sum()  # every real sensor loses something


def test_unknown_sensor_and_empty_input_raise(indoor):
    with pytest.raises(InvalidInputError, match="unknown sensor"):
        simulate(indoor, "sonar", 0)
    empty = indoor.replace(valid=np.zeros_like(indoor.valid), depth=np.zeros_like(indoor.depth))
    with pytest.raises(InvalidInputError, match="no valid depth"):
        simulate(empty, "lidar", 0)
    with pytest.raises(InvalidInputError):
        simulate_reconstruction(indoor, 0, mode="colmap")
    with pytest.raises(InvalidInputError):
        simulate_reconstruction(indoor, 0, outlier_fraction=1.5)
    with pytest.raises(InvalidInputError):
        simulate_lidar(indoor, 0, n_beams=8, elevation_range_deg=(5.0, -5.0))
    with pytest.raises(InvalidInputError):
        simulate_stereo(indoor, 0, baseline_m=0.0)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), sensor=st.sampled_from(sorted(SENSOR_SIMULATORS)),
       w=st.integers(8, 40), h=st.integers(8, 40), hole=st.floats(0.0, 0.9))
def test_simulators_never_produce_invalid_records(seed, sensor, w, h, hole):
    rng = np.random.default_rng(seed)
    depth = np.exp(rng.uniform(np.log(0.3), np.log(90.0), (h, w))).astype(np.float32)
    valid = rng.uniform(size=(h, w)) >= hole
    valid[0, 0] = True
    depth = np.where(valid, depth, 0).astype(np.float32)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    K = Intrinsics.from_fov(float(rng.uniform(20, 120)), w, h)
    s = RGBDSample(image=image, depth=depth, valid=valid, intrinsics=K)
    out = simulate(s, sensor, rng)
    out.validate()  # finite, positive depth where valid; shapes and dtypes kept
    assert out.depth.shape == (h, w) and np.all(out.depth[~out.valid] == 0)
    if SENSOR_KINDS[sensor][1]:  # metric sensors never invent depth far from the truth where there was none
        assert not (out.valid & ~valid).any() or sensor == "lidar"
