"""The student's fast CPU inference path: bf16 autocast, channels-last decoder, fused RoPE.

Tolerances: bf16 keeps 8 significant bits (unit roundoff 2^-9 ~ 0.2 %); the student's depth goes through a few
dozen rounded layers, whose errors partly cancel. Measured on the trained bundled student (4 rendered scenes,
``benchmarks/model_speed.py``): mean relative depth difference 0.17 %, max 0.63 %. The asserted bounds (mean 1 %,
max 5 %) leave a ~6x margin for other CPUs / kernels while still catching a broken path (a wrong rotation or a
layout bug moves depth by tens of percent).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from metricanything import api
from metricanything.models.student import Student, student_config
from metricanything.models.vit import FusedRope, _apply_rope, apply_rope_fused, rope_periods, rope_sin_cos

FIXTURE = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "official_student"
MEAN_REL_TOL = 0.01
MAX_REL_TOL = 0.05


@pytest.fixture(scope="module")
def tiny() -> Student:
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    torch.manual_seed(0)
    return Student(student_config("fixture_tiny")).eval()


def _rel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.double() - b.double()).abs() / b.double().abs()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_rope_matches_reference(dtype: torch.dtype) -> None:
    b, n_prefix, g, heads, hd = 2, 5, 6, 3, 16
    n = n_prefix + g * g
    sin, cos = rope_sin_cos(rope_periods(hd, 100.0), g, g)
    qkv = torch.randn(b, n, 3, heads, hd, generator=torch.Generator().manual_seed(0)).to(dtype)
    q, k, v = (t.transpose(1, 2) for t in torch.unbind(qkv, 2))
    ref_q, ref_k = _apply_rope(q, sin, cos, n_prefix), _apply_rope(k, sin, cos, n_prefix)
    fused = apply_rope_fused(qkv.clone(), FusedRope.from_sin_cos(sin, cos), n_prefix)
    fq, fk, fv = (t.transpose(1, 2) for t in torch.unbind(fused, 2))
    assert fused.dtype == dtype
    assert torch.equal(fv, v)  # values untouched
    assert torch.equal(fq[:, :, :n_prefix], q[:, :, :n_prefix]) and torch.equal(fk[:, :, :n_prefix], k[:, :, :n_prefix])
    # float32: equal to float rounding (multiply-add order); bf16: at most one bf16 rounding step apart
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == torch.float32 else dict(rtol=2**-7, atol=2**-7)
    torch.testing.assert_close(fq, ref_q, **tol)
    torch.testing.assert_close(fk, ref_k, **tol)
    assert not torch.equal(fq[:, :, n_prefix:], q[:, :, n_prefix:])  # the rotation did something


def test_fp32_path_is_unchanged_and_fast_mode_restores(tiny: Student) -> None:
    x = torch.randn(1, 3, 300, 400, generator=torch.Generator().manual_seed(1))
    before = tiny.infer(x, f_px=350.0)["depth"]
    vit = tiny.encoder.patch_encoder
    # reference computed the old way: the reference RoPE (rotate_half + cat) and contiguous decoder activations
    assert not vit.fused_rope and not tiny.channels_last
    fast = tiny.infer(x, f_px=350.0, fast=True)["depth"]
    assert not vit.fused_rope and not tiny.channels_last  # settings restored
    after = tiny.infer(x, f_px=350.0)["depth"]
    assert torch.equal(before, after)
    assert fast.dtype == torch.float32 and bool(torch.isfinite(fast).all())
    assert not torch.equal(fast, before)  # the fast path really ran in bf16


@pytest.mark.skipif(not (FIXTURE / "tiny_io.safetensors").is_file(), reason="official student fixture absent")
def test_fixture_parity_fast_components_and_bf16_error() -> None:
    """fp32 still matches the official fixture; the fast path's layout / RoPE changes are exact to float
    rounding in fp32; in bf16 its error is that of plain bf16 autocast (random fixture weights amplify bf16
    rounding: normalised mean 2 %, so the absolute bound here is looser than on the trained student)."""
    from safetensors.torch import load_file

    m = Student(student_config("fixture_tiny"))
    m.load_state_dict(load_file(str(FIXTURE / "tiny_weights.safetensors")), strict=True)
    m.eval()
    io = load_file(str(FIXTURE / "tiny_io.safetensors"))
    x = io["x"].float()
    with torch.no_grad():
        fp32 = m(x)
        assert (fp32 - io["forward_out"]).abs().max().item() <= 1e-4  # test_student_parity's tolerance
        m.channels_last, m.encoder.patch_encoder.fused_rope = True, True
        try:
            layout_rope = m(x)
        finally:
            m.channels_last, m.encoder.patch_encoder.fused_rope = False, False
        with torch.autocast("cpu", dtype=torch.bfloat16):
            plain_bf16 = m(x).float()
        with m.fast_mode():
            fast = m(x).float()
    scale = fp32.mean()
    assert ((layout_rope - fp32).abs().max() / scale).item() <= 1e-4
    err_fast = ((fast - fp32).abs().mean() / scale).item()
    err_plain = ((plain_bf16 - fp32).abs().mean() / scale).item()
    assert err_fast <= 0.05 and err_fast <= 1.25 * err_plain + 1e-4


def test_fast_mode_engages_bf16_channels_last_and_fused_rope(tiny: Student) -> None:
    seen: dict[str, object] = {}

    def on_decoder(mod, args):  # noqa: ANN001
        enc = args[0]
        seen["channels_last"] = all(e.is_contiguous(memory_format=torch.channels_last) for e in enc)
        seen["autocast"] = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        seen["fused"] = tiny.encoder.patch_encoder.fused_rope

    h = tiny.decoder.register_forward_pre_hook(on_decoder)
    try:
        tiny.infer(torch.rand(1, 3, 64, 80), f_px=80.0, fast=True)
    finally:
        h.remove()
    assert seen == {"channels_last": True, "autocast": True, "fused": True}


def test_api_bf16_uses_the_fast_path_on_the_bundled_student() -> None:
    from metricanything.data.render import render_sample
    from metricanything.models.bundled import bundled_model_dir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = api.load_model(bundled_model_dir("student"))
    calls: list[bool] = []
    orig = model.fast_mode

    def spy(*a, **k):  # noqa: ANN002, ANN003
        calls.append(True)
        return orig(*a, **k)

    model.fast_mode = spy
    s = render_sample(3, size=(160, 120))
    a = api.infer(model, s.image, intrinsics=s.intrinsics)
    assert not calls
    b = api.infer(model, s.image, intrinsics=s.intrinsics, precision="bf16")
    assert calls == [True]
    ok = a.valid & b.valid
    assert ok.mean() > 0.99 and b.depth.dtype == np.float32
    rel = np.abs(b.depth[ok].astype(np.float64) - a.depth[ok]) / a.depth[ok]
    assert rel.mean() <= MEAN_REL_TOL and rel.max() <= MAX_REL_TOL
    assert rel.max() > 0  # bf16 actually used


def test_cli_precision_flag(tmp_path: Path, tiny: Student) -> None:
    from PIL import Image

    from metricanything.cli import main
    from metricanything.models.checkpoint import save_pretrained

    save_pretrained(tiny, tmp_path / "student")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "img.png")
    depth = {}
    for prec in ("fp32", "bf16"):
        out = tmp_path / prec
        code = main(["infer", "-i", str(tmp_path / "img.png"), "-o", str(out), "--model", str(tmp_path / "student"),
                     "--fx", "60", "--precision", prec, "--quiet", "--no-vis"])
        assert code == 0
        depth[prec] = np.load(next(out.rglob("depth.npy")))
    rel = np.abs(depth["bf16"].astype(np.float64) - depth["fp32"]) / depth["fp32"]
    assert rel.mean() <= MEAN_REL_TOL and 0 < rel.max() <= MAX_REL_TOL
