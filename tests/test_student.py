"""Behaviour of the Student beyond official parity: tiling, infer conventions, FoV head, configs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from metricanything.errors import ConfigError, InvalidInputError
from metricanything.models.student import (
    Student,
    StudentConfig,
    merge_tiles,
    split_tiles,
    student_config,
)
from metricanything.models.vit import vit_config


def _micro_cfg(**kw) -> StudentConfig:
    """Smallest valid student (tile 128 -> input 512) with narrow decoder/head, for fast CPU tests."""
    base = dict(vit=vit_config("dinov3_test", embed_dim=32, num_heads=2), tile_size=128,
                hook_block_ids=(0, 1, 2, 3), encoder_dims=(8, 8, 8, 8), decoder_features=8, head_last_dims=(8, 1))
    base.update(kw)
    return StudentConfig(**base)


@pytest.fixture(scope="module")
def tiny() -> Student:
    torch.manual_seed(0)
    m = Student(_micro_cfg())
    with torch.no_grad():  # a non-constant, partly zero (clamped) output so infer is non-trivial
        m.head[-2].weight.normal_(0, 1.0)
        m.head[-2].bias.zero_()
        feats, _ = m.decoder(m.encoder(torch.randn(1, 3, 512, 512)))
        pre = m.head[:-1](feats)
        m.head[-2].weight.div_(pre.std())  # pre-activation: unit spread, median 0 -> about half clamped to 0
        m.head[-2].bias.fill_(-(pre / pre.std()).median().item())
    return m.eval()


@settings(max_examples=20, deadline=None)
@given(st.sampled_from([8, 16, 24]), st.integers(1, 2), st.integers(1, 3))
def test_split_then_merge_reconstructs_token_grid(n: int, b: int, c: int) -> None:
    """Cutting a G x G map (G = 4n) like level 0 and merging with trim n/8 gives the map back exactly."""
    g = 4 * n
    grid = torch.randn(b, c, g, g)
    tiles = split_tiles(grid, n, 0.25)
    assert tiles.shape == (25 * b, c, n, n)
    # order: row-major tiles, batch innermost
    stride = int(n * 0.75)
    assert torch.equal(tiles[(1 * 5 + 2) * b + (b - 1)], grid[b - 1, :, stride : stride + n, 2 * stride : 2 * stride + n])
    assert torch.equal(merge_tiles(tiles, b, n // 8), grid)
    half = torch.randn(b, c, 2 * n, 2 * n)
    t1 = split_tiles(half, n, 0.5)
    assert t1.shape[0] == 9 * b
    assert torch.equal(merge_tiles(t1, b, n // 4), half)


def test_forward_rejects_wrong_size(tiny: Student) -> None:
    with pytest.raises(InvalidInputError, match="512"):
        tiny(torch.zeros(1, 3, 256, 256))
    with pytest.raises(InvalidInputError):
        tiny.infer(torch.zeros(2, 1, 64, 64))


def test_infer_conventions(tiny: Student) -> None:
    torch.manual_seed(1)
    x = torch.randn(2, 3, 60, 100)
    res = tiny.infer(x, f_px=250.0)
    assert res["depth"].shape == (2, 60, 100)
    with torch.no_grad():
        c = tiny(F.interpolate(x, size=(512, 512), mode="bilinear", align_corners=False))
    inv = F.interpolate(c * (100 / 250.0), size=(60, 100), mode="bilinear", align_corners=False)
    ref = 1.0 / inv.clamp(1e-3, 1e3)
    assert torch.allclose(res["depth"], ref.squeeze(1))
    assert torch.allclose(res["inverse_depth"] * res["depth"], torch.ones(2, 60, 100))
    assert res["depth"].min() >= 1e-3 and res["depth"].max() <= 1000.0 + 1e-3
    # depth is proportional to f_px; default f_px is 1000 (not the width)
    dflt = tiny.infer(x[:1])
    unclamped = (res["depth"][0] < 999) & (dflt["depth"] < 999)
    assert unclamped.float().mean() > 0.01 and (dflt["depth"] > 999).any()  # both branches exercised
    assert torch.allclose(dflt["depth"][unclamped], 4.0 * res["depth"][0][unclamped], rtol=1e-4)
    assert float(dflt["f_px"]) == 1000.0
    # per-image focal lengths as a tensor
    per = tiny.infer(x, f_px=torch.tensor([250.0, 500.0]))
    assert torch.allclose(per["depth"][0], res["depth"][0])
    ok = per["depth"][1] < 999
    assert torch.allclose(per["depth"][1][ok], 2 * res["depth"][1][ok], rtol=1e-5)
    # a single (3,H,W) image gives an (H,W) map (official squeeze)
    single = tiny.infer(x[0], f_px=250.0)
    assert single["depth"].shape == (60, 100)
    # batch size changes the last bits of the network's output, inverse depth; compare there (depth = 1/inv
    # multiplies an absolute error of ~1e-7 in inverse depth by up to 1e6 where the random model predicts ~1e-3)
    inv_scale = res["inverse_depth"][0].abs().max()
    assert torch.allclose(single["inverse_depth"], res["inverse_depth"][0], rtol=1e-4, atol=1e-5 * float(inv_scale))


def test_infer_at_network_size_does_not_resize(tiny: Student) -> None:
    x = torch.randn(1, 3, 512, 512)
    res = tiny.infer(x, f_px=512.0)
    with torch.no_grad():
        c = tiny(x)
    assert torch.equal(res["depth"], (1.0 / c.clamp(1e-3, 1e3)).squeeze())


def test_fov_head_off_by_default_and_optional() -> None:
    base_keys = set(Student(_micro_cfg()).state_dict())
    assert not any(k.startswith("fov.") for k in base_keys)
    torch.manual_seed(0)
    m = Student(_micro_cfg(use_fov_head=True)).eval()
    keys = set(m.state_dict())
    assert keys - base_keys and all(k.startswith("fov.") for k in keys - base_keys)
    x = torch.randn(1, 3, 64, 96)
    res = m.infer(x)
    # fresh head predicts tan(fov/2) = 0.5 -> fov_x = 53.13 deg -> f_px = W
    assert float(res["fov_x_deg"]) == pytest.approx(math.degrees(2 * math.atan(0.5)), abs=1e-4)
    assert float(res["f_px"]) == pytest.approx(96.0, rel=1e-5)
    # an explicit focal length takes precedence; NaN entries of a per-image tensor are estimated
    assert float(m.infer(x, f_px=300.0)["f_px"]) == 300.0
    x2 = torch.cat([x, x.flip(-1)])
    mixed = m.infer(x2, f_px=torch.tensor([float("nan"), 300.0]))
    assert mixed["f_px"].tolist() == pytest.approx([96.0, 300.0], rel=1e-5)
    assert torch.allclose(mixed["depth"][0], res["depth"], rtol=1e-4)
    with pytest.raises(InvalidInputError, match="NaN"):
        Student(_micro_cfg()).infer(x, f_px=torch.tensor([float("nan")]))
    # the FoV head is trainable from the depth-network features
    m.train()
    c, fov = m.forward_with_fov(torch.randn(1, 3, 512, 512))
    fov.sum().backward()
    assert m.fov.fc.weight.grad is not None and m.fov.fc.weight.grad.abs().sum() > 0
    assert c.shape == (1, 1, 512, 512)


def test_config_roundtrip_and_validation() -> None:
    for name in ["official", "fixture_tiny", "tiny", "small"]:
        cfg = student_config(name)
        assert StudentConfig.from_dict(cfg.to_dict()) == cfg
    custom = StudentConfig(vit=vit_config("dinov3_test"), tile_size=128, hook_block_ids=(0, 1, 2, 3),
                           encoder_dims=(8, 8, 8, 8), decoder_features=8)
    again = StudentConfig.from_dict(custom.to_dict())
    assert again == custom and again.vit_cfg == vit_config("dinov3_test")
    with pytest.raises(ConfigError, match="tile_size"):
        student_config("fixture_tiny", tile_size=64)
    with pytest.raises(ConfigError, match="patch-16"):
        StudentConfig(vit="small", tile_size=128, hook_block_ids=(1, 2, 3, 4))
    with pytest.raises(ConfigError, match="hook"):
        student_config("fixture_tiny", hook_block_ids=(1, 1, 2, 3))
    with pytest.raises(ConfigError, match="out of range"):
        student_config("fixture_tiny", hook_block_ids=(1, 2, 3, 9))
    with pytest.raises(ConfigError, match="unknown"):
        student_config("nope")


@pytest.mark.parametrize("name", ["tiny", "small"])
def test_trainable_presets_build_and_keep_official_wiring(name: str) -> None:
    with torch.device("meta"):
        m = Student(student_config(name))
    keys = set(m.state_dict())
    official = set(_official_keys())
    # same module tree; only the number of ViT blocks differs
    strip = {k for k in official if ".blocks." not in k}
    assert strip <= keys
    assert m.cfg.network_size == 4 * m.cfg.tile_size


def _official_keys() -> list[str]:
    with torch.device("meta"):
        return list(Student(student_config("official")).state_dict())


def test_fresh_student_trains() -> None:
    """A freshly built student has a non-zero output (no dead final ReLU) and gradients reach the ViT."""
    torch.manual_seed(0)
    m = Student(_micro_cfg()).train()
    opt = torch.optim.SGD(m.parameters(), lr=1e-3)
    x = torch.randn(1, 3, 512, 512)
    out = m(x)
    assert out.shape == (1, 1, 512, 512) and (out > 0).all()
    loss = (out - 1.0).abs().mean()
    loss.backward()
    assert m.encoder.patch_encoder.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert m.encoder.upsample_latent0[0].weight.grad.abs().sum() > 0
    opt.step()
