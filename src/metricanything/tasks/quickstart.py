"""``metricanything quickstart``: the whole pipeline, for real, in minutes on a laptop CPU, with an HTML report.

Stages (each one calls the library entry point of the corresponding command; nothing is replayed):

1. ``render``: a small heterogeneous corpus from the embedded renderer + sensor simulators, every source kind
   (rendered, LiDAR, ToF, structured light, stereo, SfM, MVS), written in the folder format
   (what ``metricanything render`` does);
2. ``pretrain``: a tiny prompt-conditioned teacher on that corpus (``metricanything pretrain``);
3. ``pseudo_label``: the teacher labels the corpus into shards (``metricanything pseudo-label``);
4. ``distill``: a tiny prompt-free student (with a FoV head) learns the pseudo-labels
   (``metricanything distill``);
5. ``evaluate``: both models against the baselines on the synthetic held-out benchmarks (``metricanything
   eval``): a prompted column (teacher vs. interpolation baselines) and a prompt-free column (teacher,
   student vs. the training-set median);
6. ``infer``: ``metricanything infer`` on a few held-out images written as PNG, once with the student (no
   camera given: focal from the FoV head) and once with the teacher and a ``u,v,z`` prompt file per image;
7. ``report``: ``OUT/report.html`` (self-contained: tables + embedded PNG figures) and ``OUT/quickstart.json``.

Time budget. The two training stages get ``teacher_fraction`` / ``student_fraction`` of the total budget.
Their step count is calibrated: a few real training steps (same task, model, data and thread count as the
run) are timed, and ``steps = (stage budget - calibration - overhead) / (SAFETY x seconds per step)``, clamped to
``[min_steps, max_steps]``. The student's budget is also capped so that the stages after it keep
``post_reserve`` of the total. The full schedule (warm-up + cosine) therefore always completes.

Resuming. Each finished stage writes ``OUT/stages/<stage>.json`` with a fingerprint of the options it
depends on. Re-running with the same options skips every finished stage whose outputs are still there;
when a stage re-runs, every later stage re-runs too. ``fresh=True`` re-runs everything.

If a stage's code is missing or fails, the run stops with :class:`QuickstartError` naming the stage (after
writing a partial report that shows the finished stages and the failure).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import html
import importlib
import io
import json
import math
import os
import platform
import shutil
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metricanything.atomic import atomic_path, write_text_atomic
from metricanything.config import find_config as _find_config
from metricanything.config import format_set, merge_overrides
from metricanything.errors import ConfigError, InvalidInputError, MetricAnythingError

STAGES = ("render", "pretrain", "pseudo_label", "distill", "evaluate", "infer", "report")
#: every source kind the embedded data engine simulates
ALL_SOURCES = ("rendered", "lidar", "tof", "structured_light", "stereo", "sfm", "mvs")
#: held-out seeds (training renders use derive_seed(seed, i); validation 10,000,000 + k; benchmarks 1,000,000 + i)
VAL_SEED = 10_000_000
EXAMPLE_SEED = 20_000_000
BENCHMARKS = ("synthetic_indoor", "synthetic_outdoor")
#: planned seconds per step = SAFETY x the calibrated value
SAFETY = 1.25


class QuickstartError(MetricAnythingError):
    """A quickstart stage is unavailable or failed (the message names the stage)."""


# ---------------------------------------------------------------------------------------------- options
@dataclass
class QuickstartOptions:
    """Everything the quickstart does, with defaults that fit 10 minutes on 2 CPU cores."""

    out: Path = Path("runs/quickstart")
    budget_minutes: float = 9.0
    seed: int = 0
    num_samples: int = 140  # corpus size (20 per source kind)
    render_size: tuple[int, int] = (128, 96)  # W, H of the corpus and the example images
    train_size: int = 96  # square training crop of the teacher (and its network input size)
    student_train_size: int = 96  # square training view of the student (upsampled to its network input)
    teacher_fraction: float = 0.25  # share of the budget for teacher pretraining
    student_fraction: float = 0.45  # share of the budget for student distillation
    post_reserve: float = 0.12  # share of the budget kept for evaluate + infer + report
    min_steps: int = 4
    max_steps: int = 100_000
    val_samples: int = 8
    eval_samples: int = 8  # per benchmark
    eval_prompt: str = "density:0.01"  # the prompted column (1% of the valid pixels)
    num_examples: int = 3
    threads: int = 0  # torch threads (0 = auto, see resolved_threads)
    teacher_config: str | None = None  # shipped preset name or YAML path; default teacher_tiny
    student_config: str | None = None  # shipped preset name or YAML path; default student_tiny
    # overrides of the training configs: dotted keys -> values (metricanything.config.apply_overrides)
    teacher_overrides: dict[str, Any] = field(default_factory=dict)
    student_overrides: dict[str, Any] = field(default_factory=dict)
    fresh: bool = False
    progress: bool = True

    def validate(self) -> None:
        checks = [
            (self.budget_minutes > 0, f"--budget-minutes must be > 0, got {self.budget_minutes}"),
            (self.num_samples >= len(ALL_SOURCES), f"--num-samples must be >= {len(ALL_SOURCES)} (one per source kind)"),
            (min(self.render_size) >= 16, f"--size must be at least 16x16, got {self.render_size}"),
            (min(self.train_size, self.student_train_size) >= 16, "training sizes must be >= 16 pixels"),
            (0 < self.teacher_fraction < 1 and 0 < self.student_fraction < 1, "stage fractions must be in (0, 1)"),
            (self.teacher_fraction + self.student_fraction + self.post_reserve < 1,
             "teacher + student fractions + post reserve must be < 1"),
            (1 <= self.min_steps <= self.max_steps, "need 1 <= min_steps <= max_steps"),
            (self.val_samples >= 1 and self.eval_samples >= 1, "val/eval samples must be >= 1"),
            (self.num_examples >= 1, "--examples must be >= 1"),
            (self.threads >= 0, "--threads must be >= 0"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise InvalidInputError(message)

    @property
    def budget_s(self) -> float:
        return 60.0 * self.budget_minutes

    def resolved_threads(self) -> int:
        """``threads``, or automatically min(2, CPUs), or 1 when other processes already keep the CPUs busy
        (1-minute load average >= CPUs): oversubscribed intra-op threads make steps several times slower and
        the calibrated step time unreliable."""
        if self.threads:
            return self.threads
        cpus = os.cpu_count() or 1
        try:
            busy = os.getloadavg()[0] >= cpus
        except (AttributeError, OSError):
            busy = False
        return 1 if busy else max(1, min(2, cpus))


@dataclass
class StageRecord:
    """What one stage did: wall time, whether it was reused from an earlier run, and its facts."""

    name: str
    seconds: float = 0.0
    reused: bool = False
    status: str = "pending"  # pending | done | failed
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class QuickstartResult:
    out: Path
    report: Path
    stages: dict[str, StageRecord]
    total_seconds: float
    budget_seconds: float


# ---------------------------------------------------------------------------------------------- helpers
def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    return str(obj)


def _finite(obj: Any) -> Any:
    """Replace non-finite floats by None (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _dump(obj: Any) -> str:
    return json.dumps(_finite(json.loads(json.dumps(obj, default=_json_default))), indent=2, sort_keys=True)


def _require(module: str, stage: str) -> Any:
    """Import a pipeline module or fail loudly: the quickstart never skips or fakes a stage."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise QuickstartError(f"stage {stage!r} is unavailable: cannot import {module} ({exc})") from exc


def find_config(name: str) -> Path:
    """A training config: a shipped preset's name (``teacher_tiny``) or a path to a YAML file."""
    return _find_config(name, what="training config")


def _count_params(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            with contextlib.suppress(json.JSONDecodeError):
                rows.append(json.loads(line))
    return rows


# ---------------------------------------------------------------------------------------------- step planning
def measure_step_seconds(cfg: Any, task_cls: type, n_steps: int = 4) -> float:
    """Seconds per optimiser step of training config ``cfg`` with stage task ``task_cls`` (``PretrainTask`` or
    ``DistillTask``): ``n_steps`` real steps (same model, data, loss, batch, accumulation, threads) are timed and
    the mean of all but the first is returned. Data loading is timed in-process (conservative when the run
    uses loader workers)."""
    import torch

    from metricanything.train.loop import (
        StepContext,
        autocast_for,
        build_optimizer,
        seed_everything,
        to_device,
    )

    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    seed_everything(cfg.seed)
    task = task_cls(cfg)
    with contextlib.redirect_stdout(io.StringIO()):
        model = task.build_model().to(device)
    model.train()
    opt = build_optimizer(model, cfg, tuple(task.encoder_prefixes))
    autocast, _ = autocast_for(cfg.train.precision, device)
    ds = task.dataset()
    bs, accum = cfg.train.batch_size, cfg.train.grad_accum
    times = []
    for step in range(max(1, n_steps)):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        for m in range(accum):
            base = (step * accum + m) * bs
            batch = to_device(task.collate([ds[i] for i in range(base, base + bs)]), device)
            ctx = StepContext(model, model, device, step, 0, 1, autocast)
            with autocast():
                loss, _ = task.loss(ctx, batch)
            (loss.float() / accum).backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    del model, opt, task
    return float(np.mean(times[1:])) if len(times) > 1 else float(times[0])


def task_class_for(cfg: Any) -> type:
    """The training task class of ``cfg.stage``."""
    if cfg.stage == "pretrain":
        return _require("metricanything.train.pretrain", "pretrain").PretrainTask
    if cfg.stage == "distill":
        return _require("metricanything.train.distill", "distill").DistillTask
    raise ConfigError(f"unknown training stage {cfg.stage!r}")


def plan_steps(
    cfg: Any, task_cls: type | None, budget_s: float, min_steps: int = 1, max_steps: int = 10**9
) -> tuple[int, dict[str, Any]]:
    """How many steps of ``cfg`` fit in ``budget_s`` seconds (calibration and end-of-run work included).

    ``steps = floor((budget - calibration - overhead) / (SAFETY x seconds_per_step))`` clamped to
    ``[min_steps, max_steps]``, where overhead = 5% of the budget + 3 s + the final validation (one step's time
    per batch of ``data.val_samples``). Returns (steps, plan facts).
    """
    task_cls = task_cls or task_class_for(cfg)
    t = time.perf_counter()
    per_step = measure_step_seconds(cfg, task_cls)
    calib = time.perf_counter() - t
    val_batches = math.ceil(cfg.data.val_samples / max(1, cfg.train.batch_size))
    overhead = 0.05 * budget_s + 3.0 + val_batches * per_step
    # a few calibration steps under-estimate a long run on a shared machine (measured: 0.064 s/step
    # calibrated vs 0.082 s/step over 2940 steps of the tiny teacher), so plan with a margin
    raw = (budget_s - calib - overhead) / max(SAFETY * per_step, 1e-6)
    steps = int(min(max_steps, max(min_steps, math.floor(raw))))
    plan = {"budget_s": budget_s, "calibration_s": calib, "seconds_per_step": per_step, "safety": SAFETY, "steps": steps,
            "batch_size": cfg.train.batch_size, "grad_accum": cfg.train.grad_accum}  # fmt: skip
    return steps, plan


# ---------------------------------------------------------------------------------------------- the run
class Quickstart:
    """One quickstart run (see the module docstring)."""

    def __init__(self, options: QuickstartOptions) -> None:
        options.validate()
        self.o = options
        self.out = Path(options.out)
        self.stage_dir = self.out / "stages"
        self.records: dict[str, StageRecord] = {s: StageRecord(s) for s in STAGES}
        self.t0 = time.perf_counter()
        self.invalidated = bool(options.fresh)
        self.threads = options.resolved_threads()

    # ---- paths
    @property
    def corpus(self) -> Path:
        return self.out / "corpus"

    @property
    def teacher_run(self) -> Path:
        return self.out / "teacher"

    @property
    def student_run(self) -> Path:
        return self.out / "student"

    @property
    def pseudo(self) -> Path:
        return self.out / "pseudo_labels"

    @property
    def figures(self) -> Path:
        return self.out / "figures"

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def log(self, text: str) -> None:
        print(f"[quickstart {self.elapsed():6.1f}s] {text}", flush=True)

    # ---- stage bookkeeping
    def _fingerprint(self, stage: str) -> str:
        o = self.o
        keys: dict[str, Any] = {"seed": o.seed, "num_samples": o.num_samples, "render_size": list(o.render_size)}
        if STAGES.index(stage) >= STAGES.index("pretrain"):
            keys.update(train_size=o.train_size, budget=o.budget_minutes, teacher_fraction=o.teacher_fraction,
                        teacher_config=o.teacher_config, teacher_overrides=o.teacher_overrides,
                        min_steps=o.min_steps, max_steps=o.max_steps, val_samples=o.val_samples)  # fmt: skip
        if STAGES.index(stage) >= STAGES.index("distill"):
            keys.update(student_fraction=o.student_fraction, student_config=o.student_config,
                        student_train_size=o.student_train_size,
                        student_overrides=o.student_overrides)  # fmt: skip
        if STAGES.index(stage) >= STAGES.index("evaluate"):
            keys.update(eval_samples=o.eval_samples, eval_prompt=o.eval_prompt)
        if STAGES.index(stage) >= STAGES.index("infer"):
            keys.update(num_examples=o.num_examples)
        return hashlib.sha256(json.dumps(keys, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def _load_finished(self, stage: str, complete: Callable[[], bool]) -> StageRecord | None:
        """The stored record of ``stage`` when it can be reused (same options, outputs still complete)."""
        if self.invalidated:
            return None
        path = self.stage_dir / f"{stage}.json"
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        if data.get("fingerprint") != self._fingerprint(stage) or data.get("status") != "done" or not complete():
            return None
        return StageRecord(stage, float(data.get("seconds", 0.0)), True, "done", data.get("info", {}))

    def run_stage(self, stage: str, fn: Callable[[], dict[str, Any]], complete: Callable[[], bool]) -> StageRecord:
        rec = self._load_finished(stage, complete) if stage != "report" else None
        if rec is not None:
            self.records[stage] = rec
            self.log(f"{stage}: already complete ({rec.seconds:.1f}s in an earlier run), skipped")
            return rec
        self.invalidated = True  # every later stage re-runs
        with contextlib.suppress(FileNotFoundError):
            (self.stage_dir / f"{stage}.json").unlink()
        self.log(f"{stage}: start")
        t = time.perf_counter()
        rec = self.records[stage]
        try:
            rec.info = fn()
        except BaseException as exc:
            rec.seconds = time.perf_counter() - t
            rec.status = "failed"
            rec.error = f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, KeyboardInterrupt):
                rec.info["traceback"] = traceback.format_exc(limit=8)
            raise
        rec.seconds = time.perf_counter() - t
        rec.status = "done"
        if stage != "report":
            self.stage_dir.mkdir(parents=True, exist_ok=True)
            payload = {"stage": stage, "status": "done", "seconds": rec.seconds, "fingerprint": self._fingerprint(stage),
                       "info": rec.info}  # fmt: skip
            write_text_atomic(self.stage_dir / f"{stage}.json", _dump(payload))
        self.log(f"{stage}: done in {rec.seconds:.1f}s")
        return rec

    # ---- main
    def run(self) -> QuickstartResult:
        import torch

        self.out.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(self.threads)
        self.log(f"output: {self.out.resolve()}; budget {self.o.budget_minutes:g} min; {self.threads} torch thread(s)")
        plan = [
            ("render", self.stage_render, self._render_complete),
            ("pretrain", self.stage_pretrain, lambda: (self.teacher_run / "model" / "model.safetensors").is_file()),
            ("pseudo_label", self.stage_pseudo_label, lambda: (self.pseudo / "manifest.json").is_file()),
            ("distill", self.stage_distill, lambda: (self.student_run / "model" / "model.safetensors").is_file()),
            ("evaluate", self.stage_evaluate, self._eval_complete),
            ("infer", self.stage_infer, self._infer_complete),
        ]
        failure: BaseException | None = None
        for name, fn, complete in plan:
            try:
                self.run_stage(name, fn, complete)
            except BaseException as exc:  # noqa: BLE001 - written into the partial report, then re-raised
                failure = exc
                self.log(f"{name}: FAILED ({type(exc).__name__}: {exc})")
                break
        report = self.out / "report.html"
        try:
            self.run_stage("report", self.stage_report, lambda: False)
        except Exception as exc:  # noqa: BLE001
            if failure is None:
                failure = exc
            else:
                self.log(f"report: could not be written ({exc})")
        total = self.elapsed()
        if failure is not None:
            if isinstance(failure, KeyboardInterrupt):
                raise failure
            stage = next((s for s, r in self.records.items() if r.status == "failed"), "?")
            raise QuickstartError(
                f"stage {stage!r} failed: {type(failure).__name__}: {failure}"
                + (f" (partial report: {report})" if report.is_file() else "")
            ) from failure
        budget = self.o.budget_s
        verdict = "within" if total <= budget else "OVER"
        self.log(f"finished in {total:.1f}s ({verdict} the {budget:.0f}s budget); report: {report}")
        return QuickstartResult(self.out, report, self.records, total, budget)

    # ================================================================================ 1. render
    def _render_complete(self) -> bool:
        from metricanything.data.folder import is_folder_dataset

        return is_folder_dataset(self.corpus) and (self.corpus / "index.json").is_file()

    def stage_render(self) -> dict[str, Any]:
        mixture = _require("metricanything.data.mixture", "render")
        folder = _require("metricanything.data.folder", "render")
        o = self.o
        if self.corpus.exists():
            shutil.rmtree(self.corpus)
        ds = mixture.MixedRenderDataset(o.num_samples, o.seed, tuple(o.render_size), ",".join(ALL_SOURCES))
        ids: list[str] = []
        rows: list[dict[str, Any]] = []
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as `metricanything render`: the renderer's tensors are small, threads only contend
        try:
            samples = [ds[i] for i in range(len(ds))]
        finally:
            torch.set_num_threads(threads)
        for s in samples:
            folder.write_sample(self.corpus, s)
            ids.append(s.sample_id)
            rows.append({
                "source": s.meta.get("source", s.sensor), "sensor": s.sensor, "source_kind": s.source_kind,
                "metric_scale_trusted": bool(s.metric_scale_trusted), "valid_fraction": float(s.valid.mean()),
                "median_depth": float(np.median(s.depth[s.valid])) if s.valid.any() else None,
            })  # fmt: skip
        folder.write_index(self.corpus, ids)
        by_source: dict[str, dict[str, Any]] = {}
        for r in rows:
            d = by_source.setdefault(r["source"], {"sensor": r["sensor"], "source_kind": r["source_kind"],
                                                   "metric_scale_trusted": r["metric_scale_trusted"], "count": 0, "valid": []})  # fmt: skip
            d["count"] += 1
            d["valid"].append(r["valid_fraction"])
        for d in by_source.values():
            d["mean_valid_fraction"] = float(np.mean(d.pop("valid")))
        trusted = [r["median_depth"] for r in rows if r["metric_scale_trusted"] and r["median_depth"] is not None]
        return {
            "num_samples": len(ids),
            "size": list(o.render_size),
            "by_source": by_source,
            "kinds": dict(Counter(r["source_kind"] for r in rows)),
            "trusted_median_depth": float(np.median(trusted)) if trusted else None,
            "command": f"metricanything render --out {self.corpus} --num {o.num_samples} --seed {o.seed} "
            f"--size {o.render_size[0]}x{o.render_size[1]} --sources {','.join(ALL_SOURCES)}",
        }

    # ================================================================================ 2./4. training
    def _train_overrides(self, run_dir: Path, sources: list[dict[str, Any]], size: int) -> dict[str, Any]:
        o = self.o
        w, h = o.render_size
        val = [{"kind": "render", "seed": VAL_SEED, "num_samples": o.val_samples, "render_size": [w, h],
                "sources": ["rendered"]}]  # fmt: skip
        return {
            "out_dir": str(run_dir),
            "seed": o.seed,
            "data.size": size,
            "data.sources": sources,
            "data.val_sources": val,
            "data.val_samples": o.val_samples,
            "data.num_workers": 0,
            "train.threads": self.threads,
            "train.progress": o.progress,
            "train.val_every": 0,
            "train.image_every": 0,
            "train.keep_last": 1,
        }

    def _plan_steps(self, cfg: Any, task_cls: type, budget: float, stage: str) -> tuple[int, dict[str, Any]]:
        steps, plan = plan_steps(cfg, task_cls, budget, self.o.min_steps, self.o.max_steps)
        self.log(f"{stage}: {plan['seconds_per_step']:.3f} s/step (calibrated in {plan['calibration_s']:.1f}s) -> "
                 f"{steps} steps for a {budget:.0f}s budget")  # fmt: skip
        return steps, plan

    def _finish_training_overrides(self, steps: int, cfg: Any) -> dict[str, Any]:
        warm = min(int(cfg.optim.warmup_steps), max(1, steps // 10))
        return {"train.steps": steps, "train.ckpt_every": steps, "train.log_every": max(1, steps // 200),
                "optim.warmup_steps": warm}  # fmt: skip

    def _train(self, stage: str, config_name: str, user_overrides: dict[str, Any], extra: dict[str, Any],
               budget: float, task_mod: str, task_cls_name: str, run_fn_name: str) -> dict[str, Any]:  # fmt: skip
        cfgmod = _require("metricanything.train.config", stage)
        mod = _require(task_mod, stage)
        task_cls = getattr(mod, task_cls_name)
        run_fn = getattr(mod, run_fn_name)
        path = find_config(config_name)
        base = merge_overrides(extra, user_overrides)
        cfg = cfgmod.load_config(path, base, stage=stage)
        steps, plan = self._plan_steps(cfg, task_cls, budget, stage)
        final_overrides = merge_overrides(base, self._finish_training_overrides(steps, cfg))
        if "max_seconds" in {f.name for f in dataclasses.fields(cfgmod.RunConfig)}:
            # a hard wall-clock cap, when the training loop offers one (safety net for a wrong calibration)
            final_overrides["train.max_seconds"] = round(1.25 * budget)
        cfg = cfgmod.load_config(path, final_overrides, stage=stage)
        run_dir = Path(cfg.out_dir)
        if run_dir.exists():
            shutil.rmtree(run_dir)
        t = time.perf_counter()
        result = run_fn(cfg, resume=False)
        train_s = time.perf_counter() - t
        from metricanything.models.checkpoint import from_pretrained

        model = from_pretrained(run_dir / "model")
        logs = _read_jsonl(run_dir / "log.jsonl")
        first = next((r for r in logs if r.get("kind") == "train"), {})
        return {
            "config_file": str(path),
            "config_arg": config_name if Path(config_name).name == config_name else str(path),
            "overrides": format_set(final_overrides),
            "plan": plan,
            "train_seconds": train_s,
            "steps": result.step,
            "final_loss": result.final_loss,
            "first_loss": first.get("loss"),
            "val": dict(result.val),
            "samples_per_s": result.samples_per_s,
            "parameters": _count_params(model),
            "model_preset": cfg.model.preset,
            "model_overrides": dict(cfg.model.overrides),
            "model_dir": str(run_dir / "model"),
        }

    def stage_pretrain(self) -> dict[str, Any]:
        o = self.o
        extra = self._train_overrides(self.teacher_run, [{"kind": "folder", "path": str(self.corpus)}], o.train_size)
        # the network runs at the scale it is trained at: inputs of any size are resized to a train_size long side
        # (measured without it: validation AbsRel 0.096 on 64 px crops but 0.32 / 4.1 on the 160x120 benchmarks)
        extra["model.overrides.image_size"] = o.train_size
        info = self._train("pretrain", o.teacher_config or "teacher_tiny", o.teacher_overrides, extra,
                           o.teacher_fraction * o.budget_s, "metricanything.train.pretrain", "PretrainTask",
                           "run_pretrain")  # fmt: skip
        info["command"] = (f"metricanything pretrain --config {_quote(info['config_arg'])} "
                           + " ".join(f"--set {_quote(s)}" for s in info["overrides"]))  # fmt: skip
        return info

    def stage_distill(self) -> dict[str, Any]:
        o = self.o
        remaining = o.budget_s - self.elapsed()
        budget = min(o.student_fraction * o.budget_s, remaining - o.post_reserve * o.budget_s)
        budget = max(budget, 0.05 * o.budget_s)
        extra = self._train_overrides(self.student_run, [{"kind": "shards", "path": str(self.pseudo)}],
                                      o.student_train_size)
        extra["distill.teacher"] = str(self.teacher_run / "model")
        info = self._train("distill", o.student_config or "student_tiny", o.student_overrides, extra, budget,
                           "metricanything.train.distill", "DistillTask", "run_distill")  # fmt: skip
        info["command"] = (f"metricanything distill --config {_quote(info['config_arg'])} "
                           + " ".join(f"--set {_quote(s)}" for s in info["overrides"]))  # fmt: skip
        return info

    # ================================================================================ 3. pseudo-labels
    def stage_pseudo_label(self) -> dict[str, Any]:
        pl = _require("metricanything.train.pseudo_label", "pseudo_label")
        if self.pseudo.exists():
            shutil.rmtree(self.pseudo)
        cfg = pl.pseudo_label_config(
            teacher=str(self.teacher_run / "model"), data=[str(self.corpus)], out=str(self.pseudo),
            shard_size=64, seed=self.o.seed, progress=self.o.progress,
        )
        with contextlib.redirect_stdout(io.StringIO()) as buf:
            manifest = pl.run_pseudo_label(cfg)
        for line in buf.getvalue().splitlines():
            self.log(f"pseudo_label: {line}")
        stats = self._pseudo_stats()
        return {
            "num_samples": manifest["num_samples"],
            "num_shards": manifest["num_shards"],
            **stats,
            "command": f"metricanything pseudo-label --teacher {self.teacher_run / 'model'} --data {self.corpus} "
            f"--out {self.pseudo} --shard-size 64",
        }

    def _pseudo_stats(self) -> dict[str, Any]:
        """Agreement of the pseudo-labels with the corpus GT (AbsRel on trusted GT) and their coverage."""
        from metricanything.data.folder import FolderDataset
        from metricanything.data.shards import ShardIndex

        index = ShardIndex(self.pseudo)
        gt = FolderDataset(self.corpus)
        by_id = {sid: i for i, sid in enumerate(gt.sample_ids)}
        rel, coverage, conf = [], [], []
        for k in range(len(index)):
            s = index.get(k)
            coverage.append(float(s.valid.mean()))
            c = index.extra(k, "confidence")
            if c is not None:
                conf.append(float(np.mean(c)))
            j = by_id.get(s.sample_id)
            if j is None:
                continue
            g = gt[j]
            if not g.metric_scale_trusted:
                continue
            m = g.valid & s.valid
            if m.sum() > 0:
                rel.append(float(np.mean(np.abs(s.depth[m] - g.depth[m]) / g.depth[m])))
        return {
            "label_valid_fraction": float(np.mean(coverage)) if coverage else None,
            "mean_confidence": float(np.mean(conf)) if conf else None,
            "abs_rel_vs_trusted_gt": float(np.mean(rel)) if rel else None,
            "num_compared": len(rel),
        }

    # ================================================================================ 5. evaluate
    def _eval_dir(self, bench: str, column: str) -> Path:
        return self.out / "eval" / bench / column

    def _eval_complete(self) -> bool:
        return all((self._eval_dir(b, c) / "metrics.json").is_file() for b in BENCHMARKS for c in ("prompted", "prompt_free"))

    def stage_evaluate(self) -> dict[str, Any]:
        runner = _require("metricanything.eval.runner", "evaluate")
        benchmarks = _require("metricanything.eval.benchmarks", "evaluate")
        baselines = _require("metricanything.eval.baselines", "evaluate")
        from metricanything import api

        teacher = api.load_model(self.teacher_run / "model")
        student = api.load_model(self.student_run / "model")
        t_pred = baselines.ExternalModel.from_api(teacher, api.infer, "teacher (ours)", accepts_prompt=True)
        s_pred = baselines.ExternalModel.from_api(student, api.infer, "student (ours)", accepts_prompt=False)
        median = self.records["render"].info.get("trusted_median_depth")
        if median is None:
            raise QuickstartError("evaluate: the corpus has no trusted depth to compute the training median")
        info: dict[str, Any] = {"benchmarks": {}, "train_median_m": median, "prompt": self.o.eval_prompt}
        for bench in BENCHMARKS:
            spec = benchmarks.load_benchmark(bench)
            prompted = {"teacher (ours)": t_pred}
            for b in ("nearest", "linear", "ipbasic", "prompt_median"):
                p = runner.build_predictor(f"baseline:{b}", spec)
                prompted[p.name] = p
            free = {"teacher (ours)": t_pred, "student (ours)": s_pred,
                    "baseline:train_median": baselines.ConstantDepth(median, name="baseline:train_median")}  # fmt: skip
            out: dict[str, Any] = {"description": spec.description, "primary_metric": spec.primary_metric}
            for column, preds, prompts in (("prompted", prompted, [self.o.eval_prompt]), ("prompt_free", free, [None])):
                res = runner.evaluate(preds, spec, prompts, self._eval_dir(bench, column), limit=self.o.eval_samples,
                                      num_panels=1)  # fmt: skip
                col = res.columns[0]
                out[column] = {
                    "column": col,
                    "num_samples": res.num_samples,
                    "headline": {p: res.headline(p, col) for p in res.predictors},
                    "seconds_per_image": res.timing,
                    "dir": str(self._eval_dir(bench, column)),
                }
            info["benchmarks"][bench] = out
            self.log(f"evaluate: {bench} done")
        info["commands"] = [
            f"metricanything eval --model {self.teacher_run / 'model'} --benchmark {b} --limit {self.o.eval_samples} "
            f"--prompt {self.o.eval_prompt} --compare baseline:nearest baseline:linear baseline:ipbasic "
            "baseline:prompt_median" for b in BENCHMARKS
        ] + [
            f"metricanything eval --model {self.student_run / 'model'} --benchmark {b} --limit {self.o.eval_samples} "
            f"--prompt none --compare {self.teacher_run / 'model'} baseline:train_median={median:.3f}" for b in BENCHMARKS
        ]  # fmt: skip
        return info

    # ================================================================================ 6. infer
    @property
    def examples(self) -> Path:
        return self.out / "examples"

    def _infer_complete(self) -> bool:
        names = [f"example_{i}" for i in range(self.o.num_examples)]
        return all((self.out / "infer" / run / n / "depth.npy").is_file() for run in ("student", "teacher_prompted")
                   for n in names)  # fmt: skip

    def stage_infer(self) -> dict[str, Any]:
        _require("metricanything.tasks.infer", "infer")
        from metricanything.data.mixture import render_mixed_sample
        from metricanything.depth_io import write_image, write_intrinsics_json
        from metricanything.tasks.infer import InferOptions, run_inference

        o = self.o
        if self.examples.exists():
            shutil.rmtree(self.examples)
        if (self.out / "infer").exists():
            shutil.rmtree(self.out / "infer")
        plain, with_cam, prompts, truth = (self.examples / n for n in ("images", "images_with_camera", "prompts", "truth"))
        for d in (plain, with_cam, prompts, truth):
            d.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([o.seed, 0xE8])
        gts: dict[str, Any] = {}
        for i in range(o.num_examples):
            name = f"example_{i}"
            s = render_mixed_sample(EXAMPLE_SEED + o.seed * 1000 + i, size=tuple(o.render_size), source="rendered")
            write_image(plain / f"{name}.png", s.image)
            write_image(with_cam / f"{name}.png", s.image)
            write_intrinsics_json(with_cam / f"{name}.json", s.intrinsics)
            np.save(truth / f"{name}_depth.npy", np.where(s.valid, s.depth, 0).astype(np.float32))
            np.save(truth / f"{name}_valid.npy", s.valid)
            write_intrinsics_json(truth / f"{name}_intrinsics.json", s.intrinsics)
            idx = np.flatnonzero(s.valid)
            pick = rng.choice(idx, size=max(1, int(round(0.01 * idx.size))), replace=False)
            v, u = np.unravel_index(pick, s.valid.shape)
            lines = ["u,v,z"] + [f"{uu},{vv},{s.depth[vv, uu]:.6f}" for uu, vv in zip(u, v, strict=True)]
            write_text_atomic(prompts / f"{name}.csv", "\n".join(lines) + "\n")
            gts[name] = (s, u, v)
        runs = {
            "student": (plain, InferOptions(model=str(self.student_run / "model"), progress=False)),
            "teacher_prompted": (with_cam, InferOptions(model=str(self.teacher_run / "model"), prompt=prompts,
                                                        progress=False)),  # fmt: skip
        }
        info: dict[str, Any] = {"runs": {}, "examples": {}}
        for run, (inp, opts) in runs.items():
            t = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                rep = run_inference(inp, self.out / "infer" / run, opts)
            if rep.failed:
                raise QuickstartError(f"infer ({run}): {len(rep.failed)} image(s) failed: {rep.failed}")
            info["runs"][run] = {"seconds": time.perf_counter() - t, "done": rep.done, "model": rep.model,
                                 "input": str(inp)}  # fmt: skip
        info["runs"]["student"]["command"] = f"metricanything infer -i {plain} -o {self.out / 'infer' / 'student'} " \
            f"--model {self.student_run / 'model'}"
        info["runs"]["teacher_prompted"]["command"] = (
            f"metricanything infer -i {with_cam} -o {self.out / 'infer' / 'teacher_prompted'} "
            f"--model {self.teacher_run / 'model'} --prompt {prompts}"
        )
        for name, (s, u, v) in gts.items():
            row: dict[str, Any] = {"true_fx": s.intrinsics.fx, "true_fov_x": s.intrinsics.fov_x,
                                   "prompt_points": int(len(u))}  # fmt: skip
            for run in runs:
                d = self.out / "infer" / run / name
                depth = np.load(d / "depth.npy")
                meta = json.loads((d / "intrinsics.json").read_text(encoding="utf-8"))
                m = s.valid & (depth > 0)
                r = {"fx": meta["fx"], "fov_x": meta.get("fov_x_deg"), "intrinsics_source": meta.get("source"),
                     "abs_rel": float(np.mean(np.abs(depth[m] - s.depth[m]) / s.depth[m])) if m.any() else None}  # fmt: skip
                if run == "teacher_prompted":
                    z = s.depth[v, u]
                    r["prompt_median_rel_err"] = float(np.median(np.abs(depth[v, u] - z) / z))
                row[run] = r
            info["examples"][name] = row
        return info

    # ================================================================================ 7. report
    def stage_report(self) -> dict[str, Any]:
        path = write_report(self)
        summary = {
            "out": str(self.out),
            "report": str(path),
            "budget_seconds": self.o.budget_s,
            "total_seconds": self.elapsed(),
            "stages": {n: dataclasses.asdict(r) for n, r in self.records.items()},
            "options": dataclasses.asdict(self.o),
        }
        write_text_atomic(self.out / "quickstart.json", _dump(summary))
        return {"report": str(path)}


#: option field -> command-line flag of ``metricanything quickstart``
_FLAGS = {
    "out": "--out", "budget_minutes": "--budget-minutes", "seed": "--seed", "num_samples": "--num-samples",
    "render_size": "--size", "train_size": "--train-size", "student_train_size": "--student-train-size",
    "teacher_fraction": "--teacher-fraction", "student_fraction": "--student-fraction", "min_steps": "--min-steps",
    "max_steps": "--max-steps", "val_samples": "--val-samples", "eval_samples": "--eval-samples",
    "eval_prompt": "--eval-prompt", "num_examples": "--examples", "threads": "--threads",
    "teacher_config": "--teacher-config", "student_config": "--student-config",
}  # fmt: skip


def quickstart_command(o: QuickstartOptions) -> str:
    """The ``metricanything quickstart`` command line that reproduces options ``o`` (non-defaults only)."""
    default = QuickstartOptions()
    words = ["metricanything", "quickstart"]
    for name, flag in _FLAGS.items():
        value = getattr(o, name)
        if name != "out" and value == getattr(default, name):
            continue
        if name == "render_size":
            value = f"{value[0]}x{value[1]}"
        words += [flag, _quote(f"{value:g}" if isinstance(value, float) else str(value))]
    words += [w for s in format_set(o.teacher_overrides) for w in ("--set-teacher", _quote(s))]
    words += [w for s in format_set(o.student_overrides) for w in ("--set-student", _quote(s))]
    return " ".join(words)


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def run_quickstart(options: QuickstartOptions) -> QuickstartResult:
    """Run (or resume) the quickstart; returns where the report is and what every stage did."""
    return Quickstart(options).run()


def python_info() -> str:
    import torch

    return f"Python {platform.python_version()}, torch {torch.__version__}, {os.cpu_count()} CPU(s), {sys.platform}"


__all__ = [
    "ALL_SOURCES",
    "STAGES",
    "Quickstart",
    "QuickstartError",
    "QuickstartOptions",
    "QuickstartResult",
    "StageRecord",
    "find_config",
    "measure_step_seconds",
    "plan_steps",
    "task_class_for",
    "run_quickstart",
]


# ================================================================================================ report
_CSS = """
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
_HIGHER_IS_BETTER = {"delta1", "delta2", "delta3"}
_EVAL_METRICS = (("abs_rel", "AbsRel ↓"), ("rmse", "RMSE (m) ↓"), ("delta1", "δ1 ↑"))


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(float(v)):
            return "–"
        return f"{float(v):.{digits}g}" if abs(float(v)) < 1e4 else f"{float(v):.0f}"
    return _esc(v)


def _table(header: list[str], rows: list[list[str]], raw: bool = False) -> str:
    """An HTML table; cells are escaped unless ``raw`` (pre-formatted HTML)."""
    head = "".join(f"<th>{h if raw else _esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c if raw else _esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(path: Path, caption: str = "", width: int | None = None) -> str:
    """A figure with the PNG embedded as a data URI (the report stays a single file)."""
    if not Path(path).is_file():
        return f'<p class="note">(figure missing: {_esc(path)})</p>'
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    style = f' style="width:{width}px"' if width else ""
    cap = f"<figcaption>{_esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{_esc(caption or Path(path).name)}"{style} src="data:image/png;base64,{data}">{cap}</figure>'


def _save_fig(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _depth_rgb(depth: np.ndarray, valid: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    from metricanything.train.panels import colorize_depth

    d = depth[valid & np.isfinite(depth) & (depth > 0)]
    if lo is None or hi is None:
        lo, hi = (float(np.percentile(d, 2)), float(np.percentile(d, 98))) if d.size else (0.5, 10.0)
    hi = max(hi, lo * 1.01 + 1e-6)
    if valid.mean() < 0.05:  # sparse GT (LiDAR, SfM): grow the points so they are visible
        import cv2

        grown = cv2.dilate(valid.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        near = cv2.dilate(np.where(valid, depth, 0).astype(np.float32), np.ones((3, 3), np.uint8))
        return colorize_depth(near, grown & (near > 0), lo, hi)
    return colorize_depth(depth, valid, lo, hi)


def figure_corpus(q: Quickstart, per_source: int = 2) -> Path:
    """Rows = source kinds; columns = (RGB, GT depth) x ``per_source`` samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from metricanything.data.folder import FolderDataset

    ds = FolderDataset(q.corpus)
    picks: dict[str, list[Any]] = {}
    for sid in ds.sample_ids:
        src = sid.split("-", 1)[-1]
        if len(picks.setdefault(src, [])) < per_source:
            picks[src].append(sid)
    from metricanything.data.folder import read_sample

    order = [s for s in ALL_SOURCES if s in picks] + [s for s in picks if s not in ALL_SOURCES]
    fig, axes = plt.subplots(len(order), 2 * per_source, figsize=(2.3 * 2 * per_source, 1.9 * len(order)), squeeze=False)
    for r, src in enumerate(order):
        for c in range(per_source):
            ax_rgb, ax_d = axes[r, 2 * c], axes[r, 2 * c + 1]
            for ax in (ax_rgb, ax_d):
                ax.set_axis_off()
            if c >= len(picks[src]):
                continue
            s = read_sample(q.corpus / picks[src][c])
            ax_rgb.imshow(s.image)
            ax_d.imshow(_depth_rgb(s.depth, s.valid))
            if c == 0:
                ax_rgb.set_title(f"{src} ({s.source_kind}{'' if s.metric_scale_trusted else ', untrusted scale'})",
                                 fontsize=8, loc="left")  # fmt: skip
            ax_d.set_title(f"valid {100 * s.valid.mean():.1f}%", fontsize=7)
    fig.suptitle("Corpus by source kind: RGB | depth (near = warm, black = no depth)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    return _save_fig(fig, q.figures / "corpus_by_source.png")


def _ema(values: np.ndarray, decay: float) -> np.ndarray:
    """Exponential moving average (bias-corrected), NaNs carried over."""
    out = np.full_like(values, np.nan)
    acc, weight = 0.0, 0.0
    for i, v in enumerate(values):
        if np.isfinite(v):
            acc, weight = decay * acc + (1 - decay) * v, decay * weight + (1 - decay)
        out[i] = acc / weight if weight > 0 else np.nan
    return out


def figure_losses(q: Quickstart) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [("teacher (Robust MAE)", q.teacher_run), ("student (distance-balanced L1)", q.student_run)]
    data = [(name, [r for r in _read_jsonl(run / "log.jsonl") if r.get("kind") == "train"]) for name, run in runs]
    data = [(n, rows) for n, rows in data if rows]
    if not data:
        return None
    fig, axes = plt.subplots(1, len(data), figsize=(5.2 * len(data), 3.2), squeeze=False)
    for ax, (name, rows) in zip(axes[0], data, strict=True):
        steps = np.array([r["step"] for r in rows], dtype=float)
        for key, colour in (("loss", "C0"), ("fov_log_tan_l1", "C2")):
            vals = np.array([r.get(key, np.nan) for r in rows], dtype=float)
            if not np.isfinite(vals).any():
                continue
            ax.plot(steps, vals, lw=0.6, alpha=0.35, color=colour)
            ax.plot(steps, _ema(vals, 0.9 if len(vals) > 30 else 0.6), lw=1.6, color=colour,
                    label=f"{key} (smoothed)")  # fmt: skip
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save_fig(fig, q.figures / "training_losses.png")


def figure_pseudo(q: Quickstart, n: int = 4) -> Path | None:
    """RGB | corpus GT | teacher pseudo-label | confidence, for the first samples of different sources."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from metricanything.data.folder import FolderDataset
    from metricanything.data.shards import ShardIndex

    if not (q.pseudo / "manifest.json").is_file():
        return None
    index = ShardIndex(q.pseudo)
    gt = FolderDataset(q.corpus)
    by_id = {sid: i for i, sid in enumerate(gt.sample_ids)}
    chosen, seen = [], set()
    for k in range(len(index)):
        sid = index.entries[k][1]
        s = index.get(k)
        src = s.sample_id.split("-", 1)[-1]
        if src in seen or s.sample_id not in by_id:
            continue
        seen.add(src)
        chosen.append((k, s))
        if len(chosen) >= n:
            break
    del sid
    fig, axes = plt.subplots(len(chosen), 4, figsize=(9.5, 1.9 * len(chosen)), squeeze=False)
    for r, (k, s) in enumerate(chosen):
        g = gt[by_id[s.sample_id]]
        conf = index.extra(k, "confidence")
        d = np.concatenate([s.depth[s.valid], g.depth[g.valid]])
        lo, hi = (float(np.percentile(d, 2)), float(np.percentile(d, 98))) if d.size else (0.5, 10.0)
        panels = [(g.image, "RGB"), (_depth_rgb(g.depth, g.valid, lo, hi), f"GT ({g.sensor})"),
                  (_depth_rgb(s.depth, s.valid, lo, hi), "pseudo-label")]  # fmt: skip
        for c, (img, title) in enumerate(panels):
            axes[r, c].imshow(img)
            axes[r, c].set_title(title, fontsize=8)
            axes[r, c].set_axis_off()
        ax = axes[r, 3]
        if conf is not None:
            ax.imshow(conf, cmap="viridis", vmin=0, vmax=1)
        ax.set_title("confidence (flip TTA)", fontsize=8)
        ax.set_axis_off()
    fig.suptitle("Teacher pseudo-labels (same colour scale per row)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return _save_fig(fig, q.figures / "pseudo_labels.png")


def _last_panel(run: Path) -> Path | None:
    panels = sorted((run / "panels").glob("step_*.png")) if (run / "panels").is_dir() else []
    return panels[-1] if panels else None


def _stage_table(q: Quickstart) -> str:
    rows = []
    for name, r in q.records.items():
        status = {"done": '<span class="ok">done</span>', "failed": '<span class="fail">FAILED</span>'}.get(r.status, r.status)
        if name == "report" and r.status == "pending":
            status = "this page"
        note = "reused from an earlier run" if r.reused else ""
        if r.error:
            note = f'<span class="fail">{_esc(r.error)}</span>'
        rows.append([_esc(name), status, f"{r.seconds:.1f}", note])
    return _table(["stage", "status", "wall time (s)", "note"], rows, raw=True)


def _training_section(title: str, info: dict[str, Any], run: Path, what: str) -> str:
    if not info:
        return f"<h2>{_esc(title)}</h2><p class='note'>not run</p>"
    plan = info.get("plan", {})
    rows = [
        ["config", f"<code>{_esc(info.get('config_file'))}</code>"],
        ["model preset / overrides", f"{_esc(info.get('model_preset'))} / <code>{_esc(info.get('model_overrides'))}</code>"],
        ["parameters", f"{info.get('parameters', 0):,}"],
        ["stage budget (s)", _fmt(plan.get("budget_s"), 4)],
        ["calibrated seconds per step", _fmt(plan.get("seconds_per_step"), 3)],
        ["steps × batch", f"{info.get('steps')} × {plan.get('batch_size')}"],
        ["training wall time (s)", _fmt(info.get("train_seconds"), 4)],
        ["first → final loss", f"{_fmt(info.get('first_loss'))} → {_fmt(info.get('final_loss'))}"],
    ]  # fmt: skip
    for k, v in sorted(info.get("val", {}).items()):
        rows.append([f"held-out validation: {_esc(k)}", _fmt(v)])
    parts = [f"<h2>{_esc(title)}</h2>", f"<p>{what}</p>", _table(["", ""], rows, raw=True)]
    panel = _last_panel(run)
    if panel is not None:
        parts.append(_img(panel, "final validation panel: RGB | prompt | prediction | GT | |error|/GT (0 → 50%)"))
    parts.append(f"<pre>{_esc(info.get('command', ''))}</pre>")
    return "\n".join(parts)


def _eval_table(headline: dict[str, dict[str, float] | None]) -> str:
    names = list(headline)
    best: dict[str, float] = {}
    for m, _ in _EVAL_METRICS:
        vals = [headline[n].get(m) for n in names if headline[n] and headline[n].get(m) is not None]
        vals = [v for v in vals if math.isfinite(v)]
        if len(vals) > 1:
            best[m] = max(vals) if m in _HIGHER_IS_BETTER else min(vals)
    rows = []
    for n in names:
        h = headline[n] or {}
        cells = [_esc(n)]
        for m, _ in _EVAL_METRICS:
            v = h.get(m)
            cls = ' class="best"' if v is not None and best.get(m) == v else ""
            cells.append(f"<span{cls}>{_fmt(v)}</span>")
        rows.append(cells)
    return _table(["model"] + [label for _, label in _EVAL_METRICS], rows, raw=True)


def _eval_section(q: Quickstart) -> str:
    info = q.records["evaluate"].info
    if not info.get("benchmarks"):
        return "<h2>5. Evaluation</h2><p class='note'>not run</p>"
    parts = [
        "<h2>5. Evaluation on the synthetic held-out benchmarks</h2>",
        f"<p>Unseen render seeds, exact GT, GT focal given to the models, no alignment (metric), per-image mean "
        f"over the first {q.o.eval_samples} samples of each benchmark. <b>Prompted</b>: every predictor gets the same "
        f"<code>{_esc(info.get('prompt'))}</code> prompt drawn from the GT. <b>Prompt-free</b>: the image only; "
        f"<code>baseline:train_median</code> predicts the median trusted depth of the training corpus "
        f"({_fmt(info.get('train_median_m'))} m) everywhere. Best value per column in bold.</p>",
    ]
    for bench, b in info["benchmarks"].items():
        parts.append(f"<h3>{_esc(bench)}</h3><p class='note'>{_esc(b.get('description', ''))}</p>")
        parts.append('<div class="grid">')
        for column, label in (("prompted", f"prompted ({info.get('prompt')})"), ("prompt_free", "prompt-free")):
            c = b.get(column)
            if not c:
                continue
            parts.append(f"<div><b>{_esc(label)}</b>, {c['num_samples']} images{_eval_table(c['headline'])}</div>")
        parts.append("</div>")
        figs = []
        for column in ("prompted", "prompt_free"):
            d = Path(b[column]["dir"]) if column in b else None
            if d is None:
                continue
            figs.append(_img(d / "error_by_distance.png", f"{bench}, {column}: AbsRel by GT distance"))
            panels = sorted((d / "panels").glob("*.png")) if (d / "panels").is_dir() else []
            if panels:
                figs.append(_img(panels[0], f"{bench}, {column}: qualitative panel (rows = predictors)"))
        parts.append('<div class="grid">' + "".join(figs) + "</div>")
    parts.append("<pre>" + _esc("\n".join(info.get("commands", []))) + "</pre>")
    return "\n".join(parts)


def _infer_section(q: Quickstart) -> str:
    info = q.records["infer"].info
    if not info.get("examples"):
        return "<h2>6. Inference</h2><p class='note'>not run</p>"
    parts = [
        "<h2>6. <code>metricanything infer</code> on example images</h2>",
        "<p>Held-out rendered images written as PNG. The <b>student</b> gets no camera (its FoV head estimates the "
        "focal); the <b>teacher</b> gets a sidecar intrinsics JSON and a <code>u,v,z</code> CSV prompt with 1% of "
        "the GT pixels per image. AbsRel against the exact rendered depth.</p>",
    ]
    rows = []
    for name, e in info["examples"].items():
        s, t = e.get("student", {}), e.get("teacher_prompted", {})
        rows.append([name, _fmt(e["true_fx"]), f"{_fmt(s.get('fx'))} ({_esc(s.get('intrinsics_source'))})",
                     _fmt(s.get("abs_rel")), str(e.get("prompt_points")), _fmt(t.get("prompt_median_rel_err")),
                     _fmt(t.get("abs_rel"))])  # fmt: skip
    parts.append(_table(["image", "true fx (px)", "student fx (source)", "student AbsRel", "prompt points",
                         "teacher median rel. err. at prompts", "teacher AbsRel"], rows, raw=True))  # fmt: skip
    figs = []
    for name in info["examples"]:
        figs.append(_img(q.examples / "images" / f"{name}.png", f"{name}: input"))
        figs.append(_img(q.out / "infer" / "student" / name / "depth_vis.png", f"{name}: student (prompt-free)"))
        figs.append(_img(q.out / "infer" / "teacher_prompted" / name / "depth_vis.png", f"{name}: teacher + prompt"))
    parts.append('<div class="grid">' + "".join(figs) + "</div>")
    parts.append("<pre>" + _esc("\n".join(r.get("command", "") for r in info["runs"].values())) + "</pre>")
    return "\n".join(parts)


def write_report(q: Quickstart) -> Path:
    """Write ``OUT/report.html`` from whatever stages have finished (figures under ``OUT/figures``)."""
    o = q.o
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>metricanything quickstart</title>"
             f"<style>{_CSS}</style></head><body>", "<h1>metricanything quickstart</h1>"]  # fmt: skip
    total = q.elapsed()
    reused = [r for r in q.records.values() if r.reused]
    if reused:  # resumed run: the budget applies to the whole pipeline
        total += sum(r.seconds for r in reused)
    failed = [n for n, r in q.records.items() if r.status == "failed"]
    if failed:
        verdict = f'<span class="fail">FAILED at stage {_esc(failed[0])}</span>'
    elif total <= o.budget_s:
        verdict = '<span class="ok">within the budget</span>'
    else:
        verdict = '<span class="fail">over the budget</span>'

    parts.append(
        f"<p>A real, end-to-end run of the pipeline on data rendered by the project itself: render → pretrain "
        f"the prompt-conditioned teacher (Robust MAE on Sparse Metric Prompts) → pseudo-label → distil the "
        f"prompt-free student → evaluate against baselines → infer. Tiny models, minutes of CPU: the numbers show "
        f"the pipeline working, not the quality of the method at scale.</p>"
        f"<p><b>Total wall time {total:.1f} s</b>"
        + (f" (this invocation {q.elapsed():.1f} s + {len(reused)} stage(s) reused from an earlier run)" if reused else "")
        + f" for a budget of {o.budget_s:.0f} s: {verdict}. "
        f"{_esc(python_info())}; {q.threads} torch thread(s); seed {o.seed}. Output folder "
        f"<code>{_esc(q.out.resolve())}</code>.</p>"
    )
    parts.append("<h2>Stages and wall times</h2>" + _stage_table(q))
    for name, r in q.records.items():
        if r.status == "failed" and r.info.get("traceback"):
            parts.append(f"<p class='fail'>{_esc(name)} failed:</p><pre>{_esc(r.info['traceback'])}</pre>")

    # 1. corpus
    ri = q.records["render"].info
    if ri:
        rows = [[src, d["sensor"], d["source_kind"], _fmt(d["metric_scale_trusted"]), str(d["count"]),
                 f"{100 * d['mean_valid_fraction']:.1f}%"] for src, d in ri["by_source"].items()]  # fmt: skip
        parts.append("<h2>1. Heterogeneous corpus</h2>")
        parts.append(f"<p>{ri['num_samples']} samples at {ri['size'][0]}×{ri['size'][1]} from the embedded ray-caster "
                     "through the simulated sensors (exact renders, captured LiDAR / ToF / structured light / stereo, "
                     "reconstructed SfM / MVS with untrusted scale).</p>")  # fmt: skip
        parts.append(_table(["source", "sensor", "family", "metric scale trusted", "samples", "mean valid pixels"], rows))
        with contextlib.suppress(Exception):
            parts.append(_img(figure_corpus(q), "two samples per source kind"))
        parts.append(f"<pre>{_esc(ri.get('command', ''))}</pre>")

    # 2. teacher
    parts.append(_training_section(
        "2. Teacher pretraining", q.records["pretrain"].info, q.teacher_run,
        "Prompt-conditioned ViT + DPT teacher; Sparse Metric Prompts sampled on the fly from each training view; "
        "Robust MAE (the highest-error 20% of valid pixels dropped per image) on the full valid target. Validation: "
        "held-out renders with 1% prompts (<code>abs_rel</code>, <code>delta1</code>) and without prompts "
        "(<code>*_noprompt</code>).",
    ))  # fmt: skip
    fig = None
    with contextlib.suppress(Exception):
        fig = figure_losses(q)
    if fig is not None:
        parts.append(_img(fig, "training losses (log scale)"))

    # 3. pseudo-labels
    pi = q.records["pseudo_label"].info
    if pi:
        parts.append("<h2>3. Pseudo-labels</h2>")
        parts.append(_table(["", ""], [
            ["samples / shards", f"{pi['num_samples']} / {pi['num_shards']}"],
            ["mean valid fraction of the labels", _fmt(pi.get("label_valid_fraction"))],
            ["mean confidence", _fmt(pi.get("mean_confidence"))],
            [f"AbsRel vs. trusted corpus GT ({pi.get('num_compared')} samples)", _fmt(pi.get("abs_rel_vs_trusted_gt"))],
        ]))  # fmt: skip
        pf = None
        with contextlib.suppress(Exception):
            pf = figure_pseudo(q)
        if pf is not None:
            parts.append(_img(pf, "dense pseudo-labels also where the sensor gave sparse or no depth"))
        parts.append(f"<pre>{_esc(pi.get('command', ''))}</pre>")

    # 4. student
    parts.append(_training_section(
        "4. Student distillation", q.records["distill"].info, q.student_run,
        "Prompt-free multi-resolution ViT student (canonical inverse depth) with a FoV head, encoder initialised "
        "from the teacher, trained on the pseudo-labels with the distance-balanced inverse-depth L1. Validation: "
        "held-out renders with the GT focal; <code>fov_abs_err_deg</code> is the FoV head's error.",
    ))  # fmt: skip
    parts.append(_eval_section(q))
    parts.append(_infer_section(q))
    parts.append("<h2>Reproduce</h2><p>Each stage above lists the equivalent stand-alone command. This run:</p>"
                 f"<pre>{_esc(quickstart_command(o))}</pre>")  # fmt: skip
    parts.append("</body></html>")
    path = q.out / "report.html"
    write_text_atomic(path, "\n".join(parts))
    return path
