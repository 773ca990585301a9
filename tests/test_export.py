"""ONNX export: traceable building blocks, wrapper fidelity, onnxruntime parity at sizes other than the export size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metricanything.cli import main
from metricanything.errors import CheckpointError, InvalidInputError
from metricanything.models.checkpoint import from_pretrained, save_pretrained
from metricanything.models.dpt import masked_pool
from metricanything.models.student import Student, student_config
from metricanything.models.teacher import Teacher, network_size, teacher_config
from metricanything.prompts.encoding import encode_prompt
from metricanything.tasks.export import (
    _network_size_traceable,
    encode_prompt_traceable,
    example_inputs,
    export_onnx,
    export_wrapper,
    masked_pool_traceable,
    reference_outputs,
    run_onnx,
    verify_onnx,
)

torch.set_num_threads(1)
TOL = 1e-4


def _teacher(seed: int = 0) -> Teacher:
    """``test`` teacher with a non-zero prompt branch (a fresh one adds exactly 0, which would test nothing)."""
    torch.manual_seed(seed)
    model = Teacher(teacher_config("test", prompt_reference="fill")).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for enc in model.decoder.prompt_encoders.values():
            enc.proj.weight.copy_(torch.randn(enc.proj.weight.shape, generator=g) * 0.2)
            enc.proj.bias.copy_(torch.randn(enc.proj.bias.shape, generator=g) * 0.1)
    return model


def _student(seed: int = 0) -> Student:
    """``fixture_tiny`` student whose last head conv is far from its near-constant init (so outputs vary)."""
    torch.manual_seed(seed)
    model = Student(student_config("fixture_tiny")).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        last = model.head[-2]
        last.weight.copy_(torch.randn(last.weight.shape, generator=g) * 0.05)
    return model


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float(((a.double() - b.double()).abs() / b.double().abs()).max())


# --------------------------------------------------------------------------------------------- building blocks
@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 40), w=st.integers(1, 40), oh=st.integers(1, 40), ow=st.integers(1, 40),
    density=st.floats(0.0, 1.0), seed=st.integers(0, 2**16),
)
def test_masked_pool_traceable_matches_masked_pool(h, w, oh, ow, density, seed) -> None:
    g = torch.Generator().manual_seed(seed)
    value = torch.randn(2, 1, h, w, generator=g)
    mask = (torch.rand(2, 1, h, w, generator=g) < density).float()
    value[mask == 0] = float("nan")  # values under the mask must never leak
    ref_v, _, ref_m = masked_pool(value, mask, (oh, ow))
    got_v, got_m = masked_pool_traceable(value, mask, (oh, ow))
    assert torch.equal(got_m, ref_m)
    assert torch.allclose(got_v, ref_v, rtol=1e-5, atol=1e-6, equal_nan=False)


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 24), w=st.integers(1, 24), n=st.integers(0, 30), seed=st.integers(0, 2**16))
def test_encode_prompt_traceable_matches_encode_prompt(h, w, n, seed) -> None:
    """Same features / lower median / has_prompt as ``encode_prompt`` (torch.nanmedian), incl. empty prompts."""
    g = torch.Generator().manual_seed(seed)
    depth = torch.full((3, 1, h, w), float("nan"))
    mask = torch.zeros(3, 1, h, w, dtype=torch.bool)
    for i, count in enumerate((n, min(n, 2), 0)):  # third sample always empty, second has 0..2 points
        idx = torch.randperm(h * w, generator=g)[:count]
        mask[i].view(-1)[idx] = True
        depth[i].view(-1)[idx] = torch.exp(torch.randn(idx.numel(), generator=g))
    ref = encode_prompt(depth, mask)
    feats, log_scale, has = encode_prompt_traceable(depth, mask)
    assert torch.equal(has, ref.has_prompt)
    assert torch.equal(log_scale, ref.log_scale)
    assert torch.equal(feats, ref.features)


def test_network_size_traceable_is_bit_exact_including_rounding_ties() -> None:
    """4:3 images land the short side on x.5 px at 518; float64 + half-to-even must match Python's ``round``."""
    sizes = [(480, 640), (2448, 3264), (27, 48), (720, 1280), (1, 1), (3, 700), (518, 518), (1000, 999)]
    sizes += [(h, w) for h in range(1, 60, 7) for w in range(1, 90, 11)]
    like = torch.zeros(1)
    for image_size in (56, 252, 518, None):
        for h, w in sizes:
            got = _network_size_traceable(h, w, image_size, 14, like)
            assert tuple(int(v) for v in got) == network_size(h, w, image_size, 14), (h, w, image_size)


