"""Depth metrics over a validity mask, with optional alignment, two aggregations and range breakdowns.

Let p be the (possibly aligned) predicted depth and g the ground-truth depth in metres, over the N scored
pixels (valid GT, inside the optional ``[min_depth, max_depth]`` GT range; both bounds inclusive).
With d = p - g and e = ln p - ln g:

=============  ===================================================  ============================
name           formula                                              notes
=============  ===================================================  ============================
``abs_rel``    mean(|d| / g)
``sq_rel``     mean(d^2 / g)                                        metres
``rmse``       sqrt(mean(d^2))                                      metres
``mae``        mean(|d|)                                            metres
``rmse_log``   sqrt(mean(e^2))
``log10``      mean(|log10 p - log10 g|)
``silog``      sqrt(mean(e^2) - 0.5 mean(e)^2)                      lambda 0.5, **no x100** (as the
                                                                    paper's official eval code)
``delta1..3``  fraction with max(p/g, g/p) < 1.25^k                 k = 1, 2, 3
``rmse_mm``    1000 rmse                                            KITTI completion units (mm)
``mae_mm``     1000 mae                                             mm
``irmse``      1000 sqrt(mean((1/p - 1/g)^2))                       1/km
``imae``       1000 mean(|1/p - 1/g|)                               1/km
=============  ===================================================  ============================

Aggregation over a dataset (:class:`MetricAccumulator`): **per-image mean** computes every metric on each
image and averages them (KITTI completion, MoGe); **pixel-pooled** sums the per-pixel terms of all images and
computes each metric once (the paper's official script). Both come from the same per-image sufficient
statistics, so pooled RMSE = sqrt(sum d^2 / sum N) and pooled SILog uses the pooled mean(e) and mean(e^2).

Alignment (fit per image on the scored pixels, then applied): ``none``; ``median`` (s = median(g)/median(p));
``scale`` (least-squares s minimising sum (s x - y)^2); ``scale_shift`` (least squares s, t minimising
sum (s x + t - y)^2). In ``space="depth"`` x = p, y = g; in ``space="inverse"`` x = 1/p, y = 1/g and the
aligned depth is 1/(s x + t).

Bad predictions (documented policy, never silent):

* NaN/inf in the prediction at a scored pixel: ``nonfinite="raise"`` (default) raises
  :class:`InvalidInputError` giving the count; ``"exclude"`` drops those pixels (this flatters the model;
  the count is reported as ``num_excluded``).
* Non-positive predicted depth (or, after inverse-space alignment, non-positive aligned inverse depth) makes
  the log and ratio metrics undefined: ``nonpositive="raise"`` (default) raises with the count; ``"clip"``
  raises such values to ``clip_eps`` (1e-3 m for depth, 1e-3 1/m, i.e. 1 km, for inverse depth) and reports
  ``num_clipped``.
* No scored pixel at all raises :class:`InvalidInputError`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from metricanything.errors import InvalidInputError

ALIGNMENTS = ("none", "median", "scale", "scale_shift")
ALIGNMENT_SPACES = ("depth", "inverse")
#: every metric reported by :func:`compute_metrics`, in table order
METRIC_NAMES = (
    "abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "mae", "delta1", "delta2", "delta3",
    "rmse_mm", "mae_mm", "irmse", "imae",
)  # fmt: skip
#: metrics where larger is better (all others: smaller is better)
HIGHER_IS_BETTER = frozenset({"delta1", "delta2", "delta3"})

# indices into the sufficient-statistics vector
_N, _ABSREL, _SQREL, _SQ, _ABS, _LOGSQ, _LOGSUM, _LOG10, _D1, _D2, _D3, _INVSQ, _INVABS = range(13)
_NSTATS = 13


# ---------------------------------------------------------------------------------------------- alignment
def _fit_inputs(x: np.ndarray, y: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise InvalidInputError(f"alignment inputs differ in shape: {x.shape} vs {y.shape}")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != x.shape:
            raise InvalidInputError(f"alignment mask shape {mask.shape} differs from {x.shape}")
        x, y = x[mask], y[mask]
    x, y = x.ravel(), y.ravel()
    if x.size == 0:
        raise InvalidInputError("alignment needs at least one pixel, the mask is empty")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InvalidInputError("alignment inputs contain NaN or inf")
    return x, y


def fit_median_scale(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """s = median(target) / median(pred) over ``mask``; requires median(pred) > 0."""
    x, y = _fit_inputs(pred, target, mask)
    mx = float(np.median(x))
    if not mx > 0:
        raise InvalidInputError(f"median scale alignment needs a positive prediction median, got {mx}")
    return float(np.median(y)) / mx


def fit_scale(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Least-squares scale: argmin_s sum (s x - y)^2 = sum(x y) / sum(x^2) over ``mask``."""
    x, y = _fit_inputs(pred, target, mask)
    sxx = float(np.dot(x, x))
    if sxx == 0:
        raise InvalidInputError("least-squares scale is undefined: the prediction is 0 on every pixel")
    return float(np.dot(x, y)) / sxx


