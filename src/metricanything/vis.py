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


# ---------------------------------------------------------------------------------------------- colour-bar ticks
def _fmt_m(v: float, sig: int = 3) -> str:
    return f"{v:.{sig}g}" if v < 10**sig else f"{v:.0f}"


def depth_ticks(lo: float, hi: float, min_gap: float = 0.07) -> list[tuple[float, str, float]]:
    """Labelled ticks of a depth colour bar from ``lo`` to ``hi`` metres on the log scale of
    :func:`depth_position`: ``(value, label, pos)`` with ``pos`` in [0, 1] from the near end.

    Both ends are labelled; in between, round metric values (1-2-5 per decade, finer steps over a short range,
    evenly spaced round values over a tiny one) at least ``min_gap`` of the bar away from an end label, so that
    no two labels overlap. End labels get as many digits as they need to differ from their neighbours.
    """
    hi = max(hi, lo * 1.01)
    span = math.log(hi) - math.log(lo)

    def pos(v: float) -> float:
        return (math.log(v) - math.log(lo)) / span

    nice: list[float] = []
    for subs in ((1.0,), (1.0, 2.0, 5.0), (1.0, 2.0, 3.0, 5.0, 7.0)):
        nice = [s * 10.0**k for k in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
                for s in subs if lo < s * 10.0**k < hi]  # fmt: skip
        nice = [v for v in nice if min_gap < pos(v) < 1 - min_gap]
        if len(nice) >= 3:
            break
    if len(nice) < 2:  # a narrow range: evenly spaced round values
        from matplotlib.ticker import MaxNLocator  # noqa: PLC0415 - only for narrow ranges

        nice = [float(f"{v:.6g}") for v in MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)]
        nice = [v for v in nice if lo < v < hi and min_gap < pos(v) < 1 - min_gap]
    inner = [f"{v:g}" for v in nice]
    sig = 3
    while sig < 8 and len({_fmt_m(lo, sig), _fmt_m(hi, sig), *inner}) < len(inner) + 2:
        sig += 1  # a narrow range: enough digits for distinct end labels
    return [(lo, _fmt_m(lo, sig), 0.0), *((v, t, pos(v)) for v, t in zip(nice, inner, strict=True)),
            (hi, _fmt_m(hi, sig), 1.0)]  # fmt: skip


def colour_stops(n: int = 16) -> list[str]:
    """``n`` CSS colours of the depth scale from the near end (red) to the far end (blue), for HTML colour bars."""
    return ["#" + "".join(f"{c:02x}" for c in DEPTH_LUT[round(255 * (1 - i / (n - 1)))]) for i in range(n)]


_LEGEND_FONT, _LEGEND_SCALE, _LEGEND_PAD = cv2.FONT_HERSHEY_SIMPLEX, 0.35, 3


