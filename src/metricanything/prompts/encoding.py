"""The network encoding of a Sparse Metric Prompt: one function, used by training and by inference.

Given a prompt depth map ``z`` (B x 1 x H x W, metres) and its mask ``m`` (B x 1 x H x W, bool):

* ``s`` = median of z over the mask, per sample (the scale statistic; 1 for an empty prompt);
* channel 0 = m * (ln z - ln s)  (normalised log depth; exactly 0 where m = 0),
* channel 1 = m as 0/1.

Whatever value sits under m = 0 (0, NaN, inf, garbage) never reaches the network: it is replaced before
the logarithm, so the encoding is fill-value invariant. ``log_scale`` (= ln s) is returned so a model that
predicts normalised log depth can map its output back to metres: ln z_hat = output + log_scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from metricanything.errors import InvalidInputError

#: Number of channels of the encoded prompt.
PROMPT_CHANNELS = 2


@dataclass
class EncodedPrompt:
    """Network-ready prompt: ``features`` B x 2 x H x W, ``log_scale`` B, ``has_prompt`` B (bool)."""

    features: torch.Tensor
    log_scale: torch.Tensor
    has_prompt: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        """B x 1 x H x W bool mask of prompted pixels."""
        return self.features[:, 1:2] > 0.5


def encode_prompt(depth: torch.Tensor, mask: torch.Tensor) -> EncodedPrompt:
    """Encode prompt depth (B x 1 x H x W, metres) and mask (same shape, bool) for a network.

    Masked values must be finite and > 0 (raises :class:`InvalidInputError` otherwise); unmasked values are
    ignored entirely. Samples with an empty mask get ``has_prompt = False``, ``log_scale = 0`` and all-zero
    features.
    """
    if depth.ndim == 3:
        depth = depth.unsqueeze(1)
    if mask.ndim == 3:
        mask = mask.unsqueeze(1)
    if depth.ndim != 4 or depth.shape[1] != 1:
        raise InvalidInputError(f"prompt depth must be B x 1 x H x W, got {tuple(depth.shape)}")
    if mask.shape != depth.shape:
        raise InvalidInputError(f"prompt mask {tuple(mask.shape)} and depth {tuple(depth.shape)} differ in shape")
    mask = mask.to(torch.bool)
    depth = depth.to(torch.float32)
    safe = torch.where(mask, depth, torch.ones_like(depth))
    if not bool(torch.isfinite(safe).all()) or bool((safe <= 0).any()):
        raise InvalidInputError("prompt depth must be finite and > 0 at every masked pixel")
    log_z = torch.log(safe)
    b = depth.shape[0]
    flat = torch.where(mask, log_z, torch.full_like(log_z, float("nan"))).reshape(b, -1)
    has_prompt = mask.reshape(b, -1).any(dim=1)
    log_scale = torch.nanmedian(flat, dim=1).values
    log_scale = torch.where(has_prompt, log_scale, torch.zeros_like(log_scale))
    value = torch.where(mask, log_z - log_scale.view(b, 1, 1, 1), torch.zeros_like(log_z))
    features = torch.cat([value, mask.to(value.dtype)], dim=1)
    return EncodedPrompt(features=features, log_scale=log_scale, has_prompt=has_prompt)
