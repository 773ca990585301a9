"""``metricanything quickstart``: the whole pipeline, for real, in minutes on a laptop CPU, with an HTML report.

Stages ``render`` -> ``pretrain`` -> ``pseudo_label`` -> ``distill`` -> ``evaluate`` -> ``infer`` -> ``report``.
Each calls the task function of its command (:mod:`metricanything.tasks`) with the options that command would
get, and records the equivalent command line; nothing is replayed. The report is ``OUT/quickstart.json`` (this
record) and ``OUT/report.html`` (:func:`metricanything.eval.html.quickstart_report`).

Time budget: the training stages get ``teacher_fraction`` / ``student_fraction`` of it (the student's share keeps
``post_reserve`` for the stages after it); :func:`metricanything.tasks.training.plan_steps` times a few steps of
the same training loop to size them, so their full schedules complete. Resuming: each finished stage writes
``OUT/stages/<stage>.json`` with a fingerprint of the options it depends on; a re-run skips finished stages with
the same fingerprint and complete outputs, and once a stage re-runs every later one does (``fresh``: all). A
failing stage stops the run with :class:`QuickstartError` naming it, after a partial report.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metricanything.atomic import write_text_atomic
from metricanything.config import find_config, format_set, merge_overrides
from metricanything.errors import InvalidInputError, MetricAnythingError
from metricanything.eval.html import quickstart_report, read_jsonl
from metricanything.eval.results import dumps
from metricanything.models.checkpoint import from_pretrained
from metricanything.tasks import evaluate, render, training
from metricanything.tasks.infer import InferOptions, run_inference
from metricanything.tasks.options import command_line, option
from metricanything.tasks.stages import StageRecord, StageRunner

STAGES = ("render", "pretrain", "pseudo_label", "distill", "evaluate", "infer", "report")
#: every source kind the embedded data engine simulates
ALL_SOURCES = ("rendered", "lidar", "tof", "structured_light", "stereo", "sfm", "mvs")
#: held-out seeds (training renders use derive_seed(seed, i); validation 10,000,000 + k; benchmarks 1,000,000 + i)
VAL_SEED, EXAMPLE_SEED = 10_000_000, 20_000_000
BENCHMARKS = ("synthetic_indoor", "synthetic_outdoor")
PROMPTED_BASELINES = ("baseline:nearest", "baseline:linear", "baseline:ipbasic", "baseline:prompt_median")
#: options each stage depends on (a stage also depends on every earlier stage's)
FINGERPRINT = {
    "render": ("seed", "num_samples", "render_size"),
    "pretrain": ("train_size", "budget_minutes", "teacher_fraction", "teacher_config", "teacher_overrides", "min_steps",
                 "max_steps", "val_samples"),
    "distill": ("student_fraction", "student_config", "student_train_size", "student_overrides"),
    "evaluate": ("eval_samples", "eval_prompt"),
    "infer": ("num_examples",),
}  # fmt: skip


class QuickstartError(MetricAnythingError):
    """A quickstart stage failed (the message names the stage)."""


@dataclass
class QuickstartOptions:
    """Everything the quickstart does, with defaults that fit 10 minutes on 2 CPU cores."""

    out: Path = option("--out", Path("runs/quickstart"), always=True)
    budget_minutes: float = option("--budget-minutes", 9.0)
    seed: int = option("--seed", 0)
    num_samples: int = option("--num-samples", 140)  # corpus size (20 per source kind)
    render_size: tuple[int, int] = option("--size", (128, 96), words=render.format_size)  # W, H of corpus + examples
    train_size: int = option("--train-size", 96)  # teacher training crop and network input (long side)
    student_train_size: int = option("--student-train-size", 96)  # student training view (upsampled to its input)
    teacher_fraction: float = option("--teacher-fraction", 0.25)
    student_fraction: float = option("--student-fraction", 0.45)
    post_reserve: float = 0.12  # share of the budget kept for evaluate + infer + report
    min_steps: int = option("--min-steps", 4)
    max_steps: int = option("--max-steps", 100_000)
    val_samples: int = option("--val-samples", 8)
    eval_samples: int = option("--eval-samples", 8)  # per benchmark
    eval_prompt: str = option("--eval-prompt", "density:0.01")  # the prompted column (1% of the valid pixels)
    num_examples: int = option("--examples", 3)
    threads: int = option("--threads", 0)  # torch threads (0 = auto, see resolved_threads)
    teacher_config: str = option("--teacher-config", "teacher_tiny")  # shipped preset name or YAML path
    student_config: str = option("--student-config", "student_tiny")
    teacher_overrides: dict[str, Any] = option("--set-teacher", factory=dict, many="repeat", words=format_set)
    student_overrides: dict[str, Any] = option("--set-student", factory=dict, many="repeat", words=format_set)
    fresh: bool = option("--fresh", False)
    progress: bool = option("--quiet", True, invert=True)

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
        """``threads``, or min(2, CPUs), or 1 when other processes already keep the CPUs busy (1-minute load
        average >= CPUs): oversubscribed intra-op threads make steps several times slower and the calibration
        unreliable."""
        cpus = os.cpu_count() or 1
        try:
            busy = os.getloadavg()[0] >= cpus
        except (AttributeError, OSError):
            busy = False
        return self.threads or (1 if busy else max(1, min(2, cpus)))


@dataclass
class QuickstartResult:
    out: Path
    report: Path
    stages: dict[str, StageRecord]
    total_seconds: float
    budget_seconds: float


class Quickstart:
    """One quickstart run (see the module docstring)."""

    def __init__(self, options: QuickstartOptions) -> None:
        options.validate()
        self.o, self.out = options, Path(options.out)
        self.t0 = time.perf_counter()
        self.stages = StageRunner(self.out / "stages", STAGES, self.log, options.fresh)
        self.threads = options.resolved_threads()
        self.corpus, self.pseudo, self.examples = self.out / "corpus", self.out / "pseudo_labels", self.out / "examples"
        self.teacher, self.student = self.out / "teacher" / "model", self.out / "student" / "model"

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def log(self, text: str) -> None:
        print(f"[quickstart {self.elapsed():6.1f}s] {text}", flush=True)

    def call(self, stage: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` with what it prints (stdout and stderr) logged as this stage's lines."""
        out, err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                return fn(*args)
        finally:
            for line in (out.getvalue() + err.getvalue()).splitlines():
                self.log(f"{stage}: {line}")

    def fingerprint(self, stage: str) -> str:
        """SHA-256 of the options ``stage`` and the stages before it depend on."""
        keys = {n: getattr(self.o, n) for s in STAGES[: STAGES.index(stage) + 1] for n in FINGERPRINT.get(s, ())}
        return hashlib.sha256(json.dumps(keys, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def run(self) -> QuickstartResult:
        self.out.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(self.threads)
        self.log(f"output: {self.out.resolve()}; budget {self.o.budget_minutes:g} min; {self.threads} torch thread(s)")
        has = lambda *paths: lambda: all(Path(p).is_file() for p in paths)  # noqa: E731
        evals = [self.out / "eval" / b / c / "metrics.json" for b in BENCHMARKS for c in ("prompted", "prompt_free")]
        depths = [self.out / "infer" / r / f"example_{i}" / "depth.npy" for r in ("student", "teacher_prompted")
                  for i in range(self.o.num_examples)]  # fmt: skip
        plan = [("render", self.stage_render, has(self.corpus / "index.json")),
                ("pretrain", self.stage_pretrain, has(self.teacher / "model.safetensors")),
                ("pseudo_label", self.stage_pseudo_label, has(self.pseudo / "manifest.json")),
                ("distill", self.stage_distill, has(self.student / "model.safetensors")),
                ("evaluate", self.stage_evaluate, has(*evals)), ("infer", self.stage_infer, has(*depths))]  # fmt: skip
        failure: BaseException | None = None
        for name, fn, complete in plan:
            try:
                self.stages.run(name, fn, complete, self.fingerprint(name))
            except BaseException as exc:  # noqa: BLE001 - written into the partial report, then re-raised
                failure = exc
                break
        report = self.out / "report.html"
        try:
            self.stages.run("report", self.stage_report)
        except Exception as exc:  # noqa: BLE001
            failure = failure or exc
        if isinstance(failure, KeyboardInterrupt):
            raise failure
        if failure is not None:
            partial = f" (partial report: {report})" if report.is_file() else ""
            raise QuickstartError(f"stage {self.stages.failed()!r} failed: {type(failure).__name__}: {failure}{partial}"
                                  ) from failure  # fmt: skip
        total = self.total_seconds()
        self.log(f"finished in {total:.1f}s ({'within' if total <= self.o.budget_s else 'OVER'} the "
                 f"{self.o.budget_s:.0f}s budget); report: {report}")  # fmt: skip
        return QuickstartResult(self.out, report, self.stages.records, total, self.o.budget_s)

    def total_seconds(self) -> float:
        """This invocation's wall time + the recorded time of the stages it reused (the budget is for all)."""
        return self.elapsed() + self.stages.reused_seconds()

    # ---- stages
    def stage_render(self) -> dict[str, Any]:
        o = self.o
        shutil.rmtree(self.corpus, ignore_errors=True)
        opts = render.RenderOptions(out=self.corpus, num=o.num_samples, seed=o.seed, size=o.render_size,
                                    sources=",".join(ALL_SOURCES), progress=False)  # fmt: skip
        r = self.call("render", render.run, opts)
        return {"out": str(self.corpus), "num_samples": len(r.sample_ids), "size": list(o.render_size),
                "sources": list(ALL_SOURCES), "by_source": r.by_source(), "trusted_median_depth": r.trusted_median_depth(),
                "command": command_line("render", opts)}  # fmt: skip

    def _train(self, opts: training.TrainOptions, budget: float) -> dict[str, Any]:
        """Plan the steps of ``opts``'s run for ``budget`` seconds, then run it as its command would."""
        stage = opts.stage
        cfg = training.training_config(opts)
        steps, plan = training.plan_steps(cfg, budget, self.o.min_steps, self.o.max_steps)
        self.log(f"{stage}: {plan['seconds_per_step']:.3f} s/step (calibrated in {plan['calibration_s']:.1f}s) -> "
                 f"{steps} steps for a {budget:.0f}s budget")  # fmt: skip
        schedule = {"train.steps": steps, "train.ckpt_every": steps, "train.log_every": max(1, steps // 200),
                    "optim.warmup_steps": min(int(cfg.optim.warmup_steps), max(1, steps // 10))}  # fmt: skip
        opts = dataclasses.replace(opts, overrides=merge_overrides(opts.overrides, schedule))
        shutil.rmtree(opts.out, ignore_errors=True)
        t = time.perf_counter()
        result = training.run(opts)
        seconds = time.perf_counter() - t
        first = next((r for r in read_jsonl(Path(opts.out) / "log.jsonl") if r.get("kind") == "train"), {})
        model = from_pretrained(result.out_dir / "model")
        return {"run_dir": str(opts.out), "config": str(find_config(opts.config, what="training config")),
                "plan": plan, "train_seconds": seconds, "steps": result.step, "val": dict(result.val),
                "first_loss": first.get("loss"), "final_loss": result.final_loss, "samples_per_s": result.samples_per_s,
                "parameters": sum(p.numel() for p in model.parameters()), "model_preset": cfg.model.preset,
                "model_overrides": dict(cfg.model.overrides), "command": command_line(stage, opts)}  # fmt: skip

    def _run_overrides(self, sources: list[dict[str, Any]], size: int) -> dict[str, Any]:
        """The quickstart's settings of a training run (the user's ``--set-teacher/--set-student`` win)."""
        w, h = self.o.render_size
        val = [{"kind": "render", "seed": VAL_SEED, "num_samples": self.o.val_samples, "render_size": [w, h],
                "sources": ["rendered"]}]  # fmt: skip
        return {"seed": self.o.seed, "data.size": size, "data.sources": sources, "data.val_sources": val,
                "data.val_samples": self.o.val_samples, "data.num_workers": 0, "train.threads": self.threads,
                "train.progress": self.o.progress, "train.val_every": 0, "train.image_every": 0, "train.keep_last": 1}  # fmt: skip

    def stage_pretrain(self) -> dict[str, Any]:
        o = self.o
        ours = self._run_overrides([{"kind": "folder", "path": str(self.corpus)}], o.train_size)
        # the network runs at the scale it is trained at: inputs of any size are resized to a train_size long side
        # (measured without it: validation AbsRel 0.096 on 64 px crops but 0.32 / 4.1 on the 160x120 benchmarks)
        ours["model.overrides.image_size"] = o.train_size
        opts = training.TrainOptions(config=o.teacher_config, out=str(self.teacher.parent),
                                     overrides=merge_overrides(ours, o.teacher_overrides))  # fmt: skip
        return self._train(opts, o.teacher_fraction * o.budget_s)

    def stage_distill(self) -> dict[str, Any]:
        o = self.o
        budget = max(min(o.student_fraction * o.budget_s, o.budget_s - self.elapsed() - o.post_reserve * o.budget_s),
                     0.05 * o.budget_s)  # fmt: skip
        ours = self._run_overrides([{"kind": "shards", "path": str(self.pseudo)}], o.student_train_size)
        opts = training.DistillOptions(config=o.student_config, out=str(self.student.parent), teacher=str(self.teacher),
                                       overrides=merge_overrides(ours, o.student_overrides))  # fmt: skip
        return self._train(opts, budget)

    def stage_pseudo_label(self) -> dict[str, Any]:
        shutil.rmtree(self.pseudo, ignore_errors=True)
        opts = training.PseudoLabelOptions(teacher=str(self.teacher), data=[str(self.corpus)], out=str(self.pseudo),
                                           shard_size=64, seed=self.o.seed, progress=False)  # fmt: skip
        manifest = self.call("pseudo_label", training.pseudo_label, opts)
        return {"out": str(self.pseudo), "num_samples": manifest["num_samples"], "num_shards": manifest["num_shards"],
                **training.label_agreement(self.pseudo, self.corpus), "command": command_line("pseudo-label", opts)}  # fmt: skip

    def stage_evaluate(self) -> dict[str, Any]:
        o = self.o
        median = self.stages.records["render"].info.get("trusted_median_depth")
        if median is None:
            raise QuickstartError("evaluate: the corpus has no trusted depth to compute the training median")
        info: dict[str, Any] = {"benchmarks": {}, "train_median_m": median, "prompt": o.eval_prompt,
                                "samples": o.eval_samples}  # fmt: skip
        for bench in BENCHMARKS:
            columns = {
                "prompted": ([str(self.teacher)], [o.eval_prompt], list(PROMPTED_BASELINES)),
                "prompt_free": ([str(self.student)], ["none"], [str(self.teacher), f"baseline:train_median={median:.6g}"]),
            }
            for column, (models, prompts, compare) in columns.items():
                opts = evaluate.EvalOptions(models=models, benchmark=bench, prompts=prompts, compare=compare,
                                            out=self.out / "eval" / bench / column, limit=o.eval_samples, panels=1,
                                            progress=False)  # fmt: skip
                res = self.call("evaluate", evaluate.run, opts)
                col = res.columns[0]
                info["benchmarks"].setdefault(bench, {"description": res.benchmark.description})[column] = {
                    "column": col, "num_samples": res.num_samples, "dir": str(opts.out),
                    "headline": {p: res.headline(p, col) for p in res.predictors}, "seconds_per_image": res.timing,
                    "command": command_line("eval", opts),
                }  # fmt: skip
        return info

    def stage_infer(self) -> dict[str, Any]:
        o = self.o
        shutil.rmtree(self.examples, ignore_errors=True)
        shutil.rmtree(self.out / "infer", ignore_errors=True)
        truth = render.write_examples(self.examples, o.num_examples, EXAMPLE_SEED + 1000 * o.seed, o.render_size,
                                      np.random.default_rng([o.seed, 0xE8]))  # fmt: skip
        plain, with_cam, prompts = (self.examples / n for n in ("images", "images_with_camera", "prompts"))
        runs = {"student": (plain, InferOptions(model=str(self.student), progress=False)),
                "teacher_prompted": (with_cam, InferOptions(model=str(self.teacher), prompt=prompts, progress=False))}  # fmt: skip
        info: dict[str, Any] = {"runs": {}, "examples": {}}
        for run, (inp, opts) in runs.items():
            out, t = self.out / "infer" / run, time.perf_counter()
            rep = self.call("infer", run_inference, inp, out, opts)
            if rep.failed:
                raise QuickstartError(f"infer ({run}): {len(rep.failed)} image(s) failed: {rep.failed}")
            info["runs"][run] = {"seconds": time.perf_counter() - t, "done": rep.done, "model": rep.model,
                                 "input": str(inp), "out": str(out), "command": command_line("infer", opts, "-i", inp, "-o", out)}  # fmt: skip
        for name, (s, (u, v)) in truth.items():
            row: dict[str, Any] = {"true_fx": s.intrinsics.fx, "true_fov_x": s.intrinsics.fov_x, "prompt_points": len(u)}
            for run in runs:  # AbsRel against the exact depth; relative error at the teacher's prompt points
                d = self.out / "infer" / run / name
                depth, meta = np.load(d / "depth.npy"), json.loads((d / "intrinsics.json").read_text(encoding="utf-8"))
                m, z = s.valid & (depth > 0), s.depth[v, u]
                row[run] = {"fx": meta["fx"], "fov_x": meta.get("fov_x_deg"), "intrinsics_source": meta.get("source"),
                            "abs_rel": float(np.mean(np.abs(depth[m] - s.depth[m]) / s.depth[m])) if m.any() else None,
                            "prompt_median_rel_err": float(np.median(np.abs(depth[v, u] - z) / z))}  # fmt: skip
            info["examples"][name] = row
        return info

    def stage_report(self) -> dict[str, Any]:
        summary = {
            "out": str(self.out.resolve()), "report": str(self.out / "report.html"), "budget_seconds": self.o.budget_s,
            "total_seconds": self.total_seconds(), "this_run_seconds": self.elapsed(), "threads": self.threads,
            "seed": self.o.seed, "environment": f"Python {platform.python_version()}, torch {torch.__version__}, "
            f"{os.cpu_count()} CPU(s), {sys.platform}", "stages": {n: dataclasses.asdict(r) for n, r in self.stages.records.items()},
            "options": dataclasses.asdict(self.o), "command": quickstart_command(self.o),
        }  # fmt: skip
        write_text_atomic(self.out / "quickstart.json", dumps(summary))
        write_text_atomic(self.out / "report.html", quickstart_report(summary))
        return {"report": summary["report"]}


def quickstart_command(options: QuickstartOptions) -> str:
    """The ``metricanything quickstart`` command line that reproduces ``options`` (non-defaults only)."""
    return command_line("quickstart", options)


def run_quickstart(options: QuickstartOptions) -> QuickstartResult:
    """Run (or resume) the quickstart; prints and returns where the report is and what every stage did."""
    result = Quickstart(options).run()
    print(f"report: {result.report} ({result.total_seconds:.0f} s for a {result.budget_seconds:.0f} s budget)")
    for name, rec in result.stages.items():
        print(f"  {name:13s} {rec.seconds:7.1f} s{'  (reused)' if rec.reused else ''}")
    return result


__all__ = ["ALL_SOURCES", "STAGES", "Quickstart", "QuickstartError", "QuickstartOptions", "QuickstartResult",
           "StageRecord", "quickstart_command", "run_quickstart"]  # fmt: skip
