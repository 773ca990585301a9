"""Configs of the Student-PointMap (:mod:`metricanything.models.pointmap`): backbones, conv stacks, presets.

Field names and the :meth:`PointMapConfig.to_dict` / :meth:`PointMapConfig.from_dict` layout are the official
``model_config`` ones, so the dict stored in the released ``student_pointmap.pt`` is read as is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from metricanything.errors import ConfigError
from metricanything.models.vit import ViTConfig, vit_config

__all__ = [
    "POINTMAP_BACKBONES",
    "POINTMAP_PRESETS",
    "ConvStackConfig",
    "PointMapEncoderConfig",
    "PointMapConfig",
    "pointmap_config",
]

_DINOV2 = dict(pos_embed_interp_offset=0.1, layer_scale_init=1.0)

#: Official DINOv2 hub backbone names -> ViT configs (patch 14, LayerScale, LN eps 1e-6, pos-embed offset 0.1).
POINTMAP_BACKBONES: dict[str, Callable[[], ViTConfig]] = {
    "dinov2_vits14": lambda: vit_config("small", **_DINOV2),
    "dinov2_vitb14": lambda: vit_config("base", **_DINOV2),
    "dinov2_vitl14": lambda: vit_config("large", **_DINOV2),
    # the parity fixture's tiny ViT (embed 64, 5 blocks, 4 heads, 8x8 position grid)
    "dinov2_fixture_tiny14": lambda: vit_config("large", embed_dim=64, depth=5, num_heads=4, img_size=112,
                                                **_DINOV2),
}

_REMAPS = ("linear", "sinh", "exp", "sinh_exp")
_RESAMPLERS = ("conv_transpose", "bilinear")
_LEVELS = 5


def _unknown(d: Mapping[str, Any], allowed: set[str], where: str) -> None:
    if not isinstance(d, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(d).__name__}")
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise ConfigError(f"unknown {where} keys: {unknown} (known: {sorted(allowed)})")


def _tup(v: Any) -> Any:
    return tuple(v) if isinstance(v, (list, tuple)) else v


def _lst(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _per_level(value: Any, n: int, name: str) -> list[Any]:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ConfigError(f"{name} has {len(value)} entries, expected {n}")
        return list(value)
    return [value] * n


# ------------------------------------------------------------------------------------------------ configs


@dataclass
class ConvStackConfig:
    """One official ``ConvStack`` (neck or head); fields and defaults are the official constructor's.

    Per-level values (``dim_in``, ``dim_out``, ``num_res_blocks``, ``resamplers``) are a list or one value for
    every level; ``None`` in ``dim_in`` / ``dim_out`` means no 1x1 conv at that level. Only the released
    model's settings are implemented: norms ``"none"``, activation ``"relu"``, resamplers ``conv_transpose`` /
    ``bilinear``.
    """

    dim_in: int | tuple[int | None, ...] | None
    dim_res_blocks: tuple[int, ...]
    dim_out: int | tuple[int | None, ...] | None
    resamplers: str | tuple[str, ...]
    dim_times_res_block_hidden: int = 1
    num_res_blocks: int | tuple[int, ...] = 1
    res_block_in_norm: str = "layer_norm"
    res_block_hidden_norm: str = "group_norm"
    activation: str = "relu"

    def __post_init__(self) -> None:
        for name in ("dim_in", "dim_res_blocks", "dim_out", "resamplers", "num_res_blocks"):
            setattr(self, name, _tup(getattr(self, name)))
        n = len(self.dim_res_blocks)
        if n < 1 or any(not isinstance(d, int) or d < 1 for d in self.dim_res_blocks):
            raise ConfigError(f"dim_res_blocks must be positive ints, got {self.dim_res_blocks}")
        _per_level(self.dim_in, n, "dim_in")
        _per_level(self.dim_out, n, "dim_out")
        _per_level(self.num_res_blocks, n, "num_res_blocks")
        for r in _per_level(self.resamplers, n - 1, "resamplers"):
            if r not in _RESAMPLERS:
                raise ConfigError(f"resampler {r!r} is not implemented (supported: {list(_RESAMPLERS)})")
        for name in ("res_block_in_norm", "res_block_hidden_norm"):
            if getattr(self, name) != "none":
                raise ConfigError(f"{name} {getattr(self, name)!r} is not implemented (the released model uses 'none')")
        if self.activation != "relu":
            raise ConfigError(f"activation {self.activation!r} is not implemented (the released model uses 'relu')")

    @property
    def levels(self) -> int:
        return len(self.dim_res_blocks)

    def dims_in(self) -> list[int | None]:
        return _per_level(self.dim_in, self.levels, "dim_in")

    def dims_out(self) -> list[int | None]:
        return _per_level(self.dim_out, self.levels, "dim_out")

    def output_dims(self) -> list[int]:
        """Channels of each level's output (the 1x1 conv's, or the residual width where there is none)."""
        return [d if d is not None else r for d, r in zip(self.dims_out(), self.dim_res_blocks, strict=True)]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _lst(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "ConvStackConfig") -> ConvStackConfig:
        _unknown(d, {f.name for f in dataclasses.fields(cls)}, where)
        try:
            return cls(**d)
        except TypeError as e:
            raise ConfigError(f"{where}: {e}") from e


@dataclass
class PointMapEncoderConfig:
    """The official ``encoder`` block: backbone name, selected blocks (0-based, or the last n), projection width."""

    backbone: str = "dinov2_vitl14"
    intermediate_layers: int | tuple[int, ...] = (5, 11, 17, 23)
    dim_out: int = 1024

    def __post_init__(self) -> None:
        self.intermediate_layers = _tup(self.intermediate_layers)
        if self.backbone not in POINTMAP_BACKBONES:
            raise ConfigError(f"unknown backbone {self.backbone!r}; known: {sorted(POINTMAP_BACKBONES)}")
        depth = self.vit_config().depth
        layers = self.layers()
        if not layers or any(not 0 <= i < depth for i in layers):
            raise ConfigError(f"intermediate_layers {self.intermediate_layers} out of range for ViT depth {depth}")

    def vit_config(self) -> ViTConfig:
        return POINTMAP_BACKBONES[self.backbone]()

    def layers(self) -> list[int]:
        """0-based selected blocks (an int n means the last n blocks, as in DINOv2)."""
        if isinstance(self.intermediate_layers, int):
            depth = self.vit_config().depth
            return list(range(depth - self.intermediate_layers, depth))
        return [int(i) for i in self.intermediate_layers]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _lst(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "encoder") -> PointMapEncoderConfig:
        _unknown(d, {f.name for f in dataclasses.fields(cls)}, where)
        return cls(**d)


def _neck(dims: Sequence[int], enc_out: int, blocks: Sequence[int]) -> ConvStackConfig:
    return ConvStackConfig(
        dim_in=(enc_out + 2, 2, 2, 2, 2), dim_res_blocks=tuple(dims), dim_out=None,
        resamplers=("conv_transpose", "conv_transpose", "conv_transpose", "bilinear"), num_res_blocks=tuple(blocks),
        res_block_in_norm="none", res_block_hidden_norm="none",
    )


def _head(dims: Sequence[int], out: int) -> ConvStackConfig:
    return ConvStackConfig(
        dim_in=tuple(dims), dim_res_blocks=tuple(dims), dim_out=(None, None, None, None, out),
        resamplers=("conv_transpose", "conv_transpose", "conv_transpose", "bilinear"), num_res_blocks=(0, 1, 1, 1, 0),
        res_block_in_norm="none", res_block_hidden_norm="none",
    )


_FULL_DIMS = (1024, 256, 128, 64, 32)


@dataclass
class PointMapConfig:
    """Constructor config of :class:`PointMapModel`; defaults are the released Student-PointMap (326,209,221 params).

    :meth:`to_dict` / :meth:`from_dict` use the official ``model_config`` layout (``encoder``, ``neck``,
    ``points_head``, ``mask_head``, ``scale_head: {"dims": [...]}``, ``remap_output``, ``num_tokens_range``), so
    the dict stored in ``student_pointmap.pt`` is read as is; unknown keys raise :class:`ConfigError`.
    """

    encoder: PointMapEncoderConfig = field(default_factory=PointMapEncoderConfig)
    neck: ConvStackConfig = field(default_factory=lambda: _neck(_FULL_DIMS, 1024, (0, 2, 2, 2, 0)))
    points_head: ConvStackConfig = field(default_factory=lambda: _head(_FULL_DIMS, 3))
    mask_head: ConvStackConfig = field(default_factory=lambda: _head(_FULL_DIMS, 1))
    scale_head_dims: tuple[int, ...] = (1024, 1024, 1024, 1)
    remap_output: str = "exp"
    num_tokens_range: tuple[int, int] = (1200, 3600)

    def __post_init__(self) -> None:
        self.scale_head_dims = tuple(int(d) for d in self.scale_head_dims)
        self.num_tokens_range = tuple(int(n) for n in self.num_tokens_range)  # type: ignore[assignment]
        if self.remap_output not in _REMAPS:
            raise ConfigError(f"remap_output must be one of {list(_REMAPS)}, got {self.remap_output!r}")
        if len(self.num_tokens_range) != 2 or not 1 <= self.num_tokens_range[0] <= self.num_tokens_range[1]:
            raise ConfigError(f"num_tokens_range must be [min, max] with 1 <= min <= max, got {self.num_tokens_range}")
        embed = self.encoder.vit_config().embed_dim
        if len(self.scale_head_dims) < 2 or self.scale_head_dims[0] != embed or self.scale_head_dims[-1] != 1:
            raise ConfigError(f"scale_head dims must run from the ViT width {embed} to 1, got {self.scale_head_dims}")
        neck = self.neck
        if neck.levels != _LEVELS or neck.dims_in() != [self.encoder.dim_out + 2] + [2] * (_LEVELS - 1):
            raise ConfigError(
                f"the neck must have {_LEVELS} levels with dim_in [encoder dim_out + 2 = {self.encoder.dim_out + 2}, "
                f"2, 2, 2, 2] (features + uv, then uv), got {list(neck.dims_in())}"
            )
        for name, out in (("points_head", 3), ("mask_head", 1)):
            head: ConvStackConfig = getattr(self, name)
            if head.levels != _LEVELS or head.dims_in() != neck.output_dims():
                raise ConfigError(f"{name} must have {_LEVELS} levels with dim_in = the neck's outputs "
                                  f"{neck.output_dims()}, got {list(head.dims_in())}")
            if head.output_dims()[-1] != out:
                raise ConfigError(f"{name} must output {out} channels at its last level, got {head.output_dims()[-1]}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder.to_dict(),
            "neck": self.neck.to_dict(),
            "points_head": self.points_head.to_dict(),
            "mask_head": self.mask_head.to_dict(),
            "scale_head": {"dims": list(self.scale_head_dims)},
            "remap_output": self.remap_output,
            "num_tokens_range": list(self.num_tokens_range),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PointMapConfig:
        """Build from the official ``model_config`` layout (or :meth:`to_dict` output)."""
        _unknown(d, {"encoder", "neck", "points_head", "mask_head", "normal_head", "scale_head", "remap_output",
                     "num_tokens_range"}, "PointMapConfig")
        if d.get("normal_head") is not None:
            raise ConfigError("normal_head is not supported (the released Student-PointMap has none)")
        missing = [k for k in ("encoder", "neck", "points_head", "mask_head", "scale_head") if d.get(k) is None]
        if missing:
            raise ConfigError(f"PointMapConfig needs {missing} (the released model has all of them)")
        scale = d["scale_head"]
        _unknown(scale, {"dims"}, "scale_head")
        kw: dict[str, Any] = {
            "encoder": PointMapEncoderConfig.from_dict(d["encoder"]),
            "neck": ConvStackConfig.from_dict(d["neck"], "neck"),
            "points_head": ConvStackConfig.from_dict(d["points_head"], "points_head"),
            "mask_head": ConvStackConfig.from_dict(d["mask_head"], "mask_head"),
            "scale_head_dims": tuple(scale["dims"]),
        }
        if "remap_output" in d:
            kw["remap_output"] = d["remap_output"]
        if "num_tokens_range" in d:
            kw["num_tokens_range"] = tuple(d["num_tokens_range"])
        return cls(**kw)


POINTMAP_PRESETS: dict[str, Callable[[], PointMapConfig]] = {
    # the released Student-PointMap (MoGe-2 ViT-L without normal head): 326,209,221 parameters
    "official": lambda: PointMapConfig(),
    # exactly the parity fixture (../shared/fixtures/official_pointmap/tiny_config.json): 433,609 parameters
    "fixture_tiny": lambda: PointMapConfig(
        encoder=PointMapEncoderConfig("dinov2_fixture_tiny14", (0, 2, 3, 4), 40),
        neck=_neck((40, 24, 16, 12, 8), 40, (0, 2, 2, 2, 0)),
        points_head=_head((40, 24, 16, 12, 8), 3),
        mask_head=_head((40, 24, 16, 12, 8), 1),
        scale_head_dims=(64, 48, 32, 1),
        num_tokens_range=(40, 120),
    ),
}
POINTMAP_PRESETS["vitl14"] = POINTMAP_PRESETS["official"]


def pointmap_config(name: str) -> PointMapConfig:
    """Fresh :class:`PointMapConfig` for preset ``name`` (``official`` = ``vitl14``, ``fixture_tiny``)."""
    if name not in POINTMAP_PRESETS:
        raise ConfigError(f"unknown point-map preset {name!r}; known: {sorted(POINTMAP_PRESETS)}")
    return POINTMAP_PRESETS[name]()
