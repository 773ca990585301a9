"""Prompt representation: conversions, geometric consistency with Intrinsics, validation, file readers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metricanything.camera import Intrinsics, project, unproject
from metricanything.errors import InputFileError, InvalidInputError
from metricanything.prompts import Prompt, encode_prompt, read_prompt_file, stack_prompts


def _random_map(h: int = 24, w: int = 32, frac: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = rng.random((h, w)) < frac
    depth = np.where(mask, rng.uniform(0.5, 20.0, (h, w)), 0.0).astype(np.float32)
    return depth, mask


def test_map_roundtrip_is_lossless_and_ignores_fill():
    depth, mask = _random_map()
    garbage = np.where(mask, depth, np.nan).astype(np.float32)
    p = Prompt.from_map(garbage, mask)
    assert p.num_points == int(mask.sum())
    d2, m2 = p.to_map()
    np.testing.assert_array_equal(m2, mask)
    np.testing.assert_array_equal(d2[mask], depth[mask])
    assert (d2[~mask] == 0).all()
    pts = p.to_points()
    assert pts.shape == (mask.sum(), 3)
    np.testing.assert_array_equal(depth[pts[:, 1].astype(int), pts[:, 0].astype(int)], pts[:, 2].astype(np.float32))


def test_points_use_nearest_pixel_convention_and_zbuffer():
    pts = np.array([[2.49, 1.0, 3.0], [1.5, 0.6, 2.0], [1.6, 1.4, 5.0], [-0.5, -0.5, 7.0]])
    p = Prompt.from_points(pts, 4, 3)
    d, m = p.to_map()
    # (2.49, 1) -> pixel (2, 1); (1.5, 0.6) -> (2, 1) too and nearer: it wins; (1.6, 1.4) -> (2, 1) farther
    assert m.sum() == 2 and m[1, 2] and m[0, 0]
    assert d[1, 2] == 2.0 and d[0, 0] == 7.0
    assert p.num_points == 4


def test_confidence_follows_the_winning_point():
    pts = np.array([[1.0, 1.0, 4.0, 0.1], [1.2, 1.1, 2.0, 0.9], [0.0, 0.0, 1.0, 0.5]])
    p = Prompt.from_points(pts, 3, 3)
    c = p.confidence_map()
    assert c[1, 1] == pytest.approx(0.9) and c[0, 0] == pytest.approx(0.5)
    assert p.to_points().shape == (3, 4)


@settings(max_examples=30, deadline=None)
@given(
    w=st.integers(8, 40), h=st.integers(8, 40), w2=st.integers(4, 80), h2=st.integers(4, 80), seed=st.integers(0, 99)
)
def test_resize_matches_intrinsics(w, h, w2, h2, seed):
    """A 3-D point projects to the resized prompt's location with the resized intrinsics."""
    rng = np.random.default_rng(seed)
    K = Intrinsics.from_fov(60.0, w, h)
    X = np.stack([rng.uniform(-1, 1, 20), rng.uniform(-1, 1, 20), rng.uniform(4, 6, 20)], axis=1)
    uv, z = project(X, K)
    keep = (np.floor(uv + 0.5) >= 0).all(1) & (np.floor(uv[:, 0] + 0.5) < w) & (np.floor(uv[:, 1] + 0.5) < h)
    p = Prompt.from_points(np.c_[uv[keep], z[keep]], w, h)
    q = p.resized(w2, h2)
    uv2, _ = project(X[keep], K.resized(w2, h2))
    np.testing.assert_allclose(np.c_[q.u, q.v], uv2, atol=1e-9)
    np.testing.assert_array_equal(q.z, p.z)


def test_resize_of_map_is_nearest_never_interpolated():
    depth, mask = _random_map(16, 16, 0.3)
    p = Prompt.from_map(depth, mask)
    up = p.resized(64, 64)
    d, m = up.to_map()
    assert m.sum() == mask.sum()  # sparse stays sparse
    assert set(np.round(d[m], 5)) <= set(np.round(depth[mask], 5))
    # upsample by 4: a low-res pixel centre (j) lands at 4j + 1.5 -> high-res pixel 4j + 2
    vs, us = np.nonzero(mask)
    assert m[4 * vs + 2, 4 * us + 2].all()
    down = Prompt.from_map(np.full((8, 8), 3.0), np.ones((8, 8), bool)).resized(4, 4)
    assert down.to_map()[1].all()


def test_dense_downsize_keeps_nearest_depth():
    depth = np.array([[1.0, 5.0], [7.0, 9.0]])
    p = Prompt.from_map(depth, np.ones((2, 2), bool)).resized(1, 1)
    d, m = p.to_map()
    assert m[0, 0] and d[0, 0] == 1.0


