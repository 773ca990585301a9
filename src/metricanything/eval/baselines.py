"""Everything the evaluation runner scores goes through one interface: :class:`Predictor`.

``Predictor.predict(sample, prompt, intrinsics_for_model) -> depth`` returns a float32 H x W map in metres
at the size of ``sample.image``. ``prompt`` is a :class:`~metricanything.prompts.prompt.Prompt` (or None)
built by the benchmark from the GT; ``intrinsics_for_model`` is the GT intrinsics when the benchmark's
focal source is ``gt`` and None when the model must estimate its own. Predictors never see
``sample.depth`` / ``sample.valid`` (the runner hands them a copy with the GT blanked).

Two flags declare how a predictor relates to prompts, and the runner refuses mismatches:

* ``needs_prompt``: it cannot run without one (every prompt-only completion baseline);
* ``accepts_prompt``: it can use one (a prompt-free student cannot; the teacher can).

Shipped baselines (all deterministic, no learning):

* ``nearest`` (:class:`NearestFill`): each pixel takes the depth of the nearest prompt pixel (exact
  Euclidean distance transform).
* ``linear`` (:class:`LinearFill`): piecewise-linear interpolation of depth on the Delaunay triangulation
  of the prompt pixels (the arithmetic of ``scipy.interpolate.griddata(method="linear")``), nearest fill
  outside the convex hull; fewer than three non-collinear points fall back to ``nearest``.
* ``ipbasic`` (:class:`MorphologicalFill`): a classical morphological completion in the spirit of IP-Basic
  (Ku, Harakeh & Waslander, CRV 2018); our version is documented on the class.
* ``knn_plane`` / ``knn_plane_guided`` (:class:`PlaneFill`): the teacher's parameter-free reference fill alone
  (local planes in inverse depth; the guided one weights prompt points by colour similarity to the pixel), so
  a teacher's learned part can be measured against the reference it corrects.
* ``prompt_median`` (:class:`PromptMedian`): the constant median depth of the prompt.
* ``train_median`` (:class:`ConstantDepth`): the constant median depth of a training set (given, or
  computed with :func:`median_depth_of`).
* :class:`ExternalModel`: wraps any callable ``image[, prompt][, intrinsics] -> depth`` (or an object with a
  ``.depth``, e.g. our API's ``DepthResult``) so external models are evaluated identically.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Iterable
from typing import Any

import cv2
import numpy as np
from scipy import ndimage
from scipy.spatial import Delaunay, QhullError

from metricanything.camera import Intrinsics
from metricanything.data.sample import RGBDSample
from metricanything.errors import InvalidInputError
from metricanything.prompts.prompt import Prompt


class Predictor(abc.ABC):
    """A depth predictor as seen by the evaluation runner."""

    #: Short name used in reports.
    name: str = "predictor"
    #: Cannot run without a prompt.
    needs_prompt: bool = False
    #: Can make use of a prompt.
    accepts_prompt: bool = True
    #: ``(W, H)`` of a fixed input the model resizes every image to (a student's square network input), or
    #: None. Benchmarks with ``input_resize: released`` resize the image to it themselves, the released way.
    input_size: tuple[int, int] | None = None

    @abc.abstractmethod
    def predict(
        self, sample: RGBDSample, prompt: Prompt | None, intrinsics_for_model: Intrinsics | None
    ) -> np.ndarray:
        """Metric depth (float32 H x W, metres, > 0) for ``sample.image``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def check_prompt_compatibility(predictor: Predictor, prompt_pattern: str | None) -> None:
    """Raise :class:`InvalidInputError` when a predictor cannot be evaluated with/without this prompt."""
    if prompt_pattern is None and predictor.needs_prompt:
        raise InvalidInputError(
            f"{predictor.name} needs a prompt (it only completes sparse depth): pass --prompt PATTERN, "
            "e.g. --prompt points:500"
        )
    if prompt_pattern is not None and not predictor.accepts_prompt:
        raise InvalidInputError(
            f"{predictor.name} is prompt-free and cannot use --prompt {prompt_pattern}: evaluate it without "
            "--prompt (or compare it in a separate run)"
        )


