"""Losses on hand-made cases: exact trimming, exact band balance, invalid pixels never leak."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metricanything.errors import InvalidInputError
from metricanything.losses import (
    distance_balanced_inverse_depth_loss,
    distance_balanced_weights,
    gradient_matching_loss,
    robust_mae,
    trimmed_count,
)


def _img(values, shape=(1, 1, 2, 5)):
    return torch.tensor(values, dtype=torch.float32).reshape(shape)


def test_robust_mae_drops_exactly_the_largest_residuals():
    # 10 valid pixels, depth-space residuals 1..10; trim 0.2 drops floor(2) = the residuals 9 and 10.
    target = _img([1.0] * 10)
    pred = target + _img([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    valid = torch.ones_like(target, dtype=torch.bool)
    loss = robust_mae(pred, target, valid, trim=0.2, space="depth")
    assert loss.item() == pytest.approx(sum(range(1, 9)) / 8)
    # the gradient reaches exactly the kept pixels, each with 1/8
    pred = pred.clone().requires_grad_(True)
    robust_mae(pred, target, valid, trim=0.2, space="depth").backward()
    g = pred.grad.flatten().tolist()
    assert g[:8] == pytest.approx([1 / 8] * 8)
    assert g[8:] == [0.0, 0.0]


def test_robust_mae_rounding_is_floor_and_keeps_at_least_one():
    assert trimmed_count(torch.tensor([10, 9, 4, 1, 0, 100]), 0.2).tolist() == [8, 8, 4, 1, 0, 80]
    # 0.29 * 100 is 28.999999999999996 in floating point; floor must still drop 29
    assert trimmed_count(torch.tensor([100]), 0.29).tolist() == [71]
    assert trimmed_count(torch.tensor([3]), 0.99).tolist() == [1]


def test_robust_mae_ignores_invalid_pixels_even_if_nan():
    target = _img([2.0, 2.0, float("nan"), 0.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0])
    valid = torch.isfinite(target) & (target > 0)
    pred = torch.full_like(target, 4.0).requires_grad_(True)
    # inverse space: |1/4 - 1/2| = 0.25 everywhere valid; 8 valid, drop floor(1.6) = 1 -> mean 0.25
    loss = robust_mae(pred, target, valid, trim=0.2, space="inverse")
    assert loss.item() == pytest.approx(0.25)
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    assert pred.grad.flatten()[2].item() == 0.0 and pred.grad.flatten()[3].item() == 0.0


def test_robust_mae_per_image_mean_skips_images_without_valid_pixels():
    target = torch.ones(3, 1, 2, 2)
    pred = torch.stack([torch.full((1, 2, 2), 2.0), torch.full((1, 2, 2), 3.0), torch.full((1, 2, 2), 9.0)])
    valid = torch.ones_like(target, dtype=torch.bool)
    valid[2] = False
    per = robust_mae(pred, target, valid, trim=0.0, space="depth", reduction="none")
    assert per[:2].tolist() == pytest.approx([1.0, 2.0]) and math.isnan(per[2].item())
    assert robust_mae(pred, target, valid, trim=0.0, space="depth").item() == pytest.approx(1.5)
    # nothing valid at all: a zero that still has a graph
    p = pred.clone().requires_grad_(True)
    zero = robust_mae(p, target, torch.zeros_like(valid), space="depth")
    zero.backward()
    assert zero.item() == 0.0 and (p.grad == 0).all()


def test_robust_mae_spaces_and_scale():
    target = _img([2.0, 4.0], (1, 1, 1, 2))
    pred = _img([4.0, 4.0], (1, 1, 1, 2))
    valid = torch.ones_like(target, dtype=torch.bool)
    assert robust_mae(pred, target, valid, 0.0, "log").item() == pytest.approx(math.log(2) / 2)
    assert robust_mae(pred, target, valid, 0.0, "inverse").item() == pytest.approx(0.25 / 2)
    scaled = robust_mae(pred, target, valid, 0.0, "inverse", scale=torch.tensor([3.0]))
    assert scaled.item() == pytest.approx(0.75 / 2)
    # inverse inputs: the same numbers given as inverse depth give the same inverse/log residuals
    inv = robust_mae(1 / pred, 1 / target, valid, 0.0, "log", input_space="inverse")
    assert inv.item() == pytest.approx(math.log(2) / 2)
    with pytest.raises(InvalidInputError):
        robust_mae(pred, target, valid, 1.0)
    with pytest.raises(InvalidInputError):
        robust_mae(pred, target, valid, 0.2, "sqrt")


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.floats(0.0, 100.0, allow_nan=False), min_size=1, max_size=40),
    st.floats(0.0, 0.9),
)
def test_robust_mae_equals_sorted_reference(residuals, trim):
    n = len(residuals)
    target = torch.ones(1, 1, 1, n)
    pred = target + torch.tensor(residuals, dtype=torch.float32).reshape(1, 1, 1, n)
    valid = torch.ones_like(target, dtype=torch.bool)
    r = sorted((pred - target).flatten().tolist())
    keep = n - math.floor(trim * n + 1e-9)
    expected = sum(r[:keep]) / keep
    assert robust_mae(pred, target, valid, trim, "depth").item() == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_balanced_weights_equal_per_band_and_sum_to_one():
    # depths 1 (x6), 10 (x3), 100 (x1) with 3 log bins over [1, 100] -> bins of 6, 3, 1 pixels
    depth = _img([1.0] * 6 + [10.0] * 3 + [100.0])
    valid = torch.ones_like(depth, dtype=torch.bool)
    w = distance_balanced_weights(depth, valid, n_bins=3).flatten()
    assert w[:6].tolist() == pytest.approx([1 / 18] * 6)
    assert w[6:9].tolist() == pytest.approx([1 / 9] * 3)
    assert w[9].item() == pytest.approx(1 / 3)
    for band in (w[:6], w[6:9], w[9:]):
        assert band.sum().item() == pytest.approx(1 / 3)
    assert w.sum().item() == pytest.approx(1.0)


def test_balanced_weights_empty_bins_and_invalid_pixels():
    # 4 bins over [1, 1000] in log space: 1 -> bin 0, 1000 -> bin 3; bins 1 and 2 are empty
    depth = _img([1.0, 1.0, 1.0, 1000.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    valid = depth > 0
    w = distance_balanced_weights(depth, valid, n_bins=4).flatten()
    assert w[:3].tolist() == pytest.approx([1 / 6] * 3)
    assert w[3].item() == pytest.approx(0.5)
    assert (w[4:] == 0).all()
    # balance 0 is the plain mean; inverse input space bins the same depths
    w0 = distance_balanced_weights(depth, valid, n_bins=4, balance=0.0).flatten()
    assert w0[:4].tolist() == pytest.approx([0.25] * 4)
    inv = torch.where(valid, 1 / depth.clamp_min(1e-6), torch.zeros_like(depth))
    w_inv = distance_balanced_weights(inv, valid, n_bins=4, input_space="inverse").flatten()
    assert torch.allclose(w_inv, w)


def test_balanced_weights_fixed_range_clamps_into_end_bins():
    depth = _img([0.01, 1.0, 5.0, 1e4], (1, 1, 1, 4))
    valid = torch.ones_like(depth, dtype=torch.bool)
    w = distance_balanced_weights(depth, valid, n_bins=2, depth_range=(1.0, 100.0)).flatten()
    # bins [1,10) and [10,100]: 0.01, 1, 5 -> bin 0 (clamped), 1e4 -> bin 1 (clamped)
    assert w.tolist() == pytest.approx([1 / 6, 1 / 6, 1 / 6, 0.5])


def test_distance_balanced_loss_value():
    depth = _img([1.0, 1.0, 1.0, 10.0], (1, 1, 1, 4))
    valid = torch.ones_like(depth, dtype=torch.bool)
    pred = _img([0.5, 1.0, 1.0, 5.0], (1, 1, 1, 4))
    # inverse residuals: 1, 0, 0, 0.1; weights 1/6,1/6,1/6,1/2
    loss = distance_balanced_inverse_depth_loss(pred, depth, valid, n_bins=2)
    assert loss.item() == pytest.approx(1 / 6 + 0.05)
    # canonical inverse inputs, compared directly
    c_loss = distance_balanced_inverse_depth_loss(1 / pred, 1 / depth, valid, n_bins=2, input_space="inverse")
    assert c_loss.item() == pytest.approx(1 / 6 + 0.05)


def test_gradient_matching_is_scale_invariant_in_log_space_and_sees_edges():
    torch.manual_seed(0)
    target = torch.rand(2, 1, 16, 16) * 5 + 1
    valid = torch.rand(2, 1, 16, 16) > 0.2
    assert gradient_matching_loss(target * 3.0, target, valid).item() == pytest.approx(0.0, abs=1e-6)
    # a step edge present in the prediction but not in the target costs
    pred = target.clone()
    pred[:, :, :, 8:] *= 2.0
    full = torch.ones_like(valid)
    assert gradient_matching_loss(pred, target, full, scales=1).item() == pytest.approx(
        math.log(2) * 16 / (2 * 16 * 15), rel=1e-5
    )


def test_distance_balanced_bins_can_come_from_metric_depth():
    # canonical inverse depth C* = f / (W D) with f/W = 0.5; bands from the metric depth D
    depth = _img([1.0, 1.0, 1.0, 10.0], (1, 1, 1, 4))
    valid = torch.ones_like(depth, dtype=torch.bool)
    target = 0.5 / depth
    pred = target + _img([0.3, 0.0, 0.0, 0.2], (1, 1, 1, 4))
    loss = distance_balanced_inverse_depth_loss(pred, target, valid, n_bins=2, input_space="inverse", bin_depth=depth)
    assert loss.item() == pytest.approx(0.3 / 6 + 0.2 / 2)
