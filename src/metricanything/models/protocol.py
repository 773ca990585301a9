"""The depth-model call protocol shared by every model kind (see :mod:`metricanything.models.registry`).

:class:`DepthModel` is the interface: ``kind``, ``config``, ``estimates_focal`` and
``predict_depth(image, f_px, prompt_depth, prompt_mask) -> dict``. :class:`~metricanything.models.teacher.Teacher`
and :class:`~metricanything.models.pointmap.PointMapModel` implement it as methods;
:func:`student_predict_depth` is the :class:`~metricanything.models.student.Student`'s implementation (a
function, used by the registry's student spec).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from metricanything.errors import InvalidInputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@runtime_checkable
class DepthModel(Protocol):
    """What :func:`metricanything.api.infer` needs from a model."""

    kind: str
    config: Any
    estimates_focal: bool

    def predict_depth(
        self,
        image: torch.Tensor,
        f_px: torch.Tensor,
        prompt_depth: torch.Tensor | None = None,
        prompt_mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``depth``, ``valid`` and ``f_px`` of B x 3 x H x W RGB in [0, 1] (NaN in ``f_px``: estimate it)."""
        ...


def imagenet_normalise(x: torch.Tensor) -> torch.Tensor:
    """B x 3 x H x W RGB in [0, 1] -> ImageNet-normalised (in ``x``'s dtype)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def weight_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype of the model's first parameter (float32 for a model without parameters)."""
    for p in model.parameters():
        return p.dtype
    return torch.float32


def focal_vector(f_px: torch.Tensor | float | None, b: int) -> torch.Tensor:
    """``f_px`` as a float64 CPU tensor of ``b`` focal lengths (``None`` = all unknown, NaN)."""
    if f_px is None:
        return torch.full((b,), float("nan"), dtype=torch.float64)
    f = torch.as_tensor(f_px, dtype=torch.float64).detach().cpu().reshape(-1)
    if f.numel() == 1 and b != 1:
        f = f.expand(b)
    if f.shape != (b,):
        raise InvalidInputError(f"f_px must be one value or one per image ({b}), got shape {tuple(f.shape)}")
    return f


def student_predict_depth(
    model: torch.nn.Module,
    image: torch.Tensor,
    f_px: torch.Tensor | float | None,
    prompt_depth: torch.Tensor | None = None,
    prompt_mask: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The protocol for the prompt-free :class:`~metricanything.models.student.Student`.

    Images with a NaN focal use the FoV head's estimate (one pass), the others their given focal (another pass
    when the batch mixes both). ``valid`` is False where the inverse depth sits at the official 1e-3 floor
    (sky / beyond ~1000 m); ``inverse_depth`` is returned too.
    """
    from metricanything.models.student import INVERSE_DEPTH_CLAMP

    if prompt_depth is not None or prompt_mask is not None:
        raise InvalidInputError("the student is prompt-free; pass prompt=None (or use a teacher)")
    b, _, h, w = image.shape
    f = focal_vector(f_px, b)
    unknown = torch.isnan(f)
    if bool(unknown.any()) and getattr(model, "fov", None) is None:
        raise InvalidInputError("the student has no field-of-view head, so every image needs a focal length")
    xn = imagenet_normalise(image).to(weight_dtype(model))
    # low precision (an active autocast, e.g. api.infer's bf16, or low-precision weights): the fast path
    fast = torch.is_autocast_enabled(xn.device.type) or xn.dtype != torch.float32
    out: dict[str, torch.Tensor] = {}
    if bool(unknown.any()):  # one pass with the FoV head's focal estimate
        out = model.infer(xn, f_px=None, fast=fast)
        f_est = out["f_px"].reshape(-1).to(torch.float64).cpu().expand(b)
        f = torch.where(unknown, f_est, f)
    if not bool(unknown.all()):  # (another) pass with the known focal lengths
        out = model.infer(xn, f_px=f, fast=fast)
    inverse = out["inverse_depth"].reshape(b, 1, h, w)
    return {
        "depth": out["depth"].reshape(b, 1, h, w),
        "inverse_depth": inverse,
        "valid": inverse.float() > INVERSE_DEPTH_CLAMP[0],
        "f_px": f,
    }