def _prompt_map(prompt: Prompt | None, sample: RGBDSample, who: str) -> tuple[np.ndarray, np.ndarray]:
    if prompt is None:
        raise InvalidInputError(f"{who} needs a prompt")
    if prompt.size != (sample.width, sample.height):
        raise InvalidInputError(
            f"{who}: prompt is {prompt.width}x{prompt.height} but the image is {sample.width}x{sample.height}"
        )
    depth, mask = prompt.to_map()
    if not mask.any():
        raise InvalidInputError(f"{who}: the prompt is empty for sample {sample.sample_id!r}")
    return depth, mask


def nearest_fill(depth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Every pixel takes the value of the nearest masked pixel (Euclidean; ties broken by scipy's EDT)."""
    if not mask.any():
        raise InvalidInputError("nearest_fill: the mask is empty")
    idx = ndimage.distance_transform_edt(~mask, return_distances=False, return_indices=True)
    return depth[idx[0], idx[1]].astype(np.float32)


def _locate_in_triangles(
    vertices: np.ndarray, simplices: np.ndarray, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel centres inside the triangles: ``(flat pixel index, triangle index, barycentric weights N x 3)``.

    Candidates are the pixels of each triangle's bounding box (vectorised over all triangles); a pixel is
    inside when its three barycentric weights are >= -1e-9 (edges and vertices included; a pixel shared by
    two triangles keeps the first, which gives the same value since the interpolant is continuous).
    Pure numpy (no LAPACK): ``Delaunay.find_simplex`` computes its transforms with LAPACK calls whose
    thread pool can stall for seconds on a busy machine.
    """
    a, b, c = (vertices[simplices[:, k]] for k in range(3))
    x0 = np.ceil(np.minimum(np.minimum(a[:, 0], b[:, 0]), c[:, 0])).astype(np.int64).clip(0, width - 1)
    x1 = np.floor(np.maximum(np.maximum(a[:, 0], b[:, 0]), c[:, 0])).astype(np.int64).clip(0, width - 1)
    y0 = np.ceil(np.minimum(np.minimum(a[:, 1], b[:, 1]), c[:, 1])).astype(np.int64).clip(0, height - 1)
    y1 = np.floor(np.maximum(np.maximum(a[:, 1], b[:, 1]), c[:, 1])).astype(np.int64).clip(0, height - 1)
    bw, bh = np.maximum(x1 - x0 + 1, 0), np.maximum(y1 - y0 + 1, 0)
    counts = bw * bh
    tri = np.repeat(np.arange(len(simplices)), counts)
    local = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    px = (x0[tri] + local % bw[tri]).astype(np.float64)
    py = (y0[tri] + local // bw[tri]).astype(np.float64)
    ab, ac = b - a, c - a
    det = ab[:, 0] * ac[:, 1] - ab[:, 1] * ac[:, 0]
    apx, apy = px - a[tri, 0], py - a[tri, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        l1 = (apx * ac[tri, 1] - apy * ac[tri, 0]) / det[tri]
        l2 = (ab[tri, 0] * apy - ab[tri, 1] * apx) / det[tri]
    l0 = 1.0 - l1 - l2
    inside = (det[tri] != 0) & (l0 >= -1e-9) & (l1 >= -1e-9) & (l2 >= -1e-9)
    flat = py[inside].astype(np.int64) * width + px[inside].astype(np.int64)
    flat, first = np.unique(flat, return_index=True)
    weights = np.stack([l0[inside], l1[inside], l2[inside]], axis=1)[first]
    return flat, tri[inside][first], weights


def linear_fill(depth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Linear interpolation on the Delaunay triangulation of the masked pixels, nearest outside the hull.

    This is the arithmetic of ``scipy.interpolate.griddata(method="linear")`` (barycentric weights in the
    Delaunay triangle that holds each pixel), with our own point location (:func:`_locate_in_triangles`).
    With fewer than three points, or collinear points (no triangulation), this is :func:`nearest_fill`.
    """
    rows, cols = np.nonzero(mask)
    values = depth[rows, cols].astype(np.float64)
    out = nearest_fill(depth, mask).astype(np.float64)
    if rows.size < 3:
        return out.astype(np.float32)
    vertices = np.stack([cols, rows], axis=1).astype(np.float64)
    try:
        tri = Delaunay(vertices)
    except QhullError:
        return out.astype(np.float32)
    h, w = depth.shape
    flat, simplex, weights = _locate_in_triangles(vertices, tri.simplices, w, h)
    out.reshape(-1)[flat] = (values[tri.simplices[simplex]] * weights).sum(axis=1)
    return out.astype(np.float32)


def _diamond(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    return ((np.abs(r)[:, None] + np.abs(r)[None, :]) <= radius).astype(np.uint8)


def morphological_fill(
    depth: np.ndarray,
    mask: np.ndarray,
    *,
    radius: int | None = None,
    blur: str = "bilateral",
    keep_prompt: bool = True,
) -> np.ndarray:
    """Classical morphological depth completion (our version of IP-Basic). See :class:`MorphologicalFill`."""
    if not mask.any():
        raise InvalidInputError("morphological_fill: the mask is empty")
    h, w = depth.shape
    z = depth[mask].astype(np.float64)
    ref = float(z.max()) * 1.1 + 1e-3
    # 1. invert (near -> large) so that max-filters let foreground win; empty pixels are 0
    inv = np.zeros((h, w), dtype=np.float32)
    inv[mask] = (ref - z).astype(np.float32)
    if radius is None:
        spacing = math.sqrt(h * w / max(int(mask.sum()), 1))
        radius = int(np.clip(round(spacing / 2.0), 2, 15))
    # 2. dilate with a diamond kernel: every point spreads to its neighbourhood (foreground dominates)
    filled = cv2.dilate(inv, _diamond(radius))
    # 3. closing with a full square kernel of the same size: closes the gaps between spread points
    square = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    filled = cv2.morphologyEx(filled, cv2.MORPH_CLOSE, square)
    # 4. fill small holes with a 7x7 dilation, then large holes with repeated 31x31 dilations
    for size, repeats in ((7, 1), (31, 3)):
        for _ in range(repeats):
            empty = filled <= 0
            if not empty.any():
                break
            grown = cv2.dilate(filled, np.ones((size, size), np.uint8))
            filled[empty] = grown[empty]
    # 5. anything still empty (very sparse prompts, far from every point): nearest filled value
    empty = filled <= 0
    if empty.any():
        filled = nearest_fill(filled, ~empty)
    # 6. smooth: 5x5 median (removes outliers of the max-filters) then an edge-preserving blur
    filled = cv2.medianBlur(filled.astype(np.float32), 5)
    if blur == "bilateral":
        sigma_color = 0.05 * float(np.median(z))
        filled = cv2.bilateralFilter(filled, 5, sigma_color, 2.0)
    elif blur == "gaussian":
        filled = cv2.GaussianBlur(filled, (5, 5), 0)
    elif blur != "none":
        raise InvalidInputError(f"morphological_fill: blur must be bilateral, gaussian or none, got {blur!r}")
    # 7. invert back; every value is a convex combination / selection of prompt values, so it is in range
    out = (ref - filled.astype(np.float64)).astype(np.float32)
    out = np.clip(out, float(z.min()), float(z.max()))  # guards float rounding of the blurs only
    if keep_prompt:
        out[mask] = depth[mask]
    return out


class NearestFill(Predictor):
    """Prompt-only baseline: depth of the nearest prompt pixel."""

    name = "baseline:nearest"
    needs_prompt = True

    def predict(self, sample, prompt, intrinsics_for_model):
        return nearest_fill(*_prompt_map(prompt, sample, self.name))


class LinearFill(Predictor):
    """Prompt-only baseline: Delaunay-linear interpolation of the prompt, nearest fill outside the hull."""

    name = "baseline:linear"
    needs_prompt = True

    def predict(self, sample, prompt, intrinsics_for_model):
        return linear_fill(*_prompt_map(prompt, sample, self.name))


class MorphologicalFill(Predictor):
    """Prompt-only baseline: classical morphological completion in the spirit of IP-Basic.

    Our version (IP-Basic's kernels were tuned for 64-beam LiDAR at 1242x375; ours adapt to the density):

    1. invert the prompt depth, ``d' = 1.1 max(z) + 1e-3 - d`` (empty = 0), so max-filters favour near
       surfaces as in IP-Basic;
    2. dilate with a diamond kernel of radius ``r = clip(round(s / 2), 2, 15)``, where
       ``s = sqrt(H W / N)`` is the mean spacing of the N prompt pixels;
    3. close with a full (2r+1)^2 square kernel;
    4. fill remaining empty pixels by a 7x7 dilation, then up to three 31x31 dilations;
    5. fill whatever is still empty with the nearest filled value;
    6. 5x5 median blur, then a bilateral filter (diameter 5, colour sigma 5% of the prompt's median depth,
       space sigma 2 px) — ``blur="gaussian"`` / ``"none"`` are options;
    7. invert back; the prompt pixels keep their exact values (``keep_prompt``).
    """

    name = "baseline:ipbasic"
    needs_prompt = True

    def __init__(self, radius: int | None = None, blur: str = "bilateral", keep_prompt: bool = True) -> None:
        self.radius, self.blur, self.keep_prompt = radius, blur, keep_prompt

    def predict(self, sample, prompt, intrinsics_for_model):
        d, m = _prompt_map(prompt, sample, self.name)
        return morphological_fill(d, m, radius=self.radius, blur=self.blur, keep_prompt=self.keep_prompt)


class PlaneFill(Predictor):
    """Prompt-only baseline: the teacher's parameter-free reference alone, :func:`knn_plane_fill` (local planes
    in inverse depth through each pixel's nearest prompt points); ``guided`` weights the points by their colour
    similarity to the pixel (the reference of a teacher with ``reference_guide: image``)."""

    needs_prompt = True

    def __init__(self, guided: bool = False) -> None:
        self.guided = guided
        self.name = "baseline:knn_plane_guided" if guided else "baseline:knn_plane"

    def predict(self, sample, prompt, intrinsics_for_model):
        import torch

        from metricanything.models.prompt_fill import knn_plane_fill

        d, m = _prompt_map(prompt, sample, self.name)
        value = torch.from_numpy(np.where(m, np.log(np.where(m, d, 1.0)), 0.0).astype(np.float32))[None, None]
        guide = None
        if self.guided:
            guide = torch.from_numpy(np.ascontiguousarray(sample.image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        fill = knn_plane_fill(value, torch.from_numpy(m)[None, None], guide=guide)
        return np.exp(fill[0, 0].numpy()).astype(np.float32)


class PromptMedian(Predictor):
    """Prompt-only baseline: the constant median depth of the prompt points."""

    name = "baseline:prompt_median"
    needs_prompt = True

    def predict(self, sample, prompt, intrinsics_for_model):
        d, m = _prompt_map(prompt, sample, self.name)
        return np.full((sample.height, sample.width), float(np.median(d[m])), dtype=np.float32)


class ConstantDepth(Predictor):
    """A constant depth everywhere (``train_median``: the median GT depth of a training set).

    It uses no prompt but tolerates one (it is the "no information" reference line of every column).
    """

    needs_prompt = False
    accepts_prompt = True

    def __init__(self, value: float, name: str = "baseline:train_median") -> None:
        if not (math.isfinite(value) and value > 0):
            raise InvalidInputError(f"{name}: the constant depth must be finite and > 0, got {value!r}")
        self.value = float(value)
        self.name = name

    def predict(self, sample, prompt, intrinsics_for_model):
        return np.full((sample.height, sample.width), self.value, dtype=np.float32)


def median_depth_of(samples: Iterable[RGBDSample]) -> float:
    """Median of every valid GT depth of ``samples`` (pooled): the training-set median constant."""
    values = [s.depth[s.valid] for s in samples]
    if not values or sum(v.size for v in values) == 0:
        raise InvalidInputError("median_depth_of: the samples have no valid depth")
    return float(np.median(np.concatenate(values)))


def as_depth_array(output: Any, width: int, height: int, who: str, upsample: str = "bilinear") -> np.ndarray:
    """Turn a model output (ndarray, torch tensor, or an object with ``.depth``) into float32 H x W metres.

    A prediction of another size is resized to ``width`` x ``height`` (bilinear by default, pixel edges
    onto pixel edges). Non-finite or non-positive values raise :class:`InvalidInputError`.
    """
    if hasattr(output, "depth"):
        output = output.depth
    if hasattr(output, "detach"):
        output = output.detach().cpu().numpy()
    arr = np.asarray(output, dtype=np.float32)
    arr = np.squeeze(arr)
    if arr.ndim != 2:
        raise InvalidInputError(f"{who}: expected an H x W depth map, got shape {np.shape(output)}")
    if arr.shape != (height, width):
        interp = cv2.INTER_LINEAR if upsample == "bilinear" else cv2.INTER_NEAREST
        arr = cv2.resize(arr, (width, height), interpolation=interp)
    if not np.isfinite(arr).all() or (arr <= 0).any():
        bad = int((~np.isfinite(arr) | (arr <= 0)).sum())
        raise InvalidInputError(f"{who}: prediction has {bad} non-finite or non-positive depth value(s)")
    return arr


class ExternalModel(Predictor):
    """Wrap any callable so it is evaluated exactly like our models.

    ``fn(image, **kwargs)`` receives the uint8 H x W x 3 RGB image and, as keywords: ``prompt`` (a
    :class:`Prompt`, or ``prompt_depth`` + ``prompt_mask`` arrays with ``prompt_format="map"``) when the
    model accepts prompts and one is given, and ``intrinsics`` (:class:`Intrinsics` or None) when
    ``pass_intrinsics``. It returns depth in metres as an array/tensor of any size (resized bilinearly to
    the image) or an object with a ``.depth`` attribute.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str,
        *,
        needs_prompt: bool = False,
        accepts_prompt: bool = False,
        pass_intrinsics: bool = False,
        prompt_format: str = "prompt",
        upsample: str = "bilinear",
        input_size: tuple[int, int] | None = None,
    ) -> None:
        if needs_prompt and not accepts_prompt:
            raise InvalidInputError(f"{name}: a model that needs a prompt must accept one")
        if prompt_format not in ("prompt", "map"):
            raise InvalidInputError(f"{name}: prompt_format must be 'prompt' or 'map', got {prompt_format!r}")
        self.fn, self.name = fn, name
        self.needs_prompt, self.accepts_prompt = needs_prompt, accepts_prompt
        self.pass_intrinsics, self.prompt_format, self.upsample = pass_intrinsics, prompt_format, upsample
        self.input_size = None if input_size is None else (int(input_size[0]), int(input_size[1]))

    def predict(self, sample, prompt, intrinsics_for_model):
        kwargs: dict[str, Any] = {}
        if prompt is not None and self.accepts_prompt:
            if self.prompt_format == "map":
                kwargs["prompt_depth"], kwargs["prompt_mask"] = prompt.to_map()
            else:
                kwargs["prompt"] = prompt
        elif self.needs_prompt:
            raise InvalidInputError(f"{self.name} needs a prompt")
        if self.pass_intrinsics:
            kwargs["intrinsics"] = intrinsics_for_model
        out = self.fn(sample.image, **kwargs)
        return as_depth_array(out, sample.width, sample.height, self.name, self.upsample)

    @classmethod
    def from_api(
        cls,
        model: Any,
        infer: Callable[..., Any],
        name: str,
        *,
        accepts_prompt: bool,
        needs_prompt: bool = False,
        input_size: tuple[int, int] | None = None,
    ) -> ExternalModel:
        """Adapter for our API: ``infer(model, image, intrinsics=K, prompt=P) -> DepthResult``.

        The API is passed in (not imported) because ``eval`` sits above ``api`` in the layer order.
        ``input_size``: the model's fixed square input ``(S, S)`` (students), see :attr:`Predictor.input_size`.
        """

        def call(image: np.ndarray, prompt: Prompt | None = None, intrinsics: Intrinsics | None = None) -> Any:
            return infer(model, image, intrinsics=intrinsics, prompt=prompt)

        return cls(call, name, needs_prompt=needs_prompt, accepts_prompt=accepts_prompt, pass_intrinsics=True,
                   input_size=input_size)  # fmt: skip


#: baseline name (after ``baseline:``) -> factory taking the value after ``=`` (or None).
BASELINES: dict[str, Callable[[str | None], Predictor]] = {
    "nearest": lambda arg: NearestFill(),
    "linear": lambda arg: LinearFill(),
    "ipbasic": lambda arg: MorphologicalFill(),
    "prompt_median": lambda arg: PromptMedian(),
    "knn_plane": lambda arg: PlaneFill(),
    "knn_plane_guided": lambda arg: PlaneFill(guided=True),
}

__all__ = [
    "BASELINES",
    "ConstantDepth",
    "ExternalModel",
    "LinearFill",
    "MorphologicalFill",
    "NearestFill",
    "PlaneFill",
    "Predictor",
    "PromptMedian",
    "as_depth_array",
    "check_prompt_compatibility",
    "linear_fill",
    "median_depth_of",
    "morphological_fill",
    "nearest_fill",
]
