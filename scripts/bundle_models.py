"""Tooling for the bundled default weights (used by ``scripts/train_bundled.sh``).

Subcommands:

* ``plan --config C --minutes M [--set k=v ...]``: calibrate the training config (a few real steps) and print
  the number of steps that fits in M minutes (the training itself is run with ``metricanything pretrain`` /
  ``distill --set train.steps=N``).
* ``install --kind teacher|student --run RUN [--dest DIR]``: copy ``RUN/model`` into the package as fp16
  safetensors + ``config.json`` (the card inside points to MODEL_CARD.md), and check that the fp16 weights
  reproduce the fp32 model's depth.
* ``gate --dest DIR --frames DIR ...``: choose the installed teacher's ``residual_gate`` (0 = the reference
  fill alone ... 1 = the network's full correction) on held-out folder datasets with the real-frames protocol
  (1 % / 0.1 % prompts vs Delaunay-linear), write it into ``config.json`` and the table into ``gate_check.json``.
* ``card --kind K --run RUN --dest DIR --eval DIR ... --command CMD ...``: write ``MODEL_CARD.md`` and
  ``training.json`` next to the installed weights from the run's summary and the ``metricanything eval``
  outputs (``metrics.json``), plus a FoV-head check for the student; ``--real-frames JSON`` adds the real-frame
  section.
* ``real-frames --kind K --json JSON [--dest DIR] [--command CMD] [--remark TEXT]``: write (or replace) the
  "Real frames" section of an existing ``MODEL_CARD.md`` from the output of
  ``python benchmarks/real_frames.py --json JSON`` (weights and ``training.json`` untouched).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metricanything.atomic import atomic_path, write_text_atomic

LICENCE = "Apache-2.0"
MAX_TOTAL_BYTES = 40 * 1024 * 1024
DEFAULT_DEST = Path(__file__).resolve().parents[1] / "src" / "metricanything" / "assets" / "models"
RENDERS = (
    "scenes ray-cast by the project's embedded renderer (procedural indoor rooms and "
    "street scenes made of planes, boxes, spheres and cylinders with procedural textures) and passed through "
    "its simulated sensors (exact renders, LiDAR, time-of-flight, structured light, stereo, SfM points and MVS "
    "depth with untrusted scale), written by `metricanything render`"
)
TRAINING_DATA = f"Synthetic data only: {RENDERS}. No real photograph and no public dataset was used."


def training_data_text(sources: list[tuple[str, str, str]]) -> str:
    """The card's training-data paragraph: renders only, or renders + the listed (name, what, licence) sources."""
    if not sources:
        return TRAINING_DATA
    real = "; ".join(f"{name}: {what} ({lic})" for name, what, lic in sources)
    return (f"Synthetic renders ({RENDERS}; Apache-2.0, made here) plus real captured data: {real}. "
            "Nothing from the real-frames benchmark (`../shared/real_frames`) was used for training or for choosing "
            "any setting.")


def parse_data_source(text: str) -> tuple[str, str, str]:
    """``"name|what|licence"`` -> a (name, what, licence) triple."""
    parts = [p.strip() for p in text.split("|")]
    if len(parts) != 3 or not all(parts):
        raise SystemExit(f"--data-source {text!r}: expected 'name|what|licence'")
    return parts[0], parts[1], parts[2]


# ---------------------------------------------------------------------------------------------- plan
def cmd_plan(args: argparse.Namespace) -> int:
    from metricanything.config import parse_set
    from metricanything.tasks.training import plan_steps
    from metricanything.train.config import load_config

    cfg = load_config(args.config, parse_set(args.overrides))
    torch.set_num_threads(max(1, cfg.train.threads or 1))
    steps, plan = plan_steps(cfg, 60.0 * args.minutes, args.min_steps, args.max_steps)
    print(json.dumps(plan), file=sys.stderr)
    print(steps)
    return 0


# ---------------------------------------------------------------------------------------------- install
def _fp16_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in model.state_dict().items():
        t = v.detach().cpu()
        if t.is_floating_point():
            t = t.to(torch.float16)
        out[k] = t.contiguous().clone()
    return out


def _probe(model: torch.nn.Module, kind: str) -> np.ndarray:
    """Depth of a fixed held-out render (with a 1% prompt for the teacher), GT focal."""
    from metricanything import api
    from metricanything.data.render import render_sample

    s = render_sample(31_337, size=(160, 120))
    prompt = None
    if kind == "teacher":
        from metricanything.prompts.patterns import make_prompt

        prompt = make_prompt("density:0.01", s.depth, s.valid, s.intrinsics, image=s.image, seed=0)
    r = api.infer(model, s.image, intrinsics=s.intrinsics, prompt=prompt)
    return np.where(r.valid, r.depth, np.nan)


