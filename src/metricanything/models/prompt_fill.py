"""Dense reference fills of a sparse prompt, used by the teacher as the depth it corrects.

:func:`knn_plane_fill` is a parameter-free interpolator (no learning). Every pixel gets a local plane fitted to
its ``k`` nearest prompt points plus the corners of the Delaunay triangle that contains it, and the plane is
fitted in **inverse depth**. A planar surface has inverse depth that is affine in the pixel coordinates (for
z = 1/(a u + b v + c)), so on each plane the fill is exact (up to the ridge, step 3). On the procedural scenes it
beats Delaunay-linear interpolation: see ``docs/design.md`` for the figures.

The triangle corners matter for scan-line prompts (LiDAR rows): there a pixel's k nearest points all lie on one
line, so alone they fix no slope across it, and the fill would hold the nearer line's value up to half-way to
the next line. The triangle has a corner on the other side, so the plane spans the gap.

Definition (per sample, every prompt point p_i = (u_i, v_i) with relative log depth l_i; q_i = exp(-l_i)):

1. Candidates: the 3k points nearest to the centre of the pixel's ``cell`` x ``cell`` block. Then the pixel's k
   nearest points among them (distance ties go to the lower pixel index). ``cell=1`` is the exact search.
   Neighbours: those k, plus the corners of the triangle of the points' Delaunay triangulation (SciPy/Qhull)
   that contains the pixel shifted by (2^-10, 0.618 * 2^-10) px (so no pixel lies on an edge), where they are
   not among the k. None outside the convex hull, with <= k points, or when all points are collinear.
2. Let r be the distance to the k-th nearest (at least 1 px; the corners do not widen it). Coordinates
   d_i = (p_i - x) / r; weights w_i = 1 / (|d_i|^2 + 1e-3)^(power / 2) for every neighbour.
2b. Guided (optional, ``guide`` = the image): each weight is multiplied by exp(-|g(x) - g(p_i)|^2 / (2 sigma^2))
   + 1e-3, g the guide (RGB in [0, 1]) at the pixel and at the point, sigma = ``guide_sigma`` (0.1). So points on
   the other side of a colour edge count ~1000x less, and the plane follows the surface the pixel's colour belongs
   to (joint-bilateral weighting). The floor keeps a fit where every neighbour differs in colour. Samples with
   at most k points are not guided: there every point is every pixel's neighbour, and colour weights would
   split the image by the colours of a handful of points (5 points on synthetic_outdoor: AbsRel 0.4601 guided,
   0.4441 unguided).
3. Solve a weighted least-squares fit q ~ a + b du + c dv, with ridge ``ridge`` on (b, c). Cramer's rule on the
   3 x 3 normal equations (sums and solve in float64); if they are singular (|det| <= 1e-12 times the product of
   the diagonal), a is the weighted mean of q and b = c = 0. The ridge shrinks a slope that only a far corner
   supports (by about ``ridge`` (|d|/r)^2): a corner 5 r away moves a plane's fill by ~1e-4 relative.
4. The fill at x is a, clamped to [min q_i, max q_i] of the neighbours; it is returned as -ln a. Prompted
   pixels return their own value exactly. Samples without points return 0.
5. Optionally, the misfit at x: max_i |q_i - (a + b du_i + c dv_i)| / q_i over the neighbours (the unclamped
   plane), at most ln(max q_i / min q_i): how far, in relative depth, the local prompt is from being one plane
   (0 where it is planar), never more than its own log-depth range.

Every prompt point is used, at any resolution. Cost: the block candidates come from a k-d tree of the sample's
points (SciPy's ``cKDTree``: O(P log P) to build, O(log P) per block), the triangles from one Delaunay
triangulation (O(P log P), O(P) memory) walked pixel by pixel in row order, and the per-pixel step runs over bands
of rows of at most ``chunk`` pixel x (candidate + 3 x neighbour) entries. So memory is O(P + chunk) and time
O(P log P + H W k), with no pixel x point distance matrix. Each sample is filled on its own (batch-independent).
``benchmarks/prompt_fill_scaling.py`` prints the measured seconds and memory.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import Delaunay, QhullError, cKDTree

__all__ = ["GUIDE_SIGMA", "KNN_K", "knn_plane_fill"]

#: Colour scale of the guided fill (RGB in [0, 1]) and the floor of its colour weight: see the module doc, step 2b.
GUIDE_SIGMA = 0.1
GUIDE_FLOOR = 1e-3

#: Neighbours per pixel (measured best of 6/8/12/16 on the held-out renders: docs/design.md).
KNN_K = 8


def _block_candidates(tree: cKDTree, n_cand: int, b0: int, b1: int, w: int, h: int, cell: int) -> np.ndarray:
    """Indices (rows b0..b1 of blocks x blocks per row x n_cand) of the points nearest to each block centre."""
    wc = -(-w // cell)
    cu = np.minimum(np.arange(wc, dtype=np.float64) * cell + 0.5 * (cell - 1), w - 1)
    cv = np.minimum(np.arange(b0, b1, dtype=np.float64) * cell + 0.5 * (cell - 1), h - 1)
    qv, qu = np.meshgrid(cv, cu, indexing="ij")
    workers = max(1, torch.get_num_threads())
    _, idx = tree.query(np.stack([qu.ravel(), qv.ravel()], axis=1), k=n_cand, workers=workers)
    return np.asarray(idx, dtype=np.int64).reshape(b1 - b0, wc, n_cand)


#: Shift of the pixels for the triangle look-up: a pixel on a triangle's edge (pixels and points are on the same
#: integer grid) would otherwise get either triangle, depending on SciPy's walk; shifted, it lies in exactly one.
_TIE_SHIFT = np.array([2.0**-10, 2.0**-10 * 0.6180339887498949])


def _triangulate(pts: np.ndarray) -> Delaunay | None:
    """Delaunay triangulation of the prompt points (P x 2), or None where there is none (< 3 points, collinear)."""
    if len(pts) < 3:
        return None
    try:
        return Delaunay(pts)
    except (QhullError, ValueError):  # all points on one line: no triangle has an area
        return None


def _pixel_corners(tri: Delaunay | None, r0: int, r1: int, w: int) -> np.ndarray:
    """Indices (rows r0..r1 x w x 3) of the corners of the Delaunay triangle that contains each pixel; -1 outside
    the points' convex hull or without a triangulation."""
    if tri is None:
        return np.full((r1 - r0, w, 3), -1, dtype=np.int64)
    qv, qu = np.meshgrid(np.arange(r0, r1, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    # row-major queries: SciPy's walk starts from the previous pixel's triangle, so each look-up is short
    simplex = tri.find_simplex(np.stack([qu.ravel(), qv.ravel()], axis=1) + _TIE_SHIFT)
    corners = np.where(simplex[:, None] >= 0, tri.simplices[np.maximum(simplex, 0)], -1)
    return corners.astype(np.int64).reshape(r1 - r0, w, 3)


def _fill_one(value: torch.Tensor, mask: torch.Tensor, k: int, power: float, ridge: float, cell: int,
              chunk: int, guide: torch.Tensor | None = None, sigma: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """(fill, misfit), both H x W, of one sample; ``value``/``mask`` are H x W, ``guide`` H x W x C (or None)."""
    h, w = value.shape
    dev = value.device
    pix = torch.nonzero(mask.reshape(-1)).squeeze(1)  # ascending pixel index = the tie-break order
    n_pts = int(pix.numel())
    if n_pts == 0:
        zero = torch.zeros(h, w, device=dev, dtype=torch.float32)
        return zero, zero
    pts_u, pts_v = (pix % w).to(torch.int32), torch.div(pix, w, rounding_mode="floor").to(torch.int32)
    q_pts = torch.exp(-value.reshape(-1)[pix].double())
    kk = min(k, n_pts)
    n_cand = min(3 * kk, n_pts)
    pts_np = torch.stack([pts_u, pts_v], dim=1).cpu().numpy().astype(np.float64)
    tree = cKDTree(pts_np)
    if n_pts <= kk:  # every point is every pixel's neighbour: no local evidence for colour weights (step 2b)
        guide = None
    guide_pts = None if guide is None else guide.reshape(h * w, -1)[pix]  # P x C: the guide at the points
    tri = _triangulate(pts_np) if n_pts > kk else None  # with every point a neighbour, corners add nothing
    # exact integer distances + the point's rank in a single int64 key: ties go to the lower pixel index
    shift = max(1, n_pts.bit_length())
    if h * h + w * w >= 2**31 or (h * h + w * w).bit_length() + shift > 62:
        raise ValueError(f"knn_plane_fill: image {h}x{w} with {n_pts} prompt points is too large for integer keys")
    out = torch.empty(h, w, device=dev, dtype=torch.float32)
    misfit = torch.empty(h, w, device=dev, dtype=torch.float32)
    wc = -(-w // cell)
    # pixel (u, v) = block (bu, bv) * cell + (ou, ov): distances broadcast over the cell x cell pixels of each block
    gu = (torch.arange(wc, device=dev, dtype=torch.int32)[:, None] * cell
          + torch.arange(cell, device=dev, dtype=torch.int32)).view(1, 1, wc, cell, 1)
    # rows per band, a multiple of cell: a pixel holds 3k candidates and k + 3 neighbours (float64, ~3x the bytes)
    # (+ the guide's C channels per neighbour when guided)
    per_px = 3 * k + 3 * (k + 3) + (0 if guide is None else guide.shape[-1] * (k + 3))
    step = max(cell, (max(1, chunk // (w * per_px)) // cell) * cell)
    for r0 in range(0, h, step):
        r1 = min(h, r0 + step)
        b0, b1 = r0 // cell, -(-r1 // cell)
        cand = torch.from_numpy(_block_candidates(tree, n_cand, b0, b1, w, h, cell)).to(dev)  # hb x wc x C
        hb = b1 - b0
        cand = cand.view(hb, 1, wc, 1, n_cand)
        gv = torch.arange(b0 * cell, b1 * cell, device=dev, dtype=torch.int32).view(hb, cell, 1, 1, 1)
        du = pts_u[cand] - gu  # hb x 1 x wc x cell x C
        dv = pts_v[cand] - gv  # hb x cell x wc x 1 x C
        key = (du.square() + dv.square()).long().bitwise_left_shift_(shift).bitwise_or_(cand)
        ik = torch.topk(key, kk, dim=-1, largest=False).indices  # hb x cell x wc x cell x k
        del key
        nb = torch.gather(cand.expand(hb, cell, wc, cell, n_cand), -1, ik)
        # + the corners of the pixel's Delaunay triangle that are not among its k nearest: they surround the pixel,
        # so the plane is pinned across a scan line's direction too (a stand-in neighbour at weight 0 else)
        corners = torch.from_numpy(_pixel_corners(tri, b0 * cell, b1 * cell, wc * cell)).to(dev)
        corners = corners.view(hb, cell, wc, cell, 3)
        extra = (corners >= 0) & ~(corners[..., :, None] == nb[..., None, :]).any(-1)
        nb = torch.cat([nb, torch.where(extra, corners, nb[..., :1])], -1)  # hb x cell x wc x cell x (k + 3)
        del corners
        du = pts_u[nb] - gu
        dv = pts_v[nb] - gv
        dk = (du * du + dv * dv).float()  # squared distances (weights only: float32 suffices)
        r2 = dk[..., :kk].amax(-1, keepdim=True).clamp_min(1.0)  # k-th nearest distance, squared
        wgt = (dk / r2 + 1e-3) ** (-0.5 * power)
        wgt = torch.cat([wgt[..., :kk], torch.where(extra, wgt[..., kk:], 0.0)], -1).double()
        del extra, dk
        if guide is not None:  # step 2b: neighbours whose guide value differs from the pixel's count less
            gp = torch.zeros(hb * cell, wc * cell, guide.shape[-1], device=dev, dtype=torch.float32)
            gp[: r1 - r0, :w] = guide[r0:r1]
            diff = gp.view(hb, cell, wc, cell, 1, -1) - guide_pts[nb]
            wgt = wgt * (torch.exp(diff.square().sum(-1) / (-2.0 * sigma * sigma)) + GUIDE_FLOOR).double()
            del gp, diff
        # the weighted sums and the 3 x 3 solve in float64: they cancel badly in float32 when the points are nearly
        # collinear (any positive weights keep a plane exact, so those may be float32)
        scale = torch.sqrt(r2).double()
        x, y = du / scale, dv / scale
        q = q_pts[nb]
        wx, wy = wgt * x, wgt * y
        s0, sx, sy = wgt.sum(-1), wx.sum(-1), wy.sum(-1)
        sxx, sxy, syy = (wx * x).sum(-1) + ridge, (wx * y).sum(-1), (wy * y).sum(-1) + ridge
        t0, tx, ty = (wgt * q).sum(-1), (wx * q).sum(-1), (wy * q).sum(-1)
        del wx, wy
        # Cramer's rule, M = [[s0, sx, sy], [sx, sxx, sxy], [sy, sxy, syy]]: coefficient j = det(M with column j
        # replaced by t) / det(M); singular (relative to the diagonal, Hadamard's bound) -> the weighted mean
        det = s0 * (sxx * syy - sxy * sxy) - sx * (sx * syy - sxy * sy) + sy * (sx * sxy - sxx * sy)
        safe = det.abs() > 1e-12 * s0 * sxx * syy
        dsafe = torch.where(safe, det, torch.ones_like(det))
        ca = t0 * (sxx * syy - sxy * sxy) - sx * (tx * syy - sxy * ty) + sy * (tx * sxy - sxx * ty)
        cb = s0 * (tx * syy - sxy * ty) - t0 * (sx * syy - sxy * sy) + sy * (sx * ty - tx * sy)
        cc = s0 * (sxx * ty - tx * sxy) - sx * (sx * ty - tx * sy) + t0 * (sx * sxy - sxx * sy)
        a = torch.where(safe, ca / dsafe, t0 / s0.clamp_min(1e-12))
        cb = torch.where(safe, cb / dsafe, torch.zeros_like(cb))
        cc = torch.where(safe, cc / dsafe, torch.zeros_like(cc))
        qmin, qmax = q.amin(-1), q.amax(-1)
        # misfit: the neighbours' largest relative distance from the (unclamped) plane, at most their log range
        plane = a[..., None] + cb[..., None] * x + cc[..., None] * y
        mis = torch.minimum(((q - plane).abs() / q).amax(-1), torch.log(qmax / qmin))
        a = torch.minimum(torch.maximum(a, qmin), qmax)
        band = slice(0, r1 - r0), slice(0, w)  # drop the padding of partial blocks
        out[r0:r1] = (-torch.log(a.clamp_min(1e-12))).float().reshape(hb * cell, wc * cell)[band]
        misfit[r0:r1] = mis.float().reshape(hb * cell, wc * cell)[band]
    return out, misfit


@torch.no_grad()
def knn_plane_fill(
    value: torch.Tensor,
    mask: torch.Tensor,
    k: int = KNN_K,
    power: float = 4.0,
    ridge: float = 1e-4,
    cell: int = 4,
    chunk: int = 1 << 20,
    return_misfit: bool = False,
    guide: torch.Tensor | None = None,
    guide_sigma: float = GUIDE_SIGMA,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Dense relative log depth (B x 1 x H x W) from a sparse one (``value`` where ``mask``); see the module doc.

    Uses every prompt point. ``cell`` is the block size of the candidate search (1 = exact k nearest);
    ``chunk`` bounds the pixel x (candidate + 3 x neighbour) entries held at once (memory only, not the result).
    With ``return_misfit`` also returns the misfit (B x 1 x H x W, step 5 of the module doc; 0 for samples
    without points): how far the pixel's neighbours (step 1) are from one plane in inverse depth.
    ``guide`` (B x C x H x W, e.g. the RGB image in [0, 1]) makes the fit edge-aware (step 2b of the module doc)
    with colour scale ``guide_sigma``; ``None`` is the unguided fill.
    """
    if value.ndim != 4 or value.shape[1] != 1 or mask.shape != value.shape:
        raise ValueError(f"knn_plane_fill needs B x 1 x H x W value and mask, got {tuple(value.shape)}, "
                         f"{tuple(mask.shape)}")
    if k < 1 or cell < 1 or chunk < 1:
        raise ValueError(f"knn_plane_fill needs k, cell, chunk >= 1, got {k}, {cell}, {chunk}")
    mask = mask.to(torch.bool)
    if guide is not None:
        if guide.ndim != 4 or guide.shape[0] != value.shape[0] or guide.shape[-2:] != value.shape[-2:]:
            raise ValueError(f"knn_plane_fill: guide must be B x C x H x W matching the value "
                             f"{tuple(value.shape)}, got {tuple(guide.shape)}")
        if not guide_sigma > 0:
            raise ValueError(f"knn_plane_fill needs guide_sigma > 0, got {guide_sigma}")
        guide = guide.to(device=value.device, dtype=torch.float32).permute(0, 2, 3, 1)
    if value.shape[0] == 0:
        empty = torch.zeros(value.shape, device=value.device, dtype=torch.float32)
        return (empty, empty.clone()) if return_misfit else empty
    fills, misfits = zip(*(_fill_one(value[i, 0], mask[i, 0], k, power, ridge, cell, chunk,
                                     None if guide is None else guide[i], guide_sigma)
                           for i in range(value.shape[0])), strict=True)
    out = torch.where(mask, value.float(), torch.stack(fills)[:, None])
    return (out, torch.stack(misfits)[:, None]) if return_misfit else out
