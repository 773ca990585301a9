"""Student-PointMap without the shared fixture: config, strict pickle-safe checkpoints, geometry, inference."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metricanything.camera import unproject
from metricanything.errors import CheckpointError, ConfigError, InputFileError, InvalidInputError
from metricanything.models import pointmap_geometry as geom
from metricanything.models.checkpoint import config_from_dict
from metricanything.models.pointmap import (
    OFFICIAL_POINTMAP_HUB_ID,
    PointMapConfig,
    PointMapModel,
    from_official_checkpoint,
    image_to_tensor,
    pointmap_config,
    read_official_checkpoint,
    save_official_checkpoint,
    tiny_random_pointmap,
)
from metricanything.models.vit import VisionTransformer, vit_config


@pytest.fixture(scope="module")
def tiny() -> PointMapModel:
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    return tiny_random_pointmap(0)


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.rand(3, 45, 70, generator=torch.Generator().manual_seed(3))


# ------------------------------------------------------------------------------------------------ config


@pytest.mark.parametrize("name", ["official", "fixture_tiny"])
def test_config_round_trip(name: str) -> None:
    cfg = pointmap_config(name)
    d = json.loads(json.dumps(cfg.to_dict()))  # plain JSON types (what the .pt stores)
    assert PointMapConfig.from_dict(d) == cfg
    assert config_from_dict(PointMapConfig, d) == cfg  # the checkpoint module's generic path
    assert set(d) == {"encoder", "neck", "points_head", "mask_head", "scale_head", "remap_output", "num_tokens_range"}
    assert d["scale_head"] == {"dims": list(cfg.scale_head_dims)}


def test_official_model_config_without_defaults_and_last_n_layers() -> None:
    d = pointmap_config("official").to_dict()
    for block in ("neck", "points_head", "mask_head"):
        del d[block]["activation"], d[block]["dim_times_res_block_hidden"]  # official defaults
    d["encoder"]["intermediate_layers"] = 4  # DINOv2's "last 4 blocks" = [20, 21, 22, 23]
    d["normal_head"] = None
    cfg = PointMapConfig.from_dict(d)
    assert cfg.encoder.layers() == [20, 21, 22, 23]
    assert cfg.neck == pointmap_config("official").neck


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(bogus=1), "bogus"),
        (lambda d: d["neck"].update(dim_hidden=3), "dim_hidden"),
        (lambda d: d["encoder"].update(img_size=518), "img_size"),
        (lambda d: d["scale_head"].update(bias=True), "bias"),
        (lambda d: d.update(normal_head=d["points_head"]), "normal_head"),
        (lambda d: d.pop("scale_head"), "scale_head"),
        (lambda d: d["points_head"].pop("res_block_in_norm"), "layer_norm"),  # official default: not implemented
        (lambda d: d["mask_head"].update(resamplers="pixel_shuffle"), "pixel_shuffle"),
        (lambda d: d.update(remap_output="tanh"), "remap_output"),
        (lambda d: d["encoder"].update(backbone="dinov2_vitg14_reg"), "dinov2_vitg14_reg"),
        (lambda d: d["encoder"].update(intermediate_layers=[5, 11, 17, 24]), "intermediate_layers"),
        (lambda d: d["encoder"].update(dim_out=512), "dim_in"),
        (lambda d: d["points_head"].update(dim_out=[None, None, None, None, 4]), "3 channels"),
        (lambda d: d.update(num_tokens_range=[3600, 1200]), "num_tokens_range"),
    ],
)
def test_config_rejects(edit, message: str) -> None:
    d = pointmap_config("official").to_dict()
    edit(d)
    with pytest.raises(ConfigError, match=message):
        PointMapConfig.from_dict(d)


def test_unknown_preset() -> None:
    with pytest.raises(ConfigError, match="fixture_tiny"):
        pointmap_config("huge")


# ------------------------------------------------------------------------------------------------ files


def test_save_and_load_official_format(tiny: PointMapModel, image: torch.Tensor, tmp_path: Path) -> None:
    path = save_official_checkpoint(tiny, tmp_path / "student_pointmap.pt")
    raw = torch.load(path, map_location="cpu", weights_only=True)  # plain types only
    assert set(raw) == {"model_config", "model"}
    assert raw["model_config"] == tiny.cfg.to_dict()
    assert list(raw["model"]) == list(tiny.state_dict())
    loaded = from_official_checkpoint(path)
    assert not loaded.training
    for k, v in tiny.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    a, b = tiny.infer(image), loaded.infer(image)
    assert torch.equal(a.depth, b.depth) and torch.equal(a.intrinsics, b.intrinsics)
    # the in-memory dict is accepted as well, and fp16 tensors are cast to the model's float32
    half = {"model_config": raw["model_config"], "model": {k: v.half() for k, v in raw["model"].items()}}
    m16 = from_official_checkpoint(half)
    w = "encoder.backbone.blocks.0.attn.qkv.weight"
    assert m16.state_dict()[w].dtype == torch.float32
    assert torch.equal(m16.state_dict()[w], raw["model"][w].half().float())


def _official(tiny: PointMapModel) -> dict:
    return {"model_config": tiny.cfg.to_dict(), "model": dict(tiny.state_dict())}


def test_strict_keys_name_the_culprits(tiny: PointMapModel, tmp_path: Path) -> None:
    ck = _official(tiny)
    del ck["model"]["encoder.backbone.mask_token"]  # unused at inference, still required
    ck["model"]["normal_head.output_blocks.4.weight"] = torch.zeros(3, 8, 1, 1)
    with pytest.raises(CheckpointError, match="missing keys 1: encoder.backbone.mask_token") as e:
        from_official_checkpoint(ck)
    assert "unexpected keys 1: normal_head.output_blocks.4.weight" in str(e.value)
    ck = _official(tiny)
    ck["model"]["scale_head.4.weight"] = torch.zeros(1, 31)
    with pytest.raises(CheckpointError, match=r"scale_head\.4\.weight \(checkpoint \(1, 31\), model \(1, 32\)\)"):
        from_official_checkpoint(ck)
    ck = _official(tiny)
    ck["model"]["scale_head.4.bias"] = [0.3]
    with pytest.raises(CheckpointError, match="not tensors"):
        from_official_checkpoint(ck)
    # a wrong architecture in model_config is reported as such (not as a pile of key errors)
    ck = _official(tiny)
    ck["model_config"]["encoder"]["backbone"] = "dinov2_vitl14"
    with pytest.raises(CheckpointError, match="scale_head dims"):
        from_official_checkpoint(ck)
    ck = _official(tiny)
    ck["model_config"]["neck"]["extra"] = 1
    with pytest.raises(CheckpointError, match="invalid model_config: unknown neck keys: \\['extra'\\]"):
        from_official_checkpoint(ck)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=OFFICIAL_POINTMAP_HUB_ID):
        read_official_checkpoint(tmp_path / "missing.pt")
    p = tmp_path / "state_dict_only.pt"
    torch.save({"encoder.image_mean": torch.zeros(1, 3, 1, 1)}, p)
    with pytest.raises(CheckpointError, match="expected a dict with 'model_config' and 'model'"):
        read_official_checkpoint(p)
    p = tmp_path / "garbage.pt"
    p.write_bytes(b"not a zip or pickle")
    with pytest.raises(InputFileError, match="garbage.pt"):
        read_official_checkpoint(p)


class _Payload:
    """Unpickling this calls ``Path.touch(target)``: stands for arbitrary code in a malicious file."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def test_loading_never_unpickles_code(tiny: PointMapModel, tmp_path: Path) -> None:
    sentinel = tmp_path / "code_ran"
    p = tmp_path / "student_pointmap.pt"
    torch.save({**_official(tiny), "extra": _Payload(sentinel)}, p)
    with pytest.raises(InputFileError, match="weights-only"):
        from_official_checkpoint(p)
    assert not sentinel.exists()
    # control: the file really does run code when unpickled without the weights-only guard
    with open(p, "rb") as f:
        torch.load(f, map_location="cpu", weights_only=False)
    assert sentinel.exists()


