"""Dense reference fills of a sparse prompt, used by the teacher as the depth it corrects.

:func:`knn_plane_fill` is a parameter-free interpolator (no learning). Every pixel gets a local plane fitted to
its ``k`` nearest prompt points, and the plane is fitted in **inverse depth**. A planar surface has inverse depth
that is affine in the pixel coordinates (for z = 1/(a u + b v + c)), so on each plane the fill is exact. On the
procedural scenes it beats Delaunay-linear interpolation: see ``docs/design.md`` for the figures.

Definition (per sample, prompt points p_i = (u_i, v_i) with relative log depth l_i; q_i = exp(-l_i)):

1. Keep at most ``max_points`` points. When there are more, a fixed quasi-random subset is taken (a golden-ratio
   sequence over the pixel index), so the result is deterministic.
2. For each pixel x, take its k nearest points. Let r be the distance to the k-th one (at least 1 px).
   Coordinates d_i = (p_i - x) / r; weights w_i = 1 / (|d_i|^2 + 1e-3)^(power / 2).
3. Solve a weighted least-squares fit q ~ a + b du + c dv, with ridge ``ridge`` on (b, c). Cramer's rule on the
   3 x 3 normal equations.
4. The fill at x is a, clamped to [min q_i, max q_i] of the k neighbours; it is returned as -ln a. Prompted
   pixels return their own value exactly. Samples without points return 0.

Neighbour search: the 3k points nearest to each 4 x 4 block centre are the candidates of the block's pixels, and
rows are processed in chunks, so memory stays at about (rows x W x 3k) floats. No full pixel x point distance
matrix is built.
"""

from __future__ import annotations

import math

import torch

__all__ = ["KNN_K", "KNN_MAX_POINTS", "knn_plane_fill"]

