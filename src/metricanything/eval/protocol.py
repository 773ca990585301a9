"""Applying a benchmark protocol exactly: resolution, crop, depth range, alignment, clipping, aggregation.

Order of operations for one image and one predictor (every step is a :class:`BenchmarkSpec` knob):

1. ``eval_resolution``: the sample is resampled to this size (:func:`resample_sample`: image by area /
   bilinear, GT depth and validity by nearest neighbour, intrinsics by :meth:`Intrinsics.resized`).
2. The prediction arrives at that size (``model_resolution`` predictions are resized with ``upsample``).
3. Scoring mask (:func:`scoring_mask`) = GT validity AND crop box AND GT depth range (``open`` or
   ``closed`` bounds) AND, with ``exclude_prompt_pixels``, NOT the prompt pixels.
4. Alignment (:func:`align_depth`), fit per image on the scoring mask (``align_on: gt``) or on the prompt
   pixels against the prompt depths (``align_on: prompt``), in depth or inverse-depth space, by
   :func:`metricanything.metrics.align_prediction`.
5. ``clip_prediction``: clamp to ``depth_range`` (off unless a benchmark says so).
6. Metrics of :mod:`metricanything.metrics` on the scoring mask, accumulated per image and pooled
   (:class:`BenchmarkScorer`); the benchmark's ``aggregation`` picks the headline.

Crops are evaluation masks (the model always sees the whole image), as in the published protocols.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from metricanything import metrics
from metricanything.data.sample import RGBDSample
from metricanything.errors import InvalidInputError
from metricanything.eval.benchmarks import BenchmarkSpec

#: KITTI crops as fractions (top, bottom, left, right) of the GT height/width, truncated to int.
#: garg: Garg et al. ECCV 2016; eigen: Eigen et al. NIPS 2014 (as used by monodepth2 / BTS / AdaBins).
CROP_FRACTIONS: dict[str, tuple[float, float, float, float]] = {
    "garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),
    "eigen": (0.3324324, 0.91351351, 0.0359477, 0.96405229),
}
#: The standard NYUv2 evaluation box rows [45, 471) x cols [41, 601) at 640 x 480 (BTS / AdaBins / ZoeDepth).
NYU_CROP = (45, 471, 41, 601)
NYU_CROP_SIZE = (640, 480)

#: benchmark alignment name -> metrics alignment name
_ALIGN_TO_METRICS = {"none": "none", "median": "median", "lstsq_scale": "scale", "lstsq_scale_shift": "scale_shift"}


# ---------------------------------------------------------------------------------------------- crop / range
def crop_box(
    crop: str | tuple[int, int, int, int], width: int, height: int, crop_size: tuple[int, int] | None = None
) -> tuple[int, int, int, int] | None:
    """The scored window ``(top, bottom, left, right)`` (half-open) for an image of ``width`` x ``height``.

    ``none`` -> None. ``garg``/``eigen`` -> fractions of the size, truncated to int. ``nyu`` -> the
    640x480 box, scaled to other sizes (edges rounded half up). An explicit box is in pixels at ``crop_size``
    (scaled the same way) or, without ``crop_size``, at the image's own size; it must lie inside the image.
    """
    if isinstance(crop, str):
        if crop == "none":
            return None
        if crop in CROP_FRACTIONS:
            ft, fb, fl, fr = CROP_FRACTIONS[crop]
            return int(ft * height), int(fb * height), int(fl * width), int(fr * width)
        if crop == "nyu":
            box, ref = NYU_CROP, NYU_CROP_SIZE
        else:
            raise InvalidInputError(f"unknown crop {crop!r}; choose none, eigen, garg, nyu or [top, bottom, left, right]")
    else:
        box, ref = tuple(int(v) for v in crop), crop_size
    top, bottom, left, right = box
    if ref is not None and tuple(ref) != (width, height):
        sx, sy = width / ref[0], height / ref[1]
        top, bottom = math.floor(top * sy + 0.5), math.floor(bottom * sy + 0.5)
        left, right = math.floor(left * sx + 0.5), math.floor(right * sx + 0.5)
    if not (0 <= top < bottom <= height and 0 <= left < right <= width):
        raise InvalidInputError(
            f"crop box [top {top}, bottom {bottom}, left {left}, right {right}] does not fit a {width}x{height} image"
        )
    return top, bottom, left, right


def crop_mask(
    crop: str | tuple[int, int, int, int], width: int, height: int, crop_size: tuple[int, int] | None = None
) -> np.ndarray:
    """bool H x W, True inside :func:`crop_box` (everywhere for ``none``)."""
    mask = np.zeros((height, width), dtype=bool)
    box = crop_box(crop, width, height, crop_size)
    if box is None:
        mask[:] = True
    else:
        top, bottom, left, right = box
        mask[top:bottom, left:right] = True
    return mask


def range_mask(gt: np.ndarray, valid: np.ndarray, depth_range: tuple[float, float], bounds: str = "open") -> np.ndarray:
    """``valid`` AND min < gt < max (``open``) or min <= gt <= max (``closed``); GT is never read where invalid."""
    lo, hi = depth_range
    g = np.where(valid, gt, np.nan).astype(np.float64)
    with np.errstate(invalid="ignore"):
        if bounds == "open":
            inside = (g > lo) & (g < hi)
        elif bounds == "closed":
            inside = (g >= lo) & (g <= hi)
        else:
            raise InvalidInputError(f"range bounds must be 'open' or 'closed', got {bounds!r}")
    return valid & inside


def scoring_mask(spec: BenchmarkSpec, sample: RGBDSample, prompt_mask: np.ndarray | None = None) -> np.ndarray:
    """The pixels scored for ``sample`` under ``spec`` (see the module docstring, step 3)."""
    mask = range_mask(sample.depth, sample.valid, spec.depth_range, spec.range_bounds)
    mask &= crop_mask(spec.crop, sample.width, sample.height, spec.crop_size)
    if spec.exclude_prompt_pixels and prompt_mask is not None:
        mask &= ~prompt_mask
    return mask


# ---------------------------------------------------------------------------------------------- resampling
def resize_depth(depth: np.ndarray, width: int, height: int, mode: str = "bilinear") -> np.ndarray:
    """Resize a dense depth map (pixel edges onto pixel edges); ``bilinear`` or ``nearest``."""
    depth = np.asarray(depth, dtype=np.float32)
    if depth.shape == (height, width):
        return depth
    if mode == "bilinear":
        return cv2.resize(depth, (width, height), interpolation=cv2.INTER_LINEAR)
    if mode == "nearest":
        return depth[_nearest_index(depth.shape[0], height)][:, _nearest_index(depth.shape[1], width)]
    raise InvalidInputError(f"resize mode must be bilinear or nearest, got {mode!r}")


def _nearest_index(src: int, dst: int) -> np.ndarray:
    """Source index of each destination pixel centre under the pixel-edge convention: floor((i + 0.5) src/dst)."""
    return np.minimum(np.floor((np.arange(dst) + 0.5) * src / dst).astype(np.int64), src - 1)


def resize_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 image resize: area averaging when shrinking, bilinear when enlarging."""
    if image.shape[:2] == (height, width):
        return image
    shrink = width < image.shape[1] or height < image.shape[0]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resample_sample(sample: RGBDSample, size: tuple[int, int] | None) -> RGBDSample:
    """The sample at ``size = (W, H)``: image by area/bilinear, GT and mask by nearest, intrinsics resized."""
    if size is None or (sample.width, sample.height) == tuple(size):
        return sample
    w, h = int(size[0]), int(size[1])
    ri, ci = _nearest_index(sample.height, h), _nearest_index(sample.width, w)
    valid = sample.valid[ri][:, ci]
    depth = np.where(valid, sample.depth[ri][:, ci], 0.0).astype(np.float32)
    return sample.replace(
        image=resize_image(sample.image, w, h), depth=depth, valid=valid, intrinsics=sample.intrinsics.resized(w, h)
    )


