"""Procedural RGB-D renderer: analytic ray casting of planes, spheres, boxes and cylinders in plain torch.

Everything here is deterministic per seed and gives **exact metric z-depth**: camera rays are
``d = R @ ((u - cx) / fx, (v - cy) / fy, 1)``, so the ray parameter ``t`` of the first hit *is* the OpenCV
z-depth of that pixel (no conversion, no clamping). Rays that hit nothing (outdoor sky) are invalid.

World frame: metres, **z up** (floor/ground at z = 0). Camera poses are camera-to-world 4x4 transforms of the
OpenCV camera frame (x right, y down, z forward).

Scene families:

* ``indoor``: a convex room (floor, ceiling, four walls as planes; 3-6.5 m x 3-6.5 m x 2.5-3 m) with
  furniture-like boxes, cylinders and spheres and a point light; every pixel is valid, depth in [0.5, 10] m.
* ``outdoor``: a street canyon (ground slab, rows of buildings on both sides, a closing facade 35-65 m ahead,
  parked cars, poles, trees) lit by a sun with shadows; sky pixels are invalid, depth up to 80 m.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from metricanything.camera import Intrinsics
from metricanything.data.sample import RGBDSample
from metricanything.errors import InvalidInputError

FAMILIES: tuple[str, ...] = ("indoor", "outdoor")
DATASET_NAME = "metricanything-render"
RENDERER_VERSION = "raycast-v1"

#: texture codes
TEX_PLAIN, TEX_CHECKER, TEX_STRIPES, TEX_NOISE = 0, 1, 2, 3
_EPS = 1e-4

# Fixed frequency directions for the sinusoid-sum "noise" texture (unit vectors, spread over the sphere).
_NOISE_DIRS = np.array(
    [[0.577, 0.577, 0.577], [-0.816, 0.408, 0.408], [0.0, -0.707, 0.707], [0.707, 0.0, -0.707],
     [0.267, -0.802, -0.535], [-0.408, -0.408, 0.816]],
    dtype=np.float64,
)
_NOISE_DIRS /= np.linalg.norm(_NOISE_DIRS, axis=1, keepdims=True)
_NOISE_FREQ = np.array([0.25, 0.43, 0.71, 1.13, 1.9, 3.1])
_NOISE_AMP = np.array([1.0, 0.8, 0.6, 0.45, 0.3, 0.2])


def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


# ----------------------------------------------------------------------------------------------- scene
@dataclass
class Scene:
    """Analytic primitives, their materials and the lighting of one scene (world frame, z up, metres).

    * ``planes``: P x 6 (point xyz, unit normal xyz), infinite.
    * ``spheres``: S x 4 (centre xyz, radius).
    * ``boxes``: B x 7 (centre xyz, half-size xyz, yaw about +z in radians).
    * ``cylinders``: C x 5 (axis x, axis y, bottom z, radius, height); vertical axis, capped.
    * ``materials``: one row per primitive in the order planes, spheres, boxes, cylinders:
      albedo rgb (3), second albedo rgb (3), texture code, texture scale (m), texture direction (3),
      texture offset (3) -- 14 columns.
    """

    family: str
    planes: np.ndarray
    spheres: np.ndarray
    boxes: np.ndarray
    cylinders: np.ndarray
    materials: np.ndarray
    light_kind: str = "directional"  # "directional" (sun) or "point"
    light: np.ndarray = field(default_factory=lambda: np.array([0.3, 0.2, 0.9]))  # direction to light / position
    ambient: float = 0.3
    sky_horizon: np.ndarray = field(default_factory=lambda: np.array([0.75, 0.82, 0.92]))
    sky_zenith: np.ndarray = field(default_factory=lambda: np.array([0.25, 0.45, 0.85]))
    #: camera placement: box of allowed centres (xmin, ymin, zmin, xmax, ymax, zmax), minimum clearance (m)
    camera_region: np.ndarray = field(default_factory=lambda: np.array([-1.0, -1.0, 1.0, 1.0, 1.0, 2.0]))
    camera_clearance: float = 1.2
    #: yaw range (rad) and pitch range (rad) for random views; ``look_target`` for multi-view rigs
    yaw_range: tuple[float, float] = (-math.pi, math.pi)
    pitch_range: tuple[float, float] = (-0.3, 0.15)
    roll_max: float = 0.08
    look_target: np.ndarray | None = None
    #: a camera centre known to be clear of every surface (fallback for crowded scenes)
    camera_anchor: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.planes = np.asarray(self.planes, dtype=np.float64).reshape(-1, 6)
        self.spheres = np.asarray(self.spheres, dtype=np.float64).reshape(-1, 4)
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 7)
        self.cylinders = np.asarray(self.cylinders, dtype=np.float64).reshape(-1, 5)
        self.materials = np.asarray(self.materials, dtype=np.float64).reshape(-1, 14)
        if len(self.materials) != self.num_primitives:
            raise InvalidInputError(
                f"scene has {self.num_primitives} primitives but {len(self.materials)} material rows"
            )

    @property
    def num_primitives(self) -> int:
        return len(self.planes) + len(self.spheres) + len(self.boxes) + len(self.cylinders)

    # ------------------------------------------------------------------ analytic queries
    def ray_depth(self, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """Ray parameter ``t`` of the first hit for rays ``origins + t * dirs`` (float64, inf on a miss).

        With camera rays whose direction has unit z in the camera frame, ``t`` is the z-depth.
        """
        o = np.asarray(origins, dtype=np.float64).reshape(-1, 3)
        d = np.asarray(dirs, dtype=np.float64).reshape(-1, 3)
        if len(o) == 1 and len(d) > 1:
            o = np.broadcast_to(o, d.shape)
        if o.shape != d.shape:
            raise InvalidInputError(f"origins {o.shape} and dirs {d.shape} do not match")
        centre = np.zeros(3)
        prims = _torch_primitives(self, centre, torch.float64)
        t, _ = _intersect_chunked(torch.from_numpy(np.ascontiguousarray(o)), torch.from_numpy(np.ascontiguousarray(d)), prims)
        return t.numpy()

    def distance_to_surface(self, points_world: np.ndarray) -> np.ndarray:
        """Unsigned distance (m) from each world point (... x 3) to the nearest primitive surface.

        Planes are infinite, so for points inside the indoor room this is the exact distance to the room's
        boundary or furniture; points far outside the room may report a smaller distance.
        """
        p = np.asarray(points_world, dtype=np.float64)
        shape = p.shape[:-1]
        p = p.reshape(-1, 3)
        best = np.full(len(p), np.inf)
        for pl in self.planes:
            best = np.minimum(best, np.abs((p - pl[:3]) @ pl[3:]))
        for s in self.spheres:
            best = np.minimum(best, np.abs(np.linalg.norm(p - s[:3], axis=1) - s[3]))
        for b in self.boxes:
            c, s_ = math.cos(b[6]), math.sin(b[6])
            q = p - b[:3]
            ql = np.stack([c * q[:, 0] + s_ * q[:, 1], -s_ * q[:, 0] + c * q[:, 1], q[:, 2]], axis=1)
            e = np.abs(ql) - b[3:6]
            outside = np.linalg.norm(np.maximum(e, 0.0), axis=1)
            inside = np.minimum(e.max(axis=1), 0.0)
            best = np.minimum(best, np.abs(outside + inside))
        for cy in self.cylinders:
            rho = np.hypot(p[:, 0] - cy[0], p[:, 1] - cy[1]) - cy[3]
            hz = np.abs(p[:, 2] - (cy[2] + cy[4] / 2)) - cy[4] / 2
            e = np.stack([rho, hz], axis=1)
            sdf = np.minimum(e.max(axis=1), 0.0) + np.linalg.norm(np.maximum(e, 0.0), axis=1)
            best = np.minimum(best, np.abs(sdf))
        return best.reshape(shape)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable description (for debugging and reproducibility records)."""
        return {
            "family": self.family,
            "planes": self.planes.tolist(),
            "spheres": self.spheres.tolist(),
            "boxes": self.boxes.tolist(),
            "cylinders": self.cylinders.tolist(),
            "light_kind": self.light_kind,
            "light": np.asarray(self.light).tolist(),
            "ambient": self.ambient,
        }


