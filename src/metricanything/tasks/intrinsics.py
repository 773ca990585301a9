"""Camera-intrinsics recovery with a student that has a FoV head."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from metricanything.api import infer
from metricanything.camera import Intrinsics, IntrinsicsSource
from metricanything.errors import InvalidInputError
from metricanything.models.registry import estimates_focal


@dataclass
class IntrinsicsEstimate:
    """Estimated pinhole camera: focal (pixels), horizontal/vertical FoV (degrees), full intrinsics."""

    intrinsics: Intrinsics
    focal_px: float
    fov_x_deg: float
    fov_y_deg: float


def estimate_intrinsics(model: nn.Module, image: np.ndarray) -> IntrinsicsEstimate:
    """Predict the focal length of ``image`` (square pixels, centred principal point) with the FoV head.

    Raises :class:`InvalidInputError` for a model without a FoV head (the official student has none) instead
    of silently returning the fallback.
    """
    if not estimates_focal(model):
        raise InvalidInputError(
            "this model cannot estimate intrinsics (no FoV head): use a student with use_fov_head or a point-map model"
        )
    result = infer(model, image)
    if result.intrinsics_source != IntrinsicsSource.ESTIMATED:
        raise InvalidInputError(f"expected estimated intrinsics, got {result.intrinsics_source.value}")
    K = result.intrinsics
    return IntrinsicsEstimate(K, K.fx, K.fov_x, K.fov_y)
