"""Evaluation outputs, each written atomically into one folder:

* ``metrics.json``: the protocol (every benchmark knob), both aggregations, the per-range breakdown and
  skipped images for every predictor x prompt column, and seconds per image;
* ``report.md``: a summary table (rows = predictors, columns = prompt patterns, value = the benchmark's
  primary metric under its aggregation) and one full table per prompt column (best value in bold);
* ``per_image.csv``: one row per predictor x prompt x image;
* with a benchmark ``reference`` or ``oracle_constant``, ``report.md`` also holds per-frame tables
  (:func:`per_frame_table`) and the comparison summary (:func:`comparison_lines`);
* ``error_by_distance.png``: pooled AbsRel per GT-distance bin, one line per predictor, one panel per prompt;
* ``panels/<sample>__<prompt>.png``: qualitative panels, one row per predictor: RGB | prompt | prediction |
  GT | |error| / GT.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from metricanything.atomic import atomic_path, write_text_atomic
from metricanything.eval.runner import NO_PROMPT, ORACLE, EvalResults, PanelData, format_value
from metricanything.metrics import HIGHER_IS_BETTER, METRIC_NAMES

#: Metrics shown in the full tables (``rmse_mm``/``mae_mm`` are added for completion benchmarks).
TABLE_METRICS = ("abs_rel", "sq_rel", "rmse", "mae", "rmse_log", "log10", "silog", "delta1", "delta2", "delta3",
                 "irmse", "imae")  # fmt: skip
METRIC_LABELS = {
    "abs_rel": "AbsRel", "sq_rel": "SqRel", "rmse": "RMSE (m)", "mae": "MAE (m)", "rmse_log": "RMSE_log",
    "log10": "log10", "silog": "SILog", "delta1": "δ1", "delta2": "δ2", "delta3": "δ3", "irmse": "iRMSE (1/km)",
    "imae": "iMAE (1/km)", "rmse_mm": "RMSE (mm)", "mae_mm": "MAE (mm)",
}  # fmt: skip


def _arrow(metric: str) -> str:
    return "↑" if metric in HIGHER_IS_BETTER else "↓"


def _best(values: list[float | None], metric: str) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if len(finite) < 2:
        return None
    return max(finite) if metric in HIGHER_IS_BETTER else min(finite)


def _cell(value: float | None, best: float | None) -> str:
    text = format_value(value)
    return f"**{text}**" if best is not None and value is not None and value == best else text


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def summary_table(results: EvalResults, metric: str | None = None) -> str:
    """Markdown: rows = predictors, columns = prompt patterns, value = ``metric`` (default: primary)."""
    metric = metric or results.benchmark.primary_metric
    values = {
        (p, c): (results.headline(p, c) or {}).get(metric) for p in results.predictors for c in results.columns
    }
    best = {c: _best([values[(p, c)] for p in results.predictors], metric) for c in results.columns}
    rows = [[p] + [_cell(values[(p, c)], best[c]) for c in results.columns] for p in results.predictors]
    return _table(["model"] + list(results.columns), rows)


def full_table(results: EvalResults, column: str) -> str:
    """Markdown: rows = predictors, columns = every table metric, for one prompt column."""
    metrics = list(TABLE_METRICS)
    if results.benchmark.primary_metric in ("rmse_mm", "mae_mm"):
        metrics = ["rmse_mm", "mae_mm", *[m for m in metrics if m not in ("rmse", "mae")]]
    heads = {p: results.headline(p, column) or {} for p in results.predictors}
    best = {m: _best([heads[p].get(m) for p in results.predictors], m) for m in metrics}
    rows = []
    for p in results.predictors:
        s = results.summaries[p][column]
        if s.get("not_applicable"):
            continue
        rows.append([p, str(s.get("num_images", 0))] + [_cell(heads[p].get(m), best[m]) for m in metrics])
    return _table(["model", "images"] + [f"{METRIC_LABELS[m]} {_arrow(m)}" for m in metrics], rows)


#: Metrics of the per-frame tables.
FRAME_METRICS = ("abs_rel", "delta1", "rmse")


def per_frame_table(results: EvalResults, column: str, metrics: tuple[str, ...] = FRAME_METRICS) -> str:
    """Markdown: one row per frame, for every predictor scored in ``column``: the ``metrics`` of that frame."""
    rows_by_frame: dict[str, dict[str, dict[str, Any]]] = {}
    points: dict[str, int] = {}
    for r in results.records:
        if r["prompt"] != column:
            continue
        rows_by_frame.setdefault(r["sample_id"], {})[r["predictor"]] = r
        points[r["sample_id"]] = max(points.get(r["sample_id"], 0), int(r.get("prompt_points", 0)))
    names = [p for p in results.predictors if any(p in row for row in rows_by_frame.values())]
    header = ["frame", "scored px"] + (["prompt pts"] if column != NO_PROMPT else [])
    header += [f"{p} {METRIC_LABELS[m].split(' ')[0]}" for p in names for m in metrics]
    rows = []
    for sid, row in rows_by_frame.items():
        n = next(iter(row.values())).get("n", 0)
        cells = [sid, str(int(n))] + ([str(points[sid])] if column != NO_PROMPT else [])
        for p in names:
            cells += [format_value(row[p].get(m)) if p in row else "-" for m in metrics]
        rows.append(cells)
    return _table(header, rows)


def comparison_lines(results: EvalResults) -> list[str]:
    """The summary figures: each predictor against the reference per column, and the oracle constant."""
    lines: list[str] = []
    ref = results.benchmark.reference
    for col, cmps in results.comparisons.items():
        for name, c in cmps.items():
            lines.append(
                f"- `{col}`: {name} / {ref} AbsRel: geometric mean over frames **{c['geomean_ratio']:.3f}**, "
                f"worse on {c['frames_worse']} of {c['frames']} frames, worst ratio {c['worst_ratio']:.3f} "
                f"({c['worst_frame']})"
            )
    if ORACLE in results.predictors and NO_PROMPT in results.columns:
        oracle = results.headline(ORACLE, NO_PROMPT)
        opt = [r["abs_rel_at_abs_rel_constant"] for r in results.records if r["predictor"] == ORACLE]
        if oracle is not None:
            for name in results.predictors:
                head = results.headline(name, NO_PROMPT)
                if name == ORACLE or head is None:
                    continue
                lines.append(
                    f"- `{NO_PROMPT}`: {name} mean δ1 **{head['delta1']:.3f}** vs **{oracle['delta1']:.3f}** for the "
                    f"per-frame oracle constant; mean AbsRel {head['abs_rel']:.3f} vs {oracle['abs_rel']:.3f} "
                    f"(δ1-optimal constant) and {float(np.mean(opt)):.3f} (AbsRel-optimal constant)"
                )
    return lines


def protocol_lines(results: EvalResults) -> list[str]:
    """Human-readable protocol summary (every knob that changes a number)."""
    b = results.benchmark
    lo, hi = b.depth_range
    rng = f"{lo:g} {'<' if b.range_bounds == 'open' else '<='} z {'<' if b.range_bounds == 'open' else '<='} {hi:g} m"
    crop = b.crop if isinstance(b.crop, str) else f"box {list(b.crop)}"
    align = "none" if b.alignment == "none" else f"{b.alignment} in {b.alignment_space} space (fit on {b.align_on})"
    lines = [
        f"- dataset: `{b.dataset}`" + (f", split `{b.split}`" if b.split else "") + f"; images: {results.num_samples}",
        f"- crop: {crop}; depth range: {rng}; alignment: {align}; aggregation: **{b.aggregation}**",
        f"- focal given to models: {b.focal_source}; eval resolution: {b.eval_resolution or 'native'}; "
        f"model resolution: {b.model_resolution or 'eval'} (upsample {b.upsample}); "
        f"clip predictions: {'yes' if b.clip_prediction else 'no'}",
    ]
    if b.exclude_prompt_pixels:
        lines.append("- prompt pixels are excluded from scoring (held-out valid pixels only)")
    if not b.seed_per_sample:
        lines.append(f"- every frame's prompt uses seed {b.seed}")
    if b.input_resize == "released":
        lines.append("- fixed-size models get the input resized as the released evaluation does (uint8, antialiased)")
    if b.source:
        lines.append(f"- source: {b.source.strip()}")
    return lines


def markdown_report(results: EvalResults) -> str:
    """The full ``report.md`` text."""
    b = results.benchmark
    metric = b.primary_metric
    out = [f"# {b.name}", "", b.description.strip(), "", *protocol_lines(results), ""]
    out += [f"## {METRIC_LABELS[metric]} {_arrow(metric)} ({b.aggregation.replace('_', '-')})", "",
            summary_table(results), ""]  # fmt: skip
    detailed = b.reference is not None or b.oracle_constant
    if detailed:
        out += ["## Summary", "", *comparison_lines(results), ""]
    for col in results.columns:
        out += [f"## Prompt: {col}", "", full_table(results, col), ""]
        if detailed:
            out += [per_frame_table(results, col), ""]
    skipped = [(p, c, s["skipped"]) for p in results.predictors for c in results.columns
               if (s := results.summaries[p][c]).get("skipped")]  # fmt: skip
    if skipped:
        out += ["## Skipped images", ""]
        out += [f"- {p} / {c}: " + ", ".join(f"{sid} ({why})" for sid, why in items) for p, c, items in skipped]
        out.append("")
    out += ["Seconds per image (this machine): "
            + ", ".join(f"{p} {t:.3f}" for p, t in results.timing.items()), ""]  # fmt: skip
    return "\n".join(out)


def per_image_csv(results: EvalResults) -> str:
    """The ``per_image.csv`` text."""
    extra = sorted({k for r in results.records for k in r} - set(METRIC_NAMES)
                   - {"predictor", "prompt", "sample_id", "prompt_points"})  # fmt: skip
    header = ["predictor", "prompt", "sample_id", "prompt_points", *METRIC_NAMES, *extra]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    for r in results.records:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def _finite(obj: Any) -> Any:
    """Replace inf/NaN by None so the JSON is strict."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def json_ready(results: EvalResults, records: bool = False) -> dict[str, Any]:
    """The ``metrics.json`` content as strict-JSON-ready data (inf/NaN -> None); ``records`` adds the
    per-image rows (``per_image.csv`` as a list of dicts)."""
    data = results.to_dict()
    if records:
        data["records"] = results.records
    return _finite(json.loads(json.dumps(data, default=_json_default)))


