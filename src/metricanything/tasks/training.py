"""``metricanything pretrain`` / ``distill`` / ``finetune`` / ``pseudo-label``: options -> config -> the run.

A training command's config is ``--config`` (a shipped preset or a YAML file) <- the command's own flags
(``--teacher``, ``--data``, ...) <- ``--set`` <- ``--out`` (:func:`training_config`); the run is
:func:`metricanything.train.pretrain.run_pretrain` or :func:`metricanything.train.distill.run_distill`.

:func:`plan_steps` sizes a run to a time budget by timing a few steps of that same training loop and task
(the quickstart and ``scripts/bundle_models.py plan`` use it).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from metricanything.config import format_set, merge_overrides
from metricanything.data.folder import FolderDataset
from metricanything.data.shards import ShardIndex
from metricanything.tasks.options import option
from metricanything.train.config import TrainConfig, build_config, load_config
from metricanything.train.distill import DistillTask, run_distill
from metricanything.train.loop import TrainResult, train
from metricanything.train.pretrain import PretrainTask, run_pretrain
from metricanything.train.pseudo_label import parse_data_spec, pseudo_label_config, run_pseudo_label

#: stage -> (training task class, run function)
STAGES = {"pretrain": (PretrainTask, run_pretrain), "distill": (DistillTask, run_distill)}
#: planned seconds per step = SAFETY x the calibrated value (a few calibration steps under-estimate a long run on
#: a shared machine: measured 0.064 s/step calibrated vs 0.082 s/step over 2940 steps of the tiny teacher)
SAFETY = 1.25


def is_main_process() -> bool:
    """True on rank 0 of a ``torchrun`` job (and without one)."""
    return os.environ.get("RANK", "0") == "0"


# ---------------------------------------------------------------------------------------------- options
@dataclass
class TrainOptions:
    """What ``metricanything pretrain`` takes: ``--config``, ``--set`` (dotted key -> value), ``--out``, ``--resume``."""

    config: str = option("--config", "teacher_tiny")
    overrides: dict[str, Any] = option("--set", factory=dict, many="repeat", words=format_set)
    out: str | None = option("--out", None)
    resume: bool = option("--resume", False)

    stage: ClassVar[str] = "pretrain"
    made: ClassVar[str] = "teacher"

    def command_overrides(self) -> dict[str, Any]:
        """The config values the command's own flags set (applied before ``--set``)."""
        return {}


@dataclass
class DistillOptions(TrainOptions):
    """``metricanything distill``: + ``--teacher`` (``distill.teacher``) and ``--data`` pseudo-label shard sets."""

    config: str = option("--config", "student_tiny")
    teacher: str | None = option("--teacher", None)
    data: list[str] = option("--data", factory=list, many="repeat")

    stage: ClassVar[str] = "distill"
    made: ClassVar[str] = "student"

    def command_overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = {"distill.teacher": self.teacher} if self.teacher else {}
        if self.data:
            out["data.sources"] = [{"kind": "shards", "path": p} for p in self.data]
        return out


def _source(spec: str, untrusted: bool) -> dict[str, Any]:
    src = parse_data_spec(spec)
    if src.kind == "render":
        return {"kind": "render", "num_samples": src.num_samples, "seed": src.seed}
    entry = {"kind": src.kind, "path": src.path, "name": src.name, "split": src.split}
    if untrusted:
        entry["metric_scale_trusted"] = False
    return {k: v for k, v in entry.items() if v is not None}


@dataclass
class FinetuneOptions(TrainOptions):
    """``metricanything finetune``: pretraining from ``--teacher`` (``model.init``) on ``--data``."""

    teacher: str = option("--teacher", "", always=True)
    data: list[str] = option("--data", factory=list, many="repeat")
    val_data: str | None = option("--val-data", None)
    prompt_pattern: str | None = option("--prompt-pattern", None)  # e.g. radar:64; None: random sparse prompts
    untrusted: bool = option("--untrusted", False)  # the data's metric scale is not trusted (SfM/MVS)

    made: ClassVar[str] = "fine-tuned teacher"

    def command_overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model.init": self.teacher, "model.overrides": {},
                               "data.sources": [_source(p, self.untrusted) for p in self.data]}  # fmt: skip
        if self.val_data:
            out["data.val_sources"] = [_source(self.val_data, False)]
        if self.prompt_pattern:
            out["prompts.pattern"] = self.prompt_pattern
        return out