def legend_height(col: int) -> int:
    """Height in pixels of :func:`legend_strip` under tiles ``col`` pixels wide."""
    text_h = cv2.getTextSize("0", _LEGEND_FONT, _LEGEND_SCALE, 1)[0][1]
    return 3 * _LEGEND_PAD + max(6, col // 12) + text_h


def legend_strip(width: int, col: int, lo: float, hi: float, max_rel_error: float) -> np.ndarray:
    """uint8 RGB strip drawn under a training panel of five ``col``-wide tiles (RGB | prompt | prediction | GT |
    error), ``width`` = 5 ``col``: the depth colour bar in metres (log scale, :func:`depth_ticks`) under the
    prediction and GT tiles, the error bar (0 .. ``max_rel_error``) under the error tile, titles on the left.
    Drawn with OpenCV so the training loop needs no matplotlib."""
    font, scale, thick, pad = _LEGEND_FONT, _LEGEND_SCALE, 1, _LEGEND_PAD
    bar_h, height = max(6, col // 12), legend_height(col)
    strip = np.full((height, width, 3), 255, np.uint8)

    def bar(x0: int, x1: int, lut: np.ndarray, reverse: bool) -> None:
        t = np.linspace(0.0, 1.0, x1 - x0)
        idx = np.rint(255 * ((1.0 - t) if reverse else t)).astype(np.int64)
        strip[pad:pad + bar_h, x0:x1] = lut[idx][None]

    def label(text: str, x: int, x_min: int, x_max: int) -> None:
        w = cv2.getTextSize(text, font, scale, thick)[0][0]
        x = int(min(max(x - w / 2, x_min), x_max - w))
        cv2.putText(strip, text, (x, height - pad), font, scale, (0, 0, 0), thick, cv2.LINE_AA)

    x0, x1 = 2 * col + 2, 4 * col - 2  # under prediction | GT: near (red) on the left, like depth_colorbar
    bar(x0, x1, DEPTH_LUT, reverse=True)
    gap = min(0.45, max(0.07, 3.2 * cv2.getTextSize("00.0", font, scale, thick)[0][0] / max(x1 - x0, 1)))
    for _, text, pos in depth_ticks(lo, hi, min_gap=gap):
        label(text, round(x0 + pos * (x1 - x0)), x0, x1)
    e0, e1 = 4 * col + 2, 5 * col - 2
    bar(e0, e1, ERROR_LUT, reverse=False)
    label("0", e0, e0, e1)
    label(f"{100 * max_rel_error:.0f}%", e1, e0, e1)
    title = "depth (m), log scale"
    if cv2.getTextSize(title, font, scale, thick)[0][0] > 2 * col - 4:
        title = "depth (m)"
    cv2.putText(strip, title, (2, height - pad), font, scale, (0, 0, 0), thick, cv2.LINE_AA)
    return strip


# ---------------------------------------------------------------------------------------------- figures
def pyplot() -> Any:
    """``matplotlib.pyplot`` with the file-only Agg backend (imported on first use, see the module docstring)."""
    import matplotlib  # noqa: PLC0415 - 0.9 s, only when a figure is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def depth_colorbar(fig: Any, cax: Any, lo: float, hi: float, label: str = "depth (m), log scale",
                   fontsize: float | None = None, **kwargs: Any) -> Any:  # fmt: skip
    """A colour bar in metres matching :func:`colorize_depth` with range (lo, hi), drawn in axes ``cax`` (or
    stolen from ``ax=...`` in ``kwargs``); ticks from :func:`depth_ticks` (both ends and round values).
    ``orientation="horizontal"`` in ``kwargs`` puts near on the left."""
    from matplotlib import rcParams  # noqa: PLC0415
    from matplotlib.cm import ScalarMappable  # noqa: PLC0415 - see pyplot()
    from matplotlib.colors import ListedColormap, LogNorm  # noqa: PLC0415
    from matplotlib.font_manager import FontProperties  # noqa: PLC0415

    cmap = ListedColormap(DEPTH_LUT[::-1] / 255.0)  # the bar runs from lo (near, red) to hi (far, blue)
    hi = max(hi, lo * 1.01)
    bar = fig.colorbar(ScalarMappable(norm=LogNorm(vmin=lo, vmax=hi), cmap=cmap), cax=cax, **kwargs)
    # labels at least 1.5 label heights (vertical bar) or about 3 label widths (horizontal) apart along the bar
    pos = bar.ax.get_position()
    fig_w, fig_h = fig.get_size_inches()
    horizontal = kwargs.get("orientation") == "horizontal"
    length_in = pos.width * fig_w if horizontal else pos.height * fig_h
    size = fontsize if fontsize is not None else FontProperties(size=rcParams["ytick.labelsize"]).get_size_in_points()
    gap = (3.2 if horizontal else 1.5) * size / 72 / max(length_in, 1e-3)
    ticks = depth_ticks(lo, hi, min_gap=min(max(0.07, gap), 0.45))
    bar.ax.minorticks_off()
    bar.set_ticks([v for v, _, _ in ticks], labels=[t for _, t, _ in ticks])
    bar.ax.minorticks_off()
    if fontsize is not None:
        bar.ax.tick_params(labelsize=fontsize)
    bar.set_label(label, fontsize=fontsize)
    return bar


def error_colorbar(fig: Any, cax: Any, vmax: float, label: str = "|error| / GT", fontsize: float | None = None,
                   **kwargs: Any) -> Any:  # fmt: skip
    """A colour bar matching :func:`colorize_error` from 0 to ``vmax`` (a relative error, labelled in %)."""
    from matplotlib.cm import ScalarMappable  # noqa: PLC0415 - see pyplot()
    from matplotlib.colors import ListedColormap, Normalize  # noqa: PLC0415
    from matplotlib.ticker import PercentFormatter  # noqa: PLC0415

    bar = fig.colorbar(ScalarMappable(norm=Normalize(0.0, vmax), cmap=ListedColormap(ERROR_LUT / 255.0)), cax=cax,
                       **kwargs)  # fmt: skip
    bar.set_ticks([0.0, vmax / 4, vmax / 2, 3 * vmax / 4, vmax] if kwargs.get("orientation") != "horizontal"
                  else [0.0, vmax / 2, vmax])  # fmt: skip
    axis = bar.ax.xaxis if kwargs.get("orientation") == "horizontal" else bar.ax.yaxis
    axis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    if fontsize is not None:
        bar.ax.tick_params(labelsize=fontsize)
    bar.set_label(f"{label} (≥ {100 * vmax:g}% saturates)", fontsize=fontsize)
    return bar


def save_figure(fig: Any, path: str | os.PathLike, **kwargs: Any) -> Path:
    """Write a matplotlib figure as PNG atomically (100 dpi unless given) and close it."""
    path = Path(path)
    kwargs.setdefault("dpi", 100)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", **kwargs)
    pyplot().close(fig)
    return path


#: ``depth_vis.png`` shows the depth at least this large (px, its longer side): smaller images are enlarged
#: by a whole factor
MIN_VIS_SIZE = 640


def save_depth_visualisation(path: str | os.PathLike, depth: np.ndarray, valid: np.ndarray,
                             lo: float | None = None, hi: float | None = None) -> Path:  # fmt: skip
    """``depth_vis.png``: the coloured depth pixel for pixel (enlarged by a whole factor until its longer side
    is at least :data:`MIN_VIS_SIZE` px) and a colour bar in metres with both ends and round values labelled:
    on the right, or below an image more than twice as wide as high. Text is sized to the picture; the figure
    is saved with a tight bounding box, so no label is ever cut off. Range: ``lo``/``hi`` or
    :func:`depth_limits` (1st-99th percentile of the valid depth)."""
    plt = pyplot()
    depth, valid = np.asarray(depth), np.asarray(valid, bool)
    h, w = depth.shape
    if lo is None or hi is None:
        lo, hi = depth_limits(depth, valid)
    rgb = colorize_depth(depth, valid, lo, hi)
    k = max(1, math.ceil(MIN_VIS_SIZE / max(h, w)))
    if k > 1:
        rgb = np.repeat(np.repeat(rgb, k, axis=0), k, axis=1)
    dpi = 100  # 1 point = 100/72 px
    W, H = w * k, h * k
    fig = plt.figure(figsize=(W / dpi, H / dpi), dpi=dpi)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.imshow(rgb, interpolation="nearest")
    ax.set_axis_off()
    missing = not (np.isfinite(depth) & (depth > 0) & valid).all()
    if W > 2 * H:  # a wide picture: the bar below it, as long as it
        font = min(max(11.0, 0.016 * W), 28.0)
        px = font * dpi / 72
        cax = fig.add_axes((0.0, -(0.5 * px + 1.2 * px) / H, 1.0, 1.2 * px / H))
        label = "depth (m), log scale" + ("; black: no depth" if missing else "")
        depth_colorbar(fig, cax, lo, hi, label=label, fontsize=font, orientation="horizontal")
    else:  # the bar on the right, as high as the picture; at least 8 label heights
        font = min(max(11.0, 0.018 * max(W, 1.3 * H)), 0.85 * H / 10 * 72 / dpi)
        px = font * dpi / 72
        bottom = (2.2 * px / H) if missing else 0.04
        cax = fig.add_axes((1.0 + 0.6 * px / W, bottom, max(0.035 * W, 1.1 * px) / W, 0.96 - bottom))
        depth_colorbar(fig, cax, lo, hi, fontsize=font)
        if missing:
            fig.text(1.0 + 0.6 * px / W, 0.0, "black: no depth", fontsize=0.85 * font, va="bottom", ha="left")
    return save_figure(fig, path, dpi=dpi, bbox_inches="tight", pad_inches=0.1)


def save_depth_colorbar(path: str | os.PathLike, lo: float, hi: float, width_px: int = 640) -> Path:
    """A stand-alone horizontal depth colour bar (e.g. the legend of a depth video), ``width_px`` wide."""
    plt = pyplot()
    font = max(11.0, 0.022 * width_px)
    fig = plt.figure(figsize=(width_px / 100, 1.5 * font / 72), dpi=100)
    cax = fig.add_axes((0.02, 0.3, 0.96, 0.7))
    depth_colorbar(fig, cax, lo, hi, fontsize=font, orientation="horizontal")
    return save_figure(fig, path, bbox_inches="tight", pad_inches=0.1)


__all__ = [
    "DEPTH_LUT",
    "ERROR_LUT",
    "MIN_VIS_SIZE",
    "colorize_depth",
    "colorize_error",
    "colour_stops",
    "depth_colorbar",
    "depth_limits",
    "depth_position",
    "depth_ticks",
    "error_colorbar",
    "pyplot",
    "save_depth_colorbar",
    "save_depth_visualisation",
    "save_figure",
    "spread_points",
]
