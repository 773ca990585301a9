"""Procedural scenes for the renderer: analytic planes, spheres, boxes and cylinders with materials and light.

World frame: metres, **z up** (floor/ground at z = 0). :func:`make_scene` draws one scene of a family,
deterministically for a seeded generator:

* ``indoor``: a convex room (floor, ceiling, four walls as planes; 3-6.5 m x 3-6.5 m x 2.5-3 m) with
  furniture-like boxes, cylinders and spheres and a point light; every pixel is valid, depth in [0.5, 10] m.
* ``outdoor``: a street canyon (ground slab, rows of buildings on both sides, a closing facade 35-65 m ahead,
  parked cars, poles, trees) lit by a sun with shadows; sky pixels are invalid, depth up to 80 m.

Ray casting against a scene lives in :mod:`metricanything.data.raycast`, images in :mod:`metricanything.data.render`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from metricanything.data.raycast import intersect_chunked, torch_primitives
from metricanything.errors import InvalidInputError

FAMILIES: tuple[str, ...] = ("indoor", "outdoor")

#: texture codes
TEX_PLAIN, TEX_CHECKER, TEX_STRIPES, TEX_NOISE = 0, 1, 2, 3


def as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
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
        prims = torch_primitives(self, centre, torch.float64)
        t, _ = intersect_chunked(torch.from_numpy(np.ascontiguousarray(o)), torch.from_numpy(np.ascontiguousarray(d)), prims)
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
    rng = as_rng(rng)
    if family == "indoor":
        return _make_indoor(rng)
    if family == "outdoor":
        return _make_outdoor(rng)
    raise InvalidInputError(f"unknown scene family {family!r}; choose from {FAMILIES}")