class _SceneBuilder:
    """Accumulates primitives with their materials, then freezes them into a :class:`Scene`."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.prims: dict[str, list[tuple[list[float], np.ndarray]]] = {
            "planes": [], "spheres": [], "boxes": [], "cylinders": []
        }
        self.pending: list[str] = []

    def material(self, base: np.ndarray | None = None, textures: tuple[int, ...] = (0, 1, 2, 3),
                 scale: tuple[float, float] = (0.1, 1.0), dark_prob: float = 0.1) -> np.ndarray:
        rng = self.rng
        if base is None:
            hsv_h = rng.uniform()
            sat = rng.uniform(0.1, 0.8)
            val = rng.uniform(0.35, 0.95)
            base = _hsv_to_rgb(hsv_h, sat, val)
        if rng.uniform() < dark_prob:  # dark surfaces (ToF holes, low-texture)
            base = base * rng.uniform(0.05, 0.2)
        second = np.clip(base * rng.uniform(0.3, 0.8) + rng.uniform(-0.1, 0.1, 3), 0.0, 1.0)
        tex = int(rng.choice(textures))
        s = math.exp(rng.uniform(math.log(scale[0]), math.log(scale[1])))
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction) + 1e-12
        offset = rng.uniform(0.0, 100.0, 3)
        return np.concatenate([base, second, [tex, s], direction, offset])

    def add(self, kind: str, params: list[float], mat: np.ndarray) -> None:
        self.prims[kind].append((list(map(float, params)), mat))
        self.pending.append(kind)

    def reserve(self, point: np.ndarray, clearance: float) -> bool:
        """Remove the primitives added since the last call if any comes within ``clearance`` of ``point``
        (objects are added in small groups, e.g. a table and what stands on it, and dropped together).
        Returns whether they were kept."""
        kept = True
        if self.pending:
            probe = self.build("probe-group", _only_last=len(self.pending))
            if probe.num_primitives and probe.distance_to_surface(np.asarray(point)[None])[0] < clearance:
                for kind in reversed(self.pending):
                    self.prims[kind].pop()
                kept = False
        self.pending = []
        return kept

    def build(self, family: str, _only_last: int = 0, **kw: Any) -> Scene:
        mats: list[np.ndarray] = []
        arrays = {}
        recent: dict[str, int] = {}
        for kind in self.pending[len(self.pending) - _only_last:] if _only_last else []:
            recent[kind] = recent.get(kind, 0) + 1
        for kind, width in (("planes", 6), ("spheres", 4), ("boxes", 7), ("cylinders", 5)):
            rows = self.prims[kind]
            if _only_last:
                rows = rows[len(rows) - recent.get(kind, 0):] if recent.get(kind, 0) else []
            arrays[kind] = np.array([r for r, _ in rows], dtype=np.float64).reshape(-1, width)
            mats.extend(m for _, m in rows)
        return Scene(family=family, materials=np.array(mats).reshape(-1, 14), **arrays, **kw)


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i], dtype=np.float64)


def _add_furniture(b: _SceneBuilder, rng: np.random.Generator, lx: float, ly: float, lz: float) -> None:
    kind = rng.choice(["box", "box", "cylinder", "sphere"])
    if kind == "box":
        hx, hy, hz = rng.uniform(0.15, 0.9), rng.uniform(0.15, 0.9), rng.uniform(0.2, 1.0)
        cx, cy = rng.uniform(hx, lx - hx), rng.uniform(hy, ly - hy)
        b.add("boxes", [cx, cy, hz, hx, hy, hz, rng.uniform(0, math.pi)], b.material(scale=(0.05, 0.5)))
        if rng.uniform() < 0.5:  # something on top
            r = rng.uniform(0.08, min(0.3, hx, hy))
            b.add("spheres", [cx, cy, 2 * hz + r, r], b.material(scale=(0.03, 0.2)))
    elif kind == "cylinder":
        r, h = rng.uniform(0.08, 0.45), rng.uniform(0.3, 2.0)
        b.add("cylinders", [rng.uniform(r, lx - r), rng.uniform(r, ly - r), 0.0, r, min(h, lz - 0.1)],
              b.material(scale=(0.05, 0.5)))
    else:
        r = rng.uniform(0.1, 0.5)
        b.add("spheres", [rng.uniform(r, lx - r), rng.uniform(r, ly - r), r, r], b.material(scale=(0.03, 0.3)))


def _make_indoor(rng: np.random.Generator) -> Scene:
    b = _SceneBuilder(rng)
    lx, ly, lz = rng.uniform(3.0, 6.5), rng.uniform(3.0, 6.5), rng.uniform(2.5, 3.0)
    wall = b.material(textures=(0, 0, 2, 3), scale=(0.2, 1.5), dark_prob=0.05)
    floor_mat = b.material(textures=(1, 2, 3), scale=(0.2, 0.8), dark_prob=0.15)
    ceil_mat = b.material(base=np.full(3, rng.uniform(0.75, 0.95)), textures=(0,), dark_prob=0.0)
    b.add("planes", [0, 0, 0, 0, 0, 1], floor_mat)
    b.add("planes", [0, 0, lz, 0, 0, -1], ceil_mat)
    for i, (p, n) in enumerate((([0, 0, 0], [1, 0, 0]), ([lx, 0, 0], [-1, 0, 0]),
                                ([0, 0, 0], [0, 1, 0]), ([0, ly, 0], [0, -1, 0]))):
        mat = wall if i % 2 == 0 or rng.uniform() < 0.5 else b.material(textures=(0, 2, 3), scale=(0.2, 1.5))
        b.add("planes", [*p, *n], mat)
    clearance = 1.2
    region = np.array([clearance, clearance, clearance, lx - clearance, ly - clearance, lz - clearance])
    anchor = rng.uniform(region[:3], region[3:])
    b.pending = []  # the room itself is clear of the camera region by construction
    n_obj = int(rng.integers(3, 9))
    for _ in range(n_obj):
        for _attempt in range(4):  # re-place an object that would crowd the camera anchor
            _add_furniture(b, rng, lx, ly, lz)
            if b.reserve(anchor, clearance):
                break
    light = np.array([rng.uniform(0.2, lx - 0.2), rng.uniform(0.2, ly - 0.2), lz - rng.uniform(0.05, 0.4)])
    return b.build(
        "indoor", light_kind="point", light=light, ambient=float(rng.uniform(0.2, 0.4)),
        camera_region=region, camera_anchor=anchor, camera_clearance=clearance, yaw_range=(-math.pi, math.pi), pitch_range=(-0.35, 0.15), roll_max=0.08,
        look_target=np.array([lx / 2, ly / 2, rng.uniform(0.5, 1.2)]),
    )


def _make_outdoor(rng: np.random.Generator) -> Scene:
    b = _SceneBuilder(rng)
    half_w = rng.uniform(5.0, 12.0)
    x_end = rng.uniform(35.0, 65.0)
    ground = b.material(base=np.full(3, rng.uniform(0.25, 0.5)) * np.array([1.0, 1.0, rng.uniform(0.9, 1.1)]),
                        textures=(2, 3), scale=(0.3, 3.0), dark_prob=0.2)
    b.add("planes", [0.0, 0.0, 0.0, 0.0, 0.0, 1.0], ground)  # the canyon walls bound what is visible of it
    # rows of buildings along both sides, from x = -40 to the closing facade
    for side in (-1.0, 1.0):
        x = -40.0
        while x < x_end:
            wx = rng.uniform(8.0, 22.0)
            setback = rng.uniform(0.0, 1.5)
            depth = rng.uniform(8.0, 15.0)
            height = rng.uniform(5.0, 30.0)
            cy = side * (half_w + setback + depth / 2)
            b.add("boxes", [x + wx / 2, cy, height / 2, wx / 2, depth / 2, height / 2, 0.0],
                  b.material(textures=(0, 1, 2, 2, 3), scale=(0.5, 3.0), dark_prob=0.1))
            x += wx
    far_h = rng.uniform(8.0, 30.0)
    b.add("boxes", [x_end + 6.0, 0.0, far_h / 2, 6.0, half_w + 15.0, far_h / 2, 0.0],
          b.material(textures=(0, 1, 2, 3), scale=(0.5, 3.0)))
    region = np.array([-2.0, -half_w + 2.0, 1.5, 6.0, half_w - 2.0, 2.8])
    anchor = rng.uniform(region[:3], region[3:])
    b.pending = []  # ground and buildings are clear of the camera region by construction
    # parked cars: body + cabin
    for _ in range(int(rng.integers(2, 8))):
        b.reserve(anchor, 1.5)
        side = rng.choice([-1.0, 1.0])
        cx, cy = rng.uniform(4.0, x_end - 5.0), side * (half_w - rng.uniform(1.2, 2.2))
        yaw = rng.uniform(-0.15, 0.15)
        body = b.material(textures=(0, 0, 3), scale=(0.1, 0.5), dark_prob=0.25)
        b.add("boxes", [cx, cy, 0.55, 2.1, 0.9, 0.4, yaw], body)
        b.add("boxes", [cx - 0.2, cy, 1.2, 1.2, 0.8, 0.28, yaw], b.material(base=np.full(3, 0.1), textures=(0,)))
    # poles and trees near the kerb
    for _ in range(int(rng.integers(2, 7))):
        b.reserve(anchor, 1.5)
        side = rng.choice([-1.0, 1.0])
        px, py = rng.uniform(2.0, x_end - 2.0), side * (half_w - rng.uniform(0.3, 0.8))
        if rng.uniform() < 0.5:
            r, h = rng.uniform(0.06, 0.2), rng.uniform(3.0, 8.0)
            b.add("cylinders", [px, py, 0.0, r, h], b.material(textures=(0, 2), scale=(0.2, 1.0)))
        else:
            r, h = rng.uniform(0.12, 0.3), rng.uniform(1.5, 3.5)
            b.add("cylinders", [px, py, 0.0, r, h], b.material(base=np.array([0.35, 0.25, 0.15]), textures=(3,)))
            cr = rng.uniform(0.8, 2.2)
            leaves = b.material(base=np.array([0.15, rng.uniform(0.3, 0.5), 0.12]), textures=(3,), scale=(0.1, 0.4))
            b.add("spheres", [px, py, h + cr * 0.8, cr], leaves)
    b.reserve(anchor, 1.5)
    elev, azim = rng.uniform(0.35, 1.2), rng.uniform(-math.pi, math.pi)
    sun = np.array([math.cos(elev) * math.cos(azim), math.cos(elev) * math.sin(azim), math.sin(elev)])
    tint = rng.uniform(-0.08, 0.08, 3)
    return b.build(
        "outdoor", light_kind="directional", light=sun, ambient=float(rng.uniform(0.3, 0.45)),
        sky_horizon=np.clip(np.array([0.78, 0.84, 0.92]) + tint, 0, 1),
        sky_zenith=np.clip(np.array([0.22, 0.42, 0.82]) + tint, 0, 1),
        camera_region=region, camera_anchor=anchor, camera_clearance=1.5, yaw_range=(-0.5, 0.5), pitch_range=(-0.14, 0.08), roll_max=0.05,
        look_target=np.array([rng.uniform(12.0, 25.0), rng.uniform(-2.0, 2.0), rng.uniform(0.5, 3.0)]),
    )


def make_scene(family: str, rng: np.random.Generator | int | None = None) -> Scene:
    """A random scene of ``family`` (``indoor`` or ``outdoor``), deterministic for a seeded generator."""
    rng = _as_rng(rng)
    if family == "indoor":
        return _make_indoor(rng)
    if family == "outdoor":
        return _make_outdoor(rng)
    raise InvalidInputError(f"unknown scene family {family!r}; choose from {FAMILIES}")


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
    rng = _as_rng(rng)
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
    rng = _as_rng(rng)
    eye = _sample_eye(scene, rng)
    yaw = rng.uniform(*scene.yaw_range)
    if scene.family == "indoor" and scene.look_target is not None:
        # face into the room (+-60 deg around the direction to its centre) so furniture is usually in view
        to_target = np.asarray(scene.look_target) - eye
        yaw = math.atan2(to_target[1], to_target[0]) + yaw / 3.0
    pitch = rng.uniform(*scene.pitch_range)
    roll = rng.uniform(-scene.roll_max, scene.roll_max)
    return _pose_from_angles(eye, yaw, pitch, roll)


# ----------------------------------------------------------------------------------------------- tracing
def _bounding_spheres(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Bounding sphere (centre M x 3, radius M) of every primitive in global order; planes get radius inf."""
    c = [scene.planes[:, :3], scene.spheres[:, :3], scene.boxes[:, :3],
         scene.cylinders[:, :3] + np.stack([0 * scene.cylinders[:, 0], 0 * scene.cylinders[:, 0],
                                            scene.cylinders[:, 4] / 2], axis=1)]
    r = [np.full(len(scene.planes), np.inf), scene.spheres[:, 3], np.linalg.norm(scene.boxes[:, 3:6], axis=1),
         np.hypot(scene.cylinders[:, 3], scene.cylinders[:, 4] / 2)]
    return np.concatenate(c).reshape(-1, 3), np.concatenate(r)