def _savefig(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def plot_error_by_distance(results: EvalResults, path: str | os.PathLike) -> None:
    """Pooled AbsRel per GT-distance bin (one line per predictor, one panel per prompt column)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = results.columns
    fig, axes = plt.subplots(1, len(cols), figsize=(4.2 * len(cols), 3.4), squeeze=False)
    for ax, col in zip(axes[0], cols, strict=True):
        for p in results.predictors:
            ranges = results.summaries[p][col].get("ranges") or {}
            labels = list(ranges)
            ys = [(r.get("pooled") or {}).get("abs_rel", np.nan) if r.get("pooled") else np.nan for r in ranges.values()]
            if labels:
                ax.plot(range(len(labels)), ys, marker="o", label=p)
                ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
        ax.set_title(f"prompt: {col}", fontsize=9)
        ax.set_xlabel("GT depth bin")
        ax.set_ylabel("AbsRel (pooled in bin)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(results.benchmark.name, fontsize=10)
    fig.tight_layout()
    _savefig(fig, Path(path))
    plt.close(fig)


def plot_panel(panel: PanelData, path: str | os.PathLike) -> None:
    """RGB | prompt | prediction | GT | relative error, one row per predictor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(panel.predictions)
    rows = max(len(names), 1)
    gt_vals = panel.gt[panel.valid]
    vmin, vmax = (float(np.percentile(gt_vals, 2)), float(np.percentile(gt_vals, 98))) if gt_vals.size else (0.0, 1.0)
    gt_show = np.where(panel.valid, panel.gt, np.nan)
    if panel.prompt_mask is not None and panel.prompt_mask.any():
        import cv2

        grown = cv2.dilate(panel.prompt_mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        spread = cv2.dilate(np.where(panel.prompt_mask, panel.prompt_depth, 0).astype(np.float32), np.ones((3, 3), np.uint8))
        prompt_show = np.where(grown, spread, np.nan)
    else:
        prompt_show = None
    h, w = panel.gt.shape
    fig, axes = plt.subplots(rows, 5, figsize=(5 * 2.4, rows * 2.4 * h / w + 0.4), squeeze=False)
    for r in range(rows):
        name = names[r] if names else ""
        pred = panel.predictions.get(name)
        mask = panel.masks.get(name, panel.valid)
        ax = axes[r]
        ax[0].imshow(panel.image)
        ax[0].set_ylabel(name, fontsize=7)
        ax[1].imshow(panel.image, alpha=0.35)
        if prompt_show is not None:
            ax[1].imshow(prompt_show, cmap="turbo", vmin=vmin, vmax=vmax, interpolation="nearest")
        else:
            ax[1].text(0.5, 0.5, "no prompt", ha="center", va="center", transform=ax[1].transAxes, fontsize=8)
        if pred is not None:
            ax[2].imshow(pred, cmap="turbo", vmin=vmin, vmax=vmax)
            with np.errstate(divide="ignore", invalid="ignore"):
                err = np.where(mask, np.abs(pred - panel.gt) / panel.gt, np.nan)
            ax[4].imshow(err, cmap="magma", vmin=0.0, vmax=0.5)
        ax[3].imshow(gt_show, cmap="turbo", vmin=vmin, vmax=vmax)
        for c, title in enumerate(("RGB", "prompt", "prediction", "GT", "|err|/GT (0-0.5)")):
            ax[c].set_xticks([])
            ax[c].set_yticks([])
            if r == 0:
                ax[c].set_title(title, fontsize=8)
    fig.suptitle(f"{panel.sample_id} — prompt: {panel.column}  (depth {vmin:.2f}-{vmax:.2f} m)", fontsize=8)
    fig.tight_layout()
    _savefig(fig, Path(path))
    plt.close(fig)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "x"


def write_outputs(results: EvalResults, out_dir: str | os.PathLike) -> dict[str, str]:
    """Write every output file (atomically) into ``out_dir``; returns ``{kind: path}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    data = json_ready(results)
    write_text_atomic(out / "metrics.json", json.dumps(data, indent=2, allow_nan=False) + "\n")
    files["metrics"] = str(out / "metrics.json")
    write_text_atomic(out / "report.md", markdown_report(results))
    files["report"] = str(out / "report.md")
    write_text_atomic(out / "per_image.csv", per_image_csv(results))
    files["per_image"] = str(out / "per_image.csv")
    plot_error_by_distance(results, out / "error_by_distance.png")
    files["error_by_distance"] = str(out / "error_by_distance.png")
    for i, panel in enumerate(results.panels):
        path = out / "panels" / f"{_safe(panel.sample_id)}__{_safe(panel.column)}.png"
        plot_panel(panel, path)
        files[f"panel_{i}"] = str(path)
    results.out_dir = out
    results.files = files
    return files


__all__ = [
    "FRAME_METRICS",
    "comparison_lines",
    "full_table",
    "json_ready",
    "markdown_report",
    "per_frame_table",
    "per_image_csv",
    "plot_error_by_distance",
    "plot_panel",
    "protocol_lines",
    "summary_table",
    "write_outputs",
]
