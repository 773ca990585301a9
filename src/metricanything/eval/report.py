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
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from metricanything.atomic import write_text_atomic
from metricanything.eval.results import NO_PROMPT, ORACLE, EvalResults, PanelData, format_value, plain_json
from metricanything.metrics import HIGHER_IS_BETTER, METRIC_NAMES
from metricanything.vis import (
    colorize_depth,
    colorize_error,
    depth_colorbar,
    depth_limits,
    error_colorbar,
    pyplot,
    save_figure,
    spread_points,
)

#: Metrics shown in the full tables (``rmse_mm``/``mae_mm`` are added for completion benchmarks).
TABLE_METRICS = ("abs_rel", "sq_rel", "rmse", "mae", "rmse_log", "log10", "silog", "delta1", "delta2", "delta3",
                 "irmse", "imae")  # fmt: skip
METRIC_LABELS = {
    "abs_rel": "AbsRel", "sq_rel": "SqRel", "rmse": "RMSE (m)", "mae": "MAE (m)", "rmse_log": "RMSE_log",
    "log10": "log10", "silog": "SILog", "delta1": "δ1", "delta2": "δ2", "delta3": "δ3", "irmse": "iRMSE (1/km)",
    "imae": "iMAE (1/km)", "rmse_mm": "RMSE (mm)", "mae_mm": "MAE (mm)",
}  # fmt: skip
#: Largest relative error of the error colour scale in the panels (|err| / GT; brighter = worse, capped).
PANEL_MAX_REL_ERROR = 0.5


# ---------------------------------------------------------------------------------------------- tables (md + HTML)
def metric_label(metric: str) -> str:
    """Column header of a metric: its label and whether higher (↑) or lower (↓) is better."""
    return f"{METRIC_LABELS.get(metric, metric)} {'↑' if metric in HIGHER_IS_BETTER else '↓'}"


def best_value(values: Sequence[float | None], metric: str) -> float | None:
    """The best of two or more finite values (None with fewer: nothing to highlight)."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    if len(finite) < 2:
        return None
    return max(finite) if metric in HIGHER_IS_BETTER else min(finite)


def metric_cell(value: float | None, best: float | None, html: bool = False) -> str:
    """A formatted metric value, bold when it is the column's best."""
    text = format_value(value)
    if best is None or value is None or value != best:
        return text
    return f'<b class="best">{text}</b>' if html else f"**{text}**"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], html: bool = False) -> str:
    """A Markdown table, or with ``html`` an HTML one (cells are inserted as given: escape text first)."""
    if html:
        head = "".join(f"<th>{h}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def headline_table(headlines: Mapping[str, Mapping[str, float] | None], metrics: Sequence[str],
                   extra: Mapping[str, Sequence[str]] | None = None, extra_header: Sequence[str] = (),
                   html: bool = False) -> str:  # fmt: skip
    """Rows = predictors, columns = ``metrics`` of their headline (best per column in bold). ``extra`` adds
    cells after the name (``extra_header`` names them); a predictor without a headline shows dashes."""
    heads = {p: h or {} for p, h in headlines.items()}
    best = {m: best_value([h.get(m) for h in heads.values()], m) for m in metrics}
    rows = [[p, *(extra or {}).get(p, ())] + [metric_cell(h.get(m), best[m], html) for m in metrics]
            for p, h in heads.items()]  # fmt: skip
    return table(["model", *extra_header] + [metric_label(m) for m in metrics], rows, html)


def summary_table(results: EvalResults, metric: str | None = None) -> str:
    """Markdown: rows = predictors, columns = prompt patterns, value = ``metric`` (default: primary)."""
    metric = metric or results.benchmark.primary_metric
    values = {
        (p, c): (results.headline(p, c) or {}).get(metric) for p in results.predictors for c in results.columns
    }
    best = {c: best_value([values[(p, c)] for p in results.predictors], metric) for c in results.columns}
    rows = [[p] + [metric_cell(values[(p, c)], best[c]) for c in results.columns] for p in results.predictors]
    return table(["model"] + list(results.columns), rows)


def full_table(results: EvalResults, column: str) -> str:
    """Markdown: rows = predictors, columns = every table metric, for one prompt column."""
    metrics = list(TABLE_METRICS)
    if results.benchmark.primary_metric in ("rmse_mm", "mae_mm"):
        metrics = ["rmse_mm", "mae_mm", *[m for m in metrics if m not in ("rmse", "mae")]]
    scored = [p for p in results.predictors if not results.summaries[p][column].get("not_applicable")]
    images = {p: [str(results.summaries[p][column].get("num_images", 0))] for p in scored}
    return headline_table({p: results.headline(p, column) for p in scored}, metrics, images, ["images"])


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
    return table(header, rows)


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
    out += [f"## {metric_label(metric)} ({b.aggregation.replace('_', '-')})", "",
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


def json_ready(results: EvalResults, records: bool = False) -> dict[str, Any]:
    """The ``metrics.json`` content as strict-JSON-ready data (inf/NaN -> None); ``records`` adds the
    per-image rows (``per_image.csv`` as a list of dicts)."""
    data = results.to_dict()
    if records:
        data["records"] = results.records
    return plain_json(data)


#: Font size (points) of the figures' text; figures are drawn about as wide as a report page (~1,200 px at 100 dpi)
FIGURE_FONT = 10.5


def plot_error_by_distance(results: EvalResults, path: str | os.PathLike) -> None:
    """Pooled AbsRel per GT-distance bin (one line per predictor, one panel per prompt column)."""
    plt = pyplot()
    cols = results.columns
    fig, axes = plt.subplots(1, len(cols), figsize=(5.6 * len(cols), 3.9), squeeze=False)
    for ax, col in zip(axes[0], cols, strict=True):
        for p in results.predictors:
            ranges = results.summaries[p][col].get("ranges") or {}
            labels = list(ranges)
            ys = [(r.get("pooled") or {}).get("abs_rel", np.nan) if r.get("pooled") else np.nan for r in ranges.values()]
            if labels:
                ax.plot(range(len(labels)), ys, marker="o", label=p)
                ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=FIGURE_FONT - 1)
        ax.set_title(f"prompt: {col}", fontsize=FIGURE_FONT + 1)
        ax.set_xlabel("GT depth bin", fontsize=FIGURE_FONT)
        ax.set_ylabel("AbsRel (pooled in bin), lower = better", fontsize=FIGURE_FONT)
        ax.tick_params(labelsize=FIGURE_FONT - 1)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=FIGURE_FONT - 1)
    fig.suptitle(results.benchmark.name, fontsize=FIGURE_FONT + 1)
    fig.tight_layout()
    save_figure(fig, path, bbox_inches="tight")


