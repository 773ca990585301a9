"""ONNX export of the teacher and the student, with dynamic batch, height and width.

The PyTorch models validate their inputs with Python branches on tensor values (``bool(tensor)``), take the
prompt median with ``torch.nanmedian`` and pick code paths from the input size. None of that can be traced into
a graph that works at every size, so export goes through two thin wrappers that reuse the models' own
submodules and weights and reproduce their math with traceable ops:

* :class:`TeacherExportWrapper` ``(image, prompt_depth, prompt_mask, f_px) -> depth``. The prompt median is a
  sort with ``+inf`` fill and a gather at index ``(n - 1) // 2`` (the lower median, like ``torch.nanmedian``);
  masked pooling (``adaptive_avg_pool2d`` windows) is a product with 0/1 window matrices built from ``arange``;
  the "resize or not" and "prompted or not" branches become ops that are exact identities in the skipped case
  (same-size bilinear/bicubic resampling, ``torch.where``).
* :class:`StudentExportWrapper` ``(image, f_px) -> depth``: the official ``infer`` conventions (squash to S x S,
  inverse depth = C W / f_px, resize back, clamp inverse depth to [1e-3, 1e3], depth = 1 / inverse depth).

Both wrappers are checked against the models' own ``forward`` / ``infer`` (``tests/test_export.py``). The ONNX
file is produced by the ``torch.export``-based exporter (``torch.onnx.export(..., dynamo=True)``) and written
atomically. See ``docs/design.md`` for the input/output contract and known limits.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metricanything.errors import CheckpointError, InvalidInputError, MetricAnythingError
from metricanything.extras import require_extra
from metricanything.models.checkpoint import from_pretrained
from metricanything.models.dpt import push_pull_fill
from metricanything.models.registry import kind_of
from metricanything.models.student import INVERSE_DEPTH_CLAMP, Student, fov_to_focal
from metricanything.models.teacher import Teacher
from metricanything.tasks.options import option

__all__ = [
    "DEFAULT_OPSET",
    "ExportError",
    "ExportOptions",
    "ExportResult",
    "StudentExportWrapper",
    "TeacherExportWrapper",
    "encode_prompt_traceable",
    "example_inputs",
    "export_onnx",
    "export_wrapper",
    "masked_pool_traceable",
    "onnx_io_names",
    "reference_outputs",
    "run",
    "run_onnx",
    "verify_onnx",
]

#: Default ONNX opset (18 is the first with ``Resize(antialias=1)``, which the teacher's downscale needs).
DEFAULT_OPSET = 18
#: Above this many bytes of weights the initialisers go to an external ``<name>.data`` file (protobuf's
#: hard limit is 2 GiB per file).
EXTERNAL_DATA_THRESHOLD = 1 << 30


class ExportError(MetricAnythingError):
    """The model could not be exported to ONNX (or the exported graph failed verification)."""


# ---------------------------------------------------------------------------------------------------------
# Traceable building blocks
# ---------------------------------------------------------------------------------------------------------


def _window_matrix(n_in: int, n_out: int, like: Tensor) -> Tensor:
    """(n_out, n_in) 0/1 matrix of ``adaptive_avg_pool`` windows: [floor(i n_in / n_out), ceil((i+1) n_in / n_out))."""
    i = torch.arange(n_out, device=like.device)
    j = torch.arange(n_in, device=like.device)
    start = torch.div(i * n_in, n_out, rounding_mode="floor")
    end = torch.div((i + 1) * n_in + n_out - 1, n_out, rounding_mode="floor")
    inside = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    return inside.to(like.dtype)


def masked_pool_traceable(value: Tensor, weight: Tensor, size: tuple[Any, Any]) -> tuple[Tensor, Tensor]:
    """Same value/mask as :func:`metricanything.models.dpt.masked_pool` for any (symbolic) sizes.

    Window sums are ``A_h @ x @ A_w^T`` with 0/1 window matrices, so there is no size-dependent branch and no
    ``adaptive_*_pool`` op (which ONNX lacks). ``weight`` is a non-negative B x 1 x H x W map; the returned mask
    is ``window weight sum > 0``, i.e. "any pixel observed" for a 0/1 mask.
    """
    weight = weight.to(value.dtype)
    observed = weight > 0
    vw = torch.where(observed, value, torch.zeros_like(value)) * weight
    h_in, w_in = value.shape[-2], value.shape[-1]
    a_h = _window_matrix(h_in, size[0], value)
    a_w = _window_matrix(w_in, size[1], value)
    num = torch.matmul(torch.matmul(a_h, vw), a_w.t())
    wsum = torch.matmul(torch.matmul(a_h, weight), a_w.t())
    mask = wsum > 0
    pooled = torch.where(mask, num / torch.where(mask, wsum, torch.ones_like(wsum)), torch.zeros_like(num))
    return pooled, mask


def encode_prompt_traceable(depth: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Traceable :func:`metricanything.prompts.encoding.encode_prompt` (no input validation).

    Returns (features B x 2 x H x W, log_scale B, has_prompt B bool). The median is the lower median of the
    masked log depths (sort with ``+inf`` fill, element ``(n - 1) // 2``), as ``torch.nanmedian`` gives.
    """
    b = depth.shape[0]
    depth = depth.to(torch.float32)
    log_z = torch.log(torch.where(mask, depth, torch.ones_like(depth)))
    flat = torch.where(mask, log_z, torch.full_like(log_z, float("inf"))).reshape(b, -1)
    count = mask.reshape(b, -1).to(torch.int64).sum(dim=1)
    has_prompt = count > 0
    ordered = torch.sort(flat, dim=1).values
    k = torch.clamp(torch.div(count - 1, 2, rounding_mode="floor"), min=0)
    median = torch.gather(ordered, 1, k[:, None])[:, 0]
    log_scale = torch.where(has_prompt, median, torch.zeros_like(median))
    value = torch.where(mask, log_z - log_scale.view(b, 1, 1, 1), torch.zeros_like(log_z))
    return torch.cat([value, mask.to(value.dtype)], dim=1), log_scale, has_prompt