def test_crop_flip_match_intrinsics():
    K = Intrinsics(50.0, 50.0, 20.3, 14.7, 40, 30)
    rng = np.random.default_rng(1)
    depth = rng.uniform(1, 4, (30, 40)).astype(np.float32)
    mask = rng.random((30, 40)) < 0.3
    p = Prompt.from_map(depth, mask)
    X = unproject(depth, K)[mask].astype(np.float64)
    mirror_x, mirror_y = X * [-1, 1, 1], X * [1, -1, 1]  # a flipped image sees the mirrored scene
    for q, K2, Xs in (
        (p.cropped(5, 3, 20, 10), K.cropped(5, 3, 20, 10), X),
        (p.flipped_horizontally(), K.flipped_horizontally(), mirror_x),
        (p.flipped_vertically(), K.flipped_vertically(), mirror_y),
        (p.padded(2, 3, 1, 0), K.padded(2, 3, 1, 0), X),
        (p.padded(-2, 0, 0, -4), K.padded(-2, 0, 0, -4), X),
    ):
        uv, _ = project(Xs, K2)
        near = np.floor(uv + 0.5)
        uv = uv[(near >= 0).all(1) & (near[:, 0] < K2.width) & (near[:, 1] < K2.height)]
        assert q.num_points == uv.shape[0]
        assert q.size == K2.size
        got = np.sort(np.round(np.c_[q.u, q.v], 6), axis=0)
        np.testing.assert_allclose(got, np.sort(np.round(uv, 6), axis=0), atol=1e-5)
    # crop drops points outside the window, and maps arrays consistently
    c = p.cropped(5, 3, 20, 10)
    dc, mc = c.to_map()
    np.testing.assert_array_equal(mc, mask[3:13, 5:25])
    np.testing.assert_array_equal(dc[mc], depth[3:13, 5:25][mc])
    f = p.flipped_horizontally().to_map()
    np.testing.assert_array_equal(f[1], mask[:, ::-1])