def _wrap_name(name: str) -> str:
    """A predictor name on two lines at its ``kind:`` prefix (row labels of the panels)."""
    kind, sep, rest = name.partition(":")
    return f"{kind}:\n{rest}" if sep and rest else name


def plot_panel(panel: PanelData, path: str | os.PathLike) -> None:
    """RGB | prompt (only with one) | prediction | GT | relative error, one row per predictor; depth colours
    and the colour bars (depth in metres below prediction and GT, error below the error column) from
    :mod:`metricanything.vis`, on the GT's 2-98th percentile range."""
    plt = pyplot()
    names = list(panel.predictions) or [""]
    lo, hi = depth_limits(panel.gt, panel.valid, (2, 98))
    gt_rgb = colorize_depth(panel.gt, panel.valid, lo, hi)
    has_prompt = panel.prompt_mask is not None and bool(panel.prompt_mask.any())
    titles = ["RGB", *(["prompt points (GT depth)"] if has_prompt else []), "prediction", "GT (black = no depth)",
              "|error| / GT (black = not scored)"]  # fmt: skip
    c_pred = titles.index("prediction")
    h, w = panel.gt.shape
    tile = 11.0 / len(titles)
    fig, axes = plt.subplots(len(names), len(titles), figsize=(tile * len(titles) + 0.8, len(names) * tile * h / w + 1.6),
                             squeeze=False)  # fmt: skip
    prompt_rgb = None
    if has_prompt:
        prompt_rgb = colorize_depth(*spread_points(panel.prompt_depth, panel.prompt_mask), lo, hi)
        prompt_rgb = np.where(prompt_rgb.any(axis=-1, keepdims=True), prompt_rgb, panel.image // 3)
    for r, name in enumerate(names):
        ax = axes[r]
        ax[0].imshow(panel.image)
        ax[0].set_ylabel(_wrap_name(name), fontsize=FIGURE_FONT)
        if prompt_rgb is not None:
            ax[1].imshow(prompt_rgb)
        pred = panel.predictions.get(name)
        if pred is not None:
            pred_ok = np.isfinite(pred) & (pred > 0)
            ax[c_pred].imshow(colorize_depth(pred, pred_ok, lo, hi))
            with np.errstate(divide="ignore", invalid="ignore"):
                err = np.abs(pred - panel.gt) / panel.gt
            ax[-1].imshow(colorize_error(err, panel.masks.get(name, panel.valid) & pred_ok, PANEL_MAX_REL_ERROR))
        ax[c_pred + 1].imshow(gt_rgb)
        for c, title in enumerate(titles):
            ax[c].set_xticks([])
            ax[c].set_yticks([])
            if r == 0:
                ax[c].set_title(title, fontsize=FIGURE_FONT)
    fig.suptitle(f"{panel.sample_id}, prompt: {panel.column} (depth: log scale, near = warm)", fontsize=FIGURE_FONT + 1)
    bar_h = 1.3 / fig.get_figheight()  # room below the last row for the colour bars and their labels
    fig.tight_layout(rect=(0, bar_h, 1, 1))
    last = axes[-1]
    a, b = last[c_pred].get_position(), last[c_pred + 1].get_position()
    y, inset = a.y0 - 0.42 * bar_h, 0.35 / fig.get_figwidth()  # inset: room for the end labels between the bars
    depth_colorbar(fig, fig.add_axes((a.x0 + inset, y, b.x1 - a.x0 - 2 * inset, 0.13 * bar_h)), lo, hi,
                   fontsize=FIGURE_FONT - 0.5, orientation="horizontal")  # fmt: skip
    e = last[-1].get_position()
    error_colorbar(fig, fig.add_axes((e.x0 + inset, y, e.x1 - e.x0 - 2 * inset, 0.13 * bar_h)), PANEL_MAX_REL_ERROR,
                   fontsize=FIGURE_FONT - 0.5, orientation="horizontal")  # fmt: skip
    save_figure(fig, path, bbox_inches="tight")


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
    "best_value",
    "headline_table",
    "metric_cell",
    "metric_label",
    "table",
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
