"""Analytic ray casting for :class:`metricanything.data.scene.Scene` in plain torch.

Primitives are translated so that a chosen centre (the camera) is the origin, which keeps float32 accurate;
:func:`intersect` gives the first hit (or, with ``tmax``, any hit for shadow rays) of every ray, and the
culling helpers keep only the primitives that can matter for a view frustum or a shadow tile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from metricanything.camera import Intrinsics

if TYPE_CHECKING:
    from metricanything.data.scene import Scene

_EPS = 1e-4


def bounding_spheres(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Bounding sphere (centre M x 3, radius M) of every primitive in global order; planes get radius inf."""
    c = [scene.planes[:, :3], scene.spheres[:, :3], scene.boxes[:, :3],
         scene.cylinders[:, :3] + np.stack([0 * scene.cylinders[:, 0], 0 * scene.cylinders[:, 0],
                                            scene.cylinders[:, 4] / 2], axis=1)]
    r = [np.full(len(scene.planes), np.inf), scene.spheres[:, 3], np.linalg.norm(scene.boxes[:, 3:6], axis=1),
         np.hypot(scene.cylinders[:, 3], scene.cylinders[:, 4] / 2)]
    return np.concatenate(c).reshape(-1, 3), np.concatenate(r)


def frustum_keep(centres: np.ndarray, radii: np.ndarray, R: np.ndarray, eye: np.ndarray, K: Intrinsics) -> np.ndarray:
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


def shadow_keep(centres: np.ndarray, radii: np.ndarray, lo: np.ndarray, hi: np.ndarray, scene: Scene) -> np.ndarray:
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


def torch_primitives(
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


def _slab_hit(slabs: list[tuple[torch.Tensor, ...]], eps: float, inf: torch.Tensor) -> torch.Tensor:
    """Slab test of rays against boxes, per axis ``(lower bound, upper bound, ray origin, ray direction)`` in the
    box frame: the first ``t > eps`` on a box (entry, or exit for a ray starting inside), ``inf`` on a miss."""
    tmin, tfar = None, None
    for lo, hi, oc, dc in slabs:
        inv = 1.0 / dc
        ta = (lo - oc) * inv
        tb = (hi - oc) * inv
        near, far = torch.minimum(ta, tb), torch.maximum(ta, tb)
        tmin = near if tmin is None else torch.maximum(tmin, near)
        tfar = far if tfar is None else torch.minimum(tfar, far)
    hit = (tfar >= tmin) & (tfar > eps)
    return torch.where(hit, torch.where(tmin > eps, tmin, tfar), inf)


def intersect(o: torch.Tensor, d: torch.Tensor, P: dict[str, torch.Tensor],
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
        axes = ((0, ox, dx), (1, oy, dy), (2, oz, dz))
        ts.append(_slab_hit([(lo[:, ax], hi[:, ax], oc, dc) for ax, oc, dc in axes], eps, inf))
    # boxes with yaw: rotate rays into the box frame, slab test
    if len(P["rbox_h"]):
        c, h, cs, sn = P["rbox_c"], P["rbox_h"], P["rbox_cos"], P["rbox_sin"]
        qx, qy, qz = ox - c[:, 0], oy - c[:, 1], oz - c[:, 2]
        lox, loy = cs * qx + sn * qy, cs * qy - sn * qx
        ldx, ldy = cs * dx + sn * dy, cs * dy - sn * dx
        local = ((lox, ldx, h[:, 0]), (loy, ldy, h[:, 1]), (qz, dz, h[:, 2]))
        ts.append(_slab_hit([(-hh, hh, lo_, ld) for lo_, ld, hh in local], eps, inf))
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


def intersect_chunked(o: torch.Tensor, d: torch.Tensor, P: dict[str, torch.Tensor],
                       tmax: torch.Tensor | None = None, chunk: int = 1 << 17) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`intersect` over chunks of rays (bounded memory for large images; identical results)."""
    n = d.shape[0]
    if n <= chunk:
        return intersect(o, d, P, tmax)
    ts, ids = [], []
    for a in range(0, n, chunk):
        oc = o if o.shape[0] == 1 else o[a:a + chunk]
        t, i = intersect(oc, d[a:a + chunk], P, None if tmax is None else tmax[a:a + chunk])
        ts.append(t)
        ids.append(i)
    return torch.cat(ts), torch.cat(ids)


def surface_normals(p: torch.Tensor, idx: torch.Tensor, P: dict[str, torch.Tensor], counts: tuple[int, int, int, int]) -> torch.Tensor:
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
