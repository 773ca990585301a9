"""Geometry-exact augmentation of :class:`RGBDSample` records.

Every geometric operation updates the intrinsics with the matching :class:`Intrinsics` method, so a pixel
unprojected with its depth lands on the same 3D point before and after. Depth is never blended across
valid/invalid pixels or across surfaces: resizing uses nearest sampling (dense maps, or any upsampling)
or a z-buffer splat of the valid pixels (sparse maps when downsampling, so LiDAR lines and SfM points are
kept instead of being decimated). Metric depth values are never rescaled: a resize changes the focal
length, not the distances. Colour jitter touches the RGB image only.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from metricanything.data.sample import RGBDSample
from metricanything.errors import InvalidInputError

_IMAGE_MODES = ("bilinear", "area", "bicubic", "nearest")
_DEPTH_MODES = ("auto", "nearest", "splat")


def _check_size(width: int, height: int) -> tuple[int, int]:
    if int(width) != width or int(height) != height or width < 1 or height < 1:
        raise InvalidInputError(f"output size must be positive integers, got {width}x{height}")
    return int(width), int(height)


def resize_image(image: np.ndarray, width: int, height: int, mode: str = "bilinear") -> np.ndarray:
    """Resize a uint8 H x W x 3 image with torch (pixel edges map to pixel edges, antialiased when shrinking)."""
    if mode not in _IMAGE_MODES:
        raise InvalidInputError(f"image resize mode must be one of {_IMAGE_MODES}, got {mode!r}")
    h0, w0 = image.shape[:2]
    if (w0, h0) == (width, height):
        return image.copy()
    # uint8 channels-last input takes torch's fast integer resampling path (bilinear / bicubic)
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    if mode == "nearest":
        y = F.interpolate(x, size=(height, width), mode="nearest-exact")
    elif mode == "area":
        y = F.interpolate(x.float(), size=(height, width), mode="area").round().clamp(0, 255).to(torch.uint8)
    else:
        shrink = width < w0 or height < h0
        y = F.interpolate(x, size=(height, width), mode=mode, align_corners=False, antialias=shrink)
    return np.ascontiguousarray(y[0].permute(1, 2, 0).numpy())


def _nearest_index(n_out: int, n_in: int) -> np.ndarray:
    # source pixel whose cell contains the target pixel centre: floor((i + 0.5) * n_in / n_out)
    return np.minimum(((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64), n_in - 1)


def resize_depth(
    depth: np.ndarray, valid: np.ndarray, width: int, height: int, mode: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """Resize a depth map and its mask without ever mixing values.

    * ``nearest``: each output pixel takes the source pixel containing its centre (depth and mask together).
    * ``splat``: each valid source pixel goes to the output pixel containing its centre; the nearest depth
      wins (z-buffer). Keeps sparse points when shrinking; leaves holes when enlarging.
    * ``auto``: ``splat`` when shrinking a sparse map (< 50 % valid), else ``nearest``.
    """
    if mode not in _DEPTH_MODES:
        raise InvalidInputError(f"depth resize mode must be one of {_DEPTH_MODES}, got {mode!r}")
    h0, w0 = depth.shape
    if (w0, h0) == (width, height):
        return depth.copy(), valid.copy()
    if mode == "auto":
        shrinking = width < w0 or height < h0
        mode = "splat" if shrinking and valid.mean() < 0.5 else "nearest"
    if mode == "nearest":
        rows, cols = _nearest_index(height, h0), _nearest_index(width, w0)
        v = valid.take(rows, axis=0).take(cols, axis=1)
        d = depth.take(rows, axis=0).take(cols, axis=1)
        d[~v] = 0.0
        return d.astype(np.float32, copy=False), v
    vv, uu = np.nonzero(valid)
    z = depth[vv, uu]
    ut = np.minimum(((uu + 0.5) * (width / w0)).astype(np.int64), width - 1)
    vt = np.minimum(((vv + 0.5) * (height / h0)).astype(np.int64), height - 1)
    flat = vt * width + ut
    order = np.lexsort((z, flat))
    fs = flat[order]
    first = np.ones(len(fs), dtype=bool)
    first[1:] = fs[1:] != fs[:-1]
    out = np.zeros(height * width, dtype=np.float32)
    ok = np.zeros(height * width, dtype=bool)
    out[fs[first]] = z[order][first]
    ok[fs[first]] = True
    return out.reshape(height, width), ok.reshape(height, width)


def resize_sample(
    sample: RGBDSample, width: int, height: int, image_mode: str = "bilinear", depth_mode: str = "auto"
) -> RGBDSample:
    """Resize to ``width`` x ``height``; intrinsics follow via :meth:`Intrinsics.resized`."""
    width, height = _check_size(width, height)
    image = resize_image(sample.image, width, height, image_mode)
    depth, valid = resize_depth(sample.depth, sample.valid, width, height, depth_mode)
    return sample.replace(image=image, depth=depth, valid=valid, intrinsics=sample.intrinsics.resized(width, height))


def _crop_arrays(image: np.ndarray, depth: np.ndarray, valid: np.ndarray, left: int, top: int, width: int,
                 height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    H, W = depth.shape
    sx0, sy0 = max(left, 0), max(top, 0)
    sx1, sy1 = min(left + width, W), min(top + height, H)
    if (sx0, sy0, sx1, sy1) == (left, top, left + width, top + height):  # fully inside: plain copies
        return (image[top:sy1, left:sx1].copy(), depth[top:sy1, left:sx1].copy(), valid[top:sy1, left:sx1].copy())
    out_image = np.zeros((height, width, 3), dtype=np.uint8)
    out_depth = np.zeros((height, width), dtype=np.float32)
    out_valid = np.zeros((height, width), dtype=bool)
    if sx1 > sx0 and sy1 > sy0:
        dx0, dy0 = sx0 - left, sy0 - top
        dst = (slice(dy0, dy0 + sy1 - sy0), slice(dx0, dx0 + sx1 - sx0))
        out_image[dst] = image[sy0:sy1, sx0:sx1]
        out_depth[dst] = depth[sy0:sy1, sx0:sx1]
        out_valid[dst] = valid[sy0:sy1, sx0:sx1]
    return out_image, out_depth, out_valid


def crop_sample(sample: RGBDSample, left: int, top: int, width: int, height: int) -> RGBDSample:
    """Crop the window [left, left + width) x [top, top + height); parts outside the image are padding
    (black image, invalid depth). Intrinsics follow via :meth:`Intrinsics.cropped`."""
    width, height = _check_size(width, height)
    left, top = int(left), int(top)
    image, depth, valid = _crop_arrays(sample.image, sample.depth, sample.valid, left, top, width, height)
    depth[~valid] = 0.0
    return sample.replace(image=image, depth=depth, valid=valid,
                          intrinsics=sample.intrinsics.cropped(left, top, width, height))


_MIRROR = np.diag([-1.0, 1.0, 1.0, 1.0])


def flip_sample(sample: RGBDSample) -> RGBDSample:
    """Mirror left-right. Intrinsics follow via :meth:`Intrinsics.flipped_horizontally`; a pose becomes
    ``pose @ diag(-1, 1, 1, 1)`` (the mirrored camera frame, a reflection), so world points stay exact."""
    pose = None if sample.pose is None else np.asarray(sample.pose, dtype=np.float64) @ _MIRROR
    meta = dict(sample.meta)
    meta["flipped"] = not bool(meta.get("flipped", False))
    return sample.replace(
        image=np.ascontiguousarray(sample.image[:, ::-1]),
        depth=np.ascontiguousarray(sample.depth[:, ::-1]),
        valid=np.ascontiguousarray(sample.valid[:, ::-1]),
        intrinsics=sample.intrinsics.flipped_horizontally(),
        pose=pose,
        meta=meta,
    )


def color_jitter(
    image: np.ndarray,
    rng: np.random.Generator,
    brightness: float = 0.25,
    contrast: float = 0.25,
    saturation: float = 0.25,
    hue: float = 0.05,
) -> np.ndarray:
    """Random brightness / contrast / saturation scaling and a hue rotation (fraction of a full turn) of a
    uint8 RGB image, applied in this order. All four are affine in RGB, so they are composed into one 3x4
    map and applied in a single pass (rounded, saturated to [0, 255])."""
    b = rng.uniform(1 - brightness, 1 + brightness)
    c = rng.uniform(1 - contrast, 1 + contrast)
    s = rng.uniform(1 - saturation, 1 + saturation)
    h = rng.uniform(-hue, hue) * 2 * math.pi
    w = np.array([0.299, 0.587, 0.114])
    mean_gray = float(image[::4, ::4].reshape(-1, 3).mean(axis=0) @ w) * b
    eye = np.eye(3)
    M = b * eye  # brightness
    M = c * M  # contrast around the mean grey level ...
    t = (1 - c) * mean_gray * np.ones(3)  # ... (its offset)
    S = s * eye + (1 - s) * np.outer(np.ones(3), w)  # saturation: towards / away from grey
    M, t = S @ M, S @ t
    if h:  # hue: rotate chroma in YIQ space
        to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
        rot = np.array([[1, 0, 0], [0, math.cos(h), -math.sin(h)], [0, math.sin(h), math.cos(h)]])
        Hm = np.linalg.inv(to_yiq) @ rot @ to_yiq
        M, t = Hm @ M, Hm @ t
    affine = np.concatenate([M, t[:, None]], axis=1).astype(np.float32)
    out = cv2.transform(np.ascontiguousarray(image), affine)
    return out.reshape(image.shape)


def random_augment(
    sample: RGBDSample,
    rng: np.random.Generator | int | None,
    out_size: tuple[int, int],
    scale_range: tuple[float, float] = (1.0, 1.5),
    flip_prob: float = 0.5,
    jitter: bool = True,
) -> RGBDSample:
    """Random resize, crop (padding with invalid pixels if needed), flip and colour jitter; returns a
    sample of exactly ``out_size = (width, height)`` with exact intrinsics.

    The resize factor is ``max(W_out / W, H_out / H) * U(scale_range)`` (1.0 = just covering the output),
    and the same for both axes, so pixels stay square.
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    ow, oh = _check_size(*out_size)
    cover = max(ow / sample.width, oh / sample.height)
    s = cover * rng.uniform(*scale_range)
    nw, nh = max(1, int(round(sample.width * s))), max(1, int(round(sample.height * s)))
    # work on plain arrays and build (and validate) one record at the end
    image = resize_image(sample.image, nw, nh)
    depth, valid = resize_depth(sample.depth, sample.valid, nw, nh)
    K = sample.intrinsics.resized(nw, nh)
    left = int(rng.integers(min(0, nw - ow), max(0, nw - ow) + 1))
    top = int(rng.integers(min(0, nh - oh), max(0, nh - oh) + 1))
    image, depth, valid = _crop_arrays(image, depth, valid, left, top, ow, oh)
    K = K.cropped(left, top, ow, oh)
    pose, meta = sample.pose, sample.meta
    if rng.uniform() < flip_prob:
        image, depth, valid = (np.ascontiguousarray(a[:, ::-1]) for a in (image, depth, valid))
        K = K.flipped_horizontally()
        pose = None if pose is None else np.asarray(pose, dtype=np.float64) @ _MIRROR
        meta = {**meta, "flipped": not bool(meta.get("flipped", False))}
    if jitter:
        image = color_jitter(image, rng)
    return sample.replace(image=image, depth=depth, valid=valid, intrinsics=K, pose=pose, meta=meta)
