"""Loading pretrained ViT backbones into :class:`~metricanything.models.vit.VisionTransformer`.

Key conversion between the timm, facebookresearch-DINOv2 and official DINOv3 state-dict layouts (see the
``metricanything.models.vit`` module docstring), and strict loading with clear errors.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from metricanything.errors import CheckpointError, InputFileError

if TYPE_CHECKING:
    from metricanything.models.vit import VisionTransformer

__all__ = ["load_backbone_weights", "convert_backbone_state_dict"]


_OPTIONAL_BUFFERS = re.compile(r"^(rope_embed\.periods|blocks\.\d+\.attn\.qkv\.bias_mask)$")
_KNOWN_PREFIXES = ("encoder.patch_encoder.", "module.", "backbone.", "model.", "encoder.", "teacher.backbone.")


def _read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise InputFileError(p, "backbone weight file not found")
    try:
        if p.endswith(".safetensors"):
            from safetensors.torch import load_file

            sd = load_file(p)
        else:
            sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise InputFileError(p, f"cannot read weights: {e}") from e
    for key in ("state_dict", "model", "teacher"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise InputFileError(p, "not a state dict of tensors")
    return dict(sd)


def convert_backbone_state_dict(sd: dict[str, Tensor], model: VisionTransformer) -> tuple[dict[str, Tensor], list[str]]:
    """Rename a timm / facebookresearch-DINOv2 / DINOv3 state dict to ``model``'s layout.

    Returns (converted state dict, notes). Shape fixes that are safe (position-grid resize) are applied here.
    """
    notes: list[str] = []
    own = model.state_dict()
    sd = dict(sd)
    # strip a common wrapper prefix if no key matches as-is
    if not any(k in own for k in sd):
        for pre in _KNOWN_PREFIXES:
            sub = {k[len(pre) :]: v for k, v in sd.items() if k.startswith(pre)}
            if sub and any(k in own for k in sub):
                sd = sub
                notes.append(f"stripped prefix {pre!r}")
                break
    # facebookresearch block chunks: blocks.<chunk>.<i>.
    if any(re.match(r"^blocks\.\d+\.\d+\.", k) for k in sd):
        sd = {re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", k): v for k, v in sd.items()}
        notes.append("removed DINOv2 block-chunk indices")
    cfg = model.cfg
    out: dict[str, Tensor] = {}
    fb_registers = "register_tokens" in sd
    for k, v in sd.items():
        nk = k
        if cfg.layout == "timm":
            if k == "register_tokens" or k == "storage_tokens":
                nk = "reg_token"
            elif k == "mask_token" and "mask_token" not in own:
                notes.append("dropped mask_token")
                continue
            nk = re.sub(r"^blocks\.(\d+)\.mlp\.w12\.", r"blocks.\1.mlp.fc1.", nk)
            nk = re.sub(r"^blocks\.(\d+)\.mlp\.w3\.", r"blocks.\1.mlp.fc2.", nk)
        else:
            if k in ("register_tokens", "reg_token"):
                nk = "storage_tokens"
            if k == "mask_token" and v.ndim == 3:
                v = v.reshape(1, -1)
        out[nk] = v
    # DINOv2 with registers: its position table covers CLS; ours (no_embed_class) does not.
    if (
        cfg.layout == "timm"
        and fb_registers
        and not cfg.pos_embed_cls
        and "pos_embed" in out
        and model.pos_embed is not None
        and out["pos_embed"].shape[1] == model.pos_embed.shape[1] + 1
    ):
        pe = out["pos_embed"]
        out["cls_token"] = out["cls_token"] + pe[:, :1]
        out["pos_embed"] = pe[:, 1:]
        notes.append("folded the CLS position into cls_token (DINOv2 registers -> timm no_embed_class)")
    # position grid resize
    if model.pos_embed is not None and "pos_embed" in out and out["pos_embed"].shape != model.pos_embed.shape:
        pe = out["pos_embed"]
        n_cls = int(cfg.class_token) if cfg.pos_embed_cls else 0
        src_patch = pe.shape[1] - n_cls
        g = int(round(math.sqrt(src_patch)))
        if g * g != src_patch or pe.shape[-1] != model.pos_embed.shape[-1]:
            raise CheckpointError(
                f"pos_embed shape {tuple(pe.shape)} cannot be mapped to {tuple(model.pos_embed.shape)}"
            )
        tgt = cfg.grid_size
        grid = pe[:, n_cls:].reshape(1, g, g, -1).permute(0, 3, 1, 2).float()
        grid = F.interpolate(grid, size=(tgt, tgt), mode="bicubic", align_corners=False, antialias=False)
        out["pos_embed"] = torch.cat([pe[:, :n_cls].float(), grid.permute(0, 2, 3, 1).reshape(1, tgt * tgt, -1)], 1)
        notes.append(f"interpolated pos_embed grid {g}x{g} -> {tgt}x{tgt} (bicubic, no antialias)")
    return out, notes


def load_backbone_weights(model: VisionTransformer, path: str | os.PathLike | dict[str, Tensor]) -> list[str]:
    """Load a pretrained backbone (file path or state dict) into ``model`` strictly.

    Accepts timm ``vit_*_dinov2`` keys, facebookresearch DINOv2 keys (``register_tokens``, ``mlp.w12/w3``,
    ``mask_token``, block chunks) and official DINOv3 keys; wrapper prefixes such as ``module.`` or
    ``encoder.patch_encoder.`` are stripped. Missing or unexpected keys, or shape mismatches, raise
    :class:`CheckpointError`. Missing deterministic buffers (``rope_embed.periods``, ``attn.qkv.bias_mask``)
    keep their constructed values, with a note. Returns the list of notes.
    """
    sd = path if isinstance(path, dict) else _read_state_dict(path)
    src = "<state dict>" if isinstance(path, dict) else os.fspath(path)
    out, notes = convert_backbone_state_dict(sd, model)
    own = model.state_dict()
    missing = sorted(k for k in own if k not in out)
    unexpected = sorted(k for k in out if k not in own)
    soft = [k for k in missing if _OPTIONAL_BUFFERS.match(k)]
    missing = [k for k in missing if not _OPTIONAL_BUFFERS.match(k)]
    if missing or unexpected:
        raise CheckpointError(
            f"{src}: backbone keys do not match the model ({len(missing)} missing, {len(unexpected)} unexpected)"
            f"\n  missing: {missing[:20]}{' ...' if len(missing) > 20 else ''}"
            f"\n  unexpected: {unexpected[:20]}{' ...' if len(unexpected) > 20 else ''}"
        )
    bad = [f"{k}: {tuple(out[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in out and out[k].shape != own[k].shape]
    if bad:
        raise CheckpointError(f"{src}: shape mismatch: {bad[:20]}")
    if soft:
        notes.append(f"kept constructed values for {len(soft)} buffers missing from the file")
    with torch.no_grad():
        for k, v in own.items():
            if k in out:
                v.copy_(out[k].to(dtype=v.dtype, device=v.device))
    for n in notes:
        warnings.warn(f"load_backbone_weights: {n}", stacklevel=2)
    return notes
