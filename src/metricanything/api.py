"""Inference API: load a model, run it on images of any size, get metric depth with its camera.

>>> model = load_model("path/to/checkpoint")                      # doctest: +SKIP
>>> result = infer(model, image_uint8_hwc, f_px=1200.0)             # doctest: +SKIP
>>> result.depth, result.valid, result.intrinsics, result.points    # doctest: +SKIP

Intrinsics resolution (first that applies), recorded in ``DepthResult.intrinsics_source``:

1. ``intrinsics`` given (an :class:`Intrinsics` for the image's exact size)   -> ``given``
2. ``f_px`` given (square pixels, centred principal point)                   -> ``given``
3. the model estimates the focal (a student built with ``use_fov_head``, the point-map model) -> ``estimated``
4. fallback: ``fx = fy = FALLBACK_FOCAL_OVER_WIDTH * W`` (horizontal FoV 2 atan(1/2) = 53.13 deg, the
   official student CLI's choice), with a :class:`UserWarning`                 -> ``fallback``

For the teacher with prompt points, depth does not depend on the focal (the prompt fixes the scale); the
intrinsics are still needed for ``points``. For the student and for prompt-free teacher inference, depth scales
linearly with the focal length.

Given intrinsics (1, 2) must be plausible for the image (horizontal and vertical FoV in 5-170 deg, principal
point inside the image, see :func:`metricanything.camera.implausible_intrinsics`), else
:class:`InvalidInputError`: a focal in millimetres instead of pixels would silently scale every depth.
A focal from the FoV head (3) issues an :class:`EstimatedFocalWarning` quoting the head's measured error,
read from the checkpoint's ``training.json`` (``fov_head_check``; "unmeasured" when absent), see
:func:`model_info`. Loading the bundled student issues a :class:`SyntheticModelWarning` (it is a demonstrator
trained on synthetic renders only).

Precision: ``"fp32"`` (default), ``"bf16"`` or ``"fp16"``. With fp32 weights, low precision runs under
:func:`torch.autocast`; a model whose weights were loaded in low precision runs in that dtype. If a
low-precision run produces a non-finite depth anywhere, a warning is issued and the batch is recomputed in fp32
(on a float32 copy of the model when its weights are low precision), so outputs are always finite.
fp16 on the CPU is refused (:class:`InvalidInputError`): CPUs have no fp16 matrix/convolution units, so
PyTorch emulates it, many times slower than fp32; bf16 is the CPU's low-precision option.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from metricanything.camera import Intrinsics, IntrinsicsSource, implausible_intrinsics, unproject
from metricanything.errors import InvalidInputError
from metricanything.models.protocol import IMAGENET_MEAN, IMAGENET_STD  # noqa: F401 - public constants here too
from metricanything.models.registry import estimates_focal, predict_depth, spec_of

#: Fallback focal length as a multiple of the image width (fx = W, i.e. 53.13 deg horizontal FoV).
FALLBACK_FOCAL_OVER_WIDTH = 1.0

PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

#: the official student, for real-image quality (released ``student_depthmap.pt``, or this hub id)
OFFICIAL_STUDENT_HUB_ID = "yjh001/metricanything_student_depthmap"

SYNTHETIC_STUDENT_NOTICE = (
    "the bundled student (the default model without a prompt) is a small demonstrator trained on synthetic "
    "renders only: expect large depth errors on real photographs. For real-image quality use the official "
    "MetricAnything student: --model (load_model in Python) with the released student_depthmap.pt, or its hub "
    f"id {OFFICIAL_STUDENT_HUB_ID}"
)


class SyntheticModelWarning(UserWarning):
    """The model in use is the bundled demonstrator, trained on synthetic renders only."""


class EstimatedFocalWarning(UserWarning):
    """The focal length (hence the metric scale) came from the model's field-of-view head."""


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded checkpoint says about itself (attached to the model by :func:`load_model`).

    Attributes:
        source: the path or hub id given to :func:`load_model` (empty for a model built in memory).
        directory: the local checkpoint folder, when there is one (``None`` for hub ids / in-memory models).
        bundled: this is the package's bundled demonstrator model.
        fov_head_error_deg: mean absolute horizontal-FoV error of the FoV head, as measured by the
            checkpoint's ``training.json`` (``fov_head_check.mean_abs_fov_error_deg``); ``None`` = unmeasured.
        fov_head_rel_focal_error: median relative focal error |f - f_true| / f_true of the same check
            (``median_rel_focal_error``; depth scales with the focal, so this is also the depth-scale error).
        fov_head_error_samples: how many held-out images those figures were measured on.
    """

    source: str = ""
    directory: Path | None = None
    bundled: bool = False
    fov_head_error_deg: float | None = None
    fov_head_rel_focal_error: float | None = None
    fov_head_error_samples: int | None = None

    def fov_head_error_text(self) -> str:
        """The FoV head's measured error as one human-readable clause."""
        if self.fov_head_error_deg is None:
            where = f"{self.directory / TRAINING_RECORD}" if self.directory is not None else "this model"
            return f"its error is unmeasured: no fov_head_check in {where}"
        rel = (
            f", median relative focal error {100 * self.fov_head_rel_focal_error:.0f}%"
            if self.fov_head_rel_focal_error is not None
            else ""
        )
        n = f" on {self.fov_head_error_samples} held-out images" if self.fov_head_error_samples else ""
        where = f", see {self.directory / TRAINING_RECORD}" if self.directory is not None else ""
        return f"measured mean |horizontal FoV error| {self.fov_head_error_deg:.1f} deg{rel}{n}{where}"

    def fov_head_error_record(self) -> dict[str, Any]:
        """The FoV head's measured error as JSON fields (``"unmeasured"`` where there is no figure)."""
        return {
            "fov_head_error_deg": self.fov_head_error_deg if self.fov_head_error_deg is not None else "unmeasured",
            "fov_head_median_rel_focal_error": (
                self.fov_head_rel_focal_error if self.fov_head_rel_focal_error is not None else "unmeasured"
            ),
            "fov_head_error_samples": self.fov_head_error_samples,
            "fov_head_error_source": (
                str(self.directory / TRAINING_RECORD) if self.fov_head_error_deg is not None and self.directory else None
            ),
        }