def cmd_install(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file

    from metricanything.models.checkpoint import CONFIG_NAME, WEIGHTS_NAME, from_pretrained, model_kind

    src = Path(args.run) / "model"
    dest = Path(args.dest) if args.dest else DEFAULT_DEST / args.kind
    model = from_pretrained(src).eval()
    if model_kind(model) != args.kind:
        raise SystemExit(f"{src} holds a {model_kind(model)}, not a {args.kind}")
    dest.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest / WEIGHTS_NAME) as tmp:
        save_file(_fp16_state(model), str(tmp), metadata={"format": "metricanything-checkpoint", "model_kind": args.kind,
                                                          "dtype": "float16"})  # fmt: skip
    config = json.loads((src / CONFIG_NAME).read_text(encoding="utf-8"))
    config["card"] = {
        "name": f"metricanything bundled {args.kind}",
        "licence": LICENCE,
        "weights_dtype": "float16 (loaded into float32 models by from_pretrained)",
        "training_data": "synthetic renders only (see MODEL_CARD.md)",
        "model_card": "MODEL_CARD.md",
        "training_record": "training.json",
    }
    write_text_atomic(dest / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    reloaded = from_pretrained(dest).eval()
    a, b = _probe(model, args.kind), _probe(reloaded, args.kind)
    both = np.isfinite(a) & np.isfinite(b)
    rel = float(np.nanmax(np.abs(a[both] - b[both]) / a[both])) if both.any() else math.nan
    check = {"probe": "render_sample(31337, 160x120), GT focal" + (", density:0.01 prompt" if args.kind == "teacher" else ""),
             "max_rel_depth_diff_fp16_vs_fp32": rel, "valid_pixels_compared": int(both.sum())}  # fmt: skip
    write_text_atomic(dest / "fp16_check.json", json.dumps(check, indent=2) + "\n")
    total = sum(p.stat().st_size for p in DEFAULT_DEST.rglob("*") if p.is_file()) if dest.parent == DEFAULT_DEST else 0
    print(f"installed {args.kind} -> {dest} ({(dest / WEIGHTS_NAME).stat().st_size / 1e6:.2f} MB fp16; fp16 vs fp32 "
          f"max relative depth difference {rel:.2e})")  # fmt: skip
    if total > MAX_TOTAL_BYTES:
        raise SystemExit(f"bundled models total {total / 2**20:.1f} MiB > 40 MiB: choose a smaller preset")
    return 0


# ---------------------------------------------------------------------------------------------- gate
GATE_CHECK = "gate_check.json"


def gate_table(model: torch.nn.Module, roots: list[str], gates: list[float],
               densities: tuple[float, ...] = (0.01, 0.001)) -> dict[str, Any]:
    """Teacher / Delaunay-linear AbsRel of every residual gate on held-out folder datasets, scored by the
    evaluation runner with the real-frames protocol (``real_dev``: ``frac:F`` prompts drawn with seed 0, scored on
    the other valid pixels, GT intrinsics). A frame with fewer than 3 F H W valid pixels is left out of column F.
    Returns per-gate geometric means of the frame ratios (overall and per density) and the rows."""
    import copy
    import dataclasses

    from metricanything import api
    from metricanything.data.folder import FolderDataset
    from metricanything.eval.baselines import ExternalModel
    from metricanything.eval.benchmarks import load_benchmark
    from metricanything.eval.protocol import compare_to_reference
    from metricanything.eval.runner import evaluate

    linear = "baseline:linear"
    spec = dataclasses.replace(load_benchmark("real_dev"), compare=(linear,), reference=linear, oracle_constant=False)
    predictors = {}
    for g in gates:
        m = copy.deepcopy(model)
        m.config.residual_gate = float(g)
        predictors[str(float(g))] = ExternalModel.from_api(m, api.infer, f"gate={g:g}", accepts_prompt=True)
    rows = []
    for root in roots:
        valid_fraction = {s.sample_id: float(s.valid.mean()) for s in FolderDataset(root)}
        for d in densities:
            ids = [k for k, f in valid_fraction.items() if f >= 3 * d]
            if not ids:
                continue
            col = f"frac:{d:g}"
            res = evaluate(predictors, spec, [col], root=root, sample_ids=ids, num_panels=0)
            lin = res.per_frame(linear, col)
            per_gate = {g: res.per_frame(g, col) for g in predictors}
            rows += [{"root": str(root), "frame": k, "density": d, "linear_abs_rel": v,
                      "ratio": {g: per_gate[g][k] / v for g in predictors}} for k, v in lin.items()]  # fmt: skip
    if not rows:
        raise SystemExit("gate: no held-out frame has enough valid pixels for the prompt densities")

    def geomean(g: str, keep: Any) -> float:
        """The geometric mean of the ratios of gate ``g`` over the rows ``keep`` accepts (compare_to_reference)."""
        picked = [(f"{r['root']}|{r['frame']}|{r['density']}", r) for r in rows if keep(r)]
        values = {k: r["ratio"][g] * r["linear_abs_rel"] for k, r in picked}
        return compare_to_reference(values, {k: r["linear_abs_rel"] for k, r in picked})["geomean_ratio"]

    summary = {g: {"all": geomean(g, lambda r: True),
                   **{f"frac:{d:g}": geomean(g, lambda r, d=d: r["density"] == d)
                      for d in densities if any(r["density"] == d for r in rows)}}
               for g in predictors}  # fmt: skip
    best = min(gates, key=lambda g: (summary[str(float(g))]["all"], -g))  # ties: the larger gate (more network)
    return {"gates": [float(g) for g in gates], "best": float(best), "summary": summary, "rows": rows}


def cmd_gate(args: argparse.Namespace) -> int:
    from metricanything.models.checkpoint import CONFIG_NAME, from_pretrained

    dest = Path(args.dest) if args.dest else DEFAULT_DEST / "teacher"
    torch.set_num_threads(max(1, args.threads))
    model = from_pretrained(dest).eval()
    if not hasattr(model.config, "residual_gate"):
        raise SystemExit(f"{dest} is not a teacher (no residual_gate)")
    table = gate_table(model, args.frames, args.gates)
    table.update({"frames": args.frames, "num_frames": len({(r["root"], r["frame"]) for r in table["rows"]}),
                  "protocol": "frac:0.01 and frac:0.001 prompts (seed 0) from the GT, AbsRel on the other valid "
                              "pixels / Delaunay-linear AbsRel, geometric mean; the gate with the lowest is kept"})  # fmt: skip
    config = json.loads((dest / CONFIG_NAME).read_text(encoding="utf-8"))
    config["config"]["residual_gate"] = table["best"]
    write_text_atomic(dest / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    write_text_atomic(dest / GATE_CHECK, json.dumps(table, indent=2) + "\n")
    for g in table["gates"]:
        line = ", ".join(f"{k} {v:.3f}" for k, v in table["summary"][str(g)].items())
        print(f"residual_gate {g:g}: teacher / linear AbsRel geometric mean {line}")
    print(f"kept residual_gate {table['best']:g} in {dest / CONFIG_NAME} ({table['num_frames']} held-out frames)")
    return 0


# ---------------------------------------------------------------------------------------------- card
def _eval_tables(eval_dirs: list[str]) -> tuple[list[dict[str, Any]], str]:
    """(records, markdown) from ``metricanything eval`` output folders."""
    records, lines = [], []
    for d in eval_dirs:
        p = Path(d) / "metrics.json"
        if not p.is_file():
            raise SystemExit(f"{p}: missing (run metricanything eval --out {d} first)")
        m = json.loads(p.read_text(encoding="utf-8"))
        bench = m["benchmark"]
        cols = m["prompt_columns"]
        rec = {"dir": str(d), "benchmark": bench["name"], "num_samples": m["num_samples"],
               "focal_source": bench.get("focal_source"), "results": {}}  # fmt: skip
        lines.append(f"**{bench['name']}** ({m['num_samples']} images, focal: {bench.get('focal_source')}, "
                     f"alignment: {bench.get('alignment')}, {m.get('aggregation')} mean)\n")  # fmt: skip
        header = "| model | prompt | AbsRel ↓ | RMSE (m) ↓ | δ1 ↑ |"
        lines += [header, "|---|---|---|---|---|"]
        for pred in m["predictors"]:
            for col in cols:
                h = (m["results"].get(pred, {}).get(col) or {}).get("headline") or {}
                rec["results"].setdefault(pred, {})[col] = {k: h.get(k) for k in ("abs_rel", "rmse", "delta1")}
                f = lambda v: "–" if v is None else f"{v:.4f}"  # noqa: E731
                lines.append(f"| {pred} | {col} | {f(h.get('abs_rel'))} | {f(h.get('rmse'))} | {f(h.get('delta1'))} |")
        lines.append("")
        records.append(rec)
    return records, "\n".join(lines)


def _fov_check(model_dir: Path, n: int = 32) -> dict[str, Any]:
    """Mean |FoV error| of the student's FoV head on held-out renders (seeds 3,000,000 + i), no intrinsics given."""
    from metricanything import api
    from metricanything.data.render import render_sample

    model = api.load_model(model_dir)
    errs, rel_f = [], []
    for i in range(n):
        s = render_sample(3_000_000 + i, size=(160, 120))
        r = api.infer(model, s.image)
        errs.append(abs(r.intrinsics.fov_x - s.intrinsics.fov_x))
        rel_f.append(abs(r.intrinsics.fx - s.intrinsics.fx) / s.intrinsics.fx)
    return {"samples": n, "mean_abs_fov_error_deg": float(np.mean(errs)), "median_rel_focal_error": float(np.median(rel_f)),
            "protocol": "render_sample(3_000_000 + i, 160x120), no intrinsics given, api.infer -> FoV head"}  # fmt: skip


def _prompt_fidelity(model_dir: Path, n: int = 8, points: int = 500) -> dict[str, Any]:
    """Median relative error of the teacher's depth at its own prompt pixels (``points:500`` from the GT of
    held-out 320x240 renders, seeds 4,000,000 + i, GT focal): how closely it honours sparse metric depth."""
    from metricanything import api
    from metricanything.data.render import render_sample
    from metricanything.prompts.patterns import make_prompt

    model = api.load_model(model_dir)
    per_image = []
    for i in range(n):
        s = render_sample(4_000_000 + i, size=(320, 240))
        prompt = make_prompt(f"points:{points}", s.depth, s.valid, s.intrinsics, image=s.image, seed=i)
        depth, mask = prompt.to_map()
        r = api.infer(model, s.image, intrinsics=s.intrinsics, prompt=prompt)
        m = mask & r.valid
        per_image.append(float(np.median(np.abs(r.depth[m] - depth[m]) / depth[m])))
    return {"samples": n, "points": points, "median_rel_err_at_prompts": float(np.median(per_image)),
            "per_image": per_image,
            "protocol": "render_sample(4_000_000 + i, 320x240), points:500 from the GT, GT intrinsics, api.infer"}  # fmt: skip


def _views_line(kind: str, train_cfg: str, model_cfg: dict[str, Any]) -> list[str]:
    """The student's training-view size vs its network input, from the resolved training config."""
    if kind != "student" or not train_cfg:
        return []
    import yaml

    size = (yaml.safe_load(train_cfg).get("data") or {}).get("size")
    s = 4 * int(model_cfg.get("tile_size", 0))
    if not size or not s:
        return []
    return [f"Training views {size}x{size} px, network input {s}x{s} px; the distillation loss is computed at the "
            "network resolution, on every output pixel (docs/design.md, \"Striped student\").", ""]  # fmt: skip


REAL_FRAMES_HEADING = "## Real frames"
REAL_FRAMES_COMMAND = "python benchmarks/real_frames.py --json runs/real_frames.json"


def _real_frames_record(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """This model's figures from a ``benchmarks/real_frames.py --json`` output (headline means, comparisons)."""
    if kind not in data.get("results", {}):
        raise SystemExit(f"the real-frames JSON has no {kind!r} predictor (it has {', '.join(data.get('results', {}))})")
    ref = data.get("reference")
    def head(r: dict[str, Any] | None) -> dict[str, float] | None:
        h = (r or {}).get("headline")
        return None if h is None else {k: h[k] for k in ("abs_rel", "delta1", "rmse") if k in h}

    heads = {name: {col: head(r) for col, r in cols.items()} for name, cols in data["results"].items()}
    return {
        "frames_root": data.get("frames_root"),
        "num_frames": data.get("num_samples"),
        "benchmark": data["benchmark"]["name"],
        "description": data["benchmark"].get("description"),
        "source": data["benchmark"].get("source"),
        "reference": ref,
        "headline": heads,
        "comparisons": {col: c[kind] for col, c in (data.get("comparisons") or {}).items() if kind in c},
        "seconds_per_frame": (data.get("seconds_per_image") or {}).get(kind),
    }


def _real_frames_section(kind: str, rec: dict[str, Any], command: list[str], remark: list[str]) -> list[str]:
    """Markdown lines of the card's "Real frames" section from :func:`_real_frames_record`: this model's AbsRel and
    δ1 per prompt column next to the baselines and the oracle constant (other models of the run left out)."""
    f = lambda v: "–" if v is None else f"{v:.4f}"  # noqa: E731
    heads, ref = rec["headline"], rec["reference"]
    frames = (rec.get("description") or "").split(": ")[0]
    licences = (rec.get("source") or "").split(". ")[0].replace(" (", ": ").rstrip(")")
    lines = [
        f"{REAL_FRAMES_HEADING} ({rec['frames_root']}, {rec['num_frames']} frames)",
        "",
        f"{frames}; evaluation only, never used in training, kept outside the package under their own licences "
        f"({licences}). Protocol `{rec['benchmark']}`: completion prompts scored on the held-out valid pixels, "
        "monocular (`none`) with the frames' intrinsics on every valid pixel, no alignment (README, \"Real "
        "frames\"; docs/design.md). Measured on these installed fp16 weights with:",
        "",
        "```bash",
        *(command or [REAL_FRAMES_COMMAND]),
        "```",
        "",
    ]
    cols = [c for c, h in heads[kind].items() if h is not None]
    others = [n for n in heads if n.startswith(("baseline:", "oracle:")) and any(heads[n].get(c) for c in cols)]
    names, ratios = [kind, *others], bool(rec["comparisons"])
    lines += ["| prompt | " + " | ".join(f"{n} AbsRel ↓" for n in names) + " | "
              + " | ".join(f"{n} δ1 ↑" for n in names)
              + (f" | {kind} / {ref} AbsRel, geometric mean over frames (frames worse)" if ratios else "") + " |",
              "|---|" + "---|" * (2 * len(names) + ratios)]  # fmt: skip
    for col in cols:
        c = rec["comparisons"].get(col)
        ratio = "–" if c is None else f"{c['geomean_ratio']:.3f} ({c['frames_worse']} of {c['frames']})"
        absrel = [f((heads[n].get(col) or {}).get("abs_rel")) for n in names]
        delta = [f((heads[n].get(col) or {}).get("delta1")) for n in names]
        lines.append(f"| {col} | " + " | ".join(absrel) + " | " + " | ".join(delta) + (f" | {ratio}" if ratios else "") + " |")
    lines.append("")
    mono, orc = heads[kind].get("none"), (heads.get("oracle:constant") or {}).get("none")
    if mono is not None and orc is not None:
        lines += [f"Monocular: mean δ1 **{mono['delta1']:.3f}** vs **{orc['delta1']:.3f}** for the per-frame oracle "
                  f"constant (the δ1-optimal single depth, which sees the GT); mean AbsRel {mono['abs_rel']:.3f} vs "
                  f"{orc['abs_rel']:.3f}.", ""]  # fmt: skip
    if rec.get("seconds_per_frame") is not None:
        lines += [f"{rec['seconds_per_frame']:.2f} s per frame and prompt column on the CPU.", ""]
    if remark:
        lines += [" ".join(remark), ""]
    return lines


def _with_section(card: str, section: list[str], heading: str, before: str) -> str:
    """``card`` with the section starting at ``heading`` replaced by ``section`` (else inserted before ``before``)."""
    lines = card.split("\n")
    start = next((i for i, line in enumerate(lines) if line.startswith(heading)), None)
    if start is not None:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        return "\n".join(lines[:start] + section + lines[end:])
    at = next((i for i, line in enumerate(lines) if line.startswith(before)), len(lines))
    return "\n".join(lines[:at] + section + lines[at:])


def cmd_real_frames(args: argparse.Namespace) -> int:
    dest = Path(args.dest) if args.dest else DEFAULT_DEST / args.kind
    card_path = dest / "MODEL_CARD.md"
    if not card_path.is_file():
        raise SystemExit(f"{card_path}: missing (write the card with `card` first)")
    rec = _real_frames_record(args.kind, json.loads(Path(args.json).read_text(encoding="utf-8")))
    section = _real_frames_section(args.kind, rec, args.command, args.remark)
    write_text_atomic(card_path, _with_section(card_path.read_text(encoding="utf-8"), section, REAL_FRAMES_HEADING,
                                               "## Intended use"))  # fmt: skip
    print(f"updated {card_path} (training.json, written by `card`, is left as it is)")
    return 0


def cmd_card(args: argparse.Namespace) -> int:
    from metricanything import __version__
    from metricanything.models.checkpoint import from_pretrained

    run = Path(args.run)
    dest = Path(args.dest) if args.dest else DEFAULT_DEST / args.kind
    model = from_pretrained(dest)
    n_params = int(sum(p.numel() for p in model.parameters()))
    config = json.loads((dest / "config.json").read_text(encoding="utf-8"))
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8")) if (run / "summary.json").is_file() else {}
    train_cfg = (run / "config.yaml").read_text(encoding="utf-8") if (run / "config.yaml").is_file() else ""
    fp16 = json.loads((dest / "fp16_check.json").read_text(encoding="utf-8")) if (dest / "fp16_check.json").is_file() else {}
    records, tables = _eval_tables(args.eval)
    sources = [parse_data_source(t) for t in args.data_source]
    data_text = training_data_text(sources)
    gate = json.loads((dest / GATE_CHECK).read_text(encoding="utf-8")) if (dest / GATE_CHECK).is_file() else None
    if sources and "card" in config:  # the short line in config.json (install wrote the renders-only one)
        config["card"]["training_data"] = ("synthetic renders + real captured data (" + ", ".join(n for n, _, _ in sources)
                                           + "; sources and licences in MODEL_CARD.md)")  # fmt: skip
        write_text_atomic(dest / "config.json", json.dumps(config, indent=2) + "\n")
    knobs = {k: os.environ[k] for k in ("BUNDLED_MINUTES", "BUNDLED_MIN_STEPS", "BUNDLED_STAGES", "BUNDLED_STUDENT_STEPS") if k in os.environ}
    fov = _fov_check(dest) if args.kind == "student" and config["config"].get("use_fov_head") else None
    fidelity = _prompt_fidelity(dest) if args.kind == "teacher" else None
    real = (_real_frames_record(args.kind, json.loads(Path(args.real_frames).read_text(encoding="utf-8")))
            if args.real_frames else None)  # fmt: skip
    if real is not None:
        real["commands"] = args.real_frames_command or [REAL_FRAMES_COMMAND]
    size = (dest / "model.safetensors").stat().st_size
    record = {
        "kind": args.kind,
        "parameters": n_params,
        "weights_bytes": size,
        "weights_dtype": "float16",
        "licence": LICENCE,
        "training_data": data_text,
        "data_sources": [{"name": "synthetic renders", "what": RENDERS, "licence": "Apache-2.0 (generated here)"}]
        + [{"name": n, "what": w, "licence": lic} for n, w, lic in sources],
        "residual_gate_check": gate,
        "commands": args.command,
        "training_config_file": args.config,
        "training_config_resolved": train_cfg,
        "training_summary": summary,
        "train_bundled_settings": knobs,
        "evaluation": records,
        "fov_head_check": fov,
        "prompt_fidelity": fidelity,
        "fp16_check": fp16,
        "real_frames": real,
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "metricanything_version": __version__,
        "environment": f"Python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPU(s), "
        f"CUDA {'yes' if torch.cuda.is_available() else 'no'}",
    }
    write_text_atomic(dest / "training.json", json.dumps(record, indent=2, default=str) + "\n")
    c = config["config"]
    if args.kind == "teacher":
        vit = c["vit"]
        arch = (f"Prompt-conditioned teacher: ViT (embed {vit.get('embed_dim')}, {vit.get('depth')} blocks, patch "
                f"{vit.get('patch_size')}) + DPT decoder (features {c.get('decoder_features')}) with a sparse-metric-"
                f"prompt branch (hidden {c.get('prompt_hidden')}) at fusion levels {c.get('prompt_levels')}. Input "
                f"resized to a {c.get('image_size')} px long side inside the network; output metric depth at the "
                "input size. Works with a prompt (depth completion / super-resolution / fusion) and without one "
                "(metric scale from the focal length).")  # fmt: skip
        ref = c.get("prompt_reference", "scalar")
        if ref != "scalar":
            arch += (f" With a prompt, the network corrects a parameter-free dense fill of it (`{ref}`: "
                     + ("local planes in inverse depth through each pixel's 8 nearest prompt points, all points used"
                        if ref == "knn_plane"
                        else "push-pull") + "), exact at the prompted pixels.")  # fmt: skip
        if c.get("reference_guide", "none") == "image":
            arch += (" The planes are image-guided: each prompt point's weight is multiplied by its colour "
                     f"similarity to the pixel (Gaussian, sigma {c.get('reference_guide_sigma', 0.1):g} in RGB "
                     "[0, 1]), so the fill follows the image's edges.")  # fmt: skip
        if c.get("residual_bound") is not None:
            arch += (" Its correction is bounded by the prompt itself (`residual_bound`): at most the relative "
                     "distance of a pixel's 8 nearest prompt points from their fitted plane (capped at their "
                     f"log-depth range) + {c['residual_bound']:g}, so it is 0 where the prompt is locally planar.")  # fmt: skip
        if c.get("residual_gate", 1.0) == 0.0:
            arch += (" With a prompt the learned correction is switched off (`residual_gate` = 0, chosen on held-out "
                     "frames, where every larger gate measured worse: see below), so the prompted output is the "
                     "parameter-free reference alone; the network's output is used without a prompt.")  # fmt: skip
        elif c.get("residual_gate", 1.0) != 1.0:
            arch += (f" The learned correction is multiplied by `residual_gate` = {c['residual_gate']:g} where a prompt "
                     "is given (chosen on held-out frames: see below); without a prompt the network's output is used "
                     "in full.")  # fmt: skip
        use = ("Default model of `metricanything infer --prompt ...` (sparse depth → dense metric depth) and of "
               "`metricanything finetune` as a starting point.")  # fmt: skip
    else:
        v = c["vit"]
        vit_desc = v if isinstance(v, str) else f"embed {v.get('embed_dim')}, {v.get('depth')} blocks, patch 16"
        arch = (f"Prompt-free student: Depth-Pro-like multi-resolution tiled encoder (one shared ViT, "
                f"{vit_desc}, tile {c.get('tile_size')}, "
                f"network input {4 * int(c.get('tile_size', 0))} px), 7-level fusion decoder (features "
                f"{c.get('decoder_features')}), canonical inverse depth head"
                + (", and a field-of-view head (focal length recovery)" if c.get("use_fov_head") else "") + ".")  # fmt: skip
        use = "Default model of `metricanything infer` without a prompt (monocular metric depth + intrinsics)."
    val = summary.get("val", {})
    lines = [
        f"# metricanything bundled {args.kind}",
        "",
        f"*Licence: {LICENCE}. Weights: fp16 safetensors ({size / 1e6:.2f} MB), {n_params:,} parameters. "
        f"Created {record['created_utc']} with metricanything {__version__}.*",
        "",
        "## Architecture",
        "",
        arch,
        "",
        "## Training data — read this",
        "",
        data_text,
        "",
        *(["| source | what | licence |", "|---|---|---|",
           "| synthetic renders | `metricanything render` (procedural scenes, simulated sensors) | Apache-2.0 |",
           *(f"| {n} | {w} | {lic} |" for n, w, lic in sources), ""] if sources else []),
        "## How it was trained (exact commands)",
        "",
        "```bash",
        *args.command,
        "```",
        "",
        "All run by `scripts/train_bundled.sh`"
        + (f" (this run: {', '.join(f'{k}={v}' for k, v in knobs.items())})" if knobs else "") + ": "
        + (" ".join(args.note) + " " if args.note else "`train.steps` was set from a wall-clock budget by "
           "`scripts/bundle_models.py plan` (a few timed steps). ")
        + "The fp32 training output was converted to fp16 by `scripts/bundle_models.py install`, and this card "
        "written by `scripts/bundle_models.py card`.",
        "",
        *_views_line(args.kind, train_cfg, c),
        f"Config file: `{args.config}` (the fully resolved config is in `training.json`). Training ran "
        f"{summary.get('step', '?')} steps in {summary.get('seconds_this_run', float('nan')):.0f} s; final loss "
        f"{summary.get('final_loss', float('nan')):.4g}; held-out validation at the end: "
        + (", ".join(f"{k} = {v:.4g}" for k, v in val.items()) or "n/a") + ".",
        "",
        "## Measured metrics (`metricanything eval`, run on these installed fp16 weights)",
        "",
        tables,
    ]
    if fov is not None:
        lines += [
            f"FoV head on {fov['samples']} held-out renders without intrinsics: mean |FoV error| "
            f"{fov['mean_abs_fov_error_deg']:.2f}°, median relative focal error {fov['median_rel_focal_error']:.3f}.",
            "",
        ]
    if fidelity is not None:
        lines += [
            f"Prompt fidelity: with {fidelity['points']} GT points as prompt on {fidelity['samples']} held-out "
            f"320x240 renders, the median relative error of the output at the prompt pixels is "
            f"{fidelity['median_rel_err_at_prompts']:.3f} (median over images).",
            "",
        ]
    if gate is not None:
        g = ", ".join(f"{k}: {v['all']:.3f}" for k, v in gate["summary"].items())
        lines += [f"Residual gate (`scripts/bundle_models.py gate`, {gate['num_frames']} held-out frames: "
                  f"{', '.join(f'`{f}`' for f in gate['frames'])}; 1 % and 0.1 % prompts): teacher / linear AbsRel, "
                  f"geometric mean, per gate — {g}; kept **{gate['best']:g}**.", ""]  # fmt: skip
    if fp16:
        lines += [f"fp16 weights vs the fp32 training output: max relative depth difference "
                  f"{fp16.get('max_rel_depth_diff_fp16_vs_fp32', float('nan')):.2e} on a probe image.", ""]  # fmt: skip
    if real is not None:
        lines += _real_frames_section(args.kind, real, args.real_frames_command, [])
    lines += [
        "## Intended use",
        "",
        use + " It lets the package work offline out of the box and is a reference for what the project's own "
        "commands produce with a small CPU budget.",
        "",
        "## Limitations",
        "",
        ("- Tiny model, trained for minutes on synthetic scenes only: expect large errors on real photographs "
         "(textures, lighting, objects and camera models it has never seen)." if not sources else
         "- Tiny model, trained for minutes on synthetic scenes and a handful of real indoor frames: without a "
         "prompt, expect large errors on real photographs (scenes, lighting and camera models it has never seen).")
        + " Do not use it for safety-relevant "
        "decisions. For real use, train or fine-tune on real RGB-D data with the same commands "
        "(`metricanything pretrain` / `finetune` / `distill`) or load stronger checkpoints with `--model`.",
        "- The synthetic benchmarks above are drawn from the same renderer as the training data (unseen seeds, "
        "and for `synthetic_unseen_cameras` unseen camera models); they measure fit to that distribution, not "
        "generalisation to the real world.",
        "- Metric scale without a prompt comes from the focal length; a wrong focal gives proportionally wrong depth.",
        "",
    ]
    write_text_atomic(dest / "MODEL_CARD.md", "\n".join(lines))
    print(f"wrote {dest / 'MODEL_CARD.md'} and {dest / 'training.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("plan", help="steps of a training config that fit in a time budget")
    p.add_argument("--config", required=True)
    p.add_argument("--minutes", type=float, required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--min-steps", type=int, default=10)
    p.add_argument("--max-steps", type=int, default=10**7)
    p = sub.add_parser("install", help="install a run's model into the package as fp16")
    p.add_argument("--kind", choices=("teacher", "student"), required=True)
    p.add_argument("--run", required=True, help="training run folder (holds model/)")
    p.add_argument("--dest", default=None, help="default: src/metricanything/assets/models/<kind>")
    p = sub.add_parser("gate", help="choose the installed teacher's residual_gate on held-out frames")
    p.add_argument("--dest", default=None, help="installed teacher (default: src/metricanything/assets/models/teacher)")
    p.add_argument("--frames", action="append", required=True, metavar="DIR",
                   help="held-out folder dataset (repeatable); never the real-frames benchmark")
    p.add_argument("--gates", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0])
    p.add_argument("--threads", type=int, default=1)
    p = sub.add_parser("card", help="write MODEL_CARD.md and training.json")
    p.add_argument("--kind", choices=("teacher", "student"), required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--dest", default=None)
    p.add_argument("--config", required=True, help="the training config used (a shipped preset name or a path)")
    p.add_argument("--eval", action="append", default=[], metavar="DIR", help="metricanything eval --out folder")
    p.add_argument("--command", action="append", default=[], metavar="CMD", help="an exact command that was run")
    p.add_argument("--note", action="append", default=[], metavar="TEXT",
                   help="how the run was set up (budget, stages); default: steps from `plan`")
    p.add_argument("--data-source", action="append", default=[], metavar="NAME|WHAT|LICENCE",
                   help="a real training source besides the renders (repeatable)")
    p.add_argument("--real-frames", default=None, metavar="JSON", help="benchmarks/real_frames.py --json output")
    p.add_argument("--real-frames-command", action="append", default=[], metavar="CMD",
                   help="the command that wrote --real-frames (default: the plain benchmark command)")
    p = sub.add_parser("real-frames", help="write the real-frame section of an existing MODEL_CARD.md")
    p.add_argument("--kind", choices=("teacher", "student"), required=True)
    p.add_argument("--json", required=True, help="benchmarks/real_frames.py --json output")
    p.add_argument("--dest", default=None, help="default: src/metricanything/assets/models/<kind>")
    p.add_argument("--command", action="append", default=[], metavar="CMD", help="the command that wrote --json")
    p.add_argument("--remark", action="append", default=[], metavar="TEXT", help="a sentence added to the section")
    args = parser.parse_args(argv)
    return {"plan": cmd_plan, "install": cmd_install, "gate": cmd_gate, "card": cmd_card,
            "real-frames": cmd_real_frames}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
