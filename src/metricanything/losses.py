"""Training losses: Robust MAE (teacher), gradient matching, distance-balanced inverse depth (student).

Shapes: ``pred``, ``target`` and ``valid`` are B x 1 x H x W or B x H x W (same shape). ``valid`` is a bool
mask; values of ``target`` under ``valid == False`` are never read (they are replaced before any
arithmetic, so NaN/inf/0 fill values cannot leak into the loss or its gradient).

``input_space`` says what ``pred`` and ``target`` hold: ``"depth"`` (metres) or ``"inverse"`` (an inverse
depth such as the student's canonical inverse depth C = f_px / (W * depth)). ``space`` says where the
residual is measured. All reductions are "per image, then mean over images"; an image without a single
valid pixel contributes nothing (it is skipped, not counted as zero); if no image in the batch has a valid
pixel the loss is a zero that still carries the graph (so DDP / backward work unchanged).

Formulas are in ``docs/design.md``.
"""

from __future__ import annotations

import math

import torch

from metricanything.errors import InvalidInputError

SPACES = ("inverse", "log", "depth")
INPUT_SPACES = ("depth", "inverse")
#: Values are clamped to at least this before a reciprocal or a logarithm (guards ReLU outputs at 0).
EPS = 1e-6


def _flatten(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, ...]:
    if pred.shape != target.shape or valid.shape != pred.shape:
        raise InvalidInputError(
            f"pred {tuple(pred.shape)}, target {tuple(target.shape)} and valid {tuple(valid.shape)} must match"
        )
    if pred.ndim == 4:
        if pred.shape[1] != 1:
            raise InvalidInputError(f"expected one channel, got {tuple(pred.shape)}")
    elif pred.ndim != 3:
        raise InvalidInputError(f"expected B x 1 x H x W or B x H x W tensors, got {tuple(pred.shape)}")
    b = pred.shape[0]
    valid = valid.to(torch.bool).reshape(b, -1)
    pred = pred.reshape(b, -1).float()
    target = target.reshape(b, -1).float()
    # Neutral fill under invalid pixels: nothing from there reaches arithmetic or gradients.
    target = torch.where(valid, target, torch.ones_like(target))
    return pred, target, valid


def _to_space(x: torch.Tensor, input_space: str, space: str) -> torch.Tensor:
    """Map values stored in ``input_space`` to the residual ``space``."""
    if input_space not in INPUT_SPACES:
        raise InvalidInputError(f"input_space must be one of {INPUT_SPACES}, got {input_space!r}")
    if space not in SPACES:
        raise InvalidInputError(f"space must be one of {SPACES}, got {space!r}")
    if space == "log":
        log_x = torch.log(x.clamp_min(EPS))
        return log_x if input_space == "depth" else -log_x
    if (space == "inverse") == (input_space == "inverse"):
        return x
    return 1.0 / x.clamp_min(EPS)