#: the training/metadata record written next to a bundled checkpoint by scripts/bundle_models.py
TRAINING_RECORD = "training.json"
_INFO_ATTR = "metricanything_info"


def _read_model_info(path_or_id: str | os.PathLike, kind: str) -> ModelInfo:
    from metricanything.models.bundled import bundled_root

    p = Path(path_or_id).expanduser()
    directory = p if p.is_dir() else p.parent if p.is_file() else None
    if directory is None:
        return ModelInfo(source=str(path_or_id))
    card: dict = {}
    record: dict = {}
    try:
        card = json.loads((directory / "config.json").read_text(encoding="utf-8")).get("card") or {}
    except (OSError, ValueError, AttributeError):
        card = {}
    try:
        record = json.loads((directory / TRAINING_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = {}
    bundled = directory.resolve() == (bundled_root() / kind).resolve() or (
        isinstance(card, dict) and card.get("name") == f"metricanything bundled {kind}"
    )
    check = record.get("fov_head_check") if isinstance(record, dict) else None
    err = rel = n = None
    if isinstance(check, dict) and isinstance(check.get("mean_abs_fov_error_deg"), (int, float)):
        err = float(check["mean_abs_fov_error_deg"])
        if isinstance(check.get("median_rel_focal_error"), (int, float)):
            rel = float(check["median_rel_focal_error"])
        n = int(check["samples"]) if isinstance(check.get("samples"), int) else None
    return ModelInfo(str(path_or_id), directory, bool(bundled), err, rel, n)


def model_info(model: nn.Module) -> ModelInfo:
    """The :class:`ModelInfo` :func:`load_model` attached to ``model`` (an empty one for in-memory models)."""
    info = getattr(model, _INFO_ATTR, None)
    return info if isinstance(info, ModelInfo) else ModelInfo()


@dataclass(eq=False)
class DepthResult:
    """Metric depth for one image.

    Attributes:
        depth: float32 H x W z-depth in metres, at the input's exact size.
        valid: bool H x W; False where the model gives no usable depth (non-finite, <= 0, or, for the student,
            inverse depth at the official 1e-3 floor: sky / beyond ~1000 m).
        intrinsics: the camera used (for the depth scale and for ``points``).
        intrinsics_source: where ``intrinsics`` came from (given / estimated / fallback / ...).
        model_kind: the model's registry kind (``"teacher"``, ``"student"``, ``"pointmap"``).
        confidence: optional float32 H x W in [0, 1] (higher = more reliable); ``None`` for the current models,
            which predict no confidence.
    """

    depth: np.ndarray
    valid: np.ndarray
    intrinsics: Intrinsics
    intrinsics_source: IntrinsicsSource
    model_kind: str
    confidence: np.ndarray | None = None
    _points: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def height(self) -> int:
        return int(self.depth.shape[0])

    @property
    def width(self) -> int:
        return int(self.depth.shape[1])

    @property
    def points(self) -> np.ndarray:
        """float32 H x W x 3 camera-frame points (OpenCV frame), computed on first access; see ``valid``."""
        if self._points is None:
            self._points = unproject(self.depth, self.intrinsics)
        return self._points


# ---------------------------------------------------------------------------------------------- loading
def _precision_dtype(precision: str) -> torch.dtype:
    if precision not in PRECISIONS:
        raise InvalidInputError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    return PRECISIONS[precision]


def _check_cpu_precision(device: torch.device, precision: str, weight_dtype: torch.dtype = torch.float32) -> None:
    """Refuse fp16 compute on the CPU (see the module docstring)."""
    if device.type != "cpu":
        return
    if precision == "fp16":
        raise InvalidInputError(
            "precision fp16 on the CPU is refused: CPUs have no fp16 matrix/convolution units, so PyTorch "
            "emulates fp16 there, many times slower than fp32. Use bf16 (--precision bf16, precision='bf16'), "
            "the CPU's low-precision option, or fp32; fp16 is for GPUs"
        )
    if weight_dtype == torch.float16:
        raise InvalidInputError(
            "the model's weights are fp16 on the CPU, where fp16 is emulated and many times slower than fp32: "
            "call model.float() or model.bfloat16(), or load it with precision='fp32' or 'bf16'"
        )


def load_model(path_or_id: str | os.PathLike, device: str | torch.device = "cpu", precision: str = "fp32") -> nn.Module:
    """Load a model checkpoint of any registered kind (folder, file, official ``.pt`` or hub id) in eval mode.

    ``precision`` other than fp32 casts the weights (halves memory); fp16 on the CPU is refused (use bf16).
    The returned model carries a :class:`ModelInfo` (see :func:`model_info`); loading the bundled student
    issues a :class:`SyntheticModelWarning`.
    """
    from metricanything.models.checkpoint import from_pretrained, model_kind

    if path_or_id is None or not str(path_or_id).strip():
        raise InvalidInputError(
            "load_model: path_or_id is required (a checkpoint folder, a .pt/.safetensors file or a hub id)"
        )
    dtype = _precision_dtype(precision)
    _check_cpu_precision(torch.device(device), precision)
    model = from_pretrained(path_or_id, device=device, dtype=None if dtype == torch.float32 else dtype)
    info = _read_model_info(path_or_id, model_kind(model))
    setattr(model, _INFO_ATTR, info)
    if info.bundled and model_kind(model) == "student":
        warnings.warn(SYNTHETIC_STUDENT_NOTICE, SyntheticModelWarning, stacklevel=2)
    return model


# ---------------------------------------------------------------------------------------------- inputs
def _image_to_tensor(image: Any, index: int) -> torch.Tensor:
    """One image -> float32 3 x H x W in [0, 1] (CPU)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        Image = None  # type: ignore[assignment]
    where = f"image {index}"
    if Image is not None and isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
            raise InvalidInputError(f"{where}: numpy images must be H x W x 3 (or x 1 / x 4), got {arr.shape}")
        if arr.shape[2] == 1:
            arr = np.repeat(arr, 3, axis=2)
        arr = arr[..., :3]
        if not arr.flags.writeable:
            arr = arr.copy()
        if arr.dtype == np.uint8:
            t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).float() / 255.0
        elif np.issubdtype(arr.dtype, np.floating):
            t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).permute(2, 0, 1)
        else:
            raise InvalidInputError(f"{where}: numpy images must be uint8 or float in [0, 1], got {arr.dtype}")
    elif isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.ndim != 3 or t.shape[0] != 3:
            raise InvalidInputError(f"{where}: tensor images must be 3 x H x W, got {tuple(t.shape)}")
        t = t.float() / 255.0 if t.dtype == torch.uint8 else t.float()
    else:
        raise InvalidInputError(
            f"{where}: expected an H x W x 3 uint8 array, a PIL image or a 3 x H x W tensor, got {type(image).__name__}"
        )
    if t.shape[1] < 1 or t.shape[2] < 1:
        raise InvalidInputError(f"{where}: empty image {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise InvalidInputError(f"{where}: image contains non-finite values")
    lo, hi = float(t.min()), float(t.max())
    if lo < -1e-3 or hi > 1.0 + 1e-3:
        raise InvalidInputError(f"{where}: float images must be in [0, 1], got values in [{lo:.3g}, {hi:.3g}]")
    return t.clamp_(0.0, 1.0)


def _split_batch(image: Any) -> tuple[list[Any], bool]:
    if isinstance(image, (list, tuple)):
        if len(image) == 0:
            raise InvalidInputError("empty list of images")
        return list(image), True
    if isinstance(image, torch.Tensor) and image.ndim == 4:
        return list(image.unbind(0)), True
    if isinstance(image, np.ndarray) and image.ndim == 4:
        return list(image), True
    return [image], False


def _per_image(value: Any, n: int, name: str, batched: bool) -> list[Any]:
    if value is None:
        return [None] * n
    if batched and isinstance(value, (np.ndarray, torch.Tensor)) and value.ndim == 1:
        value = [float(v) for v in value]
    if batched and isinstance(value, (list, tuple)) and not _is_prompt_tuple(value):
        if len(value) != n:
            raise InvalidInputError(f"{name}: got {len(value)} entries for {n} images")
        return list(value)
    return [value] * n


def _is_prompt_tuple(value: Any) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(v, (np.ndarray, torch.Tensor)) for v in value)
    )


def _prompt_map(prompt: Any, h: int, w: int, index: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Prompt (``Prompt`` or (depth, mask)) -> float32 / bool 1 x H x W tensors, or None."""
    if prompt is None:
        return None
    where = f"prompt {index}"
    if hasattr(prompt, "to_map"):
        if hasattr(prompt, "width") and (prompt.width, prompt.height) != (w, h):
            raise InvalidInputError(
                f"{where}: prompt is for a {prompt.width}x{prompt.height} image but image {index} is {w}x{h}"
            )
        depth, mask = prompt.to_map()
    elif _is_prompt_tuple(prompt):
        depth, mask = prompt
    else:
        raise InvalidInputError(f"{where}: expected a Prompt or a (depth, mask) tuple, got {type(prompt).__name__}")
    d = torch.as_tensor(np.asarray(depth) if not isinstance(depth, torch.Tensor) else depth).float().squeeze()
    m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask).squeeze().to(torch.bool)
    if d.shape != (h, w) or m.shape != (h, w):
        raise InvalidInputError(
            f"{where}: depth {tuple(d.shape)} and mask {tuple(m.shape)} must both be the image size {(h, w)}"
        )
    if not hasattr(prompt, "to_map") and not bool(m.any()):  # a Prompt with 0 points is a deliberate empty prompt
        raise InvalidInputError(
            f"{where}: the prompt mask has no prompt point; pass prompt=None for prompt-free inference"
        )
    return d.view(1, h, w), m.view(1, h, w)


# ---------------------------------------------------------------------------------------------- intrinsics
def _resolve_intrinsics(
    intrinsics: Intrinsics | None, f_px: float | None, h: int, w: int, index: int
) -> tuple[Intrinsics | None, IntrinsicsSource | None]:
    if intrinsics is not None:
        if not isinstance(intrinsics, Intrinsics):
            raise InvalidInputError(f"intrinsics {index}: expected an Intrinsics, got {type(intrinsics).__name__}")
        if (intrinsics.width, intrinsics.height) != (w, h):
            raise InvalidInputError(
                f"intrinsics {index} are for a {intrinsics.width}x{intrinsics.height} image but the image is "
                f"{w}x{h} (use Intrinsics.resized/cropped to follow the image)"
            )
        _check_plausible(intrinsics, f"intrinsics {index}")
        return intrinsics, IntrinsicsSource.GIVEN
    if f_px is not None:
        f = float(f_px)
        if not np.isfinite(f) or f <= 0:
            raise InvalidInputError(f"f_px {index} must be finite and > 0, got {f_px!r}")
        K = Intrinsics.from_focal(f, w, h)
        _check_plausible(K, f"f_px {index}")
        return K, IntrinsicsSource.GIVEN
    return None, None


def _check_plausible(K: Intrinsics, what: str) -> None:
    problems = implausible_intrinsics(K)
    if problems:
        raise InvalidInputError(
            f"{what}: " + "; ".join(text for _, text in problems) + ". Focal lengths are in pixels of this image "
            "(fx = focal_mm / sensor_width_mm x image width in px) and the principal point lies inside it"
        )


def _fallback(h: int, w: int, index: int, reason: str) -> tuple[Intrinsics, IntrinsicsSource]:
    K = Intrinsics.from_focal(FALLBACK_FOCAL_OVER_WIDTH * w, w, h)
    warnings.warn(
        f"image {index}: no intrinsics or f_px given and {reason}; assuming fx = fy = {FALLBACK_FOCAL_OVER_WIDTH:g} "
        f"x width ({K.fov_x:.1f} deg horizontal FoV). Metric scale and 3D points depend on this guess.",
        UserWarning,
        stacklevel=4,
    )
    return K, IntrinsicsSource.FALLBACK


# ---------------------------------------------------------------------------------------------- running
def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for p in model.parameters():
        return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return torch.autocast(device_type=device.type, enabled=False)
    return torch.autocast(device_type=device.type, dtype=dtype)


def _run_guarded(fn, model: nn.Module, precision: str) -> dict[str, torch.Tensor]:
    """Run ``fn(model, weight_dtype, autocast_dtype) -> {"depth": ..., ...}`` with the precision policy.

    A non-finite depth from a low-precision run triggers a warning and an fp32 recomputation.
    """
    _, wdtype = _model_device_dtype(model)
    want = _precision_dtype(precision)
    low_weights = wdtype != torch.float32
    autocast_dtype = want if (want != torch.float32 and not low_weights) else None
    with torch.no_grad():
        out = fn(model, wdtype, autocast_dtype)
        if (low_weights or autocast_dtype is not None) and not bool(torch.isfinite(out["depth"].float()).all()):
            used = precision if autocast_dtype is not None else str(wdtype).replace("torch.", "")
            warnings.warn(f"non-finite depth in {used} inference; recomputing in fp32", UserWarning, stacklevel=4)
            fp32_model = copy.deepcopy(model).float() if low_weights else model
            out = fn(fp32_model, torch.float32, None)
    return {k: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in out.items()}


def infer(
    model: nn.Module,
    image: Any,
    intrinsics: Intrinsics | Sequence[Intrinsics | None] | None = None,
    f_px: float | Sequence[float | None] | None = None,
    prompt: Any = None,
    device: str | torch.device | None = None,
    precision: str = "fp32",
) -> DepthResult | list[DepthResult]:
    """Metric depth for one image or a list of images (any sizes), at each input's exact H x W.

    Args:
        model: a model of any kind of :mod:`metricanything.models.registry` (teacher, student, point map).
        image: H x W x 3 uint8 (or float in [0, 1]) numpy array, PIL image, 3 x H x W float tensor in [0, 1]
            (uint8 tensors are divided by 255), or a list / 4-D batch of these.
        intrinsics: an :class:`Intrinsics` for the image's size (or one per image).
        f_px: horizontal focal length in pixels of the given image (or one per image); used when
            ``intrinsics`` is not given.
        prompt: teacher only: a :class:`~metricanything.prompts.prompt.Prompt` or a ``(depth, mask)`` pair of
            H x W arrays (metres, bool), or one per image (``None`` entries allowed).
        device: run on this device (the model is moved there); default: the model's device.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (see the module docstring).

    Returns:
        A :class:`DepthResult`, or a list of them for batched input. Images of equal size run as one batch.
    """
    _precision_dtype(precision)
    images, batched = _split_batch(image)
    n = len(images)
    tensors = [_image_to_tensor(im, i) for i, im in enumerate(images)]
    Ks = _per_image(intrinsics, n, "intrinsics", batched)
    fs = _per_image(f_px, n, "f_px", batched)
    prompts = _per_image(prompt, n, "prompt", batched)
    spec = spec_of(model)
    kind = spec.kind
    if not spec.takes_prompt and any(p is not None for p in prompts):
        raise InvalidInputError(f"the {kind} is prompt-free; pass prompt=None (or use a teacher)")
    resolved = [_resolve_intrinsics(Ks[i], fs[i], *t.shape[-2:], i) for i, t in enumerate(tensors)]
    if device is not None:
        model.to(device)
    dev, wdtype = _model_device_dtype(model)
    _check_cpu_precision(dev, precision, wdtype)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault(tuple(t.shape[-2:]), []).append(i)
    results: list[DepthResult | None] = [None] * n
    was_training = model.training
    model.eval()
    try:
        for (h, w), idx in groups.items():
            x = torch.stack([tensors[i] for i in idx]).to(dev)
            sub = [resolved[i] for i in idx]
            depth, valid, Kout = _run_group(model, x, sub, [prompts[i] for i in idx], idx, precision)
            for j, i in enumerate(idx):
                d = depth[j].reshape(h, w).cpu().numpy().astype(np.float32)
                v = valid[j].reshape(h, w).cpu().numpy() & np.isfinite(d) & (d > 0)
                K, src = Kout[j]
                results[i] = DepthResult(depth=d, valid=v, intrinsics=K, intrinsics_source=src, model_kind=kind)
    finally:
        model.train(was_training)
    return results if batched else results[0]  # type: ignore[return-value]


def _run_group(model, x, resolved, prompts, idx, precision):
    """One batch of equally sized images through the model's call protocol (:mod:`metricanything.models.registry`).

    Unknown focal lengths are left to a model that estimates them (NaN in ``f_px``), else resolved by
    :func:`_fallback`. Returns depth, validity and the ``(Intrinsics, source)`` of every image.
    """
    spec = spec_of(model)
    b, _, h, w = x.shape
    maps = [_prompt_map(p, h, w, i) for p, i in zip(prompts, idx, strict=True)] if spec.takes_prompt else [None] * b
    estimate = estimates_focal(model)
    Kout: list[tuple[Intrinsics | None, IntrinsicsSource]] = []
    for j, (K, src) in enumerate(resolved):
        if K is None and estimate:
            src = IntrinsicsSource.ESTIMATED
        elif K is None:
            has_points = maps[j] is not None and bool(maps[j][1].any())
            reason = (
                "the prompt fixes the depth scale but 3D points need a focal length"
                if has_points
                else f"the {spec.kind} has no field-of-view head" + (" and there are no prompt points"
                                                                     if spec.takes_prompt else "")
            )
            K, src = _fallback(h, w, idx[j], reason)
        Kout.append((K, src))
    f = torch.tensor([K.fx if K is not None else float("nan") for K, _ in Kout], dtype=torch.float64)
    pd = pm = None
    if any(m is not None for m in maps):
        zeros_d, zeros_m = torch.zeros(1, h, w), torch.zeros(1, h, w, dtype=torch.bool)
        pd = torch.stack([m[0] if m is not None else zeros_d for m in maps]).to(x.device)
        pm = torch.stack([m[1] if m is not None else zeros_m for m in maps]).to(x.device)

    def fn(m, dtype, ac):
        with _autocast(x.device, ac):
            return predict_depth(m, x, f, pd, pm)

    out = _run_guarded(fn, model, precision)
    if any(K is None for K, _ in Kout):
        measured = (
            model_info(model).fov_head_error_text() if getattr(model, "fov", None) is not None  # a FoV head
            else "its focal error is unmeasured for this model"
        )
        warnings.warn(
            f"focal length estimated by {spec.focal_estimator} ({measured}); "
            "metric depth scales with the focal length, so a focal error is the same relative depth error. Give "
            "the camera's focal for reliable metric scale (--fx / --fov-x or a sidecar intrinsics JSON; "
            "intrinsics= or f_px= in Python)",
            EstimatedFocalWarning,
            stacklevel=3,  # the caller of infer()
        )
    for j, (K, src) in enumerate(Kout):
        if K is None:
            Kout[j] = (Intrinsics.from_focal(float(out["f_px"][j]), w, h), src)
    return out["depth"], out["valid"], Kout