@pytest.mark.parametrize("hw", [(27, 48), (61, 83), (90, 41), (5, 7)])
def test_teacher_wrapper_reproduces_forward(hw) -> None:
    """The export wrapper (no validation, traceable ops) equals ``Teacher.forward`` with and without prompts."""
    model = _teacher()
    wrapper = export_wrapper(model)
    for n_prompt in (0, 1, 6):
        inputs = example_inputs(model, *hw, batch=2, n_prompt=n_prompt)
        with torch.no_grad():
            got = wrapper(*inputs.values())
        assert _rel(got, reference_outputs(model, inputs)) <= 1e-5
    # a mixed batch: sample 0 prompted, sample 1 not (it must use f_px)
    inputs = example_inputs(model, *hw, batch=2, n_prompt=4)
    inputs["prompt_mask"][1] = 0
    with torch.no_grad():
        got = wrapper(*inputs.values())
        ref = model(inputs["image"], inputs["prompt_depth"], inputs["prompt_mask"] > 0.5, f_px=inputs["f_px"])
    assert _rel(got, ref) <= 1e-5


def test_student_wrapper_reproduces_infer() -> None:
    model = _student()
    wrapper = export_wrapper(model)
    for hw in ((45, 67), (512, 512)):
        inputs = example_inputs(model, *hw, batch=2)
        inputs["f_px"] = torch.tensor([40.0, 95.0])
        with torch.no_grad():
            got = wrapper(*inputs.values())
        ref = reference_outputs(model, inputs)
        assert got.shape == (2, 1, *hw)
        assert _rel(got, ref) <= 1e-5
        assert _rel(got[1] * 95.0 / 40.0, got[0]) > 1e-3  # inputs differ, so do depths (not a constant map)


def test_export_rejects_bad_requests(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="opset"):
        export_onnx(_teacher(), tmp_path / "m.onnx", opset=17)
    with pytest.raises(InvalidInputError, match="Teacher or a Student"):
        export_onnx(torch.nn.Linear(2, 2), tmp_path / "m.onnx")
    with pytest.raises(CheckpointError, match="no such ONNX file"):
        verify_onnx(tmp_path / "missing.onnx", _teacher(), example_inputs(_teacher(), 8, 8))
    assert main(["export", "--model", str(tmp_path / "nope"), "--onnx", str(tmp_path / "x.onnx")]) == 2
    assert main(["export", "--model", str(tmp_path), "--onnx", str(tmp_path / "x.txt")]) == 2
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------- real exports
@pytest.fixture(scope="module")
def teacher_onnx(tmp_path_factory) -> tuple[Teacher, Path, str]:
    """A ``save_pretrained`` teacher exported by the CLI with ``--verify``."""
    root = tmp_path_factory.mktemp("teacher_export")
    save_pretrained(_teacher(), root / "ckpt")
    out = root / "onnx" / "teacher.onnx"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["export", "--model", str(root / "ckpt"), "--onnx", str(out), "--verify"])
    assert rc == 0, buf.getvalue()
    return from_pretrained(root / "ckpt"), out, buf.getvalue()


@pytest.fixture(scope="module")
def student_onnx(tmp_path_factory) -> tuple[Student, Path]:
    out = tmp_path_factory.mktemp("student_export") / "student.onnx"
    model = _student()
    # the graph optimiser is exercised by the teacher export above; skipping it here saves ~15 s
    result = export_onnx(model, out, external_data=True, optimize=False)
    assert result.path == out and result.external_data
    return model, out


