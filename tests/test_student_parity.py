"""Parity of our Student with the official Student-DepthMap code (tiny fixture from ../shared)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from metricanything.models.student import Student, split_tiles, student_config

FIXTURE = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "official_student"
pytestmark = pytest.mark.skipif(
    not (FIXTURE / "tiny_weights.safetensors").is_file(),
    reason=f"official student fixture not found at {FIXTURE} (shared folder absent)",
)

TOL = 1e-4


def _load(name: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(FIXTURE / name))


@pytest.fixture(scope="module")
def io() -> dict[str, torch.Tensor]:
    return _load("tiny_io.safetensors")


@pytest.fixture(scope="module")
def model() -> Student:
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    m = Student(student_config("fixture_tiny"))
    m.load_state_dict(_load("tiny_weights.safetensors"), strict=True)
    return m.eval()


def test_config_matches_fixture_json() -> None:
    spec = json.loads((FIXTURE / "tiny_config.json").read_text())["tiny"]
    cfg = student_config("fixture_tiny")
    vc = cfg.vit_cfg
    assert (vc.embed_dim, vc.depth, vc.num_heads, vc.patch_size) == (
        spec["vit"]["embed_dim"], spec["vit"]["depth"], spec["vit"]["num_heads"], spec["vit"]["patch_size"]
    )
    assert vc.num_register_tokens == spec["vit"]["n_storage_tokens"]
    assert vc.norm_eps == spec["vit"]["norm_eps"]
    assert cfg.tile_size == spec["vit"]["tile_img_size"]
    assert list(cfg.hook_block_ids) == spec["encoder"]["hook_block_ids"]
    assert list(cfg.encoder_dims) == spec["encoder"]["dims_encoder"]
    assert cfg.decoder_features == spec["decoder"]["decoder_features"]
    assert cfg.network_size == spec["geometry"]["network_input_px"]
    m = Student(cfg)
    assert sum(p.numel() for p in m.parameters()) == spec["n_params"]
    assert len(m.state_dict()) == spec["n_state_dict_keys"]


def test_strict_load_and_buffers(model: Student) -> None:
    w = _load("tiny_weights.safetensors")
    sd = model.state_dict()
    assert set(sd) == set(w)
    vit = model.encoder.patch_encoder
    assert torch.equal(vit.rope_embed.periods, w["encoder.patch_encoder.rope_embed.periods"])
    mask = vit.blocks[0].attn.qkv.bias_mask
    d = vit.embed_dim
    assert torch.equal(mask, torch.cat([torch.ones(d), torch.zeros(d), torch.ones(d)]))


def test_forward_out(model: Student, io: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        out = model(io["x"].float())
    ref = io["forward_out"]
    assert out.shape == ref.shape
    assert (out - ref).abs().max().item() <= TOL
    # the ReLU floor is reproduced at the same pixels (up to ties within the tolerance)
    assert ((out == 0) != (ref == 0)).float().mean().item() < 1e-3


@pytest.mark.parametrize(("name", "f_px"), [("infer_depth", 480.0), ("infer_depth_default_fpx", None)])
def test_infer(model: Student, io: dict[str, torch.Tensor], name: str, f_px: float | None) -> None:
    res = model.infer(io["x2"].float(), f_px=f_px)
    ref = io[name]
    assert res["depth"].shape == ref.shape == (80, 544)
    inv_err = (1.0 / res["depth"] - 1.0 / ref).abs().max().item()
    assert inv_err <= TOL
    assert ((res["depth"] - ref).abs() / ref).max().item() <= 1e-3
    # the clamp at inverse depth 1e-3 (depth 999.99994) hits the same pixels
    assert torch.equal(res["depth"] > 999.0, ref > 999.0)


def test_intermediates(model: Student, io: dict[str, torch.Tensor]) -> None:
    x = io["x"].float()
    enc = model.encoder
    vit = enc.patch_encoder

    def close(a: torch.Tensor, ref: torch.Tensor) -> None:
        assert a.shape == ref.shape
        assert (a - ref).abs().max().item() <= TOL * max(1.0, ref.abs().max().item())

    with torch.no_grad():
        x1 = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
        x2 = F.interpolate(x, scale_factor=0.25, mode="bilinear", align_corners=False)
        tiles = torch.cat([split_tiles(x, 128, 0.25), split_tiles(x1, 128, 0.5), x2])
        assert tiles.shape[0] == int(io["vit_tiles_in_count"].item())
        final, hooks = vit.forward_with_intermediates(tiles, enc.hook_block_ids)
        sel = io["vit_sel_tile_ids"]
        n_pre = vit.num_prefix_tokens
        close(torch.cat([final[:, :1], final[:, n_pre:]], 1)[sel], io["vit_out_sel_tiles"])
        for k in range(4):
            close(hooks[k][io["hook_sel_tile_ids"]], io[f"hook{k}_out_sel_tiles"])
        enc_out = enc(x)
        names = ["enc_out0_latent0_s7", "enc_out1_latent1_s7", "enc_out2_latent2_s7", "enc_out3_latent3_s7",
                 "enc_out4_x0_s7", "enc_out5_x1", "enc_out6_global"]
        for t, name in zip(enc_out, names, strict=True):
            close(t[..., ::7, ::7] if name.endswith("_s7") else t, io[name])
        feats, lowres = model.decoder(enc_out)
        close(feats[..., ::13, ::13], io["decoder_out_s13"])
        close(lowres, io["decoder_lowres_out"])


@pytest.mark.slow
def test_official_tile_geometry(io: dict[str, torch.Tensor]) -> None:
    """Same weights at the released 384-px tile (24 tokens, trims 3 and 6, input 1536)."""
    m = Student(student_config("fixture_tiny", tile_size=384))
    m.load_state_dict(_load("tiny_weights.safetensors"), strict=True)
    m.eval()
    x = F.interpolate(io["x"].float(), scale_factor=3, mode="nearest")
    with torch.no_grad():
        out = m(x)
    assert out.shape == (1, 1, 1536, 1536)
    assert (out[..., ::13, ::13] - io["geom384_forward_out_s13"]).abs().max().item() <= TOL
