"""Teacher pretraining (and fine-tuning): Sparse Metric Prompts on the fly, Robust MAE on the full valid target.

Per item (data loader, deterministic in (seed, index)): draw a sample from the source mixture -> optional
gross label outliers (robustness experiments) -> prompt preparation of untrusted-scale samples with the
``oracle`` prior -> ``size`` x ``size`` training view (augmented) -> optional named-pattern prompt.

Per micro-batch (training process): prompt preparation with the ``model`` prior (the teacher itself, run
without a prompt, no gradient) -> random Sparse Metric Prompts drawn from the prepared depth (a torch
generator seeded by (seed, first item index)) -> a fraction ``p_no_prompt`` of the metric-trusted samples gets
no prompt -> teacher forward -> Robust MAE over **all** valid target pixels (+ optional gradient matching).

Untrusted-scale samples that could not be prepared always keep a prompt: their prompt and target share the
same (wrong) scale, so they still teach "follow the prompt" and never teach an absolute scale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from metricanything.config import from_mapping
from metricanything.data.batch import collate_items, to_item
from metricanything.data.sources import DataFaults, SourceMixture, item_rng
from metricanything.errors import ConfigError, InvalidInputError
from metricanything.losses import gradient_matching_loss, robust_mae
from metricanything.train.config import PretrainConfig, TrainConfig
from metricanything.train.data import corrupt_labels, imagenet_normalise, oracle_align, training_view
from metricanything.train.loop import StepContext, TrainResult, train
from metricanything.train.panels import make_panel

#: generator streams of one item
_STREAM_LABELS, _STREAM_PREP, _STREAM_VIEW, _STREAM_PATTERN = 1, 2, 3, 4


def _sensor_selected(sensor: str, selected: list[str]) -> bool:
    return "*" in selected or sensor in selected


class PretrainDataset(torch.utils.data.Dataset):
    """Item ``index`` -> training view dict (the layout of :func:`metricanything.data.batch.to_item`)."""

    def __init__(self, cfg: TrainConfig, sources=None, seed: int | None = None, augment: bool | None = None) -> None:
        self.cfg = cfg
        self.seed = cfg.seed if seed is None else seed
        self.mixture = SourceMixture(cfg.data.sources if sources is None else sources, self.seed)
        self.augment = cfg.data.augment if augment is None else augment
        # label corruption is a property of the training labels only; held-out data stays clean
        self.corrupt = sources is None

    def fault_counter(self) -> DataFaults:
        """Counts of bad samples per source, for the training loop (see :class:`DataFaults`)."""
        return self.mixture.fault_counter("data.sources" if self.corrupt else "data.val_sources")

    def __getitem__(self, index: int) -> dict[str, Any]:
        cfg = self.cfg
        sample, s, faults = self.mixture.get(index)
        outliers = None
        if (self.corrupt and cfg.data.label_outlier_fraction > 0
                and _sensor_selected(sample.sensor, cfg.data.label_outlier_sources)):
            sample, outliers = corrupt_labels(sample, cfg.data.label_outlier_fraction, item_rng(self.seed, index, _STREAM_LABELS))
        noise = cfg.untrusted_oracle_noise
        if not sample.metric_scale_trusted and noise is not None:
            aligned = oracle_align(sample, noise, item_rng(self.seed, index, _STREAM_PREP))
            if aligned is not None:
                sample = aligned
        rng = item_rng(self.seed, index, _STREAM_VIEW) if self.augment else None
        view = training_view(sample, cfg.data.size, rng)
        item = to_item(view, index, s, faults)
        if cfg.prompt_pattern:
            from metricanything.prompts.patterns import make_prompt

            prompt = make_prompt(cfg.prompt_pattern, view.depth, view.valid, view.intrinsics, view.image,
                                 seed=int(item_rng(self.seed, index, _STREAM_PATTERN).integers(2**31)))
            pd, pm = prompt.to_map()
            item["prompt_depth"] = torch.from_numpy(np.where(pm, pd, 0).astype(np.float32))[None]
            item["prompt_mask"] = torch.from_numpy(pm.astype(bool))[None]
        del outliers  # (the mask of corrupted pixels is not needed for training)
        return item


def _generator(seed: int, first_index: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed((int(seed) * 1_000_003 + int(first_index) * 7919 + 12345) % (2**63 - 1))
    return g


class PretrainTask:
    """The teacher stage for :func:`metricanything.train.loop.train`."""

    encoder_prefixes = ("encoder.",)
    find_unused_parameters = False

    def __init__(self, cfg: PretrainConfig) -> None:
        from metricanything.prompts.prep import PrepConfig
        from metricanything.prompts.sampler import PromptSamplerConfig

        self.cfg = cfg
        self.sampler_cfg = from_mapping(PromptSamplerConfig, cfg.prompts.sampler, prefix="prompts.sampler")
        self.prep_cfg = from_mapping(PrepConfig, cfg.prompts.prep, prefix="prompts.prep")
        self._val: list[dict[str, Any]] | None = None

    # ---- model
    def build_model(self) -> nn.Module:
        from metricanything.models.teacher import Teacher, teacher_config

        m = self.cfg.model
        if m.init:
            from metricanything.models.checkpoint import from_pretrained

            model = from_pretrained(m.init)
            if not isinstance(model, Teacher):
                raise ConfigError(f"model.init {m.init}: is a {type(model).__name__}, pretraining needs a teacher")
            if m.overrides:
                raise ConfigError("model.overrides cannot change a model loaded from model.init")
            return model.train()
        try:
            model = Teacher(teacher_config(m.preset, **m.overrides))
        except TypeError as exc:
            raise ConfigError(f"model.overrides: {exc}") from exc
        if m.backbone:
            model.load_backbone(m.backbone)
        return model

    def fsdp_block_classes(self) -> set[type]:
        from metricanything.models.vit import Block

        return {Block}

    # ---- data
    def dataset(self) -> torch.utils.data.Dataset:
        return PretrainDataset(self.cfg)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return collate_items(items)

    # ---- prompts
    def _prepare_with_model(self, ctx: StepContext, batch: dict[str, Any]) -> None:
        """PDSA + GMDR of untrusted samples against the teacher's own prompt-free prediction (in place)."""
        from metricanything.prompts.prep import prepare_arrays

        need = (~batch["metric_scale_trusted"]).nonzero().flatten().tolist()
        if not need:
            return
        idx = torch.tensor(need, device=ctx.device)
        with torch.no_grad(), ctx.autocast():
            prior = ctx.raw(imagenet_normalise(batch["image"][idx]), f_px=batch["fx"][idx]).float().cpu().numpy()
        depth = batch["depth"].cpu().numpy()
        valid = batch["valid"].cpu().numpy()
        for j, i in enumerate(need):
            try:
                res = prepare_arrays(depth[i, 0], valid[i, 0], prior[j, 0], trusted=False, cfg=self.prep_cfg)
            except InvalidInputError:
                continue  # too few points: stays untrusted (prompt-only)
            batch["depth"][i, 0] = torch.from_numpy(res.depth).to(ctx.device)
            batch["valid"][i, 0] = torch.from_numpy(res.valid).to(ctx.device)
            batch["metric_scale_trusted"][i] = True

    def sample_prompts(self, batch: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(prompt depth, prompt mask) for a batch; also stored in ``batch`` for panels."""
        from metricanything.prompts.sampler import sample_prompt_masks

        g = _generator(self.cfg.seed, int(batch["index"][0]), device)
        if "prompt_mask" in batch:  # named pattern, built by the dataset
            mask = batch["prompt_mask"].to(torch.bool)
            pdepth = batch["prompt_depth"]
        else:
            mask = sample_prompt_masks(batch["valid"], self.sampler_cfg, g)
            pdepth = torch.where(mask, batch["depth"], torch.zeros_like(batch["depth"]))
        drop = (torch.rand(mask.shape[0], generator=g, device=device) < self.cfg.prompts.p_no_prompt) & batch["metric_scale_trusted"]
        mask = mask & ~drop.view(-1, 1, 1, 1)
        pdepth = torch.where(mask, pdepth, torch.zeros_like(pdepth))
        batch["prompt_mask"], batch["prompt_depth"] = mask, pdepth
        return pdepth, mask

    # ---- loss
    def loss(self, ctx: StepContext, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        if cfg.prompts.prior == "model":
            self._prepare_with_model(ctx, batch)
        pdepth, mask = self.sample_prompts(batch, ctx.device)
        pred = ctx.model(imagenet_normalise(batch["image"]), pdepth, mask, batch["fx"]).float()
        mae = robust_mae(pred, batch["depth"], batch["valid"], trim=cfg.loss.trim, space=cfg.loss.space)
        loss = mae
        logs = {"robust_mae": float(mae.detach())}
        if cfg.loss.grad_weight > 0:
            gm = gradient_matching_loss(pred, batch["depth"], batch["valid"], scales=cfg.loss.grad_scales)
            loss = loss + cfg.loss.grad_weight * gm
            logs["grad_match"] = float(gm.detach())
        logs["prompt_points"] = float(mask.flatten(1).sum(1).float().mean())
        logs["prompt_free"] = float((~mask.flatten(1).any(1)).float().mean())
        batch["pred"] = pred.detach()
        return loss, logs

    # ---- validation
    def validation_items(self) -> list[dict[str, Any]]:
        """Held-out views (centred, no augmentation) with fixed prompts of ``val_prompt_fraction`` of the valid pixels."""
        if self._val is None:
            from metricanything.prompts.sampler import PromptSamplerConfig, sample_prompt_masks

            cfg = self.cfg
            ds = PretrainDataset(cfg, sources=cfg.data.val_sources, seed=cfg.seed + 7_777_777, augment=False)
            f = cfg.data.val_prompt_fraction
            scfg = PromptSamplerConfig(min_fraction=f, max_fraction=f, p_extreme=0.0, p_full=0.0, min_points=1)
            items = []
            for i in range(cfg.data.val_samples):
                item = ds[i]
                if "prompt_mask" not in item:
                    g = torch.Generator().manual_seed(1_000 + i)
                    m = sample_prompt_masks(item["valid"][None], scfg, g)[0]
                    item["prompt_mask"] = m
                    item["prompt_depth"] = torch.where(m, item["depth"], torch.zeros_like(item["depth"]))
                items.append(item)
            self._val = items
        return self._val

    @torch.no_grad()
    def validate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        from metricanything.metrics import MetricAccumulator

        items = self.validation_items()
        with_prompt = MetricAccumulator(nonfinite="exclude", nonpositive="clip")
        no_prompt = MetricAccumulator(nonfinite="exclude", nonpositive="clip")
        bs = max(1, self.cfg.train.batch_size)
        for start in range(0, len(items), bs):
            b = collate_items(items[start : start + bs])
            img = imagenet_normalise(b["image"].to(device))
            fx = b["fx"].to(device)
            p1 = model(img, b["prompt_depth"].to(device), b["prompt_mask"].to(device), fx).float().cpu().numpy()
            p0 = model(img, f_px=fx).float().cpu().numpy()
            for j in range(p1.shape[0]):
                gt, valid = b["depth"][j, 0].numpy(), b["valid"][j, 0].numpy()
                if not valid.any():
                    continue
                with_prompt.add(p1[j, 0], gt, valid)
                no_prompt.add(p0[j, 0], gt, valid)
        if with_prompt.num_images == 0:
            return {}
        a, z = with_prompt.per_image_mean(), no_prompt.per_image_mean()
        return {
            "abs_rel": a["abs_rel"],
            "delta1": a["delta1"],
            "abs_rel_noprompt": z["abs_rel"],
            "delta1_noprompt": z["delta1"],
        }

    @torch.no_grad()
    def panel(self, model: nn.Module, batch: dict[str, Any], device: torch.device) -> np.ndarray | None:
        items = self.validation_items()
        if not items:
            return None
        it = items[0]
        img = imagenet_normalise(it["image"][None].to(device))
        pred = model(img, it["prompt_depth"][None].to(device), it["prompt_mask"][None].to(device), it["fx"][None].to(device))
        return make_panel(it["image"], it["prompt_mask"], pred[0, 0], it["depth"], it["valid"])

    # ---- export
    def export(self, model: nn.Module, out_dir: Path) -> None:
        from metricanything.models.checkpoint import save_pretrained

        save_pretrained(model, out_dir, extra_card={"trained_by": "metricanything pretrain", "train_config": self.cfg.to_dict()})


def run_pretrain(cfg: PretrainConfig, *, resume: bool = False) -> TrainResult:
    """Pretrain (or fine-tune, with ``model.init``) a teacher as configured."""
    if cfg.stage != "pretrain":
        raise ConfigError(f"config stage is {cfg.stage!r}; `pretrain` needs stage: pretrain")
    return train(cfg, PretrainTask(cfg), resume=resume)
