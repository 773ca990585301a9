"""Depth / image / intrinsics files: exact round trips and clear errors naming the file."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from metricanything import depth_io
from metricanything.camera import Intrinsics
from metricanything.errors import InputFileError, InvalidInputError

tmp_settings = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _depth(seed: int, h: int = 24, w: int = 32, lo: float = 0.1, hi: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    depth = rng.uniform(lo, hi, (h, w)).astype(np.float32)
    valid = rng.random((h, w)) > 0.2
    return np.where(valid, depth, 0).astype(np.float32), valid


# ---------------------------------------------------------------------------------------------- round trips
@tmp_settings
@given(seed=st.integers(0, 2**31 - 1), ext=st.sampled_from(["npy", "npz", "pfm"]))
def test_lossless_formats_are_bit_exact(tmp_path: Path, seed: int, ext: str) -> None:
    depth, valid = _depth(seed)
    depth[0, 0], valid[0, 0] = np.float32(1e-30), True  # extremes survive too
    depth[0, 1], valid[0, 1] = np.float32(3e38), True
    path = tmp_path / f"d.{ext}"
    depth_io.write_depth(path, depth, valid)
    back, back_valid = depth_io.read_depth(path)
    assert back.dtype == np.float32 and back.shape == depth.shape
    assert np.array_equal(back_valid, valid)
    assert np.array_equal(back.view(np.uint32)[valid], depth.view(np.uint32)[valid])
    assert (back[~valid] == 0).all()


def test_npz_keeps_an_explicit_mask_and_npy_marks_nonpositive_invalid(tmp_path: Path) -> None:
    depth = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    valid = np.array([[True, False], [True, True]])
    depth_io.write_depth(tmp_path / "a.npz", depth, valid)
    d, v = depth_io.read_depth(tmp_path / "a.npz")
    assert v.tolist() == [[True, False], [True, True]] and d[0, 1] == 0  # invalid stored as 0
    np.save(tmp_path / "raw.npy", np.array([[np.nan, -1.0], [0.0, 2.5]]))  # foreign file, float64
    d, v = depth_io.read_depth(tmp_path / "raw.npy")
    assert d.dtype == np.float32 and v.tolist() == [[False, False], [False, True]] and d[1, 1] == 2.5


@tmp_settings
@given(seed=st.integers(0, 2**31 - 1))
def test_png_mm_round_trip_within_quantisation(tmp_path: Path, seed: int) -> None:
    depth, valid = _depth(seed, lo=0.001, hi=65.0)
    path = tmp_path / "d.png"
    depth_io.write_depth(path, depth, valid)
    back, back_valid = depth_io.read_depth(path)
    assert np.array_equal(back_valid, valid)
    # half a millimetre of quantisation plus float32 rounding (half an ulp, < 4 um below 65 m)
    assert np.abs(back.astype(np.float64) - depth)[valid].max() <= 0.0005 + 4e-6
    with Image.open(path) as img:  # really a single-channel 16-bit PNG holding millimetres
        raw = np.array(img)
    assert raw.dtype == np.uint16 and raw[valid].tolist() == np.round(depth[valid].astype(np.float64) / 1e-3).astype(int).tolist()


def test_png_kitti_scale(tmp_path: Path) -> None:
    depth = np.array([[1.0, 10.5, 0.0], [255.99, 0.5, 80.0]], dtype=np.float32)
    path = tmp_path / "kitti.png"
    depth_io.write_depth(path, depth, scale=depth_io.PNG_SCALE_KITTI)
    with Image.open(path) as img:
        raw = np.array(img)
    assert raw.tolist() == [[256, 2688, 0], [65533, 128, 20480]]
    back, valid = depth_io.read_depth(path, scale=depth_io.PNG_SCALE_KITTI)
    assert valid.tolist() == [[True, True, False], [True, True, True]]
    assert np.abs(back - depth)[valid].max() <= 1 / 512
    mm, _ = depth_io.read_depth(path)  # the same file read with the wrong (default mm) scale
    assert mm[0, 0] == pytest.approx(0.256)


def test_png_refuses_values_that_do_not_fit(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="exceed 65.535 m"):
        depth_io.write_depth(tmp_path / "far.png", np.array([[70.0, 1.0]], dtype=np.float32))
    with pytest.raises(InvalidInputError, match="round to 0"):
        depth_io.write_depth(tmp_path / "near.png", np.array([[0.0004, 1.0]], dtype=np.float32))
    assert not list(tmp_path.iterdir())  # nothing half-written
    with pytest.raises(InvalidInputError, match="scale"):
        depth_io.write_depth(tmp_path / "x.png", np.ones((2, 2), np.float32), scale=0.0)


def test_writer_validation(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="marked valid"):
        depth_io.write_depth(tmp_path / "a.npz", np.array([[0.0, 1.0]]), np.array([[True, True]]))
    with pytest.raises(InvalidInputError, match="H x W"):
        depth_io.write_depth(tmp_path / "a.npy", np.ones((2, 3, 4)))
    with pytest.raises(InvalidInputError, match="unknown depth format"):
        depth_io.write_depth(tmp_path / "a.tif", np.ones((2, 3)))


def test_pfm_layout_is_middlebury(tmp_path: Path) -> None:
    data = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)
    depth_io.write_pfm(tmp_path / "a.pfm", data)
    raw = (tmp_path / "a.pfm").read_bytes()
    assert raw.startswith(b"Pf\n3 2\n-1.0\n")
    body = np.frombuffer(raw[len(b"Pf\n3 2\n-1.0\n") :], dtype="<f4").reshape(2, 3)
    assert body.tolist() == [[4.0, 5.0, 6.0], [1.0, 2.0, 3.0]]  # bottom row first
    # a big-endian file (positive scale) written by someone else reads the same
    big = b"Pf\n3 2\n2.5\n" + np.flipud(data).astype(">f4").tobytes()
    (tmp_path / "big.pfm").write_bytes(big)
    back, scale = depth_io.read_pfm(tmp_path / "big.pfm")
    assert back.tolist() == data.tolist() and scale == 2.5
    colour = np.arange(18, dtype=np.float32).reshape(2, 3, 3)
    depth_io.write_pfm(tmp_path / "c.pfm", colour)
    back, _ = depth_io.read_pfm(tmp_path / "c.pfm")
    assert np.array_equal(back, colour)
    with pytest.raises(InputFileError, match="single-channel"):
        depth_io.read_depth(tmp_path / "c.pfm")


def test_exr_round_trip_or_clear_error(tmp_path: Path) -> None:
    depth, valid = _depth(3)
    if not depth_io.exr_available():
        with pytest.raises(InputFileError, match="EXR is not available"):
            depth_io.write_depth(tmp_path / "d.exr", depth, valid)
        pytest.skip("this OpenCV build has no OpenEXR support")
    depth_io.write_depth(tmp_path / "d.exr", depth, valid)
    back, back_valid = depth_io.read_depth(tmp_path / "d.exr")
    assert np.array_equal(back_valid, valid) and np.array_equal(back, depth)


# ---------------------------------------------------------------------------------------------- bad files
@pytest.fixture
def png16(tmp_path: Path) -> Path:
    depth, valid = _depth(0)
    path = tmp_path / "good.png"
    depth_io.write_depth(path, depth, valid)
    return path


def test_truncated_and_corrupt_png(tmp_path: Path, png16: Path) -> None:
    data = png16.read_bytes()
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match="corrupt or truncated PNG") as exc:
        depth_io.read_depth(trunc)
    assert exc.value.path == str(trunc) and str(trunc) in str(exc.value)
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not an image at all")
    with pytest.raises(InputFileError, match="not a PNG") as exc:
        depth_io.read_depth(garbage)
    assert "garbage.png" in str(exc.value)
    flipped = bytearray(data)
    flipped[len(data) // 2 :] = bytes(len(data) - len(data) // 2)  # zero the IDAT/IEND tail
    (tmp_path / "zeroed.png").write_bytes(bytes(flipped))
    with pytest.raises(InputFileError, match="zeroed.png"):
        depth_io.read_depth(tmp_path / "zeroed.png")


def test_wrong_kind_of_png(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(tmp_path / "eight.png")
    with pytest.raises(InputFileError, match="16-bit"):
        depth_io.read_depth(tmp_path / "eight.png")
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(InputFileError, match="single channel"):
        depth_io.read_depth(tmp_path / "rgb.png")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"P6\n3 2\n-1.0\n" + bytes(24), "magic"),
        (b"Pf\nthree 2\n-1.0\n" + bytes(24), "not two integers"),
        (b"Pf\n3 2\nabc\n" + bytes(24), "scale"),
        (b"Pf\n3 2\n0\n" + bytes(24), "non-zero"),
        (b"Pf\n3 2\n-1.0\n" + bytes(20), "truncated PFM"),
        (b"Pf\n3 2\n-1.0\n" + bytes(30), "trailing bytes"),
        (b"Pf 3 2 -1.0" + bytes(24), "line break"),
        (b"", "magic|line break"),
    ],
)
def test_bad_pfm_header(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "bad.pfm"
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=problem) as exc:
        depth_io.read_depth(path)
    assert exc.value.path == str(path)


def test_bad_npy_npz_and_missing_files(tmp_path: Path) -> None:
    np.save(tmp_path / "good.npy", np.ones((4, 5), np.float32))
    data = (tmp_path / "good.npy").read_bytes()
    (tmp_path / "trunc.npy").write_bytes(data[:-7])
    with pytest.raises(InputFileError, match="trunc.npy"):
        depth_io.read_depth(tmp_path / "trunc.npy")
    np.save(tmp_path / "cube.npy", np.ones((2, 3, 4), np.float32))
    with pytest.raises(InputFileError, match="2-D"):
        depth_io.read_depth(tmp_path / "cube.npy")
    np.save(tmp_path / "chan.npy", np.ones((3, 4, 1), np.float32))  # a trailing channel of 1 is accepted
    assert depth_io.read_depth(tmp_path / "chan.npy")[0].shape == (3, 4)
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(InputFileError, match="corrupt or truncated .npz"):
        depth_io.read_depth(tmp_path / "bad.npz")
    np.savez(tmp_path / "two.npz", a=np.ones((2, 2)), b=np.ones((2, 2)))
    with pytest.raises(InputFileError, match="no array 'depth'"):
        depth_io.read_depth(tmp_path / "two.npz")
    with pytest.raises(InputFileError, match="does not exist") as exc:
        depth_io.read_depth(tmp_path / "missing.png")
    assert "missing.png" in str(exc.value)
    with pytest.raises(InputFileError, match="unknown depth format"):
        (tmp_path / "d.bmp").write_bytes(b"x")
        depth_io.read_depth(tmp_path / "d.bmp")


# ---------------------------------------------------------------------------------------------- images
def _exif_jpeg(path: Path, array: np.ndarray, orientation: int | None, f35: int | None) -> None:
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    if f35 is not None:
        exif.get_ifd(0x8769)[0xA405] = f35
    Image.fromarray(array).save(path, quality=100, subsampling=0, exif=exif)


def _marker_image() -> np.ndarray:
    img = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 tall, red block at the top-left
    img[:8, :8] = (255, 0, 0)
    img[-8:, -8:] = (0, 0, 255)
    return img


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = _marker_image()
    _exif_jpeg(tmp_path / "rot.jpg", stored, orientation=6, f35=None)  # 6: rotate 90 degrees clockwise to view
    img = depth_io.read_image(tmp_path / "rot.jpg")
    assert img.shape == (40, 20, 3) and img.dtype == np.uint8
    assert img[3, -4, 0] > 200 and img[3, -4, 2] < 60  # red block now at the top-right
    assert img[-4, 3, 2] > 200  # blue block at the bottom-left
    _exif_jpeg(tmp_path / "plain.jpg", stored, orientation=None, f35=None)
    plain = depth_io.read_image(tmp_path / "plain.jpg")
    assert plain.shape == (20, 40, 3) and plain[3, 3, 0] > 200


def test_exif_focal_35mm_to_pixels(tmp_path: Path) -> None:
    _exif_jpeg(tmp_path / "f.jpg", _marker_image(), orientation=6, f35=26)
    expected = 26 * math.hypot(40, 20) / math.hypot(36, 24)
    assert depth_io.read_exif_focal_px(tmp_path / "f.jpg") == pytest.approx(expected, rel=1e-12)
    # the diagonal conversion does not care about orientation, and scales with the pixels used
    assert depth_io.read_exif_focal_px(tmp_path / "f.jpg", 20, 40) == pytest.approx(expected, rel=1e-12)
    assert depth_io.read_exif_focal_px(tmp_path / "f.jpg", 400, 200) == pytest.approx(10 * expected, rel=1e-12)
    with Image.open(tmp_path / "f.jpg") as img:
        assert depth_io.read_exif_focal_px(img) == pytest.approx(expected, rel=1e-12)
    # 36 mm-wide full frame: a 36 mm equivalent lens on a 3:2 image sees 2 atan(18/36) horizontally
    assert depth_io.focal_px_from_35mm(36.0, 3000, 2000) == pytest.approx(3000.0)
    _exif_jpeg(tmp_path / "none.jpg", _marker_image(), orientation=None, f35=None)
    assert depth_io.read_exif_focal_px(tmp_path / "none.jpg") is None
    _exif_jpeg(tmp_path / "zero.jpg", _marker_image(), orientation=None, f35=0)
    assert depth_io.read_exif_focal_px(tmp_path / "zero.jpg") is None
    (tmp_path / "junk.jpg").write_bytes(b"no image here")
    with pytest.raises(InputFileError, match="junk.jpg: not a recognised image"):
        depth_io.read_exif_focal_px(tmp_path / "junk.jpg")


def test_image_round_trip_and_modes(tmp_path: Path) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    depth_io.write_image(tmp_path / "a.png", rgb)
    assert np.array_equal(depth_io.read_image(tmp_path / "a.png"), rgb)
    depth_io.write_image(tmp_path / "a.jpg", rgb, quality=90)
    assert depth_io.read_image(tmp_path / "a.jpg").shape == (12, 16, 3)
    grey = rgb[..., 0]
    depth_io.write_image(tmp_path / "g.png", grey)
    assert np.array_equal(depth_io.read_image(tmp_path / "g.png"), np.repeat(grey[..., None], 3, axis=2))
    Image.fromarray(np.full((3, 4), 65535, np.uint16)).save(tmp_path / "sixteen.png")
    assert (depth_io.read_image(tmp_path / "sixteen.png") == 255).all()
    with pytest.raises(InvalidInputError, match="uint8"):
        depth_io.write_image(tmp_path / "f.png", rgb.astype(np.float32))


def test_corrupt_and_truncated_images(tmp_path: Path) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    depth_io.write_image(tmp_path / "a.jpg", rgb)
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match="truncated") as exc:
        depth_io.read_image(tmp_path / "t.jpg")
    assert exc.value.path.endswith("t.jpg")
    (tmp_path / "x.jpg").write_bytes(b"definitely not a jpeg")
    with pytest.raises(InputFileError, match="not a recognised image"):
        depth_io.read_image(tmp_path / "x.jpg")
    with pytest.raises(InputFileError, match="does not exist"):
        depth_io.read_image(tmp_path / "nope.jpg")


# ---------------------------------------------------------------------------------------------- intrinsics
def test_intrinsics_json_forms(tmp_path: Path) -> None:
    K = Intrinsics(500.0, 510.0, 319.5, 239.5, 640, 480)
    depth_io.write_intrinsics_json(tmp_path / "k.json", K, extra={"source": "given"})
    assert json.loads((tmp_path / "k.json").read_text())["source"] == "given"
    assert depth_io.read_intrinsics_json(tmp_path / "k.json") == K
    (tmp_path / "official.json").write_text(json.dumps({"cam_in": [500, 510, 319.5, 239.5]}))
    assert depth_io.read_intrinsics_json(tmp_path / "official.json", 640, 480) == K
    (tmp_path / "plain.json").write_text(json.dumps({"fx": 500, "fy": 510, "cx": 319.5, "cy": 239.5}))
    assert depth_io.read_intrinsics_json(tmp_path / "plain.json", 640, 480) == K
    (tmp_path / "m.json").write_text(json.dumps({"K": K.as_matrix().tolist(), "width": 640, "height": 480}))
    assert depth_io.read_intrinsics_json(tmp_path / "m.json") == K
    (tmp_path / "fx.json").write_text(json.dumps({"fx": 100}))
    only = depth_io.read_intrinsics_json(tmp_path / "fx.json", 64, 48)
    assert (only.fy, only.cx, only.cy) == (100.0, 31.5, 23.5)
    # a sidecar for the full-size image, used with a half-size copy: rescaled exactly like the image
    assert depth_io.read_intrinsics_json(tmp_path / "k.json", 320, 240) == K.resized(320, 240)


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({"fy": 1.0, "cx": 1.0, "cy": 1.0}, "no 'fx'"),
        ({"focal": 1.0}, "no 'fx'"),
        ([1, 2, 3], "must be an object"),
        ({"cam_in": [1, 2, 3]}, "cam_in"),
        ({"fx": "500", "fy": 1, "cx": 1, "cy": 1, "width": 4, "height": 4}, "finite number"),
        ({"fx": -5.0, "width": 4, "height": 4}, "invalid intrinsics"),
        ({"fx": 5.0, "width": 4}, "both 'width' and 'height'"),
        ({"fx": 5.0}, "no image size"),
    ],
)
def test_bad_intrinsics_json(tmp_path: Path, payload, problem: str) -> None:
    path = tmp_path / "cam.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(InputFileError, match=problem) as exc:
        depth_io.read_intrinsics_json(path)
    assert exc.value.path == str(path) and "cam.json" in str(exc.value)


def test_intrinsics_json_size_and_syntax_errors(tmp_path: Path) -> None:
    (tmp_path / "k.json").write_text(json.dumps(Intrinsics.from_focal(100, 64, 48).to_dict()))
    with pytest.raises(InputFileError, match="aspect ratio"):
        depth_io.read_intrinsics_json(tmp_path / "k.json", 64, 64)
    (tmp_path / "broken.json").write_text('{"fx": 1,')
    with pytest.raises(InputFileError, match="not valid JSON"):
        depth_io.read_intrinsics_json(tmp_path / "broken.json")


def test_writers_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure half-way through writing leaves the old file intact and no temporary file behind."""
    target = tmp_path / "d.npy"
    depth_io.write_depth(target, np.ones((2, 2), np.float32))
    before = target.read_bytes()

    def half_write(f, *args, **kwargs):
        f.write(b"\x93NUMPY partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "save", half_write)
    with pytest.raises(RuntimeError, match="disk full"):
        depth_io.write_depth(target, np.full((2, 2), 7.0, np.float32))
    assert target.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["d.npy"]


def test_pfm_header_struct_is_plain_ascii(tmp_path: Path) -> None:
    depth_io.write_depth(tmp_path / "a.pfm", np.full((1, 1), 2.0, np.float32))
    raw = (tmp_path / "a.pfm").read_bytes()
    assert raw[-4:] == struct.pack("<f", 2.0)
