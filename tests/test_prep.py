"""Prompt preparation: PDSA scale alignment and GMDR deviation rejection, incl. the acceptance figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from metricanything.camera import Intrinsics
from metricanything.data.sample import RGBDSample
from metricanything.errors import ConfigError, InvalidInputError
from metricanything.prompts.prep import (
    PrepConfig,
    PriorFn,
    deviation_outliers,
    inject_gross_outliers,
    noisy_prior,
    prepare_arrays,
    prepare_sample,
    robust_log_scale,
)


def _plane(h: int = 32, w: int = 40) -> np.ndarray:
    v, u = np.mgrid[0:h, 0:w]
    return (2.0 + 0.05 * u + 0.03 * v).astype(np.float32)


def _sample(depth: np.ndarray, valid: np.ndarray, trusted: bool) -> RGBDSample:
    h, w = depth.shape
    return RGBDSample(
        image=np.zeros((h, w, 3), np.uint8), depth=np.where(valid, depth, 0).astype(np.float32), valid=valid,
        intrinsics=Intrinsics.from_fov(60, w, h), source_kind="reconstructed", sensor="sfm",
        metric_scale_trusted=trusted, sample_id="s0", meta={"true_scale": 0.5},
    )


def test_pdsa_recovers_exact_scale_and_gmdr_keeps_clean_points():
    gt = _plane()
    valid = np.ones(gt.shape, bool)
    res = prepare_arrays(gt * 0.37, valid, gt, trusted=False)
    assert res.pdsa_applied and res.scale == pytest.approx(1 / 0.37, rel=1e-6)
    np.testing.assert_allclose(res.depth, gt, rtol=1e-5)
    assert res.num_rejected == 0  # perfect agreement: min_sigma prevents spurious rejections
    # trusted: no rescale
    t = prepare_arrays(gt * 0.37, valid, gt, trusted=True)
    assert not t.pdsa_applied and t.scale == 1.0
    np.testing.assert_allclose(t.depth, gt * 0.37, rtol=1e-6)


def test_gmdr_rejects_injected_outliers_relative_to_median():
    rng = np.random.default_rng(0)
    gt = _plane()
    valid = rng.random(gt.shape) < 0.5
    src = gt * 3.0
    bad = valid & (rng.random(gt.shape) < 0.1)
    src = np.where(bad, src * 4.0, src)
    prior = gt * 1.2 * np.exp(0.05 * rng.standard_normal(gt.shape))  # prior with its own scale error
    res = prepare_arrays(src, valid, prior, trusted=True)
    np.testing.assert_array_equal(res.rejected, bad)
    assert not res.valid[bad].any() and (res.depth[bad] == 0).all()
    assert res.valid.sum() == valid.sum() - bad.sum()


def test_switches_and_estimators():
    rng = np.random.default_rng(1)
    gt = _plane()
    valid = np.ones(gt.shape, bool)
    src = gt * 2.0
    src[0, :5] *= 10
    off = prepare_arrays(src, valid, gt, trusted=False, cfg=PrepConfig(pdsa=False, gmdr=False))
    assert off.scale == 1.0 and off.num_rejected == 0 and np.array_equal(off.valid, valid)
    only_gmdr = prepare_arrays(src, valid, gt, trusted=False, cfg=PrepConfig(pdsa=False))
    assert only_gmdr.scale == 1.0 and only_gmdr.num_rejected == 5
    trimmed = prepare_arrays(src, valid, gt, trusted=False, cfg=PrepConfig(estimator="trimmed", gmdr=False))
    assert trimmed.scale == pytest.approx(0.5, rel=1e-6) and trimmed.num_rejected == 0
    r = np.r_[rng.normal(0.3, 0.1, 900), rng.normal(3.0, 0.1, 100)]
    assert robust_log_scale(r, "trimmed", 0.2) == pytest.approx(0.3, abs=0.02)
    assert robust_log_scale(r) == pytest.approx(0.3, abs=0.03)
    out, med, sigma = deviation_outliers(r, k=3.0)
    assert out[900:].all() and out[:900].mean() < 0.01 and sigma == pytest.approx(0.1, rel=0.25)
    with pytest.raises(ConfigError):
        PrepConfig(estimator="mean")


def test_prepare_sample_meta_and_prior_callable():
    gt = _plane()
    valid = np.ones(gt.shape, bool)
    valid[:3] = False
    s = _sample(gt * 0.5, valid, trusted=False)

    def prior(image: np.ndarray) -> np.ndarray:
        return gt

    assert isinstance(prior, PriorFn)
    out = prepare_sample(s, prior)
    assert out.meta["pdsa_scale"] == pytest.approx(2.0) and out.meta["pdsa_applied"] is True
    assert out.meta["gmdr_rejected"] == 0 and out.meta["true_scale"] == 0.5
    assert out.metric_scale_trusted and not s.metric_scale_trusted  # input untouched
    np.testing.assert_allclose(out.depth[valid], gt[valid], rtol=1e-6)
    assert (out.depth[~valid] == 0).all()
    json.dumps(out.meta_dict())  # JSON-serialisable
    same = prepare_sample(_sample(gt, valid, trusted=True), gt)
    assert same.meta["pdsa_scale"] == 1.0 and same.meta["pdsa_applied"] is False
    kept = prepare_sample(s, gt, PrepConfig(mark_trusted=False))
    assert not kept.metric_scale_trusted


def test_prior_pixels_without_value_are_ignored_never_rejected():
    gt = _plane()
    valid = np.ones(gt.shape, bool)
    prior = gt.copy()
    prior[:4] = np.nan
    prior[4:6] = 0.0
    src = gt * 2.0
    src[0, 0] *= 50  # a gross error where the prior has nothing: kept (nothing to compare against)
    res = prepare_arrays(src, valid, prior, trusted=False)
    assert res.scale == pytest.approx(0.5) and res.valid[0, 0] and res.stats["n_common"] == gt.size - 6 * gt.shape[1]


def test_bad_inputs_raise():
    gt = _plane()
    valid = np.ones(gt.shape, bool)
    with pytest.raises(InvalidInputError, match="prior"):
        prepare_arrays(gt, valid, gt[:, :-1], trusted=False)
    few = np.zeros(gt.shape, bool)
    few[0, :3] = True
    with pytest.raises(InvalidInputError, match="at least 5"):
        prepare_arrays(gt, few, gt, trusted=False)
    assert prepare_arrays(gt, few, gt, trusted=True).num_rejected == 0  # GMDR skipped on too few points
    bad = gt.copy()
    bad[1, 1] = -1
    with pytest.raises(InvalidInputError, match="> 0"):
        prepare_arrays(bad, valid, gt, trusted=False)
    with pytest.raises(InvalidInputError, match="prior returned"):
        prepare_sample(_sample(gt, valid, False), lambda im: np.ones((3, 3)))


def test_inject_gross_outliers():
    gt = _plane()
    valid = np.random.default_rng(0).random(gt.shape) < 0.5
    d, out = inject_gross_outliers(gt, valid, np.random.default_rng(1), fraction=0.1)
    assert out.sum() == round(0.1 * valid.sum()) and not (out & ~valid).any()
    dev = np.abs(np.log(d[out] / gt[out]))
    assert dev.min() >= np.log(2.0) - 1e-6 and dev.max() <= np.log(5.0) + 1e-6
    np.testing.assert_array_equal(d[~out], gt[~out])


def run_acceptance(n: int = 100, size: int = 64, seed: int = 0, cfg: PrepConfig | None = None) -> dict:
    """Rendered samples -> SfM simulator (sparse keypoints, unknown scale in [0.2, 5]) -> 10% gross outliers
    (x or / by 2..5); prior = exact depth x exp(0.15 e). Returns the pooled acceptance figures."""
    from metricanything.data.render import render_sample
    from metricanything.data.sensors import simulate_reconstruction

    rng = np.random.default_rng(seed)
    scale_err, n_out, n_out_removed, n_in, n_in_dropped = [], 0, 0, 0, 0
    for i in range(n):
        s = render_sample(seed * 100_000 + i, size=(size, size))
        sfm, _ = simulate_reconstruction(s, rng, mode="sfm", outlier_fraction=0.0)
        depth, outliers = inject_gross_outliers(sfm.depth, sfm.valid, rng, fraction=0.1)
        prior = noisy_prior(s.depth, s.valid, rng, sigma=0.15)
        res = prepare_arrays(depth, sfm.valid, prior, trusted=False, cfg=cfg)
        scale_err.append(abs(res.scale * sfm.meta["true_scale"] - 1.0))
        inl = sfm.valid & ~outliers
        n_out += int(outliers.sum())
        n_out_removed += int((outliers & res.rejected).sum())
        n_in += int(inl.sum())
        n_in_dropped += int((inl & res.rejected).sum())
    return {
        "median_scale_error": float(np.median(scale_err)),
        "outliers_removed": n_out_removed / max(n_out, 1),
        "inliers_dropped": n_in_dropped / max(n_in, 1),
    }


def test_acceptance_pdsa_gmdr_on_rendered_sfm_samples():
    torch.set_num_threads(1)
    r = run_acceptance()
    assert r["median_scale_error"] < 0.03, r
    assert r["outliers_removed"] >= 0.90, r
    assert r["inliers_dropped"] <= 0.05, r
