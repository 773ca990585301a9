"""How every picture of depth in the project is coloured: one colour map, one scale, one colour bar.

Depth is shown on a **logarithmic** scale between ``lo`` and ``hi`` metres with the TURBO colour map,
**near = warm** (red) and far = cold (blue); pixels without depth are black. Errors are shown with INFERNO
(0 = black). Training panels, evaluation panels, ``infer``'s ``depth_vis.png`` and the quickstart report all
call :func:`colorize_depth`, so the same depth has the same colour everywhere.

The colouring needs numpy and OpenCV only. Figures (colour bars, saved PNGs) need matplotlib, which is
imported on first use through :func:`pyplot`: it costs ~0.9 s (measured after torch on the 2-core machine:
``python -c "import torch, time; t = time.perf_counter(); import matplotlib.pyplot; print(time.perf_counter() - t)"``),
and training and the API import this module without drawing any figure.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from metricanything.atomic import atomic_path


def _lut(colormap: int) -> np.ndarray:
    """OpenCV colour map as a 256 x 3 uint8 RGB table (index 0 = the map's low end)."""
    return cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], colormap)[:, 0, ::-1].copy()


#: TURBO, index 0 = blue (far) ... 255 = red (near)
DEPTH_LUT = _lut(cv2.COLORMAP_TURBO)
#: INFERNO, index 0 = black (no error) ... 255 = pale yellow
ERROR_LUT = _lut(cv2.COLORMAP_INFERNO)


def depth_limits(depth: np.ndarray, valid: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.0)) -> tuple[float, float]:
    """Colour range of a depth map: the given percentiles of its valid, positive depth (hi >= 1.01 lo)."""
    d = np.asarray(depth)[np.asarray(valid, bool) & np.isfinite(depth) & (np.asarray(depth) > 0)]
    lo, hi = (float(x) for x in np.percentile(d, percentiles)) if d.size else (1.0, 2.0)
    return lo, max(hi, lo * 1.01)


def depth_position(depth: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Where each depth sits on the colour scale: 1 at ``lo`` (near) ... 0 at ``hi`` (far), clipped, log scale."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (math.log(hi) - np.log(np.maximum(np.asarray(depth, np.float64), 1e-12))) / (math.log(hi) - math.log(lo))
    return np.clip(np.nan_to_num(t, nan=0.0), 0.0, 1.0)


def colorize_depth(depth: np.ndarray, valid: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """uint8 H x W x 3 RGB: log depth between ``lo`` and ``hi`` (default :func:`depth_limits`) on TURBO,
    near = warm; invalid, non-finite or non-positive pixels black."""
    depth = np.asarray(depth)
    shown = np.asarray(valid, bool) & np.isfinite(depth) & (depth > 0)
    if lo is None or hi is None:
        lo, hi = depth_limits(depth, shown)
    hi = max(hi, lo * 1.01)
    rgb = DEPTH_LUT[np.rint(255 * depth_position(np.where(shown, depth, hi), lo, hi)).astype(np.uint8)]
    rgb[~shown] = 0
    return rgb


def colorize_error(error: np.ndarray, valid: np.ndarray, vmax: float) -> np.ndarray:
    """uint8 H x W x 3 RGB: ``error`` from 0 (black) to ``vmax`` and above (pale yellow) on INFERNO; invalid black."""
    valid = np.asarray(valid, bool) & np.isfinite(error)
    t = np.clip(np.where(valid, error, 0.0) / vmax, 0.0, 1.0)
    rgb = ERROR_LUT[np.rint(255 * t).astype(np.uint8)]
    rgb[~valid] = 0
    return rgb


def spread_points(depth: np.ndarray, mask: np.ndarray, radius: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Sparse depth made visible: every pixel within ``radius`` of a point takes the depth of its nearest point.

    Returns (depth, mask) of the grown map, for display only (prompts, LiDAR / SfM ground truth).
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        return np.zeros(mask.shape, np.float32), mask.copy()
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    grown = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)
    _, labels = cv2.distanceTransformWithLabels((~mask).astype(np.uint8), cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL)
    ys, xs = np.nonzero(mask)
    lut = np.zeros(labels.max() + 1, np.float32)
    lut[labels[ys, xs]] = np.asarray(depth, np.float32)[ys, xs]
    return np.where(grown, lut[labels], 0.0).astype(np.float32), grown


# ---------------------------------------------------------------------------------------------- figures
def pyplot() -> Any:
    """``matplotlib.pyplot`` with the file-only Agg backend (imported on first use, see the module docstring)."""
    import matplotlib  # noqa: PLC0415 - 0.9 s, only when a figure is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def depth_colorbar(fig: Any, cax: Any, lo: float, hi: float, label: str = "depth (m)", **kwargs: Any) -> Any:
    """A colour bar in metres matching :func:`colorize_depth` with range (lo, hi), drawn in axes ``cax``."""
    from matplotlib.cm import ScalarMappable  # noqa: PLC0415 - see pyplot()
    from matplotlib.colors import ListedColormap, LogNorm  # noqa: PLC0415
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullLocator  # noqa: PLC0415

    cmap = ListedColormap(DEPTH_LUT[::-1] / 255.0)  # the bar runs from lo (near, red) to hi (far, blue)
    bar = fig.colorbar(ScalarMappable(norm=LogNorm(vmin=lo, vmax=hi), cmap=cmap), cax=cax, **kwargs)
    # a few round values per bar: 1-2-5 per decade, finer steps over a short range, plain steps over a tiny one
    ratio = hi / lo
    locator = (LogLocator(subs=(1.0, 2.0, 5.0)) if ratio > 4 else
               LogLocator(subs=(1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0)) if ratio > 1.5 else MaxNLocator(4))  # fmt: skip
    bar.ax.yaxis.set_major_locator(locator)
    bar.ax.yaxis.set_minor_locator(NullLocator())
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    bar.set_label(label)
    return bar


def save_figure(fig: Any, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Write a matplotlib figure as PNG atomically (100 dpi unless given) and close it."""
    path = Path(path)
    kwargs.setdefault("dpi", 100)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", **kwargs)
    pyplot().close(fig)
    return path


def save_depth_visualisation(path: str | os.PathLike, depth: np.ndarray, valid: np.ndarray) -> Path:
    """``depth_vis.png``: the coloured depth at its own resolution with a colour bar in metres."""
    plt = pyplot()
    h, w = depth.shape
    lo, hi = depth_limits(depth, valid)
    width_in = 6.0
    fig = plt.figure(figsize=(width_in * 1.18, width_in * h / w + 0.2), dpi=max(100, int(w / width_in)))
    ax = fig.add_axes((0.0, 0.0, 0.84, 1.0))
    ax.imshow(colorize_depth(depth, valid, lo, hi), interpolation="nearest")
    ax.set_axis_off()
    depth_colorbar(fig, fig.add_axes((0.87, 0.05, 0.03, 0.9)), lo, hi)
    return save_figure(fig, path, dpi=fig.dpi)


__all__ = [
    "DEPTH_LUT",
    "ERROR_LUT",
    "colorize_depth",
    "colorize_error",
    "depth_colorbar",
    "depth_limits",
    "depth_position",
    "pyplot",
    "save_depth_visualisation",
    "save_figure",
    "spread_points",
]
