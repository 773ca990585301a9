"""Sensor simulators: turn an exact (rendered) RGB-D sample into what a real sensor or reconstruction gives.

Every simulator takes a dense, exact :class:`RGBDSample` and a ``numpy.random.Generator`` (or an int seed)
and returns a **new** sample with the same image and intrinsics, the simulated ``depth``/``valid``, and
``source_kind`` / ``sensor`` / ``metric_scale_trusted`` set. Parameters not given are drawn from the
generator; every parameter actually used is recorded in ``meta["sim"]`` (JSON-serialisable). The exact
depth is not kept in the output.

=================  ===========  ======================================================================
sensor             source kind  model
=================  ===========  ======================================================================
``synthetic``      rendered     identity (exact depth)
``lidar``          captured     N beams from an offset sensor, azimuth bins, spherical + camera z-buffer,
                                range noise along the beam, dropouts, range limit
``tof``            captured     range limit, holes on dark / grazing surfaces, sigma = k z^2, flying pixels
``structured_light`` captured   as ToF, plus projector shadows and z^2-quantised depth
``stereo``         captured     z = f B / (d + noise): error ~ z^2; invalid where textureless, occluded in
                                the right view, or outside it
``sfm``            reconstructed sparse keypoints, unknown global scale, gross outliers
``mvs``            reconstructed semi-dense textured pixels, unknown global scale, gross outliers
=================  ===========  ======================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from metricanything.camera import Intrinsics, splat_points_to_depth, unproject
from metricanything.data.sample import RGBDSample
from metricanything.errors import InvalidInputError

#: sensor -> (source kind, metric scale trusted)
SENSOR_KINDS: dict[str, tuple[str, bool]] = {
    "synthetic": ("rendered", True),
    "lidar": ("captured", True),
    "tof": ("captured", True),
    "structured_light": ("captured", True),
    "stereo": ("captured", True),
    "sfm": ("reconstructed", False),
    "mvs": ("reconstructed", False),
}


def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _pick(value: Any, draw: Callable[[], Any]) -> Any:
    return draw() if value is None else value


def _finish(sample: RGBDSample, sensor: str, depth: np.ndarray, valid: np.ndarray, sim: dict[str, Any],
            extra_meta: dict[str, Any] | None = None) -> RGBDSample:
    valid = valid & np.isfinite(depth) & (depth > 0)
    depth = np.where(valid, depth, 0.0).astype(np.float32)
    kind, trusted = SENSOR_KINDS[sensor]
    meta = dict(sample.meta)
    meta["sim"] = {"sensor": sensor, **_jsonable(sim)}
    if extra_meta:
        meta.update(_jsonable(extra_meta))
    return sample.replace(depth=depth, valid=valid, source_kind=kind, sensor=sensor,
                          metric_scale_trusted=trusted, meta=meta)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, np.ndarray):
            out[k] = v.tolist()
        elif isinstance(v, np.generic):
            out[k] = v.item()
        elif isinstance(v, tuple):
            out[k] = [x.item() if isinstance(x, np.generic) else x for x in v]
        else:
            out[k] = v
    return out


def _gray(image: np.ndarray) -> np.ndarray:
    img = image.astype(np.float32) / 255.0
    return img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114


def texture_strength(image: np.ndarray, window: int = 7) -> np.ndarray:
    """Local texture: the window-averaged Sobel gradient magnitude of the grey image (per pixel, ~[0, 1])."""
    g = _gray(image)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    mag = np.sqrt(gx * gx + gy * gy)
    return cv2.boxFilter(mag, -1, (window, window), borderType=cv2.BORDER_REFLECT)


def _check_dense(sample: RGBDSample, sensor: str) -> None:
    if not sample.valid.any():
        raise InvalidInputError(f"cannot simulate {sensor} from sample {sample.sample_id!r}: it has no valid depth")


def _view_cosine(depth: np.ndarray, valid: np.ndarray, K: Intrinsics) -> np.ndarray:
    """|cos| of the angle between the surface normal and the viewing ray, per pixel.

    Tangents are one-sided point differences, taking the side with the smaller depth change, so a depth
    edge does not look like a grazing surface while a truly steep surface still does.
    """
    pts = unproject(np.where(valid, depth, 0.0).astype(np.float64), K)
    big = np.full_like(pts, np.inf)

    def tangent(fwd: np.ndarray, bwd: np.ndarray) -> np.ndarray:
        use_fwd = np.abs(fwd[..., 2]) <= np.abs(bwd[..., 2])
        return np.where(use_fwd[..., None], fwd, bwd)

    fx, bx, fy, by = big.copy(), big.copy(), big.copy(), big.copy()
    fx[:, :-1] = pts[:, 1:] - pts[:, :-1]
    bx[:, 1:] = pts[:, 1:] - pts[:, :-1]
    fy[:-1] = pts[1:] - pts[:-1]
    by[1:] = pts[1:] - pts[:-1]
    # neighbours that are invalid cannot be used
    fx[:, :-1][~valid[:, 1:]] = np.inf
    bx[:, 1:][~valid[:, :-1]] = np.inf
    fy[:-1][~valid[1:]] = np.inf
    by[1:][~valid[:-1]] = np.inf
    tx, ty = tangent(fx, bx), tangent(fy, by)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = np.cross(tx, ty)
        cos = np.abs((n * pts).sum(-1)) / (np.linalg.norm(n, axis=-1) * np.linalg.norm(pts, axis=-1))
    return np.where(valid & np.isfinite(cos), cos, 1.0)


def _depth_edges(depth: np.ndarray, valid: np.ndarray, rel: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels next to a relative depth jump > ``rel``, with the 3x3 min/max depth around them."""
    big = np.where(valid, depth, np.inf).astype(np.float32)
    small = np.where(valid, depth, 0.0).astype(np.float32)
    kernel = np.ones((3, 3), np.uint8)
    dmin = cv2.erode(big, kernel, borderType=cv2.BORDER_REPLICATE)
    dmax = cv2.dilate(small, kernel, borderType=cv2.BORDER_REPLICATE)
    with np.errstate(invalid="ignore", divide="ignore"):
        edge = valid & np.isfinite(dmin) & (dmax - dmin > rel * dmin)
    return edge, dmin, dmax


