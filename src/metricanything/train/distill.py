"""Student distillation: the prompt-free student learns the teacher's pseudo-labels (optionally mixed with
trusted GT) with the distance-balanced inverse-depth loss; its FoV head (if any) learns the known intrinsics.

Per item: the same pipeline as pretraining without prompts (source mixture of pseudo-label shards and GT
sources, oracle alignment of untrusted GT, ``size`` x ``size`` training view). Per micro-batch:

* the view (ImageNet-normalised) is resized to the student's S x S input (bilinear, ``align_corners=False``,
  the official convention);
* the loss is computed at the network resolution S x S, on every output pixel: a view of another size has its
  label depth D and mask resized to S x S (nearest, no value mixing; :func:`network_target`). (The prediction
  is never resized down to the view for the loss: a 512 -> 160 bilinear resize reads 2 of every 3.2 output
  rows/columns on a grid that repeats every 16 px = one token, so the other rows got no gradient and the
  bundled student learnt 16-px-periodic horizontal bands; docs/design.md, "Striped student".) Views of size S
  (``data.size`` = S, as in the shipped configs) avoid any label resize;
* target C* = f_px / (W D) from the label depth D and the view's focal f_px and width W (C* does not depend on
  the resolution, f_px / W is the same at S x S);
* loss = distance-balanced L1 between C and C* over valid pixels of metric-trusted samples, with the
  distance bands computed on the metric D (:func:`distance_balanced_inverse_depth_loss`);
* plus ``fov_weight`` x |ln tan(fov_pred / 2) - ln tan(fov_gt / 2)| on samples whose intrinsics are known
  (``meta["intrinsics_known"]`` is not False), when the student has a FoV head.

Encoder initialisation from the teacher (``distill.teacher`` + ``init_encoder_from_teacher``): every tensor
``encoder.<name>`` of the teacher whose counterpart ``encoder.patch_encoder.<name>`` exists in the student
with the same shape is copied; the others keep their initialisation. The numbers copied / skipped are
printed, and a teacher with nothing in common raises (use a teacher config whose ``vit`` matches the
student's, e.g. ``dinov3_tiny`` for both tiny presets). A freshly built student's last head conv gets the
bias ``distill.head_bias_init`` ("auto": the median C* of the first 32 training items): the student starts at
the focal-aware median prediction, and no pixel starts in the ReLU's dead zone. (Adam moves a bias by about
``lr`` per step, so a canonical inverse depth of ~0.5 from a zero start takes hundreds of steps.)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metricanything.data.batch import collate_items
from metricanything.errors import CheckpointError, ConfigError
from metricanything.losses import distance_balanced_inverse_depth_loss, gradient_matching_loss
from metricanything.train.config import DistillConfig, DistillLossConfig
from metricanything.train.data import imagenet_normalise
from metricanything.train.loop import StepContext, TrainResult, train
from metricanything.train.panels import make_panel
from metricanything.train.pretrain import PretrainDataset


class StudentForTraining(nn.Module):
    """Wraps a :class:`Student` so that ``forward`` returns (C, fov or None): DDP only sees ``forward``."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if getattr(self.student, "fov", None) is not None:
            return self.student.forward_with_fov(x)
        return self.student(x), None


def init_encoder_from_teacher(student: nn.Module, teacher_path: str) -> tuple[int, int]:
    """Copy matching encoder tensors (see the module docstring); returns (copied, student encoder tensors)."""
    from metricanything.models.checkpoint import from_pretrained

    teacher = from_pretrained(teacher_path)
    t_state = {k[len("encoder."):]: v for k, v in teacher.state_dict().items() if k.startswith("encoder.")}
    s_state = student.state_dict()
    prefix = "encoder.patch_encoder."
    targets = {k[len(prefix):]: k for k in s_state if k.startswith(prefix)}
    copied = 0
    with torch.no_grad():
        for name, key in targets.items():
            src = t_state.get(name)
            if src is not None and tuple(src.shape) == tuple(s_state[key].shape):
                s_state[key].copy_(src.to(s_state[key].dtype))
                copied += 1
    if copied == 0:
        raise CheckpointError(
            f"{teacher_path}: no encoder tensor of the teacher fits the student (different ViT); set "
            "distill.init_encoder_from_teacher=false or use matching ViT configs"
        )
    return copied, len(targets)


def fov_log_tan(fov_rad: torch.Tensor) -> torch.Tensor:
    return torch.log(torch.tan(0.5 * fov_rad).clamp_min(1e-6))


def network_input(image: torch.Tensor, s: int) -> torch.Tensor:
    """[0, 1] images B x 3 x H x W -> ImageNet-normalised S x S student input (bilinear, align_corners=False)."""
    x = imagenet_normalise(image)
    if x.shape[-2:] != (s, s):
        x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
    return x


