"""The prompt-free student (official MetricAnything Student-DepthMap architecture), parameterised by size.

Structure (names follow the official state dict so the released checkpoint loads unchanged):

* ``encoder`` – Depth-Pro-style multi-resolution patch encoder with **one** shared ViT
  (``encoder.patch_encoder``): image pyramid at 1x, 1/2, 1/4 (bilinear, ``align_corners=False``, no
  antialias); overlapping square tiles of the ViT's native size T (overlap 0.25 at level 0 -> 5x5 tiles,
  0.5 at level 1 -> 3x3 tiles, level 2 is one tile); all 35 B tiles in one ViT batch; raw outputs of four
  hooked blocks (level-0 tiles only) and the final-normed tokens of every level; tiles merged by trimming
  n/8 (level 0) or n/4 (level 1) tokens at internal edges; 1x1-conv + transposed-conv projections.
* ``decoder`` – 7-level multi-resolution fusion decoder; the finest stage takes the final-layer tokens of the
  full-resolution tiles ("Deep-to-Deep").
* ``head`` – conv / transposed conv / 5 x (conv 3x3 + ReLU) / conv 1x1 + ReLU producing the non-negative
  canonical inverse depth C at the network resolution S = 4 T. Metric depth = f_px / (W * C).
* optional ``fov`` head (not in the official model; off by default so the official key set stays exact).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metricanything.errors import ConfigError, InvalidInputError
from metricanything.models.protocol import focal_vector, imagenet_normalise, weight_dtype
from metricanything.models.vit import VisionTransformer, ViTConfig, vit_config

__all__ = [
    "StudentConfig",
    "student_config",
    "STUDENT_PRESETS",
    "Student",
    "StudentEncoder",
    "StudentDecoder",
    "FeatureFusionBlock",
    "ResidualConvBlock",
    "FovHead",
    "split_tiles",
    "merge_tiles",
    "DEFAULT_F_PX",
    "FAST_DTYPE",
    "INVERSE_DEPTH_CLAMP",
]

#: Focal length (px) assumed by the official ``infer`` when none is given.
DEFAULT_F_PX = 1000.0
#: Clamp applied to inverse depth before taking depth = 1 / inverse depth (official values).
INVERSE_DEPTH_CLAMP = (1e-3, 1e3)
#: Compute dtype of the fast CPU inference path (``Student.infer(..., fast=True)``): bf16, the CPU's low-precision
#: format (fp16 is emulated on CPUs).
FAST_DTYPE = torch.bfloat16
#: Initial bias of the head's last conv (canonical inverse depth of a fresh model; see ``Student.__init__``).
HEAD_BIAS_INIT = 0.1
#: Encoder output used by decoder conv i (official wiring: x0, latent3, latent2, latent1, latent0, x1, global).
DECODER_INPUT_IDS = (4, 3, 2, 1, 0, 5, 6)
#: Fusion blocks that upsample x2 with a transposed conv.
FUSION_DECONV = (False, True, False, False, True, True, True)


@dataclass
class StudentConfig:
    """Hyper-parameters of :class:`Student`.

    ``vit`` is a ViT preset name or a :class:`ViTConfig`; its patch size must be 16. ``tile_size`` T is the ViT
    input size of one tile (T/16 tokens per side, a multiple of 8); the network input is S = 4 T.
    ``encoder_dims`` = (e0, e1, e2, e3): hook projections / level-0 tokens / level-1 tokens / level-2 tokens.
    """

    vit: str | ViTConfig = "dinov3_huge_plus"
    tile_size: int = 384
    hook_block_ids: tuple[int, int, int, int] = (7, 13, 19, 25)
    encoder_dims: tuple[int, int, int, int] = (320, 256, 320, 640)
    decoder_features: int = 256
    head_last_dims: tuple[int, int] = (32, 1)
    use_fov_head: bool = False
    f_px_default: float = DEFAULT_F_PX
    vit_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.hook_block_ids = tuple(int(i) for i in self.hook_block_ids)  # type: ignore[assignment]
        self.encoder_dims = tuple(int(i) for i in self.encoder_dims)  # type: ignore[assignment]
        self.head_last_dims = tuple(int(i) for i in self.head_last_dims)  # type: ignore[assignment]
        if isinstance(self.vit, dict):
            self.vit = ViTConfig.from_dict(self.vit)
        vc = self.vit_cfg
        if vc.patch_size != 16:
            raise ConfigError(f"the student needs a patch-16 ViT (the decoder upsamples tokens x16), got {vc.patch_size}")
        if self.tile_size % 16 or (self.tile_size // 16) % 8:
            raise ConfigError(f"tile_size {self.tile_size} must be 16 * n with n a multiple of 8 (128, 256, 384, ...)")
        if len(self.hook_block_ids) != 4 or len(set(self.hook_block_ids)) != 4:
            raise ConfigError(f"hook_block_ids must be 4 distinct blocks, got {self.hook_block_ids}")
        if not all(0 <= i < vc.depth for i in self.hook_block_ids):
            raise ConfigError(f"hook_block_ids {self.hook_block_ids} out of range for ViT depth {vc.depth}")
        if len(self.encoder_dims) != 4 or min(self.encoder_dims) < 1:
            raise ConfigError(f"encoder_dims must be 4 positive ints, got {self.encoder_dims}")
        if self.decoder_features % 2 or self.decoder_features < 2:
            raise ConfigError("decoder_features must be even")
        if len(self.head_last_dims) != 2 or self.head_last_dims[1] != 1:
            raise ConfigError(f"head_last_dims must be (hidden, 1), got {self.head_last_dims}")

    @property
    def vit_cfg(self) -> ViTConfig:
        base = vit_config(self.vit) if isinstance(self.vit, str) else self.vit
        return dataclasses.replace(base, **self.vit_overrides) if self.vit_overrides else base

    @property
    def network_size(self) -> int:
        """Side S of the square network input (4 x tile)."""
        return 4 * self.tile_size

    @property
    def tokens_per_tile(self) -> int:
        return self.tile_size // 16

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["vit"] = self.vit if isinstance(self.vit, str) else self.vit.to_dict()
        d["hook_block_ids"] = list(self.hook_block_ids)
        d["encoder_dims"] = list(self.encoder_dims)
        d["head_last_dims"] = list(self.head_last_dims)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], origin: str = "StudentConfig") -> StudentConfig:
        """Inverse of :meth:`to_dict`, strict (:func:`metricanything.config.from_mapping`): unknown keys and wrong
        types raise :class:`ConfigError` naming ``origin`` and the dotted key."""
        from metricanything.config import from_mapping

        return from_mapping(cls, d, origin=origin)


STUDENT_PRESETS: dict[str, Any] = {
    # Exactly the official released model (dinov3_vith16plus, tile 384, decoder 256): 876,664,001 parameters.
    "official": lambda: StudentConfig(),
    # Exactly the parity fixture (../shared/fixtures/official_student/tiny_config.json): 318,993 parameters.
    "fixture_tiny": lambda: StudentConfig(
        vit="dinov3_fixture_tiny", tile_size=128, hook_block_ids=(1, 3, 5, 7), encoder_dims=(16, 8, 12, 24),
        decoder_features=16,
    ),
    # Trainable small students (same wiring, smaller ViT / widths).
    "tiny": lambda: StudentConfig(
        vit="dinov3_tiny", tile_size=128, hook_block_ids=(1, 2, 3, 4), encoder_dims=(32, 32, 48, 64),
        decoder_features=32,
    ),
    "small": lambda: StudentConfig(
        vit="dinov3_small", tile_size=256, hook_block_ids=(2, 4, 7, 9), encoder_dims=(96, 64, 96, 192),
        decoder_features=64,
    ),
    "base": lambda: StudentConfig(
        vit="dinov3_base", tile_size=384, hook_block_ids=(2, 4, 7, 9), encoder_dims=(192, 128, 192, 384),
        decoder_features=128,
    ),
    "large": lambda: StudentConfig(
        vit="dinov3_large", tile_size=384, hook_block_ids=(5, 10, 14, 19), encoder_dims=(256, 256, 256, 512),
        decoder_features=256,
    ),
}
STUDENT_PRESETS["vith16plus"] = STUDENT_PRESETS["official"]


def student_config(name: str, **overrides: Any) -> StudentConfig:
    """Fresh :class:`StudentConfig` for preset ``name`` (official, vith16plus, fixture_tiny, tiny, small, ...)."""
    if name not in STUDENT_PRESETS:
        raise ConfigError(f"unknown student preset {name!r}; known: {sorted(STUDENT_PRESETS)}")
    cfg = STUDENT_PRESETS[name]()
    return dataclasses.replace(cfg, **overrides) if overrides else cfg


# ---------------------------------------------------------------------------------------------------------
# Tiling
# ---------------------------------------------------------------------------------------------------------


def _tile_steps(size: int, tile: int, overlap: float) -> tuple[int, int]:
    stride = int(tile * (1 - overlap))
    steps = int(math.ceil((size - tile) / stride)) + 1
    return stride, steps


def split_tiles(x: Tensor, tile: int, overlap: float) -> Tensor:
    """Cut a square (B,C,L,L) image into overlapping (steps^2 * B, C, tile, tile) tiles.

    Tiles are ordered row-major (outer loop over rows); each position holds the B images consecutively.
    """
    stride, steps = _tile_steps(x.shape[-1], tile, overlap)
    tiles = []
    for r in range(steps):
        y0 = r * stride
        for c in range(steps):
            x0 = c * stride
            tiles.append(x[..., y0 : y0 + tile, x0 : x0 + tile])
    return torch.cat(tiles, dim=0)


def merge_tiles(x: Tensor, batch_size: int, trim: int) -> Tensor:
    """Inverse of :func:`split_tiles` on feature maps: drop ``trim`` rows/cols at internal edges, concatenate."""
    steps = int(math.sqrt(x.shape[0] // batch_size))
    rows = []
    for r in range(steps):
        row = []
        for c in range(steps):
            k = r * steps + c
            t = x[k * batch_size : (k + 1) * batch_size]
            top = trim if r > 0 else 0
            bottom = t.shape[-2] - (trim if r < steps - 1 else 0)
            left = trim if c > 0 else 0
            right = t.shape[-1] - (trim if c < steps - 1 else 0)
            row.append(t[..., top:bottom, left:right])
        rows.append(torch.cat(row, dim=-1))
    return torch.cat(rows, dim=-2)


def _tokens_to_map(tokens: Tensor, n_skip: int, n: int) -> Tensor:
    t = tokens[:, n_skip:, :]
    return t.reshape(t.shape[0], n, n, t.shape[-1]).permute(0, 3, 1, 2)


def _projection(dim_in: int, dim_out: int, n_up: int) -> nn.Sequential:
    """1x1 conv (no bias) then n_up x [ConvTranspose2d k2 s2 (no bias)]."""
    layers: list[nn.Module] = [nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False)]
    layers += [nn.ConvTranspose2d(dim_out, dim_out, 2, 2, 0, bias=False) for _ in range(n_up)]
    return nn.Sequential(*layers)


class StudentEncoder(nn.Module):
    """Multi-resolution tiled encoder with one shared ViT (``patch_encoder``)."""

    def __init__(self, cfg: StudentConfig) -> None:
        super().__init__()
        vc = cfg.vit_cfg
        self.tile_size = cfg.tile_size
        self.n = cfg.tokens_per_tile
        self.hook_block_ids = tuple(cfg.hook_block_ids)
        e0, e1, e2, e3 = cfg.encoder_dims
        d = vc.embed_dim
        self.patch_encoder = VisionTransformer(vc)
        self.upsample_latent0 = _projection(d, e0, 1)
        self.upsample_latent1 = _projection(d, e0, 2)
        self.upsample_latent2 = _projection(d, e0, 2)
        self.upsample_latent3 = _projection(d, e0, 2)
        self.upsample0 = _projection(d, e1, 3)
        self.upsample1 = _projection(d, e2, 1)
        self.upsample2 = _projection(d, e3, 1)
        self.upsample_lowres = nn.ConvTranspose2d(d, e3, 2, 2, 0, bias=True)
        self.fuse_lowres = nn.Conv2d(2 * e3, e3, 1, 1, 0, bias=True)

    def forward(self, x: Tensor) -> list[Tensor]:
        """(B,3,S,S) -> [latent0, latent1, latent2, latent3, x0, x1, global]."""
        b = x.shape[0]
        t, n = self.tile_size, self.n
        x1 = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
        x2 = F.interpolate(x, scale_factor=0.25, mode="bilinear", align_corners=False)
        p0 = split_tiles(x, t, 0.25)
        p1 = split_tiles(x1, t, 0.5)
        n0, n1 = p0.shape[0], p1.shape[0]
        tiles = torch.cat([p0, p1, x2], dim=0)
        vit = self.patch_encoder
        final, hooks = vit.forward_with_intermediates(tiles, self.hook_block_ids)
        # Final tokens: drop CLS and registers.
        maps = _tokens_to_map(final, vit.num_prefix_tokens, n)
        f0, f1, f2 = maps[:n0], maps[n0 : n0 + n1], maps[n0 + n1 :]
        latents = [merge_tiles(_tokens_to_map(h[:n0], vit.num_prefix_tokens, n), b, n // 8) for h in hooks]
        out = [
            self.upsample_latent0(latents[0]),
            self.upsample_latent1(latents[1]),
            self.upsample_latent2(latents[2]),
            self.upsample_latent3(latents[3]),
            self.upsample0(merge_tiles(f0, b, n // 8)),
            self.upsample1(merge_tiles(f1, b, n // 4)),
        ]
        g = self.upsample2(f2)
        g_low = self.upsample_lowres(f2)
        out.append(self.fuse_lowres(torch.cat([g, g_low], dim=1)))
        return out


# ---------------------------------------------------------------------------------------------------------
# Decoder and head
# ---------------------------------------------------------------------------------------------------------


class ResidualConvBlock(nn.Module):
    """x + conv3x3(relu(conv3x3(relu(x)))); convs at ``residual.1`` and ``residual.3``."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            nn.ReLU(False), nn.Conv2d(ch, ch, 3, 1, 1, bias=True), nn.ReLU(False), nn.Conv2d(ch, ch, 3, 1, 1, bias=True)
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.residual(x)


