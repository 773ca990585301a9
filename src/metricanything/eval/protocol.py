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

Also here: the real-frames prompt recipe (:func:`fraction_prompt`, pattern ``frac:F``), the per-frame oracle
constant (:func:`oracle_constant`), the comparison of a predictor with a reference frame by frame
(:func:`compare_to_reference`) and the released evaluation's input resize and output upsampling
(:func:`released_resize`, :func:`upsample_inverse_depth`).
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
from metricanything.prompts.prompt import Prompt

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


# ---------------------------------------------------------------------------------------------- real-frames recipe
#: Name of the real-frames prompt pattern: ``frac:F`` (see :func:`fraction_prompt`).
FRACTION_PATTERN = "frac"


def parse_fraction_pattern(pattern: str | None) -> float | None:
    """``F`` of a ``frac:F`` pattern (0 < F <= 1), None for any other pattern; a malformed one raises."""
    if pattern is None or not pattern.startswith(FRACTION_PATTERN + ":"):
        return None
    raw = pattern[len(FRACTION_PATTERN) + 1:]
    try:
        frac = float(raw)
    except ValueError:
        raise InvalidInputError(f"prompt pattern {pattern!r}: frac:F needs a number F in (0, 1], e.g. frac:0.01") from None
    if not (0.0 < frac <= 1.0):
        raise InvalidInputError(f"prompt pattern {pattern!r}: frac:F needs 0 < F <= 1")
    return frac


def fraction_prompt(depth: np.ndarray, valid: np.ndarray, frac: float, seed: int = 0) -> Prompt:
    """The real-frames completion prompt: ``int(frac * H * W)`` valid pixels, exactly as the README recipe.

    ``rng = numpy.random.default_rng(seed)``; ``vv, uu = numpy.nonzero(valid)``;
    ``pick = rng.choice(len(vv), size=int(frac * H * W), replace=False)``; the prompt is the GT at
    ``(vv[pick], uu[pick])``, in the order drawn. Raises when the frame has fewer valid pixels than that.
    """
    valid = np.asarray(valid, dtype=bool)
    h, w = valid.shape
    n = int(frac * h * w)
    vv, uu = np.nonzero(valid)
    if n < 1:
        raise InvalidInputError(f"frac:{frac:g} gives no prompt point on a {w}x{h} image")
    if n > len(vv):
        raise InvalidInputError(f"frac:{frac:g} needs {n} valid GT pixels, the frame has {len(vv)}")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(vv), size=n, replace=False)
    v, u = vv[pick], uu[pick]
    points = np.stack([u, v, np.asarray(depth, dtype=np.float64)[v, u]], axis=1)
    return Prompt.from_points(points, w, h)


def oracle_constant(gt: np.ndarray) -> dict[str, float]:
    """The best single depth for a frame's scored GT values ``gt`` (1-D, metres, > 0).

    delta1 counts pixels with ``max(c / g, g / c) < 1.25``, i.e. ``|ln c - ln g| < ln 1.25``: the best
    constant is the centre of the log-depth window of width ``2 ln 1.25`` that holds the most GT values.
    With the log-depths sorted, the window starting at each value is counted with a binary search; the
    constant returned is ``exp`` of the midpoint between the first and the last value of the fullest
    window (ties: the lowest window). Exact up to float rounding at the window's edges.

    AbsRel ``mean |c - g| / g`` is minimised by the median of ``g`` weighted by ``1 / g`` (the lower
    weighted median).

    Returns ``constant`` (delta1-optimal), ``delta1`` / ``abs_rel`` at it, ``abs_rel_constant`` (the
    AbsRel-optimal one) and ``abs_rel_at_abs_rel_constant``.
    """
    g = np.asarray(gt, dtype=np.float64).reshape(-1)
    if g.size == 0 or not (np.isfinite(g).all() and (g > 0).all()):
        raise InvalidInputError("oracle_constant needs at least one finite positive GT depth")
    x = np.sort(np.log(g))
    width = 2.0 * math.log(1.25)
    last = np.searchsorted(x, x + width, side="left") - 1
    counts = last - np.arange(x.size) + 1
    i = int(np.argmax(counts))
    c1 = float(math.exp(0.5 * (x[i] + x[last[i]])))
    order = np.sort(g)
    weights = 1.0 / order
    cum = np.cumsum(weights)
    c2 = float(order[int(np.searchsorted(cum, 0.5 * cum[-1], side="left"))])

    def delta1(c: float) -> float:
        return float(np.mean(np.maximum(c / g, g / c) < 1.25))

    def abs_rel(c: float) -> float:
        return float(np.mean(np.abs(c - g) / g))

    return {"constant": c1, "delta1": delta1(c1), "abs_rel": abs_rel(c1), "abs_rel_constant": c2,
            "abs_rel_at_abs_rel_constant": abs_rel(c2)}  # fmt: skip


