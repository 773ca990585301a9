"""The paper's claims in miniature, scored on the real frames (``../shared/real_frames``, ``real_dev`` protocol).

1. Scaling: the fixed recipe (``--config``, default ``teacher_bundled``) trained on data sizes 4x apart; real-frame
   AbsRel with 1 % prompts should fall monotonically with data. Data size = samples seen = steps x batch, every
   one a distinct fresh render (an endless ``render`` source of the bundled corpus's source kinds: item i is
   rendered from seed i, one pass, so each row's data is a prefix of the next row's).
2. Robust MAE: the same recipe when one source kind carries gross label errors (``--outlier-sources``, default
   the simulated stereo source; ``--outlier-fraction`` of its valid pixels get depth * exp(+-U(0.3, 1.2))),
   trained with the trimmed loss (trim 0.2) and the plain one (trim 0).
3. Prompt sparsity: one teacher (``--teacher``, default the bundled one) and Delaunay-linear interpolation at
   0.01 %, 0.1 %, 1 % and 10 % prompts.

Trainings run through ``metricanything pretrain --config CONFIG --set ...`` (in-process; every command is
recorded). The real frames are a benchmark only: nothing trains or tunes on them. Scoring is the ``real_dev``
benchmark (``metricanything.eval``): ``frac:F`` prompts drawn with ``numpy.random.default_rng(0)``, scored on
the other valid pixels, no alignment, next to ``baseline:linear`` on the same prompts. Figures per cell: mean
AbsRel over frames (teacher, linear) and the geometric mean over frames of teacher AbsRel / linear AbsRel.
Exits 0 with a SKIP message when the frames are absent.

Usage::

    python benchmarks/paper_claims.py --out runs/paper_claims     # all three tables, ~24 min on 1 thread (measured)
    python benchmarks/paper_claims.py --quick --out runs/claims_q  # a few steps, 2 frames, 64 px: smoke run
    python benchmarks/paper_claims.py --skip scaling --skip robust --teacher runs/teacher/model
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BUNDLED_TEACHER = REPO / "src" / "metricanything" / "assets" / "models" / "teacher"
#: the source kinds of the bundled teacher's corpus (scripts/train_bundled.sh)
CORPUS_KINDS = ["rendered", "lidar", "tof", "structured_light", "stereo", "sfm", "mvs"]
LINEAR = "baseline:linear"
#: the teacher's parameter-free reference alone (what its learned correction has to beat)
REFERENCE = "baseline:knn_plane_guided"
SCALING_COLUMN = "frac:0.01"
DENSITIES = (0.0001, 0.001, 0.01, 0.1)
PARTS = ("scaling", "robust", "sparsity")
DATA_SIZE = ("data size = samples seen = steps x batch; every sample a distinct fresh render "
             "(endless render source, item i from seed i, one pass; each row's data is a prefix of the next's)")


@dataclasses.dataclass(frozen=True)
class Plan:
    """Sizes and settings of one run of the script (``--quick`` shrinks them)."""

    sizes: tuple[int, ...] = (80, 320, 1280, 5120)
    batch: int | None = None  # None: the config's train.batch_size
    render_size: tuple[int, int] = (224, 168)  # the bundled corpus's size
    robust_size: int = 1280
    outlier_fraction: float = 0.2
    outlier_sources: tuple[str, ...] = ("stereo",)
    trim: float = 0.2
    val_samples: int = 8  # the trainings' own synthetic validation (not a reported figure)
    extra: tuple[tuple[str, Any], ...] = ()  # further overrides of every training (quick: a small network input)


QUICK = Plan(sizes=(2, 8, 32), batch=2, render_size=(96, 72), robust_size=8, val_samples=2,
             extra=(("data.size", 64), ("model.overrides.image_size", 64)))


def _log(msg: str) -> None:
    print(f"[paper_claims {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def strictly_decreasing(values: Sequence[float]) -> bool:
    """True when there are at least two values and each one is strictly below the one before."""
    return len(values) >= 2 and all(b < a for a, b in zip(values, values[1:], strict=False))


def density_label(frac: float) -> str:
    """``0.0001`` -> ``0.01 %``."""
    return f"{frac * 100:g} %"


# ---------------------------------------------------------------------------------------------- training
def training_overrides(plan: Plan, recipe_batch: int, recipe_warmup: int, out_dir: Path, samples: int,
                       **extra: Any) -> dict[str, Any]:  # fmt: skip
    """The ``--set`` overrides of one training on ``samples`` samples seen (a multiple of the batch size).

    Warm-up: the recipe's, capped at a fifth of the steps so the smallest row also trains at the peak rate.
    """
    batch = plan.batch or recipe_batch
    if samples < batch or samples % batch:
        raise ValueError(f"data size {samples} must be a positive multiple of the batch size {batch}")
    steps = samples // batch
    source = {"kind": "render", "seed": 0, "render_size": list(plan.render_size), "sources": list(CORPUS_KINDS)}
    return {
        "out_dir": str(out_dir), "train.steps": steps, "train.batch_size": batch, "train.progress": False,
        "optim.warmup_steps": min(recipe_warmup, max(1, steps // 5)), "data.sources": [source],
        "data.val_samples": plan.val_samples, **dict(plan.extra), **extra,
    }  # fmt: skip


def pretrain_argv(config: str, overrides: Mapping[str, Any]) -> list[str]:
    """``metricanything pretrain`` arguments of one training."""
    from metricanything.config import format_set

    argv = ["pretrain", "--config", config]
    for item in format_set(overrides):
        argv += ["--set", item]
    return argv


def run_pretrain(argv: list[str]) -> float:
    """Run ``metricanything -q <argv>`` in this process; returns its wall time (s), raises when it fails."""
    from metricanything.cli import main as cli_main

    t0 = time.perf_counter()
    rc = cli_main(["-q", *argv])
    if rc:
        raise RuntimeError(f"`metricanything {shlex.join(argv)}` exited with {rc}")
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------- scoring
def claims_spec() -> Any:
    """The ``real_dev`` protocol with Delaunay-linear as the only (reference) baseline."""
    from metricanything.eval.benchmarks import load_benchmark

    spec = load_benchmark("real_dev")
    return dataclasses.replace(spec, compare=(LINEAR, REFERENCE), reference=LINEAR, oracle_constant=False)


def score_real(model: str | Path, spec: Any, root: Path, columns: Sequence[str], frames: Sequence[str] | None,
               limit: int | None) -> tuple[dict[str, dict[str, Any]], list[str]]:  # fmt: skip
    """Per column: mean AbsRel of the teacher and of linear, the geometric mean over frames of their ratio,
    the frames where the teacher is worse, and the mean number of prompt points; plus the frame ids."""
    from metricanything.eval.runner import evaluate
    from metricanything.tasks.evaluate import model_predictor

    pred = model_predictor(str(model), name="teacher")
    res = evaluate({"teacher": pred}, spec, list(columns), root=root, limit=limit, sample_ids=frames, num_panels=0)
    out: dict[str, dict[str, Any]] = {}
    for col in columns:
        teacher, linear = res.headline("teacher", col), res.headline(LINEAR, col)
        cmp = res.comparisons.get(col, {}).get("teacher")
        if teacher is None or linear is None or cmp is None:
            raise RuntimeError(f"column {col}: no frame was scored for both the teacher and {LINEAR}")
        points = [r["prompt_points"] for r in res.records if r["predictor"] == "teacher" and r["prompt"] == col]
        ref = res.headline(REFERENCE, col)
        out[col] = {"teacher_abs_rel": teacher["abs_rel"], "linear_abs_rel": linear["abs_rel"],
                    "reference_abs_rel": None if ref is None else ref["abs_rel"],
                    "geomean_ratio": cmp["geomean_ratio"], "frames_worse": cmp["frames_worse"],
                    "frames": cmp["frames"], "prompt_points_mean": sum(points) / max(len(points), 1)}  # fmt: skip
    ids = list(dict.fromkeys(r["sample_id"] for r in res.records))
    return out, ids


# ---------------------------------------------------------------------------------------------- tables
def _f(value: float | None, digits: int = 4) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _score_cells(row: Mapping[str, Any], digits: int = 4) -> list[str]:
    return [_f(row["teacher_abs_rel"], digits), _f(row["linear_abs_rel"], digits), _f(row["geomean_ratio"], 3),
            f"{row['frames_worse']}/{row['frames']}"]  # fmt: skip


SCORE_HEADER = ["teacher AbsRel", "linear AbsRel", "geomean teacher/linear", "frames worse"]


def scaling_table(part: Mapping[str, Any]) -> str:
    """The scaling rows and the monotone verdict (computed from the rows, see :func:`scaling_summary`)."""
    from metricanything.eval.report import table

    rows = [[str(r["samples"]), str(r["steps"]), str(r["batch"]), *_score_cells(r, 5), f"{r['train_seconds']:.0f}",
             f"{r['eval_seconds']:.0f}"] for r in part["rows"]]  # fmt: skip
    head = ["data size", "steps", "batch", *SCORE_HEADER, "train s", "eval s"]
    refs = [r.get("reference_abs_rel") for r in part["rows"] if r.get("reference_abs_rel") is not None]
    ref = (f"\nthe recipe's image-guided reference alone ({REFERENCE}, no learning): AbsRel {_f(refs[0], 5)}"
           if refs else "")  # fmt: skip
    return (f"Scaling: {part['config']}, real-frame AbsRel at {density_label(part['density'])} prompts, "
            f"mean over {part['frames']} frames\n({DATA_SIZE})\n{table(head, rows)}\n"
            f"teacher AbsRel strictly falls with every larger data size: {part['monotone']}; "
            f"geomean teacher/linear strictly falls: {part['monotone_geomean_ratio']}{ref}")  # fmt: skip


def scaling_summary(rows: list[dict[str, Any]]) -> dict[str, bool]:
    """Monotone flags of the scaling rows (sorted by data size): mean AbsRel and geomean ratio."""
    rows = sorted(rows, key=lambda r: r["samples"])
    return {"monotone": strictly_decreasing([r["teacher_abs_rel"] for r in rows]),
            "monotone_geomean_ratio": strictly_decreasing([r["geomean_ratio"] for r in rows])}  # fmt: skip


def robust_table(part: Mapping[str, Any]) -> str:
    from metricanything.eval.report import table

    rows = [[r["name"], _f(r["trim"], 2), r["labels"], *_score_cells(r, 5), f"{r['train_seconds']:.0f}"]
            for r in part["rows"]]  # fmt: skip
    verdict = part["trimmed_beats_plain"]
    return (f"Robust MAE: {part['config']}, {part['samples']} samples seen; gross label errors on "
            f"{', '.join(part['outlier_sources'])} ({part['outlier_fraction']:.0%} of its valid pixels, depth * "
            f"exp(+-U(0.3, 1.2))); real-frame AbsRel at {density_label(part['density'])} prompts\n"
            f"{table(['loss', 'trim', 'labels', *SCORE_HEADER, 'train s'], rows)}\n"
            f"trimmed beats plain on mean AbsRel: {verdict}")  # fmt: skip


def sparsity_table(part: Mapping[str, Any]) -> str:
    from metricanything.eval.report import table

    rows = [[density_label(r["density"]), f"{r['prompt_points_mean']:.0f}", *_score_cells(r),
             _f(r.get("reference_abs_rel"))] for r in part["rows"]]  # fmt: skip
    return (f"Prompt sparsity: teacher {part['teacher']} vs Delaunay-linear, real-frame AbsRel, mean over "
            f"{part['frames']} frames ({part['eval_seconds']:.0f} s)\n"
            f"{table(['prompts', 'points (mean)', *SCORE_HEADER, 'guided reference alone AbsRel'], rows)}")  # fmt: skip


def _log_ticks(ax: Any, x: Sequence[float], labels: Sequence[str]) -> None:
    """A log x axis labelled at ``x`` only."""
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_xticks(list(x), list(labels))
    ax.xaxis.set_minor_formatter(NullFormatter())


def shown(path: str | Path) -> str:
    """``path`` relative to the repository when it is inside it, else as given."""
    p = Path(path).resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(path)


def plot_claims(data: Mapping[str, Any], path: Path) -> None:
    """AbsRel vs data size and vs prompt density (log x), and the robust pair, side by side."""
    from metricanything.vis import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    ax = axes[0]
    if "scaling" in data:
        rows = sorted(data["scaling"]["rows"], key=lambda r: r["samples"])
        x = [r["samples"] for r in rows]
        ax.plot(x, [r["teacher_abs_rel"] for r in rows], "o-", label="teacher")
        ax.plot(x, [r["linear_abs_rel"] for r in rows], "s--", label="linear (same prompts)")
        refs = [r.get("reference_abs_rel") for r in rows if r.get("reference_abs_rel") is not None]
        if refs:
            ax.axhline(refs[0], color="tab:green", ls=":", label="guided reference alone")
        _log_ticks(ax, x, [str(v) for v in x])
        ax.legend()
    ax.set(title=f"scaling ({density_label(data.get('scaling', {}).get('density', 0.01))} prompts)",
           xlabel="samples seen (distinct renders)", ylabel="real-frame AbsRel (mean)")  # fmt: skip
    ax = axes[1]
    if "sparsity" in data:
        rows = data["sparsity"]["rows"]
        x = [100 * r["density"] for r in rows]
        ax.plot(x, [r["teacher_abs_rel"] for r in rows], "o-", label="teacher")
        ax.plot(x, [r["linear_abs_rel"] for r in rows], "s--", label="linear")
        if all(r.get("reference_abs_rel") is not None for r in rows):
            ax.plot(x, [r["reference_abs_rel"] for r in rows], "^:", label="guided reference alone")
        _log_ticks(ax, x, [f"{v:g}" for v in x])
        ax.set_yscale("log")
        ax.legend()
    ax.set(title="prompt sparsity", xlabel="prompt density (% of pixels)", ylabel="real-frame AbsRel (mean)")
    ax = axes[2]
    if "robust" in data:
        rows = data["robust"]["rows"]
        ax.bar([r["name"] for r in rows], [r["teacher_abs_rel"] for r in rows],
               color=["tab:blue" if r["labels"] != "clean" else "tab:gray" for r in rows])
        ax.axhline(rows[0]["linear_abs_rel"], color="tab:orange", ls="--", label="linear")
        ax.legend()
    ax.set(title="Robust MAE (gross label errors)", ylabel="real-frame AbsRel (mean)")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- main
def _write(out: Path, data: Mapping[str, Any]) -> None:
    from metricanything.eval.results import dumps

    (out / "paper_claims.json").write_text(dumps(data), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/paper_claims", help="trainings, paper_claims.json and paper_claims.png")
    ap.add_argument("--frames-root", metavar="DIR",
                    help="frames folder (default: the real_dev benchmark's root, $METRICANYTHING_REAL_FRAMES or "
                    "../shared/real_frames)")  # fmt: skip
    ap.add_argument("--frames", nargs="+", metavar="ID", help="only these frame ids")
    ap.add_argument("--limit", type=int, metavar="N", help="only the first N frames (--quick: 2)")
    ap.add_argument("--config", default="teacher_bundled", help="the fixed training recipe (default teacher_bundled)")
    ap.add_argument("--teacher", default=str(BUNDLED_TEACHER), help="checkpoint of the sparsity table (default: bundled)")
    ap.add_argument("--sizes", type=lambda s: tuple(int(v) for v in s.split(",")), metavar="N,N,...",
                    help=f"scaling data sizes, samples seen (default {','.join(map(str, Plan.sizes))})")
    ap.add_argument("--batch", type=int, help="batch size of every training (default: the config's)")
    ap.add_argument("--robust-size", type=int, help=f"samples seen by each robust teacher (default {Plan.robust_size})")
    ap.add_argument("--outlier-fraction", type=float, help=f"default {Plan.outlier_fraction}")
    ap.add_argument("--outlier-sources", help=f"comma-separated source kinds (default {','.join(Plan.outlier_sources)})")
    ap.add_argument("--skip", action="append", default=[], choices=PARTS)
    ap.add_argument("--keep-skipped", action="store_true",
                    help="take the --skip'ped parts from OUT/paper_claims.json of an earlier run (same config and "
                    "frames), so one JSON, plot and printout hold all three tables")  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="a few steps, 2 frames, 64 px network input (smoke run)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args(argv)

    from metricanything.errors import DatasetError
    from metricanything.eval.benchmarks import resolve_root

    spec = claims_spec()
    try:
        root = resolve_root(spec, args.frames_root)
    except DatasetError as exc:
        print(f"SKIP: the real frames are not available here ({exc}).")
        return 0

    import torch

    from metricanything.train.config import load_config

    torch.set_num_threads(args.threads)
    plan = QUICK if args.quick else Plan()
    plan = dataclasses.replace(
        plan, sizes=args.sizes or plan.sizes, batch=args.batch or plan.batch,
        robust_size=args.robust_size or plan.robust_size,
        outlier_fraction=plan.outlier_fraction if args.outlier_fraction is None else args.outlier_fraction,
        outlier_sources=tuple(args.outlier_sources.split(",")) if args.outlier_sources else plan.outlier_sources,
    )  # fmt: skip
    limit = args.limit or (2 if args.quick and not args.frames else None)
    recipe = load_config(args.config)
    batch = plan.batch or recipe.train.batch_size
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    data: dict[str, Any] = {"quick": args.quick, "config": args.config, "frames_root": shown(root),
                            "protocol": "real_dev (frac:F prompts, default_rng(0), held-out valid pixels, no alignment)",
                            "data_size_definition": DATA_SIZE, "torch_threads": args.threads}  # fmt: skip
    tables: dict[str, str] = {}
    earlier = out / "paper_claims.json"
    if args.keep_skipped and args.skip and earlier.is_file():
        import json

        old = json.loads(earlier.read_text(encoding="utf-8"))
        if (old.get("config"), old.get("frames_root"), old.get("quick")) != (args.config, shown(root), args.quick):
            raise SystemExit(f"--keep-skipped: {earlier} was made with another config, frames root or --quick")
        render = {"scaling": scaling_table, "robust": robust_table, "sparsity": sparsity_table}
        for part in args.skip:
            if part in old:
                data[part], tables[part] = old[part], render[part](old[part])
                _log(f"{part}: kept from {earlier}")
        data["earlier_seconds"] = old.get("total_seconds", 0.0) + old.get("earlier_seconds", 0.0)

    def train_and_score(name: str, samples: int, **extra: Any) -> dict[str, Any]:
        run_dir = out / name
        ov = training_overrides(plan, batch, recipe.optim.warmup_steps, run_dir, samples, **extra)
        cmd = pretrain_argv(args.config, ov)
        _log(f"{name}: {ov['train.steps']} steps x batch {ov['train.batch_size']}")
        train_s = run_pretrain(cmd)
        t0 = time.perf_counter()
        scores, ids = score_real(run_dir / "model", spec, root, [SCALING_COLUMN], args.frames, limit)
        row = {"samples": samples, "steps": ov["train.steps"], "batch": ov["train.batch_size"], **scores[SCALING_COLUMN],
               "train_seconds": train_s, "eval_seconds": time.perf_counter() - t0,
               "command": "metricanything " + shlex.join(cmd), "frame_ids": ids}  # fmt: skip
        _log(f"{name}: teacher AbsRel {row['teacher_abs_rel']:.4f}, linear {row['linear_abs_rel']:.4f} "
             f"(train {train_s:.0f} s, eval {row['eval_seconds']:.0f} s)")
        return row

    # cheapest first, so a broken path fails before the long trainings
    if "sparsity" not in args.skip:
        t0 = time.perf_counter()
        cols = [f"frac:{f:g}" for f in DENSITIES]
        scores, ids = score_real(args.teacher, spec, root, cols, args.frames, limit)
        rows = [{"density": f, "column": c, **scores[c]} for f, c in zip(DENSITIES, cols, strict=True)]
        data["sparsity"] = {"teacher": shown(args.teacher), "rows": rows, "frames": len(ids), "frame_ids": ids,
                            "eval_seconds": time.perf_counter() - t0}  # fmt: skip
        tables["sparsity"] = sparsity_table(data["sparsity"])
        print("\n" + tables["sparsity"] + "\n", flush=True)
        _write(out, data)

    scaling_rows: list[dict[str, Any]] = []
    if "scaling" not in args.skip:
        for n in sorted(plan.sizes):
            scaling_rows.append(train_and_score(f"scaling_{n}", n))
            data["scaling"] = {"config": args.config, "density": 0.01, "column": SCALING_COLUMN, "rows": scaling_rows,
                               "frames": len(scaling_rows[0]["frame_ids"]), **scaling_summary(scaling_rows)}  # fmt: skip
            _write(out, data)
        tables["scaling"] = scaling_table(data["scaling"])
        print("\n" + tables["scaling"] + "\n", flush=True)

    if "robust" not in args.skip:
        sources = list(plan.outlier_sources)
        rows = []
        for name, trim in (("trimmed", plan.trim), ("plain", 0.0)):
            row = train_and_score(f"robust_{name}", plan.robust_size, **{
                "loss.trim": trim, "data.label_outlier_fraction": plan.outlier_fraction,
                "data.label_outlier_sources": sources})  # fmt: skip
            rows.append({"name": f"{name} MAE", "trim": trim, "labels": "with errors", **row})
        clean = [r for r in scaling_rows or (data.get("scaling") or {}).get("rows", []) if r["samples"] == plan.robust_size]
        if clean:  # the scaling row of the same size: the recipe on clean labels
            rows.append({"name": "recipe, clean labels", "trim": recipe.loss.trim, "labels": "clean", **clean[0]})
        data["robust"] = {"config": args.config, "samples": plan.robust_size, "density": 0.01, "column": SCALING_COLUMN,
                          "outlier_sources": sources, "outlier_fraction": plan.outlier_fraction, "rows": rows,
                          "trimmed_beats_plain": rows[0]["teacher_abs_rel"] < rows[1]["teacher_abs_rel"]}  # fmt: skip
        tables["robust"] = robust_table(data["robust"])
        print("\n" + tables["robust"] + "\n", flush=True)

    data["total_seconds"] = time.perf_counter() - t_all  # this run (kept parts: + earlier_seconds)
    _write(out, data)
    plot_claims(data, out / "paper_claims.png")
    title = "=== paper claims in miniature" + (" (QUICK: pipeline check only, not the claims' figures)" if args.quick else "")
    print(f"\n{title} ===\nframes: {root}\n\n" + "\n\n".join(tables[p] for p in PARTS if p in tables))
    print(f"\ntotal {data['total_seconds'] / 60:.1f} min on {args.threads} thread(s); "
          f"{out / 'paper_claims.json'}, {out / 'paper_claims.png'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