# ------------------------------------------------------------------------------------------------ geometry


@given(w=st.integers(1, 300), h=st.integers(1, 300))
@settings(max_examples=40, deadline=None)
def test_view_plane_uv_is_pixel_centre_over_half_diagonal(w: int, h: int) -> None:
    uv = geom.normalized_view_plane_uv(w, h, dtype=torch.float64)
    half_diag = 0.5 * math.hypot(w, h)
    u = (np.arange(w) + 0.5 - w / 2) / half_diag
    v = (np.arange(h) + 0.5 - h / 2) / half_diag
    assert uv.shape == (h, w, 2)
    np.testing.assert_allclose(uv[..., 0].numpy(), np.broadcast_to(u, (h, w)), atol=1e-12)
    np.testing.assert_allclose(uv[..., 1].numpy(), np.broadcast_to(v[:, None], (h, w)), atol=1e-12)


def test_token_grid_and_levels() -> None:
    a = 160 / 96
    assert [geom.token_grid(n, a) for n in (50, 120, 77, 40)] == [(5, 9), (8, 14), (7, 11), (5, 8)]
    assert geom.token_grid(64, 1.0) == (8, 8)
    assert geom.token_grid(3600, 4 / 3) == (52, 69)
    with pytest.raises(InvalidInputError, match="empty token grid"):
        geom.token_grid(1, 10.0)
    assert [geom.tokens_for_level(lv, (1200, 3600)) for lv in (0, 5, 9)] == [1200, 2533, 3600]
    with pytest.raises(InvalidInputError, match="resolution_level"):
        geom.tokens_for_level(10, (1200, 3600))


