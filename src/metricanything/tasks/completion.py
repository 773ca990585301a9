"""Depth completion, super-resolution and radar-camera fusion: the teacher with a sparse metric prompt.

All three are the same operation seen from the user's side: some metric depth is known (sparse LiDAR/ToF
pixels, a low-resolution depth map, a handful of radar returns) and the prompt-conditioned teacher turns it
into dense metric depth at the image's exact resolution.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from metricanything.api import infer
from metricanything.camera import Intrinsics, splat_points_to_depth, transform_points
from metricanything.errors import InvalidInputError
from metricanything.prompts.prompt import Prompt


def complete_depth(
    model: nn.Module,
    image: np.ndarray,
    sparse_depth: np.ndarray,
    sparse_mask: np.ndarray,
    intrinsics: Intrinsics | None = None,
    precision: str = "fp32",
):
    """Dense metric depth from an image and sparse depth (H x W metres + bool mask at the image size)."""
    prompt = Prompt.from_map(np.asarray(sparse_depth, dtype=np.float32), np.asarray(sparse_mask, dtype=bool))
    if prompt.size != (image.shape[1], image.shape[0]):
        raise InvalidInputError(f"sparse depth is {prompt.size[0]}x{prompt.size[1]}, image is {image.shape[1]}x{image.shape[0]}")
    return infer(model, image, intrinsics=intrinsics, prompt=prompt, precision=precision)


def lowres_depth_prompt(lowres_depth: np.ndarray, lowres_valid: np.ndarray | None, width: int, height: int) -> Prompt:
    """Each valid low-resolution pixel becomes one prompt point at the matching location of the full image.

    A low-res pixel (i, j) of an h x w map covers the full-resolution block whose centre is
    u = (j + 0.5) W / w - 0.5, v = (i + 0.5) H / h - 0.5 (pixel edges onto pixel edges, as Intrinsics.resized).
    """
    lowres_depth = np.asarray(lowres_depth, dtype=np.float32)
    if lowres_valid is None:
        lowres_valid = np.isfinite(lowres_depth) & (lowres_depth > 0)
    h, w = lowres_depth.shape
    sx, sy = width / w, height / h
    # block sizes may differ by the rounding of a floor-divided size (e.g. 41x29 -> 10x7), not more
    if abs(sx - sy) > max(sx, sy) * (0.01 + 1.0 / min(w, h)):
        raise InvalidInputError(f"low-res depth {w}x{h} and image {width}x{height} differ in aspect ratio")
    return Prompt.from_map(lowres_depth, np.asarray(lowres_valid, dtype=bool)).resized(width, height)


def super_resolve(
    model: nn.Module,
    image: np.ndarray,
    lowres_depth: np.ndarray,
    lowres_valid: np.ndarray | None = None,
    intrinsics: Intrinsics | None = None,
    precision: str = "fp32",
):
    """Depth super-resolution: a low-resolution metric depth map (same aspect) guided by the full image."""
    prompt = lowres_depth_prompt(lowres_depth, lowres_valid, image.shape[1], image.shape[0])
    return infer(model, image, intrinsics=intrinsics, prompt=prompt, precision=precision)


def radar_prompt(points_radar: np.ndarray, T_cam_radar: np.ndarray, K: Intrinsics) -> Prompt:
    """Radar returns (N x >=3, radar frame, metres) -> a prompt on the camera image (z-buffer projection).

    Radar usually reports points on (or near) a horizontal plane with large range noise; the teacher treats
    them like any other sparse metric prompt, and ``metricanything finetune`` adapts it to a radar's error
    pattern.
    """
    pts = np.asarray(points_radar, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise InvalidInputError(f"radar points must be N x >=3, got {pts.shape}")
    depth, mask = splat_points_to_depth(transform_points(pts[:, :3], T_cam_radar), K)
    if not mask.any():
        raise InvalidInputError("no radar point projects into the image (check T_cam_radar)")
    return Prompt.from_map(depth, mask)