def _vit_intermediate_maps(vit: nn.Module, x: Tensor, indices: list[int], norm: bool) -> list[Tensor]:
    """``VisionTransformer.get_intermediate_layers`` without size checks: the learned position table is always
    resized (bicubic, no antialias: an exact identity at the native grid), so no branch depends on the size."""
    p = vit.patch_size
    gh, gw = x.shape[-2] // p, x.shape[-1] // p
    cfg = vit.cfg
    t = vit.patch_embed(x)
    b = t.shape[0]
    prefix: list[Tensor] = []
    if vit.cls_token is not None:
        cls = vit.cls_token
        if cfg.layout == "dinov3":
            cls = cls + 0 * vit.mask_token
        prefix.append(cls.expand(b, -1, -1))
    reg = vit._register_tokens()
    if vit.pos_embed is not None:
        pe = vit.pos_embed
        n_cls = int(cfg.class_token) if cfg.pos_embed_cls else 0
        g = cfg.grid_size
        grid = pe[:, n_cls:].reshape(1, g, g, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid.float(), size=(gh, gw), mode="bicubic", align_corners=False, antialias=False)
        patch_pe = grid.to(pe.dtype).permute(0, 2, 3, 1).reshape(1, gh * gw, -1)
        pe = torch.cat([pe[:, :n_cls], patch_pe], dim=1)
        if cfg.pos_embed_cls and vit.cls_token is not None:
            t = torch.cat(prefix + [t], dim=1) + pe
            if reg is not None:
                t = torch.cat([t[:, :1], reg.expand(b, -1, -1), t[:, 1:]], dim=1)
            prefix = []
        else:
            t = t + pe
            if reg is not None:
                prefix.append(reg.expand(b, -1, -1))
    elif reg is not None:
        prefix.append(reg.expand(b, -1, -1))
    if prefix:
        t = torch.cat(prefix + [t], dim=1)
    rope = vit.rope_embed(gh, gw) if vit.rope_embed is not None else None
    wanted = [i + vit.depth if i < 0 else i for i in indices]
    outs: dict[int, Tensor] = {}
    for i, blk in enumerate(vit.blocks[: max(wanted) + 1]):
        t = blk(t, rope, vit.num_prefix_tokens)
        if i in wanted:
            outs[i] = t
    maps = []
    for i in wanted:
        o = vit.norm(outs[i]) if norm else outs[i]
        o = o[:, vit.num_prefix_tokens :]
        maps.append(o.transpose(1, 2).reshape(b, -1, gh, gw))
    return maps


