"""Figures and image checks for the quickstart's HTML report (:mod:`metricanything.eval.html`).

Each ``figure_*`` function draws one matplotlib figure about as wide as the report page (~1,200 px at 100 dpi,
text at ~10 pt) and writes it as a PNG; depth colours and colour bars come from :mod:`metricanything.vis`.
:func:`flat_tile` and :func:`depth_range` read back a training panel or a predicted depth map for the report's text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from metricanything.data.folder import FolderDataset
from metricanything.data.shards import ShardIndex
from metricanything.eval.report import FIGURE_FONT
from metricanything.vis import (
    colorize_depth,
    depth_colorbar,
    depth_limits,
    legend_height,
    pyplot,
    save_figure,
    spread_points,
)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The readable rows of a JSON-lines file (a missing file: none)."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


# ---------------------------------------------------------------------------------------------- figures
def _source_of(sample_id: str) -> str:
    return sample_id.split("-", 1)[-1]


def _depth_view(depth: np.ndarray, valid: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Coloured depth; sparse depth (< 5 % of the pixels: LiDAR, SfM) grown so that the points are visible."""
    if valid.mean() < 0.05:
        depth, valid = spread_points(depth, valid)
    return colorize_depth(depth, valid, lo, hi)


def figure_corpus(corpus: Path, path: Path, order: Sequence[str] = (), per_source: int = 2) -> Path:
    """Rows = source kinds; columns = (RGB, depth) x ``per_source`` samples; each depth on its own 2-98th
    percentile range, written above it (untrusted-scale sources have no metric unit)."""
    ds = FolderDataset(corpus)
    picks: dict[str, list[int]] = {}
    for i, sid in enumerate(ds.sample_ids):
        if len(picks.setdefault(_source_of(sid), [])) < per_source:
            picks[_source_of(sid)].append(i)
    rows = [s for s in order if s in picks] + [s for s in picks if s not in order]
    s0 = ds[picks[rows[0]][0]]
    tile = 11.6 / (2 * per_source)
    fig, axes = pyplot().subplots(len(rows), 2 * per_source, squeeze=False,
                                  figsize=(11.6, len(rows) * (tile * s0.depth.shape[0] / s0.depth.shape[1] + 0.55)))  # fmt: skip
    for r, src in enumerate(rows):
        for c in range(2 * per_source):
            axes[r, c].set_axis_off()
        for c, s in enumerate(ds[i] for i in picks[src]):
            lo, hi = depth_limits(s.depth, s.valid, (2, 98))
            unit = " m" if s.metric_scale_trusted else " (no unit)"
            axes[r, 2 * c].imshow(s.image)
            axes[r, 2 * c + 1].imshow(_depth_view(s.depth, s.valid, lo, hi))
            axes[r, 2 * c + 1].set_title(f"{lo:.3g}–{hi:.3g}{unit}, valid {100 * s.valid.mean():.1f}%",
                                         fontsize=FIGURE_FONT - 1)  # fmt: skip
            if c == 0:
                axes[r, 0].set_title(f"{src} ({s.source_kind}{'' if s.metric_scale_trusted else ', untrusted scale'})",
                                     fontsize=FIGURE_FONT, loc="left", fontweight="bold")  # fmt: skip
    fig.suptitle("Corpus by source kind: RGB | depth (log scale, near = warm, black = no depth)", fontsize=FIGURE_FONT + 1)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    return save_figure(fig, path, bbox_inches="tight")


def _ema(values: np.ndarray, decay: float) -> np.ndarray:
    """Exponential moving average (bias-corrected), NaNs carried over."""
    out = np.full_like(values, np.nan)
    acc = weight = 0.0
    for i, v in enumerate(values):
        if np.isfinite(v):
            acc, weight = decay * acc + (1 - decay) * v, decay * weight + (1 - decay)
        out[i] = acc / weight if weight > 0 else np.nan
    return out


def train_rows(run: Path) -> list[dict[str, Any]]:
    """The ``train`` records (with a loss) of a run's ``log.jsonl``."""
    return [r for r in read_jsonl(Path(run) / "log.jsonl") if r.get("kind") == "train" and "loss" in r]


