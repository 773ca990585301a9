"""Student-PointMap: the released MetricAnything point-map student (a fine-tuned MoGe-2 ViT-L), in plain torch.

Structure (module and parameter names are the official state-dict keys, so ``student_pointmap.pt`` loads
unchanged and strictly):

* ``encoder`` – DINOv2 ViT (``encoder.backbone``, official key names incl. the unused ``mask_token``) on the
  image resized (antialiased bilinear) to a token grid chosen per image; four selected layers, final-normed,
  1x1-projected (``encoder.output_projections``) and summed; the CLS token of the last one feeds the scale head.
  ``encoder.image_mean`` / ``image_std`` are buffers of the checkpoint.
* ``neck`` – ConvStack over 5 levels (token grid x1 .. x16); view-plane uv is concatenated at every level.
* ``points_head`` / ``mask_head`` – ConvStacks giving an affine-invariant point map (remapped, e.g. ``exp``)
  and mask logits at 16x the token grid, resized to the input size.
* ``scale_head`` – MLP on the CLS token -> log metric scale.

:meth:`PointMapModel.infer` turns the affine point map into a metric one: focal and z shift are recovered by
the released solver (:mod:`metricanything.models.pointmap_geometry`), or only the shift for a given field of
view / focal; intrinsics have the principal point at the image centre. Files: :func:`from_official_checkpoint`
reads the released ``{"model_config": ..., "model": state_dict}`` ``.pt`` without unpickling code
(``torch.load(weights_only=True)``); :func:`save_official_checkpoint` writes the same format.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metricanything.camera import Intrinsics
from metricanything.errors import CheckpointError, ConfigError, InputFileError, InvalidInputError
from metricanything.models.pointmap_config import (
    _LEVELS,
    POINTMAP_BACKBONES,
    POINTMAP_PRESETS,
    ConvStackConfig,
    PointMapConfig,
    PointMapEncoderConfig,
    _per_level,
    pointmap_config,
)
from metricanything.models.pointmap_geometry import (
    depth_to_points,
    focal_from_fov_x,
    focal_from_fx_px,
    intrinsics_from_focal,
    normalized_view_plane_uv,
    recover_focal_shift,
    token_grid,
    tokens_for_level,
)
from metricanything.models.protocol import focal_vector
from metricanything.models.vit import VisionTransformer, ViTConfig

__all__ = [
    "OFFICIAL_POINTMAP_FILE",
    "OFFICIAL_POINTMAP_HUB_ID",
    "POINTMAP_BACKBONES",
    "POINTMAP_PRESETS",
    "ConvStackConfig",
    "PointMapEncoderConfig",
    "PointMapConfig",
    "pointmap_config",
    "DINOv2Backbone",
    "PointMapEncoder",
    "ConvStack",
    "PointMapModel",
    "PointMapPrediction",
    "image_to_tensor",
    "read_official_checkpoint",
    "from_official_checkpoint",
    "save_official_checkpoint",
    "tiny_random_pointmap",
]

#: File name of the released checkpoint, and the Hugging Face repository that hosts it.
OFFICIAL_POINTMAP_FILE = "student_pointmap.pt"
OFFICIAL_POINTMAP_HUB_ID = "yjh001/metricanything_student_pointmap"


# ------------------------------------------------------------------------------------------------ modules


class DINOv2Backbone(VisionTransformer):
    """:class:`VisionTransformer` with the official DINOv2 key set: adds ``mask_token`` (1, D), unused at inference."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__(cfg)
        self.mask_token = nn.Parameter(torch.zeros(1, cfg.embed_dim))