def _camera_point_map(focal: float, shift: float, h: int = 60, w: int = 90) -> tuple[torch.Tensor, torch.Tensor]:
    """Affine point map (x, y, z - shift) of a smooth scene seen by a pinhole camera of relative focal ``focal``."""
    uv = geom.normalized_view_plane_uv(w, h, dtype=torch.float64)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h, dtype=torch.float64), torch.linspace(0, 1, w, dtype=torch.float64),
                            indexing="ij")
    z = 2.0 + 1.5 * xx + 0.8 * torch.sin(3 * yy) + 0.3 * xx * yy
    xy = uv / focal * z[..., None]
    return torch.cat([xy, (z - shift)[..., None]], dim=-1).float()[None], z.float()[None]


def test_recover_focal_shift_on_an_exact_pinhole_map() -> None:
    pts, _ = _camera_point_map(focal=1.3, shift=0.4)
    focal, shift, rms = geom.recover_focal_shift(pts)
    assert focal.item() == pytest.approx(1.3, abs=2e-3) and shift.item() == pytest.approx(0.4, abs=5e-3)
    assert rms.item() < 1e-3
    # known focal: the shift alone
    f, s, _ = geom.recover_focal_shift(pts, focal=torch.tensor([1.3]))
    assert f.item() == pytest.approx(1.3) and s.item() == pytest.approx(0.4, abs=5e-3)
    # a wrong known focal leaves a visible residual
    _, _, bad = geom.recover_focal_shift(pts, focal=torch.tensor([0.9]))
    assert bad.item() > 10 * rms.item()