def training_config(options: TrainOptions) -> TrainConfig:
    """The stage's config: ``--config`` <- the command's own flags <- ``--set`` <- ``--out``."""
    out = {"out_dir": str(options.out)} if options.out else None
    return load_config(options.config, merge_overrides(options.command_overrides(), options.overrides, out),
                       stage=options.stage)  # fmt: skip


def run(options: TrainOptions) -> TrainResult:
    """Train (or ``resume``) as configured; rank 0 prints where the model is."""
    cfg = training_config(options)
    result = STAGES[cfg.stage][1](cfg, resume=options.resume)
    if result is not None and is_main_process():
        print(f"{options.made}: {result.out_dir / 'model'} (step {result.step}, val {result.val})")
    return result


# ---------------------------------------------------------------------------------------------- pseudo-labels
@dataclass
class PseudoLabelOptions:
    """What ``metricanything pseudo-label`` takes; None keeps the :class:`PseudoLabelConfig` default."""

    teacher: str = option("--teacher", "", always=True)
    data: list[str] = option("--data", factory=list, many="repeat", always=True)
    out: str = option("--out", "", always=True)
    shard_size: int | None = option("--shard-size", None)
    prompt_mode: str | None = option("--prompt-mode", None)
    prompt_fraction: float | None = option("--prompt-fraction", None)
    sparse_threshold: float | None = option("--sparse-threshold", None)
    tta: bool = option("--no-tta", True, invert=True)
    min_confidence: float | None = option("--min-confidence", None)
    conf_tau: float | None = option("--conf-tau", None)
    align: bool = option("--no-align", True, invert=True)
    image_format: str | None = option("--image-format", None)
    limit: int | None = option("--limit", None)
    seed: int | None = option("--seed", None)
    device: str | None = option("--device", None)
    progress: bool = option("--no-progress", True, invert=True)


def pseudo_label(options: PseudoLabelOptions) -> dict[str, Any]:
    """Write the teacher's pseudo-labels as shards (resumable by shard); returns the manifest."""
    from metricanything.atomic import check_output_dir, clean_stale_temps

    o = options
    if is_main_process() and o.out:
        clean_stale_temps(check_output_dir(o.out, "--out"))
    cfg = pseudo_label_config(
        teacher=str(o.teacher), data=[str(d) for d in o.data], out=str(o.out), shard_size=o.shard_size,
        prompt_mode=o.prompt_mode, prompt_fraction=o.prompt_fraction, sparse_threshold=o.sparse_threshold,
        tta_flip=o.tta, min_confidence=o.min_confidence, conf_tau=o.conf_tau, align_untrusted=o.align,
        image_format=o.image_format, limit=o.limit, seed=o.seed, device=o.device, progress=o.progress,
    )  # fmt: skip
    manifest = run_pseudo_label(cfg)
    if is_main_process():
        print(f"pseudo-labels: {o.out} ({manifest['num_samples']} samples in {manifest['num_shards']} shards)")
    return manifest