class PointMapEncoder(nn.Module):
    """Image -> (summed projected features (B, dim_out, rows, cols), CLS token (B, D)) at a given token grid."""

    def __init__(self, cfg: PointMapEncoderConfig) -> None:
        super().__init__()
        vc = cfg.vit_config()
        self.layers = cfg.layers()
        self.backbone = DINOv2Backbone(vc)
        self.output_projections = nn.ModuleList(
            [nn.Conv2d(vc.embed_dim, cfg.dim_out, kernel_size=1) for _ in self.layers]
        )
        self.register_buffer("image_mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("image_std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def preprocess(self, image: Tensor, rows: int, cols: int) -> Tensor:
        """Antialiased bilinear resize to (14 rows, 14 cols) (aspect not kept exactly), then normalisation."""
        p = self.backbone.patch_size
        x = F.interpolate(image, (rows * p, cols * p), mode="bilinear", align_corners=False, antialias=True)
        return (x - self.image_mean) / self.image_std

    def forward(self, image: Tensor, rows: int, cols: int) -> tuple[Tensor, Tensor]:
        vit = self.backbone
        _, raw = vit.forward_with_intermediates(self.preprocess(image, rows, cols), self.layers)
        normed = [vit.norm(t) for t in raw]
        n0 = vit.num_prefix_tokens
        maps = [t[:, n0:].permute(0, 2, 1).unflatten(2, (rows, cols)).contiguous() for t in normed]
        feats = torch.stack([proj(m) for proj, m in zip(self.output_projections, maps, strict=True)], dim=1).sum(dim=1)
        return feats, normed[-1][:, 0]


def _conv3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, padding=1, padding_mode="replicate")


class ResidualConvBlock(nn.Module):
    """x + conv3(relu(conv3(relu(x)))) (3x3 convs with replicate padding; norm slots are identities)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Identity(), nn.ReLU(), _conv3(dim, hidden), nn.Identity(), nn.ReLU(), _conv3(hidden, dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x) + x


def _resampler(kind: str, cin: int, cout: int) -> nn.Sequential:
    if kind == "conv_transpose":
        return nn.Sequential(nn.ConvTranspose2d(cin, cout, kernel_size=2, stride=2), _conv3(cout, cout))
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), _conv3(cin, cout))


class ConvStack(nn.Module):
    """Multi-level conv decoder: per level, 1x1 input conv (added to the upsampled running map), residual
    blocks, optional 1x1 output conv; x2 resampling between levels. Returns every level's output."""

    def __init__(self, cfg: ConvStackConfig) -> None:
        super().__init__()
        dims = cfg.dim_res_blocks
        n = cfg.levels
        self.input_blocks = nn.ModuleList(
            [nn.Conv2d(di, d, kernel_size=1) if di is not None else nn.Identity()
             for di, d in zip(cfg.dims_in(), dims, strict=True)]
        )
        self.resamplers = nn.ModuleList(
            [_resampler(kind, dims[i], dims[i + 1])
             for i, kind in enumerate(_per_level(cfg.resamplers, n - 1, "resamplers"))]
        )
        self.res_blocks = nn.ModuleList(
            [nn.Sequential(*[ResidualConvBlock(d, cfg.dim_times_res_block_hidden * d) for _ in range(k)])
             for d, k in zip(dims, _per_level(cfg.num_res_blocks, n, "num_res_blocks"), strict=True)]
        )
        self.output_blocks = nn.ModuleList(
            [nn.Conv2d(d, do, kernel_size=1) if do is not None else nn.Identity()
             for do, d in zip(cfg.dims_out(), dims, strict=True)]
        )

    def forward(self, inputs: Sequence[Tensor | None]) -> list[Tensor]:
        outs: list[Tensor] = []
        x: Tensor | None = None
        for i, res in enumerate(self.res_blocks):
            f = self.input_blocks[i](inputs[i]) if inputs[i] is not None else None
            if x is None:
                if f is None:
                    raise InvalidInputError("the first ConvStack level needs an input")
                x = f
            elif f is not None:
                x = x + f
            x = res(x)
            outs.append(self.output_blocks[i](x))
            if i < len(self.res_blocks) - 1:
                x = self.resamplers[i](x)
        return outs


def _mlp(dims: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-2], dims[1:-1], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(dims[-2], dims[-1]))
    return nn.Sequential(*layers)


# ------------------------------------------------------------------------------------------------ the model