def fit_scale_shift(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """Least-squares scale and shift: argmin_{s,t} sum (s x + t - y)^2 over ``mask``.

    s = cov(x, y) / var(x), t = mean(y) - s mean(x). Needs at least two distinct prediction values.
    """
    x, y = _fit_inputs(pred, target, mask)
    mx, my = float(x.mean()), float(y.mean())
    xc = x - mx
    var = float(np.dot(xc, xc))
    if x.size < 2 or var <= 1e-12 * max(1.0, mx * mx) * x.size:
        raise InvalidInputError(
            f"least-squares scale+shift is undefined: the prediction is constant on the {x.size} fitted pixels"
        )
    s = float(np.dot(xc, y - my)) / var
    return s, my - s * mx


def align_prediction(
    pred: np.ndarray,
    gt: np.ndarray,
    mask: np.ndarray,
    mode: str = "none",
    space: str = "depth",
    pred_space: str = "depth",
) -> tuple[np.ndarray, dict[str, float]]:
    """Fit ``mode`` alignment on ``mask`` in ``space`` and return ``(aligned values, {"scale", "shift"})``.

    ``pred`` holds depth (``pred_space="depth"``) or inverse depth (``"inverse"``, e.g. a relative model's
    disparity). The returned array has pred's shape and lives in ``space`` (depth or inverse depth): convert
    with 1/x when ``space == "inverse"``. ``gt`` must be positive on ``mask``. The fit is done in float64.
    """
    if mode not in ALIGNMENTS:
        raise InvalidInputError(f"unknown alignment {mode!r}; choose from {', '.join(ALIGNMENTS)}")
    if space not in ALIGNMENT_SPACES or pred_space not in ALIGNMENT_SPACES:
        raise InvalidInputError(f"alignment spaces must be in {ALIGNMENT_SPACES}, got {space!r}, {pred_space!r}")
    x = np.asarray(pred, dtype=np.float64)
    if pred_space != space:
        with np.errstate(divide="ignore"):
            x = 1.0 / x
    y = np.asarray(gt, dtype=np.float64)
    if space == "inverse":
        with np.errstate(divide="ignore"):
            y = 1.0 / y
    if mode == "none":
        return x, {"scale": 1.0, "shift": 0.0}
    if mode == "median":
        s, t = fit_median_scale(x, y, mask), 0.0
    elif mode == "scale":
        s, t = fit_scale(x, y, mask), 0.0
    else:
        s, t = fit_scale_shift(x, y, mask)
    return s * x + t, {"scale": s, "shift": t}


# ---------------------------------------------------------------------------------------------- statistics
def _stats(p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Sufficient statistics (sums over pixels) of 1-D float64 positive predictions ``p`` and GT ``g``."""
    s = np.zeros(_NSTATS, dtype=np.float64)
    if p.size == 0:
        return s
    d = p - g
    e = np.log(p) - np.log(g)
    ratio = np.maximum(p / g, g / p)
    inv = 1.0 / p - 1.0 / g
    s[_N] = p.size
    s[_ABSREL] = np.sum(np.abs(d) / g)
    s[_SQREL] = np.sum(d * d / g)
    s[_SQ] = np.sum(d * d)
    s[_ABS] = np.sum(np.abs(d))
    s[_LOGSQ] = np.sum(e * e)
    s[_LOGSUM] = np.sum(e)
    s[_LOG10] = np.sum(np.abs(np.log10(p) - np.log10(g)))
    s[_D1] = np.count_nonzero(ratio < 1.25)
    s[_D2] = np.count_nonzero(ratio < 1.25**2)
    s[_D3] = np.count_nonzero(ratio < 1.25**3)
    s[_INVSQ] = np.sum(inv * inv)
    s[_INVABS] = np.sum(np.abs(inv))
    return s


def _metrics_from_stats(s: np.ndarray) -> dict[str, float]:
    n = s[_N]
    if n <= 0:
        raise InvalidInputError("no valid pixel to score")
    mean_e = s[_LOGSUM] / n
    rmse = math.sqrt(s[_SQ] / n)
    mae = s[_ABS] / n
    return {
        "abs_rel": float(s[_ABSREL] / n),
        "sq_rel": float(s[_SQREL] / n),
        "rmse": rmse,
        "rmse_log": math.sqrt(s[_LOGSQ] / n),
        "log10": float(s[_LOG10] / n),
        "silog": math.sqrt(max(s[_LOGSQ] / n - 0.5 * mean_e * mean_e, 0.0)),
        "mae": float(mae),
        "delta1": float(s[_D1] / n),
        "delta2": float(s[_D2] / n),
        "delta3": float(s[_D3] / n),
        "rmse_mm": 1000.0 * rmse,
        "mae_mm": float(1000.0 * mae),
        "irmse": 1000.0 * math.sqrt(s[_INVSQ] / n),
        "imae": float(1000.0 * s[_INVABS] / n),
    }


def _check_policy(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise InvalidInputError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def _parse_bins(bins: Sequence[float] | None) -> list[tuple[str, float, float]]:
    if bins is None:
        return []
    edges = [float(b) for b in bins]
    if len(edges) < 2 or any(not b2 > b1 for b1, b2 in zip(edges, edges[1:], strict=False)) or edges[0] < 0:
        raise InvalidInputError(f"range bins must be >= 2 increasing non-negative edges in metres, got {list(bins)}")
    return [(f"{lo:g}-{hi:g}m", lo, hi) for lo, hi in zip(edges, edges[1:], strict=False)]


def checked_valid(depth: np.ndarray, valid: np.ndarray | None, name: str = "depth", where: str = "") -> np.ndarray:
    """The explicit validity mask of ``depth``: where it is finite and > 0 when ``valid`` is None, else ``valid``
    as bool after checking that it has the depth's shape and marks only finite, positive depth. ``name`` (what the
    depth is) and ``where`` (a prefix such as a file name) go into the error messages."""
    finite_pos = np.isfinite(depth) & (depth > 0)
    if valid is None:
        return finite_pos
    mask = np.asarray(valid)
    if mask.shape != depth.shape:
        raise InvalidInputError(f"{where}valid mask shape {mask.shape} differs from {name} shape {depth.shape}")
    mask = mask.astype(bool)
    bad = int(np.count_nonzero(mask & ~finite_pos))
    if bad:
        raise InvalidInputError(f"{where}{bad} {name} pixels are marked valid but are not finite and > 0")
    return mask


class _Prepared:
    """Aligned, checked, masked 1-D prediction/GT of one image plus bookkeeping."""

    def __init__(self, p: np.ndarray, g: np.ndarray, info: dict[str, float]) -> None:
        self.p, self.g, self.info = p, g, info


def _prepare(
    pred: np.ndarray,
    gt: np.ndarray,
    valid: np.ndarray | None,
    alignment: str,
    space: str,
    pred_space: str,
    min_depth: float | None,
    max_depth: float | None,
    nonfinite: str,
    nonpositive: str,
    clip_eps: float,
) -> _Prepared:
    _check_policy("nonfinite", nonfinite, ("raise", "exclude"))
    _check_policy("nonpositive", nonpositive, ("raise", "clip"))
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise InvalidInputError(f"prediction shape {pred.shape} differs from ground-truth shape {gt.shape}")
    gt64 = gt.astype(np.float64)
    mask = checked_valid(gt64, valid, "ground-truth")
    if min_depth is not None:
        mask = mask & (gt64 >= min_depth)
    if max_depth is not None:
        mask = mask & (gt64 <= max_depth)
    if not mask.any():
        raise InvalidInputError("no valid pixel to score (empty mask after the depth range)")
    pred64 = pred.astype(np.float64)
    nonfin = mask & ~np.isfinite(pred64)
    n_nonfin = int(np.count_nonzero(nonfin))
    if n_nonfin:
        if nonfinite == "raise":
            raise InvalidInputError(f"prediction has {n_nonfin} NaN/inf values on scored pixels")
        mask = mask & ~nonfin
        if not mask.any():
            raise InvalidInputError("no valid pixel to score: every scored prediction is NaN/inf")
    x = pred64[mask]
    n_nonpos_in = 0
    if pred_space != space:
        # the prediction must be inverted before fitting: zero or negative values have no reciprocal
        with np.errstate(invalid="ignore"):
            bad_in = ~(x > 0)
        n_nonpos_in = int(np.count_nonzero(bad_in))
        if n_nonpos_in:
            if nonpositive == "raise":
                raise InvalidInputError(
                    f"prediction has {n_nonpos_in} non-positive {pred_space} values on scored pixels, which "
                    f"cannot be inverted for {space}-space scoring (use nonpositive='clip' to clip them)"
                )
            x = np.where(bad_in, clip_eps, x)
    aligned, params = align_prediction(x, gt64[mask], None, alignment, space, pred_space)
    aligned_where = "depth" if space == "depth" else "aligned inverse depth"
    if alignment == "none" and pred_space == "inverse" and space == "depth":
        aligned_where = "depth (1 / predicted inverse depth)"
    with np.errstate(invalid="ignore"):
        nonpos = ~(aligned > 0)
    n_nonpos = int(np.count_nonzero(nonpos))
    if n_nonpos:
        if nonpositive == "raise":
            raise InvalidInputError(
                f"prediction has {n_nonpos} non-positive {aligned_where} values on scored pixels "
                "(log/ratio metrics are undefined; use nonpositive='clip' to clip them)"
            )
        aligned = np.where(nonpos, clip_eps, aligned)
    p = aligned if space == "depth" else 1.0 / aligned
    info = {"num_excluded": float(n_nonfin), "num_clipped": float(n_nonpos + n_nonpos_in)}
    if alignment != "none":
        info.update(params)
    return _Prepared(p, gt64[mask], info)


def compute_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    valid: np.ndarray | None = None,
    *,
    alignment: str = "none",
    space: str = "depth",
    pred_space: str = "depth",
    min_depth: float | None = None,
    max_depth: float | None = None,
    nonfinite: str = "raise",
    nonpositive: str = "raise",
    clip_eps: float = 1e-3,
) -> dict[str, float]:
    """All :data:`METRIC_NAMES` for one image, plus ``n`` (scored pixels), ``num_excluded``, ``num_clipped``
    and, with alignment, ``scale`` and ``shift``.

    ``valid`` defaults to finite, positive GT. See the module docstring for formulas and policies.
    """
    prep = _prepare(pred, gt, valid, alignment, space, pred_space, min_depth, max_depth, nonfinite, nonpositive,
                    clip_eps)  # fmt: skip
    out = _metrics_from_stats(_stats(prep.p, prep.g))
    out["n"] = float(prep.p.size)
    out.update(prep.info)
    return out


class MetricAccumulator:
    """Accumulate images one by one; report the per-image mean and the pixel-pooled metrics.

    Alignment parameters are fit per image. With ``range_bins`` (GT depth edges in metres, e.g.
    ``[0, 10, 20, 80]``), each range [lo, hi) also gets both aggregations, named like ``"0-10m"``; alignment
    is still fit on the whole image. The per-image mean of a range averages only images with pixels in it.
    """

    def __init__(
        self,
        *,
        alignment: str = "none",
        space: str = "depth",
        pred_space: str = "depth",
        min_depth: float | None = None,
        max_depth: float | None = None,
        range_bins: Sequence[float] | None = None,
        nonfinite: str = "raise",
        nonpositive: str = "raise",
        clip_eps: float = 1e-3,
    ) -> None:
        _check_policy("alignment", alignment, ALIGNMENTS)
        _check_policy("space", space, ALIGNMENT_SPACES)
        _check_policy("pred_space", pred_space, ALIGNMENT_SPACES)
        _check_policy("nonfinite", nonfinite, ("raise", "exclude"))
        _check_policy("nonpositive", nonpositive, ("raise", "clip"))
        self.options = dict(alignment=alignment, space=space, pred_space=pred_space, min_depth=min_depth,
                            max_depth=max_depth, nonfinite=nonfinite, nonpositive=nonpositive, clip_eps=clip_eps)  # fmt: skip
        self.ranges = _parse_bins(range_bins)
        self.images: list[dict[str, float]] = []
        self.names: list[str | None] = []
        self._pooled = np.zeros(_NSTATS)
        self._range_pooled = {key: np.zeros(_NSTATS) for key, _, _ in self.ranges}
        self._range_images: dict[str, list[dict[str, float]]] = {key: [] for key, _, _ in self.ranges}

    @property
    def num_images(self) -> int:
        return len(self.images)

    def add(
        self, pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None, name: str | None = None
    ) -> dict[str, float]:
        """Score one image and add it; returns its metrics (as :func:`compute_metrics`)."""
        prep = _prepare(pred, gt, valid, **self.options)
        stats = _stats(prep.p, prep.g)
        result = _metrics_from_stats(stats)
        result["n"] = float(prep.p.size)
        result.update(prep.info)
        self._pooled += stats
        for key, lo, hi in self.ranges:
            sel = (prep.g >= lo) & (prep.g < hi)
            if sel.any():
                rs = _stats(prep.p[sel], prep.g[sel])
                self._range_pooled[key] += rs
                r = _metrics_from_stats(rs)
                r["n"] = float(rs[_N])
                self._range_images[key].append(r)
        self.images.append(result)
        self.names.append(name)
        return result

    def per_image_mean(self) -> dict[str, float]:
        """Mean over images of each per-image metric (every image weighs the same)."""
        return _mean_of(self.images)

    def pooled(self) -> dict[str, float]:
        """Each metric computed once over the pixels of all images (every pixel weighs the same)."""
        if not self.images:
            raise InvalidInputError("no image was added to the metric accumulator")
        out = _metrics_from_stats(self._pooled)
        out["n"] = float(self._pooled[_N])
        return out

    def range_metrics(self) -> dict[str, dict[str, object]]:
        """Per GT-depth range: ``{"num_pixels", "num_images", "per_image_mean", "pooled"}`` (empty ranges: None)."""
        out: dict[str, dict[str, object]] = {}
        for key, _, _ in self.ranges:
            st = self._range_pooled[key]
            imgs = self._range_images[key]
            out[key] = {
                "num_pixels": int(st[_N]),
                "num_images": len(imgs),
                "per_image_mean": _mean_of(imgs) if imgs else None,
                "pooled": {**_metrics_from_stats(st), "n": float(st[_N])} if st[_N] > 0 else None,
            }
        return out

    def summary(self) -> dict[str, object]:
        """JSON-ready report: options, counts, both aggregations and the range breakdown."""
        return {
            "options": dict(self.options),
            "num_images": self.num_images,
            "num_pixels": int(self._pooled[_N]),
            "per_image_mean": self.per_image_mean(),
            "pooled": self.pooled(),
            "ranges": self.range_metrics(),
        }


def _mean_of(results: list[dict[str, float]]) -> dict[str, float]:
    if not results:
        raise InvalidInputError("no image was added to the metric accumulator")
    out = {k: float(np.mean([r[k] for r in results])) for k in METRIC_NAMES}
    out["n"] = float(np.mean([r["n"] for r in results]))
    return out


def metrics_by_range(
    pred: np.ndarray, gt: np.ndarray, valid: np.ndarray | None, bins: Sequence[float], **options
) -> dict[str, dict[str, float] | None]:
    """Metrics of one image per GT-depth range [lo, hi) (bins in metres); ranges without pixels give None.

    ``options`` are those of :func:`compute_metrics`; alignment is fit once on the whole image.
    """
    acc = MetricAccumulator(range_bins=bins, **options)
    acc.add(pred, gt, valid)
    return {k: v["pooled"] for k, v in acc.range_metrics().items()}  # type: ignore[misc]
