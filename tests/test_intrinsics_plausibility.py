"""camera.implausible_intrinsics: the documented 5-170 deg range, pixel aspect and principal-point checks."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metricanything.camera import PLAUSIBLE_FOV_DEG, Intrinsics, implausible_intrinsics


def _focal_for(fov_deg: float, size: int) -> float:
    return size / (2.0 * math.tan(math.radians(fov_deg) / 2.0))


@given(
    w=st.integers(16, 4000), h=st.integers(16, 4000), fov=st.floats(5.001, 169.999),
    cu=st.floats(0.0, 1.0), cv=st.floats(0.0, 1.0),
)  # fmt: skip
def test_square_pixel_cameras_inside_the_range_pass(w, h, fov, cu, cv):
    long_side = max(w, h)
    f = _focal_for(fov, long_side)
    short_fov = math.degrees(2 * math.atan(min(w, h) / (2 * f)))
    assert short_fov <= fov + 1e-9  # the short side's FoV is narrower: never above the range's upper end
    K = Intrinsics(f, f, -0.5 + cu * w, -0.5 + cv * h, w, h)
    assert implausible_intrinsics(K) == []


@given(w=st.integers(16, 4000), h=st.integers(16, 4000),
       fov=st.one_of(st.floats(1e-6, 4.99), st.floats(170.01, 179.999)))  # fmt: skip
def test_long_side_fov_outside_the_range_fails(w, h, fov):
    f = _focal_for(fov, max(w, h))
    problems = implausible_intrinsics(Intrinsics(f, f, (w - 1) / 2, (h - 1) / 2, w, h))
    assert problems and problems[0][0] in ("fx", "fy")
    assert f"plausible {PLAUSIBLE_FOV_DEG[0]:g}-{PLAUSIBLE_FOV_DEG[1]:g} deg" in problems[0][1]


@pytest.mark.parametrize(
    ("K", "expected"),
    [
        (Intrinsics.from_focal(4.25, 640, 480), [("fx", "horizontal field of view of 178.5 deg"),
                                                 ("fy", "vertical field of view of 178.0 deg")]),
        (Intrinsics.from_focal(1e12, 640, 480), [("fx", "horizontal field of view of 3.7e-08 deg")]),
        (Intrinsics(400.0, 400.0, 5000.0, 150.0, 451, 300), [("cx", "cx = 5000 px is outside this image")]),
        (Intrinsics(400.0, 400.0, 225.0, -0.6, 451, 300), [("cy", "cy = -0.6 px is outside")]),
        (Intrinsics(500.0, 1001.0, 319.5, 239.5, 640, 480), [("fy", "fy / fx = 1001 / 500 = 2 is outside")]),
        (Intrinsics.from_focal(30.0, 40, 900), [("fy", "vertical field of view of 172.4 deg")]),
    ],
)  # fmt: skip
def test_named_problems(K, expected):
    got = implausible_intrinsics(K)
    assert [p for p, _ in got] == [p for p, _ in expected]
    for (_, text), (_, want) in zip(got, expected, strict=True):
        assert want in text


def test_narrow_bound_is_orientation_independent():
    """A 400 mm lens (full frame) passes in landscape and portrait: 5.15 deg across the long side."""
    f = _focal_for(2 * math.degrees(math.atan(18 / 400)), 640)
    assert implausible_intrinsics(Intrinsics.from_focal(f, 640, 480)) == []
    assert implausible_intrinsics(Intrinsics.from_focal(f, 480, 640)) == []
