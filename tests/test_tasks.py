"""Downstream task wrappers: completion, super-resolution, radar fusion, intrinsics recovery."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metricanything.camera import Intrinsics, IntrinsicsSource
from metricanything.errors import InvalidInputError
from metricanything.tasks.completion import complete_depth, lowres_depth_prompt, radar_prompt, super_resolve


@pytest.fixture(scope="module")
def teacher():
    from metricanything.models.teacher import Teacher, teacher_config

    torch.manual_seed(0)
    return Teacher(teacher_config("test")).eval()


def test_lowres_prompt_points_sit_at_block_centres():
    low = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 0.0, 8.0], [9.0, 10.0, 11.0, 12.0]], dtype=np.float32)
    p = lowres_depth_prompt(low, None, 40, 30)
    assert p.num_points == 11  # the 0 is "no data"
    pts = p.to_points()
    first = pts[np.argmin(pts[:, 2])]
    np.testing.assert_allclose(first, [4.5, 4.5, 1.0])
    last = pts[np.argmax(pts[:, 2])]
    np.testing.assert_allclose(last, [34.5, 24.5, 12.0])
    with pytest.raises(InvalidInputError):
        lowres_depth_prompt(low, None, 40, 60)


def test_completion_and_super_resolution_return_input_size(teacher):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (29, 41, 3), dtype=np.uint8)
    sparse = np.zeros((29, 41), np.float32)
    mask = np.zeros((29, 41), bool)
    mask[::5, ::7] = True
    sparse[mask] = 3.0
    r = complete_depth(teacher, img, sparse, mask)
    assert r.depth.shape == (29, 41) and np.isfinite(r.depth).all() and (r.depth > 0).all()
    # untrained net: residual ~ 0 so the output sits near the prompt scale (3 m), never at the fallback focal scale
    assert 1.5 < float(np.median(r.depth)) < 6.0
    s = super_resolve(teacher, img, np.full((29 // 4 + 1, 41 // 4 + 1), 3.0, np.float32)[:7, :10])
    assert s.depth.shape == (29, 41)
    with pytest.raises(InvalidInputError):
        complete_depth(teacher, img, sparse[:-1], mask[:-1])


def test_radar_prompt_keeps_the_nearest_return():
    K = Intrinsics.from_focal(30.0, 40, 20)
    T = np.eye(4)
    pts = np.array([[0.0, 0.0, 10.0], [0.0, 0.0, 20.0], [2.0, 0.0, 10.0]])
    p = radar_prompt(pts, T, K)
    d, m = p.to_map()
    assert m.sum() == 2
    assert d[m].min() == pytest.approx(10.0) and d[m].max() == pytest.approx(10.0)
    with pytest.raises(InvalidInputError):
        radar_prompt(np.array([[0.0, 0.0, -5.0]]), T, K)


def test_intrinsics_recovery_needs_a_fov_head(teacher):
    from metricanything.tasks.intrinsics import estimate_intrinsics

    img = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(InvalidInputError, match="FoV head"):
        estimate_intrinsics(teacher, img)


@pytest.mark.slow
def test_intrinsics_recovery_with_a_fov_head_student():
    from metricanything.models.student import Student, student_config
    from metricanything.tasks.intrinsics import estimate_intrinsics

    torch.manual_seed(0)
    student = Student(student_config("fixture_tiny", use_fov_head=True)).eval()
    img = np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    est = estimate_intrinsics(student, img)
    assert est.intrinsics.width == 64 and est.intrinsics.height == 48
    assert 0 < est.fov_x_deg < 180
    assert est.focal_px == pytest.approx(64 / (2 * np.tan(np.radians(est.fov_x_deg) / 2)), rel=1e-5)
    assert IntrinsicsSource.ESTIMATED.value == "estimated"
