"""Acceptance figures of the training pipeline on the embedded rendered mixture (CPU, minutes).

1. Pretrain ``configs/teacher_tiny.yaml`` -> held-out AbsRel with 1% prompts vs filling the same prompts by
   linear interpolation (scipy ``griddata``; nearest neighbour outside the convex hull).
2. Pseudo-label a rendered mixture (metric-trusted kinds) with that teacher, distil ``configs/student_tiny.yaml``
   -> held-out delta1 (GT focal) vs "predict the training-set median depth" (median of the pseudo-label depths).
3. Robustness: two teachers on labels with 10% gross SfM-like outliers (depth * exp(+-U(0.3, 1.2))), trimmed
   (trim 0.2) vs plain (trim 0) MAE -> held-out AbsRel (1% clean prompts) of both.

Held-out data: exact rendered views (seed 20,000,000+, centred 128 px crops), never seen in training.
Metrics are per-image means over valid GT pixels (metricanything.metrics.MetricAccumulator).

    python benchmarks/train_tiny.py                # full: ~10 min teacher + student + robustness runs
    python benchmarks/train_tiny.py --quick        # a few steps of everything, to check it works
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
#: Sources pseudo-labelled for the student: the metric-trusted kinds. (SfM/MVS would be aligned to the
#: teacher's prompt-free prediction, which a minutes-old CPU teacher cannot yet provide.)
PSEUDO_KINDS = "rendered,lidar,tof,structured_light,stereo"


def _log(msg: str) -> None:
    print(f"[train_tiny {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def heldout_items(n: int, size: int, seed: int = 20_000_000) -> list[dict]:
    """Exact rendered held-out views with a fixed 1% prompt each."""
    from metricanything.prompts.sampler import PromptSamplerConfig, sample_prompt_masks
    from metricanything.train.config import SourceConfig
    from metricanything.train.data import Mixture, to_item, training_view

    mix = Mixture([SourceConfig(kind="render", seed=seed, render_size=[160, 120], sources=["rendered"])], seed)
    scfg = PromptSamplerConfig(min_fraction=0.01, max_fraction=0.01, p_extreme=0.0, p_full=0.0, min_points=1)
    items = []
    for i in range(n):
        sample, s = mix.get(i)
        item = to_item(training_view(sample, size, None), i, s)
        m = sample_prompt_masks(item["valid"][None], scfg, torch.Generator().manual_seed(5_000 + i))[0]
        item["prompt_mask"] = m
        item["prompt_depth"] = torch.where(m, item["depth"], torch.zeros_like(item["depth"]))
        items.append(item)
    return items


def interpolate_prompt(depth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Linear interpolation of the prompt points over the image; nearest neighbour outside their hull."""
    from scipy.interpolate import griddata

    h, w = mask.shape
    vs, us = np.nonzero(mask)
    vals = depth[vs, us].astype(np.float64)
    gv, gu = np.mgrid[0:h, 0:w]
    pts = np.stack([vs, us], axis=1).astype(np.float64)
    if len(vals) >= 3:
        try:
            lin = griddata(pts, vals, (gv, gu), method="linear")
        except Exception:  # noqa: BLE001 - degenerate (collinear) points: nearest everywhere
            lin = np.full((h, w), np.nan)
    else:
        lin = np.full((h, w), np.nan)
    near = griddata(pts, vals, (gv, gu), method="nearest") if len(vals) else np.full((h, w), np.nan)
    return np.where(np.isfinite(lin), lin, near).astype(np.float32)