def figure_losses(runs: Sequence[tuple[str, Path]], path: Path) -> Path | None:
    """Training loss (and the FoV head's loss) per step of each run's ``log.jsonl``, raw and smoothed, log scale."""
    data = [(name, train_rows(run)) for name, run in runs]
    data = [(n, rows) for n, rows in data if rows]
    if not data:
        return None
    fig, axes = pyplot().subplots(1, len(data), figsize=(min(11.6, 7.0 * len(data)), 3.8), squeeze=False)
    for ax, (name, rows) in zip(axes[0], data, strict=True):
        steps = np.array([r["step"] for r in rows], dtype=float)
        for key, colour in (("loss", "C0"), ("fov_log_tan_l1", "C2")):
            vals = np.array([r.get(key, np.nan) for r in rows], dtype=float)
            if np.isfinite(vals).any():
                ax.plot(steps, vals, lw=0.6, alpha=0.35, color=colour, label=f"{key} (each step)")
                ax.plot(steps, _ema(vals, 0.9 if len(vals) > 30 else 0.6), lw=1.8, color=colour, label=f"{key} (smoothed)")
        ax.set_title(name, fontsize=FIGURE_FONT + 1)
        ax.set_xlabel("step", fontsize=FIGURE_FONT)
        ax.set_ylabel("training loss (log scale)", fontsize=FIGURE_FONT)
        ax.set_yscale("log")
        ax.tick_params(labelsize=FIGURE_FONT - 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=FIGURE_FONT - 1.5)
    fig.tight_layout()
    return save_figure(fig, path, bbox_inches="tight")


def figure_pseudo(pseudo: Path, corpus: Path, path: Path, n: int = 4) -> Path:
    """RGB | corpus GT | teacher pseudo-label | confidence for samples of different sources (one scale per row)."""
    from matplotlib.cm import ScalarMappable  # noqa: PLC0415 - see vis.pyplot()
    from matplotlib.colors import Normalize  # noqa: PLC0415

    index, gt = ShardIndex(pseudo), FolderDataset(corpus)
    by_id = {sid: i for i, sid in enumerate(gt.sample_ids)}
    chosen: dict[str, tuple[int, Any]] = {}  # source -> (shard index, pseudo-labelled sample)
    for k in range(len(index)):
        s = index[k]
        if len(chosen) < n and _source_of(s.sample_id) not in chosen and s.sample_id in by_id:
            chosen[_source_of(s.sample_id)] = (k, s)
    plt = pyplot()
    h, w = next(iter(chosen.values()))[1].depth.shape
    fig, axes = plt.subplots(len(chosen), 4, figsize=(11.6, len(chosen) * (2.5 * h / w + 0.5)), squeeze=False)
    for r, (k, s) in enumerate(chosen.values()):
        g = gt[by_id[s.sample_id]]
        lo, hi = depth_limits(np.concatenate([s.depth[s.valid], g.depth[g.valid]]), True, (2, 98))
        conf = index.extra(k, "confidence")
        panels = [(g.image, "RGB"), (_depth_view(g.depth, g.valid, lo, hi), f"GT ({g.sensor})"),
                  (colorize_depth(s.depth, s.valid, lo, hi), "pseudo-label"),
                  (conf if conf is not None else np.zeros(s.depth.shape), "confidence (flip TTA)")]  # fmt: skip
        for c, (img, title) in enumerate(panels):
            axes[r, c].imshow(img, **({"cmap": "viridis", "vmin": 0, "vmax": 1} if c == 3 else {}))
            axes[r, c].set_title(title, fontsize=FIGURE_FONT)
            axes[r, c].set_axis_off()
        depth_colorbar(fig, None, lo, hi, label="depth (m)", fontsize=FIGURE_FONT - 1.5, ax=axes[r, 2], fraction=0.05, pad=0.03)
        bar = fig.colorbar(ScalarMappable(Normalize(0, 1), "viridis"), ax=axes[r, 3], fraction=0.05, pad=0.03)
        bar.ax.tick_params(labelsize=FIGURE_FONT - 1.5)
    fig.suptitle("Teacher pseudo-labels (GT and label share the colour bar of their row, near = warm)", fontsize=FIGURE_FONT + 1)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return save_figure(fig, path, bbox_inches="tight")


