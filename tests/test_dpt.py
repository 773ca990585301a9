"""Tests for the DPT decoder and its masked prompt pyramid."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metricanything.errors import InvalidInputError
from metricanything.models.dpt import DPTDecoder, level_sizes, masked_pool, prompt_pyramid


def _brute_masked_pool(v: np.ndarray, m: np.ndarray, size: tuple[int, int]):
    """Reference: adaptive windows start=floor(i*H/h), end=ceil((i+1)*H/h)."""
    H, W = v.shape
    h, w = size
    out_v = np.zeros(size)
    out_m = np.zeros(size, dtype=bool)
    for i in range(h):
        r0, r1 = math.floor(i * H / h), math.ceil((i + 1) * H / h)
        for j in range(w):
            c0, c1 = math.floor(j * W / w), math.ceil((j + 1) * W / w)
            mm = m[r0:r1, c0:c1]
            if mm.any():
                out_v[i, j] = v[r0:r1, c0:c1][mm].sum() / mm.sum()
                out_m[i, j] = True
    return out_v, out_m


def test_masked_pool_hand_case_2x2() -> None:
    v = torch.tensor(
        [
            [1.0, 3.0, 9.0, 9.0],
            [5.0, 7.0, 9.0, 9.0],
            [2.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 4.0],
        ]
    ).view(1, 1, 4, 4)
    m = torch.tensor(
        [
            [1, 0, 0, 0],
            [1, 1, 0, 0],
            [1, 0, 0, 0],
            [0, 0, 0, 1],
        ],
        dtype=torch.bool,
    ).view(1, 1, 4, 4)
    pooled, density, mask = masked_pool(v, m.float(), (2, 2))
    # top-left: (1 + 5 + 7) / 3; top-right: nothing observed (the 9s are ignored); bottom-left: 2; bottom-right: 4
    expected = torch.tensor([[13.0 / 3.0, 0.0], [2.0, 4.0]])
    assert torch.allclose(pooled[0, 0], expected, atol=1e-6)
    assert mask[0, 0].tolist() == [[True, False], [True, True]]
    assert torch.allclose(density[0, 0], torch.tensor([[0.75, 0.0], [0.25, 0.25]]))


def test_masked_pool_is_not_bilinear_dilution() -> None:
    # a single observed pixel keeps its value at every coarser level (bilinear/avg pooling would dilute it)
    v = torch.zeros(1, 1, 8, 8)
    m = torch.zeros(1, 1, 8, 8)
    v[0, 0, 5, 2] = 2.5
    m[0, 0, 5, 2] = 1.0
    for size in [(4, 4), (2, 2), (1, 1), (3, 5)]:
        pooled, _, mask = masked_pool(v, m, size)
        assert int(mask.sum()) >= 1
        exact = size != (3, 5)  # integer factors use exact window sums; adaptive windows round once
        assert torch.allclose(pooled[mask], torch.tensor(2.5), rtol=0, atol=0 if exact else 1e-6)
        assert torch.all(pooled[~mask] == 0.0)


def test_masked_pool_ignores_values_under_zero_mask() -> None:
    g = torch.Generator().manual_seed(0)
    v = torch.randn(2, 1, 12, 10, generator=g)
    m = (torch.rand(2, 1, 12, 10, generator=g) > 0.7).float()
    garbage = torch.where(m > 0, v, torch.full_like(v, float("nan")))
    garbage2 = torch.where(m > 0, v, torch.full_like(v, 1e30))
    a = masked_pool(v, m, (3, 4))
    b = masked_pool(garbage, m, (3, 4))
    c = masked_pool(garbage2, m, (3, 4))
    for x, y, z in zip(a, b, c, strict=True):
        assert torch.equal(x, y) and torch.equal(x, z)


@settings(max_examples=30, deadline=None)
@given(
    H=st.integers(1, 13),
    W=st.integers(1, 13),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    seed=st.integers(0, 10_000),
)
def test_masked_pool_matches_bruteforce(H: int, W: int, h: int, w: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(H, W))
    m = rng.random((H, W)) > 0.6
    pooled, _, mask = masked_pool(
        torch.from_numpy(v).view(1, 1, H, W), torch.from_numpy(m).view(1, 1, H, W).double(), (h, w)
    )
    ref_v, ref_m = _brute_masked_pool(v, m, (h, w))
    assert np.array_equal(mask[0, 0].numpy(), ref_m)
    assert np.allclose(pooled[0, 0].numpy(), ref_v, atol=1e-12)


def test_prompt_pyramid_channels_and_errors() -> None:
    feats = torch.zeros(1, 2, 16, 16)
    feats[0, 0, 3, 3] = -0.5
    feats[0, 1, 3, 3] = 1.0
    pyr = prompt_pyramid(feats, level_sizes(2, 2))
    assert [tuple(p.shape[-2:]) for p in pyr] == [(8, 8), (4, 4), (2, 2), (1, 1)]
    for p in pyr:
        assert float(p[0, 1].sum()) == 1.0  # exactly one cell observed per level
        assert float(p[0, 0].sum()) == -0.5
    with pytest.raises(InvalidInputError):
        prompt_pyramid(torch.zeros(1, 1, 4, 4), [(2, 2)])
    # a third (dense) channel is area-averaged, not masked-pooled
    dense = torch.cat([feats, torch.arange(256.0).view(1, 1, 16, 16)], dim=1)
    pyr3 = prompt_pyramid(dense, [(8, 8), (1, 1)])
    assert torch.equal(pyr3[0][:, :2], pyr[0])
    assert float(pyr3[1][0, 2, 0, 0]) == float(torch.arange(256.0).mean())
    assert float(pyr3[0][0, 2, 0, 0]) == float((0 + 1 + 16 + 17) / 4)
    with pytest.raises(InvalidInputError):
        masked_pool(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 4, 4), (2, 2))


def _decoder_inputs(seed: int = 0, gh: int = 3, gw: int = 5, d: int = 24):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, d, gh, gw, generator=g) for _ in range(4)]


def test_decoder_output_size_and_zero_init_prompt_branch() -> None:
    torch.manual_seed(0)
    dec = DPTDecoder(24, reassemble_channels=(8, 12, 16, 20), features=16, head_features=8, prompt_hidden=8)
    tokens = _decoder_inputs()
    out_size = (37, 61)
    base = dec(tokens, out_size)
    assert base.shape == (2, 1, 37, 61)
    assert torch.isfinite(base).all() and base.abs().max() > 0
    prompt = torch.zeros(2, 2, 37, 61)
    prompt[:, 0, ::5, ::7] = torch.randn_like(prompt[:, 0, ::5, ::7])
    prompt[:, 1, ::5, ::7] = 1.0
    with_prompt = dec(tokens, out_size, prompt)
    assert torch.equal(base, with_prompt)
    # a trained (non-zero) projection makes the prompt matter
    for enc in dec.prompt_encoders.values():
        torch.nn.init.normal_(enc.proj.weight, std=0.1)
    assert not torch.allclose(dec(tokens, out_size, prompt), base)


def test_decoder_gradient_reaches_zero_init_projection() -> None:
    torch.manual_seed(1)
    dec = DPTDecoder(24, reassemble_channels=(8, 8, 8, 8), features=8, head_features=8, prompt_hidden=4)
    tokens = _decoder_inputs(seed=1)
    prompt = torch.zeros(2, 2, 24, 40)
    prompt[:, 0, ::3, ::3] = 0.3
    prompt[:, 1, ::3, ::3] = 1.0
    dec(tokens, (24, 40), prompt).square().mean().backward()
    for name, enc in dec.prompt_encoders.items():
        assert enc.proj.weight.grad is not None, name
        assert enc.proj.weight.grad.abs().sum() > 0, name
        # the layers before the zero projection get no gradient until it moves away from zero
        assert float(enc.conv1.weight.grad.abs().sum()) == 0.0


def test_decoder_without_prompt_branch() -> None:
    dec = DPTDecoder(24, reassemble_channels=(8, 8, 8, 8), features=8, prompt_hidden=None)
    assert not dec.has_prompt_branch
    assert len(list(dec.prompt_encoders.parameters())) == 0
    tokens = _decoder_inputs(gh=2, gw=2)
    prompt = torch.ones(2, 2, 16, 16)
    assert torch.equal(dec(tokens, (16, 16)), dec(tokens, (16, 16), prompt))
