"""Pinhole camera geometry: intrinsics that follow every image operation, projection and z-buffer splatting.

Conventions (used everywhere in metricanything):

* Camera frame is OpenCV's: x right, y down, z forward. Depth means z-depth in metres.
* **Pixel centres sit at integer coordinates.** Pixel (u, v) = (column, row) covers the continuous square
  [u - 0.5, u + 0.5] x [v - 0.5, v + 0.5]; the image spans [-0.5, W - 0.5] x [-0.5, H - 0.5]. A point X
  projects to u = fx * x / z + cx, v = fy * y / z + cy, and the nearest pixel is floor(u + 0.5).
* Resizing an image from W to W' (any interpolation that maps pixel edges onto pixel edges, e.g. torch's
  ``align_corners=False``) maps u to (u + 0.5) * W'/W - 0.5, so cx' = (cx + 0.5) * W'/W - 0.5, fx' = fx * W'/W.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

from metricanything.errors import InvalidInputError


class IntrinsicsSource(str, enum.Enum):
    """Where the intrinsics used for an output came from (highest priority first)."""

    GIVEN = "given"
    SIDECAR = "sidecar"
    EXIF = "exif"
    ESTIMATED = "estimated"
    FALLBACK = "fallback"


@dataclass(frozen=True)
class Intrinsics:
    """Immutable pinhole intrinsics in pixels for an image of ``width`` x ``height`` pixels."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        for name in ("fx", "fy", "cx", "cy"):
            value = getattr(self, name)
            if not math.isfinite(float(value)):
                raise InvalidInputError(f"Intrinsics.{name} must be finite, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.fx <= 0 or self.fy <= 0:
            raise InvalidInputError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")
        if int(self.width) != self.width or int(self.height) != self.height or self.width < 1 or self.height < 1:
            raise InvalidInputError(f"image size must be positive integers, got {self.width}x{self.height}")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_matrix(cls, K: np.ndarray, width: int, height: int) -> Intrinsics:
        """Build from a 3x3 matrix [[fx, s, cx], [0, fy, cy], [0, 0, 1]] (skew must be 0)."""
        K = np.asarray(K, dtype=np.float64)
        if K.shape != (3, 3):
            raise InvalidInputError(f"intrinsic matrix must be 3x3, got shape {K.shape}")
        if abs(K[0, 1]) > 1e-9 or abs(K[1, 0]) > 1e-9 or abs(K[2, 0]) > 1e-9 or abs(K[2, 1]) > 1e-9:
            raise InvalidInputError("intrinsic matrix with skew or a non-standard last row is not supported")
        if abs(K[2, 2] - 1.0) > 1e-9:
            raise InvalidInputError(f"intrinsic matrix must have K[2,2] = 1, got {K[2, 2]}")
        return cls(K[0, 0], K[1, 1], K[0, 2], K[1, 2], width, height)

    @classmethod
    def from_fov(cls, fov_x_deg: float, width: int, height: int) -> Intrinsics:
        """Square pixels, principal point at the image centre, horizontal field of view in degrees."""
        if not 0.0 < fov_x_deg < 180.0:
            raise InvalidInputError(f"horizontal field of view must be in (0, 180) degrees, got {fov_x_deg}")
        f = width / (2.0 * math.tan(math.radians(fov_x_deg) / 2.0))
        return cls(f, f, (width - 1) / 2.0, (height - 1) / 2.0, width, height)

    @classmethod
    def from_focal(cls, f_px: float, width: int, height: int) -> Intrinsics:
        """Square pixels with focal ``f_px`` and the principal point at the image centre."""
        return cls(f_px, f_px, (width - 1) / 2.0, (height - 1) / 2.0, width, height)

    @classmethod
    def from_dict(cls, d: dict) -> Intrinsics:
        """Inverse of :meth:`to_dict`."""
        return cls(d["fx"], d["fy"], d["cx"], d["cy"], d["width"], d["height"])

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict with all six fields."""
        return {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy, "width": self.width, "height": self.height}

    # ------------------------------------------------------------------ views
    def as_matrix(self) -> np.ndarray:
        """3x3 float64 matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.width, self.height

    @property
    def fov_x(self) -> float:
        """Horizontal field of view in degrees, 2 atan(W / 2 fx) (centred-principal-point definition)."""
        return math.degrees(2.0 * math.atan(self.width / (2.0 * self.fx)))

    @property
    def fov_y(self) -> float:
        """Vertical field of view in degrees, 2 atan(H / 2 fy)."""
        return math.degrees(2.0 * math.atan(self.height / (2.0 * self.fy)))

    # ------------------------------------------------------------------ image operations
    def resized(self, width: int, height: int) -> Intrinsics:
        """Intrinsics after resizing the image to ``width`` x ``height`` (pixel edges map to pixel edges)."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(
            self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5, width, height
        )

    def cropped(self, left: int, top: int, width: int, height: int) -> Intrinsics:
        """Intrinsics after cropping the window [left, left+width) x [top, top+height).

        The window may extend past the image (that part is padding), so crop and pad are exact inverses.
        """
        return Intrinsics(self.fx, self.fy, self.cx - left, self.cy - top, width, height)

    def padded(self, left: int, top: int, right: int, bottom: int) -> Intrinsics:
        """Intrinsics after padding ``left``/``top``/``right``/``bottom`` pixels (negative values crop)."""
        return Intrinsics(
            self.fx, self.fy, self.cx + left, self.cy + top, self.width + left + right, self.height + top + bottom
        )

    def flipped_horizontally(self) -> Intrinsics:
        """Intrinsics after mirroring the image left-right: u -> W - 1 - u, so cx -> W - 1 - cx.

        The mirrored image is what a camera with these intrinsics sees of the mirrored scene (x -> -x).
        """
        return Intrinsics(self.fx, self.fy, self.width - 1 - self.cx, self.cy, self.width, self.height)

    def flipped_vertically(self) -> Intrinsics:
        """Intrinsics after mirroring the image top-bottom: v -> H - 1 - v."""
        return Intrinsics(self.fx, self.fy, self.cx, self.height - 1 - self.cy, self.width, self.height)

    def isclose(self, other: Intrinsics, atol: float = 1e-9) -> bool:
        """True when sizes match and all four parameters agree within ``atol``."""
        return (
            self.size == other.size
            and abs(self.fx - other.fx) <= atol
            and abs(self.fy - other.fy) <= atol
            and abs(self.cx - other.cx) <= atol
            and abs(self.cy - other.cy) <= atol
        )


#: Field of view (degrees) accepted across an image's long side; see :func:`implausible_intrinsics`.
PLAUSIBLE_FOV_DEG = (5.0, 170.0)
#: Accepted pixel aspect ratio fy / fx (square pixels are 1; anamorphic capture reaches 2:1 at most).
PLAUSIBLE_PIXEL_ASPECT = (0.5, 2.0)


def implausible_intrinsics(K: Intrinsics, fov_range: tuple[float, float] = PLAUSIBLE_FOV_DEG) -> list[tuple[str, str]]:
    """What is implausible about ``K`` for its image, as ``(parameter, explanation)`` pairs (empty: plausible).

    Checked: the field of view across the image's long side (horizontal, 2 atan(W / 2 fx), for a landscape
    image; vertical, 2 atan(H / 2 fy), for a portrait one) must lie in ``fov_range``; neither axis may exceed
    its upper end; fy / fx must lie in :data:`PLAUSIBLE_PIXEL_ASPECT`; the principal point must lie inside
    the image ([-0.5, W - 0.5] x [-0.5, H - 0.5]).

    Why 5-170 degrees: real pinhole (rectilinear) images stay well inside it. The widest rectilinear lenses
    made cover about 120-130 degrees (e.g. 10 mm on full frame: 122 deg across the long side); beyond that
    images are fisheye, where the pinhole model does not hold, and 170 deg leaves a wide margin. At the
    narrow end 5 deg is a 400 mm lens on full frame (a phone's 10x zoom, 260 mm equivalent, is ~8 deg),
    past what phones, webcams, robots, vehicles and drones use and far past the training range of
    monocular depth models. What the bounds must catch are unit mistakes: a focal in millimetres instead of
    pixels (``fx = 4.25`` on a 640-px image is 178.5 deg, which a 1-179 deg range would let through) and
    focal lengths off by orders of magnitude (``fx = 1e12`` on 640 px is 4e-8 deg): these give depth maps
    wrong by that factor, or empty. The narrow bound applies to the long side only, so a lens accepted in
    landscape is accepted in portrait too.
    """
    lo, hi = fov_range
    problems: list[tuple[str, str]] = []
    axes = {"fx": (K.fx, K.width, "horizontal", "wide"), "fy": (K.fy, K.height, "vertical", "tall")}
    fovs = {name: math.degrees(2.0 * math.atan(size / (2.0 * f))) for name, (f, size, _, _) in axes.items()}
    long_side = "fx" if K.width >= K.height else "fy"

    def describe(name: str) -> str:
        f, size, axis, side = axes[name]
        fov = fovs[name]
        shown = f"{fov:.1f}" if fov >= 0.1 else f"{fov:.2g}"
        return (f"{name} = {f:.6g} px gives a {axis} field of view of {shown} deg on this {size}-px-{side} image, "
                f"outside the plausible {lo:g}-{hi:g} deg")  # fmt: skip

    for name in ("fx", "fy"):
        if fovs[name] > hi:
            problems.append((name, describe(name)))
    if fovs[long_side] < lo:
        problems.append((long_side, describe(long_side)))
    a_lo, a_hi = PLAUSIBLE_PIXEL_ASPECT
    if not problems and not a_lo <= K.fy / K.fx <= a_hi:
        problems.append(
            ("fy", f"fy / fx = {K.fy:.6g} / {K.fx:.6g} = {K.fy / K.fx:.3g} is outside the plausible pixel aspect "
                   f"{a_lo:g}-{a_hi:g} (square pixels: fy = fx)")  # fmt: skip
        )
    for name, c, size in (("cx", K.cx, K.width), ("cy", K.cy, K.height)):
        if not -0.5 <= c <= size - 0.5:
            problems.append(
                (name, f"{name} = {c:.6g} px is outside this image ({name} must lie in [-0.5, {size - 0.5:g}] "
                 f"for a {K.width}x{K.height} image)")  # fmt: skip
            )
    return problems


def pixel_grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer pixel-centre coordinates (u, v), each H x W float64."""
    v, u = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    return u, v


def _check_depth(depth: np.ndarray, K: Intrinsics) -> np.ndarray:
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise InvalidInputError(f"depth must be H x W, got shape {depth.shape}")
    if depth.shape != (K.height, K.width):
        raise InvalidInputError(f"depth is {depth.shape[1]}x{depth.shape[0]} but intrinsics are {K.width}x{K.height}")
    return depth


def unproject(depth: np.ndarray, K: Intrinsics) -> np.ndarray:
    """Back-project a z-depth map (H x W, metres) to camera-frame points (H x W x 3, OpenCV frame).

    X = (u - cx) z / fx, Y = (v - cy) z / fy, Z = z at every pixel centre (u, v). Pixels whose depth is not
    valid produce meaningless points: select them with the validity mask afterwards.
    """
    depth = _check_depth(depth, K)
    u, v = pixel_grid(K.width, K.height)
    z = depth.astype(np.float64)
    pts = np.stack([(u - K.cx) * z / K.fx, (v - K.cy) * z / K.fy, z], axis=-1)
    return pts.astype(np.float32) if depth.dtype == np.float32 else pts


def project(points: np.ndarray, K: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Project camera-frame points (... x 3) to continuous pixel coordinates (... x 2, as u, v) and z (...).

    Points with z <= 0 get NaN coordinates (they are behind the camera).
    """
    points = np.asarray(points, dtype=np.float64)
    if points.shape[-1] != 3:
        raise InvalidInputError(f"points must have a last axis of 3, got shape {points.shape}")
    z = points[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(z > 0, K.fx * points[..., 0] / z + K.cx, np.nan)
        v = np.where(z > 0, K.fy * points[..., 1] / z + K.cy, np.nan)
    return np.stack([u, v], axis=-1), z


def splat_points_to_depth(
    points: np.ndarray, K: Intrinsics, return_index: bool = False
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render camera-frame points into a sparse depth map with a z-buffer (the nearest point wins).

    Each point with z > 0 lands in the pixel nearest its projection (floor(u + 0.5), floor(v + 0.5)); points
    outside the image are dropped. Returns ``(depth, valid)`` as float32 H x W and bool H x W (depth is 0 where
    not valid), plus, with ``return_index``, an int64 H x W map of the winning point's index (-1 where empty).
    This is how LiDAR sweeps become sparse depth maps without see-through errors.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    uv, z = project(points, K)
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(uv).all(axis=1) & (z > 0) & np.isfinite(z)
    ui = np.floor(uv[keep, 0] + 0.5)
    vi = np.floor(uv[keep, 1] + 0.5)
    inside = (ui >= 0) & (ui < K.width) & (vi >= 0) & (vi < K.height)
    idx = np.nonzero(keep)[0][inside]
    flat = vi[inside].astype(np.int64) * K.width + ui[inside].astype(np.int64)
    zk = z[idx]
    order = np.lexsort((zk, flat))  # by pixel, then nearest first
    flat_sorted = flat[order]
    first = np.ones(flat_sorted.shape, dtype=bool)
    first[1:] = flat_sorted[1:] != flat_sorted[:-1]
    win_pix = flat_sorted[first]
    win_pt = idx[order][first]
    depth = np.zeros(K.height * K.width, dtype=np.float32)
    valid = np.zeros(K.height * K.width, dtype=bool)
    depth[win_pix] = z[win_pt].astype(np.float32)
    valid[win_pix] = True
    depth, valid = depth.reshape(K.height, K.width), valid.reshape(K.height, K.width)
    if return_index:
        index = np.full(K.height * K.width, -1, dtype=np.int64)
        index[win_pix] = win_pt
        return depth, valid, index.reshape(K.height, K.width)
    return depth, valid


def transform_points(points: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Apply a 4x4 rigid transform to points (... x 3)."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise InvalidInputError(f"transform must be 4x4, got shape {T.shape}")
    p = np.asarray(points, dtype=np.float64)
    return p @ T[:3, :3].T + T[:3, 3]
