"""Procedural RGB-D renderer: analytic ray casting of planes, spheres, boxes and cylinders in plain torch.

Everything here is deterministic per seed and gives **exact metric z-depth**: camera rays are
``d = R @ ((u - cx) / fx, (v - cy) / fy, 1)``, so the ray parameter ``t`` of the first hit *is* the OpenCV

World frame: metres, **z up**; camera poses are camera-to-world 4x4 transforms of the OpenCV camera frame
(x right, y down, z forward). The scene families and their generation are in :mod:`metricanything.data.scene`,
ray casting in :mod:`metricanything.data.raycast`; this module samples cameras and poses, shades images and
builds :class:`~metricanything.data.sample.RGBDSample` records.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from metricanything.camera import Intrinsics
from metricanything.data.raycast import (
    bounding_spheres,
    frustum_keep,
    intersect_chunked,
    shadow_keep,
    surface_normals,
    torch_primitives,
)
from metricanything.data.sample import RGBDSample
from metricanything.data.scene import (
    FAMILIES,
    TEX_CHECKER,
    TEX_NOISE,
    TEX_PLAIN,
    TEX_STRIPES,
    Scene,
    as_rng,
    make_scene,
)
from metricanything.errors import InvalidInputError

__all__ = [
    "DATASET_NAME", "DEFAULT_FOV_DEG", "FAMILIES", "RENDERER_VERSION", "TEX_CHECKER", "TEX_NOISE", "TEX_PLAIN",
    "TEX_STRIPES", "Scene", "camera_id_for", "check_fov_range", "look_at_pose", "make_scene", "render_sample",
    "render_scene_sample", "render_view", "render_views", "render_views_with_scene", "sample_camera", "sample_pose",
]

DATASET_NAME = "metricanything-render"
RENDERER_VERSION = "raycast-v1"

# Fixed frequency directions for the sinusoid-sum "noise" texture (unit vectors, spread over the sphere).
_NOISE_DIRS = np.array(
    [[0.577, 0.577, 0.577], [-0.816, 0.408, 0.408], [0.0, -0.707, 0.707], [0.707, 0.0, -0.707],
     [0.267, -0.802, -0.535], [-0.408, -0.408, 0.816]],
    dtype=np.float64,
)
_NOISE_DIRS /= np.linalg.norm(_NOISE_DIRS, axis=1, keepdims=True)
_NOISE_FREQ = np.array([0.25, 0.43, 0.71, 1.13, 1.9, 3.1])
_NOISE_AMP = np.array([1.0, 0.8, 0.6, 0.45, 0.3, 0.2])


# ----------------------------------------------------------------------------------------------- cameras
#: horizontal field of view (degrees) of :func:`sample_camera` by default: wide angle to telephoto
DEFAULT_FOV_DEG: tuple[float, float] = (25.0, 100.0)


def check_fov_range(fov_deg: Sequence[float] | None) -> tuple[float, float]:
    """``(lo, hi)`` horizontal FoV range in degrees, validated; None -> :data:`DEFAULT_FOV_DEG`."""
    if fov_deg is None:
        return DEFAULT_FOV_DEG
    vals = tuple(float(v) for v in fov_deg)
    if len(vals) != 2 or not (0.0 < vals[0] <= vals[1] < 180.0):
        raise InvalidInputError(f"fov_deg must be [lo, hi] degrees with 0 < lo <= hi < 180, got {list(fov_deg)}")
    return vals[0], vals[1]


def sample_camera(rng: np.random.Generator | int | None = None, size: tuple[int, int] | None = None,
                  fov_deg: Sequence[float] | None = None) -> Intrinsics:
    """A random pinhole camera: horizontal FoV in ``fov_deg`` (default 25-100 deg; log-uniform focal),
    fy = fx (+-1.5 %), principal point within +-4 % of the centre, and (unless ``size=(W, H)`` is forced) a
    random resolution with aspect W/H in [0.75, 2] and about 0.5-1.2 x 256^2 pixels. The generator is used
    the same way for any ``fov_deg``, so a seed gives the same scene and pose whatever the FoV range."""
    fov_lo, fov_hi = check_fov_range(fov_deg)
    rng = as_rng(rng)
    if size is None:
        aspect = math.exp(rng.uniform(math.log(0.75), math.log(2.0)))
        area = rng.uniform(0.5, 1.2) * 256 * 256
        w = max(16, int(round(math.sqrt(area * aspect))))
        h = max(16, int(round(w / aspect)))
    else:
        w, h = int(size[0]), int(size[1])
        if w < 1 or h < 1:
            raise InvalidInputError(f"image size must be positive, got {size}")
    f_wide = w / (2.0 * math.tan(math.radians(fov_hi) / 2))
    f_tele = w / (2.0 * math.tan(math.radians(fov_lo) / 2))
    fx = math.exp(rng.uniform(math.log(f_wide), math.log(f_tele)))
    fy = fx * (1.0 + float(np.clip(rng.normal(0.0, 0.005), -0.015, 0.015)))
    cx = (w - 1) / 2.0 + rng.uniform(-0.04, 0.04) * w
    cy = (h - 1) / 2.0 + rng.uniform(-0.04, 0.04) * h
    return Intrinsics(fx, fy, cx, cy, w, h)


def look_at_pose(eye: np.ndarray, target: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """Camera-to-world 4x4 (OpenCV camera) at ``eye`` looking at ``target`` with world +z up."""
    eye, target = np.asarray(eye, dtype=np.float64), np.asarray(target, dtype=np.float64)
    z = target - eye
    z /= np.linalg.norm(z)
    up = np.array([0.0, 0.0, 1.0])
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:  # looking straight up/down
        x = np.array([1.0, 0.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z], axis=1)
    if roll:
        c, s = math.cos(roll), math.sin(roll)
        R = R @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, eye
    return T


def _pose_from_angles(eye: np.ndarray, yaw: float, pitch: float, roll: float) -> np.ndarray:
    fwd = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch)])
    return look_at_pose(eye, eye + fwd, roll)


def _sample_eye(scene: Scene, rng: np.random.Generator, region: np.ndarray | None = None) -> np.ndarray:
    region = scene.camera_region if region is None else region
    for _ in range(200):
        cand = rng.uniform(region[:3], region[3:])
        if scene.distance_to_surface(cand[None])[0] >= scene.camera_clearance:
            return cand
    # crowded scene: fall back to the anchor that scene construction kept clear
    if scene.camera_anchor is not None:
        return np.asarray(scene.camera_anchor, dtype=np.float64).copy()
    return (region[:3] + region[3:]) / 2


def sample_pose(scene: Scene, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """A random camera-to-world pose inside the scene's camera region, clear of every surface."""
    rng = as_rng(rng)
    eye = _sample_eye(scene, rng)
    yaw = rng.uniform(*scene.yaw_range)
    if scene.family == "indoor" and scene.look_target is not None:
        # face into the room (+-60 deg around the direction to its centre) so furniture is usually in view
        to_target = np.asarray(scene.look_target) - eye
        yaw = math.atan2(to_target[1], to_target[0]) + yaw / 3.0
    pitch = rng.uniform(*scene.pitch_range)
    roll = rng.uniform(-scene.roll_max, scene.roll_max)
    return _pose_from_angles(eye, yaw, pitch, roll)



