"""Training configuration: dataclasses validated from YAML, with ``--set a.b=c`` command-line overrides.

One :class:`TrainConfig` describes a run of either stage (``stage: pretrain`` or ``stage: distill``).
Loading goes: dataclass defaults -> YAML file (deep-merged) -> overrides (in order) -> validation.
Validation is strict: an unknown key, a value of the wrong type or an out-of-range value raises
:class:`~metricanything.errors.ConfigError` naming the dotted key (and the file). ints are accepted where a
float is expected; nothing else is coerced. Override values are parsed as YAML (``3`` is an int, ``1e-4`` a
float, ``[64, 64]`` a list, ``null`` None, ``abc`` a string). List items are addressed by index
(``data.sources.0.weight=2``).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from metricanything.errors import ConfigError

T = TypeVar("T")


class _Loader(yaml.SafeLoader):
    """YAML 1.1 safe loader that also reads ``1e-4`` (no dot) as a float, as YAML 1.2 and people do."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


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
    val_prompt_fraction: float = 0.01  # held-out prompts: this fraction of the valid pixels
    augment: bool = True
    num_workers: int = 0
    label_outlier_fraction: float = 0.0  # corrupt this fraction of target pixels (robustness experiments)
    label_outlier_sources: list[str] = field(default_factory=lambda: ["sfm", "mvs"])


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
class LossConfig:
    trim: float = 0.2
    space: Literal["inverse", "log", "depth"] = "inverse"
    grad_weight: float = 0.0
    grad_scales: int = 4
    n_bins: int = 8
    balance: float = 1.0
    depth_range: list[float] | None = None
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
    preset: str = "test"
    overrides: dict[str, Any] = field(default_factory=dict)
    init: str | None = None  # checkpoint (save_pretrained folder) to start from
    backbone: str | None = None  # pretrained ViT weights for the teacher's encoder (models.vit.load_backbone_weights)