@dataclass
class PointMapPrediction:
    """Output of :meth:`PointMapModel.infer` (batch axis present only for a 4-D input).

    ``points`` ([B,] H, W, 3) metric camera-space points, OpenCV frame (x right, y down, z forward), +inf where
    ``mask`` is false when ``apply_mask``; ``depth`` ([B,] H, W) their z; ``mask`` bool; ``intrinsics``
    ([B,] 3, 3) normalised by width / height (principal point 0.5, 0.5); ``focal`` relative to the half image
    diagonal; ``shift`` the z shift added to the affine map; ``metric_scale`` the factor applied; ``fit_rms`` the
    RMS view-plane residual of the focal/shift fit (half-diagonal units; a goodness of fit, not an error);
    ``intrinsics_source``: ``"estimated"`` (recovered from the point map) or ``"given"`` (fov_x / fx_px; the
    shift alone was solved); ``token_grid`` the (rows, cols) the ViT ran at.
    """

    points: Tensor
    depth: Tensor
    mask: Tensor
    intrinsics: Tensor
    focal: Tensor
    shift: Tensor
    metric_scale: Tensor
    fit_rms: Tensor
    intrinsics_source: str
    token_grid: tuple[int, int]

    def camera_intrinsics(self, index: int = 0) -> Intrinsics:
        """Pixel intrinsics of image ``index`` in this project's convention (pixel centres at integers).

        fx = K[0, 0] W, fy = K[1, 1] H, cx = K[0, 2] W - 0.5, cy = K[1, 2] H - 0.5.
        """
        k = self.intrinsics if self.intrinsics.ndim == 3 else self.intrinsics[None]
        h, w = self.depth.shape[-2:]
        kk = k[index].double().cpu()
        return Intrinsics(float(kk[0, 0]) * w, float(kk[1, 1]) * h, float(kk[0, 2]) * w - 0.5,
                          float(kk[1, 2]) * h - 0.5, w, h)


