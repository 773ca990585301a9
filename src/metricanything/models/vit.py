"""Plain-torch Vision Transformer: DINOv2-style (learned position embedding) and DINOv3-style (RoPE).

Two state-dict layouts are supported, selected by ``ViTConfig.layout``:

* ``"timm"``: the key names of timm's ``vit_*_patch14_dinov2`` models (``cls_token``, ``reg_token``,
  ``pos_embed``, ``blocks.N.mlp.fc1/fc2``; SwiGLU packed into ``mlp.fc1`` like timm's ``SwiGLUPacked``).
* ``"dinov3"``: the key names of the official DINOv3 code (``cls_token``, ``storage_tokens``, ``mask_token``,
  ``rope_embed.periods``, ``blocks.N.attn.qkv.bias_mask``, ``blocks.N.mlp.w1/w2/w3`` for SwiGLU).

Token order is always ``[CLS, register/storage tokens, patch tokens row-major]``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn

from metricanything.errors import ConfigError

__all__ = [
    "ViTConfig",
    "VisionTransformer",
    "vit_config",
    "VIT_PRESETS",
    "load_backbone_weights",
    "convert_backbone_state_dict",
    "rope_periods",
    "rope_sin_cos",
    "FusedRope",
    "apply_rope_fused",
    "swiglu_hidden_dim",
]


@dataclass
class ViTConfig:
    """Hyper-parameters of a :class:`VisionTransformer`.

    ``img_size`` is the nominal training size; it sets the learned position grid
    (``img_size // patch_size`` per side) and is otherwise informational (RoPE models accept any size that is a
    multiple of ``patch_size``).
    """

    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    patch_size: int = 14
    img_size: int = 518
    in_chans: int = 3
    mlp_ratio: float = 4.0
    ffn: Literal["mlp", "swiglu"] = "mlp"
    swiglu_align: int = 8
    ffn_hidden: int | None = None  # explicit hidden width (overrides mlp_ratio / swiglu rounding)
    qkv_bias: bool = True
    proj_bias: bool = True
    ffn_bias: bool = True
    mask_k_bias: bool = False  # multiply the qkv bias by a buffer ``bias_mask`` (1 on q/v, 0 on k)
    layer_scale_init: float | None = 1e-5  # None: no LayerScale (no ``ls*.gamma`` keys)
    num_register_tokens: int = 0  # a.k.a. DINOv3 "storage tokens"
    class_token: bool = True
    pos_embed: Literal["learned", "rope"] = "learned"
    pos_embed_cls: bool = True  # learned only: the position table also has an entry for the CLS token
    rope_base: float = 100.0
    rope_rescale_coords: float | None = None  # training-only random coordinate rescale (DINOv3: 2.0)
    norm_eps: float = 1e-6
    layout: Literal["timm", "dinov3"] = "timm"
    # learned only: None resizes the position grid to the token grid by output size (timm); a number o resizes
    # it by scale factor (n + o) / grid per axis like the official DINOv2 code (``interpolate_offset``, 0.1)
    pos_embed_interp_offset: float | None = None

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.ffn not in ("mlp", "swiglu"):
            raise ConfigError(f"ffn must be 'mlp' or 'swiglu', got {self.ffn!r}")
        if self.pos_embed not in ("learned", "rope"):
            raise ConfigError(f"pos_embed must be 'learned' or 'rope', got {self.pos_embed!r}")
        if self.layout not in ("timm", "dinov3"):
            raise ConfigError(f"layout must be 'timm' or 'dinov3', got {self.layout!r}")
        if self.pos_embed == "rope" and (self.embed_dim // self.num_heads) % 4:
            raise ConfigError("RoPE needs head_dim divisible by 4")
        if self.img_size % self.patch_size:
            raise ConfigError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.depth < 1 or self.patch_size < 1:
            raise ConfigError("depth and patch_size must be positive")
        off = self.pos_embed_interp_offset
        if off is not None and not 0 < off < 1:
            raise ConfigError(f"pos_embed_interp_offset must be None or in (0, 1), got {off}")

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.class_token) + self.num_register_tokens

    @property
    def grid_size(self) -> int:
        return self.img_size // self.patch_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], origin: str = "ViTConfig") -> ViTConfig:
        """Inverse of :meth:`to_dict`, strict (:func:`metricanything.config.from_mapping`): unknown keys and wrong
        types raise :class:`ConfigError` naming ``origin`` and the dotted key."""
        from metricanything.config import from_mapping

        return from_mapping(cls, d, origin=origin)


def swiglu_hidden_dim(embed_dim: int, mlp_ratio: float, align: int = 8) -> int:
    """SwiGLU hidden width used by DINOv2/DINOv3: int(int(D*ratio)*2/3) rounded up to ``align``."""
    d = int(int(embed_dim * mlp_ratio) * 2 / 3)
    return d + (-d % align)


def _ffn_hidden(cfg: ViTConfig) -> int:
    if cfg.ffn_hidden is not None:
        return cfg.ffn_hidden
    if cfg.ffn == "swiglu":
        return swiglu_hidden_dim(cfg.embed_dim, cfg.mlp_ratio, cfg.swiglu_align)
    return int(cfg.embed_dim * cfg.mlp_ratio)


# ---------------------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------------------


def _dinov2(**kw: Any) -> ViTConfig:
    base = dict(patch_size=14, img_size=518, layer_scale_init=1e-5, norm_eps=1e-6, layout="timm")
    base.update(kw)
    return ViTConfig(**base)


def _dinov3(**kw: Any) -> ViTConfig:
    base = dict(
        patch_size=16,
        img_size=224,
        layer_scale_init=1e-5,
        norm_eps=1e-5,
        num_register_tokens=4,
        pos_embed="rope",
        rope_base=100.0,
        rope_rescale_coords=2.0,
        mask_k_bias=True,
        layout="dinov3",
    )
    base.update(kw)
    return ViTConfig(**base)


VIT_PRESETS: dict[str, Any] = {
    # DINOv2 / timm layout (learned position embedding, patch 14)
    "test": lambda: _dinov2(embed_dim=64, depth=4, num_heads=4, img_size=56, layer_scale_init=0.1),
    "tiny": lambda: _dinov2(embed_dim=192, depth=6, num_heads=3, img_size=224, layer_scale_init=0.1),
    "small": lambda: _dinov2(embed_dim=384, depth=12, num_heads=6),
    "base": lambda: _dinov2(embed_dim=768, depth=12, num_heads=12),
    "large": lambda: _dinov2(embed_dim=1024, depth=24, num_heads=16),
    "giant": lambda: _dinov2(embed_dim=1536, depth=40, num_heads=24, ffn="swiglu"),
    "small_reg4": lambda: _dinov2(embed_dim=384, depth=12, num_heads=6, num_register_tokens=4, pos_embed_cls=False),
    # DINOv3 official layout (RoPE, 4 storage tokens, masked k bias, LayerNorm eps 1e-5, patch 16)
    "dinov3_test": lambda: _dinov3(embed_dim=64, depth=4, num_heads=4, ffn="swiglu", mlp_ratio=6.0,
                                   img_size=128, layer_scale_init=0.1),
    "dinov3_fixture_tiny": lambda: _dinov3(embed_dim=32, depth=9, num_heads=2, ffn="swiglu", mlp_ratio=6.0),
    "dinov3_tiny": lambda: _dinov3(embed_dim=96, depth=6, num_heads=3, ffn="swiglu", mlp_ratio=4.0,
                                   layer_scale_init=0.1),
    "dinov3_small": lambda: _dinov3(embed_dim=384, depth=12, num_heads=6),
    "dinov3_small_plus": lambda: _dinov3(embed_dim=384, depth=12, num_heads=6, ffn="swiglu", mlp_ratio=6.0),
    "dinov3_base": lambda: _dinov3(embed_dim=768, depth=12, num_heads=12),
    "dinov3_large": lambda: _dinov3(embed_dim=1024, depth=24, num_heads=16),
    "dinov3_huge_plus": lambda: _dinov3(embed_dim=1280, depth=32, num_heads=20, ffn="swiglu", mlp_ratio=6.0),
}
VIT_PRESETS["huge_plus"] = VIT_PRESETS["dinov3_huge_plus"]
VIT_PRESETS["dinov3_vith16plus"] = VIT_PRESETS["dinov3_huge_plus"]


def vit_config(name: str, **overrides: Any) -> ViTConfig:
    """Return a fresh :class:`ViTConfig` for preset ``name`` with optional field overrides."""
    if name not in VIT_PRESETS:
        raise ConfigError(f"unknown ViT preset {name!r}; known: {sorted(VIT_PRESETS)}")
    cfg = VIT_PRESETS[name]()
    return dataclasses.replace(cfg, **overrides) if overrides else cfg


# ---------------------------------------------------------------------------------------------------------
# RoPE (DINOv3 axial rotary embedding)
# ---------------------------------------------------------------------------------------------------------


def rope_periods(head_dim: int, base: float, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> Tensor:
    """Periods base^(2k/(head_dim/2)), k = 0 .. head_dim/4 - 1 (computed in ``dtype``)."""
    k = torch.arange(head_dim // 4, dtype=dtype, device=device)
    return base ** (2 * k / (head_dim // 2))


def rope_sin_cos(periods: Tensor, h: int, w: int, rescale: float | None = None) -> tuple[Tensor, Tensor]:
    """sin/cos tables (h*w, head_dim) for an h x w patch grid, in float32.

    Coordinates are patch centres normalised per axis to [-1, 1]; the angle vector is
    [row angles (hd/4), column angles (hd/4)] repeated twice; angle = 2*pi*coord / period.
    ``rescale`` (training only): multiply coordinates by one random factor in [1/rescale, rescale] (log-uniform).
    """
    dev = periods.device
    dt = torch.float32
    coords_h = torch.arange(0.5, h, device=dev, dtype=dt) / h
    coords_w = torch.arange(0.5, w, device=dev, dtype=dt) / w
    coords = torch.stack(torch.meshgrid(coords_h, coords_w, indexing="ij"), dim=-1).flatten(0, 1)
    coords = 2.0 * coords - 1.0
    if rescale is not None:
        lo, hi = math.log(1.0 / rescale), math.log(rescale)
        factor = torch.empty(1, device=dev, dtype=dt).uniform_(lo, hi).exp()
        coords = coords * factor
    angles = 2 * math.pi * coords[:, :, None] / periods.to(dt)[None, None, :]
    angles = angles.flatten(1, 2).tile(2)
    return torch.sin(angles), torch.cos(angles)


def _rotate_half(x: Tensor) -> Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def _apply_rope(x: Tensor, sin: Tensor, cos: Tensor, n_prefix: int) -> Tensor:
    """Rotate the patch tokens of x (B, heads, N, hd); prefix tokens untouched; computed in float32."""
    dtype = x.dtype
    xf = x.to(sin.dtype)
    prefix, patches = xf[:, :, :n_prefix], xf[:, :, n_prefix:]
    patches = patches * cos + _rotate_half(patches) * sin
    return torch.cat([prefix, patches], dim=2).to(dtype)


class FusedRope(NamedTuple):
    """RoPE tables for :func:`apply_rope_fused`: one half of the (repeated) angle vector, (h*w, 1, 1, hd/2)."""

    sin: Tensor
    cos: Tensor

    @classmethod
    def from_sin_cos(cls, sin: Tensor, cos: Tensor) -> FusedRope:
        """From the full tables of :func:`rope_sin_cos` (whose two halves are equal)."""
        half = sin.shape[-1] // 2
        return cls(sin[:, None, None, :half].contiguous(), cos[:, None, None, :half].contiguous())


def apply_rope_fused(qkv: Tensor, rope: FusedRope, n_prefix: int) -> Tensor:
    """Rotate q and k of a packed (B, N, 3, heads, hd) qkv tensor in place, in one pass over both.

    Same rotation as :func:`_apply_rope` (patch tokens only, computed in float32, written back in the input
    dtype) without the ``rotate_half`` concatenation and the low-precision -> float32 copies: with halves
    (x1, x2) and the half tables (c, s), x1' = x1 c - x2 s and x2' = x2 c + x1 s (multiply-add, so equal to
    :func:`_apply_rope` to float rounding, not bit for bit). Inference helper: the in-place write is not for
    autograd.
    """
    half = qkv.shape[-1] // 2
    qk = qkv[:, n_prefix:, :2]
    x1, x2 = qk[..., :half], qk[..., half:]
    c, s = rope.cos, rope.sin
    r1 = x1 * c  # float32 (type promotion) for low-precision inputs
    r1.addcmul_(x2, s, value=-1.0)
    r2 = x2 * c
    r2.addcmul_(x1, s)
    x1.copy_(r1)
    x2.copy_(r2)
    return qkv


class RopeEmbedding(nn.Module):
    """Holds the ``periods`` buffer (persistent, so checkpoints carry its exact bits)."""

    def __init__(self, head_dim: int, base: float, rescale_coords: float | None = None) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.base = base
        self.rescale_coords = rescale_coords
        self.register_buffer("periods", rope_periods(head_dim, base), persistent=True)

    def forward(self, h: int, w: int) -> tuple[Tensor, Tensor]:
        rescale = self.rescale_coords if self.training else None
        return rope_sin_cos(self.periods, h, w, rescale)

    def _apply(self, fn, recurse: bool = True):  # type: ignore[no-untyped-def]
        # ``model.to(torch.bfloat16)`` must not round the periods (that alone moves outputs by ~3e-3):
        # follow device moves only and keep the float32 bits.
        periods = self.periods
        super()._apply(fn, recurse)
        if periods.dtype == torch.float32 and self.periods.dtype != torch.float32:
            self.periods = periods.to(device=self.periods.device)
        return self


# ---------------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------------


class PatchEmbed(nn.Module):
    def __init__(self, in_chans: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, h*w, D), row-major


class QKVLinear(nn.Linear):
    """Linear D -> 3D whose bias is optionally multiplied by a persistent ``bias_mask`` buffer."""

    def __init__(self, dim: int, bias: bool, mask_k_bias: bool) -> None:
        super().__init__(dim, 3 * dim, bias=bias)
        if mask_k_bias and bias:
            mask = torch.ones(3 * dim)
            mask[dim : 2 * dim] = 0.0
            self.register_buffer("bias_mask", mask, persistent=True)
        else:
            self.bias_mask = None

    def forward(self, x: Tensor) -> Tensor:
        bias = self.bias
        if bias is not None and self.bias_mask is not None:
            bias = bias * self.bias_mask
        return F.linear(x, self.weight, bias)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, proj_bias: bool, mask_k_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = QKVLinear(dim, qkv_bias, mask_k_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | FusedRope | None = None, n_prefix: int = 0) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        if isinstance(rope, FusedRope):
            qkv = apply_rope_fused(qkv, rope, n_prefix)
            rope = None
        q, k, v = (t.transpose(1, 2) for t in torch.unbind(qkv, 2))
        if rope is not None:
            sin, cos = rope
            q = _apply_rope(q, sin, cos, n_prefix)
            k = _apply_rope(k, sin, cos, n_prefix)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """GELU MLP: ``fc1`` -> GELU -> ``fc2``."""

    def __init__(self, dim: int, hidden: int, bias: bool) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwiGLUPacked(nn.Module):
    """timm-layout SwiGLU: ``fc1`` (D -> 2h, gate first) then silu(gate) * value -> ``fc2``."""

    def __init__(self, dim: int, hidden: int, bias: bool) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 2 * hidden, bias=bias)
        self.fc2 = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        g, v = self.fc1(x).chunk(2, dim=-1)
        return self.fc2(F.silu(g) * v)


class SwiGLU3(nn.Module):
    """DINOv3-layout SwiGLU: ``w3(silu(w1 x) * w2 x)``."""

    def __init__(self, dim: int, hidden: int, bias: bool) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=bias)
        self.w2 = nn.Linear(dim, hidden, bias=bias)
        self.w3 = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.w3(F.silu(self.w1(x)) * self.w2(x))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block: x + ls1(attn(norm1 x)); then + ls2(ffn(norm2 x))."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        d = cfg.embed_dim
        self.norm1 = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.attn = Attention(d, cfg.num_heads, cfg.qkv_bias, cfg.proj_bias, cfg.mask_k_bias)
        self.ls1: nn.Module = (
            LayerScale(d, cfg.layer_scale_init) if cfg.layer_scale_init is not None else nn.Identity()
        )
        self.norm2 = nn.LayerNorm(d, eps=cfg.norm_eps)
        hidden = _ffn_hidden(cfg)
        if cfg.ffn == "mlp":
            self.mlp: nn.Module = Mlp(d, hidden, cfg.ffn_bias)
        elif cfg.layout == "dinov3":
            self.mlp = SwiGLU3(d, hidden, cfg.ffn_bias)
        else:
            self.mlp = SwiGLUPacked(d, hidden, cfg.ffn_bias)
        self.ls2: nn.Module = (
            LayerScale(d, cfg.layer_scale_init) if cfg.layer_scale_init is not None else nn.Identity()
        )

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | FusedRope | None = None, n_prefix: int = 0) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), rope, n_prefix))
        return x + self.ls2(self.mlp(self.norm2(x)))


# ---------------------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------------------


class VisionTransformer(nn.Module):
    """ViT encoder returning tokens ``[CLS, registers, patches]``.

    Attributes used by decoders: ``embed_dim``, ``patch_size``, ``num_prefix_tokens``, ``depth``.
    """

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_dim = cfg.embed_dim
        self.patch_size = cfg.patch_size
        self.depth = cfg.depth
        self.num_heads = cfg.num_heads
        self.num_register_tokens = cfg.num_register_tokens
        self.num_prefix_tokens = cfg.num_prefix_tokens
        self.grad_checkpointing = False
        self.fused_rope = False  # set by the student's fast inference path (see ``_rope``)
        d = cfg.embed_dim
        # Parameter creation order follows each layout's official state-dict order.
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d)) if cfg.class_token else None
        if cfg.layout == "dinov3":
            self.storage_tokens = (
                nn.Parameter(torch.zeros(1, cfg.num_register_tokens, d)) if cfg.num_register_tokens else None
            )
            self.mask_token = nn.Parameter(torch.zeros(1, d))
        else:
            self.reg_token = (
                nn.Parameter(torch.zeros(1, cfg.num_register_tokens, d)) if cfg.num_register_tokens else None
            )
        if cfg.pos_embed == "learned":
            n_pos = cfg.grid_size**2 + (int(cfg.class_token) if cfg.pos_embed_cls else 0)
            self.pos_embed = nn.Parameter(torch.zeros(1, n_pos, d))
        else:
            self.pos_embed = None
        self.patch_embed = PatchEmbed(cfg.in_chans, d, cfg.patch_size)
        self.rope_embed = (
            RopeEmbedding(cfg.head_dim, cfg.rope_base, cfg.rope_rescale_coords) if cfg.pos_embed == "rope" else None
        )
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(d, eps=cfg.norm_eps)
        self.init_weights()

    # -- init ---------------------------------------------------------------------------------------------
    def init_weights(self) -> None:
        """Truncated-normal(0.02) linears, zero biases, small tokens; LayerScale to ``layer_scale_init``."""
        if any(p.is_meta for p in self.parameters()):
            return
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.patch_embed.proj.weight
        nn.init.trunc_normal_(w.view(w.shape[0], -1), std=0.02)
        nn.init.zeros_(self.patch_embed.proj.bias)
        for name in ("cls_token", "reg_token", "storage_tokens", "pos_embed"):
            p = getattr(self, name, None)
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)
        if getattr(self, "mask_token", None) is not None:
            nn.init.zeros_(self.mask_token)

    # -- tokens -------------------------------------------------------------------------------------------
    def _register_tokens(self) -> Tensor | None:
        return self.storage_tokens if self.cfg.layout == "dinov3" else self.reg_token

    def interpolate_pos_embed(self, h: int, w: int) -> Tensor:
        """Learned position table resized (bicubic, no antialias) to an h x w patch grid: (1, [1+]h*w, D)."""
        assert self.pos_embed is not None
        pe = self.pos_embed
        n_cls = int(self.cfg.class_token) if self.cfg.pos_embed_cls else 0
        cls_pe, patch_pe = pe[:, :n_cls], pe[:, n_cls:]
        g = int(round(math.sqrt(patch_pe.shape[1])))
        if (g, g) == (h, w):
            return pe
        grid = patch_pe.reshape(1, g, g, -1).permute(0, 3, 1, 2)
        dtype = grid.dtype
        off = self.cfg.pos_embed_interp_offset
        if off is None:
            grid = F.interpolate(grid.float(), size=(h, w), mode="bicubic", align_corners=False, antialias=False)
        else:
            # official DINOv2: the kernel's source coordinates use this (non-integer) scale, not in/out sizes
            scale = ((h + off) / g, (w + off) / g)
            grid = F.interpolate(grid.float(), scale_factor=scale, mode="bicubic", align_corners=False,
                                 antialias=False)
            if tuple(grid.shape[-2:]) != (h, w):
                raise ValueError(f"pos_embed_interp_offset {off} maps a {g}x{g} grid to "
                                 f"{tuple(grid.shape[-2:])}, not {h}x{w}")
        patch_pe = grid.to(dtype).permute(0, 2, 3, 1).reshape(1, h * w, -1)
        return torch.cat([cls_pe, patch_pe], dim=1)

    def prepare_tokens(self, x: Tensor) -> tuple[Tensor, int, int]:
        """Patch-embed and add prefix tokens / position embedding. Returns (tokens, h, w)."""
        if x.ndim != 4:
            raise ValueError(f"expected a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
        p = self.patch_size
        hh, ww = x.shape[-2:]
        if hh % p or ww % p:
            raise ValueError(f"input size {hh}x{ww} is not a multiple of the patch size {p}")
        h, w = hh // p, ww // p
        t = self.patch_embed(x)
        b = t.shape[0]
        prefix: list[Tensor] = []
        if self.cls_token is not None:
            cls = self.cls_token
            if self.cfg.layout == "dinov3":
                cls = cls + 0 * self.mask_token  # as in DINOv3 (keeps mask_token in the graph; no effect)
            prefix.append(cls.expand(b, -1, -1))
        reg = self._register_tokens()
        if self.pos_embed is not None:
            pe = self.interpolate_pos_embed(h, w)
            if self.cfg.pos_embed_cls and self.cls_token is not None:
                # DINOv2 (no registers): position added to [CLS, patches]; registers inserted after.
                t = torch.cat(prefix + [t], dim=1) + pe
                if reg is not None:
                    t = torch.cat([t[:, :1], reg.expand(b, -1, -1), t[:, 1:]], dim=1)
                return t, h, w
            t = t + pe
        if reg is not None:
            prefix.append(reg.expand(b, -1, -1))
        return torch.cat(prefix + [t], dim=1), h, w

    def _rope(self, h: int, w: int) -> tuple[Tensor, Tensor] | FusedRope | None:
        if self.rope_embed is None:
            return None
        sin, cos = self.rope_embed(h, w)
        # fused RoPE writes q/k in place: used by the fast inference path (``fused_rope = True``) without grad
        if self.fused_rope and not torch.is_grad_enabled():
            return FusedRope.from_sin_cos(sin, cos)
        return sin, cos

    def _run_blocks(self, x: Tensor, indices: Sequence[int], stop_early: bool = False) -> tuple[Tensor, list[Tensor]]:
        """Run the blocks; returns (last computed tokens, raw outputs of blocks ``indices`` in order)."""
        t, h, w = self.prepare_tokens(x)
        rope = self._rope(h, w)
        wanted = [self._norm_index(i) for i in indices]
        outs: dict[int, Tensor] = {}
        last = max(wanted) if (stop_early and wanted) else self.depth - 1
        for i, blk in enumerate(self.blocks[: last + 1]):
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                t = torch.utils.checkpoint.checkpoint(blk, t, rope, self.num_prefix_tokens, use_reentrant=False)
            else:
                t = blk(t, rope, self.num_prefix_tokens)
            if i in wanted:
                outs[i] = t
        return t, [outs[i] for i in wanted]

    def _norm_index(self, i: int) -> int:
        j = i + self.depth if i < 0 else i
        if not 0 <= j < self.depth:
            raise IndexError(f"block index {i} out of range for depth {self.depth}")
        return j

    # -- public API ---------------------------------------------------------------------------------------
    def forward_features(self, x: Tensor) -> Tensor:
        """Final-normed tokens (B, num_prefix_tokens + h*w, D)."""
        t, _ = self._run_blocks(x, [])
        return self.norm(t)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x)

    def forward_with_intermediates(self, x: Tensor, indices: Sequence[int]) -> tuple[Tensor, list[Tensor]]:
        """One pass: (final-normed tokens, [raw residual-stream tokens after block i for i in indices])."""
        t, inter = self._run_blocks(x, list(indices))
        return self.norm(t), inter

    def get_intermediate_layers(self, x: Tensor, indices: Sequence[int], norm: bool = True) -> list[Tensor]:
        """Patch-token maps (B, D, h, w) of the outputs of blocks ``indices`` (0-based, negatives allowed).

        With ``norm`` the final LayerNorm is applied to each output (DINOv2 convention).
        """
        idx = list(indices)
        p = self.patch_size
        h, w = x.shape[-2] // p, x.shape[-1] // p
        _, inter = self._run_blocks(x, idx, stop_early=True)
        maps = []
        for t in inter:
            if norm:
                t = self.norm(t)
            t = t[:, self.num_prefix_tokens :]
            maps.append(t.transpose(1, 2).reshape(t.shape[0], -1, h, w))
        return maps

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable


# Weight loading lives in vit_weights.py; re-exported here for existing callers.
from metricanything.models.vit_weights import convert_backbone_state_dict, load_backbone_weights  # noqa: E402