def test_to_tensors_and_encode():
    depth, mask = _random_map()
    p = Prompt.from_map(depth, mask)
    d, m = p.to_tensors()
    assert d.shape == (1, 1, 24, 32) and m.dtype == torch.bool
    enc = p.encode()
    ref = encode_prompt(torch.from_numpy(depth)[None, None], torch.from_numpy(mask)[None, None])
    torch.testing.assert_close(enc.features, ref.features)
    logs = np.sort(np.log(depth[mask].astype(np.float64)))
    assert float(enc.log_scale) == pytest.approx(logs[(logs.size - 1) // 2], abs=1e-5)  # torch's lower median


def test_stack_prompts():
    a, ma = _random_map(seed=1)
    b, mb = _random_map(seed=2)
    d, m = stack_prompts([Prompt.from_map(a, ma), Prompt.from_map(b, mb)])
    assert d.shape == (2, 1, 24, 32)
    assert torch.equal(m[1, 0], torch.from_numpy(mb)) and torch.equal(d[0, 0][m[0, 0]], torch.from_numpy(a[ma]))
    with pytest.raises(InvalidInputError, match="different image sizes"):
        stack_prompts([Prompt.empty(4, 4), Prompt.empty(5, 4)])


# ---------------------------------------------------------------------- validation


@pytest.mark.parametrize("bad", [np.nan, np.inf, -1.0, 0.0])
def test_bad_depth_values_raise(bad):
    with pytest.raises(InvalidInputError, match="depth"):
        Prompt.from_points(np.array([[1.0, 1.0, 2.0], [2.0, 2.0, bad]]), 4, 4)
    depth = np.full((4, 4), 2.0)
    depth[1, 1] = bad
    mask = np.zeros((4, 4), bool)
    mask[1, 1] = True
    with pytest.raises(InvalidInputError, match="depth"):
        Prompt.from_map(depth, mask)


def test_empty_prompt_is_explicit():
    with pytest.raises(InvalidInputError, match="empty"):
        Prompt.from_map(np.zeros((4, 4)), np.zeros((4, 4), bool))
    with pytest.raises(InvalidInputError, match="no points"):
        Prompt.from_points(np.zeros((0, 3)), 4, 4)
    e = Prompt.from_map(np.zeros((4, 4)), np.zeros((4, 4), bool), allow_empty=True)
    assert e.num_points == 0 and not e.to_map()[1].any()
    enc = Prompt.empty(4, 4).encode()
    assert not bool(enc.has_prompt[0]) and float(enc.features.abs().sum()) == 0.0


def test_outside_points_raise_or_drop():
    pts = np.array([[3.4, 0.0, 1.0], [3.5, 0.0, 1.0], [0.0, -0.6, 2.0]])
    with pytest.raises(InvalidInputError, match="outside"):
        Prompt.from_points(pts, 4, 4)
    p = Prompt.from_points(pts, 4, 4, drop_outside=True)
    assert p.num_points == 1 and p.u[0] == 3.4
    with pytest.raises(InvalidInputError, match="no points inside"):
        Prompt.from_points(pts[1:], 4, 4, drop_outside=True)


def test_mismatched_shapes_raise():
    with pytest.raises(InvalidInputError, match="differ"):
        Prompt.from_map(np.ones((4, 4)), np.ones((4, 5), bool))
    with pytest.raises(InvalidInputError, match="N x 3"):
        Prompt.from_points(np.ones((3, 2)), 4, 4)
    with pytest.raises(InvalidInputError, match="expected"):
        Prompt(np.zeros(2), np.zeros(3), np.ones(2), 4, 4)
    with pytest.raises(InvalidInputError, match="intrinsics"):
        Prompt.empty(4, 4).check_size(Intrinsics.from_focal(10.0, 5, 4))


# ---------------------------------------------------------------------- files


def test_read_npy_map_and_points(tmp_path):
    depth, mask = _random_map(12, 16)
    arr = np.where(mask, depth, 0.0)
    arr[0, 0], mask[0, 0] = np.nan, False  # NaN also means empty
    np.save(tmp_path / "m.npy", arr)
    p = read_prompt_file(tmp_path / "m.npy", 16, 12)
    d, m = p.to_map()
    np.testing.assert_array_equal(m, mask)
    np.testing.assert_allclose(d[m], depth[mask], rtol=1e-6)
    pts = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    np.save(tmp_path / "p.npy", pts)
    np.testing.assert_allclose(read_prompt_file(tmp_path / "p.npy", 16, 12).to_points(), pts)


def test_read_low_resolution_map(tmp_path):
    low = np.arange(1, 49, dtype=np.float64).reshape(6, 8)
    np.save(tmp_path / "low.npy", low)
    p = read_prompt_file(tmp_path / "low.npy", 32, 24)
    d, m = p.to_map()
    assert m.sum() == 48
    assert d[2, 2] == 1.0 and d[22, 30] == 48.0  # low-res pixel (i, j) -> 4i + 1.5 -> pixel 4i + 2
    np.save(tmp_path / "bad.npy", np.ones((5, 5)))
    with pytest.raises(InputFileError, match="aspect ratio"):
        read_prompt_file(tmp_path / "bad.npy", 16, 12)


def test_read_csv(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("id,U,v,z,confidence\n0,1.0,2.0,3.5,0.5\n1,4,5,6,1\n\n")
    p = read_prompt_file(f, 8, 8)
    np.testing.assert_allclose(p.to_points(), [[1, 2, 3.5, 0.5], [4, 5, 6, 1]])
    f.write_text("x,y,depth\n1,2,3\n")
    with pytest.raises(InputFileError, match="lacks column"):
        read_prompt_file(f, 8, 8)
    f.write_text("u,v,z\n1,2,abc\n")
    with pytest.raises(InputFileError, match="line 2"):
        read_prompt_file(f, 8, 8)
    f.write_text("u,v,z\n1,2,-3\n")
    with pytest.raises(InputFileError, match="<= 0"):
        read_prompt_file(f, 8, 8)
    f.write_text("u,v,z\n1,20,3\n")
    with pytest.raises(InputFileError, match="outside"):
        read_prompt_file(f, 8, 8)
    f.write_text("u,v,z\n")
    with pytest.raises(InputFileError, match="no points"):
        read_prompt_file(f, 8, 8)


def test_read_png_millimetres(tmp_path):
    mm = np.zeros((6, 8), np.uint16)
    mm[1, 2], mm[4, 7] = 1500, 65000
    cv2.imwrite(str(tmp_path / "d.png"), mm)
    d, m = read_prompt_file(tmp_path / "d.png", 8, 6).to_map()
    assert m.sum() == 2 and d[1, 2] == pytest.approx(1.5) and d[4, 7] == pytest.approx(65.0)
    cv2.imwrite(str(tmp_path / "d8.png"), mm.astype(np.uint8))
    with pytest.raises(InputFileError, match="16-bit"):
        read_prompt_file(tmp_path / "d8.png", 8, 6)
    cv2.imwrite(str(tmp_path / "z.png"), np.zeros((6, 8), np.uint16))
    with pytest.raises(InputFileError, match="no valid depth"):
        read_prompt_file(tmp_path / "z.png", 8, 6)


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(InputFileError, match="not found") as ei:
        read_prompt_file(tmp_path / "nope.npy", 8, 8)
    assert "nope.npy" in str(ei.value)
    (tmp_path / "x.txt").write_text("1 2 3")
    with pytest.raises(InputFileError, match="unsupported"):
        read_prompt_file(tmp_path / "x.txt", 8, 8)
    (tmp_path / "c.npy").write_bytes(b"garbage")
    with pytest.raises(InputFileError, match="cannot read"):
        read_prompt_file(tmp_path / "c.npy", 8, 8)
    np.save(tmp_path / "neg.npy", -np.ones((8, 8)))
    with pytest.raises(InputFileError, match="negative"):
        read_prompt_file(tmp_path / "neg.npy", 8, 8)
    np.save(tmp_path / "inf.npy", np.full((8, 8), np.inf))
    with pytest.raises(InputFileError, match="infinite"):
        read_prompt_file(tmp_path / "inf.npy", 8, 8)