def _network_size_traceable(h: Any, w: Any, image_size: int | None, patch: int, like: Tensor) -> tuple[Any, ...]:
    """:func:`metricanything.models.teacher.network_size` for symbolic sizes, bit-exact.

    The resize factor is computed on float64 tensors exactly as Python does it (``image_size / max(H, W)``,
    times the side, round half to even), so rounding ties (e.g. 4:3 images, where the short side lands on
    x.5 px) resolve the same way in the graph as in PyTorch; doing it on symbolic floats would use float32 in
    ONNX. The result enters the graph as a fresh (unbacked) size, which also keeps the symbolic shape
    expressions small and the export fast.
    """
    if image_size is None:
        hs, ws = h, w
    else:
        ht = torch.full((), h, dtype=torch.float64, device=like.device)
        wt = torch.full((), w, dtype=torch.float64, device=like.device)
        # torch.div, not ``int / tensor`` (that is reciprocal(t) * int, one more rounding than Python's)
        scale = torch.div(torch.full_like(ht, float(image_size)), torch.maximum(ht, wt))
        hs = torch.clamp(torch.round(ht * scale), min=1).to(torch.int64).item()
        ws = torch.clamp(torch.round(wt * scale), min=1).to(torch.int64).item()
        for v in (hs, ws):
            torch._check(v >= 1)
            torch._check(v <= image_size)
    hp = patch * ((hs + patch - 1) // patch)
    wp = patch * ((ws + patch - 1) // patch)
    return hs, ws, hp, wp


# ---------------------------------------------------------------------------------------------------------
# Wrappers
# ---------------------------------------------------------------------------------------------------------


class TeacherExportWrapper(nn.Module):
    """Export-friendly teacher: ``forward(image, prompt_depth, prompt_mask, f_px) -> depth`` (B x 1 x H x W).

    ``prompt_mask`` is float (a pixel is prompted where it is > 0.5) or bool; a sample whose mask is empty uses
    ``f_px`` (B, > 0) for the canonical reference ln(f_px / W), a prompted sample ignores it. Shares the
    teacher's parameters (no copy).
    """

    def __init__(self, teacher: Teacher) -> None:
        super().__init__()
        if teacher.config.prompt_reference not in ("scalar", "fill"):
            raise CheckpointError(
                f"ONNX export supports teachers with prompt_reference 'scalar' or 'fill'; this one uses "
                f"{teacher.config.prompt_reference!r} (a data-dependent k-nearest-neighbour fit, eager mode only). "
                "Train/fine-tune with model.overrides.prompt_reference=fill to export, or run it with PyTorch."
            )
        self.teacher = teacher

    def forward(self, image: Tensor, prompt_depth: Tensor, prompt_mask: Tensor, f_px: Tensor) -> Tensor:
        m = self.teacher
        cfg = m.config
        b, h, w = image.shape[0], image.shape[-2], image.shape[-1]
        mask = prompt_mask if prompt_mask.dtype == torch.bool else prompt_mask > 0.5
        feats_full, log_scale, has_prompt = encode_prompt_traceable(prompt_depth, mask)
        canonical = torch.log(f_px.to(torch.float32).reshape(b) / w)
        log_ref = torch.where(has_prompt, log_scale, canonical)

        hs, ws, hp, wp = _network_size_traceable(h, w, cfg.image_size, m.patch_size, image)
        # Antialiased bilinear equals plain bilinear when upsampling or at the same size, so one op covers
        # every case of the teacher's ``antialias = hs < h or ws < w``.
        x = F.interpolate(image, size=(hs, ws), mode="bilinear", align_corners=False, antialias=True)
        x = F.pad(x, (0, wp - ws, 0, hp - hs))
        tokens = _vit_intermediate_maps(m.encoder, x, list(cfg.hook_indices), cfg.intermediate_norm)
        use_fill = cfg.prompt_reference == "fill"
        fill = push_pull_fill(feats_full[:, :1].float(), feats_full[:, 1:2] > 0.5) if use_fill else None
        v, pm = masked_pool_traceable(feats_full[:, :1], feats_full[:, 1:2], (hs, ws))
        parts = [v, pm.to(v.dtype)]
        if fill is not None and (cfg.prompt_fill_channel or m.refiner is not None):
            parts.append(masked_pool_traceable(fill, torch.ones_like(fill), (hs, ws))[0])
        net_prompt = F.pad(torch.cat(parts, dim=1), (0, wp - ws, 0, hp - hs))
        dec = m.decoder
        n_ch = 3 if cfg.prompt_fill_channel else 2
        residual = self._decode(tokens, (hp, wp), net_prompt[:, :n_ch] if dec.has_prompt_branch else None)
        if m.refiner is not None:
            residual = m.refiner(x, net_prompt[:, 2:3], net_prompt[:, 1:2], residual)
        residual = residual[..., :hs, :ws]
        residual = F.interpolate(residual, size=(h, w), mode="bilinear", align_corners=False).float()
        log_depth = residual + log_ref.view(b, 1, 1, 1)
        if fill is not None:  # zero for samples without prompt points
            log_depth = log_depth + fill
        return torch.exp(log_depth)

    def _decode(self, tokens: list[Tensor], out_size: tuple[Any, Any], prompt: Tensor | None) -> Tensor:
        """``DPTDecoder.forward`` with :func:`masked_pool_traceable` for the prompt pyramid."""
        dec = self.teacher.decoder
        gh, gw = tokens[0].shape[-2], tokens[0].shape[-1]
        sizes = [(4 * gh, 4 * gw), (2 * gh, 2 * gw), (gh, gw), ((gh + 1) // 2, (gw + 1) // 2)]
        levels = [r(t) for r, t in zip(dec.reassemble, tokens, strict=True)]
        prompts: dict[int, Tensor] = {}
        if prompt is not None:
            value, weight, dense = prompt[:, :1], prompt[:, 1:2], prompt[:, 2:]
            for i in dec.prompt_levels:
                v, pm = masked_pool_traceable(value, weight, sizes[i])
                parts = [v, pm.to(v.dtype)]
                if dense.shape[1]:
                    parts.append(masked_pool_traceable(dense, torch.ones_like(weight), sizes[i])[0])
                prompts[i] = dec.prompt_encoders[str(i)](torch.cat(parts, dim=1))
        x = levels[3]
        targets = [sizes[2], sizes[1], sizes[0], (2 * sizes[0][0], 2 * sizes[0][1])]
        for step, i in enumerate((3, 2, 1, 0)):
            x = dec.fusions[i](x, None if i == 3 else levels[i], prompts.get(i), targets[step])
        x = dec.head[0](x)
        x = F.interpolate(x, size=out_size, mode="bilinear", align_corners=False)
        for layer in list(dec.head)[2:]:
            x = layer(x)
        return x


class StudentExportWrapper(nn.Module):
    """Export-friendly student ``infer``: ``forward(image, f_px) -> depth`` (B x 1 x H x W), any H x W.

    With a FoV head, an ``f_px`` entry <= 0 (or non-finite) means "use the predicted focal", and the focal
    actually used (B) is returned as a second output.
    """

    def __init__(self, student: Student) -> None:
        super().__init__()
        self.student = student

    def forward(self, image: Tensor, f_px: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        m = self.student
        b, h, w = image.shape[0], image.shape[-2], image.shape[-1]
        s = m.network_size
        # same-size bilinear (align_corners=False) is an exact identity, so no "resize or not" branch is needed
        x = F.interpolate(image, size=(s, s), mode="bilinear", align_corners=False)
        f = f_px.to(torch.float32).reshape(b)
        if m.fov is not None:
            c, fov = m.forward_with_fov(x)
            use_given = torch.isfinite(f) & (f > 0)
            f = torch.where(use_given, f, fov_to_focal(fov, w).to(torch.float32))
        else:
            c = m(x)
        inv = c * (w / f).to(c.dtype).view(b, 1, 1, 1)
        inv = F.interpolate(inv, size=(h, w), mode="bilinear", align_corners=False)
        inv = torch.clamp(inv, min=INVERSE_DEPTH_CLAMP[0], max=INVERSE_DEPTH_CLAMP[1])
        depth = 1.0 / inv
        if m.fov is not None:
            return depth, f
        return depth


def export_wrapper(model: nn.Module) -> nn.Module:
    """The export wrapper for a :class:`Teacher` or :class:`Student` (eval mode, sharing its weights)."""
    if isinstance(model, Teacher):
        return TeacherExportWrapper(model).eval()
    if isinstance(model, Student):
        return StudentExportWrapper(model).eval()
    raise InvalidInputError(f"can only export a Teacher or a Student, got {type(model).__name__}")


def onnx_io_names(model: nn.Module) -> tuple[list[str], list[str]]:
    """(input names, output names) of the exported graph for ``model``."""
    if isinstance(model, Teacher):
        return ["image", "prompt_depth", "prompt_mask", "f_px"], ["depth"]
    if isinstance(model, Student):
        return ["image", "f_px"], (["depth", "f_px_used"] if model.fov is not None else ["depth"])
    raise InvalidInputError(f"can only export a Teacher or a Student, got {type(model).__name__}")


def example_inputs(
    model: nn.Module,
    height: int,
    width: int,
    batch: int = 1,
    n_prompt: int = 0,
    f_px: float | None = None,
    seed: int = 0,
) -> dict[str, Tensor]:
    """Deterministic example inputs (named like the ONNX inputs) for ``model`` at ``height`` x ``width``.

    ``n_prompt`` > 0 puts that many random prompt points (depths in [1, 10] m) into each teacher sample.
    """
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, 3, height, width, generator=g)
    f = torch.full((batch,), float(f_px if f_px is not None else 0.8 * width))
    if isinstance(model, Student):
        return {"image": image, "f_px": f}
    depth = torch.zeros(batch, 1, height, width)
    mask = torch.zeros(batch, 1, height, width)
    if n_prompt > 0:
        for i in range(batch):
            idx = torch.randperm(height * width, generator=g)[:n_prompt]
            mask[i].view(-1)[idx] = 1.0
            depth[i].view(-1)[idx] = 1.0 + 9.0 * torch.rand(idx.numel(), generator=g)
    return {"image": image, "prompt_depth": depth, "prompt_mask": mask, "f_px": f}


# ---------------------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------------------


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote."""

    path: Path
    kind: str
    opset: int
    input_names: list[str]
    output_names: list[str]
    external_data: bool
    seconds: float
    files: list[Path] = field(default_factory=list)
    max_rel_error: float | None = None


def _load_model(model_or_path: nn.Module | str | os.PathLike) -> nn.Module:
    """The model itself when it is a float32 CPU module, else a float32 CPU copy (the graph is float32)."""
    if isinstance(model_or_path, nn.Module):
        model = model_or_path
    else:
        model = from_pretrained(model_or_path)
    tensors = list(model.parameters()) + list(model.buffers())
    if any(t.device.type != "cpu" or (t.is_floating_point() and t.dtype != torch.float32) for t in tensors):
        model = copy.deepcopy(model).to(device="cpu", dtype=torch.float32)
    return model.eval()


def _dynamic_shapes(model: nn.Module) -> dict[str, Any]:
    dim = torch.export.Dim
    batch, height, width = dim("batch", min=1, max=1024), dim("height", min=2, max=16384), dim(
        "width", min=2, max=16384
    )
    image = {0: batch, 2: height, 3: width}
    if isinstance(model, Teacher):
        return {"image": image, "prompt_depth": dict(image), "prompt_mask": dict(image), "f_px": {0: batch}}
    return {"image": image, "f_px": {0: batch}}


@contextlib.contextmanager
def _quiet_exporter(sink: io.StringIO) -> Iterator[None]:
    """Silence the exporter's progress prints, its warnings and its registry log lines."""
    names = ("torch.onnx", "torch.export", "torch._export", "onnxscript")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _param_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))


def export_onnx(
    model_or_checkpoint_path: nn.Module | str | os.PathLike,
    out_path: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    example_size: tuple[int, int] = (61, 83),
    batch: int = 2,
    external_data: bool | None = None,
    verify: bool = False,
    verify_size: tuple[int, int] = (47, 71),
    tolerance: float = 1e-4,
    optimize: bool = True,
) -> ExportResult:
    """Export a teacher or student (model or checkpoint path) to ONNX with dynamic batch, H and W.

    Args:
        model_or_checkpoint_path: a :class:`Teacher` / :class:`Student`, or anything
            :func:`metricanything.models.checkpoint.from_pretrained` accepts.
        out_path: the ``.onnx`` file to write (atomically; with external data a ``<name>.data`` file is
            written next to it first).
        opset: ONNX opset (>= 18).
        example_size: H x W of the tracing example (any size; the graph is not specialised to it).
        batch: batch size of the tracing example (>= 2, so the batch axis stays symbolic).
        external_data: store weights in ``<name>.data``; default: only when they exceed 1 GiB.
        verify: run onnxruntime on a fresh input at ``verify_size`` (not the tracing size) and compare with the
            PyTorch model; raise :class:`ExportError` when the max relative error exceeds ``tolerance``.
        optimize: run the onnxscript graph optimiser (constant folding, shape-op clean-up); turning it off
            makes the export faster and the graph larger (onnxruntime optimises it at load time anyway).
    """
    if opset < 18:
        raise InvalidInputError(f"opset must be >= 18 (Resize with antialias), got {opset}")
    for package in ("onnx", "onnxscript", *(("onnxruntime",) if verify else ())):
        require_extra(package, "ONNX export" if package != "onnxruntime" else "verifying an ONNX export")
    model = _load_model(model_or_checkpoint_path)
    wrapper = export_wrapper(model)
    model.eval()
    kind = kind_of(model)
    in_names, out_names = onnx_io_names(model)
    ex = example_inputs(model, *example_size, batch=max(2, batch), n_prompt=7)
    args = tuple(ex[n] for n in in_names)
    if external_data is None:
        external_data = _param_bytes(model) > EXTERNAL_DATA_THRESHOLD
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    log = io.StringIO()
    try:
        with torch.no_grad(), _quiet_exporter(log):
            program = torch.onnx.export(
                wrapper,
                args,
                input_names=in_names,
                output_names=out_names,
                opset_version=opset,
                dynamo=True,
                dynamic_shapes=_dynamic_shapes(model),
                optimize=optimize,
                verbose=False,
            )
    except Exception as e:  # noqa: BLE001 - the exporter raises many types; report them uniformly
        detail = str(e).strip().splitlines()
        raise ExportError(
            f"ONNX export of the {kind} failed: {type(e).__name__}: {' '.join(detail[:3])[:1500]}"
        ) from e
    files = _save_atomically(program, out, external_data)
    seconds = time.perf_counter() - t0
    result = ExportResult(out, kind, opset, in_names, out_names, external_data, seconds, files)
    if verify:
        inputs = example_inputs(model, *verify_size, batch=1, n_prompt=5, seed=1)
        err = verify_onnx(out, model, inputs)
        if kind == "teacher":  # also without prompt points
            inputs = example_inputs(model, *verify_size, batch=1, n_prompt=0, seed=2)
            err = max(err, verify_onnx(out, model, inputs))
        result.max_rel_error = err
        if not err <= tolerance:
            for f in files:  # a graph that failed its check is not left where it would be used
                Path(f).unlink(missing_ok=True)
            raise ExportError(
                f"{out}: onnxruntime differs from PyTorch by {err:.3g} (relative) > {tolerance:g}, so the export was "
                "removed; rerun with a larger --tolerance to accept it, or without --verify to keep it unchecked"
            )
    return result


def _save_atomically(program: Any, out: Path, external_data: bool) -> list[Path]:
    """Save into a temporary folder beside ``out``, then move the data file (if any) and the model into place."""
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tmp_model = tmp_dir / out.name
        program.save(str(tmp_model), external_data=external_data)
        moved: list[Path] = []
        for f in sorted(tmp_dir.iterdir(), key=lambda p: p == tmp_model):  # the model file last
            target = out.parent / f.name
            os.replace(f, target)
            moved.append(target)
        return moved
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------------------------------------


def _as_tensor(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))


@torch.no_grad()
def reference_outputs(model: nn.Module, inputs: Mapping[str, Any]) -> Tensor:
    """Depth (B x 1 x H x W) from the PyTorch model's own ``forward`` (teacher) or ``infer`` (student)."""
    image = _as_tensor(inputs["image"]).float()
    f_px = _as_tensor(inputs["f_px"]).float().reshape(-1)
    model.eval()
    if isinstance(model, Teacher):
        mask = _as_tensor(inputs["prompt_mask"])
        mask = mask if mask.dtype == torch.bool else mask > 0.5
        depth = _as_tensor(inputs["prompt_depth"]).float()
        if not bool(mask.any()):
            return model(image, f_px=f_px)
        return model(image, depth, mask, f_px=f_px)
    if isinstance(model, Student):
        # with a FoV head, f_px <= 0 asks the exported graph for the predicted focal (all-or-nothing here)
        predicted = model.fov is not None and bool((f_px <= 0).all())
        out = model.infer(image, f_px=None if predicted else f_px)
        return out["depth"].reshape(image.shape[0], 1, image.shape[-2], image.shape[-1])
    raise InvalidInputError(f"can only verify a Teacher or a Student, got {type(model).__name__}")


def run_onnx(onnx_path: str | os.PathLike, inputs: Mapping[str, Any]) -> list[np.ndarray]:
    """Run the exported graph with onnxruntime (CPU); ``inputs`` may hold tensors or arrays."""
    ort = require_extra("onnxruntime", "running an ONNX export")

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    feed = {}
    for node in sess.get_inputs():
        if node.name not in inputs:
            raise InvalidInputError(f"{onnx_path}: missing input {node.name!r}")
        a = inputs[node.name]
        a = a.detach().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a)
        feed[node.name] = a.astype(np.bool_ if node.type == "tensor(bool)" else np.float32)
    return sess.run(None, feed)