def compare_to_reference(values: dict[str, float], reference: dict[str, float]) -> dict[str, Any] | None:
    """Frame-by-frame comparison of a predictor's AbsRel ``values`` with the reference's (both by frame id).

    On the frames both have (a frame where the reference is exact, AbsRel 0, has no ratio and is listed in
    ``excluded``): ``geomean_ratio`` = exp(mean ln(value / reference)) (0 when the predictor is exact on a
    frame), ``frames_worse`` (ratio > 1), ``frames`` (how many), ``worst_ratio`` and ``worst_frame``. None when
    no frame is shared.
    """
    shared = [k for k in values if k in reference and reference[k] > 0]
    excluded = [k for k in values if k in reference and not reference[k] > 0]
    if not shared:
        return None
    ratios = np.array([values[k] / reference[k] for k in shared], dtype=np.float64)
    if not (np.isfinite(ratios).all() and (ratios >= 0).all()):
        raise InvalidInputError("compare_to_reference: AbsRel values must be finite and >= 0")
    worst = int(np.argmax(ratios))
    with np.errstate(divide="ignore"):
        geomean = float(np.exp(np.mean(np.log(ratios))))
    return {
        "geomean_ratio": geomean,
        "frames": len(shared),
        "frames_worse": int(np.count_nonzero(ratios > 1.0)),
        "worst_ratio": float(ratios[worst]),
        "worst_frame": shared[worst],
        "excluded": excluded,
    }


# ---------------------------------------------------------------------------------------------- released resize
def _native_uint8_resize() -> bool:
    """torchvision's choice for uint8 bilinear resizes on the CPU: the uint8 kernel when the CPU capability
    string contains ``AVX2`` (so not on ``AVX512`` machines), else float32 + rounding."""
    import torch  # noqa: PLC0415 - eval protocol stays importable without loading torch

    return "AVX2" in torch.backends.cpu.get_cpu_capability()


def released_resize(image: np.ndarray, width: int, height: int, native_uint8: bool | None = None) -> np.ndarray:
    """uint8 H x W x 3 image -> uint8 ``height`` x ``width`` x 3, as the released evaluation resizes its input.

    The released evaluation (``dataset/eval_booster.py``) applies torchvision ``v2.ToImage``,
    ``v2.Resize((S, S), antialias=True)`` (bilinear), then ``ToDtype(float32, scale=True)`` and the ImageNet
    ``Normalize``. On a CPU tensor that resize is :func:`torch.nn.functional.interpolate` (bilinear,
    ``align_corners=False``, ``antialias=True``) run directly on the uint8 image when the CPU reports AVX2,
    else on a float32 copy that is rounded back to uint8; the two differ by at most 1 on some pixels.
    ``native_uint8=None`` follows the same rule on this machine; True / False forces one path.
    """
    import torch  # noqa: PLC0415
    import torch.nn.functional as F  # noqa: PLC0415

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise InvalidInputError(f"released_resize needs a uint8 H x W x 3 image, got {img.dtype} {img.shape}")
    if img.shape[:2] == (height, width):
        return img
    native = _native_uint8_resize() if native_uint8 is None else bool(native_uint8)
    hwc = np.array(img, copy=True, order="C")  # writable, C-ordered: torch shares its memory
    t = torch.from_numpy(hwc).permute(2, 0, 1).unsqueeze(0)  # 1 x 3 x H x W, channels-last in memory
    if not native:
        t = t.to(torch.float32)
    out = F.interpolate(t, size=(int(height), int(width)), mode="bilinear", align_corners=False, antialias=True)
    if not native:
        out = out.round_().to(torch.uint8)
    return np.ascontiguousarray(out[0].permute(1, 2, 0).numpy())


def upsample_inverse_depth(depth: np.ndarray, width: int, height: int) -> np.ndarray:
    """A depth map at the network size -> ``width`` x ``height`` as the released evaluation does it.

    inverse = 1 / depth, resized bilinearly (``align_corners=False``, no antialias), depth =
    1 / clamp(inverse, 1e-3, 1e3). (The released code clamps after the resize; a model output that is
    already clamped at 1e-3 changes only pixels next to depth beyond 1000 m.)
    """
    import torch  # noqa: PLC0415
    import torch.nn.functional as F  # noqa: PLC0415

    d = np.asarray(depth, dtype=np.float32)
    inv = torch.from_numpy(1.0 / d)[None, None]
    if d.shape != (height, width):
        inv = F.interpolate(inv, size=(int(height), int(width)), mode="bilinear", align_corners=False)
    inv = torch.clamp(inv, min=1e-3, max=1e3)
    return (1.0 / inv)[0, 0].numpy().astype(np.float32)


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
    "FRACTION_PATTERN",
    "NYU_CROP",
    "BenchmarkScorer",
    "ImageScore",
    "align_depth",
    "compare_to_reference",
    "crop_box",
    "crop_mask",
    "fraction_prompt",
    "oracle_constant",
    "parse_fraction_pattern",
    "range_mask",
    "released_resize",
    "resample_sample",
    "resize_depth",
    "resize_image",
    "scoring_mask",
    "upsample_inverse_depth",
]
