"""Training prompt sampler: valid pixels only, count distribution, determinism, batching."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from metricanything.errors import ConfigError, InvalidInputError
from metricanything.prompts.sampler import (
    MODE_EXTREME,
    MODE_FRACTION,
    MODE_FULL,
    PromptSamplerConfig,
    draw_prompt_counts,
    sample_prompt_masks,
    sample_prompts,
)


def _valid(b: int, h: int, w: int, p: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, h, w, generator=g) < p


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 6), h=st.integers(1, 40), w=st.integers(1, 40), p=st.floats(0.0, 1.0), seed=st.integers(0, 1000))
def test_only_valid_pixels_and_counts_match(b, h, w, p, seed):
    valid = _valid(b, h, w, p, seed)
    mask, counts = sample_prompt_masks(valid, generator=torch.Generator().manual_seed(seed), return_counts=True)
    assert mask.dtype == torch.bool and mask.shape == valid.shape
    assert not (mask & ~valid).any()
    torch.testing.assert_close(mask.sum(dim=(1, 2, 3)), counts)
    n_valid = valid.sum(dim=(1, 2, 3))
    assert (counts <= n_valid).all()
    assert ((counts >= 1) | (n_valid == 0)).all()


def test_same_seed_same_prompt_and_different_seed_differs():
    valid = _valid(4, 48, 64, 0.7, 0)
    a = sample_prompt_masks(valid, generator=torch.Generator().manual_seed(3))
    b = sample_prompt_masks(valid, generator=torch.Generator().manual_seed(3))
    c = sample_prompt_masks(valid, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_count_distribution_follows_config():
    cfg = PromptSamplerConfig()
    n = 200_000
    n_valid = torch.full((20_000,), n, dtype=torch.int64)
    counts, modes = draw_prompt_counts(n_valid, cfg, torch.Generator().manual_seed(0))
    total = modes.numel()
    # mode frequencies within ~5 binomial standard deviations
    for mode, p in ((MODE_FULL, cfg.p_full), (MODE_EXTREME, cfg.p_extreme), (MODE_FRACTION, 0.9)):
        freq = float((modes == mode).sum()) / total
        assert abs(freq - p) < 5 * math.sqrt(p * (1 - p) / total)
    assert (counts[modes == MODE_FULL] == n).all()
    ext = counts[modes == MODE_EXTREME].numpy()
    assert ext.min() >= 1 and ext.max() <= 20
    assert set(np.unique(ext)) == set(range(1, 21))  # every integer 1..20 occurs
    # fraction mode: ln(count / n) is uniform on [ln 0.001, ln 0.02]  (KS test)
    lf = np.log(counts[modes == MODE_FRACTION].numpy() / n)
    lo, hi = math.log(0.001), math.log(0.02)
    ks = stats.kstest(lf, stats.uniform(loc=lo, scale=hi - lo).cdf)
    assert ks.pvalue > 1e-3, ks
    assert lf.min() >= lo - 1e-3 and lf.max() <= hi + 1e-3


def test_custom_config_and_mask_counts_statistics():
    cfg = PromptSamplerConfig(min_fraction=0.05, max_fraction=0.05, p_extreme=0.0, p_full=0.0)
    valid = torch.ones(256, 1, 20, 20, dtype=torch.bool)
    valid[:, :, :, :5] = False  # 300 valid pixels per sample
    mask = sample_prompt_masks(valid, cfg, torch.Generator().manual_seed(1))
    assert (mask.sum(dim=(1, 2, 3)) == 15).all()  # round(0.05 * 300)
    # uniform over the valid pixels: chi-square of per-pixel hit counts against equal expectation
    hits = mask.sum(dim=0)[0]
    assert (hits[:, :5] == 0).all()
    chi = stats.chisquare(hits[:, 5:].flatten().numpy())
    assert chi.pvalue > 1e-3, chi
    full = PromptSamplerConfig(p_full=1.0, p_extreme=0.0)
    v = _valid(3, 16, 16, 0.5, 2)
    assert torch.equal(sample_prompt_masks(v, full, torch.Generator().manual_seed(0)), v)


def test_sample_prompts_zeroes_depth_outside_mask():
    valid = _valid(2, 16, 16, 0.8, 5)
    depth = torch.rand(2, 1, 16, 16) + 0.5
    d, m = sample_prompts(depth, valid, generator=torch.Generator().manual_seed(0))
    assert torch.equal(d[m], depth[m]) and (d[~m] == 0).all()


def test_empty_valid_and_bad_input():
    mask = sample_prompt_masks(torch.zeros(2, 1, 8, 8, dtype=torch.bool), generator=torch.Generator().manual_seed(0))
    assert not mask.any()
    with pytest.raises(InvalidInputError):
        sample_prompt_masks(torch.ones(2, 2, 8, 8, dtype=torch.bool))
    with pytest.raises(ConfigError):
        PromptSamplerConfig(min_fraction=0.1, max_fraction=0.01)
    with pytest.raises(ConfigError):
        PromptSamplerConfig(p_extreme=0.6, p_full=0.6)