# ----------------------------------------------------------------------------------------------- shading
def _albedo(p_world: torch.Tensor, mats: torch.Tensor) -> torch.Tensor:
    """Procedural texture colour (linear RGB) at world points for per-point material rows (N x 14)."""
    base, second = mats[:, 0:3], mats[:, 3:6]
    code = mats[:, 6]
    w = torch.zeros_like(code)
    for tex in (TEX_CHECKER, TEX_STRIPES, TEX_NOISE):
        idx = torch.nonzero(code == tex).squeeze(1)
        if idx.numel() == 0:
            continue
        m = mats[idx]
        offset = m[:, 11:14]
        q = (p_world[idx] + offset) / m[:, 7:8]
        if tex == TEX_CHECKER:
            w[idx] = torch.remainder(torch.floor(q).sum(dim=1), 2.0)
        elif tex == TEX_STRIPES:
            w[idx] = (torch.remainder((q * m[:, 8:11]).sum(dim=1), 1.0) < 0.5).to(p_world.dtype)
        else:
            nd = torch.from_numpy(_NOISE_DIRS).to(p_world.dtype)
            freq = torch.from_numpy(_NOISE_FREQ).to(p_world.dtype)
            amp = torch.from_numpy(_NOISE_AMP).to(p_world.dtype)
            phase = (offset @ nd.T) * freq
            noise = (torch.sin((q @ nd.T) * (freq * (2 * math.pi)) + phase) * amp).sum(dim=1) / amp.sum()
            w[idx] = torch.clamp(0.5 + 1.2 * noise, 0.0, 1.0)
    return base * (1 - w[:, None]) + second * w[:, None]