class FeatureFusionBlock(nn.Module):
    """f(a, s) = out_conv(deconv?(RB2(a + RB1(s))))."""

    def __init__(self, ch: int, deconv: bool, with_skip: bool = True) -> None:
        super().__init__()
        self.resnet1: nn.Module = ResidualConvBlock(ch) if with_skip else nn.Identity()
        self.resnet2 = ResidualConvBlock(ch)
        self.use_deconv = deconv
        if deconv:
            self.deconv = nn.ConvTranspose2d(ch, ch, 2, 2, 0, bias=False)
        self.out_conv = nn.Conv2d(ch, ch, 1, 1, 0, bias=True)

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        if skip is not None:
            x = x + self.resnet1(skip)
        x = self.resnet2(x)
        if self.use_deconv:
            x = self.deconv(x)
        return self.out_conv(x)


class StudentDecoder(nn.Module):
    """7-level fusion decoder. ``forward(encodings) -> (features at S/2, low-res projected global map)``."""

    def __init__(self, encoder_dims: Sequence[int], features: int) -> None:
        super().__init__()
        e0, e1, e2, e3 = encoder_dims
        out_dims = (e0, e0, e0, e0, e1, e2, e3)  # channels of the 7 encoder outputs
        self.convs = nn.ModuleList(
            [nn.Conv2d(out_dims[DECODER_INPUT_IDS[i]], features, 3, 1, 1, bias=False) for i in range(7)]
        )
        self.fusions = nn.ModuleList(
            [FeatureFusionBlock(features, FUSION_DECONV[i], with_skip=i != 6) for i in range(7)]
        )

    def forward(self, enc: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        f = self.convs[6](enc[DECODER_INPUT_IDS[6]])
        lowres = f
        f = self.fusions[6](f)
        for i in range(5, -1, -1):
            f = self.fusions[i](f, self.convs[i](enc[DECODER_INPUT_IDS[i]]))
        return f, lowres


def _head(features: int, last_dims: Sequence[int]) -> nn.Sequential:
    h, out = last_dims
    layers: list[nn.Module] = [
        nn.Conv2d(features, features // 2, 3, 1, 1),
        nn.ConvTranspose2d(features // 2, features // 2, 2, 2, 0, bias=True),
        nn.Conv2d(features // 2, h, 3, 1, 1),
        nn.ReLU(True),
    ]
    for _ in range(4):
        layers += [nn.Conv2d(h, h, 3, 1, 1), nn.ReLU(True)]
    layers += [nn.Conv2d(h, out, 1, 1, 0), nn.ReLU()]
    return nn.Sequential(*layers)


class FovHead(nn.Module):
    """Predicts the horizontal field of view from the decoder's low-resolution map (not in the official model).

    Two stride-2 3x3 convs + ReLU, global average pooling, a linear layer giving r = ln tan(fov_x / 2).
    Initialised to r = ln 0.5 (fov_x = 53.13 deg, i.e. f_px = W) with zero weights in the last layer.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        c1, c2 = max(features // 2, 1), max(features // 4, 1)
        self.convs = nn.Sequential(
            nn.Conv2d(features, c1, 3, 2, 1), nn.ReLU(), nn.Conv2d(c1, c2, 3, 2, 1), nn.ReLU()
        )
        self.fc = nn.Linear(c2, 1)
        nn.init.zeros_(self.fc.weight)
        nn.init.constant_(self.fc.bias, math.log(0.5))

    def forward(self, lowres: Tensor) -> Tensor:
        """Returns fov_x in degrees, shape (B,)."""
        r = self.fc(self.convs(lowres).mean(dim=(2, 3))).squeeze(-1)
        return torch.rad2deg(2 * torch.atan(torch.exp(r)))


def fov_to_focal(fov_x_deg: Tensor, width: float) -> Tensor:
    """f_px = 0.5 W / tan(fov_x / 2)."""
    return 0.5 * width / torch.tan(0.5 * torch.deg2rad(fov_x_deg))


# ---------------------------------------------------------------------------------------------------------
# The student
# ---------------------------------------------------------------------------------------------------------


class Student(nn.Module):
    """Prompt-free student. ``forward`` returns canonical inverse depth C (B,1,S,S); see :meth:`infer`."""

    kind = "student"

    def __init__(self, cfg: StudentConfig | None = None) -> None:
        super().__init__()
        cfg = cfg if cfg is not None else StudentConfig()
        self.cfg = cfg
        self.encoder = StudentEncoder(cfg)
        self.decoder = StudentDecoder(cfg.encoder_dims, cfg.decoder_features)
        self.head = _head(cfg.decoder_features, cfg.head_last_dims)
        if not any(p.is_meta for p in self.head.parameters()):
            # The official constructor zeroes this bias; with the final ReLU that can leave a freshly built
            # network with an all-zero output and no gradient (we observed it on the ``tiny`` preset). We start
            # from a small positive canonical inverse depth instead. Irrelevant once weights are loaded.
            # The head's convs get He (fan-in, ReLU) init and the last conv a small std 0.01 / sqrt(fan-in)
            # (was 1e-3): a standard scale-keeping start whose first output is close to the bias everywhere while
            # every layer receives gradient. Fresh ``tiny`` student: last hidden RMS 0.62x the decoder output's
            # (0.44x with PyTorch's default init). It did not by itself make the tiny student learn scene scale
            # within CPU minutes (docs/design.md, acceptance benchmark).
            for mod in list(self.head)[:-2]:
                if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
                    nn.init.kaiming_normal_(mod.weight, mode="fan_in", nonlinearity="relu")
                    nn.init.zeros_(mod.bias)
            last = self.head[-2]
            nn.init.normal_(last.weight, std=0.01 / math.sqrt(last.weight[0].numel()))
            nn.init.constant_(last.bias, HEAD_BIAS_INIT)
        self.fov = FovHead(cfg.decoder_features) if cfg.use_fov_head else None
        self.channels_last = False  # decoder / head activations in channels-last layout (fast path)

    @property
    def network_size(self) -> int:
        return self.cfg.network_size

    def _check_input(self, x: Tensor) -> None:
        s = self.network_size
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-2:] != (s, s):
            raise InvalidInputError(f"Student.forward expects (B,3,{s},{s}), got {tuple(x.shape)}")

    def _encode(self, x: Tensor) -> list[Tensor]:
        enc = self.encoder(x)
        if self.channels_last:
            enc = [e.contiguous(memory_format=torch.channels_last) for e in enc]
        return enc

    @property
    def config(self) -> StudentConfig:
        """Alias of :attr:`cfg` (the call protocol's name)."""
        return self.cfg

    @property
    def estimates_focal(self) -> bool:
        """True when the model has a field-of-view head."""
        return bool(self.cfg.use_fov_head)

    def predict_depth(self, image: Tensor, f_px: Tensor | float | None, prompt_depth: Tensor | None = None,
                      prompt_mask: Tensor | None = None) -> dict[str, Tensor]:
        """The call protocol of every model kind (:mod:`metricanything.models.protocol`) on RGB in [0, 1].

        Images with a NaN focal use the FoV head's estimate (one pass), the others their given focal (another pass
        when the batch mixes both). ``valid`` is False where the inverse depth sits at the official 1e-3 floor
        (sky / beyond ~1000 m); ``inverse_depth`` is returned too. Low precision (an active autocast, e.g.
        ``api.infer``'s bf16, or low-precision weights) runs the fast path.
        """
        if prompt_depth is not None or prompt_mask is not None:
            raise InvalidInputError("the student is prompt-free; pass prompt=None (or use a teacher)")
        b, _, h, w = image.shape
        f = focal_vector(f_px, b)
        unknown = torch.isnan(f)
        if bool(unknown.any()) and self.fov is None:
            raise InvalidInputError("the student has no field-of-view head, so every image needs a focal length")
        xn = imagenet_normalise(image).to(weight_dtype(self))
        fast = torch.is_autocast_enabled(xn.device.type) or xn.dtype != torch.float32
        out: dict[str, Tensor] = {}
        if bool(unknown.any()):  # one pass with the FoV head's focal estimate
            out = self.infer(xn, f_px=None, fast=fast)
            f_est = out["f_px"].reshape(-1).to(torch.float64).cpu().expand(b)
            f = torch.where(unknown, f_est, f)
        if not bool(unknown.all()):  # (another) pass with the known focal lengths
            out = self.infer(xn, f_px=f, fast=fast)
        inverse = out["inverse_depth"].reshape(b, 1, h, w)
        return {
            "depth": out["depth"].reshape(b, 1, h, w),
            "inverse_depth": inverse,
            "valid": inverse.float() > INVERSE_DEPTH_CLAMP[0],
            "f_px": f,
        }

    def forward_with_fov(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """(canonical inverse depth (B,1,S,S), fov_x in degrees (B,) or None without a FoV head)."""
        self._check_input(x)
        feats, lowres = self.decoder(self._encode(x))
        c = self.head(feats)
        fov = self.fov(lowres) if self.fov is not None else None
        return c, fov

    def forward(self, x: Tensor) -> Tensor:
        """Canonical inverse depth (B,1,S,S) of an ImageNet-normalised (B,3,S,S) input."""
        self._check_input(x)
        feats, _ = self.decoder(self._encode(x))
        return self.head(feats)

    @contextlib.contextmanager
    def fast_mode(self, device_type: str = "cpu") -> Iterator[None]:
        """Fast inference settings for the duration of the block.

        bf16 autocast (:data:`FAST_DTYPE`; skipped when an autocast is already active for ``device_type``, e.g.
        :func:`metricanything.api.infer`'s, or when the weights are already low precision), channels-last
        decoder / head activations and the fused in-place RoPE of the ViT (:func:`~metricanything.models.vit.
        apply_rope_fused`, active without grad only). The previous settings are restored on exit.
        """
        vit = self.encoder.patch_encoder
        saved = (self.channels_last, vit.fused_rope)
        weight_dtype = next(self.parameters()).dtype
        with contextlib.ExitStack() as stack:
            if weight_dtype == torch.float32 and not torch.is_autocast_enabled(device_type):
                stack.enter_context(torch.autocast(device_type=device_type, dtype=FAST_DTYPE))
            self.channels_last, vit.fused_rope = True, True
            try:
                yield
            finally:
                self.channels_last, vit.fused_rope = saved

    @torch.no_grad()
    def infer(self, x: Tensor, f_px: float | Tensor | None = None, fast: bool = False) -> dict[str, Tensor]:
        """Official inference conventions on an ImageNet-normalised image at its original size.

        The image (B,3,H,W) or (3,H,W) is squashed to S x S (bilinear, ``align_corners=False``, no antialias);
        inverse depth = C * (W / f_px) with W the original width; resized back to (H, W) the same way; depth =
        1 / clamp(inverse depth, 1e-3, 1e3). ``f_px`` defaults to the FoV head's estimate when the model has one,
        else to ``cfg.f_px_default`` (1000, the official default). Returned tensors are ``squeeze()``-d like the
        official output: ``depth``, ``inverse_depth`` (clamped; = 1/depth), ``f_px`` and, with a FoV head,
        ``fov_x_deg``. With a FoV head, a per-image ``f_px`` tensor may hold NaN for "unknown": those images use
        the estimate (one network pass for mixed batches).

        ``fast``: run the network under :meth:`fast_mode` (bf16 autocast, channels-last decoder, fused RoPE);
        its outputs are cast to float32 before the post-processing above (then done in float32). The default
        path is unchanged (bit for bit).
        """
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.ndim != 4 or x.shape[1] != 3:
            raise InvalidInputError(f"infer expects (B,3,H,W) or (3,H,W), got {tuple(x.shape)}")
        _, _, h, w = x.shape
        s = self.network_size
        resize = h != s or w != s
        if resize:
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
        if fast:
            with self.fast_mode(x.device.type):
                c, fov = self.forward_with_fov(x)
            c = c.float()
            fov = fov.float() if fov is not None else None
        else:
            c, fov = self.forward_with_fov(x)
        out: dict[str, Tensor] = {}
        if fov is not None:
            out["fov_x_deg"] = fov.squeeze()
        if f_px is None:
            f_px = fov_to_focal(fov.to(torch.float64), float(w)) if fov is not None else self.cfg.f_px_default
        elif isinstance(f_px, Tensor) and torch.isnan(f_px).any():
            if fov is None:
                raise InvalidInputError("f_px has NaN entries but the model has no FoV head to estimate them")
            # NaN entries: "unknown", filled from the FoV head in the same pass
            est = fov_to_focal(fov.to(torch.float64), float(w)).to(f_px.device)
            f_px = torch.where(torch.isnan(f_px), est.reshape(f_px.shape), f_px.to(torch.float64))
        if isinstance(f_px, Tensor):
            f = f_px.to(device=c.device, dtype=torch.float64).reshape(-1, 1, 1, 1)
            inv = c * (float(w) / f).to(c.dtype)
            out["f_px"] = f_px.detach().squeeze()
        else:
            inv = c * (w / float(f_px))
            out["f_px"] = torch.tensor(float(f_px))
        if resize:
            inv = F.interpolate(inv, size=(h, w), mode="bilinear", align_corners=False)
        inv = torch.clamp(inv, min=INVERSE_DEPTH_CLAMP[0], max=INVERSE_DEPTH_CLAMP[1])
        out["depth"] = (1.0 / inv).squeeze()
        out["inverse_depth"] = inv.squeeze()
        return out
