"""Training-time Sparse Metric Prompt sampler: random valid pixels, a random count per sample, batched in torch.

For each sample of a batch, with ``n`` valid pixels, a *mode* is drawn first:

* **full** with probability ``p_full``: the whole valid map is the prompt (count = n), so completion and
  super-resolution style dense inputs stay in distribution;
* **extreme** with probability ``p_extreme``: an integer count uniform in ``[extreme_min, extreme_max]``;
* **fraction** otherwise: a fraction f log-uniform in ``[min_fraction, max_fraction]``,
  count = round(f * n).

Counts are clamped to ``[min_points, n]`` (0 when the sample has no valid pixel). The pixels are then drawn
uniformly without replacement among the valid ones: every valid pixel gets a uniform random score, invalid
pixels get +inf, and the ``count`` lowest scores of each row are kept (one sort + one scatter per batch, no
Python loop over samples). Everything is driven by one ``torch.Generator``, so the same seed gives the same
prompt on the same device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from metricanything.errors import ConfigError, InvalidInputError

#: Mode codes returned by :func:`draw_prompt_counts`.
MODE_FRACTION, MODE_EXTREME, MODE_FULL = 0, 1, 2


@dataclass(frozen=True)
class PromptSamplerConfig:
    """Distribution of the number of prompt points per training sample (see module docstring)."""

    min_fraction: float = 0.001
    max_fraction: float = 0.02
    p_extreme: float = 0.05
    extreme_min: int = 1
    extreme_max: int = 20
    p_full: float = 0.05
    min_points: int = 1

    def __post_init__(self) -> None:
        if not 0.0 < self.min_fraction <= self.max_fraction <= 1.0:
            raise ConfigError(
                f"need 0 < min_fraction <= max_fraction <= 1, got {self.min_fraction}, {self.max_fraction}"
            )
        if self.p_extreme < 0 or self.p_full < 0 or self.p_extreme + self.p_full > 1:
            raise ConfigError(f"p_extreme and p_full must be >= 0 with a sum <= 1, got {self.p_extreme}, {self.p_full}")
        if not 1 <= self.extreme_min <= self.extreme_max:
            raise ConfigError(f"need 1 <= extreme_min <= extreme_max, got {self.extreme_min}, {self.extreme_max}")
        if self.min_points < 0:
            raise ConfigError(f"min_points must be >= 0, got {self.min_points}")


def draw_prompt_counts(
    n_valid: torch.Tensor, cfg: PromptSamplerConfig | None = None, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw the number of prompt points for each sample: ``(counts int64 B, modes int64 B)``.

    ``n_valid`` (int, B) is the number of valid pixels per sample. Modes are ``MODE_FRACTION``,
    ``MODE_EXTREME`` or ``MODE_FULL``. Counts lie in ``[min(min_points, n), n]``.
    """
    cfg = cfg or PromptSamplerConfig()
    n = n_valid.to(torch.int64).reshape(-1)
    dev = n.device
    u_mode = torch.rand(n.shape, generator=generator, device=dev, dtype=torch.float64)
    u_frac = torch.rand(n.shape, generator=generator, device=dev, dtype=torch.float64)
    u_ext = torch.rand(n.shape, generator=generator, device=dev, dtype=torch.float64)
    modes = torch.full_like(n, MODE_FRACTION)
    modes = torch.where(u_mode < cfg.p_full + cfg.p_extreme, torch.full_like(n, MODE_EXTREME), modes)
    modes = torch.where(u_mode < cfg.p_full, torch.full_like(n, MODE_FULL), modes)
    lo, hi = math.log(cfg.min_fraction), math.log(cfg.max_fraction)
    frac = torch.exp(lo + (hi - lo) * u_frac)
    k_frac = torch.round(frac * n.to(torch.float64)).to(torch.int64)
    span = cfg.extreme_max - cfg.extreme_min + 1
    k_ext = cfg.extreme_min + torch.clamp((u_ext * span).to(torch.int64), max=span - 1)
    counts = torch.where(modes == MODE_FULL, n, torch.where(modes == MODE_EXTREME, k_ext, k_frac))
    counts = torch.minimum(torch.clamp(counts, min=cfg.min_points), n)
    return counts, modes


def sample_prompt_masks(
    valid: torch.Tensor,
    cfg: PromptSamplerConfig | None = None,
    generator: torch.Generator | None = None,
    return_counts: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Prompt masks ``B x 1 x H x W`` (bool) drawn uniformly among ``valid`` (same shape, bool).

    The count per sample follows ``cfg`` (:func:`draw_prompt_counts`). With ``return_counts`` also returns the
    int64 B counts (equal to ``mask.sum((1, 2, 3))``). Runs on ``valid``'s device; the generator must live
    there too.
    """
    if valid.ndim == 3:
        valid = valid.unsqueeze(1)
    if valid.ndim != 4 or valid.shape[1] != 1:
        raise InvalidInputError(f"valid must be B x 1 x H x W, got {tuple(valid.shape)}")
    valid = valid.to(torch.bool)
    b = valid.shape[0]
    flat_valid = valid.reshape(b, -1)
    counts, _ = draw_prompt_counts(flat_valid.sum(dim=1), cfg, generator)
    scores = torch.rand(flat_valid.shape, generator=generator, device=valid.device)
    scores = torch.where(flat_valid, scores, torch.full_like(scores, float("inf")))
    order = torch.argsort(scores, dim=1)
    rank_ok = torch.arange(flat_valid.shape[1], device=valid.device).unsqueeze(0) < counts.unsqueeze(1)
    mask = torch.zeros_like(flat_valid).scatter_(1, order, rank_ok)
    mask = mask.reshape(valid.shape)
    return (mask, counts) if return_counts else mask


def sample_prompts(
    depth: torch.Tensor,
    valid: torch.Tensor,
    cfg: PromptSamplerConfig | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(prompt_depth, mask)``: masks from :func:`sample_prompt_masks`, depth zeroed outside the mask."""
    mask = sample_prompt_masks(valid, cfg, generator)
    if depth.ndim == 3:
        depth = depth.unsqueeze(1)
    if depth.shape != mask.shape:
        raise InvalidInputError(f"depth {tuple(depth.shape)} and valid {tuple(mask.shape)} differ in shape")
    return torch.where(mask, depth, torch.zeros_like(depth)), mask
