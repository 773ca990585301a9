"""Prompt preparation against a metric *prior*: PDSA (scale alignment) and GMDR (deviation rejection).

The paper names these steps but its definitions were not available; this is the project's documented
interpretation (``docs/design.md``). Both are parameter-free (no learning) and work against any
prior, i.e. any callable ``image -> metric depth H x W`` (:class:`PriorFn`; the project's own student once it
exists, or a precomputed array).

With r_i = ln z_src(i) - ln z_prior(i) over the pixels where both are valid:

* **PDSA - prior-guided depth scale alignment.** For sources whose global scale is untrusted (SfM/MVS,
  ``metric_scale_trusted=False``), the source is z_src = c * z_true with one unknown factor c per scene.
  The robust estimate is ln c = median(r) (default) or a trimmed least-squares mean of r (iteratively keep the
  ``1 - trim`` fraction with the smallest |r - mean|). The depth is multiplied by s = exp(-ln c) and s is
  recorded. Log-ratios make the estimate symmetric in over/under-estimation and insensitive to the depth
  range; the median tolerates up to 50% gross outliers.
* **GMDR - gross metric deviation rejection.** After alignment, points whose r deviates from median(r) by
  more than k * sigma are dropped, sigma = 1.4826 * MAD (the consistent estimator of a Gaussian's std;
  k = 3 keeps 99.7% of Gaussian inliers). sigma is floored at ``min_sigma`` (default 0.01, i.e. 1%) so
  near-perfect agreement does not turn tiny differences into rejections. Deviations are measured from the
  median, not from 0, so a prior with its own scale error does not bias the rejection.

Pixels where the prior is not finite/positive are excluded from both statistics and are never rejected
(nothing to compare against).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from metricanything.data.sample import RGBDSample
from metricanything.errors import ConfigError, InvalidInputError

#: Scale factor of the median absolute deviation that makes it a consistent std estimate for Gaussian data.
MAD_TO_SIGMA = 1.4826


@runtime_checkable
class PriorFn(Protocol):
    """A metric depth prior: RGB image (uint8 H x W x 3) -> metric depth (float H x W, metres)."""

    def __call__(self, image: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class PrepConfig:
    """Switches and constants of prompt preparation."""

    pdsa: bool = True
    gmdr: bool = True
    k: float = 3.0
    estimator: str = "median"  # "median" or "trimmed"
    trim: float = 0.2  # fraction dropped by the trimmed estimator
    min_sigma: float = 0.01
    min_points: int = 5  # fewer common points: PDSA raises, GMDR is skipped
    mark_trusted: bool = True  # after PDSA the sample's scale is metric (aligned to the prior)

    def __post_init__(self) -> None:
        if self.estimator not in ("median", "trimmed"):
            raise ConfigError(f"PrepConfig.estimator must be 'median' or 'trimmed', got {self.estimator!r}")
        if not self.k > 0:
            raise ConfigError(f"PrepConfig.k must be > 0, got {self.k}")
        if not 0.0 <= self.trim < 1.0:
            raise ConfigError(f"PrepConfig.trim must be in [0, 1), got {self.trim}")
        if self.min_sigma < 0:
            raise ConfigError(f"PrepConfig.min_sigma must be >= 0, got {self.min_sigma}")
        if self.min_points < 1:
            raise ConfigError(f"PrepConfig.min_points must be >= 1, got {self.min_points}")


@dataclass
class PrepResult:
    """Output of :func:`prepare_arrays`: aligned depth (0 where not valid), new validity and statistics."""

    depth: np.ndarray
    valid: np.ndarray
    scale: float  # multiplied into the depth by PDSA (1.0 when not applied)
    pdsa_applied: bool
    rejected: np.ndarray  # bool H x W, points removed by GMDR
    stats: dict = field(default_factory=dict)

    @property
    def num_rejected(self) -> int:
        return int(self.rejected.sum())


def log_ratios(depth: np.ndarray, valid: np.ndarray, prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(usable, r)``: bool H x W of pixels where source and prior are both usable, and r = ln src - ln prior."""
    prior = np.asarray(prior, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        usable = valid & np.isfinite(prior) & (prior > 0)
    r = np.log(depth[usable].astype(np.float64)) - np.log(prior[usable])
    return usable, r


def robust_log_scale(r: np.ndarray, estimator: str = "median", trim: float = 0.2) -> float:
    """Robust centre of log-ratios: the median, or a trimmed least-squares mean (start at the median, keep the
    ``1 - trim`` fraction closest to the current mean, refit; 5 rounds)."""
    if r.size == 0:
        raise InvalidInputError("no common valid pixels between the depth and the prior")
    c = float(np.median(r))
    if estimator == "median":
        return c
    keep = max(1, int(np.ceil((1.0 - trim) * r.size)))
    for _ in range(5):
        idx = np.argpartition(np.abs(r - c), keep - 1)[:keep]
        c = float(r[idx].mean())
    return c


def deviation_outliers(r: np.ndarray, k: float = 3.0, min_sigma: float = 0.01) -> tuple[np.ndarray, float, float]:
    """``(outlier bool, median, sigma)``: |r - median| > k * max(1.4826 * MAD, min_sigma)."""
    med = float(np.median(r))
    sigma = max(MAD_TO_SIGMA * float(np.median(np.abs(r - med))), min_sigma)
    return np.abs(r - med) > k * sigma, med, sigma


def _check_arrays(depth: np.ndarray, valid: np.ndarray, prior: np.ndarray) -> None:
    if depth.ndim != 2:
        raise InvalidInputError(f"depth must be H x W, got shape {depth.shape}")
    if valid.shape != depth.shape or valid.dtype != np.bool_:
        raise InvalidInputError(f"valid must be a bool mask of shape {depth.shape}, got {valid.dtype} {valid.shape}")
    if prior.shape != depth.shape:
        raise InvalidInputError(f"prior depth is {prior.shape} but the depth is {depth.shape}; they must match")
    d = depth[valid]
    if d.size and not (np.isfinite(d).all() and (d > 0).all()):
        raise InvalidInputError("depth must be finite and > 0 wherever valid is True")


def prepare_arrays(
    depth: np.ndarray,
    valid: np.ndarray,
    prior: np.ndarray,
    *,
    trusted: bool,
    cfg: PrepConfig | None = None,
) -> PrepResult:
    """PDSA (if ``cfg.pdsa`` and not ``trusted``) then GMDR (if ``cfg.gmdr``) on raw arrays.

    ``depth`` float H x W metres, ``valid`` bool H x W, ``prior`` float H x W metres. Raises
    :class:`InvalidInputError` when PDSA is needed but fewer than ``cfg.min_points`` pixels are common to
    the source and the prior.
    """
    cfg = cfg or PrepConfig()
    depth = np.asarray(depth)
    valid = np.asarray(valid)
    prior = np.asarray(prior)
    _check_arrays(depth, valid, prior)
    usable, r = log_ratios(depth, valid, prior)
    stats: dict = {"n_points": int(valid.sum()), "n_common": int(r.size)}
    scale, applied = 1.0, False
    if cfg.pdsa and not trusted:
        if r.size < cfg.min_points:
            raise InvalidInputError(
                f"PDSA needs at least {cfg.min_points} pixels where both the depth and the prior are valid, "
                f"got {r.size}"
            )
        log_c = robust_log_scale(r, cfg.estimator, cfg.trim)
        scale, applied = float(np.exp(-log_c)), True
        r = r - log_c
    rejected = np.zeros_like(valid)
    if cfg.gmdr and r.size >= cfg.min_points:
        out, med, sigma = deviation_outliers(r, cfg.k, cfg.min_sigma)
        rejected[usable] = out
        stats.update(gmdr_median=med, gmdr_sigma=sigma)
    new_valid = valid & ~rejected
    new_depth = np.where(new_valid, depth.astype(np.float64) * scale, 0.0).astype(np.float32)
    return PrepResult(new_depth, new_valid, scale, applied, rejected, stats)


def prepare_sample(
    sample: RGBDSample, prior: PriorFn | np.ndarray, cfg: PrepConfig | None = None
) -> RGBDSample:
    """Run :func:`prepare_arrays` on a sample; ``prior`` is a :class:`PriorFn` (called on ``sample.image``) or a
    precomputed H x W depth. Returns a new sample with the aligned depth and reduced validity, and
    ``meta["pdsa_scale"]`` (float, 1.0 when not applied), ``meta["pdsa_applied"]`` and
    ``meta["gmdr_rejected"]`` (int count). With ``cfg.mark_trusted`` an aligned sample becomes
    ``metric_scale_trusted=True``.
    """
    cfg = cfg or PrepConfig()
    prior_depth = np.asarray(prior(sample.image) if callable(prior) else prior)
    if prior_depth.shape != sample.depth.shape:
        raise InvalidInputError(
            f"sample {sample.sample_id!r}: the prior returned {prior_depth.shape}, the depth is {sample.depth.shape}"
        )
    res = prepare_arrays(sample.depth, sample.valid, prior_depth, trusted=sample.metric_scale_trusted, cfg=cfg)
    meta = dict(sample.meta)
    meta.update(pdsa_scale=res.scale, pdsa_applied=res.pdsa_applied, gmdr_rejected=res.num_rejected)
    trusted = sample.metric_scale_trusted or (res.pdsa_applied and cfg.mark_trusted)
    return sample.replace(depth=res.depth, valid=res.valid, meta=meta, metric_scale_trusted=trusted)


# ---------------------------------------------------------------------- controlled corruption (tests/benchmarks)


def inject_gross_outliers(
    depth: np.ndarray,
    valid: np.ndarray,
    rng: np.random.Generator,
    fraction: float = 0.1,
    factor_range: tuple[float, float] = (2.0, 5.0),
) -> tuple[np.ndarray, np.ndarray]:
    """``(depth, outliers)``: ``round(fraction * n_valid)`` valid pixels, chosen uniformly, get their depth
    multiplied or divided (coin flip) by a factor log-uniform in ``factor_range`` (gross errors of SfM/MVS:
    wrong matches, sky points). For the PDSA/GMDR acceptance checks; the input is not modified."""
    flat = np.flatnonzero(valid)
    n_out = int(round(fraction * flat.size))
    pick = rng.choice(flat, size=n_out, replace=False)
    factor = np.exp(rng.uniform(np.log(factor_range[0]), np.log(factor_range[1]), n_out))
    factor = np.where(rng.random(n_out) < 0.5, factor, 1.0 / factor)
    out = depth.astype(np.float32, copy=True).reshape(-1)
    out[pick] = (out[pick] * factor).astype(np.float32)
    mask = np.zeros(depth.size, dtype=bool)
    mask[pick] = True
    return out.reshape(depth.shape), mask.reshape(depth.shape)


def noisy_prior(depth: np.ndarray, valid: np.ndarray, rng: np.random.Generator, sigma: float = 0.15) -> np.ndarray:
    """A stand-in metric prior: exact depth times per-pixel log-normal noise exp(sigma * e), NaN where invalid."""
    noise = np.exp(sigma * rng.standard_normal(depth.shape))
    return np.where(valid, depth * noise, np.nan).astype(np.float32)