def _frustum_keep(centres: np.ndarray, radii: np.ndarray, R: np.ndarray, eye: np.ndarray, K: Intrinsics) -> np.ndarray:
    """Primitives whose bounding sphere may intersect the camera's view frustum (conservative)."""
    pc = (centres - eye) @ R  # camera frame
    al, ar = (-0.5 - K.cx) / K.fx, (K.width - 0.5 - K.cx) / K.fx
    at, ab = (-0.5 - K.cy) / K.fy, (K.height - 0.5 - K.cy) / K.fy
    normals = np.array([[1.0, 0.0, -al], [-1.0, 0.0, ar], [0.0, 1.0, -at], [0.0, -1.0, ab], [0.0, 0.0, 1.0]])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        dist = pc @ normals.T  # signed distance to each plane (inside >= 0)
        keep = (dist >= -radii[:, None]).all(axis=1)
    return keep | ~np.isfinite(radii)


def _shadow_keep(centres: np.ndarray, radii: np.ndarray, lo: np.ndarray, hi: np.ndarray, scene: Scene) -> np.ndarray:
    """Primitives that may block a segment from any point in the world box [lo, hi] to the light (conservative).

    Finite primitives: bounding sphere against the box swept towards the light. Planes: culled when the box
    (and a point light) lie on their front side and a sun ray cannot cross to the back.
    """
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    keep = np.ones(len(radii), dtype=bool)
    n_pl = len(scene.planes)
    if n_pl:
        n, p0 = scene.planes[:, 3:6], scene.planes[:, :3]
        off = np.einsum("ij,ij->i", n, p0)
        front = (corners @ n.T - off).min(axis=0) >= -1e-3
        if scene.light_kind == "point":
            front &= (np.asarray(scene.light, dtype=np.float64) @ n.T - off) >= -1e-3
        else:
            front &= (n @ np.asarray(scene.light, dtype=np.float64)) >= 0.0
        keep[:n_pl] = ~front
    if scene.light_kind == "point":
        light = np.asarray(scene.light, dtype=np.float64)
        lo, hi = np.minimum(lo, light), np.maximum(hi, light)
        gap = np.maximum(lo - centres[n_pl:], 0.0) + np.maximum(centres[n_pl:] - hi, 0.0)
        keep[n_pl:] = np.linalg.norm(gap, axis=1) <= radii[n_pl:]
        return keep
    L = np.asarray(scene.light, dtype=np.float64)
    L = L / np.linalg.norm(L)
    e1 = np.cross(L, [1.0, 0.0, 0.0] if abs(L[0]) < 0.9 else [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(L, e1)
    basis = np.stack([e1, e2, L], axis=1)
    cb = corners @ basis
    pb = centres[n_pl:] @ basis
    r = radii[n_pl:]
    keep[n_pl:] = (
        (pb[:, 0] + r >= cb[:, 0].min()) & (pb[:, 0] - r <= cb[:, 0].max())
        & (pb[:, 1] + r >= cb[:, 1].min()) & (pb[:, 1] - r <= cb[:, 1].max())
        & (pb[:, 2] + r >= cb[:, 2].min())
    )
    return keep


def _torch_primitives(
    scene: Scene, centre: np.ndarray, dtype: torch.dtype, keep: np.ndarray | None = None
) -> dict[str, torch.Tensor]:
    """Primitive parameters translated so that ``centre`` is the origin (keeps float32 accurate).

    ``keep`` (bool, global primitive order) selects a subset; ``P["gidx"]`` maps the subset's
    concatenated order back to global primitive indices.
    """
    groups = [scene.planes, scene.spheres, scene.boxes, scene.cylinders]
    if keep is None:
        keep = np.ones(scene.num_primitives, dtype=bool)
    sub, gidx, start = [], [], 0
    for g in groups:
        k = keep[start:start + len(g)]
        a = g[k].copy()
        a[:, :3] -= centre
        sub.append(a)
        gidx.append(np.nonzero(k)[0] + start)
        start += len(g)
    pl, sp, bx, cy = sub
    aligned = bx[:, 6] == 0.0
    order = np.concatenate([np.nonzero(aligned)[0], np.nonzero(~aligned)[0]])
    gidx[2] = gidx[2][order]
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(dtype)  # noqa: E731
    ab, rb = bx[aligned], bx[~aligned]
    return {
        "plane_n": t(pl[:, 3:6]), "plane_off": t(np.einsum("ij,ij->i", pl[:, :3], pl[:, 3:6])),
        "sph_c": t(sp[:, :3]), "sph_r": t(sp[:, 3]),
        # boxes in the subset's own order (for normals) ...
        "box_c": t(bx[:, :3]), "box_h": t(bx[:, 3:6]), "box_cos": t(np.cos(bx[:, 6])), "box_sin": t(np.sin(bx[:, 6])),
        # ... and split into axis-aligned and rotated ones for intersection
        "abox_lo": t(ab[:, :3] - ab[:, 3:6]), "abox_hi": t(ab[:, :3] + ab[:, 3:6]),
        "rbox_c": t(rb[:, :3]), "rbox_h": t(rb[:, 3:6]), "rbox_cos": t(np.cos(rb[:, 6])), "rbox_sin": t(np.sin(rb[:, 6])),
        "cyl_c": t(cy[:, :3]), "cyl_r": t(cy[:, 3]), "cyl_h": t(cy[:, 4]),
        "gidx": torch.from_numpy(np.concatenate(gidx).astype(np.int64)),
    }


def _intersect(o: torch.Tensor, d: torch.Tensor, P: dict[str, torch.Tensor],
               tmax: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """First hit of rays ``o + t d`` (o: N x 3 or 1 x 3, d: N x 3): ``(t, primitive index)``, inf / -1 on a miss.

    With ``tmax`` only whether something lies in (eps, tmax) matters (any-hit, used for shadow rays).
    """
    inf = torch.tensor(float("inf"), dtype=d.dtype)
    eps = _EPS
    ts: list[torch.Tensor] = []
    ox, oy, oz = o[:, 0:1], o[:, 1:2], o[:, 2:3]
    dx, dy, dz = d[:, 0:1], d[:, 1:2], d[:, 2:3]
    # planes: (off - o.n) / (d.n)
    if len(P["plane_n"]):
        n = P["plane_n"]
        t = (P["plane_off"] - o @ n.T) / (d @ n.T)
        ts.append(torch.where(t > eps, t, inf))
    # spheres
    if len(P["sph_r"]):
        c, r = P["sph_c"], P["sph_r"]
        ocx, ocy, ocz = ox - c[:, 0], oy - c[:, 1], oz - c[:, 2]
        a = dx * dx + dy * dy + dz * dz
        bh = dx * ocx + dy * ocy + dz * ocz
        cc = ocx * ocx + ocy * ocy + ocz * ocz - r * r
        disc = bh * bh - a * cc
        sq = torch.sqrt(torch.clamp(disc, min=0.0))
        t1 = (-bh - sq) / a
        t2 = (-bh + sq) / a
        t = torch.where(t1 > eps, t1, torch.where(t2 > eps, t2, inf))
        ts.append(torch.where(disc >= 0, t, inf))
    # axis-aligned boxes: slab test with one reciprocal per ray
    if len(P["abox_lo"]):
        lo, hi = P["abox_lo"], P["abox_hi"]
        tmin, tfar = None, None
        for ax, oc, dc in ((0, ox, dx), (1, oy, dy), (2, oz, dz)):
            inv = 1.0 / dc
            ta = (lo[:, ax] - oc) * inv
            tb = (hi[:, ax] - oc) * inv
            near, far = torch.minimum(ta, tb), torch.maximum(ta, tb)
            tmin = near if tmin is None else torch.maximum(tmin, near)
            tfar = far if tfar is None else torch.minimum(tfar, far)
        hit = (tfar >= tmin) & (tfar > eps)
        ts.append(torch.where(hit, torch.where(tmin > eps, tmin, tfar), inf))
    # boxes with yaw: rotate rays into the box frame, slab test
    if len(P["rbox_h"]):
        c, h, cs, sn = P["rbox_c"], P["rbox_h"], P["rbox_cos"], P["rbox_sin"]
        qx, qy, qz = ox - c[:, 0], oy - c[:, 1], oz - c[:, 2]
        lox, loy = cs * qx + sn * qy, cs * qy - sn * qx
        ldx, ldy = cs * dx + sn * dy, cs * dy - sn * dx
        tmin, tfar = None, None
        for lo_, ld, hh in ((lox, ldx, h[:, 0]), (loy, ldy, h[:, 1]), (qz, dz, h[:, 2])):
            inv = 1.0 / ld
            ta = (-hh - lo_) * inv
            tb = (hh - lo_) * inv
            near, far = torch.minimum(ta, tb), torch.maximum(ta, tb)
            tmin = near if tmin is None else torch.maximum(tmin, near)
            tfar = far if tfar is None else torch.minimum(tfar, far)
        hit = (tfar >= tmin) & (tfar > eps)
        ts.append(torch.where(hit, torch.where(tmin > eps, tmin, tfar), inf))
    # vertical capped cylinders
    if len(P["cyl_r"]):
        c, r, hgt = P["cyl_c"], P["cyl_r"], P["cyl_h"]
        qx, qy, qz = ox - c[:, 0], oy - c[:, 1], oz - c[:, 2]
        a = dx * dx + dy * dy
        bh = dx * qx + dy * qy
        cc = qx * qx + qy * qy - r * r
        disc = bh * bh - a * cc
        sq = torch.sqrt(torch.clamp(disc, min=0.0))
        t1 = (-bh - sq) / a
        t2 = (-bh + sq) / a
        z1, z2 = qz + t1 * dz, qz + t2 * dz
        ok1 = (disc >= 0) & (t1 > eps) & (z1 >= 0) & (z1 <= hgt)
        ok2 = (disc >= 0) & (t2 > eps) & (z2 >= 0) & (z2 <= hgt)
        t = torch.where(ok1, t1, torch.where(ok2, t2, inf))
        for zc in (torch.zeros_like(hgt), hgt):
            tc = (zc - qz) / dz
            px, py = qx + tc * dx, qy + tc * dy
            okc = (tc > eps) & (px * px + py * py <= r * r)
            t = torch.minimum(t, torch.where(okc, tc, inf))
        ts.append(t)
    if not ts:
        n_rays = d.shape[0]
        return torch.full((n_rays,), float("inf"), dtype=d.dtype), torch.full((n_rays,), -1, dtype=torch.long)
    allt = torch.cat(ts, dim=1) if len(ts) > 1 else ts[0]
    if tmax is not None:
        blocked = (allt < tmax[:, None]).any(dim=1)
        return torch.where(blocked, torch.zeros_like(tmax), inf.expand_as(tmax)), blocked.long() - 1
    tbest, idx = allt.min(dim=1)
    idx = torch.where(torch.isfinite(tbest), P["gidx"][idx], torch.full_like(idx, -1))
    return tbest, idx


def _intersect_chunked(o: torch.Tensor, d: torch.Tensor, P: dict[str, torch.Tensor],
                       tmax: torch.Tensor | None = None, chunk: int = 1 << 17) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_intersect` over chunks of rays (bounded memory for large images; identical results)."""
    n = d.shape[0]
    if n <= chunk:
        return _intersect(o, d, P, tmax)
    ts, ids = [], []
    for a in range(0, n, chunk):
        oc = o if o.shape[0] == 1 else o[a:a + chunk]
        t, i = _intersect(oc, d[a:a + chunk], P, None if tmax is None else tmax[a:a + chunk])
        ts.append(t)
        ids.append(i)
    return torch.cat(ts), torch.cat(ids)


def _normals(p: torch.Tensor, idx: torch.Tensor, P: dict[str, torch.Tensor], counts: tuple[int, int, int, int]) -> torch.Tensor:
    """Outward unit normals at hit points ``p`` (N x 3) of primitives ``idx`` (all valid)."""
    n_pl, n_sp, n_bx, n_cy = counts
    out = torch.zeros_like(p)
    start = 0
    sel = (idx >= start) & (idx < start + n_pl)
    if sel.any():
        out[sel] = P["plane_n"][idx[sel] - start]
    start += n_pl
    sel = (idx >= start) & (idx < start + n_sp)
    if sel.any():
        k = idx[sel] - start
        out[sel] = (p[sel] - P["sph_c"][k]) / P["sph_r"][k, None]
    start += n_sp
    sel = (idx >= start) & (idx < start + n_bx)
    if sel.any():
        k = idx[sel] - start
        q = p[sel] - P["box_c"][k]
        cs, sn = P["box_cos"][k], P["box_sin"][k]
        lx, ly = cs * q[:, 0] + sn * q[:, 1], cs * q[:, 1] - sn * q[:, 0]
        rel = torch.stack([lx, ly, q[:, 2]], 1) / P["box_h"][k]
        ax = rel.abs().argmax(dim=1)
        sign = torch.sign(rel.gather(1, ax[:, None]))[:, 0]
        nl = torch.zeros_like(rel)
        nl[torch.arange(len(ax)), ax] = sign
        out[sel] = torch.stack([cs * nl[:, 0] - sn * nl[:, 1], sn * nl[:, 0] + cs * nl[:, 1], nl[:, 2]], 1)
    start += n_bx
    sel = (idx >= start) & (idx < start + n_cy)
    if sel.any():
        k = idx[sel] - start
        q = p[sel] - P["cyl_c"][k]
        rho = torch.sqrt(q[:, 0] ** 2 + q[:, 1] ** 2)
        side_err = (rho - P["cyl_r"][k]).abs()
        bottom_err, top_err = q[:, 2].abs(), (q[:, 2] - P["cyl_h"][k]).abs()
        nrm = torch.stack([q[:, 0], q[:, 1], torch.zeros_like(rho)], 1) / rho.clamp(min=1e-9)[:, None]
        cap = torch.stack([torch.zeros_like(rho), torch.zeros_like(rho), torch.where(top_err < bottom_err, 1.0, -1.0)], 1)
        use_cap = (torch.minimum(bottom_err, top_err) < side_err)[:, None]
        out[sel] = torch.where(use_cap, cap.to(p.dtype), nrm)
    return out


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
        keep = _shadow_keep(bs_c, bs_r, lo, hi, scene)
        if not keep.any():
            vis[sel] = 1.0
            continue
        P = _torch_primitives(scene, eye, origin.dtype, keep)
        _, blocked = _intersect_chunked(o, ldir[sel], P, tmax=dist[sel])
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
    P = _torch_primitives(scene, eye, dtype)
    bs_c, bs_r = _bounding_spheres(scene)
    P_view = _torch_primitives(scene, eye, dtype, _frustum_keep(bs_c, bs_r, R, eye, K))
    counts = (len(scene.planes), len(scene.spheres), len(scene.boxes), len(scene.cylinders))
    W, H = K.width, K.height
    u = (np.arange(W, dtype=np.float64) - K.cx) / K.fx
    v = (np.arange(H, dtype=np.float64) - K.cy) / K.fy
    # world directions R @ (u, v, 1) computed in float64, then float32
    dirs = (u[None, :, None] * R[:, 0] + v[:, None, None] * R[:, 1] + R[:, 2]).reshape(-1, 3)
    d = torch.from_numpy(dirs).to(dtype)
    o = torch.zeros(1, 3, dtype=dtype)
    t, idx = _intersect_chunked(o, d, P_view)
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
        nrm = _normals(p, ih, P, counts)
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
