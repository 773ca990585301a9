"""Self-contained HTML reports (PNG figures embedded as data URIs, no network) and their figures.

:func:`quickstart_report` turns the record of a ``metricanything quickstart`` run (``OUT/quickstart.json``:
every stage's wall time, status, facts and equivalent command) into ``OUT/report.html``. Tables come from
:mod:`metricanything.eval.report` (the same tables as ``report.md``, as HTML), the figures from
:mod:`metricanything.eval.html_figures`.

Every section opens with a short explanation (``<p class="explain">``) written from the run's own numbers:
what the section shows, how to read its figures, and what stands out (a model below a baseline, a loss that
ends higher than it starts, a flat prediction) only when the numbers say so. Figures are drawn about as wide
as the page (~1,200 px at 100 dpi, text at ~10 pt) and shown at full content width; a click on any figure
enlarges it to the window.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from metricanything.eval.html_figures import (
    depth_range,
    figure_corpus,
    figure_examples,
    figure_losses,
    figure_pseudo,
    flat_tile,
    read_jsonl,
    train_rows,
)
from metricanything.eval.report import headline_table, table

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1220px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0 1.2em 0;font-size:.92em;max-width:100%}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}.best{font-weight:bold;background:#eaf6ea}
table.kv td:first-child{background:#f7f7f7}td code{overflow-wrap:anywhere;word-break:break-word}
.note{color:#555;font-size:.92em}.fail{color:#b00;font-weight:bold}.ok{color:#070}
.explain{background:#f3f7fd;border-left:4px solid #6f9fd8;padding:.5em .9em;margin:.8em 0}
code,pre{background:#f6f6f6;border-radius:3px}pre{padding:.6em;overflow-x:auto;font-size:.85em;white-space:pre-wrap;
overflow-wrap:anywhere}
figure{margin:.8em 0;max-width:100%}figcaption{font-size:.9em;color:#444;margin-top:.2em}
figure img{display:block;max-width:100%;height:auto;border:1px solid #ddd;cursor:zoom-in;box-sizing:border-box}
figure img.px{width:100%;image-rendering:pixelated}
figure img.zoomed{position:fixed;inset:0;margin:auto;width:98vw;height:98vh;max-width:none;object-fit:contain;
z-index:10;background:#fff;box-shadow:0 0 0 100vmax rgba(0,0,0,.6);cursor:zoom-out}
.tiles{display:grid;grid-template-columns:repeat(5,1fr);font-size:.9em;color:#444;text-align:center}
.tables{display:flex;flex-wrap:wrap;gap:0 2em}.tables>div{max-width:100%}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(440px,1fr));gap:12px}
"""
#: a click on a figure's picture enlarges it to the window; another click (or Escape) shrinks it back
SCRIPT = """
document.addEventListener('click', e => {
  const img = e.target.closest('figure img');
  document.querySelectorAll('img.zoomed').forEach(z => { if (z !== img) z.classList.remove('zoomed'); });
  if (img) img.classList.toggle('zoomed');
});
document.addEventListener('keydown', e => {
  if (e.key === 'Escape') document.querySelectorAll('img.zoomed').forEach(z => z.classList.remove('zoomed'));
});
"""
#: the metrics of the quickstart's evaluation tables
QUICK_METRICS = ("abs_rel", "rmse", "delta1")
#: a training loss "moves" when the mean of its last tenth of steps differs from its first tenth by more than this
LOSS_TREND = 0.10


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


def span(lo: float, hi: float, unit: str = "") -> str:
    """'lo–hi unit' with enough significant digits (3 to 6) for the two ends to differ where they do."""
    digits = 3
    while digits < 6 and lo != hi and f"{lo:.{digits}g}" == f"{hi:.{digits}g}":
        digits += 1
    return f"{lo:.{digits}g}–{hi:.{digits}g}{unit}"


def g3(v: float | None) -> str:
    """A number in running text: 3 significant digits ('–' for missing)."""
    return "–" if v is None or not math.isfinite(v) else f"{v:.3g}"


def figure(path: str | Path | None, caption: str = "", pixelated: bool = False, above: str = "") -> str:
    """A figure with the PNG embedded as a data URI (the report stays one file). ``pixelated``: shown at the full
    content width with nearest-neighbour enlargement (small training panels); ``above``: HTML over the picture."""
    if path is None or not Path(path).is_file():
        return f'<p class="note">(figure missing: {esc(path)})</p>'
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    cls = ' class="px"' if pixelated else ""
    return (f'<figure>{above}<img{cls} alt="{esc(caption or Path(path).name)}" title="click to enlarge" '
            f'src="data:image/png;base64,{data}">{cap}</figure>')  # fmt: skip


