"""Geometry of the Student-PointMap (MoGe-2) model: view-plane uv, token grid, focal/shift recovery, intrinsics.

Conventions of the official inference code, reproduced here:

* The **view plane** spans the image with its half diagonal as unit: pixel centre (i + 0.5, j + 0.5) of a
  w x h map maps to uv = ((i + 0.5) - w/2, (j + 0.5) - h/2) / half diagonal, computed with ``linspace``.
* The network's affine-invariant point map (x, y, z) satisfies uv ~ focal * (x, y) / (z + shift) for an
  unknown z shift and a focal length **relative to the half image diagonal**. :func:`recover_focal_shift`
  estimates both (or the shift alone for a known focal) by MINPACK Levenberg-Marquardt with ``ftol=1e-3`` on a
  64 x 64 nearest-neighbour subsample, exactly as released: a loose solve, not the exact optimum.
* Normalised intrinsics have fx, cx in units of the image width and fy, cy in units of the height; the
  principal point is the image centre (0.5, 0.5) and pixels are square.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from metricanything.errors import InvalidInputError

__all__ = [
    "SOLVER_DOWNSAMPLE",
    "SOLVER_FTOL",
    "normalized_view_plane_uv",
    "token_grid",
    "tokens_for_level",
    "solve_focal_shift",
    "solve_shift",
    "recover_focal_shift",
    "focal_from_fov_x",
    "focal_from_fx_px",
    "intrinsics_from_focal",
    "depth_to_points",
]

#: Size of the nearest-neighbour subsample the focal/shift solver sees (rows, cols).
SOLVER_DOWNSAMPLE = (64, 64)
#: ``ftol`` of the official ``scipy.optimize.least_squares(method="lm")`` call.
SOLVER_FTOL = 1e-3


def normalized_view_plane_uv(
    width: int,
    height: int,
    aspect_ratio: float | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """(height, width, 2) view-plane coordinates (u along the width), corners at +-(span (n-1)/n).

    ``span_x = a / sqrt(1 + a^2)``, ``span_y = 1 / sqrt(1 + a^2)`` with ``a = aspect_ratio`` (default
    width / height). The network passes the *image* aspect ratio for its (slightly different) token grids.
    """
    a = width / height if aspect_ratio is None else aspect_ratio
    span_x = a / (1 + a**2) ** 0.5
    span_y = 1 / (1 + a**2) ** 0.5
    u = torch.linspace(-span_x * (width - 1) / width, span_x * (width - 1) / width, width, dtype=dtype, device=device)
    v = torch.linspace(-span_y * (height - 1) / height, span_y * (height - 1) / height, height, dtype=dtype,
                       device=device)
    uu, vv = torch.meshgrid(u, v, indexing="xy")
    return torch.stack([uu, vv], dim=-1)


def token_grid(num_tokens: int, aspect_ratio: float) -> tuple[int, int]:
    """(rows, cols) = (round(sqrt(n / a)), round(sqrt(n a))) (Python rounding); rows * cols tokens are used."""
    rows, cols = round((num_tokens / aspect_ratio) ** 0.5), round((num_tokens * aspect_ratio) ** 0.5)
    if rows < 1 or cols < 1:
        raise InvalidInputError(
            f"{num_tokens} tokens give an empty token grid ({rows}x{cols}) for aspect ratio {aspect_ratio:.4g}; "
            "use more tokens or a less elongated image"
        )
    return rows, cols


def tokens_for_level(resolution_level: int | float, num_tokens_range: Sequence[int]) -> int:
    """``int(min + level / 9 * (max - min))``: level 0 = fewest tokens, 9 = most (truncated, not rounded)."""
    if not 0 <= resolution_level <= 9:
        raise InvalidInputError(f"resolution_level must be in [0, 9], got {resolution_level}")
    lo, hi = num_tokens_range
    return int(lo + (resolution_level / 9) * (hi - lo))


# ------------------------------------------------------------------------------------------- the solver


def _split(uv: np.ndarray, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return uv.reshape(-1, 2), xyz[..., :2].reshape(-1, 2), xyz[..., 2].reshape(-1)


def _focal_shift_residuals(shift: np.ndarray, uv: np.ndarray, xy: np.ndarray, z: np.ndarray) -> np.ndarray:
    # float32 samples, float64 shift -> float64 residuals; focal eliminated in closed form
    q = xy / (z + shift)[:, None]
    f = (q * uv).sum() / np.square(q).sum()
    return (f * q - uv).ravel()


def _shift_residuals(shift: np.ndarray, uv: np.ndarray, xy: np.ndarray, z: np.ndarray, focal) -> np.ndarray:
    q = xy / (z + shift)[:, None]
    return (focal * q - uv).ravel()


def solve_focal_shift(uv: np.ndarray, xyz: np.ndarray) -> tuple[np.float32, np.float32]:
    """Minimise ``|focal * xy / (z + shift) - uv|`` over (shift, focal); returns float32 (shift, focal).

    The focal is eliminated in closed form; the shift is found with MINPACK LM from 0 with ``ftol=1e-3``
    (the released settings; a loose solve). The focal is then recomputed from the float32 shift in float32.
    """
    from scipy.optimize import least_squares

    uv, xy, z = _split(uv, xyz)
    sol = least_squares(_focal_shift_residuals, x0=0.0, ftol=SOLVER_FTOL, method="lm", args=(uv, xy, z))
    shift = sol.x.squeeze().astype(np.float32)
    q = xy / (z + shift)[:, None]
    focal = (q * uv).sum() / np.square(q).sum()
    return shift, focal


def solve_shift(uv: np.ndarray, xyz: np.ndarray, focal: float | np.floating) -> np.float32:
    """Minimise ``|focal * xy / (z + shift) - uv|`` over the shift alone (same solver settings)."""
    from scipy.optimize import least_squares

    uv, xy, z = _split(uv, xyz)
    sol = least_squares(_shift_residuals, x0=0.0, ftol=SOLVER_FTOL, method="lm", args=(uv, xy, z, focal))
    return sol.x.squeeze().astype(np.float32)


def _subsample(points: Tensor, mask: Tensor | None, size: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor | None]:
    """Nearest-neighbour (PyTorch "nearest": src = floor(dst * in / out)) samples of points, uv, mask."""
    h, w = points.shape[-3], points.shape[-2]
    uv = normalized_view_plane_uv(w, h, dtype=points.dtype, device=points.device)
    points_lr = F.interpolate(points.permute(0, 3, 1, 2), size, mode="nearest").permute(0, 2, 3, 1)
    uv_lr = F.interpolate(uv.unsqueeze(0).permute(0, 3, 1, 2), size, mode="nearest").squeeze(0).permute(1, 2, 0)
    mask_lr = None
    if mask is not None:
        mask_lr = F.interpolate(mask.to(torch.float32).unsqueeze(1), size, mode="nearest").squeeze(1) > 0
    return points_lr, uv_lr, mask_lr


def recover_focal_shift(
    points: Tensor,
    mask: Tensor | None = None,
    focal: Tensor | None = None,
    downsample_size: tuple[int, int] = SOLVER_DOWNSAMPLE,
) -> tuple[Tensor, Tensor, Tensor]:
    """Focal (relative to the half diagonal) and z shift of an affine point map (..., H, W, 3).

    ``mask`` (..., H, W) selects the pixels used; ``focal`` (...) given -> only the shift is solved and the
    focal is returned unchanged. Fewer than 2 valid samples give focal 1, shift 0 (as released).
    Returns (focal, shift, fit_rms), each shaped like the leading axes of ``points``: ``fit_rms`` is the RMS of
    the view-plane residual ``focal * xy / (z + shift) - uv`` over the solver's samples (NaN when it had fewer
    than 2), a measure of how well the map fits a pinhole camera (in half-diagonal units), not an error bound.
    """
    shape = points.shape
    pts = points.reshape(-1, *shape[-3:])
    msk = None if mask is None else mask.reshape(-1, *shape[-3:-1])
    foc = None if focal is None else focal.reshape(-1)
    points_lr, uv_lr, mask_lr = _subsample(pts, msk, downsample_size)
    uv_np = uv_lr.cpu().numpy()
    pts_np = points_lr.detach().cpu().numpy()
    mask_np = None if mask_lr is None else mask_lr.cpu().numpy()
    foc_np = None if foc is None else foc.detach().cpu().numpy()
    shifts: list[float] = []
    focals: list[float] = []
    rms: list[float] = []
    for i in range(pts.shape[0]):
        p_i = pts_np[i] if mask_np is None else pts_np[i][mask_np[i]]
        uv_i = uv_np if mask_np is None else uv_np[mask_np[i]]
        if uv_i.reshape(-1, 2).shape[0] < 2:
            focals.append(1.0)
            shifts.append(0.0)
            rms.append(math.nan)
            continue
        if foc_np is None:
            s, f = solve_focal_shift(uv_i, p_i)
            focals.append(float(f))
        else:
            s = solve_shift(uv_i, p_i, foc_np[i])
            f = foc_np[i]
        shifts.append(float(s))
        uv2, xy, z = _split(uv_i, p_i)
        res = float(f) * xy.astype(np.float64) / (z.astype(np.float64) + float(s))[:, None] - uv2
        rms.append(float(np.sqrt(np.mean(np.square(res)))))
    lead = shape[:-3]
    shift_t = torch.tensor(shifts, device=points.device, dtype=points.dtype).reshape(lead)
    rms_t = torch.tensor(rms, device=points.device, dtype=points.dtype).reshape(lead)
    if foc is None:
        focal_t = torch.tensor(focals, device=points.device, dtype=points.dtype).reshape(lead)
    else:
        focal_t = foc.reshape(lead)
    return focal_t, shift_t, rms_t


# ------------------------------------------------------------------------------------------- intrinsics


def focal_from_fov_x(fov_x_deg: float | Tensor, aspect_ratio: float, batch: int, dtype: torch.dtype,
                     device: torch.device) -> Tensor:
    """Relative focal ``a / sqrt(1 + a^2) / tan(fov_x / 2)`` for each of ``batch`` images, shape (batch,)."""
    fov = torch.as_tensor(fov_x_deg, device=device, dtype=dtype)
    if not torch.all((fov > 0) & (fov < 180)):
        raise InvalidInputError(f"fov_x must be in (0, 180) degrees, got {fov.tolist()}")
    focal = aspect_ratio / (1 + aspect_ratio**2) ** 0.5 / torch.tan(torch.deg2rad(fov / 2))
    return _per_image(focal, batch, "fov_x")


def focal_from_fx_px(fx_px: float | Tensor, width: int, height: int, batch: int, dtype: torch.dtype,
                     device: torch.device) -> Tensor:
    """Relative focal ``fx_px / (sqrt(W^2 + H^2) / 2)`` (square pixels) for each of ``batch`` images."""
    fx = torch.as_tensor(fx_px, device=device, dtype=dtype)
    if not torch.all(torch.isfinite(fx) & (fx > 0)):
        raise InvalidInputError(f"focal length in pixels must be finite and positive, got {fx.tolist()}")
    return _per_image(fx / (0.5 * math.hypot(width, height)), batch, "fx_px")


def _per_image(focal: Tensor, batch: int, name: str) -> Tensor:
    if focal.ndim == 0:
        return focal[None].expand(batch)
    if focal.shape != (batch,):
        raise InvalidInputError(f"{name} must be a number or one value per image ({batch}), got shape "
                                f"{tuple(focal.shape)}")
    return focal


def intrinsics_from_focal(focal: Tensor, aspect_ratio: float) -> Tensor:
    """Normalised intrinsics (..., 3, 3): fx = focal/2 sqrt(1+a^2)/a, fy = focal/2 sqrt(1+a^2), c = (0.5, 0.5)."""
    fx = focal / 2 * (1 + aspect_ratio**2) ** 0.5 / aspect_ratio
    fy = focal / 2 * (1 + aspect_ratio**2) ** 0.5
    k = torch.zeros(*focal.shape, 3, 3, dtype=focal.dtype, device=focal.device)
    k[..., 0, 0] = fx
    k[..., 1, 1] = fy
    k[..., 0, 2] = 0.5
    k[..., 1, 2] = 0.5
    k[..., 2, 2] = 1.0
    return k


def depth_to_points(depth: Tensor, intrinsics: Tensor) -> Tensor:
    """Camera-space points (..., H, W, 3) of a depth map (..., H, W) with normalised intrinsics (..., 3, 3).

    Pixel centres u = (i + 0.5) / W, v = (j + 0.5) / H (built with ``linspace``); points =
    (u z, v z, z) K^-1^T, i.e. X = (u - cx) / fx z, Y = (v - cy) / fy z, Z = z. This is the released code's
    route (matrix inverse), which it reproduces bit for bit.
    """
    h, w = depth.shape[-2:]
    u = torch.linspace(0.5 / w, 1 - 0.5 / w, w, device=depth.device, dtype=depth.dtype)
    v = torch.linspace(0.5 / h, 1 - 0.5 / h, h, device=depth.device, dtype=depth.dtype)
    uu, vv = torch.meshgrid(u, v, indexing="xy")
    uv1 = torch.stack([uu, vv, torch.ones_like(uu)], dim=-1)
    k_inv_t = torch.linalg.inv(intrinsics).transpose(-1, -2)
    return (uv1 * depth[..., None]) @ k_inv_t[..., None, :, :]