def right_view_occlusion(disparity: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a rectified pair with left-view disparity (px), which left pixels the right camera cannot see.

    Returns ``(occluded, outside)``: occluded by a nearer surface (some pixel to the right lands at or left of
    this pixel's right-image position u - d; a visible surface would need a disparity gradient >= 1 px/px to
    do that), and outside the right image (u - d < -0.5).
    """
    H, W = disparity.shape
    u = np.arange(W, dtype=np.float64)[None, :]
    xr = np.where(valid, u - disparity, np.inf)
    # min over u' > u of xr(u'): reverse cumulative minimum, shifted by one
    rev = np.minimum.accumulate(xr[:, ::-1], axis=1)[:, ::-1]
    right_min = np.full_like(xr, np.inf)
    right_min[:, :-1] = rev[:, 1:]
    occluded = valid & (right_min <= xr)
    outside = valid & (xr < -0.5)
    return occluded, outside


# ----------------------------------------------------------------------------------------------- LiDAR
def _rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = math.cos(rx), math.sin(rx), math.cos(ry), math.sin(ry), math.cos(rz), math.sin(rz)
    Rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def lidar_angles(points_lidar: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(elevation rad, azimuth rad, range m) of points in the LiDAR frame (camera-like axes: y down, z forward)."""
    x, y, z = points_lidar[..., 0], points_lidar[..., 1], points_lidar[..., 2]
    return np.arctan2(-y, np.hypot(x, z)), np.arctan2(x, z), np.linalg.norm(points_lidar, axis=-1)


def simulate_lidar(
    sample: RGBDSample,
    rng: np.random.Generator | int | None = None,
    *,
    n_beams: int | None = None,
    elevation_range_deg: tuple[float, float] | None = None,
    azimuth_res_deg: float | None = None,
    offset_m: tuple[float, float, float] | None = None,
    rotation_deg: tuple[float, float, float] | None = None,
    range_sigma_m: float | None = None,
    dropout: float | None = None,
    dark_dropout: float | None = None,
    max_range_m: float | None = None,
    min_range_m: float = 0.5,
    occlusion_margin: float = 0.03,
) -> RGBDSample:
    """A spinning LiDAR mounted near the camera, projected into the camera image.

    The exact depth map is turned into surface points; each point is assigned to a beam when its elevation
    (seen from the LiDAR origin, offset from the camera) lies within half a pixel's angle of one of
    ``n_beams`` evenly spread elevations, and to an azimuth bin. A spherical z-buffer keeps the nearest point
    per (beam, azimuth) bin and drops points hidden behind a nearer return in a neighbouring bin, so the
    sensor offset produces real LiDAR shadows. Survivors get range noise along the beam, random dropouts
    (``dropout``, plus ``dark_dropout`` on very dark surfaces, grey < 0.05, that return too little light) and
    a range limit, and are splatted into the camera with the z-buffer of
    :func:`metricanything.camera.splat_points_to_depth`. Beam geometry is recorded in ``meta["sim"]``.
    """
    _check_dense(sample, "lidar")
    rng = _as_rng(rng)
    K = sample.intrinsics
    vfov = math.radians(K.fov_y)
    n_beams = int(_pick(n_beams, lambda: int(rng.choice([16, 32, 64, 128]))))
    if n_beams < 1:
        raise InvalidInputError(f"n_beams must be >= 1, got {n_beams}")
    if elevation_range_deg is None:
        lo = -math.degrees(vfov / 2) * rng.uniform(0.7, 1.1)
        hi = math.degrees(vfov / 2) * rng.uniform(0.1, 0.6)
        elevation_range_deg = (lo, hi)
    lo, hi = map(float, elevation_range_deg)
    if n_beams > 1 and not hi > lo:
        raise InvalidInputError(f"elevation_range_deg must be (low, high) with high > low, got {elevation_range_deg}")
    pix_deg = math.degrees(1.0 / K.fy)  # angular size of one pixel at the centre
    azimuth_res_deg = float(_pick(azimuth_res_deg, lambda: rng.uniform(0.08, 0.4)))
    az_bin_deg = max(azimuth_res_deg, pix_deg)  # finer bins than pixels cannot be filled from a depth map
    offset = np.asarray(_pick(offset_m, lambda: (rng.uniform(-0.1, 0.1), rng.uniform(-0.3, -0.05),
                                                 rng.uniform(-0.3, 0.1))), dtype=np.float64)
    rot = np.asarray(_pick(rotation_deg, lambda: tuple(rng.uniform(-2.0, 2.0, 3))), dtype=np.float64)
    range_sigma_m = float(_pick(range_sigma_m, lambda: rng.uniform(0.005, 0.03)))
    dropout = float(_pick(dropout, lambda: rng.uniform(0.02, 0.15)))
    dark_dropout = float(_pick(dark_dropout, lambda: rng.uniform(0.3, 0.9)))
    max_range_m = float(_pick(max_range_m, lambda: rng.uniform(60.0, 120.0)))
    R = _rotation(*np.radians(rot))  # LiDAR-to-camera rotation; LiDAR origin at ``offset`` in the camera frame

    spacing = (hi - lo) / max(n_beams - 1, 1)
    tol_deg = 0.5 * pix_deg if n_beams == 1 else min(0.5 * pix_deg, 0.45 * spacing)
    pts = unproject(np.where(sample.valid, sample.depth, 0.0).astype(np.float64), K)[sample.valid]
    pl = (pts - offset) @ R  # R^T (p - t)
    elev, az, rng_m = lidar_angles(pl)
    elev_deg, az_deg = np.degrees(elev), np.degrees(az)
    beam = np.round((elev_deg - lo) / spacing).astype(np.int64) if n_beams > 1 else np.zeros(len(pl), np.int64)
    on_beam = (beam >= 0) & (beam < n_beams) & (np.abs(elev_deg - (lo + beam * spacing)) <= tol_deg)
    on_beam &= (rng_m >= min_range_m) & (rng_m <= max_range_m)
    idx = np.nonzero(on_beam)[0]
    abin = np.floor(az_deg[idx] / az_bin_deg).astype(np.int64)
    abin -= abin.min() if len(abin) else 0
    n_abins = int(abin.max()) + 3 if len(abin) else 1
    key = beam[idx] * n_abins + abin + 1
    r = rng_m[idx]
    order = np.lexsort((r, key))
    ks = key[order]
    first = np.ones(len(ks), dtype=bool)
    first[1:] = ks[1:] != ks[:-1]
    win = order[first]  # nearest return per (beam, azimuth) bin
    # neighbouring-bin occlusion: a return behind a clearly nearer neighbour bin is hidden from the sensor
    table = np.full(n_beams * n_abins + 2, np.inf)
    table[key[win]] = r[win]
    kw = key[win]
    neigh = np.minimum(table[kw - 1], table[kw + 1])
    visible = ~(neigh < r[win] * (1.0 - occlusion_margin) - 0.05)
    win = win[visible]
    dark = (_gray(sample.image)[sample.valid] < 0.05)[idx[win]]
    keep = rng.uniform(size=len(win)) >= np.where(dark, 1.0 - (1.0 - dropout) * (1.0 - dark_dropout), dropout)
    win = win[keep]
    sel = idx[win]
    noisy_r = rng_m[sel] + rng.normal(0.0, range_sigma_m, len(sel))
    ok = noisy_r > 0
    pl_noisy = pl[sel][ok] * (noisy_r[ok] / rng_m[sel][ok])[:, None]
    cam = pl_noisy @ R.T + offset
    depth, valid = splat_points_to_depth(cam, K)
    sim = {
        "n_beams": n_beams, "elevation_range_deg": [lo, hi], "beam_spacing_deg": spacing, "beam_tolerance_deg": tol_deg,
        "azimuth_res_deg": azimuth_res_deg, "azimuth_bin_deg": az_bin_deg, "offset_m": offset, "rotation_deg": rot,
        "range_sigma_m": range_sigma_m, "dropout": dropout, "dark_dropout": dark_dropout, "min_range_m": min_range_m, "max_range_m": max_range_m,
        "n_returns": int(len(cam)),
    }
    return _finish(sample, "lidar", depth, valid, sim)


def lidar_beam_residual_deg(sample: RGBDSample) -> np.ndarray:
    """For a simulated LiDAR sample: each valid pixel's elevation distance (deg) to the nearest beam.

    Uses the beam geometry recorded in ``meta["sim"]``; handy for checking the scan-line structure.
    """
    sim = sample.meta.get("sim", {})
    if sim.get("sensor") != "lidar":
        raise InvalidInputError(f"sample {sample.sample_id!r} is not a simulated LiDAR sample")
    R = _rotation(*np.radians(sim["rotation_deg"]))
    pts = unproject(sample.depth.astype(np.float64), sample.intrinsics)[sample.valid]
    elev, _, _ = lidar_angles((pts - np.asarray(sim["offset_m"])) @ R)
    lo, spacing, n = sim["elevation_range_deg"][0], sim["beam_spacing_deg"], sim["n_beams"]
    beams = lo + spacing * np.arange(n)
    return np.abs(np.degrees(elev)[:, None] - beams[None]).min(axis=1)


# ----------------------------------------------------------------------------------------------- ToF / SL
def simulate_tof(
    sample: RGBDSample,
    rng: np.random.Generator | int | None = None,
    *,
    max_range_m: float | None = None,
    min_range_m: float | None = None,
    sigma_k: float | None = None,
    dark_threshold: float | None = None,
    grazing_deg: float | None = None,
    flying_prob: float | None = None,
    dropout: float | None = None,
    _sensor: str = "tof",
) -> RGBDSample:
    """Time-of-flight RGB-D camera.

    Invalid beyond ``max_range_m`` / below ``min_range_m``, on dark surfaces (grey level < ``dark_threshold``,
    too little returned light) and grazing surfaces (angle between normal and ray > ``grazing_deg``).
    Noise is Gaussian with sigma = ``sigma_k`` * z^2. At depth edges (> 10 % jump in a 3x3 window) pixels
    become flying pixels with probability ``flying_prob``: a random blend of the nearest and farthest depth
    around them. Plus random single-pixel ``dropout``.
    """
    _check_dense(sample, _sensor)
    rng = _as_rng(rng)
    K = sample.intrinsics
    max_range_m = float(_pick(max_range_m, lambda: rng.uniform(3.5, 8.0)))
    min_range_m = float(_pick(min_range_m, lambda: rng.uniform(0.15, 0.5)))
    sigma_k = float(_pick(sigma_k, lambda: rng.uniform(0.0015, 0.006)))
    dark_threshold = float(_pick(dark_threshold, lambda: rng.uniform(0.04, 0.1)))
    grazing_deg = float(_pick(grazing_deg, lambda: rng.uniform(72.0, 84.0)))
    flying_prob = float(_pick(flying_prob, lambda: rng.uniform(0.3, 0.8)))
    dropout = float(_pick(dropout, lambda: rng.uniform(0.0, 0.02)))
    z = sample.depth.astype(np.float64)
    valid = sample.valid.copy()
    gray = cv2.GaussianBlur(_gray(sample.image), (3, 3), 0)
    dark = gray < dark_threshold
    edge, dmin, dmax = _depth_edges(sample.depth, valid, 0.1)
    grazing = _view_cosine(sample.depth, valid, K) < math.cos(math.radians(grazing_deg))
    H, W = z.shape
    noise = rng.normal(0.0, 1.0, (H, W)) * sigma_k * z * z
    out = z + noise
    fly = edge & (rng.uniform(size=(H, W)) < flying_prob)
    alpha = rng.uniform(size=(H, W))
    out = np.where(fly, alpha * dmin + (1 - alpha) * dmax, out)
    drop = rng.uniform(size=(H, W)) < dropout
    keep = valid & ~dark & ~grazing & ~drop & (z <= max_range_m) & (z >= min_range_m)
    sim = {"max_range_m": max_range_m, "min_range_m": min_range_m, "sigma_k": sigma_k,
           "sigma_model": "sigma = sigma_k * z^2", "dark_threshold": dark_threshold, "grazing_deg": grazing_deg,
           "flying_prob": flying_prob, "dropout": dropout, "n_flying": int((fly & keep).sum())}
    return _finish(sample, _sensor, out, keep, sim)


def simulate_structured_light(
    sample: RGBDSample,
    rng: np.random.Generator | int | None = None,
    *,
    baseline_m: float | None = None,
    quant_k: float | None = None,
    **tof_params: Any,
) -> RGBDSample:
    """Structured-light RGB-D (Kinect-v1-like): the ToF model plus projector shadows (pixels the projector,
    ``baseline_m`` to the right, cannot see) and depth quantised in steps of ``quant_k`` * z^2."""
    rng = _as_rng(rng)
    baseline_m = float(_pick(baseline_m, lambda: rng.uniform(0.05, 0.1)))
    quant_k = float(_pick(quant_k, lambda: rng.uniform(0.001, 0.003)))
    tof_params.setdefault("max_range_m", float(rng.uniform(3.5, 6.0)))
    tof_params.setdefault("min_range_m", float(rng.uniform(0.4, 0.8)))
    base = simulate_tof(sample, rng, _sensor="structured_light", **tof_params)
    K = sample.intrinsics
    disp = np.where(sample.valid, K.fx * baseline_m / np.where(sample.valid, sample.depth, 1.0), 0.0)
    occluded, outside = right_view_occlusion(disp, sample.valid)
    z = base.depth.astype(np.float64)
    step = quant_k * z * z
    with np.errstate(invalid="ignore", divide="ignore"):
        zq = np.where(step > 0, np.round(z / np.where(step > 0, step, 1.0)) * step, z)
    valid = base.valid & ~occluded & ~outside
    sim = dict(base.meta["sim"])
    sim.pop("sensor", None)
    sim.update({"baseline_m": baseline_m, "quant_k": quant_k})
    return _finish(sample, "structured_light", zq, valid, sim)


# ----------------------------------------------------------------------------------------------- stereo
def simulate_stereo(
    sample: RGBDSample,
    rng: np.random.Generator | int | None = None,
    *,
    baseline_m: float | None = None,
    disparity_sigma_px: float | None = None,
    texture_threshold: float | None = None,
    min_disparity_px: float = 0.5,
) -> RGBDSample:
    """Rectified stereo (this camera = left view, right camera ``baseline_m`` to the right).

    Disparity d = f B / z gets Gaussian noise of ``disparity_sigma_px``; depth = f B / (d + noise), so the
    depth error grows as z^2 sigma / (f B). Invalid where the local texture (:func:`texture_strength`) is
    below ``texture_threshold`` (matching fails), where the right camera is occluded or outside its image,
    and where the noisy disparity is below ``min_disparity_px``.
    """
    _check_dense(sample, "stereo")
    rng = _as_rng(rng)
    K = sample.intrinsics
    baseline_m = float(_pick(baseline_m, lambda: math.exp(rng.uniform(math.log(0.05), math.log(0.5)))))
    disparity_sigma_px = float(_pick(disparity_sigma_px, lambda: rng.uniform(0.05, 0.4)))
    texture_threshold = float(_pick(texture_threshold, lambda: rng.uniform(0.004, 0.015)))
    if baseline_m <= 0 or disparity_sigma_px < 0:
        raise InvalidInputError(f"stereo needs baseline_m > 0 and disparity_sigma_px >= 0, got {baseline_m}, {disparity_sigma_px}")
    valid = sample.valid
    z = np.where(valid, sample.depth, 1.0).astype(np.float64)
    disp = np.where(valid, K.fx * baseline_m / z, 0.0)
    occluded, outside = right_view_occlusion(disp, valid)
    textured = texture_strength(sample.image) >= texture_threshold
    noisy = disp + rng.normal(0.0, disparity_sigma_px, disp.shape)
    keep = valid & textured & ~occluded & ~outside & (noisy >= min_disparity_px)
    depth = K.fx * baseline_m / np.where(keep, noisy, 1.0)
    sim = {"baseline_m": baseline_m, "focal_px": K.fx, "disparity_sigma_px": disparity_sigma_px,
           "texture_threshold": texture_threshold, "min_disparity_px": min_disparity_px,
           "error_model": "z' = f B / (f B / z + n), n ~ N(0, sigma^2)"}
    return _finish(sample, "stereo", depth, keep, sim)


# ----------------------------------------------------------------------------------------------- SfM / MVS
def simulate_reconstruction(
    sample: RGBDSample,
    rng: np.random.Generator | int | None = None,
    *,
    mode: str = "sfm",
    scale: float | None = None,
    outlier_fraction: float | None = None,
    relative_sigma: float | None = None,
    n_points: int | None = None,
    texture_threshold: float | None = None,
) -> tuple[RGBDSample, np.ndarray]:
    """SfM (sparse keypoints) or MVS (semi-dense) depth with an unknown global scale and gross outliers.

    The output depth is ``scale * z * (1 + n)`` (``n ~ N(0, relative_sigma^2)``) at supported pixels, with
    ``scale`` log-uniform in [0.2, 5] unless given; a fraction ``outlier_fraction`` of the supported pixels
    is replaced by gross outliers (depth times exp(+-U(0.3, 1.2))). ``metric_scale_trusted`` is False and
    ``meta["true_scale"]`` / ``meta["outlier_fraction"]`` record the truth (the latter is the realised
    fraction). Returns ``(sample, outlier_mask)``.

    * ``sfm``: ``n_points`` keypoints at local maxima of image texture (gradient magnitude), like
      triangulated feature tracks.
    * ``mvs``: every pixel with texture >= ``texture_threshold``, minus random small holes.
    """
    if mode not in ("sfm", "mvs"):
        raise InvalidInputError(f"mode must be 'sfm' or 'mvs', got {mode!r}")
    _check_dense(sample, mode)
    rng = _as_rng(rng)
    H, W = sample.depth.shape
    scale = float(_pick(scale, lambda: math.exp(rng.uniform(math.log(0.2), math.log(5.0)))))
    if scale <= 0:
        raise InvalidInputError(f"scale must be > 0, got {scale}")
    if outlier_fraction is not None and not 0.0 <= outlier_fraction <= 1.0:
        raise InvalidInputError(f"outlier_fraction must be in [0, 1], got {outlier_fraction}")
    sim: dict[str, Any] = {"mode": mode}
    tex = texture_strength(sample.image, window=3)
    if mode == "sfm":
        outlier_fraction = float(_pick(outlier_fraction, lambda: rng.uniform(0.02, 0.1)))
        relative_sigma = float(_pick(relative_sigma, lambda: rng.uniform(0.003, 0.015)))
        n_points = int(_pick(n_points, lambda: int(rng.uniform(0.002, 0.01) * H * W) + 20))
        score = tex + rng.uniform(0.0, 1e-4, tex.shape).astype(np.float32)  # deterministic tie-breaking
        local_max = score >= cv2.dilate(score, np.ones((3, 3), np.uint8))
        cand = np.flatnonzero(local_max & sample.valid & (tex > 1e-3))
        best = cand[np.argsort(-score.ravel()[cand], kind="stable")[: 3 * n_points]]
        chosen = rng.choice(best, size=min(n_points, len(best)), replace=False) if len(best) else best
        support = np.zeros(H * W, dtype=bool)
        support[chosen] = True
        support = support.reshape(H, W)
        sim.update({"n_points": n_points})
    else:
        outlier_fraction = float(_pick(outlier_fraction, lambda: rng.uniform(0.005, 0.03)))
        relative_sigma = float(_pick(relative_sigma, lambda: rng.uniform(0.002, 0.008)))
        texture_threshold = float(_pick(texture_threshold, lambda: rng.uniform(0.003, 0.01)))
        holes = cv2.resize((rng.uniform(size=(max(1, H // 8), max(1, W // 8))) < 0.15).astype(np.uint8),
                           (W, H), interpolation=cv2.INTER_NEAREST).astype(bool)
        support = sample.valid & (tex >= texture_threshold) & ~holes
        sim.update({"texture_threshold": texture_threshold})
    z = np.where(support, sample.depth, 0.0).astype(np.float64)
    out = scale * z * (1.0 + rng.normal(0.0, relative_sigma, z.shape))
    idx = np.flatnonzero(support)
    n_out = int(round(outlier_fraction * len(idx)))
    outliers = np.zeros(H * W, dtype=bool)
    if n_out:
        pick = rng.choice(idx, size=n_out, replace=False)
        factor = np.exp(rng.choice([-1.0, 1.0], n_out) * rng.uniform(0.3, 1.2, n_out))
        flat = out.reshape(-1)
        flat[pick] = scale * z.reshape(-1)[pick] * factor
        outliers[pick] = True
    outliers = outliers.reshape(H, W)
    realised = n_out / len(idx) if len(idx) else 0.0
    sim.update({"scale_range": [0.2, 5.0], "relative_sigma": relative_sigma,
                "outlier_model": "depth * exp(+-U(0.3, 1.2))", "n_support": int(len(idx))})
    extra = {"true_scale": scale, "outlier_fraction": realised}
    result = _finish(sample, mode, out, support, sim, extra)
    return result, outliers & result.valid


def simulate_sfm(sample: RGBDSample, rng: np.random.Generator | int | None = None, **params: Any) -> RGBDSample:
    """Sparse SfM depth (see :func:`simulate_reconstruction`)."""
    return simulate_reconstruction(sample, rng, mode="sfm", **params)[0]


def simulate_mvs(sample: RGBDSample, rng: np.random.Generator | int | None = None, **params: Any) -> RGBDSample:
    """Semi-dense MVS depth (see :func:`simulate_reconstruction`)."""
    return simulate_reconstruction(sample, rng, mode="mvs", **params)[0]


def simulate_exact(sample: RGBDSample, rng: np.random.Generator | int | None = None) -> RGBDSample:
    """Rendered data stays exact: a copy marked ``rendered`` / ``synthetic``."""
    return _finish(sample, "synthetic", sample.depth.copy(), sample.valid.copy(), {})


#: sensor name -> simulator ``f(sample, rng, **params) -> RGBDSample``
SENSOR_SIMULATORS: dict[str, Callable[..., RGBDSample]] = {
    "synthetic": simulate_exact,
    "lidar": simulate_lidar,
    "tof": simulate_tof,
    "structured_light": simulate_structured_light,
    "stereo": simulate_stereo,
    "sfm": simulate_sfm,
    "mvs": simulate_mvs,
}


def simulate(sample: RGBDSample, sensor: str, rng: np.random.Generator | int | None = None,
             **params: Any) -> RGBDSample:
    """Simulate ``sensor`` (a key of :data:`SENSOR_SIMULATORS`) from an exact sample."""
    if sensor not in SENSOR_SIMULATORS:
        raise InvalidInputError(f"unknown sensor {sensor!r}; choose from {', '.join(SENSOR_SIMULATORS)}")
    return SENSOR_SIMULATORS[sensor](sample, rng, **params)