def verify_onnx(onnx_path: str | os.PathLike, model: nn.Module, inputs: Mapping[str, Any]) -> float:
    """Max relative error ``max |onnx - torch| / |torch|`` of the ONNX depth against the PyTorch model.

    The reference is the model's own ``forward`` (teacher) / ``infer`` (student), not the export wrapper.
    """
    if not Path(onnx_path).is_file():
        raise CheckpointError(f"{onnx_path}: no such ONNX file")
    got = run_onnx(onnx_path, inputs)[0]
    ref = reference_outputs(model, inputs).detach().cpu().numpy()
    if got.shape != ref.shape:
        raise ExportError(f"{onnx_path}: output shape {got.shape} differs from PyTorch {ref.shape}")
    ref64, got64 = ref.astype(np.float64), got.astype(np.float64)
    if not (np.isfinite(got64).all() and np.isfinite(ref64).all()):
        raise ExportError(f"{onnx_path}: non-finite depth in the comparison")
    return float(np.max(np.abs(got64 - ref64) / np.maximum(np.abs(ref64), 1e-12)))


# ---------------------------------------------------------------------------------------------- the command
@dataclass
class ExportOptions:
    """What ``metricanything export`` takes (see ``metricanything export --help``)."""

    model: str = option("--model", "", always=True)
    onnx: Path = option("--onnx", Path("model.onnx"), always=True)
    opset: int = option("--opset", DEFAULT_OPSET)
    verify: bool = option("--verify", False)
    tolerance: float = option("--tolerance", 1e-4)
    external_data: bool | None = option("--external-data", None, words=lambda v: "yes" if v else "no")  # None: auto
    optimize: bool = option("--no-optimize", True, invert=True)