@torch.no_grad()
def eval_teacher(model_dir: Path, items: list[dict]) -> dict[str, float]:
    from metricanything.metrics import MetricAccumulator
    from metricanything.models.checkpoint import from_pretrained
    from metricanything.train.data import collate_items, imagenet_normalise

    teacher = from_pretrained(model_dir).eval()
    acc_t, acc_i, acc_0, acc_r = (MetricAccumulator(nonfinite="exclude", nonpositive="clip") for _ in range(4))
    for start in range(0, len(items), 8):
        b = collate_items(items[start : start + 8])
        img = imagenet_normalise(b["image"])
        aux = teacher.forward_with_aux(img, b["prompt_depth"], b["prompt_mask"], b["fx"])
        pred = aux["depth"].numpy()
        # the parameter-free part alone: the prompt reference (median + dense fill) without the network residual
        ref = torch.exp(aux["log_depth"] - aux["residual"]).numpy()
        pred0 = teacher(img, f_px=b["fx"]).numpy()
        for j in range(pred.shape[0]):
            gt, valid = b["depth"][j, 0].numpy(), b["valid"][j, 0].numpy()
            interp = interpolate_prompt(gt, b["prompt_mask"][j, 0].numpy())
            acc_t.add(pred[j, 0], gt, valid)
            acc_i.add(interp, gt, valid)
            acc_0.add(pred0[j, 0], gt, valid)
            acc_r.add(ref[j, 0], gt, valid)
    t, i, z, r = acc_t.per_image_mean(), acc_i.per_image_mean(), acc_0.per_image_mean(), acc_r.per_image_mean()
    return {
        "teacher_abs_rel_1pct": t["abs_rel"], "interp_abs_rel_1pct": i["abs_rel"],
        "reference_only_abs_rel_1pct": r["abs_rel"],
        "teacher_delta1_1pct": t["delta1"], "interp_delta1_1pct": i["delta1"],
        "teacher_abs_rel_noprompt": z["abs_rel"], "teacher_delta1_noprompt": z["delta1"],
    }


@torch.no_grad()
def eval_student(model_dir: Path, items: list[dict], median_depth: float) -> dict[str, float]:
    from metricanything.metrics import MetricAccumulator
    from metricanything.models.checkpoint import from_pretrained
    from metricanything.train.data import collate_items
    from metricanything.train.distill import student_metric_depth

    student = from_pretrained(model_dir).eval()
    acc_s, acc_m = (MetricAccumulator(nonfinite="exclude", nonpositive="clip") for _ in range(2))
    for start in range(0, len(items), 4):
        b = collate_items(items[start : start + 4])
        pred = student_metric_depth(student, b["image"], b["fx"]).numpy()
        for j in range(pred.shape[0]):
            gt, valid = b["depth"][j, 0].numpy(), b["valid"][j, 0].numpy()
            acc_s.add(pred[j, 0], gt, valid)
            acc_m.add(np.full_like(gt, median_depth), gt, valid)
    s, m = acc_s.per_image_mean(), acc_m.per_image_mean()
    return {"student_delta1": s["delta1"], "median_delta1": m["delta1"],
            "student_abs_rel": s["abs_rel"], "median_abs_rel": m["abs_rel"], "training_median_depth_m": median_depth}


