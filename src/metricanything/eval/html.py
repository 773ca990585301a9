"""Self-contained HTML reports (PNG figures embedded as data URIs, no network) and their figures.

:func:`quickstart_report` turns the record of a ``metricanything quickstart`` run (``OUT/quickstart.json``:
every stage's wall time, status, facts and equivalent command) into ``OUT/report.html``. Tables come from
:mod:`metricanything.eval.report` (the same tables as ``report.md``, as HTML), depth colours and colour bars
from :mod:`metricanything.vis`.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from metricanything.data.folder import FolderDataset
from metricanything.data.shards import ShardIndex
from metricanything.eval.report import headline_table, table
from metricanything.vis import (
    colorize_depth,
    depth_colorbar,
    depth_limits,
    pyplot,
    save_figure,
    spread_points,
)

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1180px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0 1.2em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}.best{font-weight:bold;background:#eaf6ea}
.note{color:#555;font-size:.92em}.fail{color:#b00;font-weight:bold}.ok{color:#070}
code,pre{background:#f6f6f6;border-radius:3px}pre{padding:.6em;overflow-x:auto;font-size:.85em;white-space:pre-wrap}
img{max-width:100%;border:1px solid #ddd;margin:.3em 0}figure{margin:.6em 0}figcaption{font-size:.88em;color:#555}
.grid{display:flex;flex-wrap:wrap;gap:10px}.grid figure{flex:1 1 300px}
"""
#: the metrics of the quickstart's evaluation tables
QUICK_METRICS = ("abs_rel", "rmse", "delta1")


# ---------------------------------------------------------------------------------------------- HTML pieces
def esc(x: Any) -> str:
    return html.escape(str(x))