class PointMapModel(nn.Module):
    """Student-PointMap. ``forward(image, num_tokens)`` gives the raw outputs; :meth:`infer` the metric geometry;
    :meth:`predict_depth` the shared call protocol of :mod:`metricanything.models.registry`."""

    #: registry kind (:mod:`metricanything.models.registry`)
    kind = "pointmap"
    model_kind = "pointmap"
    #: the focal length is recovered from the affine point map when not given
    estimates_focal = True

    def __init__(self, cfg: PointMapConfig | None = None) -> None:
        super().__init__()
        cfg = cfg if cfg is not None else PointMapConfig()
        self.cfg = cfg
        self.encoder = PointMapEncoder(cfg.encoder)
        self.neck = ConvStack(cfg.neck)
        self.points_head = ConvStack(cfg.points_head)
        self.mask_head = ConvStack(cfg.mask_head)
        self.scale_head = _mlp(cfg.scale_head_dims)

    @property
    def config(self) -> PointMapConfig:
        """Alias of :attr:`cfg`."""
        return self.cfg

    # -- raw network ----------------------------------------------------------------------------------------
    @staticmethod
    def _check_image(image: Tensor) -> None:
        if image.ndim != 4 or image.shape[1] != 3:
            raise InvalidInputError(f"expected an RGB image (B, 3, H, W) or (3, H, W), got shape {tuple(image.shape)}")
        if not image.is_floating_point():
            raise InvalidInputError(f"expected a float image in [0, 1], got dtype {image.dtype} (divide uint8 by 255)")

    def neck_inputs(self, features: Tensor, rows: int, cols: int, aspect_ratio: float) -> list[Tensor]:
        """Encoder features with view-plane uv appended (level 0), then uv alone at 2x, 4x, 8x, 16x."""
        b = features.shape[0]
        out: list[Tensor] = []
        for level in range(_LEVELS):
            uv = normalized_view_plane_uv(cols * 2**level, rows * 2**level, aspect_ratio, features.dtype,
                                          features.device)
            uv = uv.permute(2, 0, 1).unsqueeze(0).expand(b, -1, -1, -1)
            out.append(torch.cat([features, uv], dim=1) if level == 0 else uv)
        return out

    def remap_points(self, points: Tensor) -> Tensor:
        """Channels-last raw points -> affine point map (``exp``: z = exp(c2), (x, y) = (c0, c1) z)."""
        mode = self.cfg.remap_output
        if mode == "linear":
            return points
        if mode == "sinh":
            return torch.sinh(points)
        xy, z = points.split([2, 1], dim=-1)
        z = torch.exp(z)
        return torch.cat([xy * z if mode == "exp" else torch.sinh(xy), z], dim=-1)

    def forward(self, image: Tensor, num_tokens: int) -> dict[str, Tensor]:
        """(B, 3, H, W) float RGB in [0, 1] -> ``points`` (B, H, W, 3) affine-invariant, ``mask`` (B, H, W)
        probability, ``metric_scale`` (B,). The ViT runs on a rows x cols grid with rows * cols ~ num_tokens."""
        self._check_image(image)
        _, _, h, w = image.shape
        aspect = w / h
        rows, cols = token_grid(num_tokens, aspect)
        features, cls_token = self.encoder(image, rows, cols)
        levels = self.neck(self.neck_inputs(features, rows, cols, aspect))
        points = self.points_head(levels)[-1]
        mask = self.mask_head(levels)[-1]
        scale = self.scale_head(cls_token)
        points, mask = (F.interpolate(v, (h, w), mode="bilinear", align_corners=False, antialias=False)
                        for v in (points, mask))
        return {
            "points": self.remap_points(points.permute(0, 2, 3, 1)),
            "mask": mask.squeeze(1).sigmoid(),
            "metric_scale": scale.squeeze(1).exp(),
        }

    # -- inference ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def infer(
        self,
        image: Tensor,
        *,
        num_tokens: int | None = None,
        resolution_level: int = 9,
        force_projection: bool = True,
        apply_mask: bool = True,
        fov_x: float | Tensor | None = None,
        fx_px: float | Tensor | None = None,
        use_fp16: bool = False,
    ) -> PointMapPrediction:
        """Metric point map, depth, mask and intrinsics of (B, 3, H, W) or (3, H, W) float RGB in [0, 1].

        ``num_tokens`` defaults to ``int(min + resolution_level / 9 * (max - min))`` of ``num_tokens_range``.
        Intrinsics: recovered from the point map (focal and shift, released solver) unless ``fov_x`` (degrees) or
        ``fx_px`` (focal in pixels, square pixels) is given, in which case only the shift is solved. The
        principal point is always the image centre. ``force_projection`` recomputes points from depth and
        intrinsics; ``apply_mask`` puts +inf outside the mask. ``use_fp16`` runs the network under float16
        autocast (the released code's default; ours is float32); post-processing is float32. Runs under
        ``no_grad`` (the released code uses ``inference_mode``; same numbers, but our outputs stay editable).
        """
        if fov_x is not None and fx_px is not None:
            raise InvalidInputError("give at most one of fov_x and fx_px")
        squeeze = image.ndim == 3
        if squeeze:
            image = image.unsqueeze(0)
        self._check_image(image)
        ref = next(self.parameters())
        image = image.to(dtype=ref.dtype, device=ref.device)
        b, _, h, w = image.shape
        aspect = w / h
        if num_tokens is None:
            num_tokens = tokens_for_level(resolution_level, self.cfg.num_tokens_range)
        grid = token_grid(num_tokens, aspect)
        dev = ref.device.type
        outer = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else None
        amp = torch.float16 if use_fp16 else outer  # an enclosing autocast (e.g. api.infer's) runs the network
        on = amp is not None and amp != ref.dtype
        with torch.autocast(device_type=dev, dtype=amp or torch.bfloat16, enabled=on):
            out = self.forward(image, num_tokens)
        with torch.autocast(device_type=dev, enabled=False):  # post-processing in float32
            return self._metric(out, b, h, w, grid, fov_x, fx_px, force_projection, apply_mask, squeeze)

    def _metric(self, out: dict[str, Tensor], b: int, h: int, w: int, grid: tuple[int, int],
                fov_x: float | Tensor | None, fx_px: float | Tensor | None, force_projection: bool,
                apply_mask: bool, squeeze: bool) -> PointMapPrediction:
        """:meth:`infer`'s post-processing: raw outputs -> metric points, depth, mask and intrinsics."""
        aspect = w / h
        points, mask_prob, scale = (out[k].float() for k in ("points", "mask", "metric_scale"))
        mask = mask_prob > 0.5
        if fov_x is None and fx_px is None:
            focal, shift, rms = recover_focal_shift(points, mask)
            source = "estimated"
        else:
            if fov_x is not None:
                given = focal_from_fov_x(fov_x, aspect, b, points.dtype, points.device)
            else:
                given = focal_from_fx_px(fx_px, w, h, b, points.dtype, points.device)
            focal, shift, rms = recover_focal_shift(points, mask, focal=given)
            source = "given"
        intrinsics = intrinsics_from_focal(focal, aspect)
        points[..., 2] += shift[..., None, None]
        mask &= points[..., 2] > 0
        depth = points[..., 2].clone()
        if force_projection:
            points = depth_to_points(depth, intrinsics)
        points *= scale[:, None, None, None]
        depth *= scale[:, None, None]
        if apply_mask:
            points = torch.where(mask[..., None], points, torch.inf)
            depth = torch.where(mask, depth, torch.inf)
        res = PointMapPrediction(points, depth, mask, intrinsics, focal, shift, scale, rms, source, grid)
        if squeeze:
            for f in ("points", "depth", "mask", "intrinsics", "focal", "shift", "metric_scale", "fit_rms"):
                setattr(res, f, getattr(res, f).squeeze(0))
        return res

    @torch.no_grad()
    def predict_depth(
        self,
        image: Tensor,
        f_px: Tensor | float | None,
        prompt_depth: Tensor | None = None,
        prompt_mask: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """The shared call protocol (:mod:`metricanything.models.protocol`) on (B, 3, H, W) RGB in [0, 1].

        Images with a NaN (unknown) ``f_px`` get the focal recovered from the point map; the others keep theirs
        (only the shift is solved). Returns ``depth`` (B, H, W) metres, ``valid`` (the mask, positive depth),
        ``f_px`` (float64), ``points`` (B, H, W, 3) and ``metric_scale``. Prompt-free: prompts raise.
        """
        if prompt_depth is not None or prompt_mask is not None:
            raise InvalidInputError("the point-map model is prompt-free; pass prompt=None (or use a teacher)")
        b, _, h, w = image.shape
        f = focal_vector(f_px, b)
        unknown = torch.isnan(f)
        preds = []
        if bool(unknown.any()):
            preds.append((unknown, self.infer(image, apply_mask=False)))
        if not bool(unknown.all()):
            known = torch.where(unknown, torch.ones_like(f), f)  # placeholders where the estimate is used
            preds.append((~unknown, self.infer(image, fx_px=known, apply_mask=False)))
        sel = {}
        for k in ("depth", "mask", "points", "metric_scale"):
            value = getattr(preds[0][1], k)
            for which, pred in preds[1:]:
                m = which.to(value.device).view(-1, *([1] * (value.ndim - 1)))
                value = torch.where(m, getattr(pred, k), value)
            sel[k] = value
        f_out = f.clone()
        for which, pred in preds:
            est = pred.intrinsics[:, 0, 0].double().cpu() * w
            f_out = torch.where(which & unknown, est, f_out)
        return {"depth": sel["depth"], "valid": sel["mask"] & (sel["depth"] > 0), "f_px": f_out,
                "points": sel["points"], "metric_scale": sel["metric_scale"]}


def image_to_tensor(rgb: np.ndarray) -> Tensor:
    """(3, H, W) float32 model input from an H x W x 3 uint8 RGB array, as the released ``infer.py`` builds it
    (``float32(u8 / 255.0)`` computed in float64)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise InvalidInputError(f"expected an H x W x 3 uint8 RGB image, got shape {rgb.shape} dtype {rgb.dtype}")
    return torch.from_numpy((rgb / 255.0).astype(np.float32)).permute(2, 0, 1).contiguous()


# ------------------------------------------------------------------------------------------------ files


def read_official_checkpoint(source: str | os.PathLike | Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """(model_config, state_dict) of a released-format checkpoint: a ``.pt`` path or the loaded dict.

    Files are read with ``torch.load(weights_only=True)``: only tensors and plain containers are accepted, and
    nothing in the file can run code. Other top-level entries of the dict (metadata) are ignored, as the
    released loader does. Raises :class:`InputFileError` (missing / unreadable / unsafe file) or
    :class:`CheckpointError` (wrong content). A hub id is resolved to a file by the caller, e.g.
    ``huggingface_hub.hf_hub_download(OFFICIAL_POINTMAP_HUB_ID, OFFICIAL_POINTMAP_FILE)``.
    """
    if isinstance(source, Mapping):
        obj: Any = source
        name = "<checkpoint dict>"
    else:
        path = Path(source).expanduser()
        name = str(path)
        if not path.is_file():
            raise InputFileError(path, f"no such checkpoint file (download {OFFICIAL_POINTMAP_FILE} from the "
                                       f"Hugging Face repository {OFFICIAL_POINTMAP_HUB_ID})")
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - corrupt files and refused pickles raise many types
            raise InputFileError(path, f"cannot read it as a plain (weights-only) PyTorch checkpoint; files that "
                                       f"need arbitrary unpickling are refused ({type(e).__name__}: {e})") from e
    if not isinstance(obj, Mapping) or "model" not in obj or "model_config" not in obj:
        keys = sorted(obj) if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(f"{name}: not a Student-PointMap checkpoint (expected a dict with 'model_config' "
                              f"and 'model'; found {keys})")
    cfg, state = obj["model_config"], obj["model"]
    if not isinstance(cfg, Mapping):
        raise CheckpointError(f"{name}: 'model_config' must be a dict, got {type(cfg).__name__}")
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{name}: 'model' must be a state dict, got {type(state).__name__}")
    return dict(cfg), dict(state)


def from_official_checkpoint(
    source: str | os.PathLike | Mapping[str, Any],
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    name: str | None = None,
) -> PointMapModel:
    """Build a :class:`PointMapModel` from the released ``student_pointmap.pt`` (path or loaded dict), strictly.

    The architecture comes from the file's ``model_config`` (unknown keys raise); the state dict must hold
    exactly the model's keys with the model's shapes (:class:`CheckpointError` names the missing, unexpected and
    mis-shaped keys). Floating tensors are cast to the model's dtype. Returns the model in eval mode.
    """
    from metricanything.models.checkpoint import check_state_dict, load_state_dict_strict

    model_config, state = read_official_checkpoint(source)
    name = name or ("<checkpoint dict>" if isinstance(source, Mapping) else str(source))
    try:
        cfg = PointMapConfig.from_dict(model_config)
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{name}: invalid model_config: {e}") from e
    with torch.device("meta"):
        model = PointMapModel(cfg)
    check_state_dict(model, state, name)  # names and shapes, before allocating anything
    model = model.to_empty(device="cpu")  # every buffer is persistent: the state dict overwrites all tensors
    load_state_dict_strict(model, state, name)
    model = model.to(device=device)
    if dtype is not None:
        model = model.to(dtype=dtype)
    return model.eval()


def save_official_checkpoint(model: PointMapModel, path: str | os.PathLike) -> Path:
    """Write ``model`` in the released format ``{"model_config": dict, "model": state_dict}`` (atomically).

    The file holds only plain types and tensors, so it loads with ``torch.load(weights_only=True)`` here and
    with the official code.
    """
    from metricanything.atomic import atomic_path

    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    payload = {"model_config": model.cfg.to_dict(), "model": state}
    target = Path(path)
    with atomic_path(target) as tmp:
        torch.save(payload, str(tmp))
    return target


@torch.no_grad()
def tiny_random_pointmap(seed: int = 0, image_size: tuple[int, int] = (96, 128)) -> PointMapModel:
    """A seeded ``fixture_tiny`` model whose outputs behave like a camera (for tests and demos, not for use).

    Random weights, then the points head's output conv is fitted (least squares) so that x/z, y/z follow the
    view plane of a ~60 degree camera with a mildly varying depth, and the mask head's bias makes every pixel
    valid. The result is deterministic for a given seed.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = PointMapModel(pointmap_config("fixture_tiny")).eval()
    h, w = image_size
    image = torch.rand(1, 3, h, w, generator=gen)
    rows, cols = token_grid(model.cfg.num_tokens_range[1], w / h)
    feats, _ = model.encoder(image, rows, cols)
    levels = model.neck(model.neck_inputs(feats, rows, cols, w / h))
    head = model.points_head
    captured: list[Tensor] = []
    hook = head.output_blocks[-1].register_forward_hook(lambda m, i, o: captured.append(i[0]))
    head(levels)
    hook.remove()
    x = captured[0][0]  # (C, h16, w16): features entering the output conv
    c, hh, ww = x.shape
    design = torch.cat([x.reshape(c, -1).T, torch.ones(hh * ww, 1)], dim=1).double()
    uv = normalized_view_plane_uv(ww, hh, w / h).reshape(-1, 2).double()
    focal = 1.0 / math.tan(math.radians(30.0)) * (w / h) / math.hypot(1.0, w / h)  # 60 degree horizontal FoV
    sol = torch.linalg.lstsq(design, uv / focal).solution  # (C + 1, 2): x/z, y/z = uv / focal
    conv = head.output_blocks[-1]
    conv.weight[:2] = sol[:-1].T.reshape(2, c, 1, 1).float()
    conv.bias[:2] = sol[-1].float()
    conv.weight[2] *= 0.1 / conv.weight[2].std().clamp_min(1e-12)
    conv.bias[2] = 0.7
    model.mask_head.output_blocks[-1].bias.fill_(8.0)
    return model