@dataclass
class DistillConfig:
    teacher: str | None = None  # teacher checkpoint, for encoder initialisation
    init_encoder_from_teacher: bool = True
    # initial bias of the student's last head conv (before its ReLU), in canonical inverse depth units.
    # "auto": the median target C* = f/(W D) of the first 32 training items, so the student starts at the
    # (focal-aware) median prediction and no pixel starts in the ReLU's dead zone; a number; null = keep
    head_bias_init: float | Literal["auto"] | None = "auto"


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
    stage: Literal["pretrain", "distill"] = "pretrain"
    seed: int = 0
    out_dir: str = "runs/train"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: RunConfig = field(default_factory=RunConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def validate(self) -> None:
        """Range checks that types alone cannot express."""
        checks = [
            (self.data.size >= 8, "data.size must be >= 8"),
            (len(self.data.sources) >= 1, "data.sources must list at least one source"),
            (0.0 <= self.loss.trim < 1.0, "loss.trim must be in [0, 1)"),
            (self.loss.n_bins >= 1, "loss.n_bins must be >= 1"),
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
            (0.0 < self.data.val_prompt_fraction <= 1.0, "data.val_prompt_fraction must be in (0, 1]"),
            (0.0 <= self.prompts.p_no_prompt <= 1.0, "prompts.p_no_prompt must be in [0, 1]"),
        ]
        for src in self.data.sources + self.data.val_sources:
            checks.append((src.weight >= 0, "data.sources[*].weight must be >= 0"))
            checks.append((src.kind == "render" or bool(src.path), f"a {src.kind!r} source needs a path"))
            checks.append((src.kind != "loader" or bool(src.name), "a 'loader' source needs a name (e.g. kitti)"))
            checks.append((0.0 <= src.max_bad_fraction <= 1.0, "data.sources[*].max_bad_fraction must be in [0, 1]"))
            checks.append((src.min_draws >= 1, "data.sources[*].min_draws must be >= 1"))
        checks.append((sum(s.weight for s in self.data.sources) > 0, "data.sources weights sum to 0"))
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------- validation
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against type ``tp`` (recursively) and return the typed value."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {_type_name(tp)}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where}: must be one of {list(get_args(tp))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
        item = args[0] if args else Any
        items = [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        args = get_args(tp)
        vt = args[1] if args else Any
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"{where}: keys must be strings, got {k!r}")
            out[k] = _convert(v, vt, f"{where}.{k}")
        return out
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {type(value).__name__} {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported field type {_type_name(tp)}")


def from_dict(cls: type[T], data: Any, where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types raise :class:`ConfigError`."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(names)}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(value, hints[name], f"{where}.{name}" if where != "config" else name)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{where}: {exc}") from exc


def _deep_merge(base: Any, update: Any) -> Any:
    if isinstance(base, dict) and isinstance(update, dict):
        out = dict(base)
        for k, v in update.items():
            out[k] = _deep_merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(update)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into (["a", "b", "c"], YAML-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from exc
    return key.split("."), value


def apply_override(tree: dict[str, Any], text: str) -> None:
    """Set one ``key.path=value`` override in a nested dict/list tree (in place)."""
    path, value = parse_override(text)
    node: Any = tree
    for i, part in enumerate(path[:-1]):
        where = ".".join(path[: i + 1])
        if isinstance(node, list):
            node = _list_item(node, part, where, text)
        elif isinstance(node, dict):
            if part not in node or not isinstance(node[part], (dict, list)):
                raise ConfigError(f"override {text!r}: {where!r} is not a section")
            node = node[part]
        else:
            raise ConfigError(f"override {text!r}: {where!r} is not a section")
    last = path[-1]
    if isinstance(node, list):
        idx = _index(last, len(node), ".".join(path), text)
        node[idx] = value
    else:
        node[last] = value  # unknown keys are reported by validation with their full path


def _index(part: str, n: int, where: str, text: str) -> int:
    try:
        idx = int(part)
    except ValueError as exc:
        raise ConfigError(f"override {text!r}: {where!r} indexes a list, use an integer") from exc
    if not -n <= idx < n:
        raise ConfigError(f"override {text!r}: index {idx} out of range for a list of {n}")
    return idx


def _list_item(node: list, part: str, where: str, text: str) -> Any:
    return node[_index(part, len(node), where, text)]


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        data = yaml_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping, got {type(data).__name__}")
    return data


def resolve_config_path(name: str | os.PathLike) -> Path:
    """A path as given, else ``configs/<name>`` / ``configs/<name>.yaml`` relative to the working directory."""
    p = Path(name)
    if p.is_file():
        return p
    for candidate in (Path("configs") / p, Path("configs") / f"{p}.yaml"):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{name}: config file not found (also looked in ./configs/)")


def build_config(
    cls: type[T], data: dict[str, Any] | None = None, overrides: list[str] | tuple[str, ...] = (), where: str = "config"
) -> T:
    """Defaults of ``cls`` <- ``data`` (deep merge) <- ``overrides``, validated."""
    tree = dataclasses.asdict(cls())
    if data:
        tree = _deep_merge(tree, data)
    for text in overrides:
        apply_override(tree, text)
    cfg = from_dict(cls, tree, where)
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def load_config(
    path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> TrainConfig:
    """Load a :class:`TrainConfig` from YAML (or defaults if ``path`` is None) and apply overrides."""
    data = load_yaml(resolve_config_path(path)) if path is not None else {}
    where = str(path) if path is not None else "config"
    try:
        return build_config(TrainConfig, data, overrides)
    except ConfigError as exc:
        if path is not None and not str(exc).startswith(where):
            raise ConfigError(f"{where}: {exc}") from exc
        raise


def dump_config(cfg: Any) -> str:
    """YAML text of a config dataclass (round-trips through :func:`build_config`)."""
    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False)


def config_from_mapping(cls: type[T], data: dict[str, Any], where: str) -> T:
    """Build a dataclass owned by another module (sampler, prep, model presets) with our strict checks."""
    return from_dict(cls, data, where)