def fmt(v: Any, digits: int = 4) -> str:
    """A fact for a table cell: 4 significant digits, yes/no, integers as they are, '–' for missing."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:.0f}"
    return esc(v)


def figure(path: str | Path | None, caption: str = "") -> str:
    """A figure with the PNG embedded as a data URI (the report stays one file)."""
    if path is None or not Path(path).is_file():
        return f'<p class="note">(figure missing: {esc(path)})</p>'
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{esc(caption or Path(path).name)}" src="data:image/png;base64,{data}">{cap}</figure>'


def grid(parts: Sequence[str]) -> str:
    return '<div class="grid">' + "".join(parts) + "</div>"


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def page(title: str, body: Sequence[str]) -> str:
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")  # fmt: skip


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
    fig, axes = pyplot().subplots(len(rows), 2 * per_source, figsize=(2.3 * 2 * per_source, 1.9 * len(rows)),
                                  squeeze=False)  # fmt: skip
    for r, src in enumerate(rows):
        for c in range(2 * per_source):
            axes[r, c].set_axis_off()
        for c, s in enumerate(ds[i] for i in picks[src]):
            lo, hi = depth_limits(s.depth, s.valid, (2, 98))
            unit = "m" if s.metric_scale_trusted else "(no unit)"
            axes[r, 2 * c].imshow(s.image)
            axes[r, 2 * c + 1].imshow(_depth_view(s.depth, s.valid, lo, hi))
            axes[r, 2 * c + 1].set_title(f"{lo:.3g}-{hi:.3g} {unit}, valid {100 * s.valid.mean():.1f}%", fontsize=7)
            if c == 0:
                axes[r, 0].set_title(f"{src} ({s.source_kind}{'' if s.metric_scale_trusted else ', untrusted scale'})",
                                     fontsize=8, loc="left")  # fmt: skip
    fig.suptitle("Corpus by source kind: RGB | depth (log scale, near = warm, black = no depth)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
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


def figure_losses(runs: Sequence[tuple[str, Path]], path: Path) -> Path | None:
    """Training loss (and the FoV head's loss) per step of each run's ``log.jsonl``, raw and smoothed, log scale."""
    data = [(name, [r for r in read_jsonl(Path(run) / "log.jsonl") if r.get("kind") == "train"]) for name, run in runs]
    data = [(n, rows) for n, rows in data if rows]
    if not data:
        return None
    fig, axes = pyplot().subplots(1, len(data), figsize=(5.2 * len(data), 3.2), squeeze=False)
    for ax, (name, rows) in zip(axes[0], data, strict=True):
        steps = np.array([r["step"] for r in rows], dtype=float)
        for key, colour in (("loss", "C0"), ("fov_log_tan_l1", "C2")):
            vals = np.array([r.get(key, np.nan) for r in rows], dtype=float)
            if np.isfinite(vals).any():
                ax.plot(steps, vals, lw=0.6, alpha=0.35, color=colour)
                ax.plot(steps, _ema(vals, 0.9 if len(vals) > 30 else 0.6), lw=1.6, color=colour, label=f"{key} (smoothed)")
        ax.set(title=name, xlabel="step", yscale="log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path, bbox_inches="tight")


def figure_pseudo(pseudo: Path, corpus: Path, path: Path, n: int = 4) -> Path:
    """RGB | corpus GT | teacher pseudo-label | confidence for samples of different sources (one scale per row)."""
    index, gt = ShardIndex(pseudo), FolderDataset(corpus)
    by_id = {sid: i for i, sid in enumerate(gt.sample_ids)}
    chosen: dict[str, tuple[int, Any]] = {}  # source -> (shard index, pseudo-labelled sample)
    for k in range(len(index)):
        s = index[k]
        if len(chosen) < n and _source_of(s.sample_id) not in chosen and s.sample_id in by_id:
            chosen[_source_of(s.sample_id)] = (k, s)
    plt = pyplot()
    fig, axes = plt.subplots(len(chosen), 4, figsize=(10.2, 1.9 * len(chosen)), squeeze=False)
    for r, (k, s) in enumerate(chosen.values()):
        g = gt[by_id[s.sample_id]]
        lo, hi = depth_limits(np.concatenate([s.depth[s.valid], g.depth[g.valid]]), True, (2, 98))
        conf = index.extra(k, "confidence")
        panels = [(g.image, "RGB"), (_depth_view(g.depth, g.valid, lo, hi), f"GT ({g.sensor})"),
                  (colorize_depth(s.depth, s.valid, lo, hi), "pseudo-label"),
                  (conf if conf is not None else np.zeros(s.depth.shape), "confidence (flip TTA)")]  # fmt: skip
        for c, (img, title) in enumerate(panels):
            axes[r, c].imshow(img, **({"cmap": "viridis", "vmin": 0, "vmax": 1} if c == 3 else {}))
            axes[r, c].set_title(title, fontsize=8)
            axes[r, c].set_axis_off()
        bar = depth_colorbar(fig, None, lo, hi, ax=axes[r, 2], fraction=0.046, pad=0.02)
        bar.ax.tick_params(labelsize=6)
    fig.suptitle("Teacher pseudo-labels (same depth scale per row, near = warm)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return save_figure(fig, path, bbox_inches="tight")


# ---------------------------------------------------------------------------------------------- the quickstart report
def _stage_table(stages: Mapping[str, Mapping[str, Any]]) -> str:
    rows = []
    for name, r in stages.items():
        status = {"done": '<span class="ok">done</span>', "failed": '<span class="fail">FAILED</span>'}.get(
            r["status"], esc(r["status"]))
        if name == "report" and r["status"] == "pending":
            status = "this page"
        note = f'<span class="fail">{esc(r["error"])}</span>' if r.get("error") else (
            "reused from an earlier run" if r.get("reused") else "")
        rows.append([esc(name), status, f"{r['seconds']:.1f}", note])
    return table(["stage", "status", "wall time (s)", "note"], rows, html=True)


def _training(title: str, info: Mapping[str, Any], what: str) -> list[str]:
    if "run_dir" not in info:
        return [f"<h2>{esc(title)}</h2><p class='note'>not run</p>"]
    plan = info.get("plan", {})
    rows = [
        ["config", f"<code>{esc(info.get('config'))}</code>"],
        ["model preset / overrides", f"{esc(info.get('model_preset'))} / <code>{esc(info.get('model_overrides'))}</code>"],
        ["parameters", f"{info.get('parameters', 0):,}"],
        ["stage budget (s)", fmt(plan.get("budget_s"))],
        ["calibrated seconds per step", fmt(plan.get("seconds_per_step"), 3)],
        ["steps × batch", f"{info.get('steps')} × {plan.get('batch_size')}"],
        ["training wall time (s)", fmt(info.get("train_seconds"))],
        ["first → final loss", f"{fmt(info.get('first_loss'))} → {fmt(info.get('final_loss'))}"],
    ] + [[f"held-out validation: {esc(k)}", fmt(v)] for k, v in sorted(info.get("val", {}).items())]  # fmt: skip
    parts = [f"<h2>{esc(title)}</h2>", f"<p>{what}</p>", table(["", ""], rows, html=True)]
    panels = sorted((Path(info["run_dir"]) / "panels").glob("step_*.png"))
    if panels:
        parts.append(figure(panels[-1], "final validation panel: RGB | prompt | prediction | GT | |error|/GT (0 → 50%)"))
    return parts + [pre(info.get("command", ""))]


def _evaluation(info: Mapping[str, Any]) -> list[str]:
    if not info.get("benchmarks"):
        return ["<h2>5. Evaluation</h2><p class='note'>not run</p>"]
    parts = [
        "<h2>5. Evaluation on the synthetic held-out benchmarks</h2>",
        f"<p>Unseen render seeds, exact GT, GT focal given to the models, no alignment (metric), per-image mean "
        f"over the first {info.get('samples')} samples of each benchmark. <b>Prompted</b>: every predictor gets the "
        f"same <code>{esc(info.get('prompt'))}</code> prompt drawn from the GT. <b>Prompt-free</b>: the image only; "
        f"<code>baseline:train_median</code> predicts the median trusted depth of the training corpus "
        f"({fmt(info.get('train_median_m'))} m) everywhere. Best value per column in bold.</p>",
    ]
    for bench, b in info["benchmarks"].items():
        parts.append(f"<h3>{esc(bench)}</h3><p class='note'>{esc(b.get('description', ''))}</p>")
        columns = {"prompted": f"prompted ({info.get('prompt')})", "prompt_free": "prompt-free"}
        tables, figs = [], []
        for column, label in columns.items():
            c = b.get(column)
            if not c:
                continue
            heads = {esc(p): h for p, h in c["headline"].items()}
            tables.append(f"<div><b>{esc(label)}</b>, {c['num_samples']} images"
                          f"{headline_table(heads, QUICK_METRICS, html=True)}</div>")  # fmt: skip
            d = Path(c["dir"])
            figs.append(figure(d / "error_by_distance.png", f"{bench}, {column}: AbsRel by GT distance"))
            panels = sorted((d / "panels").glob("*.png"))
            if panels:
                figs.append(figure(panels[0], f"{bench}, {column}: qualitative panel (rows = predictors)"))
        parts += [grid(tables), grid(figs)]
    commands = [c["command"] for b in info["benchmarks"].values() for c in (b.get("prompted"), b.get("prompt_free")) if c]
    return parts + [pre("\n".join(commands))]


def _inference(info: Mapping[str, Any]) -> list[str]:
    if not info.get("examples"):
        return ["<h2>6. Inference</h2><p class='note'>not run</p>"]
    rows = []
    for name, e in info["examples"].items():
        s, t = e.get("student", {}), e.get("teacher_prompted", {})
        rows.append([esc(name), fmt(e["true_fx"]), f"{fmt(s.get('fx'))} ({esc(s.get('intrinsics_source'))})",
                     fmt(s.get("abs_rel")), str(e.get("prompt_points")), fmt(t.get("prompt_median_rel_err")),
                     fmt(t.get("abs_rel"))])  # fmt: skip
    figs = []
    for name in info["examples"]:
        figs.append(figure(Path(info["runs"]["student"]["input"]) / f"{name}.png", f"{name}: input"))
        for run, label in (("student", "student (prompt-free)"), ("teacher_prompted", "teacher + prompt")):
            figs.append(figure(Path(info["runs"][run]["out"]) / name / "depth_vis.png", f"{name}: {label}"))
    return [
        "<h2>6. <code>metricanything infer</code> on example images</h2>",
        "<p>Held-out rendered images written as PNG. The <b>student</b> gets no camera (its FoV head estimates the "
        "focal); the <b>teacher</b> gets a sidecar intrinsics JSON and a <code>u,v,z</code> CSV prompt with 1% of "
        "the GT pixels per image. AbsRel against the exact rendered depth.</p>",
        table(["image", "true fx (px)", "student fx (source)", "student AbsRel", "prompt points",
               "teacher median rel. err. at prompts", "teacher AbsRel"], rows, html=True),  # fmt: skip
        grid(figs), pre("\n".join(r.get("command", "") for r in info["runs"].values())),
    ]


def _optional(draw: Any, *args: Any) -> Path | None:
    """A figure, or None when its data is incomplete (a partial report after a failed stage still renders)."""
    try:
        return draw(*args)
    except Exception:  # noqa: BLE001 - a figure never stops the report
        return None


def quickstart_report(summary: Mapping[str, Any]) -> str:
    """``report.html`` of a quickstart record (``quickstart.json``); figures go to ``<out>/figures``."""
    stages = summary["stages"]
    info = {name: r.get("info") or {} for name, r in stages.items()}
    figures = Path(summary["out"]) / "figures"
    total, budget = summary["total_seconds"], summary["budget_seconds"]
    failed = [n for n, r in stages.items() if r["status"] == "failed"]
    verdict = (f'<span class="fail">FAILED at stage {esc(failed[0])}</span>' if failed else
               '<span class="ok">within the budget</span>' if total <= budget else '<span class="fail">over the budget</span>')  # fmt: skip
    reused = sum(1 for r in stages.values() if r.get("reused"))
    body = [
        "<h1>metricanything quickstart</h1>",
        "<p>A real, end-to-end run of the pipeline on data rendered by the project itself: render → pretrain the "
        "prompt-conditioned teacher (Robust MAE on Sparse Metric Prompts) → pseudo-label → distil the prompt-free "
        "student → evaluate against baselines → infer. Tiny models, minutes of CPU: the numbers show the pipeline "
        "working, not the quality of the method at scale.</p>",
        f"<p><b>Total wall time {total:.1f} s</b>"
        + (f" (this invocation {summary['this_run_seconds']:.1f} s + {reused} stage(s) reused from an earlier run)"
           if reused else "")
        + f" for a budget of {budget:.0f} s: {verdict}. {esc(summary['environment'])}; {summary['threads']} torch "
        f"thread(s); seed {summary['seed']}. Output folder <code>{esc(summary['out'])}</code>.</p>",
        "<h2>Stages and wall times</h2>" + _stage_table(stages),
    ]  # fmt: skip
    body += [f"<p class='fail'>{esc(n)} failed:</p>{pre(r['info']['traceback'])}" for n, r in stages.items()
             if r["status"] == "failed" and (r.get("info") or {}).get("traceback")]  # fmt: skip
    ri = info["render"]
    if ri.get("by_source"):
        order = [s for s in ri.get("sources", ()) if s in ri["by_source"]] + sorted(set(ri["by_source"]) - set(ri.get("sources", ())))
        rows = [[esc(src), esc(d["sensor"]), esc(d["source_kind"]), fmt(d["metric_scale_trusted"]), str(d["count"]),
                 f"{100 * d['mean_valid_fraction']:.1f}%"] for src, d in ((s, ri["by_source"][s]) for s in order)]  # fmt: skip
        body += [
            "<h2>1. Heterogeneous corpus</h2>",
            f"<p>{ri['num_samples']} samples at {ri['size'][0]}×{ri['size'][1]} from the embedded ray-caster through "
            "the simulated sensors (exact renders, captured LiDAR / ToF / structured light / stereo, reconstructed "
            "SfM / MVS with untrusted scale).</p>",
            table(["source", "sensor", "family", "metric scale trusted", "samples", "mean valid pixels"], rows, html=True),
            figure(_optional(figure_corpus, Path(ri["out"]), figures / "corpus_by_source.png", order),
                   "two samples per source kind"),
            pre(ri.get("command", "")),
        ]  # fmt: skip
    body += _training(
        "2. Teacher pretraining", info["pretrain"],
        "Prompt-conditioned ViT + DPT teacher; Sparse Metric Prompts sampled on the fly from each training view; "
        "Robust MAE (the highest-error 20% of valid pixels dropped per image) on the full valid target. Validation: "
        "held-out renders with 1% prompts (<code>abs_rel</code>, <code>delta1</code>) and without prompts "
        "(<code>*_noprompt</code>).",
    )  # fmt: skip
    runs = [(label, Path(info[s]["run_dir"])) for s, label in (("pretrain", "teacher (Robust MAE)"),
            ("distill", "student (distance-balanced L1)")) if "run_dir" in info[s]]  # fmt: skip
    losses = _optional(figure_losses, runs, figures / "training_losses.png")
    if losses is not None:
        body.append(figure(losses, "training losses (log scale)"))
    pi = info["pseudo_label"]
    if "out" in pi:
        body += [
            "<h2>3. Pseudo-labels</h2>",
            table(["", ""], [
                ["samples / shards", f"{pi['num_samples']} / {pi['num_shards']}"],
                ["mean valid fraction of the labels", fmt(pi.get("label_valid_fraction"))],
                ["mean confidence", fmt(pi.get("mean_confidence"))],
                [f"AbsRel vs. trusted corpus GT ({pi.get('num_compared')} samples)", fmt(pi.get("abs_rel_vs_trusted_gt"))],
            ], html=True),
            figure(_optional(figure_pseudo, Path(pi["out"]), Path(ri["out"]), figures / "pseudo_labels.png"),
                   "dense pseudo-labels also where the sensor gave sparse or no depth"),
            pre(pi.get("command", "")),
        ]  # fmt: skip
    body += _training(
        "4. Student distillation", info["distill"],
        "Prompt-free multi-resolution ViT student (canonical inverse depth) with a FoV head, encoder initialised "
        "from the teacher, trained on the pseudo-labels with the distance-balanced inverse-depth L1. Validation: "
        "held-out renders with the GT focal; <code>fov_abs_err_deg</code> is the FoV head's error.",
    )  # fmt: skip
    body += _evaluation(info["evaluate"]) + _inference(info["infer"])
    body.append("<h2>Reproduce</h2><p>Each stage above lists the equivalent stand-alone command. This run:</p>"
                + pre(summary["command"]))  # fmt: skip
    return page("metricanything quickstart", body)


__all__ = ["CSS", "esc", "figure", "figure_corpus", "figure_losses", "figure_pseudo", "fmt", "page",
           "quickstart_report", "read_jsonl"]  # fmt: skip
