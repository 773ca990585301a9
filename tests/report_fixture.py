"""A small, fast stand-in for a finished quickstart run, for the report tests (no training, no models).

:func:`make_quickstart_record` writes real products where they are cheap (a rendered corpus, pseudo-label
shards, evaluation outputs of the baselines, example renders) and chosen numbers where they would need
training (loss logs, validation figures, headline metrics, predictions). The numbers are picked so that each
generated explanation has something to say: the teacher's smoothed loss ends higher than it starts, the
student's falls; the student is below the constant baseline; the student's prediction and depth are flat;
its FoV head gives one focal for every image.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

EXAMPLE_SIZE = (64, 48)
TRUE_FX = (60.0, 95.0, 140.0)
STUDENT_FX = (74.0, 74.5, 75.0)
STUDENT_DEPTH_M = 2.3


def _log(path: Path, losses: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, v in enumerate(losses):
        row: dict[str, Any] = {"kind": "train", "step": i + 1, "loss": float(v)}
        row.update({k: float(a[i]) for k, a in (extra or {}).items()})
        rows.append(json.dumps(row))
        if i % 10 == 0:
            rows.append(json.dumps({"kind": "data", "step": i + 1, "bad": 0}))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def _panel(run: Path, sample, flat: bool) -> None:
    from metricanything.depth_io import write_image
    from metricanything.train.panels import make_panel

    rng = np.random.default_rng(0)
    gt, valid = sample.depth, sample.valid
    pred = np.full_like(gt, STUDENT_DEPTH_M) if flat else gt * (1 + 0.05 * rng.standard_normal(gt.shape)).astype(np.float32)
    mask = rng.random(gt.shape) < 0.02
    write_image(run / "panels" / "step_00000040.png", make_panel(sample.image, mask, pred, gt, valid))


def _training_info(run: Path, steps: int, batch: int, first: float, final: float, val: dict[str, float]) -> dict:
    return {"run_dir": str(run), "config": "teacher_tiny.yaml", "model_preset": "tiny",
            "model_overrides": {"vit": "dinov3_tiny", "image_size": 96, "a_long_override_name": [16, 16, 24, 32]},
            "parameters": 1_412_578, "steps": steps, "train_seconds": 40.0, "first_loss": first, "final_loss": final,
            "plan": {"budget_s": 50.0, "seconds_per_step": 1.0, "batch_size": batch}, "val": val,
            "command": f"metricanything pretrain --set train.steps={steps} --out {run}"}  # fmt: skip


def make_quickstart_record(out: Path) -> dict[str, Any]:
    """Write the stand-in run into ``out`` and return its ``quickstart.json`` record (also written there)."""
    from metricanything.data.folder import FolderDataset
    from metricanything.data.render import render_sample
    from metricanything.data.shards import ShardWriter
    from metricanything.depth_io import write_image
    from metricanything.tasks.evaluate import EvalOptions
    from metricanything.tasks.evaluate import run as evaluate
    from metricanything.tasks.render import RenderOptions
    from metricanything.tasks.render import run as render

    out = Path(out)
    rng = np.random.default_rng(1)
    # 1. a real corpus and "pseudo-labels": the corpus depth made dense, with a confidence map
    corpus = render(RenderOptions(out=out / "corpus", num=7, size=(64, 48), sources="rendered,lidar,sfm", progress=False))
    ds = FolderDataset(out / "corpus")
    with ShardWriter(out / "pseudo_labels", "pl", 4) as writer:
        for i in range(len(ds)):
            s = ds[i]
            fill = float(np.median(s.depth[s.valid])) if s.valid.any() else 2.0
            dense = np.where(s.valid, s.depth, fill).astype(np.float32)
            writer.write(dataclasses.replace(s, depth=dense, valid=np.ones_like(s.valid)),
                         {"confidence": np.clip(rng.normal(0.95, 0.03, s.depth.shape), 0, 1).astype(np.float32)})  # fmt: skip
    # 2./4. training logs: the teacher's smoothed loss rises (and prompt-free batches are worse), the student's falls
    steps = 40
    prompt_free = (np.arange(steps) % 3 == 0).astype(float) * 0.25
    teacher_loss = np.linspace(0.10, 0.16, steps) * (1 + 2.0 * prompt_free) * np.exp(0.2 * rng.standard_normal(steps))
    _log(out / "teacher" / "log.jsonl", teacher_loss, {"prompt_free": prompt_free})
    student_loss = np.linspace(0.8, 0.3, steps) * np.exp(0.1 * rng.standard_normal(steps))
    _log(out / "student" / "log.jsonl", student_loss, {"fov_log_tan_l1": np.linspace(0.5, 0.2, steps)})
    val_sample = render_sample(5, "indoor", size=(64, 48))
    _panel(out / "teacher", val_sample, flat=False)
    _panel(out / "student", val_sample, flat=True)
    # 5. real evaluation outputs of the baselines (no model); the headline numbers below are chosen
    ev: dict[str, Any] = {"prompt": "density:0.01", "samples": 2, "train_median_m": 3.0, "benchmarks": {}}
    for bench in ("synthetic_indoor",):
        b: dict[str, Any] = {"description": "Held-out rendered indoor rooms (unseen seeds)."}
        for column, prompt, compare in (("prompted", "density:0.01", ["baseline:nearest", "baseline:linear"]),
                                        ("prompt_free", "none", ["baseline:train_median=3"])):  # fmt: skip
            d = out / "eval" / bench / column
            evaluate(EvalOptions(benchmark=bench, compare=compare, prompts=[prompt], limit=2, panels=1, out=d, progress=False))
            b[column] = {"column": prompt, "num_samples": 2, "dir": str(d), "command": f"metricanything eval --out {d}"}
        b["prompted"]["headline"] = {
            "teacher:teacher": {"abs_rel": 0.021, "rmse": 0.15, "delta1": 0.98},
            "baseline:nearest": {"abs_rel": 0.040, "rmse": 0.22, "delta1": 0.97},
            "baseline:linear": {"abs_rel": 0.026, "rmse": 0.16, "delta1": 0.977},
        }
        b["prompt_free"]["headline"] = {
            "student:student": {"abs_rel": 0.45, "rmse": 1.37, "delta1": 0.12},
            "teacher:teacher": {"abs_rel": 0.67, "rmse": 1.95, "delta1": 0.02},
            "baseline:train_median": {"abs_rel": 0.44, "rmse": 1.01, "delta1": 0.35},
        }
        ev["benchmarks"][bench] = b
    # 6. example images, their exact depth, and "predictions": a flat student, a close teacher
    ex, examples = out / "examples", {}
    runs = {"student": {"input": str(ex / "images"), "out": str(out / "infer" / "student"), "command": "metricanything infer -i x -o y"},
            "teacher_prompted": {"input": str(ex / "images_with_camera"), "out": str(out / "infer" / "teacher_prompted"),
                                 "command": "metricanything infer -i x -o z --prompt p"}}  # fmt: skip
    for i, (true_fx, student_fx) in enumerate(zip(TRUE_FX, STUDENT_FX, strict=True)):
        name = f"example_{i}"
        s = render_sample(100 + i, "indoor" if i % 2 == 0 else "outdoor", size=EXAMPLE_SIZE)
        truth = np.where(s.valid, s.depth, 0).astype(np.float32)
        for folder in ("images", "images_with_camera"):
            write_image(ex / folder / f"{name}.png", s.image)
        (ex / "truth").mkdir(parents=True, exist_ok=True)
        np.save(ex / "truth" / f"{name}_depth.npy", truth)
        for run, depth in (("student", np.full_like(truth, STUDENT_DEPTH_M) * (1 + 1e-3 * rng.random(truth.shape))),
                           ("teacher_prompted", truth * 1.02)):  # fmt: skip
            d = out / "infer" / run / name
            d.mkdir(parents=True, exist_ok=True)
            np.save(d / "depth.npy", depth.astype(np.float32))
        examples[name] = {"true_fx": true_fx, "true_fov_x": 50.0, "prompt_points": 30,
                          "student": {"fx": student_fx, "intrinsics_source": "estimated", "abs_rel": 0.4 + 0.1 * i},
                          "teacher_prompted": {"fx": true_fx, "intrinsics_source": "sidecar", "abs_rel": 0.02,
                                               "prompt_median_rel_err": 0.002}}  # fmt: skip
    info = {
        "render": {"out": str(out / "corpus"), "num_samples": 7, "size": [64, 48], "sources": ["rendered", "lidar", "sfm"],
                   "by_source": corpus.by_source(), "command": f"metricanything render --out {out / 'corpus'}"},
        "pretrain": _training_info(out / "teacher", steps, 8, float(teacher_loss[0]), float(teacher_loss[-1]),
                                   {"abs_rel": 0.034, "delta1": 0.96, "abs_rel_noprompt": 0.71, "delta1_noprompt": 0.0}),
        "pseudo_label": {"out": str(out / "pseudo_labels"), "num_samples": 7, "num_shards": 2, "label_valid_fraction": 1.0,
                         "mean_confidence": 0.95, "abs_rel_vs_trusted_gt": 0.063, "num_compared": 5,
                         "command": "metricanything pseudo-label"},
        "distill": _training_info(out / "student", steps, 2, float(student_loss[0]), float(student_loss[-1]),
                                  {"abs_rel": 0.46, "delta1": 0.22, "fov_abs_err_deg": 12.0}),
        "evaluate": ev,
        "infer": {"runs": runs, "examples": examples},
    }  # fmt: skip
    seconds = {"render": 2.6, "pretrain": 111.5, "pseudo_label": 10.9, "distill": 160.1, "evaluate": 7.3, "infer": 1.2}
    stages = {n: {"status": "done", "seconds": t, "info": info[n], "reused": False, "error": None} for n, t in seconds.items()}
    stages["report"] = {"status": "pending", "seconds": 0.0, "info": None, "reused": False, "error": None}
    record = {"out": str(out), "report": str(out / "report.html"), "budget_seconds": 540.0,
              "total_seconds": sum(seconds.values()), "this_run_seconds": sum(seconds.values()), "threads": 1, "seed": 0,
              "environment": "Python 3, torch 2, 2 CPU(s), linux", "stages": stages, "options": {},
              "command": f"metricanything quickstart --out {out}"}  # fmt: skip
    (out / "quickstart.json").write_text(json.dumps(record, indent=1, sort_keys=True), encoding="utf-8")
    return record
