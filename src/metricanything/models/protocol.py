"""The depth-model call protocol shared by every model kind (see :mod:`metricanything.models.registry`).

:class:`DepthModel` is the interface: ``kind``, ``config``, ``estimates_focal`` and
``predict_depth(image, f_px, prompt_depth, prompt_mask) -> dict``, implemented by
:class:`~metricanything.models.teacher.Teacher`, :class:`~metricanything.models.student.Student` and
:class:`~metricanything.models.pointmap.PointMapModel`; the helpers below are what their implementations share.
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


def imagenet_denormalise(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`imagenet_normalise`: ImageNet-normalised B x 3 x H x W -> RGB (in [0, 1] for real images)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return x * std + mean


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