def network_target(depth: torch.Tensor, valid: torch.Tensor, s: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Label depth B x 1 x H x W and its mask resized to the network's S x S (nearest: each output pixel takes
    the label pixel containing its centre, depth and mask together, like ``resize_depth(mode="nearest")``)."""
    if depth.shape[-2:] == (s, s):
        return depth, valid
    d = F.interpolate(depth.float(), size=(s, s), mode="nearest-exact")
    v = F.interpolate(valid.float(), size=(s, s), mode="nearest-exact") > 0.5
    return torch.where(v, d, torch.zeros_like(d)), v


def predict_canonical(model: nn.Module, image: torch.Tensor, s: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(canonical inverse depth resized back to the image's H x W, fov or None) through a StudentForTraining."""
    c, fov = model(network_input(image, s))
    c = c.float()
    if c.shape[-2:] != image.shape[-2:]:
        c = F.interpolate(c, size=image.shape[-2:], mode="bilinear", align_corners=False)
    return c, fov


@torch.no_grad()
def student_metric_depth(model: nn.Module, image: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
    """Metric depth B x 1 x H x W = f_px / (W C) of [0, 1] images with focal ``fx`` (B,) (e.g. the GT focal)."""
    wrapper = model if isinstance(model, StudentForTraining) else StudentForTraining(model)
    c, _ = predict_canonical(wrapper, image, wrapper.student.network_size)
    return fx.to(image.device).view(-1, 1, 1, 1) / (float(image.shape[-1]) * c.clamp_min(1e-6))


def canonical_loss(
    c: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, depth: torch.Tensor, loss_cfg: DistillLossConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """The student's depth loss on canonical inverse depth C vs C* (B x 1 x S x S), bands from the metric
    ``depth``: distance-balanced L1 + ``grad_weight`` x multi-scale gradient matching of ln C (scales
    ``grad_scales``, every pixel at the finest). The L1 alone is blind to a zero-mean pattern smaller than
    residuals of one sign (its cost is exactly 0 there); the gradient term is not (module docstring)."""
    loss = distance_balanced_inverse_depth_loss(
        c, target, valid, loss_cfg.n_bins, input_space="inverse", bin_depth=depth, balance=loss_cfg.balance,
        depth_range=tuple(loss_cfg.depth_range) if loss_cfg.depth_range else None,
    )
    logs = {"balanced_l1": float(loss.detach())}
    if loss_cfg.grad_weight > 0:
        gm = gradient_matching_loss(c, target, valid, loss_cfg.grad_scales, space="log", input_space="inverse")
        loss = loss + loss_cfg.grad_weight * gm
        logs["grad_match"] = float(gm.detach())
    return loss, logs


class DistillTask:
    """The student stage for :func:`metricanything.train.loop.train`."""

    encoder_prefixes = ("student.encoder.",)
    find_unused_parameters = False

    def __init__(self, cfg: DistillConfig) -> None:
        self.cfg = cfg
        self._val: list[dict[str, Any]] | None = None
        self.init_report: tuple[int, int] | None = None

    def build_model(self) -> nn.Module:
        from metricanything.models.student import Student, student_config

        m = self.cfg.model
        if m.init:
            from metricanything.models.checkpoint import from_pretrained

            student = from_pretrained(m.init)
            if not isinstance(student, Student):
                raise ConfigError(f"model.init {m.init}: is a {type(student).__name__}, distillation needs a student")
            student.train()
        else:
            try:
                student = Student(student_config(m.preset, **m.overrides))
            except TypeError as exc:
                raise ConfigError(f"model.overrides: {exc}") from exc
            d = self.cfg.distill
            if d.head_bias_init is not None:
                value = self.median_target(32) if d.head_bias_init == "auto" else float(d.head_bias_init)
                last = [mod for mod in student.head.modules() if isinstance(mod, nn.Conv2d)][-1]
                nn.init.constant_(last.bias, value)
                print(f"[distill] head bias initialised to {value:.4f} (canonical inverse depth)", flush=True)
            if d.teacher and d.init_encoder_from_teacher:
                self.init_report = init_encoder_from_teacher(student, d.teacher)
                print(f"[distill] encoder initialised from {d.teacher}: {self.init_report[0]} of "
                      f"{self.init_report[1]} tensors copied", flush=True)
        return StudentForTraining(student)

    def fsdp_block_classes(self) -> set[type]:
        from metricanything.models.vit import Block

        return {Block}

    def dataset(self) -> torch.utils.data.Dataset:
        return PretrainDataset(self.cfg)

    def median_target(self, n: int) -> float:
        """Median canonical inverse depth C* = f/(W D) over the valid trusted pixels of training items 0..n-1."""
        ds = self.dataset()
        values = []
        for i in range(n):
            it = ds[i]
            if not bool(it["metric_scale_trusted"]):
                continue
            d = it["depth"][it["valid"]]
            if d.numel():
                values.append(float(it["fx"]) / (it["image"].shape[-1] * d))
        if not values:
            return 0.3
        return float(torch.cat(values).median())

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return collate_items(items)

    def loss(self, ctx: StepContext, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        s = ctx.raw.student.network_size
        c, fov = ctx.model(network_input(batch["image"], s))
        c = c.float()  # S x S: the loss sees every output pixel (module docstring)
        w = float(batch["image"].shape[-1])
        f = batch["fx"].view(-1, 1, 1, 1)
        depth, valid = network_target(batch["depth"], batch["valid"], s)
        valid = valid & batch["metric_scale_trusted"].view(-1, 1, 1, 1)
        depth = torch.where(valid, depth, torch.ones_like(depth))
        target = f / (w * depth)
        loss, logs = canonical_loss(c, target, valid, depth, cfg.loss)
        if fov is not None:
            gt = 2.0 * torch.atan(w / (2.0 * batch["fx"]))
            err = (fov_log_tan(torch.deg2rad(fov.float())) - fov_log_tan(gt)).abs()
            known = batch["fov_known"].to(err.dtype)
            fov_loss = (err * known).sum() / known.sum().clamp_min(1.0)
            loss = loss + cfg.loss.fov_weight * fov_loss
            logs["fov_log_tan_l1"] = float(fov_loss.detach())
        c_view = c.detach()
        if c_view.shape[-2:] != batch["image"].shape[-2:]:
            c_view = F.interpolate(c_view, size=batch["image"].shape[-2:], mode="bilinear", align_corners=False)
        batch["pred"] = (f / (w * c_view.clamp_min(1e-6))).float()
        return loss, logs

    def validation_items(self) -> list[dict[str, Any]]:
        if self._val is None:
            cfg = self.cfg
            ds = PretrainDataset(cfg, sources=cfg.data.val_sources, seed=cfg.seed + 7_777_777, augment=False)
            self._val = [ds[i] for i in range(cfg.data.val_samples)]
        return self._val

    def predict_depth(self, model: nn.Module, batch: dict[str, Any], device: torch.device) -> torch.Tensor:
        return student_metric_depth(model, batch["image"].to(device), batch["fx"].to(device))

    @torch.no_grad()
    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        from metricanything.metrics import MetricAccumulator

        acc = MetricAccumulator(nonfinite="exclude", nonpositive="clip")
        items = self.validation_items()
        bs = max(1, self.cfg.train.batch_size)
        fov_err = []
        for start in range(0, len(items), bs):
            b = collate_items(items[start : start + bs])
            pred = self.predict_depth(model, b, device).float().cpu().numpy()
            for j in range(pred.shape[0]):
                valid = b["valid"][j, 0].numpy()
                if valid.any():
                    acc.add(pred[j, 0], b["depth"][j, 0].numpy(), valid)
            student = model.student if isinstance(model, StudentForTraining) else model
            if getattr(student, "fov", None) is not None:
                _, fov = StudentForTraining(student)(network_input(b["image"].to(device), student.network_size))
                gt = torch.rad2deg(2 * torch.atan(b["image"].shape[-1] / (2 * b["fx"])))
                fov_err.extend((fov.float().cpu() - gt).abs().tolist())
        if acc.num_images == 0:
            return {}
        m = acc.per_image_mean()
        out = {"abs_rel": m["abs_rel"], "delta1": m["delta1"]}
        if fov_err:
            out["fov_abs_err_deg"] = float(np.mean(fov_err))
        return out

    @torch.no_grad()
    def panel(self, model: nn.Module, batch: dict[str, Any], device: torch.device) -> np.ndarray | None:
        items = self.validation_items()
        if not items:
            return None
        b = collate_items(items[:1])
        pred = self.predict_depth(model, b, device)
        return make_panel(b["image"][0], None, pred[0, 0], b["depth"][0, 0], b["valid"][0, 0])

    def export(self, model: nn.Module, out_dir: Path) -> None:
        from metricanything.models.checkpoint import save_pretrained

        student = model.student if isinstance(model, StudentForTraining) else model
        save_pretrained(student, out_dir, extra_card={"trained_by": "metricanything distill", "train_config": self.cfg.to_dict()})


def run_distill(cfg: DistillConfig, *, resume: bool = False) -> TrainResult:
    """Distil a student as configured."""
    if cfg.stage != "distill":
        raise ConfigError(f"config stage is {cfg.stage!r}; `distill` needs stage: distill")
    if math.isclose(sum(s.weight for s in cfg.data.sources), 0.0):
        raise ConfigError("data.sources: all weights are 0")
    return train(cfg, DistillTask(cfg), resume=resume)
