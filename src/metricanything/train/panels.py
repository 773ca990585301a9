"""Image panels for TensorBoard and ``<run>/panels/``: RGB | prompt | prediction | GT | error."""

from __future__ import annotations

import numpy as np
import torch

from metricanything.vis import colorize_depth, colorize_error, depth_limits, legend_strip, spread_points


def _to_np(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def make_panel(
    image: torch.Tensor | np.ndarray,
    prompt_mask: torch.Tensor | np.ndarray | None,
    pred: torch.Tensor | np.ndarray,
    gt: torch.Tensor | np.ndarray,
    valid: torch.Tensor | np.ndarray,
    max_rel_error: float = 0.5,
) -> np.ndarray:
    """uint8 (H + legend) x 5W x 3: RGB | prompt points (the GT depth there, grown to be visible) | prediction |
    GT | absolute relative error (0 -> black, ``max_rel_error`` and above -> pale yellow), over a legend strip
    (:func:`metricanything.vis.legend_strip`: the depth colour bar in metres, the error bar). Depth colours:
    :func:`metricanything.vis.colorize_depth` on the GT's range."""
    img = _to_np(image)
    if img.ndim == 3 and img.shape[0] == 3:
        img = img.transpose(1, 2, 0)
    img = (np.clip(img, 0, 1) * 255).astype(np.uint8) if img.dtype != np.uint8 else img
    pred = _to_np(pred).reshape(img.shape[:2])
    gt = _to_np(gt).reshape(img.shape[:2])
    valid = _to_np(valid).reshape(img.shape[:2]).astype(bool)
    lo, hi = depth_limits(gt, valid, (2, 98))
    pred_valid = np.isfinite(pred) & (pred > 0)
    prompt_rgb = np.zeros_like(img)
    if prompt_mask is not None:
        m = _to_np(prompt_mask).reshape(img.shape[:2]).astype(bool) & valid
        prompt_rgb = colorize_depth(*spread_points(gt, m), lo, hi)
    err = np.abs(pred - gt) / np.maximum(gt, 1e-9)
    err_rgb = colorize_error(err, valid & pred_valid, max_rel_error)
    row = np.concatenate([img, prompt_rgb, colorize_depth(pred, pred_valid, lo, hi), colorize_depth(gt, valid, lo, hi),
                          err_rgb], axis=1)  # fmt: skip
    return np.concatenate([row, legend_strip(row.shape[1], img.shape[1], lo, hi, max_rel_error)], axis=0)
