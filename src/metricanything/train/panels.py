"""Image panels for TensorBoard and ``<run>/panels/``: RGB | prompt | prediction | GT | error."""

from __future__ import annotations

import cv2
import numpy as np
import torch


def _to_np(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def colorize_depth(depth: np.ndarray, valid: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Inverse depth mapped linearly between 1/hi and 1/lo onto TURBO; invalid pixels black. H x W x 3 RGB."""
    inv = np.where(valid & np.isfinite(depth) & (depth > 0), 1.0 / np.maximum(depth, 1e-9), 0.0)
    a, b = 1.0 / hi, 1.0 / lo
    t = np.clip((inv - a) / max(b - a, 1e-12), 0.0, 1.0)
    bgr = cv2.applyColorMap((t * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    rgb = bgr[..., ::-1].copy()
    rgb[~valid] = 0
    return rgb


def make_panel(
    image: torch.Tensor | np.ndarray,
    prompt_mask: torch.Tensor | np.ndarray | None,
    pred: torch.Tensor | np.ndarray,
    gt: torch.Tensor | np.ndarray,
    valid: torch.Tensor | np.ndarray,
    max_rel_error: float = 0.5,
) -> np.ndarray:
    """One row, uint8 H x 5W x 3: RGB | prompt points (coloured like the GT, dilated) | prediction | GT |
    absolute relative error (0 -> black, ``max_rel_error`` and above -> white; INFERNO)."""
    img = _to_np(image)
    if img.ndim == 3 and img.shape[0] == 3:
        img = img.transpose(1, 2, 0)
    img = (np.clip(img, 0, 1) * 255).astype(np.uint8) if img.dtype != np.uint8 else img
    pred = _to_np(pred).reshape(img.shape[:2])
    gt = _to_np(gt).reshape(img.shape[:2])
    valid = _to_np(valid).reshape(img.shape[:2]).astype(bool)
    g = gt[valid]
    lo, hi = (float(np.percentile(g, 2)), float(np.percentile(g, 98))) if g.size else (0.5, 10.0)
    if hi <= lo:
        hi = lo * 1.5 + 1e-6
    pred_valid = np.isfinite(pred) & (pred > 0)
    pred_rgb = colorize_depth(pred, pred_valid, lo, hi)
    gt_rgb = colorize_depth(gt, valid, lo, hi)
    prompt_rgb = np.zeros_like(img)
    if prompt_mask is not None:
        m = _to_np(prompt_mask).reshape(img.shape[:2]).astype(bool) & valid
        if m.any():
            grown = cv2.dilate(m.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            # each dilated pixel takes the colour of its nearest prompt point (the GT colour there)
            dist_src = (~m).astype(np.uint8)
            _, labels = cv2.distanceTransformWithLabels(dist_src, cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL)
            ys, xs = np.nonzero(m)
            lut = np.zeros((labels.max() + 1, 3), np.uint8)
            lut[labels[ys, xs]] = gt_rgb[ys, xs]
            prompt_rgb[grown] = lut[labels[grown]]
    err = np.where(valid & pred_valid, np.abs(pred - gt) / np.maximum(gt, 1e-9), 0.0)
    t = np.clip(err / max_rel_error, 0, 1)
    err_rgb = cv2.applyColorMap((t * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[..., ::-1].copy()
    err_rgb[~valid] = 0
    return np.concatenate([img, prompt_rgb, pred_rgb, gt_rgb, err_rgb], axis=1)