#: Neighbours per pixel (measured best of 6/8/12/16 on the held-out renders: docs/design.md).
KNN_K = 8
#: Most prompt points used for the fit (a fixed subset beyond that; prompted pixels stay exact).
KNN_MAX_POINTS = 1024
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def _select_points(mask_flat: torch.Tensor, max_points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices B x P, valid B x P) of up to ``max_points`` prompted pixels per sample.

    P is the largest point count in the batch (capped): a data-dependent size, so this runs in eager mode only.
    """
    b, n = mask_flat.shape
    p = max(1, min(max_points, n, int(mask_flat.sum(dim=1).max())))
    idx = torch.arange(n, device=mask_flat.device, dtype=torch.float64)
    tie = torch.frac(idx * _GOLDEN).to(torch.float32)  # distinct in [0, 1): a deterministic spread subset
    score = torch.where(mask_flat, 1.0 + tie, torch.zeros_like(tie).expand(b, n))
    top, sel = torch.topk(score, p, dim=1)
    return sel, top > 0


def _candidates(pts_u: torch.Tensor, pts_v: torch.Tensor, ok: torch.Tensor, h: int, w: int, cell: int,
                n_cand: int) -> torch.Tensor:
    """Indices (B x h x w x n_cand) of the points nearest to each pixel's ``cell`` x ``cell`` block centre.

    The exact k nearest of a pixel are then searched among its block's candidates only: with n_cand = 3k and
    blocks smaller than the point spacing they almost always include them (the fill is a local fit, so a rare
    miss changes it little), at a fraction of the cost of a full pixel x point distance matrix.
    """
    hc, wc = -(-h // cell), -(-w // cell)
    cu = (torch.arange(wc, device=pts_u.device, dtype=torch.float32) * cell + 0.5 * (cell - 1)).clamp(max=w - 1)
    cv = (torch.arange(hc, device=pts_u.device, dtype=torch.float32) * cell + 0.5 * (cell - 1)).clamp(max=h - 1)
    du = pts_u[:, None, None, :] - cu[None, None, :, None]
    dv = pts_v[:, None, None, :] - cv[None, :, None, None]
    d2 = torch.where(ok[:, None, None, :], du * du + dv * dv, torch.full_like(du, 1e12))
    idx = torch.topk(d2, min(n_cand, d2.shape[-1]), dim=-1, largest=False).indices  # B x hc x wc x n
    idx = idx.repeat_interleave(cell, dim=1).repeat_interleave(cell, dim=2)
    return idx[:, :h, :w]


@torch.no_grad()
def knn_plane_fill(
    value: torch.Tensor,
    mask: torch.Tensor,
    k: int = KNN_K,
    power: float = 4.0,
    ridge: float = 1e-4,
    max_points: int = KNN_MAX_POINTS,
    cell: int = 4,
    chunk_rows: int = 64,
) -> torch.Tensor:
    """Dense relative log depth (B x 1 x H x W) from a sparse one (``value`` where ``mask``); see the module doc.

    Neighbour search: candidates per ``cell`` x ``cell`` block (3k nearest to the block centre), then the k
    nearest of each pixel among them; ``cell=1`` is the exact search.
    """
    b, _, h, w = value.shape
    dev = value.device
    value = value.float()
    mask = mask.to(torch.bool)
    n = h * w
    sel, ok = _select_points(mask.reshape(b, n), max_points)  # B x P
    pts_u = (sel % w).to(torch.float32)
    pts_v = torch.div(sel, w, rounding_mode="floor").to(torch.float32)
    # relative inverse depth of the selected points (padding entries of sparser samples are never read)
    q_pts = torch.where(ok, torch.exp(-torch.gather(value.reshape(b, n), 1, sel)), torch.ones_like(ok, dtype=value.dtype))
    kk = min(k, sel.shape[1])
    out = torch.empty(b, h, w, device=dev, dtype=torch.float32)
    gu = torch.arange(w, device=dev, dtype=torch.float32)
    big = 1e12
    step = max(cell, (chunk_rows // cell) * cell)
    for r0 in range(0, h, step):
        r1 = min(h, r0 + step)
        # candidates for the blocks of rows r0..r1 (block centres relative to the chunk: shift the points)
        cand = _candidates(pts_u, pts_v - r0, ok, r1 - r0, w, cell, 3 * kk if cell > 1 else sel.shape[1])
        flat = cand.reshape(b, -1)  # B x (rows * w * n)
        cu = torch.gather(pts_u, 1, flat).view_as(cand)
        cv = torch.gather(pts_v, 1, flat).view_as(cand)
        cok = torch.gather(ok, 1, flat).view_as(cand)
        cq = torch.gather(q_pts, 1, flat).view_as(cand)
        pv = torch.arange(r0, r1, device=dev, dtype=torch.float32)
        du = cu - gu[None, None, :, None]
        dv = cv - pv[None, :, None, None]
        d2 = torch.where(cok, du * du + dv * dv, torch.full_like(du, big))
        dk, ik = torch.topk(d2, kk, dim=-1, largest=False)  # B x rows x w x k
        nb_ok = dk < big
        r2 = torch.where(nb_ok, dk, torch.zeros_like(dk)).amax(-1, keepdim=True).clamp_min(1.0)  # k-th valid
        scale = torch.sqrt(r2)
        x = torch.gather(du, -1, ik) / scale
        y = torch.gather(dv, -1, ik) / scale
        q = torch.gather(cq, -1, ik)
        wgt = torch.where(nb_ok, (dk / r2 + 1e-3) ** (-0.5 * power), torch.zeros_like(dk))
        s0, sx, sy = wgt.sum(-1), (wgt * x).sum(-1), (wgt * y).sum(-1)
        sxx, sxy, syy = (wgt * x * x).sum(-1) + ridge, (wgt * x * y).sum(-1), (wgt * y * y).sum(-1) + ridge
        t0, tx, ty = (wgt * q).sum(-1), (wgt * x * q).sum(-1), (wgt * y * q).sum(-1)
        # a = det(M with first column replaced by t) / det(M), M = [[s0, sx, sy], [sx, sxx, sxy], [sy, sxy, syy]]
        det = s0 * (sxx * syy - sxy * sxy) - sx * (sx * syy - sxy * sy) + sy * (sx * sxy - sxx * sy)
        num = t0 * (sxx * syy - sxy * sxy) - sx * (tx * syy - sxy * ty) + sy * (tx * sxy - sxx * ty)
        safe = det.abs() > 1e-12
        a = torch.where(safe, num / torch.where(safe, det, torch.ones_like(det)), t0 / s0.clamp_min(1e-12))
        qmin = torch.where(nb_ok, q, torch.full_like(q, float("inf"))).amin(-1)
        qmax = torch.where(nb_ok, q, torch.zeros_like(q)).amax(-1)
        a = torch.minimum(torch.maximum(a, qmin), qmax)
        out[:, r0:r1] = -torch.log(a.clamp_min(1e-12))
    out = out.reshape(b, 1, h, w)
    has = mask.reshape(b, -1).any(dim=1).view(b, 1, 1, 1)
    out = torch.where(has, out, torch.zeros_like(out))
    return torch.where(mask, value, out)
