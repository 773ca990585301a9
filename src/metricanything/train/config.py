"""Training configuration: one dataclass per stage, read strictly from YAML plus overrides.

* :class:`PretrainConfig` (``stage: pretrain``): teacher pretraining and fine-tuning.
* :class:`DistillConfig` (``stage: distill``): student distillation.

Each holds only the sections its stage reads; a key of the other stage is an error that names the key and
the stage it belongs to:

==============  =====================================================================================
both stages     ``seed``, ``out_dir``, ``model`` (+ ``backbone``: pretrain only), ``data``
                (+ ``val_prompt_fraction``: pretrain only), ``optim``, ``train``
pretrain only   ``prompts`` (sampler, PDSA/GMDR prep, prior, pattern), ``loss`` = :class:`PretrainLossConfig`
                (trim, space, grad_weight, grad_scales)
distill only    ``loss`` = :class:`DistillLossConfig` (n_bins, balance, depth_range, grad_weight, grad_scales, fov_weight),
                ``distill`` (teacher, encoder initialisation, head bias, untrusted GT)
==============  =====================================================================================

Loading (:func:`load_config`) goes: dataclass defaults <- YAML file (deep-merged; a preset name such as
``teacher_tiny`` or any path) <- overrides (a mapping, see :func:`metricanything.config.apply_overrides`)
-> strict validation (:func:`metricanything.config.from_mapping`: unknown key, wrong type -> ConfigError
naming the file and the dotted key) -> range checks (:meth:`TrainConfig.validate`, which also checks
``model.overrides`` against the model preset and ``prompts.sampler`` / ``prompts.prep`` against their
dataclasses).

Resuming a run (:func:`resume_changes`) compares the checkpoint's config with the requested one: the
settings in :data:`RESUMABLE_CHANGES` (length, logging, checkpoint cadence, threads, ...) may change and are
applied; any other change is refused, naming the keys.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import yaml

from metricanything.config import (
    apply_overrides,
    deep_merge,
    find_config,
    flatten,
    format_set,
    from_mapping,
    has_key,
    merge_overrides,
    parse_assignment,
    parse_set,
    prune_to_schema,
    read_yaml,
    to_plain,
    yaml_load,
)
from metricanything.errors import ConfigError

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------- schema
@dataclass
class SourceConfig:
    """One training data source (read by :func:`metricanything.data.sources.build_source`).

    * ``kind: render``: the embedded renderer (``data.mixture.render_mixed_sample``) on the fly; sample k of
      this source is rendered from seed ``seed + k`` (``num_samples`` > 0 makes it a finite set that
      repeats, 0 = every sample new). ``sources`` optionally restricts the simulated source kinds,
      ``fov_deg: [lo, hi]`` the cameras' horizontal FoV (default 25-100 deg; e.g. [55, 65] for one camera rig).
    * ``kind: folder``: a folder dataset at ``path``; ``kind: shards``: shards (a folder of ``*.tar`` or a
      glob) at ``path``; ``kind: loader``: the native dataset at ``path`` read by loader ``name`` (e.g.
      ``kitti``; ``split`` and loader ``options`` as in ``data.loaders.load_dataset``).
    ``weight`` is the relative probability of drawing from this source. ``metric_scale_trusted`` overrides the
    samples' own flag (null = keep it; false for SfM/MVS data with an unknown scale). A file sample that fails
    to decode is skipped, counted and replaced; more than ``max_bad_fraction`` of the draws bad (checked after
    ``min_draws`` draws) stops the run.
    """

    kind: Literal["render", "folder", "shards", "loader"] = "render"
    path: str | None = None
    name: str | None = None  # loader only: a name of data.loaders.LOADERS
    split: str | None = None  # loader only
    options: dict[str, Any] = field(default_factory=dict)  # loader only: extra keyword options
    weight: float = 1.0
    num_samples: int = 0
    seed: int = 0
    render_size: list[int] | None = None
    sources: list[str] | None = None
    fov_deg: list[float] | None = None  # render only: horizontal FoV range [lo, hi] (default 25-100 deg)
    metric_scale_trusted: bool | None = None
    max_bad_fraction: float = 0.05
    min_draws: int = 100


@dataclass
class DataConfig:
    size: int = 64  # square training crop (network input) in pixels
    sources: list[SourceConfig] = field(default_factory=lambda: [SourceConfig()])
    val_sources: list[SourceConfig] = field(default_factory=lambda: [SourceConfig(seed=10_000_000, num_samples=16)])
    val_samples: int = 16
    augment: bool = True
    num_workers: int = 0
    label_outlier_fraction: float = 0.0  # corrupt this fraction of target pixels (robustness experiments)
    label_outlier_sources: list[str] = field(default_factory=lambda: ["sfm", "mvs"])


@dataclass
class PretrainDataConfig(DataConfig):
    val_prompt_fraction: float = 0.01  # held-out prompts: this fraction of the valid pixels


@dataclass
class PromptConfig:
    sampler: dict[str, Any] = field(default_factory=dict)  # fields of prompts.sampler.PromptSamplerConfig
    prep: dict[str, Any] = field(default_factory=dict)  # fields of prompts.prep.PrepConfig
    # prior used by prompt preparation on untrusted-scale samples:
    #   none   - no preparation, untrusted samples used as they are (their prompts carry their own scale)
    #   oracle - the sample's true metric depth times log-normal noise (sigma = oracle_noise); rendered data only
    #   model  - the model being trained, run without a prompt (no grad), as the metric prior
    prior: Literal["none", "oracle", "model"] = "oracle"
    oracle_noise: float = 0.1
    # probability that a (metric-trusted) training sample gets no prompt at all, so the teacher also
    # works prompt-free (needed to pseudo-label images without any depth, and as the "model" prior)
    p_no_prompt: float = 0.1
    # instead of the random sampler, build every prompt with a named pattern of prompts.patterns
    # (e.g. "radar:64" for radar-camera fusion fine-tuning, "lidar:16"); None = random sampler
    pattern: str | None = None


@dataclass
class PretrainLossConfig:
    """Robust MAE of the teacher (``losses.robust_mae``)."""

    trim: float = 0.2
    space: Literal["inverse", "log", "depth"] = "inverse"
    grad_weight: float = 0.0
    grad_scales: int = 4


@dataclass
class DistillLossConfig:
    """Distance-balanced inverse-depth L1 of the student, + ``grad_weight`` x multi-scale gradient matching of
    ln C over ``grad_scales`` scales (+ the FoV head's loss)."""

    n_bins: int = 8
    balance: float = 1.0
    depth_range: list[float] | None = None
    grad_weight: float = 0.5
    grad_scales: int = 4
    fov_weight: float = 0.1


@dataclass
class OptimConfig:
    lr: float = 3e-4
    encoder_lr_mult: float = 0.1
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    clip_grad: float = 1.0  # 0 disables clipping


@dataclass
class ModelConfig:
    preset: str = "tiny"  # a student preset (models.student.student_config) or, for the teacher, see below
    overrides: dict[str, Any] = field(default_factory=dict)
    init: str | None = None  # checkpoint (save_pretrained folder) to start from


@dataclass
class TeacherModelConfig(ModelConfig):
    preset: str = "test"  # a teacher preset (models.teacher.teacher_config)
    backbone: str | None = None  # pretrained ViT weights for the teacher's encoder (models.vit.load_backbone_weights)


@dataclass
class DistillSettings:
    teacher: str | None = None  # teacher checkpoint, for encoder initialisation
    init_encoder_from_teacher: bool = True
    # initial bias of the student's last head conv (before its ReLU), in canonical inverse depth units.
    # "auto": the median target C* = f/(W D) of the first 32 training items, so the student starts at the
    # (focal-aware) median prediction and no pixel starts in the ReLU's dead zone; a number; null = keep
    head_bias_init: float | Literal["auto"] | None = "auto"
    # untrusted-scale GT samples (SfM/MVS) mixed into the training data:
    #   oracle - scaled by their true metric scale times log-normal noise (sigma = oracle_noise); rendered data
    #            only (others stay untrusted and out of the loss)
    #   drop   - left out of the loss
    untrusted_gt: Literal["oracle", "drop"] = "oracle"
    oracle_noise: float = 0.1


@dataclass
class RunConfig:
    steps: int = 100
    batch_size: int = 4  # per rank, per micro-step
    grad_accum: int = 1
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 on CUDA, fp32 on CPU
    deterministic: bool = True
    ema_decay: float = 0.0  # 0 disables EMA
    fsdp: bool = False
    threads: int = 0  # torch intra-op threads per rank (0 = leave torch's default)
    log_every: int = 10
    image_every: int = 0  # TensorBoard image panels every N steps (0 = only at the end)
    val_every: int = 0  # validation every N steps (0 = only at the end)
    ckpt_every: int = 50
    keep_last: int = 3
    progress: bool = True
    dump_rank_weights: bool = False  # every rank writes its final weights (DDP consistency tests)


@dataclass
class TrainConfig:
    """The sections both stages read; a run is configured by :class:`PretrainConfig` or :class:`DistillConfig`."""

    stage: str = ""
    seed: int = 0
    out_dir: str = "runs/train"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: RunConfig = field(default_factory=RunConfig)

    #: the kind of model the stage trains ("teacher" or "student")
    model_kind = ""

    def validate(self) -> None:
        """Range checks that types alone cannot express; raises :class:`ConfigError` naming the key."""
        checks = [
            (self.data.size >= 8, "data.size must be >= 8"),
            (len(self.data.sources) >= 1, "data.sources must list at least one source"),
            (self.optim.lr > 0, "optim.lr must be > 0"),
            (self.optim.encoder_lr_mult >= 0, "optim.encoder_lr_mult must be >= 0"),
            (len(self.optim.betas) == 2, "optim.betas must have two values"),
            (0.0 <= self.optim.min_lr_ratio <= 1.0, "optim.min_lr_ratio must be in [0, 1]"),
            (self.train.steps >= 1, "train.steps must be >= 1"),
            (self.train.batch_size >= 1, "train.batch_size must be >= 1"),
            (self.train.grad_accum >= 1, "train.grad_accum must be >= 1"),
            (0.0 <= self.train.ema_decay < 1.0, "train.ema_decay must be in [0, 1)"),
            (self.train.keep_last >= 1, "train.keep_last must be >= 1"),
            (self.train.ckpt_every >= 1, "train.ckpt_every must be >= 1"),
            (self.train.log_every >= 1, "train.log_every must be >= 1"),
            (0.0 <= self.data.label_outlier_fraction < 1.0, "data.label_outlier_fraction must be in [0, 1)"),
        ]
        for name in ("sources", "val_sources"):
            for i, src in enumerate(getattr(self.data, name)):
                where = f"data.{name}.{i}"
                checks.append((src.weight >= 0, f"{where}.weight must be >= 0"))
                checks.append((src.kind == "render" or bool(src.path), f"{where}: a {src.kind!r} source needs a path"))
                checks.append((src.kind != "loader" or bool(src.name), f"{where}: a 'loader' source needs a name (e.g. kitti)"))
                checks.append((0.0 <= src.max_bad_fraction <= 1.0, f"{where}.max_bad_fraction must be in [0, 1]"))
                checks.append((src.min_draws >= 1, f"{where}.min_draws must be >= 1"))
        checks.append((sum(s.weight for s in self.data.sources) > 0, "data.sources weights sum to 0"))
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        self._check_model()

    def _check_model(self) -> None:
        """``model.overrides`` must be fields of the model config and build with ``model.preset``."""
        m = self.model
        if m.init:
            if m.overrides:
                raise ConfigError(
                    "model.overrides cannot change a model loaded from model.init; drop them (--set model.overrides={})"
                )
            return
        if self.model_kind == "teacher":
            from metricanything.models.teacher import TeacherConfig as model_cls
            from metricanything.models.teacher import teacher_config as build
        else:
            from metricanything.models.student import StudentConfig as model_cls
            from metricanything.models.student import student_config as build
        names = {f.name for f in dataclasses.fields(model_cls) if f.init}
        unknown = sorted(set(m.overrides) - names)
        if unknown:
            raise ConfigError(
                f"model.overrides.{unknown[0]}: unknown {self.model_kind} setting; valid keys in model.overrides: "
                + ", ".join(sorted(names))
            )
        try:
            build(m.preset, **m.overrides)
        except (TypeError, ValueError) as exc:  # ConfigError is a ValueError
            raise ConfigError(f"model (preset {m.preset!r}, overrides {m.overrides}): {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    @property
    def untrusted_oracle_noise(self) -> float | None:
        """Noise of the oracle alignment of untrusted-scale samples; None: they are not oracle-aligned."""
        return None

    @property
    def prompt_pattern(self) -> str | None:
        """The named pattern every training prompt is built with (None: the random sampler / no prompts)."""
        return None


@dataclass
class PretrainConfig(TrainConfig):
    """Teacher pretraining / fine-tuning (``stage: pretrain``)."""

    stage: Literal["pretrain"] = "pretrain"
    model: TeacherModelConfig = field(default_factory=TeacherModelConfig)
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    loss: PretrainLossConfig = field(default_factory=PretrainLossConfig)

    model_kind = "teacher"

    def validate(self) -> None:
        super().validate()
        checks = [
            (0.0 <= self.loss.trim < 1.0, "loss.trim must be in [0, 1)"),
            (self.loss.grad_scales >= 1, "loss.grad_scales must be >= 1"),
            (0.0 < self.data.val_prompt_fraction <= 1.0, "data.val_prompt_fraction must be in (0, 1]"),
            (0.0 <= self.prompts.p_no_prompt <= 1.0, "prompts.p_no_prompt must be in [0, 1]"),
            (self.prompts.oracle_noise >= 0, "prompts.oracle_noise must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)
        from metricanything.prompts.prep import PrepConfig
        from metricanything.prompts.sampler import PromptSamplerConfig

        from_mapping(PromptSamplerConfig, self.prompts.sampler, prefix="prompts.sampler")
        from_mapping(PrepConfig, self.prompts.prep, prefix="prompts.prep")
        if self.prompts.pattern:
            from metricanything.prompts.patterns import parse_pattern

            try:
                parse_pattern(self.prompts.pattern)
            except ValueError as exc:
                raise ConfigError(f"prompts.pattern: {exc}") from exc

    @property
    def untrusted_oracle_noise(self) -> float | None:
        return self.prompts.oracle_noise if self.prompts.prior == "oracle" else None

    @property
    def prompt_pattern(self) -> str | None:
        return self.prompts.pattern


@dataclass
class DistillConfig(TrainConfig):
    """Student distillation (``stage: distill``)."""

    stage: Literal["distill"] = "distill"
    loss: DistillLossConfig = field(default_factory=DistillLossConfig)
    distill: DistillSettings = field(default_factory=DistillSettings)

    model_kind = "student"

    def validate(self) -> None:
        super().validate()
        dr = self.loss.depth_range
        checks = [
            (self.loss.n_bins >= 1, "loss.n_bins must be >= 1"),
            (self.loss.grad_scales >= 1, "loss.grad_scales must be >= 1"),
            (self.loss.grad_weight >= 0, "loss.grad_weight must be >= 0"),
            (self.loss.fov_weight >= 0, "loss.fov_weight must be >= 0"),
            (dr is None or (len(dr) == 2 and 0 < dr[0] < dr[1]), "loss.depth_range must be [min, max] with 0 < min < max"),
            (self.distill.oracle_noise >= 0, "distill.oracle_noise must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)

    @property
    def untrusted_oracle_noise(self) -> float | None:
        return self.distill.oracle_noise if self.distill.untrusted_gt == "oracle" else None


#: stage name -> config class
STAGES: dict[str, type[TrainConfig]] = {"pretrain": PretrainConfig, "distill": DistillConfig}
#: an example preset per stage, for messages
_EXAMPLE = {"pretrain": "teacher_tiny", "distill": "student_tiny"}


def _other_stage_hint(stage: str):
    """unknown_hint for :func:`from_mapping`: a key of the other stage says so."""

    def hint(dotted: str) -> str | None:
        for other, cls in STAGES.items():
            if other != stage and has_key(cls, dotted):
                kind = cls.model_kind
                return (f"{dotted} is a {other} ({kind}) setting, and this is a {stage} config, which does not "
                        f"read it: remove it, or use a {other} config (e.g. {_EXAMPLE[other]})")
        return None

    return hint


# ---------------------------------------------------------------------------------------------- loading
Overrides = Mapping[str, Any]


def build_config(
    cls: type[T], data: Mapping[str, Any] | None = None, overrides: Overrides | None = None, where: str = ""
) -> T:
    """Defaults of dataclass ``cls`` <- ``data`` (deep merge) <- ``overrides``, validated (and ``validate()``-d)."""
    tree = deep_merge(to_plain(cls()), dict(data or {}))
    tree = apply_overrides(cls, tree, overrides, origin=where or "override")
    cfg = from_mapping(cls, tree, origin=where)
    if hasattr(cfg, "validate"):
        try:
            cfg.validate()
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}" if where else str(exc)) from exc
    return cfg


def _stage_of(data: Mapping[str, Any], origin: str, stage: str | None, overrides: Overrides | None) -> str:
    file_stage = data.get("stage")
    if file_stage is not None and file_stage not in STAGES:
        raise ConfigError(f"{origin}: stage: must be one of {list(STAGES)}, got {file_stage!r}")
    if stage is not None and stage not in STAGES:
        raise ConfigError(f"unknown training stage {stage!r}; one of {list(STAGES)}")
    if stage is not None and file_stage is not None and file_stage != stage:
        raise ConfigError(
            f"{origin}: is a {file_stage} config (stage: {file_stage}), but a {stage} config is needed here "
            f"(e.g. {_EXAMPLE[stage]})"
        )
    chosen = stage or file_stage or (overrides or {}).get("stage")
    if chosen not in STAGES:
        raise ConfigError(
            f"{origin}: which training stage? set `stage: pretrain` or `stage: distill` in the file, "
            "or load it for a stage (metricanything pretrain / distill)"
        )
    return chosen


def load_config(
    name_or_path: str | os.PathLike | None = None,
    overrides: Overrides | None = None,
    *,
    stage: Literal["pretrain", "distill"] | None = None,
) -> PretrainConfig | DistillConfig:
    """Load a training config: a shipped preset name (``teacher_tiny``) or a YAML path, plus overrides.

    ``overrides`` is a mapping of dotted keys (``{"train.steps": 2, "data.sources.0.weight": 2.0}``) or nested
    sections (``{"train": {"steps": 2}}``), applied in order; ``--set`` strings go through
    :func:`metricanything.config.parse_set` first. The stage comes from ``stage`` or the file's ``stage:``
    (they must agree); with no file, ``stage`` is required. Returns a :class:`PretrainConfig` or a
    :class:`DistillConfig`; every problem raises :class:`ConfigError` naming the file (or the override) and
    the dotted key.
    """
    if name_or_path is not None:
        path = find_config(name_or_path, what="training config")
        origin = str(path)
        data = read_yaml(path, what="training config")
    else:
        origin, data = "config", {}
    chosen = _stage_of(data, origin, stage, overrides)
    cls = STAGES[chosen]
    hint = _other_stage_hint(chosen)
    tree = deep_merge(to_plain(cls()), data)
    cfg = from_mapping(cls, tree, origin=origin, unknown_hint=hint)  # the file alone: its own key errors
    if overrides:
        tree = apply_overrides(cls, tree, overrides, origin="override", unknown_hint=hint)
        cfg = from_mapping(cls, tree, origin="override", unknown_hint=hint)
        origin = f"{origin} with overrides {', '.join(overrides)}"
    try:
        cfg.validate()
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc}") from exc
    return cfg


def dump_config(cfg: Any) -> str:
    """YAML text of a config dataclass (round-trips through :func:`build_config` / :func:`load_config`)."""
    return yaml.safe_dump(to_plain(cfg), sort_keys=False)


def config_from_mapping(cls: type[T], data: Mapping[str, Any], where: str) -> T:
    """Build a dataclass owned by another module (sampler, prep, ...) with the strict checks; keys below ``where``."""
    return from_mapping(cls, data, prefix=where)


# ---------------------------------------------------------------------------------------------- resume
#: Settings a resumed run may change: they alter neither the weights and optimiser state already computed nor
#: which data each step sees. ``train.steps`` may grow (or shrink down to the checkpoint's step); the learning-
#: rate schedule then follows the new length from the resumed step on.
RESUMABLE_CHANGES = frozenset({
    "out_dir",  # the run folder was moved
    "train.steps",
    "train.log_every",
    "train.image_every",
    "train.val_every",
    "train.ckpt_every",
    "train.keep_last",
    "train.progress",
    "train.threads",
    "train.dump_rank_weights",
    "data.num_workers",  # item i is a pure function of (seed, i): any number of workers yields the same batches
})


def _plain_json(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def resume_changes(stored: Mapping[str, Any] | str, requested: TrainConfig, *, source: str, step: int) -> dict[str, tuple[Any, Any]]:
    """Compare the config a checkpoint was written with (``stored``: a mapping or its JSON) with ``requested``.

    Returns ``{dotted key: (stored value, requested value)}`` for the changed settings that resuming honours
    (:data:`RESUMABLE_CHANGES`). Any other change raises :class:`ConfigError` naming every such key with both
    values and the fix (start a new run with another ``--out``, or drop those ``--set``\\ s). ``source`` names
    the checkpoint, ``step`` is its step.
    """
    if isinstance(stored, str):
        try:
            stored = json.loads(stored)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: its recorded config is not valid JSON ({exc})") from exc
    if not isinstance(stored, Mapping):
        raise ConfigError(f"{source}: its recorded config is not a mapping")
    cls = type(requested)
    if stored.get("stage") != requested.stage:
        raise ConfigError(
            f"{source}: this run was trained by stage {stored.get('stage')!r}; it cannot be resumed as a "
            f"{requested.stage} run. Start a new run with another --out."
        )
    try:  # fill the defaults of keys added since the checkpoint was written; drop keys since removed
        old = to_plain(from_mapping(cls, deep_merge(to_plain(cls()), prune_to_schema(cls, stored)), origin=source))
    except ConfigError as exc:
        raise ConfigError(f"{source}: its recorded config cannot be read ({exc}); start a new run with another --out") from exc
    before, after = flatten(_plain_json(old)), flatten(_plain_json(requested.to_dict()))
    changed = {k: (before.get(k), after.get(k)) for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)}
    refused = {k: v for k, v in changed.items() if k not in RESUMABLE_CHANGES}
    if requested.train.steps < step:
        refused["train.steps"] = (before.get("train.steps"), requested.train.steps)
    if refused:
        lines = "\n".join(f"  {k}: {a!r} in the checkpoint, {b!r} requested" for k, (a, b) in refused.items())
        too_short = (f"\n(train.steps {requested.train.steps} is below the checkpoint's step {step}.)"
                     if requested.train.steps < step else "")
        raise ConfigError(
            f"{source}: --resume cannot change these settings of a run already at step {step}:\n{lines}{too_short}\n"
            "Drop the --set (or config edits) for them to resume as the run was started, or start a new run with "
            f"another --out. Resuming may change only: {', '.join(sorted(RESUMABLE_CHANGES))}."
        )
    return changed


__all__ = [
    "RESUMABLE_CHANGES",
    "STAGES",
    "DataConfig",
    "DistillConfig",
    "DistillLossConfig",
    "DistillSettings",
    "ModelConfig",
    "OptimConfig",
    "PretrainConfig",
    "PretrainDataConfig",
    "PretrainLossConfig",
    "PromptConfig",
    "RunConfig",
    "SourceConfig",
    "TeacherModelConfig",
    "TrainConfig",
    "build_config",
    "config_from_mapping",
    "dump_config",
    "format_set",
    "load_config",
    "merge_overrides",
    "parse_assignment",
    "parse_set",
    "resume_changes",
    "yaml_load",
]