def _shadow_visibility(scene: Scene, eye: np.ndarray, origin: torch.Tensor, ldir: torch.Tensor,
                       dist: torch.Tensor, pixel: torch.Tensor, width: int, bs_c: np.ndarray, bs_r: np.ndarray,
                       tile: int = 64) -> torch.Tensor:
    """1 where the light is visible from ``origin`` (relative to ``eye``), else 0. Under the sun, shadow rays
    are grouped by image tile so that each group only tests the primitives that can shadow its own bounding
    box (a point light's box always contains the light, so tiling does not pay off there)."""
    if scene.light_kind == "point":
        order, counts = torch.arange(origin.shape[0]), [origin.shape[0]]
    else:
        row, col = pixel // width, pixel % width
        tiles_x = (width + tile - 1) // tile
        tid = (row // tile) * tiles_x + col // tile
        order = torch.argsort(tid, stable=True)
        counts = torch.unique_consecutive(tid[order], return_counts=True)[1].tolist()
    vis = torch.empty(origin.shape[0], dtype=origin.dtype)
    start = 0
    for n in counts:
        sel = order[start:start + n]
        start += n
        o = origin[sel]
        lo = o.min(dim=0).values.double().numpy() + eye - 1e-3
        hi = o.max(dim=0).values.double().numpy() + eye + 1e-3
        keep = shadow_keep(bs_c, bs_r, lo, hi, scene)
        if not keep.any():
            vis[sel] = 1.0
            continue
        P = torch_primitives(scene, eye, origin.dtype, keep)
        _, blocked = intersect_chunked(o, ldir[sel], P, tmax=dist[sel])
        vis[sel] = (blocked < 0).to(origin.dtype)
    return vis


def render_view(
    scene: Scene, K: Intrinsics, pose_cam_to_world: np.ndarray, shadows: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render ``scene`` through camera ``K`` at ``pose_cam_to_world`` (4x4, OpenCV camera).

    Returns ``(rgb uint8 H x W x 3, depth float32 H x W (exact z-depth, 0 where invalid), valid bool H x W)``.
    """
    T = np.asarray(pose_cam_to_world, dtype=np.float64)
    if T.shape != (4, 4):
        raise InvalidInputError(f"pose must be 4x4, got {T.shape}")
    R, eye = T[:3, :3], T[:3, 3]
    dtype = torch.float32
    P = torch_primitives(scene, eye, dtype)
    bs_c, bs_r = bounding_spheres(scene)
    P_view = torch_primitives(scene, eye, dtype, frustum_keep(bs_c, bs_r, R, eye, K))
    counts = (len(scene.planes), len(scene.spheres), len(scene.boxes), len(scene.cylinders))
    W, H = K.width, K.height
    u = (np.arange(W, dtype=np.float64) - K.cx) / K.fx
    v = (np.arange(H, dtype=np.float64) - K.cy) / K.fy
    # world directions R @ (u, v, 1) computed in float64, then float32
    dirs = (u[None, :, None] * R[:, 0] + v[:, None, None] * R[:, 1] + R[:, 2]).reshape(-1, 3)
    d = torch.from_numpy(dirs).to(dtype)
    o = torch.zeros(1, 3, dtype=dtype)
    t, idx = intersect_chunked(o, d, P_view)
    hit = idx >= 0
    n_rays = d.shape[0]
    colour = torch.empty(n_rays, 3, dtype=dtype)
    # sky gradient for misses
    if (~hit).any():
        dm = d[~hit]
        el = torch.clamp(dm[:, 2] / dm.norm(dim=1), 0.0, 1.0).sqrt()[:, None]
        hz = torch.from_numpy(scene.sky_horizon).to(dtype)
        zn = torch.from_numpy(scene.sky_zenith).to(dtype)
        colour[~hit] = hz * (1 - el) + zn * el
    if hit.any():
        th, ih, dh = t[hit], idx[hit], d[hit]
        p = dh * th[:, None]  # relative to the eye
        nrm = surface_normals(p, ih, P, counts)
        facing = (nrm * dh).sum(dim=1) > 0
        nrm = torch.where(facing[:, None], -nrm, nrm)
        mats = torch.from_numpy(scene.materials).to(dtype)[ih]
        albedo = _albedo(p + torch.from_numpy(eye).to(dtype), mats)
        if scene.light_kind == "point":
            to_light = torch.from_numpy(np.asarray(scene.light, dtype=np.float64) - eye).to(dtype) - p
            dist = to_light.norm(dim=1)
            ldir = to_light / dist[:, None]
        else:
            ldir = torch.from_numpy(np.asarray(scene.light, dtype=np.float64)).to(dtype).expand_as(p)
            dist = torch.full_like(th, float("inf"))
        lam = torch.clamp((nrm * ldir).sum(dim=1), min=0.0)
        vis = torch.ones_like(lam)
        if shadows:
            lit = lam > 0
            if lit.any():
                origin = p[lit] + nrm[lit] * (1e-3 * torch.clamp(th[lit], min=1.0))[:, None]
                vis[lit] = _shadow_visibility(scene, eye, origin, ldir[lit], dist[lit],
                                              torch.nonzero(hit).squeeze(1)[lit], W, bs_c, bs_r)
        amb = scene.ambient
        colour[hit] = albedo * (amb + (1.0 - amb) * lam * vis)[:, None]
    rgb = torch.clamp(colour, 0.0, 1.0) ** (1.0 / 2.2)
    rgb = (rgb * 255.0 + 0.5).to(torch.uint8).reshape(H, W, 3).numpy()
    depth = torch.where(hit, t, torch.zeros_like(t)).reshape(H, W).numpy().astype(np.float32)
    valid = hit.reshape(H, W).numpy().copy()
    return rgb, depth, valid


# ----------------------------------------------------------------------------------------------- samples
def _rng_for(seed: int, stream: int) -> np.random.Generator:
    if int(seed) != seed or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    return np.random.default_rng([int(stream), int(seed)])


def camera_id_for(K: Intrinsics) -> str:
    """A camera-model id derived from the intrinsics (distinct intrinsics -> distinct ids)."""
    return f"synthetic-{K.width}x{K.height}-f{K.fx:.4f}-{K.fy:.4f}-c{K.cx:.3f}-{K.cy:.3f}"


def _make_sample(rgb: np.ndarray, depth: np.ndarray, valid: np.ndarray, K: Intrinsics, pose: np.ndarray,
                 scene_id: str, sample_id: str, meta: dict[str, Any]) -> RGBDSample:
    return RGBDSample(
        image=rgb, depth=depth, valid=valid, intrinsics=K, source_kind="rendered", sensor="synthetic",
        metric_scale_trusted=True, camera_id=camera_id_for(K), scene_id=scene_id, dataset=DATASET_NAME,
        sample_id=sample_id, pose=pose, meta=meta,
    )


def render_scene_sample(
    seed: int, family: str | None = None, size: tuple[int, int] | None = None,
    fov_deg: Sequence[float] | None = None,
) -> tuple[RGBDSample, Scene]:
    """Like :func:`render_sample` but also returns the analytic :class:`Scene` it was rendered from."""
    rng = _rng_for(seed, 1)
    if family is None:
        family = str(rng.choice(FAMILIES))
    scene = make_scene(family, rng)
    K = sample_camera(rng, size, fov_deg)
    pose = sample_pose(scene, rng)
    rgb, depth, valid = render_view(scene, K, pose)
    meta = {"family": family, "seed": int(seed), "renderer": RENDERER_VERSION,
            "num_primitives": scene.num_primitives}
    sample = _make_sample(rgb, depth, valid, K, pose, f"{family}-{int(seed)}", f"render-{int(seed):08d}", meta)
    return sample, scene


def render_sample(seed: int, family: str | None = None, size: tuple[int, int] | None = None,
                  fov_deg: Sequence[float] | None = None) -> RGBDSample:
    """One rendered sample (exact depth, ``sensor="synthetic"``, pose set), deterministic per ``seed``.

    ``family`` is ``indoor``/``outdoor`` (random from the seed when None); ``size=(W, H)`` forces the
    resolution (otherwise random, see :func:`sample_camera`); ``fov_deg=(lo, hi)`` restricts the horizontal
    FoV (a camera rig, e.g. (55, 65)); the scene and pose of a seed do not depend on it.
    """
    return render_scene_sample(seed, family, size, fov_deg)[0]


def render_views_with_scene(
    seed: int, n_views: int, size: tuple[int, int] | None = None, family: str | None = None
) -> tuple[list[RGBDSample], Scene]:
    """:func:`render_views` plus the analytic scene (for exact point-to-surface checks)."""
    if n_views < 1:
        raise InvalidInputError(f"n_views must be >= 1, got {n_views}")
    rng = _rng_for(seed, 2)
    if family is None:
        family = str(rng.choice(FAMILIES))
    scene = make_scene(family, rng)
    K = sample_camera(rng, size)
    target = np.asarray(scene.look_target, dtype=np.float64)
    out = []
    for i in range(n_views):
        eye = _sample_eye(scene, rng)
        for _ in range(20):  # keep the shared target at a comfortable distance
            if np.linalg.norm(target - eye) > 1.0:
                break
            eye = _sample_eye(scene, rng)
        jitter = rng.normal(0.0, 0.15, 3) if family == "indoor" else rng.normal(0.0, 0.8, 3)
        pose = look_at_pose(eye, target + jitter, rng.uniform(-scene.roll_max, scene.roll_max))
        rgb, depth, valid = render_view(scene, K, pose)
        meta = {"family": family, "seed": int(seed), "view": i, "renderer": RENDERER_VERSION,
                "num_primitives": scene.num_primitives}
        out.append(_make_sample(rgb, depth, valid, K, pose, f"{family}-views-{int(seed)}",
                                f"views-{int(seed):08d}-{i:03d}", meta))
    return out, scene


def render_views(
    seed: int, n_views: int, size: tuple[int, int] | None = None, family: str | None = None
) -> list[RGBDSample]:
    """``n_views`` renders of one scene from different known poses (same camera), all looking at a shared
    target so that the views overlap. ``sample.pose`` holds each camera-to-world transform."""
    return render_views_with_scene(seed, n_views, size, family)[0]
