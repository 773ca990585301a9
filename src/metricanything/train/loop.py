"""The one training loop, used by teacher pretraining, fine-tuning and student distillation.

Read it top to bottom; a stage plugs in through a small :class:`Task` object (model, data, loss,
validation, image panel, export). Launch with ``python -m metricanything.cli ...`` for one process or
``torchrun --nproc_per_node=N -m metricanything.cli ...`` for DDP (gloo on CPU, NCCL on GPU).

Data position. Item ``i`` of the dataset is a pure function of (seed, i) and the loop asks for fixed
indices: micro-batch ``m`` of optimiser step ``s`` on rank ``r`` is items
``((s * grad_accum + m) * world_size + r) * batch_size + [0, batch_size)``. So "where the data stream is"
is just the step number, and a resumed run sees exactly the batches an uninterrupted run would have seen
(with any number of DataLoader workers).

Per optimiser step: ``grad_accum`` micro-batches (DDP gradient sync only on the last), loss / grad_accum
backward, optional unscale (fp16), gradient clipping, AdamW step, LR scheduler step (linear warm-up then
cosine to ``min_lr_ratio``), optional EMA update. The mean loss over micro-batches and ranks is
all-reduced every step (one scalar); a non-finite value skips the update on every rank and ten in a row
abort the run.

Data faults. A dataset with ``fault_counter()`` (see :class:`metricanything.data.sources.DataFaults`) reports,
per item, the samples it skipped because they failed to decode (replaced deterministically, so the data
position is still the step). The loop sums the counts over ranks every step, logs each skipped sample (file
and key) and the per-source counts to ``log.jsonl``, keeps them in checkpoints and ``summary.json``, and
stops the run when a source's failure rate passes its ``max_bad_fraction``.

Model refresh. Every checkpoint also replaces ``<run>/model/`` (the stage's self-describing export: config.json +
model.safetensors, EMA weights when EMA is on, plus ``training_state.json`` with the step) as a whole, atomically
(:func:`metricanything.atomic.atomic_dir`), so a run killed at any point has a complete model that ``eval`` /
``infer`` read; the end of the run replaces it with the final weights.

Progress (rank 0, :class:`metricanything.progress.Progress`): a tqdm bar when ``train.progress`` is on and standard
output is a terminal; otherwise plain lines (step, loss, samples/s, ETA) every ``max(1, steps // 20)`` steps and
at least every 60 s, so ``train.progress: false`` or a pipe still shows the loss. ``--quiet`` prints only errors
and the final summary; ``--verbose`` adds every logged scalar.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from metricanything.atomic import atomic_dir, check_output_dir, clean_stale_temps, write_text_atomic
from metricanything.config import yaml_load
from metricanything.data.batch import FAULTS_KEY
from metricanything.data.sources import DataFaults
from metricanything.errors import CheckpointError, ConfigError, MetricAnythingError
from metricanything.progress import VERBOSE
from metricanything.train.checkpointing import (
    capture_rng_state,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_model_state,
    load_optim_state,
    model_state,
    optim_state,
    restore_rng_state,
    save_checkpoint,
)
from metricanything.train.config import TrainConfig, dump_config, resume_changes
from metricanything.train.data import account_data_faults, make_loader
from metricanything.train.logger import Logger

MAX_BAD_STEPS = 10


class TrainingError(MetricAnythingError):
    """Training cannot continue (e.g. the loss stayed non-finite)."""


# ---------------------------------------------------------------------------------------------- task
class Task(Protocol):
    """What a stage provides to :func:`train`."""

    #: parameter-name prefixes that belong to the encoder (they get ``lr * encoder_lr_mult``)
    encoder_prefixes: tuple[str, ...]
    #: DDP ``find_unused_parameters``
    find_unused_parameters: bool

    def build_model(self) -> nn.Module: ...

    def dataset(self) -> torch.utils.data.Dataset: ...

    def collate(self, items: list[Any]) -> dict[str, Any]: ...

    def loss(self, ctx: StepContext, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]: ...

    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]: ...

    def panel(self, model: nn.Module, batch: dict[str, Any], device: torch.device) -> np.ndarray | None: ...

    def export(self, model: nn.Module, out_dir: Path) -> None: ...


@dataclass
class StepContext:
    """Handed to :meth:`Task.loss`: ``model`` is the (DDP/FSDP) wrapper to train through, ``raw`` the bare
    module (for no-grad auxiliary passes such as a prompt-free prior), plus where and when we are."""

    model: nn.Module
    raw: nn.Module
    device: torch.device
    step: int
    rank: int
    world_size: int
    autocast: Any


@dataclass
class TrainResult:
    out_dir: Path
    step: int
    final_loss: float
    val: dict[str, float] = field(default_factory=dict)
    resumed_from: int | None = None
    seconds: float = 0.0
    samples_per_s: float = 0.0
    data: dict[str, Any] | None = None  # data fault counts (DataFaults.record() + notes)


# ---------------------------------------------------------------------------------------------- distributed
@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(deterministic: bool = True) -> Dist:
    """Read torchrun's environment; start the process group (NCCL on GPU, gloo on CPU) if world size > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if cuda and deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo", device_id=device if cuda else None)
    return Dist(rank=rank, world_size=world, local_rank=local, device=device)