def pseudo_label_median(shards: Path) -> float:
    from metricanything.train.data import ShardIndex

    idx = ShardIndex(shards)
    values = [idx.get(k).depth[idx.get(k).valid] for k in range(len(idx))]
    return float(np.median(np.concatenate(values)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench_train_tiny")
    ap.add_argument("--quick", action="store_true", help="a few steps of everything (checks the pipeline only)")
    ap.add_argument("--teacher-steps", type=int, default=None, help="default: configs/teacher_tiny.yaml")
    ap.add_argument("--student-steps", type=int, default=None, help="default: configs/student_tiny.yaml")
    ap.add_argument("--robust-steps", type=int, default=None, help="steps of each robustness teacher (default 300)")
    ap.add_argument("--pseudo-samples", type=int, default=None, help="images pseudo-labelled (default 384)")
    ap.add_argument("--heldout", type=int, default=None, help="held-out views (default 64)")
    ap.add_argument("--robust-space", default=None, choices=("log", "inverse", "depth"),
                    help="residual space of the robustness runs (default: the teacher config's, log)")
    ap.add_argument("--skip", action="append", default=[], choices=("teacher", "student", "robust"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.chdir(ROOT)

    from metricanything.train.config import load_config
    from metricanything.train.distill import run_distill
    from metricanything.train.pretrain import run_pretrain
    from metricanything.train.pseudo_label import pseudo_label_config, run_pseudo_label

    q = args.quick
    teacher_steps = args.teacher_steps or (20 if q else None)
    student_steps = args.student_steps or (6 if q else None)
    robust_steps = args.robust_steps or (10 if q else 300)
    n_pseudo = args.pseudo_samples or (16 if q else 384)
    n_held = args.heldout or (8 if q else 64)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = ["train.progress=false", "data.val_samples=8"]
    results: dict[str, object] = {"quick": q}
    t_all = time.perf_counter()
    held = heldout_items(n_held, 128)

    teacher_dir = out / "teacher"
    if "teacher" not in args.skip:
        ov = [*common, f"out_dir={teacher_dir}"] + ([f"train.steps={teacher_steps}"] if teacher_steps else [])
        cfg = load_config("configs/teacher_tiny.yaml", ov)
        _log(f"teacher: {cfg.train.steps} steps x batch {cfg.train.batch_size} at {cfg.data.size} px")
        t0 = time.perf_counter()
        run_pretrain(cfg)
        results["teacher_minutes"] = (time.perf_counter() - t0) / 60
        results["teacher_steps"] = cfg.train.steps
        results.update(eval_teacher(teacher_dir / "model", held))
        _log(json.dumps({k: v for k, v in results.items() if k.startswith(("teacher", "interp", "reference"))}, indent=1))

    if "student" not in args.skip:
        pseudo = out / "pseudo"
        t0 = time.perf_counter()
        run_pseudo_label(pseudo_label_config(
            teacher=str(teacher_dir / "model"), data=[f"render:{n_pseudo}:30000000:160x120:{PSEUDO_KINDS}"], out=str(pseudo),
            shard_size=64, progress=False,
        ))
        results["pseudo_label_minutes"] = (time.perf_counter() - t0) / 60
        median = pseudo_label_median(pseudo)
        student_dir = out / "student"
        ov = [*common, f"out_dir={student_dir}", f"distill.teacher={teacher_dir / 'model'}",
              f"data.sources=[{{kind: shards, path: '{pseudo}'}}]"]
        ov += [f"train.steps={student_steps}"] if student_steps else []
        cfg = load_config("configs/student_tiny.yaml", ov)
        _log(f"student: {cfg.train.steps} steps x batch {cfg.train.batch_size} on {n_pseudo} pseudo-labels")
        t0 = time.perf_counter()
        run_distill(cfg)
        results["student_minutes"] = (time.perf_counter() - t0) / 60
        results["student_steps"] = cfg.train.steps
        results.update(eval_student(student_dir / "model", held, median))
        _log(json.dumps({k: v for k, v in results.items() if k.startswith(("student", "median", "training"))}, indent=1))

    if "robust" not in args.skip:
        for name, trim in (("trimmed", 0.2), ("plain", 0.0)):
            run_dir = out / f"robust_{name}"
            ov = [*common, f"out_dir={run_dir}", f"train.steps={robust_steps}", f"loss.trim={trim}",
                  "data.label_outlier_fraction=0.1", "data.label_outlier_sources=['*']",
                  "data.sources=[{kind: render, render_size: [160, 120], sources: [rendered]}]",
                  "train.val_every=0", "train.image_every=0"]
            ov += [f"loss.space={args.robust_space}"] if args.robust_space else []
            cfg = load_config("configs/teacher_tiny.yaml", ov)
            _log(f"robustness ({name} MAE, trim {trim}): {robust_steps} steps, 10% gross label outliers")
            t0 = time.perf_counter()
            run_pretrain(cfg)
            ev = eval_teacher(run_dir / "model", held)
            results[f"{name}_mae_abs_rel_1pct"] = ev["teacher_abs_rel_1pct"]
            results[f"{name}_mae_abs_rel_noprompt"] = ev["teacher_abs_rel_noprompt"]
            results[f"{name}_minutes"] = (time.perf_counter() - t0) / 60
            results["robust_loss_space"] = cfg.loss.space

    results["total_minutes"] = (time.perf_counter() - t_all) / 60
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True))
    print("\n=== train_tiny results" + (" (QUICK: pipeline check only, not acceptance figures)" if q else "") + " ===")
    for k, v in sorted(results.items()):
        print(f"{k:32s} {v:.4f}" if isinstance(v, float) else f"{k:32s} {v}")
    if "teacher_abs_rel_1pct" in results:
        ok = results["teacher_abs_rel_1pct"] < results["interp_abs_rel_1pct"]
        print(f"teacher (1% prompts) beats linear interpolation on AbsRel: {ok}")
    if "student_delta1" in results:
        ok = results["student_delta1"] > results["median_delta1"]
        print(f"student beats the training-set median depth on delta1: {ok}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