def _batch_mean(per_image: torch.Tensor, has_pixels: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    if bool(has_pixels.any()):
        return per_image[has_pixels].mean()
    return anchor.sum() * 0.0


def trimmed_count(n_valid: torch.Tensor, trim: float) -> torch.Tensor:
    """Number of pixels KEPT by Robust MAE out of ``n_valid``: n - floor(trim * n + 1e-9).

    The highest floor(trim * n) residuals are dropped (the 1e-9 guards products like 0.29 * 100 that float
    arithmetic puts just below an integer). Because trim < 1, at least one pixel is kept whenever n >= 1.
    """
    n = n_valid.to(torch.float64)
    return (n - torch.floor(n * float(trim) + 1e-9)).to(torch.long)


def robust_mae(
    pred: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    trim: float = 0.2,
    space: str = "inverse",
    *,
    input_space: str = "depth",
    scale: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Robust (trimmed) mean absolute error.

    Per image, over the valid pixels V (n = |V|): r_i = |g(pred_i) - g(target_i)| with g the chosen
    ``space`` (inverse depth, log depth or depth), optionally multiplied by a per-image ``scale`` (B,)
    (e.g. f_px / W so inverse depth becomes canonical inverse depth). The floor(trim * n) largest r_i are
    dropped and the remaining ones averaged. ``reduction="mean"`` averages over images that have at least
    one valid pixel; ``"none"`` returns the B per-image values (NaN for images without valid pixels).
    """
    if not 0.0 <= trim < 1.0:
        raise InvalidInputError(f"trim must be in [0, 1), got {trim}")
    p, t, v = _flatten(pred, target, valid)
    r = (_to_space(p, input_space, space) - _to_space(t, input_space, space)).abs()
    if scale is not None:
        r = r * scale.reshape(-1, 1).to(r.dtype)
    n = v.sum(dim=1)
    keep = trimmed_count(n, trim)
    r_sorted, _ = torch.sort(torch.where(v, r, torch.full_like(r, math.inf)), dim=1)
    rank = torch.arange(r.shape[1], device=r.device).unsqueeze(0)
    kept = rank < keep.unsqueeze(1)
    total = torch.where(kept, r_sorted, torch.zeros_like(r_sorted)).sum(dim=1)
    per_image = total / keep.clamp_min(1).to(total.dtype)
    has = n > 0
    if reduction == "none":
        return torch.where(has, per_image, torch.full_like(per_image, math.nan))
    if reduction != "mean":
        raise InvalidInputError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    return _batch_mean(per_image, has, p)


def gradient_matching_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    scales: int = 4,
    space: str = "log",
    *,
    input_space: str = "depth",
) -> torch.Tensor:
    """Multi-scale gradient matching on the residual R = g(pred) - g(target).

    At scale k = 0..scales-1 the maps are subsampled with stride 2^k; the term is the sum of |R(x+1) - R(x)|
    over horizontally adjacent pairs that are both valid plus the same vertically, divided by the number of
    such pairs (per image, per scale). Per-image values are averaged over scales that had at least one pair,
    then over images that had any. In log space it is invariant to a global scale of the prediction, so it
    shapes edges and slopes without fighting the metric term.
    """
    if scales < 1:
        raise InvalidInputError(f"scales must be >= 1, got {scales}")
    if pred.ndim == 3:
        pred, target, valid = pred.unsqueeze(1), target.unsqueeze(1), valid.unsqueeze(1)
    p, t, v = _flatten(pred, target, valid)
    b, _, h, w = pred.shape
    res = (_to_space(p, input_space, space) - _to_space(t, input_space, space)).reshape(b, h, w)
    v = v.reshape(b, h, w)
    res = torch.where(v, res, torch.zeros_like(res))
    per_scale = []
    counted = []
    for k in range(scales):
        s = 2**k
        r_k, v_k = res[:, ::s, ::s], v[:, ::s, ::s]
        if r_k.shape[1] < 2 and r_k.shape[2] < 2:
            break
        mx = v_k[:, :, 1:] & v_k[:, :, :-1]
        my = v_k[:, 1:, :] & v_k[:, :-1, :]
        gx = torch.where(mx, (r_k[:, :, 1:] - r_k[:, :, :-1]).abs(), torch.zeros((), dtype=res.dtype))
        gy = torch.where(my, (r_k[:, 1:, :] - r_k[:, :-1, :]).abs(), torch.zeros((), dtype=res.dtype))
        count = mx.flatten(1).sum(1) + my.flatten(1).sum(1)
        per_scale.append((gx.flatten(1).sum(1) + gy.flatten(1).sum(1)) / count.clamp_min(1))
        counted.append(count > 0)
    values = torch.stack(per_scale, dim=1)
    has = torch.stack(counted, dim=1)
    per_image = torch.where(has, values, torch.zeros_like(values)).sum(1) / has.sum(1).clamp_min(1)
    return _batch_mean(per_image, has.any(dim=1), p)


def distance_balanced_weights(
    target: torch.Tensor,
    valid: torch.Tensor,
    n_bins: int = 8,
    *,
    input_space: str = "depth",
    depth_range: tuple[float, float] | None = None,
    balance: float = 1.0,
) -> torch.Tensor:
    """Per-pixel weights (same shape as ``target``) that give every distance band equal total weight.

    Per image, target depths d (``1/target`` if ``input_space == "inverse"``) of valid pixels are put in
    ``n_bins`` bins equally spaced in ln d between the image's min and max valid depth (or between the fixed
    ``depth_range``, with out-of-range pixels clamped into the end bins). With n_k pixels in bin k and K the
    number of NON-EMPTY bins, pixel i in bin k gets w_i = n_k^(-balance) / sum_j n_j^(1-balance) (sum over
    non-empty bins). For balance = 1 this is w_i = 1 / (K n_k): each non-empty band gets total weight 1/K
    (empty bins get nothing; their share goes equally to the others), and the weights of an image sum to 1.
    balance = 0 gives the plain per-image mean (w_i = 1/n). Invalid pixels get weight 0.
    """
    if n_bins < 1:
        raise InvalidInputError(f"n_bins must be >= 1, got {n_bins}")
    shape = target.shape
    b = shape[0]
    v = valid.to(torch.bool).reshape(b, -1)
    t = torch.where(v, target.reshape(b, -1).float(), torch.ones((), dtype=torch.float32, device=target.device))
    log_d = torch.log(t.clamp_min(EPS))
    if input_space == "inverse":
        log_d = -log_d
    elif input_space != "depth":
        raise InvalidInputError(f"input_space must be one of {INPUT_SPACES}, got {input_space!r}")
    with torch.no_grad():
        if depth_range is not None:
            lo_v, hi_v = depth_range
            if not 0 < lo_v < hi_v:
                raise InvalidInputError(f"depth_range must satisfy 0 < min < max, got {depth_range}")
            lo = torch.full((b, 1), math.log(lo_v), device=t.device)
            hi = torch.full((b, 1), math.log(hi_v), device=t.device)
        else:
            lo = torch.where(v, log_d, torch.full_like(log_d, math.inf)).amin(dim=1, keepdim=True)
            hi = torch.where(v, log_d, torch.full_like(log_d, -math.inf)).amax(dim=1, keepdim=True)
            lo = torch.where(torch.isfinite(lo), lo, torch.zeros_like(lo))
            hi = torch.where(torch.isfinite(hi), hi, torch.zeros_like(hi))
        width = (hi - lo).clamp_min(1e-12)
        idx = torch.floor((log_d - lo) / width * n_bins).clamp(0, n_bins - 1).to(torch.long)
        idx = torch.where(v, idx, torch.full_like(idx, n_bins))  # invalid -> overflow bin n_bins
        counts = torch.zeros(b, n_bins + 1, dtype=torch.float64, device=t.device)
        counts.scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float64))
        counts = counts[:, :n_bins]
        nonempty = counts > 0
        per_bin = torch.where(nonempty, counts.clamp_min(1) ** (-float(balance)), torch.zeros_like(counts))
        norm = (per_bin * counts).sum(dim=1, keepdim=True).clamp_min(1e-300)
        per_bin = torch.cat([per_bin / norm, torch.zeros(b, 1, dtype=per_bin.dtype, device=t.device)], dim=1)
        w = torch.gather(per_bin, 1, idx)
    return w.to(torch.float32).reshape(shape)


def distance_balanced_inverse_depth_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    n_bins: int = 8,
    *,
    input_space: str = "depth",
    depth_range: tuple[float, float] | None = None,
    balance: float = 1.0,
    scale: torch.Tensor | None = None,
    bin_depth: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Distance-balanced L1 on inverse depth: per image sum_i w_i |1/pred_i - 1/target_i| (our interpretation).

    w are :func:`distance_balanced_weights` (sum to 1 per image, equal total per non-empty log-depth band),
    so far pixels, whose inverse-depth residuals are small and whose count is often small, are not drowned
    by the near ones. With ``input_space="inverse"`` the inputs already are (canonical) inverse depths and
    are compared directly. ``scale`` (B,) multiplies the residuals per image. ``bin_depth`` (metric depth,
    same shape) is what the bands are computed from when the inputs are not metric (e.g. canonical inverse
    depth, whose reciprocal is depth * W / f); default: the target's own depth. Mean over images with at
    least one valid pixel (``reduction="none"``: per-image values, NaN where none).
    """
    p, t, v = _flatten(pred, target, valid)
    if bin_depth is None:
        w = distance_balanced_weights(
            target, valid, n_bins, input_space=input_space, depth_range=depth_range, balance=balance
        )
    else:
        if bin_depth.shape != target.shape:
            raise InvalidInputError(f"bin_depth {tuple(bin_depth.shape)} must match target {tuple(target.shape)}")
        w = distance_balanced_weights(bin_depth, valid, n_bins, depth_range=depth_range, balance=balance)
    w = w.reshape(p.shape[0], -1)
    r = (_to_space(p, input_space, "inverse") - _to_space(t, input_space, "inverse")).abs()
    if scale is not None:
        r = r * scale.reshape(-1, 1).to(r.dtype)
    per_image = torch.where(v, w * r, torch.zeros_like(r)).sum(dim=1)
    has = v.any(dim=1)
    if reduction == "none":
        return torch.where(has, per_image, torch.full_like(per_image, math.nan))
    if reduction != "mean":
        raise InvalidInputError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    return _batch_mean(per_image, has, p)


__all__ = [
    "robust_mae",
    "trimmed_count",
    "gradient_matching_loss",
    "distance_balanced_weights",
    "distance_balanced_inverse_depth_loss",
]