def test_recover_focal_shift_with_too_few_samples() -> None:
    pts, _ = _camera_point_map(focal=1.3, shift=0.4)
    mask = torch.zeros(pts.shape[:-1], dtype=torch.bool)
    mask[0, 5, 5] = True  # 60 x 90 -> 64 x 64 nearest: row 5 is sampled once (dst 6), column 5 once (dst 4)
    for m in (mask, torch.zeros_like(mask)):
        focal, shift, rms = geom.recover_focal_shift(pts, m)
        assert (focal.item(), shift.item()) == (1.0, 0.0) and math.isnan(rms.item())
    mask[0, 0, 0] = True  # row 0 is sampled twice: two samples are enough to solve
    focal, _, rms = geom.recover_focal_shift(pts, mask)
    assert focal.item() != 1.0 and math.isfinite(rms.item())


def test_intrinsics_and_depth_to_points_invert_projection() -> None:
    a = 90 / 60
    focal = geom.focal_from_fov_x(70.0, a, 2, torch.float64, torch.device("cpu"))
    k = geom.intrinsics_from_focal(focal, a)
    assert k.shape == (2, 3, 3)
    assert k[0, 0, 0].item() == pytest.approx(0.5 / math.tan(math.radians(35.0)))
    assert k[0, 1, 1].item() == pytest.approx(k[0, 0, 0].item() * a)  # square pixels: fy H = fx W
    fx_px = k[0, 0, 0].item() * 90
    f2 = geom.focal_from_fx_px(fx_px, 90, 60, 1, torch.float64, torch.device("cpu"))
    assert f2.item() == pytest.approx(focal[0].item())
    depth = 1.0 + torch.rand(2, 60, 90, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    pts = geom.depth_to_points(depth, k)
    u = k[:, None, None, 0, 0] * pts[..., 0] / pts[..., 2] + k[:, None, None, 0, 2]
    v = k[:, None, None, 1, 1] * pts[..., 1] / pts[..., 2] + k[:, None, None, 1, 2]
    torch.testing.assert_close(u[0, 0], (torch.arange(90, dtype=torch.float64) + 0.5) / 90)
    torch.testing.assert_close(v[1, :, 0], (torch.arange(60, dtype=torch.float64) + 0.5) / 60)
    torch.testing.assert_close(pts[..., 2], depth)
    with pytest.raises(InvalidInputError, match="fov_x"):
        geom.focal_from_fov_x(180.0, a, 1, torch.float32, torch.device("cpu"))
    with pytest.raises(InvalidInputError, match="one value per image"):
        geom.focal_from_fx_px(torch.tensor([100.0, 120.0, 90.0]), 90, 60, 2, torch.float32, torch.device("cpu"))


def test_dinov2_pos_embed_resize_by_offset_scale_factor() -> None:
    """``pos_embed_interp_offset``: bicubic with scale (n + 0.1) / M (source coordinates from that scale)."""
    cfg = vit_config("test", pos_embed_interp_offset=0.1)  # 4x4 position grid
    vit = VisionTransformer(cfg)
    with torch.no_grad():
        vit.pos_embed.normal_(generator=torch.Generator().manual_seed(0))
    grid = vit.pos_embed[:, 1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
    out = vit.interpolate_pos_embed(3, 7)
    assert out.shape == (1, 1 + 21, cfg.embed_dim) and torch.equal(out[:, :1], vit.pos_embed[:, :1])
    # bicubic (a = -0.75) by hand along the columns of row-interpolated data: src = (d + 0.5) / s - 0.5
    def weights(src: float) -> list[tuple[int, float]]:
        i0 = math.floor(src)
        t = src - i0
        def k(x: float) -> float:
            x = abs(x)
            return (1.25 * x - 2.25) * x * x + 1 if x <= 1 else ((-0.75 * x + 3.75) * x - 6) * x + 3
        return [(min(max(i0 + j, 0), 3), k(t - j)) for j in (-1, 0, 1, 2)]
    sy, sx = (3 + 0.1) / 4, (7 + 0.1) / 4
    want = torch.zeros(cfg.embed_dim, 3, 7, dtype=torch.float64)
    g = grid[0].double()
    for r in range(3):
        for c in range(7):
            for i, wi in weights((r + 0.5) / sy - 0.5):
                for j, wj in weights((c + 0.5) / sx - 0.5):
                    want[:, r, c] += wi * wj * g[:, i, j]
    got = out[0, 1:].T.reshape(cfg.embed_dim, 3, 7).double()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    by_size = VisionTransformer(vit_config("test"))
    by_size.load_state_dict(vit.state_dict())
    assert (by_size.interpolate_pos_embed(3, 7) - out).abs().max() > 1e-2  # not the output-size resize
    assert torch.equal(vit.interpolate_pos_embed(4, 4), vit.pos_embed)  # native grid: unchanged
    for bad in (0.0, 1.0):
        with pytest.raises(ConfigError, match="pos_embed_interp_offset"):
            vit_config("test", pos_embed_interp_offset=bad)


# ------------------------------------------------------------------------------------------------ model


def test_forward_outputs(tiny: PointMapModel, image: torch.Tensor) -> None:
    with torch.no_grad():
        out = tiny(image[None], 60)
    assert out["points"].shape == (1, 45, 70, 3) and out["mask"].shape == (1, 45, 70)
    assert out["metric_scale"].shape == (1,) and (out["metric_scale"] > 0).all()
    assert ((out["mask"] >= 0) & (out["mask"] <= 1)).all() and (out["points"][..., 2] > 0).all()  # exp remap


@pytest.mark.parametrize("mode", ["linear", "sinh", "exp", "sinh_exp"])
def test_remap_modes(mode: str) -> None:
    m = PointMapModel.__new__(PointMapModel)
    torch.nn.Module.__init__(m)
    m.cfg = pointmap_config("fixture_tiny")
    m.cfg.remap_output = mode
    raw = torch.randn(2, 4, 5, 3, generator=torch.Generator().manual_seed(1))
    xy, z = raw[..., :2], raw[..., 2:]
    want = {
        "linear": raw,
        "sinh": torch.sinh(raw),
        "exp": torch.cat([xy * z.exp(), z.exp()], -1),
        "sinh_exp": torch.cat([torch.sinh(xy), z.exp()], -1),
    }[mode]
    torch.testing.assert_close(m.remap_points(raw), want)


def test_infer_metric_geometry(tiny: PointMapModel, image: torch.Tensor) -> None:
    r = tiny.infer(image)
    h, w = image.shape[-2:]
    assert r.points.shape == (h, w, 3) and r.depth.shape == (h, w) and r.mask.shape == (h, w)
    assert r.intrinsics.shape == (3, 3) and r.focal.shape == () and r.intrinsics_source == "estimated"
    assert r.token_grid == geom.token_grid(120, w / h)
    assert r.mask.float().mean() > 0.9
    valid = r.mask
    assert torch.isinf(r.depth[~valid]).all() and torch.isfinite(r.depth[valid]).all()
    torch.testing.assert_close(r.points[..., 2][valid], r.depth[valid])
    # the pixel intrinsics in the project's convention unproject the depth to the same points
    k = r.camera_intrinsics()
    assert (k.width, k.height) == (w, h)
    assert k.cx == pytest.approx((w - 1) / 2) and k.cy == pytest.approx((h - 1) / 2)
    assert k.fx == pytest.approx(k.fy, rel=1e-6)  # square pixels
    assert k.fx == pytest.approx(r.focal.item() * 0.5 * math.hypot(w, h), rel=1e-6)
    pts = unproject(np.where(valid.numpy(), r.depth.numpy(), 0.0).astype(np.float32), k)
    np.testing.assert_allclose(pts[valid.numpy()], r.points[valid].numpy(), rtol=1e-5, atol=1e-5)
    # batch axis: a 4-D input keeps it, with the same numbers
    rb = tiny.infer(image[None])
    assert rb.depth.shape == (1, h, w) and rb.intrinsics.shape == (1, 3, 3) and rb.focal.shape == (1,)
    assert torch.equal(rb.depth[0], r.depth) and torch.equal(rb.intrinsics[0], r.intrinsics)


def test_infer_with_given_intrinsics(tiny: PointMapModel, image: torch.Tensor) -> None:
    est = tiny.infer(image)
    h, w = image.shape[-2:]
    k = est.camera_intrinsics()
    given = tiny.infer(image, fx_px=k.fx)
    assert given.intrinsics_source == "given"
    torch.testing.assert_close(given.intrinsics, est.intrinsics, rtol=1e-6, atol=1e-6)
    assert given.shift.item() == pytest.approx(est.shift.item(), abs=5e-3)  # the loose solve restarts from 0
    fov = tiny.infer(image, fov_x=k.fov_x)
    torch.testing.assert_close(fov.intrinsics, given.intrinsics, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fov.depth, given.depth, rtol=1e-4, atol=1e-5)
    # a different focal changes the shift and the geometry; the intrinsics are exactly the given ones
    wide = tiny.infer(image, fov_x=90.0)
    assert wide.intrinsics[0, 0].item() == pytest.approx(0.5)
    assert wide.camera_intrinsics().fov_x == pytest.approx(90.0)
    assert (wide.depth[wide.mask] - est.depth[wide.mask]).abs().max() > 1e-2
    with pytest.raises(InvalidInputError, match="at most one"):
        tiny.infer(image, fov_x=60.0, fx_px=100.0)


def test_infer_options(tiny: PointMapModel, image: torch.Tensor) -> None:
    raw = tiny.infer(image, force_projection=False, apply_mask=False)
    assert torch.isfinite(raw.points).all() and torch.isfinite(raw.depth).all()
    with torch.no_grad():
        fwd = tiny(image[None], 120)
    # no projection: forward points with z shifted, times the metric scale
    expect = fwd["points"][0].clone()
    expect[..., 2] += raw.shift
    torch.testing.assert_close(raw.points, expect * raw.metric_scale)
    few = tiny.infer(image, resolution_level=0)
    assert few.token_grid == geom.token_grid(40, 70 / 45)
    assert tiny.infer(image, num_tokens=30).token_grid == geom.token_grid(30, 70 / 45)
    half = tiny.infer(image, use_fp16=True)  # float16 autocast on the network, float32 geometry
    both = half.mask & raw.mask
    rel = ((half.depth - raw.depth).abs() / raw.depth)[both]
    assert half.depth.dtype == torch.float32 and rel.max() < 2e-2


def test_infer_rejects_bad_images(tiny: PointMapModel) -> None:
    with pytest.raises(InvalidInputError, match="divide uint8 by 255"):
        tiny.infer(torch.zeros(3, 20, 20, dtype=torch.uint8))
    with pytest.raises(InvalidInputError, match=r"\(B, 3, H, W\)"):
        tiny.infer(torch.zeros(1, 20, 20))


def test_tiny_random_model_is_deterministic() -> None:
    a, b, c = tiny_random_pointmap(0), tiny_random_pointmap(0), tiny_random_pointmap(1)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert not torch.equal(a.state_dict()["scale_head.0.weight"], c.state_dict()["scale_head.0.weight"])


def test_image_to_tensor() -> None:
    u8 = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    x = image_to_tensor(u8)
    assert x.shape == (3, 5, 7) and x.dtype == torch.float32
    assert torch.equal(x, torch.tensor(u8.astype(np.float64) / 255.0, dtype=torch.float32).permute(2, 0, 1))
    assert x[:, 0, 0].tolist() == pytest.approx((u8[0, 0] / 255.0).tolist())
    with pytest.raises(InvalidInputError, match="uint8"):
        image_to_tensor(u8.astype(np.float32))


def test_infer_outputs_are_ordinary_tensors(tiny: PointMapModel, image: torch.Tensor) -> None:
    r = tiny.infer(image)
    r.depth[~r.mask] = 0.0  # editable in place (not inference-mode tensors)
    assert not r.depth.requires_grad and (r.depth >= 0).all()