def teardown_distributed(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def _all_mean(x: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.enabled:
        x = x.clone()
        dist.all_reduce(x)
        x /= d.world_size
    return x


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------- data
def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


# ---------------------------------------------------------------------------------------------- optimiser
def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up over ``warmup`` steps ((s+1)/warmup), then cosine from 1 to ``min_ratio`` at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(model: nn.Module, cfg: TrainConfig, encoder_prefixes: tuple[str, ...]) -> torch.optim.AdamW:
    """AdamW with four groups: {encoder, rest} x {decay (matrices/kernels), no decay (biases, norms, 1-D)}."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        clean = name.replace("_fsdp_wrapped_module.", "").replace("_checkpoint_wrapped_module.", "")
        clean = clean[len("module.") :] if clean.startswith("module.") else clean
        is_enc = any(clean.startswith(pref) for pref in encoder_prefixes)
        decay = p.ndim >= 2
        groups.setdefault((is_enc, decay), []).append(p)
    o = cfg.optim
    param_groups = []
    for (is_enc, decay), params in sorted(groups.items()):
        param_groups.append(
            {
                "params": params,
                "lr": o.lr * (o.encoder_lr_mult if is_enc else 1.0),
                "weight_decay": o.weight_decay if decay else 0.0,
                "name": f"{'encoder' if is_enc else 'head'}_{'decay' if decay else 'no_decay'}",
            }
        )
    kwargs: dict[str, Any] = {"betas": tuple(o.betas)}
    if any(p.is_cuda for g in param_groups for p in g["params"]):
        kwargs["fused"] = True
    return torch.optim.AdamW(param_groups, **kwargs)


class EMA:
    """Exponential moving average of the weights: shadow = decay * shadow + (1 - decay) * weights (buffers copied)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_state = self.model.state_dict()
        for name, value in model.state_dict().items():
            target = ema_state[name]
            if value.dtype.is_floating_point:
                target.mul_(self.decay).add_(value.detach(), alpha=1.0 - self.decay)
            else:
                target.copy_(value)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "model": self.model.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay = state["decay"]
        self.model.load_state_dict(state["model"])


# ---------------------------------------------------------------------------------------------- precision
def autocast_for(precision: str, device: torch.device) -> tuple[Any, bool]:
    """(autocast context factory, use a GradScaler). ``auto`` = bf16 on CUDA, fp32 elsewhere."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext, False
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision fp16 needs a CUDA device (use bf16 or fp32 on CPU)")
    return (lambda: torch.autocast(device_type=device.type, dtype=dtype)), precision == "fp16"


# ---------------------------------------------------------------------------------------------- wrapping
def wrap_model(model: nn.Module, task: Task, cfg: TrainConfig, d: Dist) -> nn.Module:
    if not d.enabled:
        return model
    if cfg.train.fsdp:
        if d.device.type != "cuda":
            raise ConfigError("train.fsdp needs CUDA devices (use plain DDP on CPU)")
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        block_classes = set(getattr(task, "fsdp_block_classes", lambda: set())())
        policy = ModuleWrapPolicy(block_classes) if block_classes else None
        return FSDP(model, auto_wrap_policy=policy, device_id=d.device, use_orig_params=True)
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(
        model,
        device_ids=[d.local_rank] if d.device.type == "cuda" else None,
        find_unused_parameters=bool(getattr(task, "find_unused_parameters", False)),
    )


# ---------------------------------------------------------------------------------------------- the loop
def train(cfg: TrainConfig, task: Task, *, resume: bool = False) -> TrainResult:
    """Run (or continue, with ``resume``) a training run described by ``cfg``; returns a summary on every rank."""
    t_start = time.perf_counter()
    d = setup_distributed(cfg.train.deterministic)
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    out = Path(cfg.out_dir)
    # ---- resume: the newest checkpoint and the settings changed since it was written (a change that resuming
    # cannot honour raises here, before anything is written; the allowed ones are applied and recorded)
    ckpt = latest_checkpoint(out) if resume else None
    state = load_checkpoint(ckpt) if ckpt is not None else None
    changed: dict[str, tuple[Any, Any]] = {}
    unchecked = False
    if state is not None:
        stored = state.get("config_json")
        if stored is None and (out / "config.yaml").is_file():
            stored = yaml_load((out / "config.yaml").read_text(encoding="utf-8"))
        if stored is None:
            unchecked = True
        else:
            changed = resume_changes(stored, cfg, source=str(ckpt), step=int(state["step"]))
    if d.main:
        check_output_dir(out, "--out (out_dir)")
        clean_stale_temps(out)  # e.g. a model/ refresh of a killed run
        write_text_atomic(out / "config.yaml", dump_config(cfg))
    _barrier(d)

    # ---- model, optimiser, schedule (identical initial weights on every rank: same seed before building)
    seed_everything(cfg.seed)
    raw = task.build_model().to(d.device)
    model = wrap_model(raw, task, cfg, d)
    fsdp = d.enabled and cfg.train.fsdp  # FSDP-wrapped: state dicts are gathered to their full form
    opt = build_optimizer(model, cfg, tuple(task.encoder_prefixes))
    o = cfg.optim
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, cfg.train.steps, o.warmup_steps, o.min_lr_ratio)
    )
    autocast, use_scaler = autocast_for(cfg.train.precision, d.device)
    scaler = torch.amp.GradScaler(d.device.type, enabled=use_scaler)
    ema = None
    if cfg.train.ema_decay > 0:
        if fsdp:
            raise ConfigError("train.ema_decay with train.fsdp is not supported")
        ema = EMA(raw, cfg.train.ema_decay)

    # ---- resume
    start_step, resumed_from, data_state = 0, None, None
    if state is not None:
        try:
            load_model_state(model, raw, state["model"], fsdp)
        except RuntimeError as exc:
            raise CheckpointError(f"{ckpt}: model weights do not fit this config ({exc})") from exc
        load_optim_state(model, opt, state["optimizer"], fsdp)
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        if ema is not None:
            if state.get("ema") is None:
                raise CheckpointError(f"{ckpt}: has no EMA state but train.ema_decay > 0")
            ema.load_state_dict(state["ema"])
        start_step = resumed_from = int(state["step"])
        data_state = state.get("data_faults")
        rng = state.get("rng") or []
        if state.get("world_size") == d.world_size and len(rng) == d.world_size:
            restore_rng_state(rng[d.rank])
        else:
            seed_everything(cfg.seed + 1_000_003 * (d.rank + 1) + start_step)
        del state
    else:
        seed_everything(cfg.seed + 1_000_003 * d.rank)

    log = Logger(cfg, d, out, start_step)
    if resume and ckpt is None:
        log.message(f"[train] --resume: no checkpoint in {out / 'checkpoints'}, starting from step 0")
    elif ckpt is not None:
        log.message(f"[train] resumed from {ckpt} (step {start_step})")
        if changed:
            log.message("[train] resume: changed settings applied (config.yaml records them): "
                        + "; ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items()))
        if unchecked:
            log.message(f"[train] resume: {ckpt} records no config; the requested settings were not compared with it")

    dataset = task.dataset()
    faults: DataFaults | None = dataset.fault_counter() if hasattr(dataset, "fault_counter") else None
    if faults is not None:
        if data_state:
            faults.load_state_dict(data_state)
        for note in faults.notes:  # e.g. a truncated shard: said once per run (and once in log.jsonl)
            log.message(f"[data] {note}")
            if start_step == 0:
                log.record(0, "data_note", {"note": note})
    loader = make_loader(dataset, task, cfg, d, start_step)
    batches = iter(loader)
    accum = cfg.train.grad_accum
    samples_per_step = cfg.train.batch_size * accum * d.world_size
    step = start_step
    last_loss = math.nan
    bad_steps = 0
    t_last, sps = time.perf_counter(), 0.0
    last_batch: dict[str, Any] | None = None
    val: dict[str, float] = {}

    def checkpoint(step_now: int) -> None:
        rng_states = [None] * d.world_size
        if d.enabled:
            dist.all_gather_object(rng_states, capture_rng_state())
        else:
            rng_states = [capture_rng_state()]
        weights = model_state(model, raw, fsdp)
        optimiser = optim_state(model, opt, fsdp)
        if d.main:
            save_checkpoint(
                out,
                step_now,
                {
                    "model": weights,
                    "optimizer": optimiser,
                    "scheduler": sched.state_dict(),
                    "scaler": scaler.state_dict(),
                    "ema": ema.state_dict() if ema is not None else None,
                    "rng": rng_states,
                    "world_size": d.world_size,
                    "data_faults": faults.state_dict() if faults is not None else None,
                    "config_json": json.dumps(cfg.to_dict(), sort_keys=True, default=str),
                },
                keep_last=cfg.train.keep_last,
            )
            if step_now != cfg.train.steps:  # the end of the run publishes the final model itself
                publish_model(step_now, weights)
            log.checkpointed(step_now)
            log.message(f"[train] checkpoint saved: step {step_now}" + (
                f"; {out / 'model'} refreshed" if step_now != cfg.train.steps else ""), VERBOSE)
        _barrier(d)

    def publish_model(step_now: int, weights: dict[str, torch.Tensor], final: bool = False) -> None:
        """Replace ``out/model`` as a whole with the stage's export of the current (EMA) weights (rank 0)."""
        export_model = ema.model if ema is not None else raw
        if fsdp:
            export_model = copy.deepcopy(raw)
            export_model.load_state_dict(weights)
        was_training = export_model.training
        with atomic_dir(out / "model") as tmp:
            task.export(export_model, tmp)
            write_text_atomic(tmp / "training_state.json", json.dumps({
                "step": step_now, "steps": cfg.train.steps, "final": final,
                "weights": "ema" if ema is not None else "model", "stage": cfg.stage,
            }, indent=2) + "\n")  # fmt: skip
        export_model.train(was_training)

    def run_validation(step_now: int) -> dict[str, float]:
        result: dict[str, float] = {}
        if d.main:
            eval_model = ema.model if ema is not None else raw
            was_training = eval_model.training
            eval_model.eval()
            with torch.no_grad(), autocast():
                result = task.validate(eval_model, d.device)
            eval_model.train(was_training)
            log.scalars(step_now, result, "val")
            log.message(f"[train] val @ {step_now}: " + ", ".join(f"{k}={v:.4g}" for k, v in result.items()))
        _barrier(d)
        return result

    def panel(step_now: int) -> None:
        if d.main and last_batch is not None:
            eval_model = ema.model if ema is not None else raw
            was_training = eval_model.training
            eval_model.eval()
            with torch.no_grad(), autocast():
                img = task.panel(eval_model, last_batch, d.device)
            eval_model.train(was_training)
            log.image(step_now, "panel", img, out)

    model.train()
    while step < cfg.train.steps:
        opt.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=d.device)
        logs_sum: dict[str, float] = {}
        counts, skipped = (np.zeros(2 * len(faults.names), dtype=np.int64), []) if faults is not None else (None, [])
        for m in range(accum):
            batch = next(batches)
            item_faults = batch.pop(FAULTS_KEY, [])
            if faults is not None:
                counts += faults.tally(batch["source"].tolist(), item_faults)
                skipped.extend(f for fs in item_faults for f in fs)
            batch = to_device(batch, d.device)
            sync = m == accum - 1 or not d.enabled or cfg.train.fsdp
            ctx = StepContext(model, raw, d.device, step, d.rank, d.world_size, autocast)
            with (contextlib.nullcontext() if sync else model.no_sync()), autocast():
                loss, logs = task.loss(ctx, batch)
            scaler.scale(loss.float() / accum).backward()
            loss_sum += loss.detach().float()
            for k, v in logs.items():
                logs_sum[k] = logs_sum.get(k, 0.0) + float(v) / accum
            if m == accum - 1:
                last_batch = batch
        mean_loss = _all_mean(loss_sum / accum, d)
        last_loss = float(mean_loss)
        lrs = {g["name"]: g["lr"] for g in opt.param_groups}
        if not math.isfinite(last_loss):
            bad_steps += 1
            opt.zero_grad(set_to_none=True)
            log.message(f"[train] step {step}: non-finite loss, update skipped ({bad_steps} in a row)")
            if bad_steps >= MAX_BAD_STEPS:
                raise TrainingError(f"loss non-finite for {bad_steps} consecutive steps (last at step {step})")
            grad_norm = math.nan
        else:
            bad_steps = 0
            scaler.unscale_(opt)
            if cfg.optim.clip_grad > 0:
                if fsdp:
                    grad_norm = float(model.clip_grad_norm_(cfg.optim.clip_grad))
                else:
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(raw.parameters(), cfg.optim.clip_grad))
            else:
                grad_norm = math.nan
            scaler.step(opt)
            scaler.update()
            if ema is not None:
                ema.update(raw)
        sched.step()
        step += 1
        if faults is not None:
            account_data_faults(faults, counts, skipped, d, log, step)

        now = time.perf_counter()
        inst = samples_per_step / max(now - t_last, 1e-9)
        sps = inst if step == start_step + 1 else 0.9 * sps + 0.1 * inst
        t_last = now
        log.progress(step, last_loss, sps)
        if step % cfg.train.log_every == 0 or step == cfg.train.steps:
            scalars = {"loss": last_loss, "grad_norm": grad_norm, "samples_per_s": sps, **logs_sum}
            scalars.update({f"lr_{k}": v for k, v in lrs.items()})
            log.scalars(step, scalars, "train")
            if faults is not None:
                log.scalars(step, faults.record(), "data")
        if cfg.train.image_every and step % cfg.train.image_every == 0 and step != cfg.train.steps:
            panel(step)
        if cfg.train.val_every and step % cfg.train.val_every == 0 and step != cfg.train.steps:
            val = run_validation(step)
        if step % cfg.train.ckpt_every == 0 or step == cfg.train.steps:
            checkpoint(step)

    # ---- the end: final checkpoint exists (unless nothing was left to do), validation, panel, export
    if start_step >= cfg.train.steps and not list_checkpoints(out):
        checkpoint(step)
    panel(step)
    val = run_validation(step)
    final_state = model_state(model, raw, fsdp)
    if cfg.train.dump_rank_weights:
        from metricanything.atomic import atomic_path

        with atomic_path(out / f"rank{d.rank}_weights.pt") as tmp:
            torch.save(final_state, tmp)
    seconds = time.perf_counter() - t_start
    data = {**faults.record(), "notes": faults.notes} if faults is not None else None
    if data and (data["bad"] or data["notes"]):
        log.message(f"[train] data: {data['bad']} of {data['draws']} drawn samples failed to decode and were replaced ("
                    + ", ".join(f"{s['name']}: {s['bad']}/{s['draws']}" for s in data["sources"])
                    + f"); {len(data['notes'])} damaged shard(s)")
    if d.main:
        publish_model(step, final_state, final=True)
        summary = {
            "step": step,
            "final_loss": last_loss,
            "val": val,
            "resumed_from": resumed_from,
            "seconds_this_run": seconds,
            "world_size": d.world_size,
            "samples_per_step": samples_per_step,
            "data": data,
        }
        write_text_atomic(out / "summary.json", json.dumps(summary, indent=2, sort_keys=True))
    log.close()
    del batches, loader
    teardown_distributed(d)
    return TrainResult(out, step, last_loss, val, resumed_from, seconds, sps, data)