def run(options: ExportOptions) -> ExportResult:
    """:func:`export_onnx` with the command's options; prints what was written."""
    o = options
    if Path(o.onnx).suffix.lower() != ".onnx":
        raise InvalidInputError(f"--onnx must name a .onnx file, got {o.onnx}")
    if not (o.tolerance > 0 and math.isfinite(o.tolerance)):
        raise InvalidInputError(f"--tolerance {o.tolerance}: must be a positive relative error, e.g. 1e-4")
    from metricanything.atomic import check_output_file

    check_output_file(o.onnx, "--onnx")
    result = export_onnx(o.model, o.onnx, opset=o.opset, external_data=o.external_data, verify=o.verify,
                         tolerance=o.tolerance, optimize=o.optimize)  # fmt: skip
    print(f"exported the {result.kind} to {result.path} (opset {result.opset}, {result.seconds:.1f} s)")
    print(f"  inputs:  {', '.join(result.input_names)}")
    print(f"  outputs: {', '.join(result.output_names)}")
    if result.external_data:
        print(f"  weights: {', '.join(str(f) for f in result.files if f != result.path)}")
    if result.max_rel_error is not None:
        print(f"  verified with onnxruntime: max relative error {result.max_rel_error:.3g} (<= {o.tolerance:g})")
    return result