# ---------------------------------------------------------------------------------------------- alignment
def align_depth(
    pred: np.ndarray,
    target: np.ndarray,
    fit_mask: np.ndarray,
    method: str = "none",
    space: str = "depth",
    nonpositive: str = "raise",
    check_mask: np.ndarray | None = None,
    clip_eps: float = 1e-3,
) -> tuple[np.ndarray, dict[str, float]]:
    """Align ``pred`` (depth, m) to ``target`` (depth, m) on ``fit_mask``; return aligned depth and parameters.

    ``method``: none | median | lstsq_scale | lstsq_scale_shift (fit by
    :func:`metricanything.metrics.align_prediction`); ``space``: depth (p' = s p + t) or inverse
    (1/p' = s/p + t). Inverse-space alignment can produce a non-positive inverse depth: on ``check_mask``
    pixels (default ``fit_mask``) that raises (``nonpositive="raise"``) or sets the inverse depth to
    ``clip_eps`` 1/m (``"clip"``, counted in ``num_clipped``). Outside ``check_mask`` such pixels become NaN.
    """
    if method not in _ALIGN_TO_METRICS:
        raise InvalidInputError(f"unknown alignment {method!r}; choose from {', '.join(_ALIGN_TO_METRICS)}")
    if method == "none":
        return np.asarray(pred, dtype=np.float32), {"scale": 1.0, "shift": 0.0, "num_clipped": 0.0}
    if not fit_mask.any():
        raise InvalidInputError("alignment has no pixel to fit on")
    with np.errstate(divide="ignore", invalid="ignore"):
        values, params = metrics.align_prediction(
            pred, np.where(fit_mask, target, 1.0), fit_mask, _ALIGN_TO_METRICS[method], space
        )
    check = fit_mask if check_mask is None else check_mask
    bad = ~(values > 0)
    n_bad = int(np.count_nonzero(bad & check))
    if n_bad and nonpositive == "raise":
        kind = "depth" if space == "depth" else "inverse depth"
        raise InvalidInputError(
            f"{method} alignment in {space} space gives {n_bad} non-positive {kind} value(s) on scored pixels "
            "(set nonpositive: clip in the benchmark to clip them)"
        )
    eps = clip_eps
    values = np.where(bad & check, eps, values)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = values if space == "depth" else 1.0 / values
    depth = np.where(values > 0, depth, np.nan).astype(np.float32)
    return depth, {"scale": float(params["scale"]), "shift": float(params["shift"]), "num_clipped": float(n_bad)}


