"""Tests of the plain-torch ViT (DINOv2/timm layout and DINOv3 layout) and backbone loading."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from metricanything.errors import CheckpointError, ConfigError, InputFileError
from metricanything.models.vit import (
    VisionTransformer,
    ViTConfig,
    load_backbone_weights,
    rope_periods,
    rope_sin_cos,
    swiglu_hidden_dim,
    vit_config,
)
from metricanything.models.vit import _apply_rope as apply_rope


def _model(name: str, seed: int = 0, **kw) -> VisionTransformer:
    torch.manual_seed(seed)
    m = VisionTransformer(vit_config(name, **kw))
    # random (non-trivial) token / layer-scale values so every path matters
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.endswith("gamma") or "token" in n or n == "pos_embed":
                p.normal_(0, 0.5)
    return m.eval()


def _meta(name: str, **kw) -> VisionTransformer:
    with torch.device("meta"):
        return VisionTransformer(vit_config(name, **kw))


# --------------------------------------------------------------------------------------------- key names


def _timm_dinov2_keys(depth: int, swiglu: bool = False) -> set[str]:
    keys = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias"}
    for i in range(depth):
        for s in ("norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
                  "attn.proj.bias", "ls1.gamma", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
                  "mlp.fc2.weight", "mlp.fc2.bias", "ls2.gamma"):
            keys.add(f"blocks.{i}.{s}")
    return keys


def test_small_preset_matches_timm_vit_small_patch14_dinov2() -> None:
    m = _meta("small")
    sd = m.state_dict()
    assert set(sd) == _timm_dinov2_keys(12)
    assert sd["pos_embed"].shape == (1, 1370, 384)  # 37 x 37 grid + CLS, as timm at img_size 518
    assert sd["blocks.0.attn.qkv.weight"].shape == (1152, 384)
    assert sd["blocks.0.mlp.fc1.weight"].shape == (1536, 384)
    assert sd["patch_embed.proj.weight"].shape == (384, 3, 14, 14)
    assert sum(p.numel() for p in m.parameters()) == 22_056_192
    assert (m.embed_dim, m.patch_size, m.num_prefix_tokens, m.depth) == (384, 14, 1, 12)


def test_giant_swiglu_uses_timm_packed_layout() -> None:
    sd = _meta("giant").state_dict()
    assert set(sd) == _timm_dinov2_keys(40, swiglu=True)
    assert sd["blocks.0.mlp.fc1.weight"].shape == (2 * 4096, 1536)
    assert sd["blocks.0.mlp.fc2.weight"].shape == (1536, 4096)


def test_reg4_preset_keys() -> None:
    sd = _meta("small_reg4").state_dict()
    assert set(sd) == _timm_dinov2_keys(12) | {"reg_token"}
    assert sd["reg_token"].shape == (1, 4, 384)
    assert sd["pos_embed"].shape == (1, 1369, 384)  # timm no_embed_class


def test_dinov3_layout_keys() -> None:
    sd = _meta("dinov3_huge_plus").state_dict()
    assert sd["storage_tokens"].shape == (1, 4, 1280)
    assert sd["mask_token"].shape == (1, 1280)
    assert sd["rope_embed.periods"].shape == (16,)
    assert sd["blocks.31.attn.qkv.bias_mask"].shape == (3840,)
    assert sd["blocks.0.mlp.w1.weight"].shape == (5120, 1280)
    assert sd["blocks.0.mlp.w3.weight"].shape == (1280, 5120)
    assert "pos_embed" not in sd and "reg_token" not in sd
    sd_s = _meta("dinov3_small").state_dict()
    assert "blocks.0.mlp.fc1.weight" in sd_s and "blocks.0.mlp.w1.weight" not in sd_s


def test_swiglu_hidden_dims() -> None:
    assert swiglu_hidden_dim(1280, 6.0) == 5120
    assert swiglu_hidden_dim(32, 6.0) == 128
    assert swiglu_hidden_dim(1536, 4.0) == 4096
    assert swiglu_hidden_dim(100, 1.0) == 72  # int(100 * 2 / 3) = 66 -> rounded up to 72


def test_config_validation_and_roundtrip() -> None:
    with pytest.raises(ConfigError):
        ViTConfig(embed_dim=65, num_heads=4)
    with pytest.raises(ConfigError):
        ViTConfig(ffn="relu")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        vit_config("nope")
    cfg = vit_config("dinov3_test")
    assert ViTConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError):
        ViTConfig.from_dict({**cfg.to_dict(), "bogus": 1})


# ------------------------------------------------------------------------------------------- token layout


@pytest.mark.parametrize("name", ["test", "dinov3_test"])
def test_token_counts_and_prefix_tokens(name: str) -> None:
    m = _model(name)
    p = m.patch_size
    x = torch.randn(2, 3, 3 * p, 5 * p)
    tok, h, w = m.prepare_tokens(x)
    assert (h, w) == (3, 5)
    assert tok.shape == (2, m.num_prefix_tokens + 15, m.embed_dim)
    # CLS comes first; storage/register tokens follow (DINOv3 layout: no position embedding on any prefix token)
    if m.cfg.layout == "dinov3":
        assert torch.equal(tok[0, 0], m.cls_token[0, 0])
        assert torch.equal(tok[1, 1:5], m.storage_tokens[0])
    else:
        assert torch.allclose(tok[0, 0], m.cls_token[0, 0] + m.pos_embed[0, 0])
    out = m.forward_features(x)
    assert out.shape == tok.shape
    # final LayerNorm: each token has mean ~ bias mean, i.e. the output is normalised
    ln = F.layer_norm(out, (m.embed_dim,))
    assert torch.allclose(out, ln * m.norm.weight + m.norm.bias, atol=1e-4)


def test_registers_do_not_get_position_embedding() -> None:
    m = _model("test", num_register_tokens=2, pos_embed_cls=False)
    x = torch.randn(1, 3, 28, 28)
    tok, _, _ = m.prepare_tokens(x)
    assert torch.equal(tok[0, 0], m.cls_token[0, 0])
    assert torch.equal(tok[0, 1:3], m.reg_token[0])
    patches = m.patch_embed(x) + m.interpolate_pos_embed(2, 2)
    assert torch.equal(tok[:, 3:], patches)


def test_bad_input_sizes() -> None:
    m = _model("test")
    with pytest.raises(ValueError, match="multiple of the patch size"):
        m.forward_features(torch.randn(1, 3, 30, 28))
    with pytest.raises(IndexError):
        m.get_intermediate_layers(torch.randn(1, 3, 28, 28), [4])


# ------------------------------------------------------------------------------------ position embedding


def test_pos_embed_interpolation_is_bicubic_without_antialias() -> None:
    m = _model("test")  # 4 x 4 grid at img_size 56
    g = m.cfg.grid_size
    assert m.interpolate_pos_embed(g, g) is m.pos_embed  # native size: untouched
    pe = m.interpolate_pos_embed(7, 3)
    assert pe.shape == (1, 1 + 21, 64)
    assert torch.equal(pe[:, :1], m.pos_embed[:, :1])  # CLS entry unchanged
    grid = m.pos_embed[:, 1:].reshape(1, g, g, -1).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, size=(7, 3), mode="bicubic", align_corners=False, antialias=False)
    assert torch.allclose(pe[:, 1:], ref.permute(0, 2, 3, 1).reshape(1, 21, -1))
    # downsampling without antialias differs from the antialiased result (guards against a silent switch)
    ref_aa = F.interpolate(grid, size=(2, 2), mode="bicubic", align_corners=False, antialias=True)
    assert not torch.allclose(m.interpolate_pos_embed(2, 2)[:, 1:], ref_aa.permute(0, 2, 3, 1).reshape(1, 4, -1))


def test_constant_pos_grid_stays_constant() -> None:
    m = _model("test")
    with torch.no_grad():
        m.pos_embed[:, 1:] = torch.arange(64.0)
    pe = m.interpolate_pos_embed(9, 6)
    assert torch.allclose(pe[:, 1:], torch.arange(64.0).expand(1, 54, 64), atol=1e-4)


# --------------------------------------------------------------------------------------------------- RoPE


def test_rope_periods_match_official_values() -> None:
    assert torch.allclose(rope_periods(16, 100.0), torch.tensor([1.0, 3.1622776985168457, 10.0, 31.62277603149414]))
    p = rope_periods(64, 100.0)
    assert p.shape == (16,) and p.dtype == torch.float32
    assert torch.allclose(p, torch.tensor([100 ** (k / 16) for k in range(16)]), rtol=1e-6)
    official = [1.0, 1.3335214853286743, 1.778279423713684, 2.3713736534118652, 3.1622776985168457,
                4.216965198516846, 5.6234130859375, 7.498941898345947, 10.0, 13.335214614868164,
                17.782794952392578, 23.71373748779297, 31.62277603149414, 42.16965103149414, 56.234130859375,
                74.98941802978516]  # tiny_config.json, full model, float32 bits
    assert torch.equal(p, torch.tensor(official, dtype=torch.float32))
    assert torch.equal(VisionTransformer(vit_config("dinov3_test")).rope_embed.periods, rope_periods(16, 100.0))


def test_rope_table_layout() -> None:
    periods = rope_periods(16, 100.0)
    sin, cos = rope_sin_cos(periods, 2, 3)
    assert sin.shape == cos.shape == (6, 16)
    # token t = i*w + j; coordinates (i+0.5)/h*2-1 and (j+0.5)/w*2-1
    t = 1 * 3 + 2  # row 1, col 2
    cy, cx = (1.5 / 2) * 2 - 1, (2.5 / 3) * 2 - 1
    ang = [2 * math.pi * cy / float(p) for p in periods] + [2 * math.pi * cx / float(p) for p in periods]
    ang = torch.tensor(ang * 2)
    assert torch.allclose(sin[t], torch.sin(ang), atol=1e-5)
    assert torch.allclose(cos[t], torch.cos(ang), atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 5), st.integers(0, 5), st.integers(0, 5), st.integers(0, 5), st.integers(-2, 2), st.integers(-2, 2)
)
def test_rope_is_relative(i1: int, j1: int, i2: int, j2: int, di: int, dj: int) -> None:
    """q.k after RoPE depends only on the coordinate difference, and prefix tokens are not rotated."""
    h = w = 10
    sin, cos = rope_sin_cos(rope_periods(16, 100.0), h, w)
    g = torch.Generator().manual_seed(i1 + 7 * j1)
    q, k = torch.randn(16, generator=g), torch.randn(16, generator=g)

    def dot(a: tuple[int, int], b: tuple[int, int]) -> float:
        x = torch.zeros(1, 1, 1 + h * w, 16)
        y = torch.zeros(1, 1, 1 + h * w, 16)
        x[0, 0, 1 + a[0] * w + a[1]] = q
        y[0, 0, 1 + b[0] * w + b[1]] = k
        x[0, 0, 0] = q
        rx, ry = apply_rope(x, sin, cos, 1), apply_rope(y, sin, cos, 1)
        assert torch.equal(rx[0, 0, 0], q)  # prefix untouched
        assert torch.allclose(rx.norm(), x.norm(), atol=1e-5)  # rotation
        return float(rx[0, 0, 1 + a[0] * w + a[1]] @ ry[0, 0, 1 + b[0] * w + b[1]])

    s1, s2 = (i1 + 2, j1 + 2), (i2 + 2, j2 + 2)
    d1 = dot(s1, s2)
    d2 = dot((s1[0] + di, s1[1] + dj), (s2[0] + di, s2[1] + dj))
    assert d1 == pytest.approx(d2, abs=1e-4)


def test_rope_uses_rotate_half_pairs_rows_first() -> None:
    """Channel d pairs with d + hd/2; the first hd/4 channels rotate with the row coordinate."""
    sin, cos = rope_sin_cos(rope_periods(16, 100.0), 3, 3)
    x = torch.zeros(1, 1, 9, 16)
    x[..., 0] = 1.0  # channel 0: first row-angle channel
    r = apply_rope(x, sin, cos, 0)
    nz = (r[0, 0].abs() > 1e-7).any(0).nonzero().flatten().tolist()
    assert nz == [0, 8]
    # tokens in the same row share the rotation of channel 0 (row coordinate only)
    assert torch.allclose(r[0, 0, 0], r[0, 0, 2])
    assert not torch.allclose(r[0, 0, 0], r[0, 0, 3])


def test_rope_rescale_only_in_training() -> None:
    m = _model("dinov3_test")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = m(x), m(x)
        assert torch.equal(a, b)
        m.train()
        torch.manual_seed(1)
        c = m(x)
    assert not torch.allclose(a, c)


# ---------------------------------------------------------------------------------------- intermediates


@pytest.mark.parametrize("name", ["test", "dinov3_test"])
def test_intermediate_layers(name: str) -> None:
    m = _model(name)
    p = m.patch_size
    x = torch.randn(2, 3, 2 * p, 3 * p)
    with torch.no_grad():
        final = m.forward_features(x)
        maps = m.get_intermediate_layers(x, [1, -1], norm=True)
        raw = m.get_intermediate_layers(x, [3], norm=False)
        first = m.get_intermediate_layers(x, [0], norm=False)
        _, inter = m.forward_with_intermediates(x, [0, 3])
    assert len(maps) == 2 and maps[1].shape == (2, m.embed_dim, 2, 3)
    ref = final[:, m.num_prefix_tokens :].transpose(1, 2).reshape(2, m.embed_dim, 2, 3)
    assert torch.allclose(maps[1], ref, atol=1e-6)
    assert torch.allclose(m.norm(inter[1][:, m.num_prefix_tokens :]).transpose(1, 2).reshape(ref.shape), ref, atol=1e-6)
    assert torch.allclose(raw[0], inter[1][:, m.num_prefix_tokens :].transpose(1, 2).reshape(ref.shape))
    assert torch.allclose(first[0], inter[0][:, m.num_prefix_tokens :].transpose(1, 2).reshape(ref.shape))
    assert not torch.allclose(maps[0], maps[1])
    # patch token (row i, col j) ends up at map position [.., i, j]
    assert torch.allclose(maps[1][:, :, 1, 2], final[:, m.num_prefix_tokens + 1 * 3 + 2])


def test_grad_checkpointing_same_gradients() -> None:
    m = _model("test").train()
    x = torch.randn(2, 3, 28, 28)
    m(x).square().mean().backward()
    g1 = m.patch_embed.proj.weight.grad.clone()
    m.zero_grad()
    m.set_grad_checkpointing(True)
    m(x).square().mean().backward()
    assert torch.allclose(m.patch_embed.proj.weight.grad, g1, atol=1e-6)


def test_masked_k_bias_has_no_effect_on_attention_weights() -> None:
    """With the k bias masked, changing the k third of the qkv bias changes nothing."""
    m = _model("dinov3_test")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        a = m(x)
        d = m.embed_dim
        for blk in m.blocks:
            blk.attn.qkv.bias[d : 2 * d] += 5.0
        b = m(x)
        m.blocks[0].attn.qkv.bias[:d] += 1.0
        c = m(x)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


# --------------------------------------------------------------------------------------------- loading


def _save(sd: dict[str, torch.Tensor], path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


def test_load_roundtrip_safetensors_and_pt(tmp_path: Path) -> None:
    src = _model("test", seed=1)
    dst = _model("test", seed=2)
    x = torch.randn(1, 3, 42, 28)
    f = _save(src.state_dict(), tmp_path / "w.safetensors")
    assert load_backbone_weights(dst, f) == []
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))
    torch.save({"model": {"module." + k: v for k, v in src.state_dict().items()}}, tmp_path / "w.pt")
    dst2 = _model("test", seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        notes = load_backbone_weights(dst2, tmp_path / "w.pt")
    assert any("module." in n for n in notes)
    with torch.no_grad():
        assert torch.equal(src(x), dst2(x))


def test_load_errors(tmp_path: Path) -> None:
    m = _model("test")
    sd = m.state_dict()
    missing = {k: v for k, v in sd.items() if k != "blocks.2.attn.proj.weight"}
    with pytest.raises(CheckpointError, match=r"blocks\.2\.attn\.proj\.weight"):
        load_backbone_weights(m, missing)
    with pytest.raises(CheckpointError, match="head.weight"):
        load_backbone_weights(m, {**sd, "head.weight": torch.zeros(3)})
    bad = dict(sd)
    bad["norm.weight"] = torch.zeros(65)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_backbone_weights(m, bad)
    with pytest.raises(InputFileError):
        load_backbone_weights(m, tmp_path / "absent.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(InputFileError):
        load_backbone_weights(m, tmp_path / "junk.safetensors")


def test_load_interpolates_pos_embed_with_note() -> None:
    src = _model("test", img_size=84)  # 6 x 6 grid
    dst = _model("test")  # 4 x 4 grid
    with pytest.warns(UserWarning, match="interpolated pos_embed"):
        notes = load_backbone_weights(dst, src.state_dict())
    assert any("6x6 -> 4x4" in n for n in notes)
    # at the source's native grid the destination (resized table, re-interpolated) stays close
    x = torch.randn(1, 3, 84, 84)
    with torch.no_grad():
        assert torch.equal(dst.blocks[0].attn.qkv.weight, src.blocks[0].attn.qkv.weight)
        assert dst(x).shape == src(x).shape


def test_facebookresearch_dinov2_layout_with_registers_and_swiglu() -> None:
    """Original DINOv2 keys (register_tokens, mlp.w12/w3, mask_token, block chunks, pos_embed incl. CLS)."""
    kw = dict(num_register_tokens=2, ffn="swiglu")
    # Model with the original semantics: position table covers CLS, registers inserted after adding it.
    fb_model = _model("test", seed=4, pos_embed_cls=True, **kw)
    fb = {}
    for k, v in fb_model.state_dict().items():
        k = k.replace("reg_token", "register_tokens").replace("mlp.fc1", "mlp.w12").replace("mlp.fc2", "mlp.w3")
        k = k.replace("blocks.", "blocks.0.", 1) if k.startswith("blocks.") else k
        fb[k] = v
    fb["mask_token"] = torch.zeros(1, 64)
    dst = _model("test", seed=5, pos_embed_cls=False, **kw)  # timm reg layout (no_embed_class)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        notes = load_backbone_weights(dst, fb)
    assert any("folded" in n for n in notes) and any("mask_token" in n for n in notes)
    x = torch.randn(2, 3, 56, 42)
    with torch.no_grad():
        assert torch.allclose(fb_model(x), dst(x), atol=1e-6)


def test_dinov3_layout_load_and_missing_buffers() -> None:
    src = _model("dinov3_test", seed=6)
    with torch.no_grad():
        src.rope_embed.periods.mul_(1.001)  # loaded buffer bits must win over the formula
    dst = _model("dinov3_test", seed=7)
    with pytest.warns(UserWarning, match="stripped prefix"):
        load_backbone_weights(dst, {"encoder.patch_encoder." + k: v for k, v in src.state_dict().items()})
    assert torch.equal(dst.rope_embed.periods, src.rope_embed.periods)
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))
    sd = {k: v for k, v in src.state_dict().items() if "bias_mask" not in k}
    dst2 = _model("dinov3_test", seed=8)
    with pytest.warns(UserWarning, match="kept constructed values"):
        load_backbone_weights(dst2, sd)
    d = dst2.embed_dim
    assert torch.equal(dst2.blocks[0].attn.qkv.bias_mask, torch.cat([torch.ones(d), torch.zeros(d), torch.ones(d)]))


def test_rope_periods_survive_low_precision_casts() -> None:
    m = _model("dinov3_test")
    with torch.no_grad():
        m.rope_embed.periods.mul_(1.0001)  # bits not representable in bf16
    ref = m.rope_embed.periods.clone()
    m = m.to(torch.bfloat16)
    assert m.rope_embed.periods.dtype == torch.float32 and torch.equal(m.rope_embed.periods, ref)
    assert m.blocks[0].attn.qkv.weight.dtype == torch.bfloat16
    x = torch.randn(1, 3, 32, 48, dtype=torch.bfloat16)
    with torch.no_grad():
        out = m(x)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    assert m.state_dict()["rope_embed.periods"].dtype == torch.float32
