"""Tests for the prompt-conditioned teacher (ViT + DPT + prompt branch)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metricanything.errors import ConfigError, InvalidInputError
from metricanything.models.teacher import Teacher, TeacherConfig, network_size, teacher_config
from metricanything.prompts.encoding import encode_prompt

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def teacher() -> Teacher:
    torch.manual_seed(0)
    return Teacher(teacher_config("test")).eval()


def _randomise_prompt_branch(model: Teacher, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for enc in model.decoder.prompt_encoders.values():
            enc.proj.weight.copy_(torch.randn(enc.proj.weight.shape, generator=g) * 0.2)
            enc.proj.bias.copy_(torch.randn(enc.proj.bias.shape, generator=g) * 0.1)


def _prompt(b: int, h: int, w: int, seed: int = 0, density: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    depth = 0.5 + 10 * torch.rand(b, 1, h, w, generator=g)
    mask = torch.rand(b, 1, h, w, generator=g) < density
    mask[:, :, 0, 0] = True  # at least one point per sample
    return depth, mask


@settings(max_examples=8, deadline=None)
@given(h=st.integers(9, 90), w=st.integers(9, 90), with_prompt=st.booleans())
def test_output_matches_input_size_finite_positive(teacher: Teacher, h: int, w: int, with_prompt: bool) -> None:
    x = torch.randn(1, 3, h, w)
    pd, pm = _prompt(1, h, w) if with_prompt else (None, None)
    with torch.no_grad():
        d = teacher(x, pd, pm, f_px=torch.tensor([0.8 * w]))
    assert d.shape == (1, 1, h, w)
    assert torch.isfinite(d).all() and (d > 0).all()


@pytest.mark.parametrize("size", [(37, 53), (64, 31), (1, 200), (56, 56)])
def test_odd_sizes_and_aspects(teacher: Teacher, size: tuple[int, int]) -> None:
    h, w = size
    with torch.no_grad():
        d = teacher(torch.randn(2, 3, h, w), f_px=w * 1.2)
    assert d.shape == (2, 1, h, w) and torch.isfinite(d).all() and (d > 0).all()


def test_network_size_keeps_aspect_and_pads_to_patch() -> None:
    assert network_size(37, 53, 56, 14) == (39, 56, 42, 56)
    assert network_size(64, 31, 56, 14) == (56, 27, 56, 28)
    assert network_size(30, 20, None, 14) == (30, 20, 42, 28)


def test_zero_init_prompt_branch_makes_output_prompt_independent(teacher: Teacher) -> None:
    x = torch.randn(2, 3, 37, 53)
    pd1, pm1 = _prompt(2, 37, 53, seed=1)
    pd2, pm2 = _prompt(2, 37, 53, seed=2, density=0.3)
    with torch.no_grad():
        a = teacher.forward_with_aux(x, pd1, pm1)
        b = teacher.forward_with_aux(x, pd2, pm2)
        c = teacher.forward_with_aux(x, f_px=40.0)
    assert torch.equal(a["residual"], b["residual"]) and torch.equal(a["residual"], c["residual"])
    # the prompt only sets the reference: ln(median prompt depth) + the dense (knn-plane) fill of the prompt
    from metricanything.models.prompt_fill import knn_plane_fill
    from metricanything.prompts.encoding import encode_prompt

    med = torch.stack([pd1[i][pm1[i]].median() for i in range(2)])
    assert torch.allclose(a["log_ref"], torch.log(med), atol=1e-6)
    enc = encode_prompt(pd1, pm1)
    fill = knn_plane_fill(enc.features[:, :1], enc.features[:, 1:2] > 0.5)
    expected = med.view(2, 1, 1, 1) * torch.exp(fill + a["residual"])
    assert torch.allclose(a["depth"], expected, rtol=1e-5)
    # at prompted pixels the reference is the prompt itself: depth / z = exp(residual) there
    assert torch.allclose((a["depth"] / torch.exp(a["residual"]))[pm1], pd1[pm1], rtol=1e-5)


def test_scalar_reference_uses_only_the_median_prompt_depth() -> None:
    torch.manual_seed(0)
    model = Teacher(teacher_config("test", prompt_reference="scalar")).eval()
    x = torch.randn(2, 3, 37, 53)
    pd, pm = _prompt(2, 37, 53, seed=1)
    with torch.no_grad():
        a = model.forward_with_aux(x, pd, pm)
    med = torch.stack([pd[i][pm[i]].median() for i in range(2)])
    assert torch.allclose(a["depth"], med.view(2, 1, 1, 1) * torch.exp(a["residual"]), rtol=1e-5)


def test_gradient_flows_to_prompt_branch_and_training_makes_prompt_matter() -> None:
    torch.manual_seed(3)
    model = Teacher(teacher_config("test")).train()
    x = torch.randn(2, 3, 32, 48)
    pd, pm = _prompt(2, 32, 48, seed=4, density=0.2)
    out = model(x, pd, pm)
    torch.log(out).square().mean().backward()
    for name, enc in model.decoder.prompt_encoders.items():
        assert enc.proj.weight.grad is not None and enc.proj.weight.grad.abs().sum() > 0, name
    opt = torch.optim.SGD(model.prompt_parameters(), lr=0.5)
    opt.step()
    model.eval()
    pd2, pm2 = _prompt(2, 32, 48, seed=5, density=0.2)
    with torch.no_grad():
        r1 = model.forward_with_aux(x, pd, pm)["residual"]
        r2 = model.forward_with_aux(x, pd2, pm2)["residual"]
    assert not torch.allclose(r1, r2)


def test_values_under_zero_mask_change_nothing(teacher: Teacher) -> None:
    model = Teacher(teacher_config("test")).eval()
    model.load_state_dict(teacher.state_dict())
    _randomise_prompt_branch(model)
    x = torch.randn(2, 3, 40, 30)
    pd, pm = _prompt(2, 40, 30, seed=6)
    pd_garbage = torch.where(pm, pd, torch.full_like(pd, float("nan")))
    pd_other = torch.where(pm, pd, torch.full_like(pd, 1e6))
    with torch.no_grad():
        a = model(x, pd, pm)
        b = model(x, pd_garbage, pm)
        c = model(x, pd_other, pm)
        # and the prompt does matter once the branch is non-zero
        d = model(x, pd * torch.rand_like(pd), pm)
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.allclose(a, d)


def test_zero_prompt_points_uses_focal(teacher: Teacher) -> None:
    x = torch.randn(2, 3, 33, 47)
    empty = torch.zeros(2, 1, 33, 47, dtype=torch.bool)
    depth = torch.zeros(2, 1, 33, 47)
    f = torch.tensor([30.0, 60.0])
    with torch.no_grad():
        out = teacher.forward_with_aux(x, depth, empty, f_px=f)
        none = teacher.forward_with_aux(x, f_px=f)
    assert torch.equal(out["depth"], none["depth"])
    assert torch.allclose(out["log_ref"], torch.log(f / 47.0))
    # focal scales depth linearly: depth = f / (W C)
    with torch.no_grad():
        doubled = teacher(x, f_px=2 * f)
    assert torch.allclose(doubled, 2 * out["depth"], rtol=1e-5)
    with pytest.raises(InvalidInputError, match="f_px"):
        teacher(x, depth, empty)
    with pytest.raises(InvalidInputError, match="f_px"):
        teacher(x, f_px=torch.tensor([30.0, -1.0]))


def test_mixed_batch_prompt_and_no_prompt(teacher: Teacher) -> None:
    x = torch.randn(2, 3, 30, 30)
    pd, pm = _prompt(2, 30, 30, seed=7)
    pm[1] = False
    with torch.no_grad():
        out = teacher.forward_with_aux(x, pd, pm, f_px=25.0)
    assert out["has_prompt"].tolist() == [True, False]
    assert math.isclose(float(out["log_ref"][0]), float(torch.log(pd[0][pm[0]].median())), rel_tol=1e-6)
    assert math.isclose(float(out["log_ref"][1]), math.log(25.0 / 30.0), rel_tol=1e-6)


def test_prompt_scale_equivariance() -> None:
    torch.manual_seed(8)
    model = Teacher(teacher_config("test")).eval()
    _randomise_prompt_branch(model, seed=8)
    x = torch.randn(1, 3, 36, 44)
    pd, pm = _prompt(1, 36, 44, seed=9)
    with torch.no_grad():
        a = model(x, pd, pm)
        b = model(x, 3.0 * pd, pm)
    assert torch.allclose(b, 3.0 * a, rtol=1e-4)


def test_encoded_prompt_input_equals_raw(teacher: Teacher) -> None:
    x = torch.randn(1, 3, 28, 28)
    pd, pm = _prompt(1, 28, 28, seed=10)
    with torch.no_grad():
        a = teacher(x, pd, pm)
        b = teacher.forward_with_aux(x, encoded=encode_prompt(pd, pm))["depth"]
    assert torch.equal(a, b)


def test_input_errors(teacher: Teacher) -> None:
    with pytest.raises(InvalidInputError):
        teacher(torch.randn(1, 1, 28, 28), f_px=10.0)
    pd, pm = _prompt(1, 28, 28)
    with pytest.raises(InvalidInputError):
        teacher(torch.randn(1, 3, 28, 28), pd, None)
    with pytest.raises(InvalidInputError):
        teacher(torch.randn(1, 3, 28, 30), pd, pm)
    with pytest.raises(InvalidInputError, match="f_px"):
        teacher(torch.randn(2, 3, 28, 28), f_px=torch.tensor([1.0, 2.0, 3.0]))


def test_config_validation() -> None:
    with pytest.raises(ConfigError):
        teacher_config("nope")
    with pytest.raises(ConfigError):
        teacher_config("test", hook_indices=(0, 1, 2))
    with pytest.raises(ConfigError):
        Teacher(teacher_config("test", hook_indices=(0, 1, 2, 9)))
    cfg = teacher_config("test", prompt_hidden=0)
    model = Teacher(cfg)
    assert not model.decoder.has_prompt_branch and model.prompt_parameters() == []
    assert teacher_config("small").hook_indices == (2, 5, 8, 11)


def test_load_backbone_initialises_encoder_only(tmp_path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(11)
    src = Teacher(teacher_config("test"))
    save_file({k: v.contiguous() for k, v in src.encoder.state_dict().items()}, str(tmp_path / "vit.safetensors"))
    torch.manual_seed(12)
    dst = Teacher(teacher_config("test"))
    decoder_before = {k: v.clone() for k, v in dst.decoder.state_dict().items()}
    dst.load_backbone(str(tmp_path / "vit.safetensors"))
    assert all(torch.equal(v, src.encoder.state_dict()[k]) for k, v in dst.encoder.state_dict().items())
    assert all(torch.equal(v, decoder_before[k]) for k, v in dst.decoder.state_dict().items())


def test_guided_refiner_starts_as_identity_and_is_preset_default() -> None:
    """The zero-initialised refiner changes nothing until trained; a preset teacher has it and the fill channel."""
    from metricanything.models.dpt import GuidedRefiner

    cfg = teacher_config("test")
    assert cfg.prompt_reference == "knn_plane" and cfg.prompt_fill_channel and cfg.refine_hidden > 0
    ref = GuidedRefiner(4)
    img, fill, mask, res = (torch.randn(2, c, 12, 10) for c in (3, 1, 1, 1))
    assert torch.equal(ref(img, fill, mask, res), res)
    torch.manual_seed(0)
    torch.nn.init.normal_(ref.out.weight, std=0.1)
    assert not torch.equal(ref(img, fill, mask, res), res)
    with pytest.raises(ConfigError):
        TeacherConfig(vit="test", prompt_reference="scalar", refine_hidden=4)


def test_residual_bound_limits_the_correction_by_the_prompts_misfit_to_a_plane() -> None:
    """residual_bound b: log depth - reference = B tanh(network output / B), B = misfit + b, wherever the sample
    has a prompt; a prompt-free sample of the same batch is untouched; a planar prompt gives the reference
    (within b)."""
    from metricanything.models.prompt_fill import knn_plane_fill

    torch.manual_seed(13)
    free = Teacher(teacher_config("test")).eval()
    _randomise_prompt_branch(free, seed=13)
    gated = Teacher(teacher_config("test", residual_bound=0.01)).eval()
    gated.load_state_dict(free.state_dict())
    x = torch.randn(3, 3, 36, 44)
    pd, pm = _prompt(3, 36, 44, seed=14, density=0.05)
    pm[1] = False
    v, u = torch.meshgrid(torch.arange(36.0), torch.arange(44.0), indexing="ij")
    pd[2, 0] = 1.0 / (0.2 + 0.004 * u + 0.006 * v)  # sample 2: a plane (inverse depth affine in u, v)
    with torch.no_grad():
        a = gated.forward_with_aux(x, pd, pm, f_px=30.0)
        u_out = free.forward_with_aux(x, pd, pm, f_px=30.0)
    enc = encode_prompt(pd, pm)
    fill, misfit = knn_plane_fill(enc.features[:, :1], enc.features[:, 1:2] > 0.5, return_misfit=True)
    corr = a["log_depth"] - a["log_ref"].view(-1, 1, 1, 1) - fill
    assert float(misfit[0].median()) > 0.1  # random depths: far from planar
    bound = misfit[0] + 0.01
    assert torch.allclose(corr[0], bound * torch.tanh(u_out["residual"][0] / bound), atol=1e-5)
    assert bool((corr[0].abs() <= bound + 1e-6).all())
    assert float(u_out["residual"][0].abs().max()) > 0.01 and float((corr[0] - u_out["residual"][0]).abs().max()) > 1e-3
    assert torch.equal(a["depth"][1], u_out["depth"][1])  # no prompt: the network's output as is
    assert float(misfit[2].max()) < 1e-4
    rel = (a["depth"][2] / pd[2]).log().abs()
    assert float(rel[pm[2]].max()) <= 0.01 + 1e-4  # at the prompts: the prompt itself, within b
    assert float(corr[2].abs().max()) <= 0.01 + 1e-4  # everywhere: the planar reference, within b
    with pytest.raises(ConfigError, match="knn_plane"):
        teacher_config("test", prompt_reference="fill", residual_bound=0.0)
    with pytest.raises(ConfigError, match="residual_bound"):
        teacher_config("test", residual_bound=-0.1)
    assert teacher_config("test").residual_bound is None  # old checkpoints (no key) keep the ungated output


def test_image_guided_reference_and_residual_gate() -> None:
    """reference_guide 'image': the reference is the knn_plane fill guided by the (denormalised) image;
    residual_gate g scales the correction of prompted samples only (g = 0: the reference alone)."""
    from metricanything.models.prompt_fill import knn_plane_fill
    from metricanything.models.protocol import imagenet_normalise

    torch.manual_seed(21)
    full = Teacher(teacher_config("test", reference_guide="image")).eval()
    _randomise_prompt_branch(full, seed=21)
    closed = Teacher(teacher_config("test", reference_guide="image", residual_gate=0.0)).eval()
    closed.load_state_dict(full.state_dict())
    half = Teacher(teacher_config("test", reference_guide="image", residual_gate=0.5)).eval()
    half.load_state_dict(full.state_dict())
    rgb = torch.rand(2, 3, 36, 44)
    x = imagenet_normalise(rgb)
    pd, pm = _prompt(2, 36, 44, seed=22, density=0.05)
    pm[1] = False
    with torch.no_grad():
        a, c, m = (t.forward_with_aux(x, pd, pm, f_px=30.0) for t in (full, closed, half))
    enc = encode_prompt(pd, pm)
    fill = knn_plane_fill(enc.features[:, :1], enc.features[:, 1:2] > 0.5, guide=rgb)
    unguided = knn_plane_fill(enc.features[:, :1], enc.features[:, 1:2] > 0.5)
    ref = c["log_ref"].view(-1, 1, 1, 1)
    assert torch.allclose(c["log_depth"][0], (ref + fill)[0], atol=1e-4)  # gate 0: the guided reference alone
    assert float(((ref + unguided)[0] - c["log_depth"][0]).abs().max()) > 1e-3  # and not the unguided one
    assert torch.allclose(m["log_depth"][0] - c["log_depth"][0], 0.5 * (a["log_depth"][0] - c["log_depth"][0]),
                          atol=1e-4)  # fmt: skip
    assert float((a["log_depth"][0] - c["log_depth"][0]).abs().max()) > 1e-3
    assert torch.equal(a["depth"][1], c["depth"][1])  # no prompt: never gated
    with pytest.raises(ConfigError, match="reference_guide"):
        teacher_config("test", reference_guide="depth")
    with pytest.raises(ConfigError, match="knn_plane"):
        teacher_config("test", prompt_reference="fill", reference_guide="image")
    with pytest.raises(ConfigError, match="residual_gate"):
        teacher_config("test", residual_gate=1.5)
    cfg = teacher_config("test")
    assert cfg.reference_guide == "none" and cfg.residual_gate == 1.0  # old checkpoints keep their behaviour