def label_agreement(pseudo: str | Path, gt: str | Path) -> dict[str, Any]:
    """How pseudo-labels (shards) compare with a folder dataset's GT: their mean valid fraction and confidence,
    and the mean AbsRel against the trusted-scale GT where both are valid (matched by sample id)."""
    index, dataset = ShardIndex(pseudo), FolderDataset(gt)
    by_id = {sid: i for i, sid in enumerate(dataset.sample_ids)}
    rel, coverage, conf = [], [], []
    for k in range(len(index)):
        s = index[k]
        coverage.append(float(s.valid.mean()))
        c = index.extra(k, "confidence")
        if c is not None:
            conf.append(float(np.mean(c)))
        g = dataset[by_id[s.sample_id]] if s.sample_id in by_id else None
        m = g.valid & s.valid if g is not None and g.metric_scale_trusted else None
        if m is not None and m.any():
            rel.append(float(np.mean(np.abs(s.depth[m] - g.depth[m]) / g.depth[m])))
    mean = lambda v: float(np.mean(v)) if v else None  # noqa: E731
    return {"label_valid_fraction": mean(coverage), "mean_confidence": mean(conf), "abs_rel_vs_trusted_gt": mean(rel),
            "num_compared": len(rel)}  # fmt: skip


# ---------------------------------------------------------------------------------------------- step planning
class _StepClock:
    """The stage's own task, noting when each optimiser step's first micro-batch reaches the loss."""

    def __init__(self, task: Any) -> None:
        self.task, self.starts = task, {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.task, name)

    def loss(self, ctx: Any, batch: dict[str, Any]) -> Any:
        self.starts.setdefault(ctx.step, time.perf_counter())
        return self.task.loss(ctx, batch)


def measure_step_seconds(cfg: TrainConfig, n_steps: int = 5) -> float:
    """Seconds per optimiser step of ``cfg``: the training loop (:func:`metricanything.train.loop.train`) runs
    the stage's task for ``n_steps`` steps in a scratch folder (same model, data, loss, batch, accumulation,
    threads); returns the mean time from one step's start to the next, the first step (warm-up) left out."""
    n = max(3, n_steps)
    with tempfile.TemporaryDirectory(prefix="metricanything-calibrate-") as tmp:
        calib = build_config(type(cfg), cfg.to_dict(), {
            "out_dir": tmp, "train.steps": n, "train.progress": False, "train.log_every": n, "train.val_every": 0,
            "train.image_every": 0, "train.ckpt_every": n, "train.keep_last": 1, "data.val_samples": 1,
        }, where="calibration")  # fmt: skip
        clock = _StepClock(STAGES[cfg.stage][0](calib))
        with contextlib.redirect_stdout(io.StringIO()):
            train(calib, clock)
    starts = [clock.starts[s] for s in sorted(clock.starts)]
    return float(np.mean(np.diff(starts)[1:]))


def plan_steps(cfg: TrainConfig, budget_s: float, min_steps: int = 1, max_steps: int = 10**9) -> tuple[int, dict[str, Any]]:
    """How many steps of ``cfg`` fit in ``budget_s`` seconds, calibration and end-of-run work included.

    ``steps = floor((budget - calibration - overhead) / (SAFETY x seconds_per_step))`` clamped to
    ``[min_steps, max_steps]``, where overhead = 5% of the budget + 3 s + the final validation (one step's time
    per batch of ``data.val_samples``). Returns (steps, plan facts).
    """
    t = time.perf_counter()
    per_step = measure_step_seconds(cfg)
    calib = time.perf_counter() - t
    overhead = 0.05 * budget_s + 3.0 + math.ceil(cfg.data.val_samples / max(1, cfg.train.batch_size)) * per_step
    raw = (budget_s - calib - overhead) / max(SAFETY * per_step, 1e-6)
    steps = int(min(max_steps, max(min_steps, math.floor(raw))))
    plan = {"budget_s": budget_s, "calibration_s": calib, "seconds_per_step": per_step, "safety": SAFETY, "steps": steps,
            "batch_size": cfg.train.batch_size, "grad_accum": cfg.train.grad_accum}  # fmt: skip
    return steps, plan


__all__ = [
    "DistillOptions",
    "FinetuneOptions",
    "PseudoLabelOptions",
    "TrainOptions",
    "is_main_process",
    "label_agreement",
    "measure_step_seconds",
    "plan_steps",
    "pseudo_label",
    "run",
    "training_config",
]