def _truth(info: Mapping[str, Any], name: str) -> np.ndarray | None:
    """The exact depth of an example image (``<examples>/truth/<name>_depth.npy``), None when absent."""
    run = (info.get("runs") or {}).get("student") or {}
    p = Path(run.get("input", ".")).parent / "truth" / f"{name}_depth.npy"
    return np.load(p, allow_pickle=False) if p.is_file() else None


def figure_examples(info: Mapping[str, Any], path: Path) -> Path | None:
    """One row per example: input | exact depth | student | teacher + prompt, one colour scale (and bar) per row:
    the exact depth's 2-98th percentile, or the predictions' when there is none."""
    from metricanything.depth_io import read_image  # noqa: PLC0415

    runs = info.get("runs") or {}
    names = list(info.get("examples") or {})
    if not names or "student" not in runs:
        return None
    cols = [("student", "student (prompt-free)"), ("teacher_prompted", "teacher + prompt")]
    cols = [(k, t) for k, t in cols if k in runs]
    plt = pyplot()
    first = read_image(Path(runs["student"]["input"]) / f"{names[0]}.png")
    h, w = first.shape[:2]
    ncol = 2 + len(cols)
    fig, axes = plt.subplots(len(names), ncol, figsize=(11.6, len(names) * (11.6 / ncol * h / w + 0.5)), squeeze=False)
    for r, name in enumerate(names):
        truth = _truth(info, name)
        preds = {k: np.load(Path(runs[k]["out"]) / name / "depth.npy") for k, _ in cols
                 if (Path(runs[k]["out"]) / name / "depth.npy").is_file()}  # fmt: skip
        ref = truth if truth is not None else np.concatenate([p.ravel() for p in preds.values()] or [np.ones(1)])
        lo, hi = depth_limits(ref, ref > 0, (2, 98))
        tiles = [(read_image(Path(runs["student"]["input"]) / f"{name}.png"), f"{name}: input"),
                 (colorize_depth(truth, truth > 0, lo, hi) if truth is not None else None, "exact depth")]  # fmt: skip
        tiles += [(colorize_depth(preds[k], preds[k] > 0, lo, hi) if k in preds else None, t) for k, t in cols]
        for c, (img, title) in enumerate(tiles):
            axes[r, c].set_axis_off()
            axes[r, c].set_title(title, fontsize=FIGURE_FONT)
            if img is not None:
                axes[r, c].imshow(img)
        depth_colorbar(fig, None, lo, hi, label="depth (m)", fontsize=FIGURE_FONT - 1.5, ax=list(axes[r, 1:]),
                       fraction=0.03, pad=0.015)  # fmt: skip
    fig.suptitle("metricanything infer: one colour scale per row (the exact depth's 2–98th percentile, log, near = warm)",
                 fontsize=FIGURE_FONT + 1)  # fmt: skip
    return save_figure(fig, path, bbox_inches="tight")



# ---------------------------------------------------------------------------------------------- image checks
def flat_tile(path: Path, tile: int, tiles: int = 5, max_std: float = 3.0) -> bool:
    """Whether tile ``tile`` of a training panel PNG (``tiles`` side by side, over its legend strip) is one flat
    colour."""
    from metricanything.depth_io import read_image  # noqa: PLC0415

    img = read_image(path).astype(float)
    w = img.shape[1] // tiles
    img = img[: max(1, img.shape[0] - legend_height(w))]
    return bool(img[:, tile * w:(tile + 1) * w].reshape(-1, 3).std(axis=0).max() <= max_std)


def depth_range(depth_file: Path) -> tuple[float, float] | None:
    """The 1st and 99th percentile of the positive finite values of a saved depth map (None: no file or no values)."""
    if not depth_file.is_file():
        return None
    d = np.load(depth_file, allow_pickle=False)
    d = d[np.isfinite(d) & (d > 0)]
    return (float(np.percentile(d, 1)), float(np.percentile(d, 99))) if d.size else None
