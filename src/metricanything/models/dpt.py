"""DPT decoder with a sparse-metric-prompt branch (the teacher's decoder).

Layout (token grid of the ViT = ``gh x gw``, patch size ``p``):

* **Reassemble** – four ViT depths, each ``B x D x gh x gw``: a 1x1 conv ``D -> C_i`` followed by a resample
  to ``4x`` (transposed conv 4/4), ``2x`` (transposed conv 2/2), ``1x`` (identity) and ``0.5x`` (3x3 conv,
  stride 2) of the token grid, i.e. strides ``p/4, p/2, p, 2p`` of the input (4/8/16/32 for ``p = 16``); then
  a 3x3 conv (no bias) to the common decoder width ``F``.
* **Fusion** – from the coarsest level to the finest: ``t = a + RCU1(skip)`` (no skip at the coarsest),
  ``t = t + P_i`` (prompt, below), ``t = RCU2(t)``, bilinear upsampling to the next level's size (x2 after the
  finest), 1x1 conv. ``RCU(x) = x + conv(relu(conv(relu(x))))``.
* **Head** – 3x3 conv ``F -> F/2``, bilinear resize to the (padded) input size, 3x3 conv ``F/2 -> head_features``,
  ReLU, 1x1 conv to one channel. The output is unconstrained (the teacher uses it as log depth).
* **Prompt branch** – the encoded prompt (``[m (ln z - ln s), m]`` at input resolution, see
  :mod:`metricanything.prompts.encoding`) is reduced to every fusion level by **masked pooling**
  (value = sum(v m) / sum(m) per output cell, mask = any(m)); bilinear interpolation is never applied to the
  sparse map. Each level has a small conv encoder (2 x (3x3 conv + ReLU)) and a **zero-initialised** 3x3
  projection to ``F`` channels whose output ``P_i`` is added to the fusion features, so a decoder with a fresh
  prompt branch computes exactly what it computed without one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from metricanything.errors import InvalidInputError

#: Resampling factor of each reassembled level relative to the token grid.
LEVEL_FACTORS = (4.0, 2.0, 1.0, 0.5)


def level_sizes(grid_h: int, grid_w: int) -> list[tuple[int, int]]:
    """Spatial sizes of the four reassembled levels for a ``grid_h x grid_w`` token grid."""
    return [
        (4 * grid_h, 4 * grid_w),
        (2 * grid_h, 2 * grid_w),
        (grid_h, grid_w),
        ((grid_h + 1) // 2, (grid_w + 1) // 2),
    ]


def masked_pool(
    value: torch.Tensor, weight: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pool a sparse map to ``size`` counting only observed pixels.

    ``value`` is B x C x H x W, ``weight`` B x 1 x H x W (a 0/1 mask, or a non-negative density). Each output
    cell covers the same input window as :func:`torch.nn.functional.adaptive_avg_pool2d` and gets

    * value  = sum(v * w) / sum(w) over the window (0 where the window holds no weight),
    * density = mean(w) over the window (the fraction of observed pixels for a 0/1 mask),
    * mask   = max(w > 0) over the window (True where any pixel was observed).

    Values under ``w = 0`` never contribute (they are zeroed before the sum, so NaN/inf there are harmless).
    When ``size`` exceeds the input, windows repeat input pixels (nearest-neighbour behaviour).
    """
    if value.ndim != 4 or weight.ndim != 4 or weight.shape[1] != 1:
        raise InvalidInputError(
            f"masked_pool needs value B x C x H x W and weight B x 1 x H x W, got {tuple(value.shape)} "
            f"and {tuple(weight.shape)}"
        )
    weight = weight.to(value.dtype)
    observed = weight > 0
    vw = torch.where(observed, value, torch.zeros_like(value)) * weight
    (H, W), (h, w) = weight.shape[-2:], size
    if H % h == 0 and W % w == 0:
        # integer factor: plain window sums (exact for hand-checkable cases), density = sum / area
        k = (H // h, W // w)
        num = F.avg_pool2d(vw, k, stride=k, divisor_override=1)
        wsum = F.avg_pool2d(weight, k, stride=k, divisor_override=1)
        den = wsum / float(k[0] * k[1])
        mask = F.max_pool2d(observed.to(value.dtype), k, stride=k) > 0
    else:
        num = F.adaptive_avg_pool2d(vw, size)
        wsum = den = F.adaptive_avg_pool2d(weight, size)
        mask = F.adaptive_max_pool2d(observed.to(value.dtype), size) > 0
    pooled = torch.where(mask, num / torch.where(mask, wsum, torch.ones_like(wsum)), torch.zeros_like(num))
    return pooled, den, mask


#: pyramid depth of :func:`push_pull_fill` (2**12 = 4096 px: any practical image reaches one cell)
FILL_LEVELS = 12


def push_pull_fill(value: torch.Tensor, mask: torch.Tensor, levels: int = FILL_LEVELS) -> torch.Tensor:
    """Dense fill of a sparse map (B x 1 x H x W) by push-pull interpolation; exact at observed pixels.

    Push: ``levels`` rounds of 2 x 2 average pooling (ceil mode) of the masked values ``S`` and of the mask
    ``N``; both share each window's divisor, so ``S / N`` is a (near-uniformly) weighted mean of the observed
    values under the cell and ``N > 0`` says whether the cell saw any. Pull, coarse to fine: a cell with
    ``N > 0`` keeps ``S / N``, an empty cell takes the bilinearly upsampled (``align_corners=False``) coarser
    fill. At full resolution every observed pixel returns its own value exactly; an all-empty sample fills
    with 0. Plain average pooling (no ``divisor_override``, which ONNX ``AveragePool`` cannot express) and a
    fixed loop length keep the function exportable with dynamic H and W.
    """
    observed = mask.to(torch.bool)
    w = observed.to(value.dtype)
    v = torch.where(observed, value, torch.zeros_like(value))
    sums, counts = [v], [w]
    for _ in range(levels):
        sums.append(F.avg_pool2d(sums[-1], 2, stride=2, ceil_mode=True))
        counts.append(F.avg_pool2d(counts[-1], 2, stride=2, ceil_mode=True))
    n_top = counts[-1]
    fill = torch.where(n_top > 0, sums[-1] / torch.where(n_top > 0, n_top, torch.ones_like(n_top)), torch.zeros_like(n_top))
    for s, n in zip(reversed(sums[:-1]), reversed(counts[:-1]), strict=True):
        up = F.interpolate(fill, size=s.shape[-2:], mode="bilinear", align_corners=False)
        seen = n > 0
        fill = torch.where(seen, s / torch.where(seen, n, torch.ones_like(n)), up)
    return fill


def prompt_pyramid(features: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
    """Pool prompt features (B x C x H x W; channel 0 value, 1 mask, any further channels dense) to each size.

    Value and mask are masked-pooled (the value is the mean over the prompted pixels of each window, never a
    bilinear blend with the empty ones); dense channels (e.g. the push-pull fill) are area-averaged. Every
    level is pooled directly from the full-resolution map, so levels are exact window statistics.
    """
    if features.ndim != 4 or features.shape[1] < 2:
        raise InvalidInputError(f"prompt features must be B x C x H x W with C >= 2, got {tuple(features.shape)}")
    value, mask = features[:, :1], features[:, 1:2]
    dense = features[:, 2:]
    ones = torch.ones_like(mask)
    out = []
    for size in sizes:
        v, _, m = masked_pool(value, mask, tuple(size))
        parts = [v, m.to(v.dtype)]
        if dense.shape[1]:
            parts.append(masked_pool(dense, ones, tuple(size))[0])
        out.append(torch.cat(parts, dim=1))
    return out


class GuidedRefiner(nn.Module):
    """Full-resolution refinement of the decoder's residual, guided by the image and the prompt fill.

    Input channels: image (3, normalised), prompt fill (1, log depth relative to the prompt scale), prompt mask
    (1) and the decoder residual (1). Four 3 x 3 convs with dilations 1, 2, 4, 1 (receptive field 17 px)
    produce a correction that is *added* to the residual; the last conv is zero-initialised, so a fresh refiner
    changes nothing. It lets the teacher place depth edges at image edges between prompt points, which the
    coarse (1/2 to 1/32 resolution) DPT stages cannot.
    """

    in_channels = 6

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(self.in_channels, hidden, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=2, dilation=2)
        self.conv3 = nn.Conv2d(hidden, hidden, 3, padding=4, dilation=4)
        self.out = nn.Conv2d(hidden, 1, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, image: torch.Tensor, fill: torch.Tensor, mask: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        x = torch.cat([image, fill.to(image.dtype), mask.to(image.dtype), residual.to(image.dtype)], dim=1)
        x = F.gelu(self.conv1(x))
        x = F.gelu(self.conv2(x))
        x = F.gelu(self.conv3(x))
        return residual + self.out(x).to(residual.dtype)


class ResidualConvUnit(nn.Module):
    """``x + conv2(relu(conv1(relu(x))))`` with 3x3 convs (bias on)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """One DPT fusion stage; optionally adds prompt features before the second residual unit."""

    def __init__(self, features: int, has_skip: bool) -> None:
        super().__init__()
        self.rcu1 = ResidualConvUnit(features) if has_skip else None
        self.rcu2 = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, features, 1)

    def forward(
        self,
        x: torch.Tensor,
        skip: torch.Tensor | None,
        prompt: torch.Tensor | None,
        size: tuple[int, int],
    ) -> torch.Tensor:
        if skip is not None:
            if self.rcu1 is None:
                raise RuntimeError("this fusion block was built without a skip input")
            x = x + self.rcu1(skip)
        if prompt is not None:
            x = x + prompt
        x = self.rcu2(x)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.out_conv(x)


class PromptStageEncoder(nn.Module):
    """Small conv encoder for one pyramid level; the last conv (``proj``) is zero-initialised."""

    def __init__(self, in_channels: int, hidden: int, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.proj = nn.Conv2d(hidden, features, 3, padding=1)
        self.reset_projection()

    def reset_projection(self) -> None:
        """Zero the output projection, so the stage adds exactly 0 until it is trained."""
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.relu(self.conv2(F.relu(self.conv1(x)))))


class Reassemble(nn.Module):
    """1x1 projection of ViT tokens and resampling to one of the four decoder levels."""

    def __init__(self, embed_dim: int, channels: int, factor: float, features: int) -> None:
        super().__init__()
        self.project = nn.Conv2d(embed_dim, channels, 1)
        if factor == 4.0:
            self.resample: nn.Module = nn.ConvTranspose2d(channels, channels, 4, stride=4)
        elif factor == 2.0:
            self.resample = nn.ConvTranspose2d(channels, channels, 2, stride=2)
        elif factor == 1.0:
            self.resample = nn.Identity()
        elif factor == 0.5:
            self.resample = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        else:
            raise ValueError(f"unsupported reassemble factor {factor}")
        self.to_features = nn.Conv2d(channels, features, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_features(self.resample(self.project(x)))


class DPTDecoder(nn.Module):
    """DPT decoder over four ViT depths with an optional prompt branch (see the module docstring).

    Args:
        embed_dim: ViT width ``D``.
        reassemble_channels: ``C_0..C_3`` of the four reassemble projections (finest first).
        features: decoder width ``F``.
        head_features: width of the last hidden layer of the head.
        prompt_hidden: hidden width of each prompt stage encoder; ``None`` or 0 builds no prompt branch.
        prompt_in_channels: channels of the prompt input (2: value, mask; 3 adds the dense push-pull fill).
        prompt_levels: which fusion levels (0 = finest) receive the prompt.
    """

    def __init__(
        self,
        embed_dim: int,
        reassemble_channels: Sequence[int] = (48, 96, 192, 384),
        features: int = 64,
        head_features: int = 32,
        prompt_hidden: int | None = 32,
        prompt_in_channels: int = 2,
        prompt_levels: Sequence[int] = (0, 1, 2, 3),
    ) -> None:
        super().__init__()
        if len(reassemble_channels) != 4:
            raise ValueError(f"reassemble_channels needs 4 entries, got {reassemble_channels}")
        self.features = features
        self.reassemble = nn.ModuleList(
            Reassemble(embed_dim, c, f, features) for c, f in zip(reassemble_channels, LEVEL_FACTORS, strict=True)
        )
        # fusions[i] works at level i; the coarsest (3) has no skip input.
        self.fusions = nn.ModuleList(FusionBlock(features, has_skip=i != 3) for i in range(4))
        half = max(features // 2, 1)
        self.head = nn.Sequential(
            nn.Conv2d(features, half, 3, padding=1),
            nn.Identity(),  # placeholder index for the resize done in forward (keeps indices stable)
            nn.Conv2d(half, head_features, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(head_features, 1, 1),
        )
        nn.init.zeros_(self.head[4].bias)
        self.prompt_levels = tuple(sorted(set(int(i) for i in prompt_levels))) if prompt_hidden else ()
        if any(i not in range(4) for i in self.prompt_levels):
            raise ValueError(f"prompt_levels must be within 0..3, got {prompt_levels}")
        self.prompt_encoders = nn.ModuleDict(
            {str(i): PromptStageEncoder(prompt_in_channels, int(prompt_hidden), features) for i in self.prompt_levels}
        )

    @property
    def has_prompt_branch(self) -> bool:
        """True when at least one fusion level receives the prompt."""
        return len(self.prompt_levels) > 0

    def reset_prompt_projections(self) -> None:
        """Zero every prompt projection (e.g. after loading a prompt-free decoder)."""
        for enc in self.prompt_encoders.values():
            enc.reset_projection()

    def forward(
        self,
        tokens: Sequence[torch.Tensor],
        out_size: tuple[int, int],
        prompt: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Decode four ``B x D x gh x gw`` token maps to a ``B x 1 x out_size`` map.

        ``prompt`` is the encoded prompt (B x C x H x W: value, mask[, fill]) at any resolution covering the same field of view as
        ``out_size`` (normally exactly ``out_size``); it is ignored when the decoder has no prompt branch.
        """
        if len(tokens) != 4:
            raise InvalidInputError(f"DPTDecoder needs 4 token maps, got {len(tokens)}")
        gh, gw = tokens[0].shape[-2:]
        sizes = level_sizes(gh, gw)
        levels = [r(t) for r, t in zip(self.reassemble, tokens, strict=True)]
        for lvl, size in zip(levels, sizes, strict=True):
            if tuple(lvl.shape[-2:]) != size:  # pragma: no cover - guards against a reassemble change
                raise RuntimeError(f"reassembled level has size {tuple(lvl.shape[-2:])}, expected {size}")
        prompts: dict[int, torch.Tensor] = {}
        if prompt is not None and self.has_prompt_branch:
            pyramid = prompt_pyramid(prompt.to(levels[0].dtype), [sizes[i] for i in self.prompt_levels])
            for i, p in zip(self.prompt_levels, pyramid, strict=True):
                prompts[i] = self.prompt_encoders[str(i)](p)
        x = levels[3]
        targets = [sizes[2], sizes[1], sizes[0], (2 * sizes[0][0], 2 * sizes[0][1])]
        for step, i in enumerate((3, 2, 1, 0)):
            skip = None if i == 3 else levels[i]
            x = self.fusions[i](x, skip, prompts.get(i), targets[step])
        x = self.head[0](x)
        x = F.interpolate(x, size=tuple(out_size), mode="bilinear", align_corners=False)
        for layer in list(self.head)[2:]:
            x = layer(x)
        return x
