"""Tests for the inference API (metricanything.api)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metricanything.api import (
    DepthResult,
    EstimatedFocalWarning,
    SyntheticModelWarning,
    infer,
    load_model,
    model_info,
)
from metricanything.camera import Intrinsics, IntrinsicsSource
from metricanything.errors import InvalidInputError
from metricanything.models.checkpoint import save_pretrained
from metricanything.models.student import Student, student_config
from metricanything.models.teacher import Teacher, teacher_config
from metricanything.prompts.prompt import Prompt

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def teacher() -> Teacher:
    torch.manual_seed(0)
    model = Teacher(teacher_config("test")).eval()
    with torch.no_grad():
        for enc in model.decoder.prompt_encoders.values():
            enc.proj.weight.normal_(0, 0.1)
    return model


@pytest.fixture(scope="module")
def student() -> Student:
    torch.manual_seed(1)
    return Student(student_config("fixture_tiny")).eval()


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("size", [(37, 53), (64, 31), (20, 20)])
def test_teacher_output_at_input_size(teacher: Teacher, size: tuple[int, int]) -> None:
    h, w = size
    res = infer(teacher, _image(h, w), f_px=0.9 * w)
    assert isinstance(res, DepthResult)
    assert res.depth.shape == (h, w) and res.depth.dtype == np.float32
    assert res.valid.shape == (h, w) and res.valid.dtype == bool and res.valid.all()
    assert np.isfinite(res.depth).all() and (res.depth > 0).all()
    assert res.model_kind == "teacher" and res.confidence is None
    assert res.intrinsics == Intrinsics.from_focal(0.9 * w, w, h)
    assert res.intrinsics_source is IntrinsicsSource.GIVEN


def test_input_types_agree(teacher: Teacher) -> None:
    img = _image(29, 41, seed=1)
    a = infer(teacher, img, f_px=30.0).depth
    b = infer(teacher, Image.fromarray(img), f_px=30.0).depth
    c = infer(teacher, torch.from_numpy(img).permute(2, 0, 1).float() / 255.0, f_px=30.0).depth
    d = infer(teacher, img.astype(np.float32) / 255.0, f_px=30.0).depth
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, c, rtol=1e-6)
    np.testing.assert_allclose(a, d, rtol=1e-6)


def test_intrinsics_priority_and_sources(teacher: Teacher) -> None:
    img = _image(30, 40, seed=2)
    K = Intrinsics(50.0, 52.0, 18.0, 16.0, 40, 30)
    res = infer(teacher, img, intrinsics=K, f_px=999.0)  # explicit intrinsics win over f_px
    assert res.intrinsics == K and res.intrinsics_source is IntrinsicsSource.GIVEN
    with pytest.warns(UserWarning, match="assuming fx = fy = 1 x width"):
        fb = infer(teacher, img)
    assert fb.intrinsics_source is IntrinsicsSource.FALLBACK
    assert math.isclose(fb.intrinsics.fx, 40.0) and math.isclose(fb.intrinsics.fov_x, 2 * math.degrees(math.atan(0.5)))
    # prompt-free teacher depth is proportional to the focal length: depth = f / (W C)
    np.testing.assert_allclose(infer(teacher, img, f_px=80.0).depth, 2 * fb.depth, rtol=1e-5)
    with pytest.raises(InvalidInputError, match="intrinsics 0 are for a 64x48 image"):
        infer(teacher, img, intrinsics=K.resized(64, 48))
    with pytest.raises(InvalidInputError, match="f_px"):
        infer(teacher, img, f_px=-3.0)


def test_points_are_lazy_and_consistent(teacher: Teacher) -> None:
    res = infer(teacher, _image(24, 32), f_px=20.0)
    assert res._points is None
    pts = res.points
    assert pts.shape == (24, 32, 3)
    np.testing.assert_allclose(pts[..., 2], res.depth, rtol=1e-6)
    u = 31
    np.testing.assert_allclose(pts[5, u, 0], (u - res.intrinsics.cx) * res.depth[5, u] / 20.0, rtol=1e-5)
    assert res.points is pts  # cached


def test_prompt_path(teacher: Teacher) -> None:
    h, w = 36, 48
    img = _image(h, w, seed=3)
    rng = np.random.default_rng(4)
    pts = np.stack([rng.uniform(0, w - 1, 30), rng.uniform(0, h - 1, 30), rng.uniform(1, 8, 30)], axis=1)
    prompt = Prompt.from_points(pts, w, h)
    depth_map, mask = prompt.to_map()
    with pytest.warns(UserWarning, match="prompt fixes the depth scale"):
        a = infer(teacher, img, prompt=prompt)
    b = infer(teacher, img, prompt=(depth_map, mask), f_px=30.0)
    c = infer(teacher, img, prompt=(depth_map * 2.0, mask), f_px=60.0)
    np.testing.assert_array_equal(a.depth, b.depth)  # with prompt points, the focal does not change depth
    np.testing.assert_allclose(c.depth, 2.0 * a.depth, rtol=1e-4)  # metric scale follows the prompt
    empty = infer(teacher, img, prompt=Prompt.empty(w, h), f_px=30.0)
    np.testing.assert_array_equal(empty.depth, infer(teacher, img, f_px=30.0).depth)
    with pytest.raises(InvalidInputError, match="prompt is for a 10x10 image"):
        infer(teacher, img, prompt=Prompt.empty(10, 10), f_px=30.0)
    with pytest.raises(InvalidInputError, match="image size"):
        infer(teacher, img, prompt=(depth_map[:-1], mask[:-1]), f_px=30.0)


def test_batched_list_matches_single(teacher: Teacher) -> None:
    imgs = [_image(30, 40, 5), _image(25, 50, 6), _image(30, 40, 7)]
    out = infer(teacher, imgs, f_px=[30.0, 40.0, 50.0])
    assert isinstance(out, list) and [r.depth.shape for r in out] == [(30, 40), (25, 50), (30, 40)]
    for img, f, r in zip(imgs, [30.0, 40.0, 50.0], out, strict=True):
        np.testing.assert_allclose(r.depth, infer(teacher, img, f_px=f).depth, rtol=1e-5)
        assert r.intrinsics.fx == f
    batch = torch.stack([torch.from_numpy(i).permute(2, 0, 1).float() / 255 for i in (imgs[0], imgs[2])])
    tb = infer(teacher, batch, f_px=30.0)
    assert len(tb) == 2
    np.testing.assert_allclose(tb[1].depth, infer(teacher, imgs[2], f_px=30.0).depth, rtol=1e-5)
    with pytest.raises(InvalidInputError, match="2 entries for 3 images"):
        infer(teacher, imgs, f_px=[1.0, 2.0])


def test_student_matches_official_infer(student: Student) -> None:
    img = _image(40, 70, seed=8)
    res = infer(student, img, f_px=55.0)
    assert res.depth.shape == (40, 70) and res.model_kind == "student"
    x = torch.from_numpy(img).permute(2, 0, 1).float()[None] / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = student.infer((x - mean) / std, f_px=55.0)
    np.testing.assert_allclose(res.depth, ref["depth"].numpy(), rtol=1e-6)
    np.testing.assert_array_equal(res.valid, ref["inverse_depth"].numpy() > 1e-3)
    with pytest.raises(InvalidInputError, match="prompt-free"):
        infer(student, img, f_px=55.0, prompt=Prompt.empty(70, 40))
    with pytest.warns(UserWarning, match="no field-of-view head"):
        assert infer(student, img).intrinsics_source is IntrinsicsSource.FALLBACK


def test_student_fov_head_estimates_focal() -> None:
    torch.manual_seed(2)
    model = Student(student_config("fixture_tiny", use_fov_head=True)).eval()
    img = _image(40, 60, seed=9)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = infer(model, img)
    # one warning, saying the focal is an estimate and that this in-memory model's head error is unmeasured
    assert [w.category for w in caught] == [EstimatedFocalWarning]
    assert "field-of-view head (its error is unmeasured" in str(caught[0].message)
    assert res.intrinsics_source is IntrinsicsSource.ESTIMATED
    assert math.isclose(res.intrinsics.fx, 60.0, rel_tol=1e-4)  # an untrained FoV head predicts 53.13 deg
    given = infer(model, img, f_px=60.0)
    np.testing.assert_allclose(res.depth, given.depth, rtol=1e-4)


def test_low_precision_and_guard(teacher: Teacher) -> None:
    img = _image(30, 30, seed=10)
    fp32 = infer(teacher, img, f_px=30.0).depth
    bf16 = infer(teacher, img, f_px=30.0, precision="bf16").depth
    assert np.isfinite(bf16).all()
    np.testing.assert_allclose(bf16, fp32, rtol=0.1)
    with pytest.raises(InvalidInputError, match="precision"):
        infer(teacher, img, f_px=30.0, precision="fp8")

    class Overflowing(torch.nn.Module):
        model_kind = "teacher"
        predict_depth = Teacher.predict_depth  # the teacher's call protocol around this forward

        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, x, pd, pm, f_px):
            d = self.w * torch.ones(x.shape[0], 1, *x.shape[-2:])
            return d * float("inf") if torch.is_autocast_enabled(x.device.type) else d

    with pytest.warns(UserWarning, match="non-finite depth in bf16 inference; recomputing in fp32"):
        res = infer(Overflowing(), img, f_px=30.0, precision="bf16")
    assert np.all(res.depth == 1.0)


def test_bad_images(teacher: Teacher) -> None:
    with pytest.raises(InvalidInputError, match=r"\[0, 1\]"):
        infer(teacher, np.full((10, 10, 3), 3.0, dtype=np.float32), f_px=10.0)
    with pytest.raises(InvalidInputError, match="3 x H x W"):
        infer(teacher, torch.rand(10, 10, 3), f_px=10.0)
    with pytest.raises(InvalidInputError, match="uint8 or float"):
        infer(teacher, np.zeros((10, 10, 3), dtype=np.uint16), f_px=10.0)
    with pytest.raises(InvalidInputError, match="expected"):
        infer(teacher, "image.png", f_px=10.0)
    gray = infer(teacher, np.full((12, 14), 128, dtype=np.uint8), f_px=10.0)
    rgb = infer(teacher, np.full((12, 14, 3), 128, dtype=np.uint8), f_px=10.0)
    np.testing.assert_array_equal(gray.depth, rgb.depth)


def test_load_model_round_trip(tmp_path: Path, teacher: Teacher) -> None:
    save_pretrained(teacher, tmp_path / "t")
    model = load_model(tmp_path / "t")
    img = _image(21, 35, seed=11)
    np.testing.assert_array_equal(infer(model, img, f_px=20.0).depth, infer(teacher, img, f_px=20.0).depth)
    low = load_model(tmp_path / "t", precision="bf16")
    assert next(low.parameters()).dtype == torch.bfloat16
    for im in (img, _image(70, 90, seed=12)):  # network upsamples / downsamples (antialiased) the image
        res = infer(low, im, f_px=20.0)
        assert res.depth.dtype == np.float32 and np.isfinite(res.depth).all() and (res.depth > 0).all()
        np.testing.assert_allclose(res.depth, infer(teacher, im, f_px=20.0).depth, rtol=0.1)


def test_fp16_on_cpu_is_refused_bf16_suggested(tmp_path: Path, teacher: Teacher) -> None:
    save_pretrained(teacher, tmp_path / "t")
    with pytest.raises(InvalidInputError, match=r"fp16 on the CPU is refused.*Use bf16"):
        load_model(tmp_path / "t", device="cpu", precision="fp16")
    img = _image(30, 30, seed=13)
    with pytest.raises(InvalidInputError, match=r"fp16 on the CPU is refused.*Use bf16"):
        infer(teacher, img, f_px=30.0, precision="fp16")
    half = Teacher(teacher_config("test")).half().eval()  # fp16 weights run in fp16 whatever the precision
    with pytest.raises(InvalidInputError, match=r"weights are fp16 on the CPU.*model.float\(\)"):
        infer(half, img, f_px=30.0)
    assert np.isfinite(infer(half.float(), img, f_px=30.0).depth).all()


def test_implausible_intrinsics_are_refused(teacher: Teacher) -> None:
    img = _image(480, 640, seed=14)
    with pytest.raises(InvalidInputError, match=r"f_px 0: fx = 4.25 px gives a horizontal field of view of 178.5 deg"):
        infer(teacher, img, f_px=4.25)  # millimetres by mistake
    with pytest.raises(InvalidInputError, match=r"f_px 0: fx = 1e\+12 px gives a horizontal field of view of 3.7e-08"):
        infer(teacher, img, f_px=1e12)
    with pytest.raises(InvalidInputError, match=r"intrinsics 0: cx = 5000 px is outside this image"):
        infer(teacher, img, intrinsics=Intrinsics(500.0, 500.0, 5000.0, 240.0, 640, 480))


def test_bundled_student_says_what_it_is(tmp_path: Path) -> None:
    """load_model of the bundled student warns that it is a synthetic-data demonstrator (naming the official
    student) and carries its FoV head's measured error, read from its training.json; other models do not."""
    import json

    from metricanything.models.bundled import bundled_model_dir

    with pytest.warns(SyntheticModelWarning, match="synthetic renders only") as rec:
        model = load_model(bundled_model_dir("student"))
    assert "yjh001/metricanything_student_depthmap" in str(rec[0].message)
    check = json.loads((bundled_model_dir("student") / "training.json").read_text())["fov_head_check"]
    info = model_info(model)
    assert info.bundled and info.fov_head_error_deg == check["mean_abs_fov_error_deg"]
    assert info.fov_head_error_samples == check["samples"]
    with pytest.warns(EstimatedFocalWarning, match=f"{check['mean_abs_fov_error_deg']:.1f} deg"):
        infer(model, _image(36, 48, seed=15))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        infer(model, _image(36, 48, seed=15), f_px=40.0)  # a given focal: no warning
        load_model(bundled_model_dir("teacher"))  # the demonstrator notice is about the prompt-free student
        torch.manual_seed(3)
        save_pretrained(Student(student_config("fixture_tiny", use_fov_head=True)), tmp_path / "own")
        own = load_model(tmp_path / "own")
    assert not model_info(own).bundled and model_info(own).fov_head_error_deg is None
