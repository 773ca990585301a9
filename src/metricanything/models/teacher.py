"""The prompt-conditioned teacher: ViT encoder + DPT decoder with a sparse-metric-prompt branch.

Output parameterisation (see ``docs/design.md``)::

    enc = encode_prompt(prompt_depth, prompt_mask)          # [m (ln z - ln s), m], ln s = ln median prompt depth
    r   = enc.log_scale            where the sample has prompt points
        = ln(f_px / W)             otherwise (canonical inverse depth: depth = f / (W C), so the net gives -ln C)
    F   = dense reference fill of the prompt (prompt_reference "knn_plane" / "fill"; 0 for "scalar" or no prompt;
          "knn_plane" with reference_guide "image" weights its planes by colour similarity to the pixel)
    o   = head(image, enc.features)
    res = B tanh(o / B)            with residual_bound b and a prompt: B = misfit + b (misfit: how far the
                                   pixel's k nearest prompt points are from one plane, in relative depth)
        = o                        otherwise
    res = g res                    with residual_gate g and a prompt (g = 1: as trained, 0: the reference alone)
    depth = exp(r + F + res)                                # metres, > 0 by construction

The network sees the prompt only through the encoded features, so values under ``mask = 0`` never matter.
Any input size works: the image is resized (aspect kept) so that its long side is ``cfg.image_size``, padded at
the bottom/right to a multiple of the patch size, and the prediction is cropped and resized back to the input's
exact H x W.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from metricanything.errors import ConfigError, InvalidInputError
from metricanything.models.dpt import DPTDecoder, GuidedRefiner, masked_pool, push_pull_fill
from metricanything.models.prompt_fill import knn_plane_fill
from metricanything.models.protocol import (
    focal_vector,
    imagenet_denormalise,
    imagenet_normalise,
    weight_dtype,
)
from metricanything.models.vit import VisionTransformer, ViTConfig, load_backbone_weights, vit_config
from metricanything.prompts.encoding import PROMPT_CHANNELS, EncodedPrompt, encode_prompt


def default_hook_indices(depth: int) -> tuple[int, int, int, int]:
    """Four evenly spaced block indices ending at the last block (e.g. 2, 5, 8, 11 for depth 12)."""
    return tuple(max(0, (i + 1) * depth // 4 - 1) for i in range(4))  # type: ignore[return-value]


@dataclass
class TeacherConfig:
    """Everything needed to rebuild a :class:`Teacher` (serialised into ``config.json`` by checkpoints).

    Attributes:
        vit: the encoder's :class:`ViTConfig` (a preset name or a dict is converted on construction).
        hook_indices: 0-based blocks whose outputs feed the four DPT levels (finest level first).
        intermediate_norm: apply the ViT's final norm to the hooked outputs.
        reassemble_channels: channels of the four reassemble projections.
        decoder_features: DPT fusion width ``F``.
        head_features: last hidden width of the head.
        prompt_hidden: hidden width of each prompt stage encoder (0 = prompt-free teacher).
        prompt_levels: fusion levels (0 = finest) that receive the prompt.
        image_size: long side (pixels) every input is resized to before the ViT (aspect kept, then padded to a
            patch multiple); ``None`` keeps the input size (only padding).
        prompt_reference: the depth the network corrects. ``"knn_plane"`` (presets): a per-pixel local plane fit
            in inverse depth to the 8 nearest prompt points
            (:func:`~metricanything.models.prompt_fill.knn_plane_fill`); ``"fill"``: a push-pull fill
            (:func:`~metricanything.models.dpt.push_pull_fill`, the one that ONNX export supports). With both,
            prompted pixels start exact and the network predicts corrections. ``"scalar"``: one reference per
            image (the median prompt depth).
        prompt_fill_channel: also feed the fill to every prompt stage as a third (dense, area-pooled) channel,
            so the decoder sees the reference it corrects (needs a dense reference: ``"fill"`` or ``"knn_plane"``).
        refine_hidden: width of the full-resolution :class:`~metricanything.models.dpt.GuidedRefiner` applied
            to the decoder's residual (0 = none; needs a dense reference).
        residual_bound: ``None``: the network's output is the residual. A value ``b >= 0`` (needs
            ``"knn_plane"``) bounds it where the sample has prompt points: ``residual = B tanh(output / B)``
            with ``B = misfit + b``, ``misfit`` the largest relative distance of the pixel's k nearest prompt points
            from their fitted plane. So ``|residual| <= B``: where the prompt is locally one plane (where the
            reference is exact) the output stays at the reference (within ``b``); near a depth edge or a curved
            surface the network may move it by up to the prompt's own disagreement with the plane.
        reference_guide: ``"none"`` or ``"image"`` (needs ``"knn_plane"``): the local planes weight each prompt
            point by its colour similarity to the pixel (joint-bilateral weights, step 2b of
            :mod:`~metricanything.models.prompt_fill`), so the reference follows the image's edges.
        reference_guide_sigma: the colour scale of ``"image"`` guidance (RGB in [0, 1]).
        residual_gate: multiplies the learned residual where the sample has prompt points (1 = as trained;
            0 = the reference alone; between = a damped correction). Prompt-free samples are not gated.
        name: preset name, informational.
    """

    vit: ViTConfig
    hook_indices: tuple[int, ...] = (2, 5, 8, 11)
    intermediate_norm: bool = True
    reassemble_channels: tuple[int, ...] = (48, 96, 192, 384)
    decoder_features: int = 64
    head_features: int = 32
    prompt_hidden: int = 32
    prompt_levels: tuple[int, ...] = (0, 1, 2, 3)
    image_size: int | None = 518
    prompt_reference: str = "scalar"
    prompt_fill_channel: bool = False
    refine_hidden: int = 0
    residual_bound: float | None = None
    reference_guide: str = "none"
    reference_guide_sigma: float = 0.1
    residual_gate: float = 1.0
    name: str = "custom"

    def __post_init__(self) -> None:
        if self.prompt_reference not in PROMPT_REFERENCES:
            raise ConfigError(
                f"TeacherConfig.prompt_reference must be one of {PROMPT_REFERENCES}, got {self.prompt_reference!r}"
            )
        if (self.prompt_fill_channel or self.refine_hidden) and self.prompt_reference == "scalar":
            raise ConfigError("prompt_fill_channel / refine_hidden need a dense prompt_reference ('fill' or 'knn_plane')")
        if self.residual_bound is not None:
            if self.prompt_reference != "knn_plane":
                raise ConfigError("residual_bound needs prompt_reference='knn_plane' (the misfit of its planes)")
            if not math.isfinite(float(self.residual_bound)) or float(self.residual_bound) < 0:
                raise ConfigError(f"TeacherConfig.residual_bound must be None or >= 0, got {self.residual_bound}")
            self.residual_bound = float(self.residual_bound)
        if self.reference_guide not in REFERENCE_GUIDES:
            raise ConfigError(f"TeacherConfig.reference_guide must be one of {REFERENCE_GUIDES}, "
                              f"got {self.reference_guide!r}")
        if self.reference_guide != "none" and self.prompt_reference != "knn_plane":
            raise ConfigError("reference_guide needs prompt_reference='knn_plane' (it weights the local planes)")
        if not (math.isfinite(float(self.reference_guide_sigma)) and float(self.reference_guide_sigma) > 0):
            raise ConfigError(f"TeacherConfig.reference_guide_sigma must be > 0, got {self.reference_guide_sigma}")
        if not (math.isfinite(float(self.residual_gate)) and 0.0 <= float(self.residual_gate) <= 1.0):
            raise ConfigError(f"TeacherConfig.residual_gate must be in [0, 1], got {self.residual_gate}")
        self.reference_guide_sigma = float(self.reference_guide_sigma)
        self.residual_gate = float(self.residual_gate)
        if self.refine_hidden < 0:
            raise ConfigError(f"TeacherConfig.refine_hidden must be >= 0, got {self.refine_hidden}")
        if len(self.hook_indices) != 4:
            raise ConfigError(f"TeacherConfig.hook_indices needs 4 block indices, got {self.hook_indices}")
        if len(self.reassemble_channels) != 4:
            raise ConfigError(f"TeacherConfig.reassemble_channels needs 4 entries, got {self.reassemble_channels}")
        if self.image_size is not None and self.image_size < 1:
            raise ConfigError(f"TeacherConfig.image_size must be positive or None, got {self.image_size}")
        self.hook_indices = tuple(int(i) for i in self.hook_indices)
        self.reassemble_channels = tuple(int(c) for c in self.reassemble_channels)
        self.prompt_levels = tuple(int(i) for i in self.prompt_levels)
        if isinstance(self.vit, dict):
            self.vit = ViTConfig.from_dict(self.vit)
        if isinstance(self.vit, str):
            self.vit = vit_config(self.vit)

    def to_dict(self) -> dict:
        """JSON-serialisable dict (the ViT config nested as a dict)."""
        d = dataclasses.asdict(self)
        for k in ("hook_indices", "reassemble_channels", "prompt_levels"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict, origin: str = "TeacherConfig") -> TeacherConfig:
        """Inverse of :meth:`to_dict`, strict (:func:`metricanything.config.from_mapping`): unknown keys and wrong
        types raise :class:`ConfigError` naming ``origin`` and the dotted key."""
        from metricanything.config import from_mapping

        return from_mapping(cls, d, origin=origin)


_PRESETS: dict[str, dict] = {
    # unit tests: milliseconds at 32-64 px (image sizes are patch multiples: ViT-test/tiny use patch 14)
    "test": dict(vit="test", reassemble_channels=(8, 16, 16, 32), decoder_features=16, head_features=8,
                 prompt_hidden=8, image_size=56, refine_hidden=8),
    # trains on CPU in minutes at 128-256 px
    "tiny": dict(vit="tiny", reassemble_channels=(24, 48, 96, 192), decoder_features=32, head_features=16,
                 prompt_hidden=16, image_size=252, refine_hidden=16),
    # DINOv2-style ViT-S/14 (can start from a converted DINOv2 ViT-S backbone)
    "small": dict(vit="small", reassemble_channels=(48, 96, 192, 384), decoder_features=64, prompt_hidden=32,
                  image_size=518),
    "base": dict(vit="base", reassemble_channels=(96, 192, 384, 768), decoder_features=128, prompt_hidden=32,
                 image_size=518),
    "large": dict(vit="large", reassemble_channels=(256, 512, 1024, 1024), decoder_features=256,
                  prompt_hidden=64, image_size=518),
    # the released student's backbone (DINOv3 ViT-H+/16) with a DPT decoder
    "huge_plus": dict(vit="huge_plus", reassemble_channels=(256, 512, 1024, 1024), decoder_features=256,
                      prompt_hidden=64, image_size=512),
}

#: the preset names of :func:`teacher_config`
TEACHER_PRESETS = _PRESETS


def teacher_config(name: str, **overrides) -> TeacherConfig:
    """Preset teacher configuration: ``test``, ``tiny``, ``small``, ``base``, ``large`` or ``huge_plus``."""
    if name not in _PRESETS:
        raise ConfigError(f"unknown teacher preset {name!r}; choose one of {sorted(_PRESETS)}")
    kw = {"refine_hidden": 32, **_PRESETS[name], "name": name, "prompt_reference": "knn_plane",
          "prompt_fill_channel": True, **overrides}
    if kw["prompt_reference"] == "scalar":  # the fill extras need the fill reference unless asked for explicitly
        kw["prompt_fill_channel"] = overrides.get("prompt_fill_channel", False)
        kw["refine_hidden"] = overrides.get("refine_hidden", 0)
    if isinstance(kw["vit"], str):
        kw["vit"] = vit_config(kw["vit"])
    kw.setdefault("hook_indices", default_hook_indices(kw["vit"].depth))
    return TeacherConfig(**kw)


#: Accepted ``TeacherConfig.prompt_reference`` values.
PROMPT_REFERENCES = ("scalar", "fill", "knn_plane")
#: Accepted ``TeacherConfig.reference_guide`` values.
REFERENCE_GUIDES = ("none", "image")


def bound_residual(output: torch.Tensor, misfit: torch.Tensor, floor: float, has_prompt: torch.Tensor) -> torch.Tensor:
    """``B tanh(output / B)``, ``B = misfit + floor``, for samples with a prompt; ``output`` otherwise.

    Small corrections pass unchanged, large ones saturate at ``B`` (``residual_bound``)."""
    bound = (misfit + floor).clamp_min(1e-6)
    return torch.where(has_prompt.view(-1, 1, 1, 1), bound * torch.tanh(output / bound), output)


def network_size(height: int, width: int, image_size: int | None, patch: int) -> tuple[int, int, int, int]:
    """(resized H, resized W, padded H, padded W) the network uses for an H x W input."""
    if image_size is None:
        hs, ws = height, width
    else:
        s = image_size / max(height, width)
        hs, ws = max(1, round(height * s)), max(1, round(width * s))
    return hs, ws, math.ceil(hs / patch) * patch, math.ceil(ws / patch) * patch


def _as_batch_vector(value: torch.Tensor | float | None, b: int, name: str) -> torch.Tensor | None:
    if value is None:
        return None
    t = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
    if t.numel() == 1:
        t = t.expand(b)
    if t.numel() != b:
        raise InvalidInputError(f"{name} must be a scalar or have one entry per image ({b}), got {t.numel()}")
    return t


class Teacher(nn.Module):
    """Prompt-conditioned metric depth network (ViT + DPT + prompt branch); see the module docstring."""

    model_kind = "teacher"
    #: registry kind (:mod:`metricanything.models.registry`)
    kind = "teacher"
    #: the teacher has no field-of-view head: every image needs a focal length (or a fallback)
    estimates_focal = False

    def __init__(self, cfg: TeacherConfig) -> None:
        super().__init__()
        self.config = cfg
        self.encoder = VisionTransformer(cfg.vit)
        if max(cfg.hook_indices) >= self.encoder.depth or min(cfg.hook_indices) < 0:
            raise ConfigError(f"hook_indices {cfg.hook_indices} out of range for a ViT of depth {self.encoder.depth}")
        self.decoder = DPTDecoder(
            self.encoder.embed_dim,
            reassemble_channels=cfg.reassemble_channels,
            features=cfg.decoder_features,
            head_features=cfg.head_features,
            prompt_hidden=cfg.prompt_hidden or None,
            prompt_in_channels=PROMPT_CHANNELS + int(cfg.prompt_fill_channel),
            prompt_levels=cfg.prompt_levels,
        )
        self.refiner = GuidedRefiner(cfg.refine_hidden) if cfg.refine_hidden else None

    @property
    def cfg(self) -> TeacherConfig:
        """Alias of :attr:`config`."""
        return self.config

    @property
    def patch_size(self) -> int:
        """Patch size of the encoder."""
        ps = self.encoder.patch_size
        return int(ps[0] if isinstance(ps, (tuple, list)) else ps)

    def prompt_parameters(self) -> list[nn.Parameter]:
        """Parameters of the prompt branch (e.g. for a separate learning rate)."""
        return list(self.decoder.prompt_encoders.parameters())

    def forward(
        self,
        image: torch.Tensor,
        prompt_depth: torch.Tensor | None = None,
        prompt_mask: torch.Tensor | None = None,
        f_px: torch.Tensor | float | None = None,
    ) -> torch.Tensor:
        """Metric depth (B x 1 x H x W, metres, > 0) for ImageNet-normalised images (B x 3 x H x W).

        ``prompt_depth`` / ``prompt_mask`` (B x 1 x H x W, metres / bool) are optional; ``f_px`` (scalar or B,
        horizontal focal in pixels of *this* image) is required for every sample without prompt points.
        """
        return self.forward_with_aux(image, prompt_depth, prompt_mask, f_px)["depth"]

    def predict_depth(
        self,
        image: torch.Tensor,
        f_px: torch.Tensor | float | None,
        prompt_depth: torch.Tensor | None = None,
        prompt_mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The shared call protocol (:mod:`metricanything.models.protocol`) on B x 3 x H x W RGB in [0, 1].

        ``f_px``: B horizontal focal lengths in pixels (no NaN: the teacher cannot estimate one). Returns
        ``depth`` (B x 1 x H x W metres), ``valid`` (all True) and ``f_px`` (float64).
        """
        f = focal_vector(f_px, image.shape[0])
        if bool(torch.isnan(f).any()):
            raise InvalidInputError("the teacher has no field-of-view head: give a focal length for every image")
        depth = self(imagenet_normalise(image).to(weight_dtype(self)), prompt_depth, prompt_mask, f_px=f)
        return {"depth": depth, "valid": torch.ones_like(depth, dtype=torch.bool), "f_px": f}

    def forward_with_aux(
        self,
        image: torch.Tensor,
        prompt_depth: torch.Tensor | None = None,
        prompt_mask: torch.Tensor | None = None,
        f_px: torch.Tensor | float | None = None,
        encoded: EncodedPrompt | None = None,
    ) -> dict[str, torch.Tensor]:
        """Like :meth:`forward`, returning ``depth``, ``log_depth`` (= ``log_ref`` + ``residual`` [+ the prompt's
        dense reference fill of ``prompt_reference``]), ``log_ref``
        (B, float32), ``residual`` (B x 1 x H x W network output) and ``has_prompt`` (B, bool).

        ``encoded`` may be passed instead of ``prompt_depth``/``prompt_mask`` (an already encoded prompt).
        """
        if image.ndim != 4 or image.shape[1] != 3:
            raise InvalidInputError(f"teacher input must be B x 3 x H x W, got {tuple(image.shape)}")
        b, _, h, w = image.shape
        if encoded is None and (prompt_depth is None) != (prompt_mask is None):
            raise InvalidInputError("pass both prompt_depth and prompt_mask, or neither")
        if encoded is None and prompt_depth is not None:
            encoded = encode_prompt(prompt_depth.to(image.device), prompt_mask.to(image.device))
        if encoded is not None and (encoded.features.shape[0] != b or tuple(encoded.features.shape[-2:]) != (h, w)):
            raise InvalidInputError(
                f"prompt is {tuple(encoded.features.shape[-2:])} x batch {encoded.features.shape[0]}, "
                f"image is {(h, w)} x batch {b}"
            )
        has_prompt = (
            encoded.has_prompt.to(image.device)
            if encoded is not None
            else torch.zeros(b, dtype=torch.bool, device=image.device)
        )
        log_ref = self._log_reference(encoded, has_prompt, f_px, b, w, image.device)

        hs, ws, hp, wp = network_size(h, w, self.config.image_size, self.patch_size)
        x = image
        if (hs, ws) != (h, w):
            # resized in float32: antialiased bilinear has no bf16/fp16 CPU kernel
            x = F.interpolate(
                x.float(), size=(hs, ws), mode="bilinear", align_corners=False, antialias=hs < h or ws < w
            ).to(image.dtype)
        x = F.pad(x, (0, wp - ws, 0, hp - hs))
        cfg = self.config
        fill = None  # dense reference fill of the encoded prompt at input resolution (0 without prompt points)
        misfit = None  # how far each pixel's nearest prompt points are from one plane (residual_bound only)
        if cfg.prompt_reference != "scalar" and encoded is not None:
            feats_in = encoded.features.to(image.device, torch.float32)
            if cfg.prompt_reference == "knn_plane":
                guide = None if cfg.reference_guide == "none" else imagenet_denormalise(image.float()).clamp(0, 1)
                bounded = cfg.residual_bound is not None
                out = knn_plane_fill(feats_in[:, :1], feats_in[:, 1:2] > 0.5, return_misfit=bounded, guide=guide,
                                     guide_sigma=cfg.reference_guide_sigma)
                fill, misfit = out if bounded else (out, None)
            else:
                fill = push_pull_fill(feats_in[:, :1], feats_in[:, 1:2] > 0.5)  # prompt_reference "fill"
        # prompt channels at network resolution, padded: value, mask (masked-pooled) [, fill (area-pooled)]
        net_prompt = torch.zeros(b, PROMPT_CHANNELS, hp, wp, device=image.device, dtype=x.dtype)
        if encoded is not None:
            feats = encoded.features.to(image.device, x.dtype)
            if (hs, ws) != (h, w):
                v, _, m = masked_pool(feats[:, :1], feats[:, 1:2], (hs, ws))
                feats = torch.cat([v, m.to(v.dtype)], dim=1)
            net_prompt = F.pad(feats, (0, wp - ws, 0, hp - hs))
        fill_net = self._fill_at(fill, hs, ws, hp, wp, x) if (cfg.prompt_fill_channel or self.refiner is not None) else None
        if cfg.prompt_fill_channel:
            net_prompt = torch.cat([net_prompt, fill_net], dim=1)
        tokens = self.encoder.get_intermediate_layers(x, list(cfg.hook_indices), norm=cfg.intermediate_norm)
        residual = self.decoder(list(tokens), (hp, wp), net_prompt if self.decoder.has_prompt_branch else None)
        if self.refiner is not None:
            residual = self.refiner(x, fill_net, net_prompt[:, 1:2], residual)
        residual = residual[..., :hs, :ws].float()
        if (hs, ws) != (h, w):
            residual = F.interpolate(residual, size=(h, w), mode="bilinear", align_corners=False)
        if misfit is not None:
            residual = bound_residual(residual, misfit, cfg.residual_bound, has_prompt)
        if cfg.residual_gate != 1.0:
            residual = torch.where(has_prompt.view(-1, 1, 1, 1), residual * cfg.residual_gate, residual)
        log_depth = residual + log_ref.view(b, 1, 1, 1)
        if fill is not None:
            log_depth = log_depth + fill
        return {
            "depth": torch.exp(log_depth),
            "log_depth": log_depth,
            "log_ref": log_ref,
            "residual": residual,
            "has_prompt": has_prompt,
        }

    @staticmethod
    def _fill_at(fill: torch.Tensor | None, hs: int, ws: int, hp: int, wp: int, like: torch.Tensor) -> torch.Tensor:
        """The fill area-pooled to the network size and padded (zeros without a prompt)."""
        if fill is None:
            return torch.zeros(like.shape[0], 1, hp, wp, device=like.device, dtype=like.dtype)
        if tuple(fill.shape[-2:]) != (hs, ws):
            fill = masked_pool(fill, torch.ones_like(fill), (hs, ws))[0]
        return F.pad(fill.to(like.dtype), (0, wp - ws, 0, hp - hs))

    @staticmethod
    def _log_reference(
        encoded: EncodedPrompt | None,
        has_prompt: torch.Tensor,
        f_px: torch.Tensor | float | None,
        b: int,
        width: int,
        device: torch.device,
    ) -> torch.Tensor:
        f = _as_batch_vector(f_px, b, "f_px")
        if f is not None:
            if not bool(torch.isfinite(f).all()) or bool((f <= 0).any()):
                raise InvalidInputError(f"f_px must be finite and > 0, got {f.tolist()}")
            canonical = torch.log(f / float(width)).to(device=device, dtype=torch.float32)
        else:
            if not bool(has_prompt.all()):
                raise InvalidInputError(
                    "the teacher needs f_px (focal length in pixels) for images without prompt points"
                )
            canonical = torch.zeros(b, device=device)
        if encoded is None:
            return canonical
        return torch.where(has_prompt, encoded.log_scale.to(device=device, dtype=torch.float32), canonical)

    def load_backbone(self, path: str) -> list[str]:
        """Initialise the ViT from a pretrained backbone file; returns what the loader reports.

        See :func:`metricanything.models.vit.load_backbone_weights` (timm/DINOv2 and DINOv3 layouts).
        """
        return load_backbone_weights(self.encoder, path)


def teacher_from_config(cfg: TeacherConfig | str, **overrides) -> Teacher:
    """Build a teacher from a config or a preset name (overrides apply to presets)."""
    if isinstance(cfg, str):
        cfg = teacher_config(cfg, **overrides)
    elif overrides:
        cfg = replace(cfg, **overrides)
    return Teacher(cfg)
