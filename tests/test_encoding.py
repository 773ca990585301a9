"""Network encoding of prompts: fill-value invariance, scale statistic, empty prompts, validation."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metricanything.errors import InvalidInputError
from metricanything.prompts import PROMPT_CHANNELS, encode_prompt


def _prompt(seed: int, b: int = 3, h: int = 12, w: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    depth = torch.exp(torch.randn(b, 1, h, w, generator=g)) * 5
    mask = torch.rand(b, 1, h, w, generator=g) < 0.2
    mask[:, :, 0, 0] = True
    return depth, mask


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), fill=st.sampled_from([0.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e30]))
def test_fill_value_invariance(seed, fill):
    depth, mask = _prompt(seed)
    g = torch.Generator().manual_seed(seed + 1)
    garbage = torch.where(mask, depth, torch.randn(depth.shape, generator=g) * 100)
    filled = torch.where(mask, depth, torch.full_like(depth, fill))
    a, b, c = encode_prompt(depth, mask), encode_prompt(garbage, mask), encode_prompt(filled, mask)
    for other in (b, c):
        assert torch.equal(a.features, other.features)
        assert torch.equal(a.log_scale, other.log_scale)
        assert torch.equal(a.has_prompt, other.has_prompt)
    assert torch.isfinite(a.features).all()


def test_values_scale_and_mask_channel():
    depth, mask = _prompt(0)
    enc = encode_prompt(depth, mask)
    assert enc.features.shape == (3, PROMPT_CHANNELS, 12, 16)
    assert torch.equal(enc.mask, mask)
    assert torch.equal(enc.features[:, 1:2], mask.float())
    for i in range(3):
        logs = torch.log(depth[i][mask[i]]).sort().values
        assert float(enc.log_scale[i]) == pytest.approx(float(logs[(logs.numel() - 1) // 2]), abs=1e-6)
    # reconstruction: exp(feature + log_scale) gives back the depth at masked pixels
    rec = torch.exp(enc.features[:, :1] + enc.log_scale.view(-1, 1, 1, 1))
    torch.testing.assert_close(rec[mask], depth[mask], rtol=1e-5, atol=0)
    assert (enc.features[:, :1][~mask] == 0).all()


def test_scale_equivariance():
    depth, mask = _prompt(1)
    a, b = encode_prompt(depth, mask), encode_prompt(depth * 7.0, mask)
    torch.testing.assert_close(a.features, b.features, atol=1e-5, rtol=0)
    torch.testing.assert_close(b.log_scale - a.log_scale, torch.full((3,), math.log(7.0)), atol=1e-5, rtol=0)


def test_empty_prompt():
    depth, mask = _prompt(2)
    mask[1] = False
    enc = encode_prompt(depth, mask)
    assert enc.has_prompt.tolist() == [True, False, True]
    assert float(enc.log_scale[1]) == 0.0
    assert (enc.features[1] == 0).all()
    empty = encode_prompt(torch.full((1, 1, 4, 4), float("nan")), torch.zeros(1, 1, 4, 4, dtype=torch.bool))
    assert not bool(empty.has_prompt[0]) and (empty.features == 0).all()


def test_bad_masked_values_and_shapes_raise():
    depth, mask = _prompt(3)
    for bad in (0.0, -2.0, float("nan"), float("inf")):
        d = depth.clone()
        d[0, 0, 0, 0] = bad  # mask is True there
        with pytest.raises(InvalidInputError, match="finite and > 0"):
            encode_prompt(d, mask)
    with pytest.raises(InvalidInputError, match="differ"):
        encode_prompt(depth, mask[:, :, :5])
    # B x H x W inputs are accepted as a single channel
    torch.testing.assert_close(encode_prompt(depth[:, 0], mask[:, 0]).features, encode_prompt(depth, mask).features)
