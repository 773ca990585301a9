"""Prompt-only baselines, constants and the external-model wrapper of the evaluation harness."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metricanything.camera import Intrinsics
from metricanything.data.sample import RGBDSample
from metricanything.errors import InvalidInputError
from metricanything.eval.baselines import (
    ConstantDepth,
    ExternalModel,
    LinearFill,
    MorphologicalFill,
    NearestFill,
    PlaneFill,
    PromptMedian,
    check_prompt_compatibility,
    linear_fill,
    median_depth_of,
    morphological_fill,
    nearest_fill,
)
from metricanything.prompts.prompt import Prompt


def blank(w: int, h: int) -> RGBDSample:
    return RGBDSample(np.zeros((h, w, 3), np.uint8), np.zeros((h, w), np.float32), np.zeros((h, w), bool),
                      Intrinsics.from_focal(20.0, w, h), sample_id="b")  # fmt: skip


def test_nearest_fill_splits_the_image_between_two_points():
    d = np.zeros((3, 8), np.float32)
    m = np.zeros((3, 8), bool)
    d[1, 0], m[1, 0] = 2.0, True
    d[1, 7], m[1, 7] = 5.0, True
    out = nearest_fill(d, m)
    np.testing.assert_array_equal(out[:, :4], 2.0)  # columns 0-3 are closer to column 0
    np.testing.assert_array_equal(out[:, 4:], 5.0)


@settings(max_examples=20, deadline=None)
@given(st.floats(0.5, 5), st.floats(-0.05, 0.05), st.floats(-0.05, 0.05), st.integers(0, 2**31 - 1))
def test_linear_fill_reproduces_a_plane_inside_the_hull(c, a, b, seed):
    h, w = 24, 32
    v, u = np.mgrid[0:h, 0:w]
    plane = (c + 3.0 + a * u + b * v).astype(np.float64)
    rng = np.random.default_rng(seed)
    m = np.zeros((h, w), bool)
    m[rng.integers(0, h, 40), rng.integers(0, w, 40)] = True
    m[0, 0] = m[0, w - 1] = m[h - 1, 0] = m[h - 1, w - 1] = True  # hull = the whole image
    out = linear_fill(plane.astype(np.float32), m)
    np.testing.assert_allclose(out, plane, rtol=1e-5)


def test_linear_fill_uses_nearest_outside_the_hull_and_for_degenerate_prompts():
    d = np.zeros((10, 10), np.float32)
    m = np.zeros((10, 10), bool)
    for (r, c), z in zip([(2, 2), (2, 6), (6, 2)], [1.0, 2.0, 3.0], strict=True):
        d[r, c], m[r, c] = z, True
    out = linear_fill(d, m)
    assert out[2, 4] == pytest.approx(1.5)  # on the edge between (2,2) and (2,6)
    assert out[9, 9] == nearest_fill(d, m)[9, 9]  # outside the triangle
    # two points / collinear points: no triangulation -> nearest
    m2 = np.zeros_like(m)
    m2[2, 2] = m2[2, 6] = True
    np.testing.assert_array_equal(linear_fill(d, m2), nearest_fill(d, m2))
    m3 = m2.copy()
    m3[2, 8] = True
    np.testing.assert_array_equal(linear_fill(d, m3), nearest_fill(d, m3))


def test_morphological_fill_is_exact_on_constant_depth_and_keeps_prompts():
    rng = np.random.default_rng(0)
    m = rng.random((40, 50)) < 0.05
    d = np.where(m, 3.0, 0).astype(np.float32)
    np.testing.assert_allclose(morphological_fill(d, m), 3.0, rtol=1e-6)
    d2 = np.where(m, rng.uniform(1, 8, m.shape), 0).astype(np.float32)
    out = morphological_fill(d2, m)
    assert np.isfinite(out).all() and out.min() >= d2[m].min() - 1e-6 and out.max() <= d2[m].max() + 1e-6
    np.testing.assert_array_equal(out[m], d2[m])


def test_morphological_fill_lets_the_nearer_surface_win():
    # a near object (1 m) sampled by four points among far points (10 m): max-filters of the inverted
    # depth spread the near value between them and up to half-way to the far points
    d = np.full((21, 21), 0, np.float32)
    m = np.zeros((21, 21), bool)
    m[::4, ::4] = True
    d[m] = 10.0
    d[8:13:4, 8:13:4] = 1.0
    out = morphological_fill(d, m, blur="none", keep_prompt=False)
    assert out[10, 10] == pytest.approx(1.0) and out[10, 13] == pytest.approx(1.0)
    assert out[10, 14] == pytest.approx(1.0) and out[10, 15] == pytest.approx(10.0)
    assert out[0, 20] == pytest.approx(10.0)


def test_prompt_baselines_through_the_predictor_interface():
    s = blank(12, 8)
    prompt = Prompt.from_points(np.array([[1, 1, 2.0], [10, 1, 4.0], [5, 6, 9.0]]), 12, 8)
    for pred in (NearestFill(), LinearFill(), MorphologicalFill()):
        out = pred.predict(s, prompt, None)
        assert out.shape == (8, 12) and out.dtype == np.float32
        assert out[1, 1] == pytest.approx(2.0) and out[6, 5] == pytest.approx(9.0)
    np.testing.assert_array_equal(PromptMedian().predict(s, prompt, None), 4.0)
    with pytest.raises(InvalidInputError, match="needs a prompt"):
        NearestFill().predict(s, None, None)
    with pytest.raises(InvalidInputError, match="12x8"):
        NearestFill().predict(s, Prompt.from_points(np.array([[1, 1, 2.0]]), 6, 4), None)


def test_constants():
    s = blank(6, 4)
    np.testing.assert_array_equal(ConstantDepth(2.5).predict(s, None, None), 2.5)
    with pytest.raises(InvalidInputError, match="finite and > 0"):
        ConstantDepth(0.0)
    a = RGBDSample(np.zeros((1, 3, 3), np.uint8), np.array([[1, 2, 0]], np.float32), np.array([[1, 1, 0]], bool),
                   Intrinsics.from_focal(1, 3, 1))  # fmt: skip
    b = RGBDSample(np.zeros((1, 2, 3), np.uint8), np.array([[7, 9]], np.float32), np.ones((1, 2), bool),
                   Intrinsics.from_focal(1, 2, 1))  # fmt: skip
    assert median_depth_of([a, b]) == pytest.approx(np.median([1, 2, 7, 9]))


def test_prompt_compatibility_rules():
    check_prompt_compatibility(NearestFill(), "points:10")
    check_prompt_compatibility(ConstantDepth(1.0), None)
    check_prompt_compatibility(ConstantDepth(1.0), "points:10")  # a constant tolerates (ignores) prompts
    with pytest.raises(InvalidInputError, match="needs a prompt.*--prompt"):
        check_prompt_compatibility(LinearFill(), None)
    student = ExternalModel(lambda image: np.ones(image.shape[:2]), "student:x", accepts_prompt=False)
    with pytest.raises(InvalidInputError, match="prompt-free and cannot use --prompt lidar:16"):
        check_prompt_compatibility(student, "lidar:16")


def test_external_model_passes_inputs_and_resizes_output():
    s = blank(8, 4)
    K = s.intrinsics
    seen = {}

    def fn(image, prompt=None, intrinsics=None):
        seen.update(image=image.shape, prompt=prompt, intrinsics=intrinsics)
        return np.full((2, 4), 3.0)  # half resolution -> bilinear upsampling of a constant is the constant

    m = ExternalModel(fn, "ext", accepts_prompt=True, pass_intrinsics=True)
    prompt = Prompt.from_points(np.array([[1, 1, 2.0]]), 8, 4)
    out = m.predict(s, prompt, K)
    assert out.shape == (4, 8) and np.all(out == 3.0)
    assert seen["image"] == (4, 8, 3) and seen["prompt"] is prompt and seen["intrinsics"] is K

    def as_map(image, prompt_depth, prompt_mask):
        return np.where(prompt_mask, prompt_depth, 1.0)

    out = ExternalModel(as_map, "map", accepts_prompt=True, prompt_format="map").predict(s, prompt, None)
    assert out[1, 1] == 2.0 and out[0, 0] == 1.0

    class Result:  # DepthResult-like
        depth = np.full((4, 8), 2.0, np.float32)

    assert ExternalModel(lambda image: Result(), "obj").predict(s, None, None)[0, 0] == 2.0
    with pytest.raises(InvalidInputError, match="non-finite or non-positive"):
        ExternalModel(lambda image: np.zeros((4, 8)), "zero").predict(s, None, None)
    with pytest.raises(InvalidInputError, match="H x W depth map"):
        ExternalModel(lambda image: np.zeros((2, 4, 8)), "bad").predict(s, None, None)


def test_external_model_from_api_adapter():
    calls = []

    def infer(model, image, intrinsics=None, prompt=None):
        calls.append((model, intrinsics, prompt))
        return np.full(image.shape[:2], 5.0)

    s = blank(6, 4)
    pred = ExternalModel.from_api("MODEL", infer, "teacher:t", accepts_prompt=True)
    out = pred.predict(s, None, s.intrinsics)
    assert np.all(out == 5.0) and calls == [("MODEL", s.intrinsics, None)]
    assert pred.accepts_prompt and not pred.needs_prompt


@settings(max_examples=15, deadline=None)
@given(st.integers(3, 200), st.integers(0, 2**31 - 1))
def test_linear_fill_equals_scipy_griddata(n, seed):
    from scipy.interpolate import griddata

    rng = np.random.default_rng(seed)
    h, w = 30, 41
    m = np.zeros((h, w), bool)
    m[rng.integers(0, h, n), rng.integers(0, w, n)] = True
    d = np.where(m, rng.uniform(0.5, 50, (h, w)), 0).astype(np.float32)
    rows, cols = np.nonzero(m)
    gv, gu = np.mgrid[0:h, 0:w]
    try:
        ref = griddata(np.stack([cols, rows], 1).astype(float), d[rows, cols].astype(float), (gu, gv), method="linear")
    except Exception:  # degenerate (collinear) prompt: both fall back to nearest
        ref = np.full((h, w), np.nan)
    ref = np.where(np.isfinite(ref), ref, nearest_fill(d, m))
    np.testing.assert_allclose(linear_fill(d, m), ref, rtol=1e-5)


def test_plane_fill_baselines_are_the_teachers_reference_alone():
    """baseline:knn_plane[_guided]: exact at the prompts, exact on a plane (inverse depth affine in u, v), and the
    guided one follows a colour edge that is a depth edge."""
    from metricanything.eval.runner import build_predictor

    h, w = 30, 40
    vv, uu = np.mgrid[0:h, 0:w]
    plane = 1.0 / (0.2 + 0.003 * uu + 0.004 * vv)
    rng = np.random.default_rng(0)
    idx = rng.choice(h * w, 60, replace=False)
    pts = np.stack([uu.ravel()[idx], vv.ravel()[idx], plane.ravel()[idx]], 1)
    s = blank(w, h)
    for pred in (PlaneFill(), PlaneFill(guided=True)):
        out = pred.predict(s, Prompt.from_points(pts, w, h), None)
        assert out.shape == (h, w) and out.dtype == np.float32
        np.testing.assert_allclose(out[pts[:, 1].astype(int), pts[:, 0].astype(int)], pts[:, 2], rtol=1e-5)
        assert np.median(np.abs(out / plane - 1)) < 1e-4
    step = np.where(uu < w // 2, 2.0, 6.0).astype(np.float32)
    image = np.zeros((h, w, 3), np.uint8)
    image[:, : w // 2, 0] = 230
    image[:, w // 2 :, 2] = 230
    s2 = RGBDSample(image, np.zeros((h, w), np.float32), np.zeros((h, w), bool), Intrinsics.from_focal(20.0, w, h),
                    sample_id="edge")  # fmt: skip
    prompt = Prompt.from_points(np.stack([uu.ravel()[idx], vv.ravel()[idx], step.ravel()[idx]], 1), w, h)
    band = np.abs(uu - w // 2 + 0.5) < 4
    err = {g: float(np.mean(np.abs(np.log(PlaneFill(guided=g).predict(s2, prompt, None) / step))[band]))
           for g in (False, True)}  # fmt: skip
    assert err[True] < 0.5 * err[False]
    assert PlaneFill(guided=True).name == "baseline:knn_plane_guided" and PlaneFill().needs_prompt
    from metricanything.eval.benchmarks import load_benchmark

    assert isinstance(build_predictor("baseline:knn_plane_guided", load_benchmark("real_dev")), PlaneFill)