def grid(parts: Sequence[str]) -> str:
    return '<div class="grid2">' + "".join(parts) + "</div>"


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def explain(*sentences: str) -> str:
    """The section's explanation paragraph (sentences are HTML; empty ones are dropped)."""
    return '<p class="explain">' + " ".join(s for s in sentences if s) + "</p>"


def kv_table(rows: Sequence[Sequence[str]]) -> str:
    """A two-column table of facts (name | value), without a header row (cells are HTML)."""
    body = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def section(key: str, title: str, parts: Sequence[str]) -> str:
    return f'<section id="{esc(key)}"><h2>{title}</h2>\n' + "\n".join(parts) + "\n</section>"


def page(title: str, body: Sequence[str]) -> str:
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + f"\n<script>{SCRIPT}</script>\n</body></html>\n")  # fmt: skip


# ---------------------------------------------------------------------------------------------- facts for the text
def loss_trend(rows: Sequence[Mapping[str, Any]]) -> dict[str, float] | None:
    """The training loss over a run: means of the first and last tenth of the steps (at least one step each),
    the 10th-90th percentile of the per-step loss and, where the log has ``prompt_free``, the median loss of
    steps with and without prompt-free samples."""
    loss = np.array([r["loss"] for r in rows], dtype=float)
    loss = loss[np.isfinite(loss)]
    if loss.size < 2:
        return None
    k = max(1, loss.size // 10)
    out = {"first": float(loss[0]), "final": float(loss[-1]), "start": float(loss[:k].mean()),
           "end": float(loss[-k:].mean()), "tenth": k, "steps": int(loss.size),
           "p10": float(np.percentile(loss, 10)), "p90": float(np.percentile(loss, 90))}  # fmt: skip
    free = np.array([r.get("prompt_free", np.nan) for r in rows], dtype=float)
    with_free, without = (free > 0) & np.isfinite(free), free == 0
    if with_free.sum() >= 5 and without.sum() >= 5:
        all_loss = np.array([r["loss"] for r in rows], dtype=float)
        out["median_with_prompt_free"] = float(np.nanmedian(all_loss[with_free]))
        out["median_all_prompted"] = float(np.nanmedian(all_loss[without]))
    return out


def _loss_sentences(t: Mapping[str, float] | None, steps: Any, batch: Any) -> str:
    if t is None:
        return ""
    tenth = f"mean over the first {t['tenth']} steps {g3(t['start'])}, over the last {t['tenth']} {g3(t['end'])}"
    change = t["end"] / t["start"] - 1 if t["start"] > 0 else 0.0
    if change > LOSS_TREND:
        text = (f"<b>The loss curve ends higher than it starts</b> ({tenth}, {100 * change:+.0f}%): in {steps} steps "
                f"of {batch} images this CPU-minutes run has not converged, so read the held-out validation below "
                "rather than the training loss.")  # fmt: skip
    elif change < -LOSS_TREND:
        text = f"The loss falls ({tenth}, {100 * change:+.0f}%)."
    else:
        text = f"The loss is about flat ({tenth}, {100 * change:+.0f}%): {steps} steps of {batch} images are few."
    if (t["final"] > t["first"]) != (t["end"] > t["start"]):
        text += (f" The first and final single steps ({g3(t['first'])} → {g3(t['final'])}) say the opposite: single "
                 f"batches differ a lot (10–90th percentile of the per-step loss {g3(t['p10'])}–{g3(t['p90'])}), so "
                 "read the smoothed curve.")  # fmt: skip
    if "median_with_prompt_free" in t:
        text += (f" Steps whose batch holds prompt-free samples have a median loss of {g3(t['median_with_prompt_free'])}"
                 f" against {g3(t['median_all_prompted'])} for fully prompted batches: much of the spread is the "
                 "prompt-free share of each batch.")  # fmt: skip
    return text



# ---------------------------------------------------------------------------------------------- sections
#: the quickstart's stages in running order (a record read back from JSON may list them sorted by name)
STAGE_ORDER = ("render", "pretrain", "pseudo_label", "distill", "evaluate", "infer", "report")


def _in_order(stages: Mapping[str, Any]) -> dict[str, Any]:
    known = [s for s in STAGE_ORDER if s in stages]
    return {s: stages[s] for s in known + [s for s in stages if s not in known]}


def _stage_table(stages: Mapping[str, Mapping[str, Any]]) -> str:
    rows, notes = [], False
    for name, r in stages.items():
        status = {"done": '<span class="ok">done</span>', "failed": '<span class="fail">FAILED</span>'}.get(
            r["status"], esc(r["status"]))
        if name == "report" and r["status"] == "pending":
            status = "this page"
        note = f'<span class="fail">{esc(r["error"])}</span>' if r.get("error") else (
            "reused from an earlier run" if r.get("reused") else "")
        notes = notes or bool(note)
        rows.append([esc(name), status, f"{r['seconds']:.1f}", note])
    if not notes:  # no empty column
        return table(["stage", "status", "wall time (s)"], [r[:3] for r in rows], html=True)
    return table(["stage", "status", "wall time (s)", "note"], rows, html=True)


def _explain_stages(stages: Mapping[str, Mapping[str, Any]], total: float, budget: float) -> str:
    timed = {n: r["seconds"] for n, r in stages.items() if r.get("seconds")}
    failed = [n for n, r in stages.items() if r["status"] == "failed"]
    longest = max(timed, key=timed.get) if timed else None
    parts = [f"Wall time of each stage, in order; together {total:.0f} s of the {budget:.0f} s budget."]
    if longest and total > 0:
        parts.append(f"The longest is <b>{esc(longest)}</b>: {timed[longest]:.0f} s, {100 * timed[longest] / total:.0f}% "
                     "of the run (the training stages share the budget by plan, see sections 2 and 4).")  # fmt: skip
    if failed:
        parts.append(f"<b>Stage {esc(failed[0])} failed</b>: the sections after it are missing; its error is below.")
    return explain(*parts)


def _training(key: str, title: str, info: Mapping[str, Any], what: str, figures: Path) -> str:
    if "run_dir" not in info:
        return section(key, esc(title), [explain(f"Not run: {what}")])
    plan = info.get("plan", {})
    val = info.get("val", {})
    rows = [
        ["config", f"<code>{esc(info.get('config'))}</code>"],
        ["model preset / overrides", f"{esc(info.get('model_preset'))} / <code>{esc(info.get('model_overrides'))}</code>"],
        ["parameters", f"{info.get('parameters', 0):,}"],
        ["stage budget (s)", fmt(plan.get("budget_s"))],
        ["calibrated seconds per step", fmt(plan.get("seconds_per_step"), 3)],
        ["steps × batch", f"{info.get('steps')} × {plan.get('batch_size')}"],
        ["training wall time (s)", fmt(info.get("train_seconds"))],
        ["first → final loss (single steps)", f"{fmt(info.get('first_loss'))} → {fmt(info.get('final_loss'))}"],
    ] + [[f"held-out validation: {esc(k)}", fmt(v)] for k, v in sorted(val.items())]  # fmt: skip
    run = Path(info["run_dir"])
    trend = loss_trend(train_rows(run))
    sentences = [f"{info.get('steps')} steps of {plan.get('batch_size')} images in {fmt(info.get('train_seconds'))} s.",
                 _loss_sentences(trend, info.get("steps"), plan.get("batch_size"))]  # fmt: skip
    if "abs_rel_noprompt" in val:  # the teacher
        sentences.append(f"On held-out renders with 1% prompt points its AbsRel is {g3(val.get('abs_rel'))} "
                         f"(δ1 {g3(val.get('delta1'))}); without prompts {g3(val.get('abs_rel_noprompt'))} "
                         f"(δ1 {g3(val.get('delta1_noprompt'))})"
                         + (": its metric scale comes from the prompts." if val.get("abs_rel_noprompt", 0) > 3 * val.get("abs_rel", 1)
                            else "."))  # fmt: skip
    elif "abs_rel" in val:
        fov = f"; the FoV head is off by {g3(val['fov_abs_err_deg'])}° on average" if "fov_abs_err_deg" in val else ""
        sentences.append(f"On held-out renders with the true focal its AbsRel is {g3(val.get('abs_rel'))} "
                         f"(δ1 {g3(val.get('delta1'))}){fov}.")  # fmt: skip
    panels = sorted((run / "panels").glob("step_*.png"))
    if panels:
        sentences.append("The panel shows one held-out image: RGB | prompt points | prediction | GT | |error|/GT; its "
                         "depth colours span that image's GT (2–98th percentile, log scale, near = warm; the strip "
                         "under the panel is its colour bar in metres); the error is black at 0 and pale yellow at "
                         "50% or more.")  # fmt: skip
        if flat_tile(panels[-1], 2):
            sentences.append("<b>Its prediction is one flat colour</b>: the model predicts about the same depth everywhere.")
    parts = [f"<p>{what}</p>", explain(*sentences), kv_table(rows)]
    losses = figure_losses([(title, run)], figures / f"loss_{key}.png") if trend else None
    if losses is not None:
        parts.append(figure(losses, "training loss per step (thin: each batch, thick: smoothed), log scale"))
    if panels:
        labels = "".join(f"<span>{t}</span>" for t in ("RGB", "prompt", "prediction", "GT", "|error| / GT"))
        parts.append(figure(panels[-1], f"final validation panel ({panels[-1].name}), enlarged", pixelated=True,
                            above=f'<div class="tiles">{labels}</div>'))  # fmt: skip
    return section(key, esc(title), [*parts, pre(info.get("command", ""))])


def _explain_benchmark(bench: str, b: Mapping[str, Any], info: Mapping[str, Any], student_steps: Any) -> str:
    out = []
    prompted = (b.get("prompted") or {}).get("headline") or {}
    teacher = next((p for p in prompted if p.startswith("teacher:")), None)
    bases = {p: h["abs_rel"] for p, h in prompted.items() if p.startswith("baseline:") and h and h.get("abs_rel") is not None}
    if teacher and prompted[teacher] and bases:
        best = min(bases, key=bases.get)
        t = prompted[teacher]["abs_rel"]
        verdict = "better than" if t < bases[best] else "<b>worse than</b>"
        out.append(f"<b>Prompted</b>: with the same {esc(info.get('prompt'))} prompt the teacher's AbsRel {g3(t)} is "
                   f"{verdict} the best prompt-completion baseline ({esc(best)}, {g3(bases[best])}).")  # fmt: skip
    free = (b.get("prompt_free") or {}).get("headline") or {}
    student = next((p for p in free if p.startswith("student:")), None)
    median = next((p for p in free if p.startswith("baseline:train_median")), None)
    if student and median and free[student] and free[median]:
        s, m = free[student], free[median]
        if s["abs_rel"] > m["abs_rel"]:
            out.append(f"<b>Prompt-free</b>: the student (AbsRel {g3(s['abs_rel'])}, δ1 {g3(s.get('delta1'))}) is "
                       f"<b>below the constant median baseline</b> (AbsRel {g3(m['abs_rel'])}, δ1 {g3(m.get('delta1'))}),"
                       f" which predicts {fmt(info.get('train_median_m'), 3)} m everywhere: expected for a CPU-minutes "
                       f"demonstrator ({student_steps} training steps, see section 4); a useful prompt-free model must "
                       "clear this floor.")  # fmt: skip
        else:
            out.append(f"<b>Prompt-free</b>: the student (AbsRel {g3(s['abs_rel'])}) beats the constant median baseline "
                       f"(AbsRel {g3(m['abs_rel'])}, {fmt(info.get('train_median_m'), 3)} m everywhere).")  # fmt: skip
        t = next((p for p in free if p.startswith("teacher:")), None)
        if t and free[t] and free[t]["abs_rel"] > m["abs_rel"]:
            out.append(f"The teacher without prompts (AbsRel {g3(free[t]['abs_rel'])}) is also worse than the constant: "
                       "it is built to take its metric scale from prompts.")  # fmt: skip
    out.append("Figures: AbsRel per GT-distance bin (lower is better, one line per model), then one qualitative "
               "panel per column (rows = models; depth and error colour bars under the panel).")
    return explain(*out)


def _evaluation(info: Mapping[str, Any], student_steps: Any) -> str:
    title = "5. Evaluation on the synthetic held-out benchmarks"
    if not info.get("benchmarks"):
        return section("evaluate", title, [explain("Not run.")])
    parts = [
        f"<p>Unseen render seeds, exact GT, GT focal given to the models, no alignment (metric), per-image mean "
        f"over the first {info.get('samples')} samples of each benchmark. <b>Prompted</b>: every predictor gets the "
        f"same <code>{esc(info.get('prompt'))}</code> prompt drawn from the GT. <b>Prompt-free</b>: the image only; "
        f"<code>baseline:train_median</code> predicts the median trusted depth of the training corpus "
        f"({fmt(info.get('train_median_m'))} m) everywhere. Best value per column in bold.</p>",
    ]
    for bench, b in info["benchmarks"].items():
        parts.append(f"<h3>{esc(bench)}</h3><p class='note'>{esc(b.get('description', ''))}</p>")
        parts.append(_explain_benchmark(bench, b, info, student_steps))
        columns = {"prompted": f"prompted ({esc(info.get('prompt'))})", "prompt_free": "prompt-free"}
        tables, curves, panels = [], [], []
        for column, label in columns.items():
            c = b.get(column)
            if not c:
                continue
            heads = {esc(p): h for p, h in c["headline"].items()}
            tables.append(f"<div><b>{label}</b>, {c['num_samples']} images"
                          f"{headline_table(heads, QUICK_METRICS, html=True)}</div>")  # fmt: skip
            d = Path(c["dir"])
            curves.append(figure(d / "error_by_distance.png", f"{bench}, {column}: AbsRel by GT distance"))
            panels += [figure(p, f"{bench}, {column}: qualitative panel (rows = models)")
                       for p in sorted((d / "panels").glob("*.png"))[:1]]  # fmt: skip
        parts += ['<div class="tables">' + "".join(tables) + "</div>", grid(curves), *panels]
    commands = [c["command"] for b in info["benchmarks"].values() for c in (b.get("prompted"), b.get("prompt_free")) if c]
    return section("evaluate", title, [*parts, pre("\n".join(commands))])


def _explain_inference(info: Mapping[str, Any]) -> str:
    ex = info["examples"]
    out = []
    est = [(e["student"]["fx"], e["true_fx"]) for e in ex.values() if (e.get("student") or {}).get("fx") and e.get("true_fx")]
    if est:
        f, t = np.array(est).T
        rel = np.abs(f / t - 1)
        out.append(f"The student's FoV head estimated focal lengths of {span(f.min(), f.max(), ' px')} where the true "
                   f"ones are {span(t.min(), t.max(), ' px')} (median error {100 * np.median(rel):.0f}%; metric depth "
                   "scales with the focal, so this is also a depth-scale error).")  # fmt: skip
        if len(f) > 1 and np.ptp(f) < 0.05 * f.mean() and np.ptp(t) > 0.2 * t.mean():
            out.append("<b>It gives about the same focal for every image</b> while the true focal varies.")
    runs = info.get("runs") or {}
    if "student" in runs:
        flat = [(n, r) for n in ex if (r := depth_range(Path(runs["student"]["out"]) / n / "depth.npy")) and r[1] < 1.05 * r[0]]
        if flat:
            n, (lo, hi) = flat[0]
            out.append(f"<b>The student's depth is nearly constant</b> on {len(flat)} of {len(ex)} images "
                       f"(e.g. {esc(n)}: 1st–99th percentile {span(lo, hi, ' m')}).")  # fmt: skip
    teacher = [e["teacher_prompted"] for e in ex.values() if (e.get("teacher_prompted") or {}).get("abs_rel") is not None]
    if teacher:
        a = [t["abs_rel"] for t in teacher]
        p = [t.get("prompt_median_rel_err") for t in teacher if t.get("prompt_median_rel_err") is not None]
        out.append(f"With the sidecar focal and 1% GT prompt points the teacher's AbsRel is {min(a):.3g}–{max(a):.3g}"
                   + (f" and it reproduces its prompts to a median {100 * min(p):.2g}–{100 * max(p):.2g}%." if p else "."))
    out.append("The figure: one row per image, the exact depth and both predictions on one colour scale per row.")
    return explain(*out)


def _inference(info: Mapping[str, Any], figures: Path) -> str:
    title = "6. <code>metricanything infer</code> on example images"
    if not info.get("examples"):
        return section("infer", title, [explain("Not run.")])
    rows = []
    for name, e in info["examples"].items():
        s, t = e.get("student", {}), e.get("teacher_prompted", {})
        rows.append([esc(name), fmt(e["true_fx"]), f"{fmt(s.get('fx'))} ({esc(s.get('intrinsics_source'))})",
                     fmt(s.get("abs_rel")), str(e.get("prompt_points")), fmt(t.get("prompt_median_rel_err")),
                     fmt(t.get("abs_rel"))])  # fmt: skip
    parts = [
        "<p>Held-out rendered images written as PNG. The <b>student</b> gets no camera (its FoV head estimates the "
        "focal); the <b>teacher</b> gets a sidecar intrinsics JSON and a <code>u,v,z</code> CSV prompt with 1% of "
        "the GT pixels per image. AbsRel against the exact rendered depth.</p>",
        _explain_inference(info),
        table(["image", "true fx (px)", "student fx (source)", "student AbsRel", "prompt points",
               "teacher median rel. err. at prompts", "teacher AbsRel"], rows, html=True),  # fmt: skip
        figure(_optional(figure_examples, info, figures / "infer_examples.png"),
               "input | exact depth | student | teacher + prompt (each depth_vis.png in the infer folders has its own bar)"),
    ]  # fmt: skip
    return section("infer", title, [*parts, pre("\n".join(r.get("command", "") for r in (info.get("runs") or {}).values()))])


def _optional(draw: Any, *args: Any) -> Path | None:
    """A figure, or None when its data is incomplete (a partial report after a failed stage still renders)."""
    try:
        return draw(*args)
    except Exception:  # noqa: BLE001 - a figure never stops the report
        return None


def _corpus(ri: Mapping[str, Any], figures: Path) -> str:
    order = [s for s in ri.get("sources", ()) if s in ri["by_source"]] + sorted(set(ri["by_source"]) - set(ri.get("sources", ())))
    by = {s: ri["by_source"][s] for s in order}
    rows = [[esc(src), esc(d["sensor"]), esc(d["source_kind"]), fmt(d["metric_scale_trusted"]), str(d["count"]),
             f"{100 * d['mean_valid_fraction']:.1f}%"] for src, d in by.items()]  # fmt: skip
    sparse = sorted((d["mean_valid_fraction"], s) for s, d in by.items() if d["mean_valid_fraction"] < 0.5)
    untrusted = [s for s, d in by.items() if not d["metric_scale_trusted"]]
    sentences = [f"{ri['num_samples']} samples from {len(by)} simulated sources, as a real corpus mixes them.",
                 ("Sparse sources leave most pixels without depth (black in the figure): "
                  + ", ".join(f"{esc(s)} {100 * v:.1f}%" for v, s in sparse) + " of the pixels valid.") if sparse else "",
                 (f"{', '.join(map(esc, untrusted))} {'has' if len(untrusted) == 1 else 'have'} an untrusted scale: "
                  "their depth has no metric unit.") if untrusted else "",
                 "Each depth picture has its own colour range (2–98th percentile, log scale, near = warm), written "
                 "above it."]  # fmt: skip
    return section("corpus", "1. Heterogeneous corpus", [
        f"<p>{ri['num_samples']} samples at {ri['size'][0]}×{ri['size'][1]} from the embedded ray-caster through "
        "the simulated sensors (exact renders, captured LiDAR / ToF / structured light / stereo, reconstructed "
        "SfM / MVS with untrusted scale).</p>",
        explain(*sentences),
        table(["source", "sensor", "family", "metric scale trusted", "samples", "mean valid pixels"], rows, html=True),
        figure(_optional(figure_corpus, Path(ri["out"]), figures / "corpus_by_source.png", order), "two samples per source kind"),
        pre(ri.get("command", "")),
    ])  # fmt: skip


def _pseudo(pi: Mapping[str, Any], ri: Mapping[str, Any], figures: Path) -> str:
    by = ri.get("by_source") or {}
    n = sum(d["count"] for d in by.values())
    corpus_valid = sum(d["count"] * d["mean_valid_fraction"] for d in by.values()) / n if n else None
    label_valid = pi.get("label_valid_fraction")
    sentences = [f"The teacher labelled all {pi.get('num_samples')} corpus samples with dense depth"
                 + (f": its labels cover {100 * label_valid:.1f}% of the pixels where the sensors covered "
                    f"{100 * corpus_valid:.1f}% on average." if label_valid is not None and corpus_valid is not None else "."),
                 f"Against the trusted-scale GT ({pi.get('num_compared')} samples) the labels' AbsRel is "
                 f"{g3(pi.get('abs_rel_vs_trusted_gt'))}; mean confidence {g3(pi.get('mean_confidence'))}.",
                 "The figure: one source per row; GT and pseudo-label share the colour bar of the row (metres); "
                 "confidence is the flip test-time-augmentation agreement (yellow = 1 = agree)."]  # fmt: skip
    return section("pseudo", "3. Pseudo-labels", [
        explain(*sentences),
        kv_table([
            ["samples / shards", f"{pi['num_samples']} / {pi['num_shards']}"],
            ["mean valid fraction of the labels", fmt(label_valid)],
            ["mean confidence", fmt(pi.get("mean_confidence"))],
            [f"AbsRel vs. trusted corpus GT ({pi.get('num_compared')} samples)", fmt(pi.get("abs_rel_vs_trusted_gt"))],
        ]),
        figure(_optional(figure_pseudo, Path(pi["out"]), Path(ri["out"]), figures / "pseudo_labels.png"),
               "dense pseudo-labels also where the sensor gave sparse or no depth"),
        pre(pi.get("command", "")),
    ])  # fmt: skip


# ---------------------------------------------------------------------------------------------- the quickstart report
def quickstart_report(summary: Mapping[str, Any]) -> str:
    """``report.html`` of a quickstart record (``quickstart.json``); figures go to ``<out>/figures``."""
    stages = _in_order(summary["stages"])
    info = {name: r.get("info") or {} for name, r in stages.items()}
    figures = Path(summary["out"]) / "figures"
    figures.mkdir(parents=True, exist_ok=True)
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
        "working, not the quality of the method at scale. Each section starts with a shaded note on how to read it; "
        "click a figure to enlarge it.</p>",
        f"<p><b>Total wall time {total:.1f} s</b>"
        + (f" (this invocation {summary['this_run_seconds']:.1f} s + {reused} stage(s) reused from an earlier run)"
           if reused else "")
        + f" for a budget of {budget:.0f} s: {verdict}. {esc(summary['environment'])}; {summary['threads']} torch "
        f"thread(s); seed {summary['seed']}. Output folder <code>{esc(summary['out'])}</code>.</p>",
    ]  # fmt: skip
    tracebacks = [f"<p class='fail'>{esc(n)} failed:</p>{pre(r['info']['traceback'])}" for n, r in stages.items()
                  if r["status"] == "failed" and (r.get("info") or {}).get("traceback")]  # fmt: skip
    body.append(section("stages", "Stages and wall times",
                        [_explain_stages(stages, total, budget), _stage_table(stages), *tracebacks]))  # fmt: skip
    ri = info.get("render", {})
    if ri.get("by_source"):
        body.append(_corpus(ri, figures))
    body.append(_training(
        "pretrain", "2. Teacher pretraining", info.get("pretrain", {}),
        "Prompt-conditioned ViT + DPT teacher; Sparse Metric Prompts sampled on the fly from each training view; "
        "Robust MAE (the highest-error 20% of valid pixels dropped per image) on the full valid target. Validation: "
        "held-out renders with 1% prompts (<code>abs_rel</code>, <code>delta1</code>) and without prompts "
        "(<code>*_noprompt</code>).", figures,
    ))  # fmt: skip
    pi = info.get("pseudo_label", {})
    if "out" in pi:
        body.append(_pseudo(pi, ri, figures))
    body.append(_training(
        "distill", "4. Student distillation", info.get("distill", {}),
        "Prompt-free multi-resolution ViT student (canonical inverse depth) with a FoV head, encoder initialised "
        "from the teacher, trained on the pseudo-labels with the distance-balanced inverse-depth L1. Validation: "
        "held-out renders with the GT focal; <code>fov_abs_err_deg</code> is the FoV head's error.", figures,
    ))  # fmt: skip
    body.append(_evaluation(info.get("evaluate", {}), info.get("distill", {}).get("steps")))
    body.append(_inference(info.get("infer", {}), figures))
    body.append(section("reproduce", "Reproduce", [
        explain("One command reruns this whole run with the same options (finished stages of an existing output "
                "folder are reused); each section above lists the stand-alone command of its stage."),
        pre(summary["command"])]))  # fmt: skip
    return page("metricanything quickstart", body)


__all__ = ["CSS", "esc", "explain", "figure", "figure_corpus", "figure_examples", "figure_losses", "figure_pseudo",
           "fmt", "kv_table", "loss_trend", "page", "quickstart_report", "read_jsonl", "span"]  # fmt: skip