@pytest.mark.slow
def test_cli_export_of_a_checkpoint(teacher_onnx) -> None:
    _, path, stdout = teacher_onnx
    assert "exported the teacher" in stdout and "verified with onnxruntime" in stdout
    assert sorted(p.name for p in path.parent.iterdir()) == ["teacher.onnx"]  # inline weights, no temp files left
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["image", "prompt_depth", "prompt_mask", "f_px"]
    assert [o.name for o in graph.output] == ["depth"]
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))  # symbolic B, H, W


@pytest.mark.slow
@pytest.mark.parametrize("hw", [(37, 53), (90, 41), (27, 48)])  # export traced at 61 x 83; 27 x 48 is a rounding tie
def test_teacher_onnx_matches_pytorch(teacher_onnx, hw) -> None:
    model, path, _ = teacher_onnx
    free = example_inputs(model, *hw, batch=2, n_prompt=0, seed=3)
    assert verify_onnx(path, model, free) <= TOL
    prompted = example_inputs(model, *hw, batch=2, n_prompt=9, seed=4)
    prompted["prompt_mask"][1] = 0  # mixed batch: sample 1 falls back to f_px
    assert verify_onnx(path, model, prompted) <= TOL
    # the prompt really changes the graph's output (so the parity above covers the prompt path)
    a = run_onnx(path, prompted)[0][0]
    prompted["prompt_depth"][0] *= 2.0
    b = run_onnx(path, prompted)[0][0]
    assert np.allclose(b / a, 2.0, rtol=1e-4)  # the scale follows the prompt median exactly
    prompted["prompt_depth"][0] /= 2.0
    prompted["prompt_mask"][0] = 0
    c = run_onnx(path, prompted)[0][0]
    assert np.abs(c / a - 1).max() > 1e-3


@pytest.mark.slow
def test_teacher_onnx_accepts_bool_like_float_mask_and_batch_one(teacher_onnx) -> None:
    model, path, _ = teacher_onnx
    inputs = example_inputs(model, 33, 33, batch=1, n_prompt=3, seed=5)
    inputs["prompt_mask"] = inputs["prompt_mask"] * 0.9  # > 0.5 means prompted
    with torch.no_grad():
        ref = model(inputs["image"], inputs["prompt_depth"], inputs["prompt_mask"] > 0.5, f_px=inputs["f_px"])
    got = torch.from_numpy(run_onnx(path, inputs)[0])
    assert _rel(got, ref) <= TOL


@pytest.mark.slow
@pytest.mark.parametrize("hw", [(45, 67), (530, 301)])  # export traced at 61 x 83; network size is 512 x 512
def test_student_onnx_matches_pytorch_infer(student_onnx, hw) -> None:
    model, path = student_onnx
    inputs = example_inputs(model, *hw, batch=2, seed=6)
    inputs["f_px"] = torch.tensor([0.7 * hw[1], 1.3 * hw[1]])
    assert verify_onnx(path, model, inputs) <= TOL
    depth = run_onnx(path, inputs)[0]
    assert depth.shape == (2, 1, *hw) and depth.dtype == np.float32
    assert np.all(depth > 0)


@pytest.mark.slow
def test_student_external_data_layout(student_onnx) -> None:
    _, path = student_onnx
    names = sorted(p.name for p in path.parent.iterdir())
    assert names == ["student.onnx", "student.onnx.data"]
    proto = onnx.load(str(path), load_external_data=False)
    locations = {
        entry.value
        for init in proto.graph.initializer
        for entry in init.external_data
        if entry.key == "location"
    }
    assert locations == {"student.onnx.data"}
    assert json.dumps([i.name for i in proto.graph.input]) == '["image", "f_px"]'


def test_knn_plane_teacher_refuses_onnx_export_clearly() -> None:
    from metricanything.tasks.export import TeacherExportWrapper

    with pytest.raises(CheckpointError, match="knn_plane"):
        TeacherExportWrapper(Teacher(teacher_config("test")))
