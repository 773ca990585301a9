"""Depth metrics against hand-computed values, aggregation, alignment and bad-input policies."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metricanything import metrics
from metricanything.errors import InvalidInputError

# gt has a hole (0 at the bottom-right): scored pixels are (gt, pred) = (1, 2), (2, 2), (4, 3)
GT = np.array([[1.0, 2.0], [4.0, 0.0]], dtype=np.float32)
PRED = np.array([[2.0, 2.0], [3.0, 7.0]], dtype=np.float32)


def test_hand_computed_values_with_a_hole() -> None:
    m = metrics.compute_metrics(PRED, GT)
    ln2, ln34 = math.log(2), math.log(0.75)
    expected = {
        "abs_rel": (1 + 0 + 0.25) / 3,
        "sq_rel": (1 + 0 + 1 / 4) / 3,
        "rmse": math.sqrt(2 / 3),
        "mae": 2 / 3,
        "rmse_log": math.sqrt((ln2**2 + ln34**2) / 3),
        "log10": (math.log10(2) + abs(math.log10(0.75))) / 3,
        "silog": math.sqrt((ln2**2 + ln34**2) / 3 - 0.5 * ((ln2 + ln34) / 3) ** 2),
        "delta1": 1 / 3,  # ratios 2, 1, 4/3
        "delta2": 2 / 3,  # 4/3 < 1.5625 < 2
        "delta3": 2 / 3,  # 2 > 1.953125
        "rmse_mm": 1000 * math.sqrt(2 / 3),
        "mae_mm": 1000 * 2 / 3,
        "irmse": 1000 * math.sqrt((0.25 + 0 + (1 / 12) ** 2) / 3),
        "imae": 1000 * (0.5 + 0 + 1 / 12) / 3,
    }
    assert set(metrics.METRIC_NAMES) == set(expected)
    for name, value in expected.items():
        assert m[name] == pytest.approx(value, rel=1e-12), name
    assert m["n"] == 3 and m["num_excluded"] == 0 and m["num_clipped"] == 0
    # an explicit mask selects the same pixels; masking one more removes it
    same = metrics.compute_metrics(PRED, GT, GT > 0)
    assert same["abs_rel"] == m["abs_rel"]
    fewer = metrics.compute_metrics(PRED, GT, np.array([[True, True], [False, False]]))
    assert fewer["abs_rel"] == pytest.approx(0.5) and fewer["n"] == 2


def test_one_valid_pixel() -> None:
    mask = np.array([[False, True], [False, False]])
    m = metrics.compute_metrics(np.full((2, 2), 3.0), np.full((2, 2), 2.0), mask)
    e = math.log(1.5)
    assert m["abs_rel"] == pytest.approx(0.5) and m["rmse"] == pytest.approx(1.0) and m["mae"] == pytest.approx(1.0)
    assert m["silog"] == pytest.approx(abs(e) / math.sqrt(2)) and m["rmse_log"] == pytest.approx(e)
    assert m["delta1"] == 0.0 and m["delta2"] == 1.0 and m["n"] == 1


def test_no_valid_pixel_is_an_error() -> None:
    with pytest.raises(InvalidInputError, match="no valid pixel"):
        metrics.compute_metrics(np.ones((2, 2)), np.zeros((2, 2)))
    with pytest.raises(InvalidInputError, match="no valid pixel"):
        metrics.compute_metrics(np.ones((2, 2)), np.ones((2, 2)), np.zeros((2, 2), bool))
    with pytest.raises(InvalidInputError, match="no valid pixel"):
        metrics.compute_metrics(np.ones((2, 2)), np.ones((2, 2)), min_depth=2.0)


def test_depth_range_caps_are_inclusive() -> None:
    gt = np.array([1.0, 2.0, 3.0, 4.0])
    m = metrics.compute_metrics(gt * 2, gt, min_depth=2.0, max_depth=3.0)
    assert m["n"] == 2 and m["abs_rel"] == pytest.approx(1.0)


def test_nonfinite_predictions_raise_or_are_excluded() -> None:
    pred = PRED.copy()
    pred[0, 0], pred[1, 0] = np.nan, np.inf
    with pytest.raises(InvalidInputError, match="2 NaN/inf"):
        metrics.compute_metrics(pred, GT)
    m = metrics.compute_metrics(pred, GT, nonfinite="exclude")
    assert m["n"] == 1 and m["num_excluded"] == 2 and m["abs_rel"] == 0.0
    hole_only = PRED.copy()
    hole_only[1, 1] = np.nan  # under the GT hole: never read
    assert metrics.compute_metrics(hole_only, GT)["abs_rel"] == pytest.approx(1.25 / 3)
    with pytest.raises(InvalidInputError, match="every scored prediction"):
        metrics.compute_metrics(np.full((2, 2), np.nan), GT, nonfinite="exclude")


def test_nonpositive_predictions_raise_or_are_clipped() -> None:
    pred = PRED.copy()
    pred[0, 1] = 0.0
    with pytest.raises(InvalidInputError, match="1 non-positive"):
        metrics.compute_metrics(pred, GT)
    m = metrics.compute_metrics(pred, GT, nonpositive="clip", clip_eps=0.5)
    assert m["num_clipped"] == 1
    assert m["abs_rel"] == pytest.approx((1 + 0.75 + 0.25) / 3)


def test_ground_truth_and_shape_validation() -> None:
    with pytest.raises(InvalidInputError, match="marked valid"):
        metrics.compute_metrics(PRED, GT, np.ones((2, 2), bool))
    with pytest.raises(InvalidInputError, match="shape"):
        metrics.compute_metrics(PRED, GT[:1])
    with pytest.raises(InvalidInputError, match="mask shape"):
        metrics.compute_metrics(PRED, GT, np.ones((3, 2), bool))
    with pytest.raises(InvalidInputError, match="alignment"):
        metrics.compute_metrics(PRED, GT, alignment="affine")
    with pytest.raises(InvalidInputError, match="nonfinite"):
        metrics.MetricAccumulator(nonfinite="ignore")


def test_pooled_and_per_image_mean_differ_as_expected() -> None:
    acc = metrics.MetricAccumulator()
    a = acc.add(np.array([2.0]), np.array([1.0]))  # one bad pixel
    b = acc.add(np.ones(3), np.ones(3))  # three perfect pixels
    assert a["abs_rel"] == 1.0 and b["abs_rel"] == 0.0
    mean, pooled = acc.per_image_mean(), acc.pooled()
    assert mean["abs_rel"] == pytest.approx(0.5) and pooled["abs_rel"] == pytest.approx(0.25)
    assert mean["delta1"] == pytest.approx(0.5) and pooled["delta1"] == pytest.approx(0.75)
    assert mean["rmse"] == pytest.approx(0.5) and pooled["rmse"] == pytest.approx(math.sqrt(1 / 4))
    assert pooled["silog"] == pytest.approx(math.sqrt(math.log(2) ** 2 / 4 - 0.5 * (math.log(2) / 4) ** 2))
    assert pooled["n"] == 4 and mean["n"] == 2 and acc.num_images == 2
    s = acc.summary()
    assert s["num_images"] == 2 and s["num_pixels"] == 4 and s["pooled"] == pooled
    with pytest.raises(InvalidInputError, match="no image"):
        metrics.MetricAccumulator().pooled()


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 5))
def test_single_image_pooled_equals_per_image_and_split_pooling(seed: int, parts: int) -> None:
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0.5, 50, 60)
    pred = gt * np.exp(rng.normal(0, 0.3, 60))
    whole = metrics.compute_metrics(pred, gt)
    acc = metrics.MetricAccumulator()
    for chunk in np.array_split(np.arange(60), parts):
        acc.add(pred[chunk], gt[chunk])
    pooled = acc.pooled()
    for name in metrics.METRIC_NAMES:
        assert pooled[name] == pytest.approx(whole[name], rel=1e-9, abs=1e-12), name


def test_alignment_median() -> None:
    gt = np.array([1.0, 2.0, 4.0, 8.0, 3.0])
    m = metrics.compute_metrics(2.0 * gt, gt, alignment="median")
    assert m["scale"] == pytest.approx(0.5) and m["abs_rel"] == pytest.approx(0.0, abs=1e-12)
    assert metrics.fit_median_scale(np.array([1.0, 2.0, 10.0]), np.array([3.0, 4.0, 5.0])) == pytest.approx(2.0)
    mi = metrics.compute_metrics(2.0 * gt, gt, alignment="median", space="inverse")
    assert mi["scale"] == pytest.approx(2.0) and mi["abs_rel"] == pytest.approx(0.0, abs=1e-12)


def test_alignment_least_squares_scale_by_hand() -> None:
    gt, pred = np.array([2.0, 3.0]), np.array([1.0, 2.0])
    m = metrics.compute_metrics(pred, gt, alignment="scale")
    s = (1 * 2 + 2 * 3) / (1 + 4)  # sum(xy) / sum(x^2) = 8/5
    assert m["scale"] == pytest.approx(s) and m["shift"] == 0.0
    assert m["abs_rel"] == pytest.approx((abs(1.6 - 2) / 2 + abs(3.2 - 3) / 3) / 2)
    # the same fit in inverse depth: x = 1/p = (1, 1/2), y = 1/g = (1/2, 1/3)
    mi = metrics.compute_metrics(pred, gt, alignment="scale", space="inverse")
    si = (0.5 + 1 / 6) / (1 + 0.25)
    assert mi["scale"] == pytest.approx(si)
    aligned_depth = 1 / (si * np.array([1.0, 0.5]))
    assert mi["abs_rel"] == pytest.approx(float(np.mean(np.abs(aligned_depth - gt) / gt)))


def test_alignment_scale_shift_recovers_affine_predictions() -> None:
    gt = np.array([[1.0, 2.0, 4.0], [8.0, 0.0, 3.0]])
    valid = gt > 0
    m = metrics.compute_metrics(np.where(valid, 2.0 * gt + 1.0, 0.0), gt, alignment="scale_shift")
    assert m["scale"] == pytest.approx(0.5) and m["shift"] == pytest.approx(-0.5)
    assert m["abs_rel"] == pytest.approx(0.0, abs=1e-12) and m["delta1"] == 1.0
    inv = np.where(valid, 1.0 / np.where(valid, gt, 1.0), 0.0)
    disparity = 3.0 * inv + 0.1  # an affine-invariant inverse-depth prediction, as relative models give
    mi = metrics.compute_metrics(1.0 / disparity, gt, alignment="scale_shift", space="inverse")
    assert mi["scale"] == pytest.approx(1 / 3) and mi["shift"] == pytest.approx(-0.1 / 3)
    assert mi["abs_rel"] == pytest.approx(0.0, abs=1e-12)
    md = metrics.compute_metrics(disparity, gt, alignment="scale_shift", space="inverse", pred_space="inverse")
    assert md["abs_rel"] == pytest.approx(0.0, abs=1e-12)
    plain = metrics.compute_metrics(inv * 0.5, gt, pred_space="inverse")  # 1/(0.5/g) = 2g, no alignment
    assert plain["abs_rel"] == pytest.approx(1.0)


def test_alignment_errors_and_nonpositive_after_alignment() -> None:
    with pytest.raises(InvalidInputError, match="constant"):
        metrics.compute_metrics(np.array([2.0]), np.array([1.0]), alignment="scale_shift")
    with pytest.raises(InvalidInputError, match="constant"):
        metrics.fit_scale_shift(np.ones(4), np.arange(4.0))
    with pytest.raises(InvalidInputError, match="0 on every pixel"):
        metrics.fit_scale(np.zeros(3), np.ones(3))
    with pytest.raises(InvalidInputError, match="empty"):
        metrics.fit_scale(np.ones(3), np.ones(3), np.zeros(3, bool))
    # an inverse-space affine fit that lands below zero: y = 1/g = (1, .1, .1, .1) against x = (.1, 1, 2, 3)
    # gives s = -0.2724, t = 0.7405, so s x + t = -0.077 at x = 3
    gt = np.array([1.0, 10.0, 10.0, 10.0])
    disparity = np.array([0.1, 1.0, 2.0, 3.0])
    with pytest.raises(InvalidInputError, match="non-positive aligned inverse depth"):
        metrics.compute_metrics(disparity, gt, alignment="scale_shift", space="inverse", pred_space="inverse")
    m = metrics.compute_metrics(
        disparity, gt, alignment="scale_shift", space="inverse", pred_space="inverse", nonpositive="clip"
    )
    assert m["num_clipped"] == 1 and m["scale"] == pytest.approx(-0.27244, abs=1e-4)
    assert m["abs_rel"] > 10  # the clipped pixel is scored at 1/clip_eps = 1 km: a visible failure
    with pytest.raises(InvalidInputError, match="cannot be inverted"):
        metrics.compute_metrics(np.array([1.0, -1.0]), np.array([1.0, 2.0]), alignment="scale", space="inverse")


def test_align_prediction_is_public_and_applies_to_the_whole_image() -> None:
    gt = np.array([[1.0, 2.0], [3.0, 0.0]])
    pred = np.array([[3.0, 6.0], [9.0, 30.0]])
    aligned, params = metrics.align_prediction(pred, gt, gt > 0, "scale")
    assert params == {"scale": pytest.approx(1 / 3), "shift": 0.0}
    np.testing.assert_allclose(aligned, [[1.0, 2.0], [3.0, 10.0]])


def test_range_breakdown() -> None:
    gt = np.array([1.0, 5.0, 15.0, 0.0])
    pred = np.array([1.0, 6.0, 15.0, 9.0])
    r = metrics.metrics_by_range(pred, gt, None, [0, 2, 10, 20, 80])
    assert list(r) == ["0-2m", "2-10m", "10-20m", "20-80m"]
    assert r["0-2m"]["abs_rel"] == 0.0 and r["2-10m"]["abs_rel"] == pytest.approx(0.2)
    assert r["10-20m"]["n"] == 1 and r["10-20m"]["abs_rel"] == 0.0
    assert r["20-80m"] is None
    acc = metrics.MetricAccumulator(range_bins=[0, 2, 10])
    acc.add(np.array([1.0, 6.0]), np.array([1.0, 5.0]))
    acc.add(np.array([4.0]), np.array([2.0]))
    rm = acc.range_metrics()
    assert rm["0-2m"]["num_images"] == 1 and rm["0-2m"]["num_pixels"] == 1
    assert rm["2-10m"]["num_images"] == 2 and rm["2-10m"]["num_pixels"] == 2
    assert rm["2-10m"]["per_image_mean"]["abs_rel"] == pytest.approx((0.2 + 1.0) / 2)
    assert rm["2-10m"]["pooled"]["abs_rel"] == pytest.approx((0.2 + 1.0) / 2)
    assert rm["2-10m"]["pooled"]["rmse"] == pytest.approx(math.sqrt((1 + 4) / 2))
    for bad in ([5], [0, 0], [3, 1], [-1, 2]):
        with pytest.raises(InvalidInputError, match="range bins"):
            metrics.MetricAccumulator(range_bins=bad)