# ---------------------------------------------------------------------------------------------- scoring
@dataclass
class ImageScore:
    """What scoring one image produced: the metrics row and the arrays used (for panels / plots)."""

    sample_id: str
    metrics: dict[str, float] | None
    pred: np.ndarray
    mask: np.ndarray
    skipped: str | None = None
    params: dict[str, float] = field(default_factory=dict)


class BenchmarkScorer:
    """Scores predictions of one predictor x prompt column under a benchmark, image by image."""

    def __init__(self, spec: BenchmarkSpec) -> None:
        self.spec = spec
        self.acc = metrics.MetricAccumulator(range_bins=spec.distance_bins)
        self.records: list[dict[str, Any]] = []
        self.skipped: list[tuple[str, str]] = []

    def score(
        self,
        pred: np.ndarray,
        sample: RGBDSample,
        prompt_depth: np.ndarray | None = None,
        prompt_mask: np.ndarray | None = None,
    ) -> ImageScore:
        """Apply crop, range, alignment and clipping to ``pred`` (float32 H x W at the sample's size) and add it."""
        spec = self.spec
        pred = np.asarray(pred, dtype=np.float32)
        if pred.shape != sample.depth.shape:
            raise InvalidInputError(f"prediction {pred.shape} and GT {sample.depth.shape} differ in size")
        mask = scoring_mask(spec, sample, prompt_mask)
        sid = sample.sample_id
        if not mask.any():
            self.skipped.append((sid, "no scored pixel (crop/range/validity)"))
            return ImageScore(sid, None, pred, mask, skipped="no scored pixel")
        if spec.alignment != "none" and spec.align_on == "prompt":
            if prompt_mask is None or prompt_depth is None or not prompt_mask.any():
                raise InvalidInputError(f"benchmark {spec.name!r} aligns on the prompt, but sample {sid!r} has none")
            fit_mask, target = prompt_mask, prompt_depth
        else:
            fit_mask, target = mask, sample.depth
        aligned, params = align_depth(
            pred, target, fit_mask, spec.alignment, spec.alignment_space, spec.nonpositive, check_mask=mask
        )
        if spec.clip_prediction:
            lo, hi = spec.depth_range
            aligned = np.clip(aligned, max(lo, 1e-6), hi if math.isfinite(hi) else None).astype(np.float32)
        bad = int(np.count_nonzero(mask & ~np.isfinite(aligned)))
        if bad:
            raise InvalidInputError(f"prediction for sample {sid!r} has {bad} non-finite value(s) on scored pixels")
        row = self.acc.add(aligned, sample.depth, mask, name=sid)
        if spec.alignment != "none":
            row = {**row, "scale": params["scale"], "shift": params["shift"]}
        row = {**row, "num_clipped": params["num_clipped"]}
        self.records.append({"sample_id": sid, **row})
        return ImageScore(sid, row, aligned, mask, params=params)

    @property
    def num_images(self) -> int:
        return self.acc.num_images

    def headline(self) -> dict[str, float]:
        """The benchmark's aggregation of every metric (per-image mean or pooled)."""
        return self.acc.per_image_mean() if self.spec.aggregation == "per_image" else self.acc.pooled()

    def summary(self) -> dict[str, Any]:
        """JSON-ready: headline, both aggregations, the per-range breakdown and skipped images."""
        if self.acc.num_images == 0:
            return {"aggregation": self.spec.aggregation, "num_images": 0, "headline": None,
                    "skipped": [list(s) for s in self.skipped]}  # fmt: skip
        s = self.acc.summary()
        return {
            "aggregation": self.spec.aggregation,
            "headline": self.headline(),
            "num_images": s["num_images"],
            "num_pixels": s["num_pixels"],
            "per_image_mean": s["per_image_mean"],
            "pooled": s["pooled"],
            "ranges": s["ranges"],
            "skipped": [list(x) for x in self.skipped],
        }


__all__ = [
    "CROP_FRACTIONS",
    "NYU_CROP",
    "BenchmarkScorer",
    "ImageScore",
    "align_depth",
    "crop_box",
    "crop_mask",
    "range_mask",
    "resample_sample",
    "resize_depth",
    "resize_image",
    "scoring_mask",
]
