"""Bad input across the command line and the Python API: every case gets a clear error naming the file or flag.

Each table row is one case: what is given, the exit code (CLI) or the error class (API), and the text the message
must contain (the file, the flag and, where there is one, the fix in the caller's terms). Nothing here prints a
traceback (``--debug`` aside), and nothing is silently wrong: the scale of ``depth.png``, prompts that are missing
or mis-read, poses that are not rigid. The SIGKILL cases are in ``test_bad_inputs_kill.py``.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metricanything.cli import main
from metricanything.errors import (
    CheckpointError,
    ConfigError,
    InputFileError,
    InvalidInputError,
    MetricAnythingError,
)

READ_ONLY_DIR = Path("/sys/kernel")  # read-only even for root on Linux


def _read_only_available() -> bool:
    if not READ_ONLY_DIR.is_dir():
        return False
    try:
        (READ_ONLY_DIR / ".metricanything-probe").touch()
    except OSError:
        return True
    (READ_ONLY_DIR / ".metricanything-probe").unlink()
    return False


needs_read_only = pytest.mark.skipif(not _read_only_available(), reason="no read-only folder (/sys/kernel) here")


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny random teacher and student checkpoint (seconds to load)."""
    from metricanything.models.checkpoint import save_pretrained
    from metricanything.models.student import Student, student_config
    from metricanything.models.teacher import Teacher, teacher_config

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    save_pretrained(Teacher(teacher_config("test")), root / "teacher")
    save_pretrained(Student(student_config("fixture_tiny", use_fov_head=True)), root / "student")
    return {"teacher": root / "teacher", "student": root / "student"}


def _image(path: Path, w: int = 40, h: int = 30, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _bomb_png(path: Path, w: int = 30000, h: int = 30000) -> Path:
    """A tiny PNG file that declares a huge size (PIL's decompression-bomb guard trips on opening it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))  # fmt: skip
    return path


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    return code, out, err


def _csv(path: Path, rows: list[tuple[float, float, float]], header: str = "u,v,z") -> Path:
    path.write_text(header + "\n" + "".join(f"{u},{v},{z}\n" for u, v, z in rows))
    return path


def _lidar_calib(path: Path, T=None, **extra) -> Path:
    T = np.eye(4).tolist() if T is None else T
    path.write_text(json.dumps({"T_cam_lidar": T, **extra}))
    return path


def _lidar_points(n: int = 400, seed: int = 0, dims: int = 4) -> np.ndarray:
    """A LiDAR-like sweep in front of the camera (camera frame = LiDAR frame with T = I)."""
    rng = np.random.default_rng(seed)
    pts = np.stack([rng.uniform(-3, 3, n), rng.uniform(-2, 2, n), rng.uniform(4, 40, n), rng.uniform(0, 1, n)], 1)
    if dims == 5:
        pts = np.concatenate([pts, rng.integers(0, 32, (n, 1)).astype(np.float64)], 1)
    return pts.astype("<f4")


# ---------------------------------------------------------------------------------------------- infer: whole run
def _infer_run_cases():
    """(id, setup(tmp) -> extra args, expected exit code, texts the error must contain)."""
    img = lambda t: _image(t / "img.png")  # noqa: E731
    cases = [
        ("missing-input", lambda t: ["-i", t / "nope.png"], 2, ["nope.png", "input not found"]),
        ("empty-folder", lambda t: (t / "e").mkdir() or ["-i", t / "e"], 2, ["folder holds no images"]),
        ("glob-no-match", lambda t: ["-i", str(t / "*.xyz")], 2, ["glob matches no files"]),
        ("out-is-a-file", lambda t: (img(t), (t / "f").write_text("x"), ["-i", t / "img.png", "-o", t / "f"])[-1],
         2, ["-o/--out", "is a file"]),
        ("out-under-a-file", lambda t: (img(t), (t / "f").write_text("x"),
                                        ["-i", t / "img.png", "-o", t / "f" / "sub"])[-1], 2, ["-o/--out", "is a file"]),
        ("fx-zero", lambda t: ["-i", img(t), "--fx", "0"], 2, ["--fx 0", "positive"]),
        ("fx-negative", lambda t: ["-i", img(t), "--fx", "-5"], 2, ["--fx -5"]),
        ("fx-nan", lambda t: ["-i", img(t), "--fx", "nan"], 2, ["--fx nan"]),
        ("fx-inf", lambda t: ["-i", img(t), "--fx", "inf"], 2, ["--fx inf"]),
        ("fx-huge", lambda t: ["-i", img(t), "--fx", "1e7"], 1, ["--fx 1e+07", "field of view"]),
        ("fx-in-mm", lambda t: ["-i", img(t), "--fx", "0.05"], 1, ["--fx 0.05", "pixels"]),
        ("fov-200", lambda t: ["-i", img(t), "--fov-x", "200"], 2, ["--fov-x 200", "degrees"]),
        ("fov-zero", lambda t: ["-i", img(t), "--fov-x", "0"], 2, ["--fov-x 0"]),
        ("fov-radians", lambda t: ["-i", img(t), "--fov-x", "1.2"], 1, ["--fov-x 1.2", "not radians"]),
        ("fy-without-fx", lambda t: ["-i", img(t), "--fy", "50"], 2, ["--fy/--cx/--cy need --fx"]),
        ("fx-and-fov", lambda t: ["-i", img(t), "--fx", "50", "--fov-x", "60"], 2, ["either --fx or --fov-x"]),
        ("cx-outside", lambda t: ["-i", img(t), "--fx", "50", "--cx", "1000"], 1, ["--cx 1000"]),
        ("cx-nan", lambda t: ["-i", img(t), "--fx", "50", "--cx", "nan"], 2, ["--cx nan"]),
        ("png-scale-zero", lambda t: ["-i", img(t), "--depth-png-scale", "0"], 2, ["--depth-png-scale 0"]),
        ("png-scale-negative", lambda t: ["-i", img(t), "--depth-png-scale", "-0.001"], 2, ["--depth-png-scale"]),
        ("png-scale-nan", lambda t: ["-i", img(t), "--depth-png-scale", "nan"], 2, ["--depth-png-scale"]),
        ("png-scale-too-big", lambda t: ["-i", img(t), "--depth-png-scale", "5"], 2, ["--depth-png-scale 5"]),
        ("prompt-png-scale", lambda t: ["-i", img(t), "--prompt-png-scale", "0"], 2, ["--prompt-png-scale"]),
        ("batch-size-zero", lambda t: ["-i", img(t), "--batch-size", "0"], 2, ["--batch-size 0"]),
        ("video-stride-zero", lambda t: ["-i", img(t), "--video-stride", "0"], 2, ["--video-stride 0"]),
        ("calib-without-prompt", lambda t: ["-i", img(t), "--lidar-calib", _lidar_calib(t / "c.json")], 2,
         ["--lidar-calib needs --prompt"]),
        ("prompt-missing", lambda t: ["-i", img(t), "--prompt", t / "none.csv"], 2, ["none.csv", "--prompt"]),
        ("fp16-on-cpu", lambda t: ["-i", img(t), "--precision", "fp16"], 2, ["--precision bf16"]),
        ("model-missing", lambda t: ["-i", img(t), "--model", t / "nomodel"], 2, ["nomodel"]),
        ("model-garbage", lambda t: ((t / "m.pt").write_bytes(b"not a checkpoint"), ["-i", img(t), "--model", t / "m.pt"])[-1],
         2, ["m.pt"]),
        ("student-with-prompt", lambda t: ["-i", img(t), "--prompt", _csv(t / "p.csv", [(1, 1, 2.0)]), "--model", "STUDENT"],
         2, ["prompt-free student", "drop --prompt", "--model"]),
        ("quiet-and-verbose", lambda t: ["-i", img(t), "--quiet", "--verbose"], 2, ["exclude each other"]),
    ]
    if _read_only_available():
        cases += [
            ("out-read-only", lambda t: ["-i", img(t), "-o", READ_ONLY_DIR], 2, ["-o/--out", "cannot write"]),
            ("out-cannot-create", lambda t: ["-i", img(t), "-o", READ_ONLY_DIR / "mx" / "out"], 2,
             ["-o/--out", "cannot create"]),
        ]
    return cases


def _with_model(args: list, models, tmp: Path, default: str = "teacher") -> list:
    args = [models["student"] if a == "STUDENT" else a for a in args]
    if "-o" not in args:
        args += ["-o", tmp / "out"]
    if "--model" not in args:
        args += ["--model", models[default]]
    return ["infer", *args, "--no-vis"]


@pytest.mark.parametrize("setup,code,texts", [c[1:] for c in _infer_run_cases()], ids=[c[0] for c in _infer_run_cases()])
def test_infer_run_errors(tmp_path, capsys, models, setup, code, texts):
    got, out, err = _cli(capsys, *_with_model(setup(tmp_path), models, tmp_path))
    assert got == code, out + err
    for text in texts:
        assert text in err, err
    if code == 2:
        assert err.startswith("metricanything infer: error: ") and err.count("\n") == 1  # one line


# ---------------------------------------------------------------------------------------------- infer: per image
def _calib_T(scale: float = 1.0, det: float = 1.0) -> list:
    T = np.eye(4)
    T[:3, :3] *= scale
    T[0, 0] *= det
    return T.tolist()


def _write_bin(path: Path, pts: np.ndarray) -> Path:
    pts.astype("<f4").tofile(path)
    return path


def _image_cases():
    """(id, setup(tmp, img) -> extra args, texts the FAILED line must contain). Each run exits 1."""
    return [
        ("corrupt-png", lambda t, i: (i.write_bytes(b"\x89PNG\r\n\x1a\ngarbage"), [])[1], ["img.png"]),
        ("zero-bytes", lambda t, i: (i.write_bytes(b""), [])[1], ["img.png", "not a recognised image"]),
        ("truncated-png", lambda t, i: (i.write_bytes(i.read_bytes()[:60]), [])[1], ["img.png"]),
        ("text-as-image", lambda t, i: (i.write_text("hello"), [])[1], ["img.png", "not a recognised image"]),
        ("decompression-bomb", lambda t, i: (_bomb_png(i), [])[1], ["img.png", "too large to decode safely"]),
        ("float-tiff", lambda t, i: (i.unlink(), Image.fromarray(np.ones((30, 40), np.float32)).save(t / "img.tif"),
                                     ["-i", t / "img.tif"])[-1], ["floating-point image"]),  # fmt: skip
        ("sidecar-not-json", lambda t, i: ((t / "img.json").write_text("{"), [])[1], ["img.json", "not valid JSON"]),
        ("sidecar-no-fx", lambda t, i: ((t / "img.json").write_text('{"fy": 3}'), [])[1], ["img.json", "no 'fx'"]),
        ("sidecar-implausible", lambda t, i: ((t / "img.json").write_text('{"fx": 0.5}'), [])[1],
         ["img.json", "implausible intrinsics"]),
        ("sidecar-other-aspect", lambda t, i: ((t / "img.json").write_text('{"fx": 40, "width": 40, "height": 40}'), [])[1],
         ["img.json", "different aspect ratio"]),
        ("sidecar-nan", lambda t, i: ((t / "img.json").write_text('{"fx": NaN}'), [])[1], ["img.json", "finite number"]),
        ("sidecar-bad-cam-in", lambda t, i: ((t / "img.json").write_text('{"cam_in": [1, 2]}'), [])[1],
         ["img.json", "'cam_in'"]),
    ]


@pytest.mark.parametrize("setup,texts", [c[1:] for c in _image_cases()], ids=[c[0] for c in _image_cases()])
def test_infer_bad_image_fails_alone(tmp_path, capsys, models, setup, texts):
    """The bad image fails with a message naming its file; a good image of the same run is still written."""
    inp = tmp_path / "in"
    bad = _image(inp / "img.png")
    _image(inp / "good.png", seed=3)
    extra = setup(inp, bad)
    args = extra if "-i" in extra else ["-i", inp, *extra]
    code, out, err = _cli(capsys, *_with_model(args, models, tmp_path))
    assert code == 1, out + err
    failed = [line for line in err.splitlines() if "FAILED" in line]
    assert len(failed) == 1, err
    for text in texts:
        assert text in failed[0], failed[0]
    if "-i" not in extra:
        assert (tmp_path / "out" / "good" / "depth.npy").is_file()


def _prompt_cases():
    """(id, setup(tmp) -> prompt args, texts the FAILED line must contain, texts it must NOT contain)."""
    no_python = ["drop_outside", "allow_empty", "prompt=None", "=True"]
    return [
        ("csv-outside", lambda t: ["--prompt", _csv(t / "p.csv", [(1, 1, 2.0), (500, 3, 2.0)])],
         ["p.csv", "outside the 40x30 image", "point 2"], no_python),
        ("csv-no-header", lambda t: ["--prompt", _csv(t / "p.csv", [(1, 1, 2.0)], header="a,b,c")],
         ["p.csv", "lacks column"], no_python),
        ("csv-not-numbers", lambda t: ["--prompt", (t / "p.csv").write_text("u,v,z\n1,2,abc\n") and t / "p.csv"],
         ["p.csv", "line 2"], no_python),
        ("csv-empty", lambda t: ["--prompt", (t / "p.csv").write_text("") or t / "p.csv"], ["p.csv", "empty"], no_python),
        ("csv-header-only", lambda t: ["--prompt", _csv(t / "p.csv", [])], ["p.csv", "no points"], no_python),
        ("csv-negative-z", lambda t: ["--prompt", _csv(t / "p.csv", [(1, 1, -2.0)])], ["p.csv", "<= 0"], no_python),
        ("csv-zero-z", lambda t: ["--prompt", _csv(t / "p.csv", [(1, 1, 0.0)])], ["p.csv", "<= 0"], no_python),
        ("csv-nan-z", lambda t: ["--prompt", _csv(t / "p.csv", [(1, 1, float("nan"))])], ["p.csv", "non-finite"],
         no_python),
        ("csv-nan-u", lambda t: ["--prompt", _csv(t / "p.csv", [(float("nan"), 1, 2.0)])], ["p.csv", "non-finite u"],
         no_python),
        ("csv-z-1e9", lambda t: ["--prompt", _csv(t / "p.csv", [(1, 1, 1e9)])],
         ["p.csv", "1e+09 m", "--depth-png-scale"], no_python),
        ("csv-not-utf8", lambda t: ["--prompt", (t / "p.csv").write_bytes(b"u,v,z\n\xff\xfe,1,2\n") and t / "p.csv"],
         ["p.csv", "UTF-8"], no_python),
        ("npy-Nx2", lambda t: ["--prompt", np.save(t / "p.npy", np.ones((7, 2))) or t / "p.npy"],
         ["p.npy", "shape (7, 2)", "N x 3"], no_python + ["2x2", "prompt map is"]),
        ("npy-2x2", lambda t: ["--prompt", np.save(t / "p.npy", np.ones((2, 2))) or t / "p.npy"],
         ["p.npy", "shape (2, 2)", "N x 3"], no_python),
        ("npy-3d", lambda t: ["--prompt", np.save(t / "p.npy", np.ones((2, 3, 4))) or t / "p.npy"],
         ["p.npy", "neither"], no_python),
        ("npy-map-negative", lambda t: ["--prompt", np.save(t / "p.npy", -np.ones((30, 40))) or t / "p.npy"],
         ["p.npy", "negative"], no_python),
        ("npy-map-inf", lambda t: ["--prompt", np.save(t / "p.npy", np.full((30, 40), np.inf)) or t / "p.npy"],
         ["p.npy", "infinite"], no_python),
        ("npy-map-empty", lambda t: ["--prompt", np.save(t / "p.npy", np.zeros((30, 40))) or t / "p.npy"],
         ["p.npy", "no valid depth"], no_python),
        ("npy-map-other-aspect", lambda t: ["--prompt", np.save(t / "p.npy", np.ones((30, 30))) or t / "p.npy"],
         ["p.npy", "aspect"], no_python),
        ("npy-pickled", lambda t: ["--prompt", np.save(t / "p.npy", np.array([{"a": 1}], dtype=object)) or t / "p.npy"],
         ["p.npy", "cannot read"], no_python),
        ("npy-strings", lambda t: ["--prompt", np.save(t / "p.npy", np.array(["a", "b"])) or t / "p.npy"],
         ["p.npy", "numeric"], no_python),
        ("png-8bit", lambda t: ["--prompt", Image.fromarray(np.ones((30, 40), np.uint8)).save(t / "p.png") or t / "p.png"],
         ["p.png", "16-bit"], no_python),
        ("png-rgb", lambda t: ["--prompt", Image.fromarray(np.ones((30, 40, 3), np.uint8)).save(t / "p.png") or t / "p.png"],
         ["p.png", "channel"], no_python),
        ("txt-suffix", lambda t: ["--prompt", (t / "p.txt").write_text("1 2 3") and t / "p.txt"],
         ["p.txt", "unsupported prompt file type"], no_python),
        ("bin-without-calib", lambda t: ["--prompt", _write_bin(t / "s.bin", _lidar_points())],
         ["s.bin", "--lidar-calib", "LiDAR"], no_python + ["unsupported"]),
        ("folder-without-file", lambda t: ["--prompt", (t / "prompts").mkdir() or t / "prompts"],
         ["prompts", "no prompt for image img.png", "without --prompt"], no_python),
        ("lidar-calib-missing", lambda t: ["--prompt", _write_bin(t / "s.bin", _lidar_points()), "--lidar-calib",
                                           t / "none.json", "--fx", "40"], ["none.json", "--lidar-calib"], no_python),
        ("lidar-calib-not-json", lambda t: ["--prompt", _write_bin(t / "s.bin", _lidar_points()), "--lidar-calib",
                                            (t / "c.json").write_text("{") and t / "c.json", "--fx", "40"],
         ["c.json", "not valid JSON"], no_python),
        ("lidar-calib-no-T", lambda t: ["--prompt", _write_bin(t / "s.bin", _lidar_points()), "--lidar-calib",
                                        (t / "c.json").write_text("{}") and t / "c.json", "--fx", "40"],
         ["c.json", "T_cam_lidar"], no_python),
        ("lidar-T-3x3", lambda t: ["--prompt", _write_bin(t / "s.bin", _lidar_points()), "--lidar-calib",
                                   _lidar_calib(t / "c.json", np.eye(3).tolist()), "--fx", "40"],
         ["c.json", "4x4"], no_python),
        ("lidar-T-scaled", lambda t: ["--prompt", _write_bin(t / "s.bin", _lidar_points()), "--lidar-calib",
                                      _lidar_calib(t / "c.json", _calib_T(scale=2.0)), "--fx", "40"],
         ["c.json", "not a rigid transform", "orthonormal"], no_python),
        ("lidar-T-reflection", lambda t: ["--prompt", _write_bin(t / "s.bin", _lidar_points()), "--lidar-calib",
                                          _lidar_calib(t / "c.json", _calib_T(det=-1.0)), "--fx", "40"],
         ["c.json", "reflection"], no_python),
        ("lidar-5-floats-as-4", lambda t: ["--prompt", _write_bin(t / "s.bin", _lidar_points(400, dims=5)),
                                           "--lidar-calib", _lidar_calib(t / "c.json", point_dims=4), "--fx", "40"],
         ["s.bin", "point_dims=4", '"point_dims": 5', "c.json"], no_python),
        ("lidar-4-floats-as-5", lambda t: ["--prompt", _write_bin(t / "s.bin", _lidar_points(400, dims=4)),
                                           "--lidar-calib", _lidar_calib(t / "c.json", point_dims=5), "--fx", "40"],
         ["s.bin", "point_dims=5", '"point_dims": 4'], no_python),
        ("lidar-size-not-multiple", lambda t: ["--prompt", _write_bin(t / "s.bin", np.ones(10, "<f4")),
                                               "--lidar-calib", _lidar_calib(t / "c.json", point_dims=4), "--fx", "40"],
         ["s.bin", "not a multiple of point_dims=4"], no_python),
        ("lidar-dims-text", lambda t: ["--prompt", _write_bin(t / "s.bin", _lidar_points()), "--lidar-calib",
                                       _lidar_calib(t / "c.json", point_dims="four"), "--fx", "40"],
         ["c.json", "'point_dims'"], no_python),
        ("lidar-empty-file", lambda t: ["--prompt", (t / "s.bin").write_bytes(b"") or t / "s.bin", "--lidar-calib",
                                        _lidar_calib(t / "c.json"), "--fx", "40"], ["s.bin", "empty"], no_python),
        ("lidar-behind-camera", lambda t: ["--prompt", _write_bin(t / "s.bin", _lidar_points() * np.array([1, 1, -1, 1], "<f4")),
                                           "--lidar-calib", _lidar_calib(t / "c.json"), "--fx", "40"],
         ["s.bin", "no LiDAR point projects", "T_cam_lidar"], no_python),
        ("lidar-without-focal", lambda t: ["--prompt", _write_bin(t / "s.bin", _lidar_points()), "--lidar-calib",
                                           _lidar_calib(t / "c.json")], ["--fx", "--fov-x"], no_python),
        ("lidar-csv-points", lambda t: ["--prompt", _csv(t / "p.csv", [(1, 1, 2.0)]), "--lidar-calib",
                                        _lidar_calib(t / "c.json"), "--fx", "40"], ["p.csv", ".bin or .npy"], no_python),
        ("lidar-npy-Nx2", lambda t: ["--prompt", np.save(t / "s.npy", np.ones((9, 2))) or t / "s.npy", "--lidar-calib",
                                     _lidar_calib(t / "c.json"), "--fx", "40"], ["s.npy", "N x >=3"], no_python),
    ]


@pytest.mark.parametrize("setup,texts,absent", [c[1:] for c in _prompt_cases()], ids=[c[0] for c in _prompt_cases()])
def test_infer_bad_prompt_names_the_file_in_cli_terms(tmp_path, capsys, models, setup, texts, absent):
    img = _image(tmp_path / "img.png")
    code, out, err = _cli(capsys, *_with_model(["-i", img, *setup(tmp_path)], models, tmp_path))
    assert code == 1, out + err
    failed = [line for line in err.splitlines() if "FAILED" in line]
    assert len(failed) == 1, err
    for text in texts:
        assert text in failed[0], failed[0]
    for text in absent:
        assert text not in failed[0], failed[0]
    assert not (tmp_path / "out" / "img").exists()  # nothing half-written (no depth.npy without intrinsics.json)
    assert not [p for p in (tmp_path / "out").iterdir()]  # no temporaries either


# ---------------------------------------------------------------------------------------------- infer: outputs
def _prompt_map_png(path: Path, depth_m: float, w: int = 40, h: int = 30, scale: float = 1e-3) -> Path:
    from metricanything.depth_io import write_depth

    rng = np.random.default_rng(0)
    d = (depth_m * (1 + 0.1 * rng.random((h, w)))).astype(np.float32)
    write_depth(path, d, scale=scale)
    return path


def test_depth_png_scale_is_fixed_per_run_and_an_image_that_does_not_fit_fails_naming_the_option(tmp_path, capsys, models):
    inp = tmp_path / "in"
    _image(inp / "near.png")
    _image(inp / "far.png", seed=1)
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    _csv(prompts / "near.csv", [(5, 5, 3.0), (30, 20, 4.0)])
    _csv(prompts / "far.csv", [(5, 5, 90.0), (30, 20, 100.0)])
    code, out, err = _cli(capsys, *_with_model(["-i", inp, "--prompt", prompts, "--fx", "40"], models, tmp_path))
    assert code == 1
    assert "FAILED far:" in err and "--depth-png-scale" in err and "--depth-png-scale 0.002" in err
    assert "FAILED near" not in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["near"]
    # the same run with a coarser scale: both images, one scale recorded for both
    code, out, err = _cli(capsys, *_with_model(["-i", inp, "--prompt", prompts, "--fx", "40", "--depth-png-scale",
                                                "0.002"], models, tmp_path))  # fmt: skip
    assert code == 0, err
    scales = {n: json.loads((tmp_path / "out" / n / "intrinsics.json").read_text())["depth_png_scale_m"] for n in ("near", "far")}
    assert scales == {"near": 0.002, "far": 0.002}


@pytest.mark.parametrize("scale,depth_m", [(None, 3.0), (None, 55.0), ("0.002", 100.0), ("0.01", 400.0)])
def test_depth_png_round_trip_as_prompt_gives_the_same_depth_to_1mm(tmp_path, capsys, models, scale, depth_m):
    """infer's depth.png fed back as --prompt reads as the depth infer wrote (depth.npy), within half a unit."""
    from metricanything.prompts.prompt import read_prompt_file

    img = _image(tmp_path / "img.png")
    seed_prompt = _prompt_map_png(tmp_path / "seed.png", depth_m, scale=float(scale or 0.001))
    flags = ["--depth-png-scale", scale] if scale else []
    seed_flags = ["--prompt-png-scale", scale] if scale else []
    code, _, err = _cli(capsys, *_with_model(["-i", img, "--fx", "40", "--prompt", seed_prompt, *flags, *seed_flags],
                                             models, tmp_path))  # fmt: skip
    assert code == 0, err
    first = tmp_path / "out" / "img"
    depth = np.load(first / "depth.npy")
    meta = json.loads((first / "intrinsics.json").read_text())
    step = meta["depth_png_scale_m"]
    assert step == float(scale or 0.001)
    # the same file read back as a prompt (its scale comes from the intrinsics.json beside it)
    code, _, err = _cli(capsys, *_with_model(["-i", img, "--fx", "40", "--prompt", first / "depth.png", *flags, "-o",
                                              tmp_path / "out2"], models, tmp_path))  # fmt: skip
    assert code == 0, err
    second = json.loads((tmp_path / "out2" / "img" / "intrinsics.json").read_text())
    assert second["prompt_png_scale_m"] == step and "intrinsics.json" in second["prompt_png_scale_from"]
    prompt_depth, mask = read_prompt_file(first / "depth.png", 40, 30, png_scale=second["prompt_png_scale_m"]).to_map()
    assert mask.all()
    float_eps = 4 * float(np.spacing(np.float32(depth.max())))  # float32 rounding of the depth itself
    assert np.abs(prompt_depth - depth).max() <= step / 2 + float_eps and step / 2 <= 0.005
    if step == 0.001:
        assert np.abs(prompt_depth - depth).max() <= 0.0005 + float_eps  # 1 mm round trip (half a millimetre)


@pytest.mark.parametrize("depth_m,scale,text", [
    (70.0, 0.001, "--depth-png-scale 0.002"),
    (700.0, 0.001, "--depth-png-scale 0.02"),
    (0.0003, 0.001, "finer --depth-png-scale"),
    (1e6, 0.001, "beyond any 16-bit PNG scale"),
])  # fmt: skip
def test_write_outputs_refuses_a_depth_that_does_not_fit_before_writing(tmp_path, depth_m, scale, text):
    from metricanything.api import DepthResult
    from metricanything.camera import Intrinsics, IntrinsicsSource
    from metricanything.tasks.infer import write_outputs

    depth = np.full((3, 4), depth_m, np.float32)
    result = DepthResult(depth=depth, valid=np.ones((3, 4), bool), intrinsics=Intrinsics(4.0, 4.0, 1.5, 1.0, 4, 3),
                         intrinsics_source=IntrinsicsSource.GIVEN, model_kind="teacher")  # fmt: skip
    with pytest.raises(InvalidInputError, match=text) as e:
        write_outputs(tmp_path / "img", np.zeros((3, 4, 3), np.uint8), result, {}, png_scale=scale)
    assert "nothing written" in str(e.value)
    assert not list(tmp_path.iterdir())


def test_outputs_valid_png_and_no_stale_files_of_an_earlier_run(tmp_path, capsys, models):
    img = _image(tmp_path / "img.png")
    out = tmp_path / "out"
    assert _cli(capsys, *_with_model(["-i", img, "--fx", "40", "--ply"], models, tmp_path))[0] == 0
    assert (out / "img" / "cloud.ply").is_file()
    before = json.loads((out / "img" / "intrinsics.json").read_text())
    # a rerun with another focal and without --ply: the folder holds only the new run's files
    assert _cli(capsys, *_with_model(["-i", img, "--fx", "80"], models, tmp_path))[0] == 0
    names = sorted(p.name for p in (out / "img").iterdir())
    assert names == ["depth.npy", "depth.png", "intrinsics.json", "valid.png"]
    after = json.loads((out / "img" / "intrinsics.json").read_text())
    assert (before["fx"], after["fx"]) == (40.0, 80.0)
    valid = np.asarray(Image.open(out / "img" / "valid.png"))
    depth = np.load(out / "img" / "depth.npy")
    assert set(np.unique(valid)) <= {0, 255} and np.array_equal(valid == 255, depth > 0)
    assert after["depth_png_scale_m"] == 0.001 and "valid.png" in after["valid_png"] or after["valid_png"]


def test_hidden_temporaries_of_a_killed_run_are_removed_by_the_next(tmp_path, capsys, models):
    img = _image(tmp_path / "img.png")
    out = tmp_path / "out"
    out.mkdir()
    dead = 2**22 + 12345  # above the default pid_max: no such process
    (out / f".img.tmp-{dead}-0badf00d").mkdir()
    (out / f".img.tmp-{dead}-0badf00d" / "depth.npy").write_bytes(b"half")
    (out / f".x.npy.tmp-{dead}-deadbeef.npy").write_bytes(b"half")
    live = out / f".y.tmp-{os.getpid()}-12345678"  # a live writer's temporary stays
    live.mkdir()
    assert _cli(capsys, *_with_model(["-i", img, "--fx", "40"], models, tmp_path))[0] == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(["img", live.name])


def test_quiet_prints_only_the_summary_and_verbose_more(tmp_path, capsys, models):
    inp = tmp_path / "in"
    for k in range(3):
        _image(inp / f"v{k}.png", seed=k)
    base = ["-i", inp, "--fx", "40"]
    code, quiet_out, quiet_err = _cli(capsys, *_with_model([*base, "--quiet"], models, tmp_path))
    code2, normal_out, _ = _cli(capsys, *_with_model(base, models, tmp_path))
    code3, verbose_out, _ = _cli(capsys, "--verbose", *_with_model(base, models, tmp_path))
    assert code == code2 == code3 == 0
    assert quiet_out.splitlines() == [line for line in quiet_out.splitlines() if line.startswith("3 done, 0 failed")]
    assert quiet_err == ""
    assert normal_out.count("focal 40.0 px") == 3 and "prompt points" not in normal_out
    assert verbose_out.count("focal 40.0 px") == 3 and verbose_out.count("prompt points") == 3
    assert "\r" not in normal_out + verbose_out  # no progress-bar debris off a terminal


# ---------------------------------------------------------------------------------------------- other commands
def _other_command_cases():
    """(id, setup(tmp, models) -> argv, exit code, texts in stderr)."""

    def poses(t, pose, extra=None):
        _image(t / "a.png")
        entry = {"pose": pose, "intrinsics": {"fx": 40, "fy": 40, "cx": 19.5, "cy": 14.5}}
        (t / "poses.json").write_text(json.dumps({"a.png": {**entry, **(extra or {})}}))
        return ["fuse", "--images", t / "a.png", "--poses", t / "poses.json", "--out", t / "c.ply"]

    scaled = (np.eye(4) * [2, 2, 2, 1]).tolist()
    sheared = np.eye(4)
    sheared[0, 1] = 0.5
    flipped = np.diag([1.0, 1.0, -1.0, 1.0]).tolist()
    bottom = np.eye(4)
    bottom[3, 0] = 1
    cases = [
        ("render-out-file", lambda t, m: ((t / "f").write_text("x"), ["render", "--out", t / "f", "--num", "1"])[1], 2,
         ["--out", "is a file"]),
        ("render-num-zero", lambda t, m: ["render", "--out", t / "r", "--num", "0"], 2, ["--num"]),
        ("render-bad-size", lambda t, m: ["render", "--out", t / "r", "--size", "big"], 2, ["--size"]),
        ("render-workers-zero", lambda t, m: ["render", "--out", t / "r", "--workers", "0"], 2, ["--workers"]),
        ("pack-out-file", lambda t, m: ((t / "f").write_text("x"), ["pack", t, "--out", t / "f"])[1], 2,
         ["--out", "is a file"]),
        ("pack-missing-source", lambda t, m: ["pack", t / "none", "--out", t / "s"], 2, ["none"]),
        ("pack-shard-size-zero", lambda t, m: ["pack", t, "--out", t / "s", "--shard-size", "0"], 2, ["--shard-size"]),
        ("pretrain-out-file", lambda t, m: ((t / "f").write_text("x"), ["pretrain", "--config", "teacher_test", "--out",
                                                                         t / "f"])[1], 2, ["--out", "is a file"]),
        ("pretrain-config-missing", lambda t, m: ["pretrain", "--config", t / "none.yaml", "--out", t / "r"], 2,
         ["none.yaml"]),
        ("pretrain-misspelt-key", lambda t, m: ["pretrain", "--config", "teacher_test", "--set", "train.stpes=3",
                                                "--out", t / "r"], 2, ["train.stpes", "did you mean 'train.steps'"]),
        ("pretrain-bad-value", lambda t, m: ["pretrain", "--config", "teacher_test", "--set", "train.steps=many",
                                             "--out", t / "r"], 2, ["train.steps"]),
        ("distill-stage-config", lambda t, m: ["distill", "--config", "teacher_test", "--out", t / "r"], 2,
         ["stage"]),
        ("export-not-onnx", lambda t, m: ["export", "--model", m["student"], "--onnx", t / "x.txt"], 2,
         ["--onnx", ".onnx"]),
        ("export-onnx-is-folder", lambda t, m: ((t / "d.onnx").mkdir(), ["export", "--model", m["student"], "--onnx",
                                                                        t / "d.onnx"])[1], 2, ["--onnx", "is a folder"]),
        ("export-under-a-file", lambda t, m: ((t / "f").write_text("x"), ["export", "--model", m["student"], "--onnx",
                                                                          t / "f" / "m.onnx"])[1], 2, ["--onnx", "is a file"]),
        ("export-model-missing", lambda t, m: ["export", "--model", t / "nomodel", "--onnx", t / "m.onnx"], 2, ["nomodel"]),
        ("export-tolerance-zero", lambda t, m: ["export", "--model", m["student"], "--onnx", t / "m.onnx", "--tolerance",
                                                "0"], 2, ["--tolerance"]),
        ("fuse-out-suffix", lambda t, m: ["fuse", "--images", _image(t / "a.png"), "--poses", t / "p.json", "--out",
                                          t / "c.txt"], 2, ["--out", ".ply or .glb"]),
        ("fuse-out-is-folder", lambda t, m: ((t / "c.ply").mkdir(), poses(t, np.eye(4).tolist()))[1], 2,
         ["--out", "is a folder"]),
        ("fuse-poses-missing", lambda t, m: ["fuse", "--images", _image(t / "a.png"), "--poses", t / "none.json",
                                             "--out", t / "c.ply"], 2, ["none.json", "--poses"]),
        ("fuse-poses-not-json", lambda t, m: ((t / "p.json").write_text("{"), ["fuse", "--images", _image(t / "a.png"),
                                               "--poses", t / "p.json", "--out", t / "c.ply"])[1], 2, ["p.json", "JSON"]),
        ("fuse-no-pose-for-image", lambda t, m: ((t / "p.json").write_text("{}"), ["fuse", "--images", _image(t / "a.png"),
                                                  "--poses", t / "p.json", "--out", t / "c.ply"])[1], 2,
         ["p.json", "no pose for image 'a.png'"]),
        ("fuse-pose-scaled", lambda t, m: poses(t, scaled), 2, ["poses.json", "'a.png'", "not rigid", "orthonormal"]),
        ("fuse-pose-sheared", lambda t, m: poses(t, sheared.tolist()), 2, ["poses.json", "not rigid"]),
        ("fuse-pose-reflection", lambda t, m: poses(t, flipped), 2, ["poses.json", "reflection"]),
        ("fuse-pose-bottom-row", lambda t, m: poses(t, bottom.tolist()), 2, ["poses.json", "last row"]),
        ("fuse-pose-3x3", lambda t, m: poses(t, np.eye(3).tolist()), 2, ["poses.json", "4x4"]),
        ("fuse-pose-text", lambda t, m: poses(t, "identity"), 2, ["poses.json", "4x4"]),
        ("fuse-pose-nan", lambda t, m: poses(t, (np.eye(4) * np.nan).tolist()), 2, ["poses.json", "non-finite"]),
        ("fuse-bad-intrinsics", lambda t, m: poses(t, np.eye(4).tolist(), {"intrinsics": {"fx": "a", "fy": 1, "cx": 1,
                                                                                          "cy": 1}}), 2,
         ["poses.json", "intrinsics of 'a.png'"]),
        ("fuse-images-without-poses", lambda t, m: ["fuse", "--images", _image(t / "a.png"), "--out", t / "c.ply"], 2,
         ["--poses"]),
        ("fuse-voxel-negative", lambda t, m: [*poses(t, np.eye(4).tolist()), "--voxel", "-1"], 2, ["--voxel"]),
        ("eval-model-missing", lambda t, m: ["eval", "--model", t / "nomodel", "--benchmark", "synthetic_indoor",
                                             "--limit", "1", "--out", t / "e"], 2, ["nomodel"]),
        ("eval-unknown-benchmark", lambda t, m: ["eval", "--model", m["teacher"], "--benchmark", "nosuchbench",
                                                 "--out", t / "e"], 2, ["nosuchbench"]),
        ("pseudo-label-out-file", lambda t, m: ((t / "f").write_text("x"), ["pseudo-label", "--teacher", m["teacher"],
                                                 "--data", "render:2", "--out", t / "f"])[1], 2, ["--out", "is a file"]),
        ("pseudo-label-bad-render-spec", lambda t, m: ["pseudo-label", "--teacher", m["teacher"], "--data", "render:x",
                                                       "--out", t / "pl"], 2, ["--data", "render:x"]),
    ]
    if _read_only_available():
        cases += [
            ("render-read-only", lambda t, m: ["render", "--out", READ_ONLY_DIR / "r", "--num", "1"], 2,
             ["--out", "cannot create"]),
            ("pack-read-only", lambda t, m: ["pack", t, "--out", READ_ONLY_DIR], 2, ["--out", "cannot write"]),
            ("pretrain-read-only", lambda t, m: ["pretrain", "--config", "teacher_test", "--out", READ_ONLY_DIR / "r"], 2,
             ["--out", "cannot create"]),
            ("export-read-only", lambda t, m: ["export", "--model", m["student"], "--onnx", READ_ONLY_DIR / "m.onnx"], 2,
             ["--onnx", "cannot write"]),
            ("fuse-read-only", lambda t, m: [*poses(t, np.eye(4).tolist())[:-1], READ_ONLY_DIR / "c.ply"], 2,
             ["--out", "cannot write"]),
            ("pseudo-label-read-only", lambda t, m: ["pseudo-label", "--teacher", m["teacher"], "--data", "render:2",
                                                     "--out", READ_ONLY_DIR / "pl"], 2, ["--out", "cannot create"]),
        ]
    return cases


@pytest.mark.parametrize("setup,code,texts", [c[1:] for c in _other_command_cases()],
                         ids=[c[0] for c in _other_command_cases()])  # fmt: skip
def test_other_commands_name_the_flag_or_file(tmp_path, capsys, models, setup, code, texts):
    argv = setup(tmp_path, models)
    got, out, err = _cli(capsys, *argv)
    assert got == code, out + err
    assert err.startswith(f"metricanything {argv[0]}: error: "), err
    for text in texts:
        assert text in err, err


def test_eval_of_an_intermediate_training_checkpoint_points_to_the_run_model(tmp_path, capsys):
    from metricanything.models.teacher import Teacher, teacher_config
    from metricanything.train.checkpointing import save_checkpoint

    state = {"model": Teacher(teacher_config("test")).state_dict(), "optimizer": {"state": {}, "param_groups": []}}
    path = save_checkpoint(tmp_path / "runs" / "x", 8, state)
    code, _, err = _cli(capsys, "eval", "--model", path, "--benchmark", "synthetic_indoor", "--limit", "1", "--out",
                        tmp_path / "e")  # fmt: skip
    assert code == 2 and f"{path}: this is a training checkpoint" in err and "<run>/model" in err
    assert "weights_only" not in err and "unpickl" not in err.lower()


@pytest.mark.skipif(sys.platform != "linux", reason="needs onnxruntime on Linux")
def test_failed_export_verify_leaves_no_onnx(tmp_path, capsys, models):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "m.onnx"
    code, _, err = _cli(capsys, "export", "--model", models["student"], "--onnx", out, "--verify", "--tolerance", "1e-300",
                        "--no-optimize")  # fmt: skip
    assert code == 2 and str(out) in err and "removed" in err and "--tolerance" in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".m.onnx")]


# ---------------------------------------------------------------------------------------------- the CLI itself
def test_unexpected_error_is_one_line_with_a_debug_hint_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    import metricanything.tasks.render as render

    def boom(options):
        raise RuntimeError("kaboom\nsecond line")

    monkeypatch.setattr(render, "run", boom)
    code, out, err = _cli(capsys, "render", "--out", tmp_path / "r")
    assert code == 1 and err.count("\n") == 1
    assert "unexpected RuntimeError: kaboom second line" in err and "--debug" in err
    with pytest.raises(RuntimeError, match="kaboom"):
        main(["--debug", "render", "--out", str(tmp_path / "r")])
    with pytest.raises(RuntimeError, match="kaboom"):
        main(["render", "--out", str(tmp_path / "r"), "--debug"])


@pytest.mark.parametrize("exc,code,texts", [
    (PermissionError(13, "Permission denied", "/data/x.png"), 2, ["/data/x.png", "Permission denied", "--debug"]),
    (OSError(28, "No space left on device", "/out/depth.npy"), 2, ["/out/depth.npy", "No space left"]),
    (IsADirectoryError(21, "Is a directory", "/out/a"), 2, ["/out/a"]),
    (MemoryError(), 1, ["out of memory"]),
    (KeyError("x"), 1, ["unexpected KeyError", "--debug"]),
])  # fmt: skip
def test_environment_errors_are_one_line(tmp_path, capsys, monkeypatch, exc, code, texts):
    import metricanything.tasks.render as render

    def fail(options):
        raise exc

    monkeypatch.setattr(render, "run", fail)
    got, _, err = _cli(capsys, "render", "--out", tmp_path / "r")
    assert got == code and err.count("\n") == 1
    for text in texts:
        assert text in err


def test_unknown_command_and_bad_flags_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["nosuch"])
    assert e.value.code == 2 and "unknown command 'nosuch'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["infer", "--fx", "abc", "-i", "x", "-o", "y"])
    assert e.value.code == 2 and "--fx" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- API: prompts
def _prompt_api_cases():
    from metricanything.prompts.prompt import Prompt

    d = np.ones((3, 4), np.float32)
    m = np.ones((3, 4), bool)
    return [
        ("points-Nx2", lambda: Prompt.from_points(np.ones((5, 2)), 4, 3), InvalidInputError, "N x 3"),
        ("points-nan-u", lambda: Prompt.from_points([[np.nan, 1, 1]], 4, 3), InvalidInputError, "finite"),
        ("points-zero-z", lambda: Prompt.from_points([[1, 1, 0]], 4, 3), InvalidInputError, "<= 0"),
        ("points-neg-z", lambda: Prompt.from_points([[1, 1, -1]], 4, 3), InvalidInputError, "<= 0"),
        ("points-inf-z", lambda: Prompt.from_points([[1, 1, np.inf]], 4, 3), InvalidInputError, "non-finite"),
        ("points-outside", lambda: Prompt.from_points([[9, 1, 1]], 4, 3), InvalidInputError, "outside the 4x3 image"),
        ("points-empty", lambda: Prompt.from_points(np.zeros((0, 3)), 4, 3), InvalidInputError, "no points"),
        ("points-bad-conf", lambda: Prompt.from_points([[1, 1, 1, -1]], 4, 3), InvalidInputError, "confidences"),
        ("points-size-zero", lambda: Prompt.from_points([[0, 0, 1]], 0, 3), InvalidInputError, "positive"),
        ("map-all-false-mask", lambda: Prompt.from_map(d, ~m), InvalidInputError, "mask is empty"),
        ("map-mask-shape", lambda: Prompt.from_map(d, m[:2]), InvalidInputError, "differ in shape"),
        ("map-mask-values", lambda: Prompt.from_map(d, m.astype(int) * 2), InvalidInputError, "boolean"),
        ("map-3d", lambda: Prompt.from_map(d[None], m[None]), InvalidInputError, "H x W"),
        ("map-zero-depth", lambda: Prompt.from_map(d * 0, m), InvalidInputError, "<= 0"),
        ("map-nan-depth", lambda: Prompt.from_map(d * np.nan, m), InvalidInputError, "non-finite"),
    ]


@pytest.mark.parametrize("call,error,text", [c[1:] for c in _prompt_api_cases()], ids=[c[0] for c in _prompt_api_cases()])
def test_prompt_api_errors(call, error, text):
    with pytest.raises(error, match=text):
        call()


def test_cli_prompt_files_never_advise_python_options(tmp_path):
    """The file readers speak of rows and pixels; the Python constructors may name their keyword arguments."""
    from metricanything.prompts.prompt import read_prompt_file

    with pytest.raises(InputFileError) as e:
        read_prompt_file(_csv(tmp_path / "p.csv", [(100, 1, 2.0)]), 40, 30)
    assert "p.csv" in str(e.value) and "drop_outside" not in str(e.value) and "Remove those points" in str(e.value)


# ---------------------------------------------------------------------------------------------- API: models
def test_api_student_with_a_prompt_is_refused(models):
    from metricanything.api import infer, load_model

    student = load_model(models["student"])
    with pytest.raises(InvalidInputError, match="prompt-free"):
        infer(student, np.zeros((30, 40, 3), np.uint8), f_px=40.0, prompt=(np.ones((30, 40)), np.ones((30, 40), bool)))


def test_api_prompt_tuple_with_an_all_false_mask_is_refused(models):
    from metricanything.api import infer, load_model

    teacher = load_model(models["teacher"])
    with pytest.raises(InvalidInputError, match="no prompt point"):
        infer(teacher, np.zeros((30, 40, 3), np.uint8), f_px=40.0, prompt=(np.ones((30, 40)), np.zeros((30, 40), bool)))


def test_load_model_none_is_a_clear_error():
    from metricanything.api import load_model

    with pytest.raises(InvalidInputError, match="path_or_id"):
        load_model(None)


@pytest.mark.parametrize("make,text", [
    (lambda t: t / "none", "none"),
    (lambda t: (t / "g.pt").write_bytes(b"garbage") and t / "g.pt", "g.pt"),
    (lambda t: (t / "d").mkdir() or t / "d", "d"),
    (lambda t: (t / "c").mkdir() or (t / "c" / "config.json").write_text("{") and t / "c", "config.json"),
    (lambda t: (t / "s.safetensors").write_bytes(b"\0" * 16) and t / "s.safetensors", "s.safetensors"),
])  # fmt: skip
def test_load_model_bad_paths_name_the_path(tmp_path, make, text):
    from metricanything.api import load_model

    path = make(tmp_path)
    with pytest.raises(MetricAnythingError, match=text):
        load_model(path)


@pytest.mark.parametrize("image,text", [
    (np.zeros((30, 40, 5), np.uint8), "image"),
    (np.zeros((0, 40, 3), np.uint8), "image"),
    (np.zeros((2, 3, 30, 40, 3), np.uint8), "image"),
    ("not an image", "image"),
])  # fmt: skip
def test_api_infer_bad_images(models, image, text):
    from metricanything.api import infer, load_model

    with pytest.raises(InvalidInputError, match=text):
        infer(load_model(models["teacher"]), image, f_px=40.0)


def test_intermediate_checkpoint_and_crafted_pickle_are_refused(tmp_path):
    from metricanything.api import load_model
    from metricanything.train.checkpointing import load_checkpoint

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    crafted = tmp_path / "runs" / "x" / "checkpoints" / "step_00000004.pt"
    crafted.parent.mkdir(parents=True)
    crafted.write_bytes(pickle.dumps({"model": Evil(), "format_version": 2}))
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(crafted)
    with pytest.raises(CheckpointError, match="refused"):
        load_model(crafted)
    assert not (tmp_path / "ran").exists()


# ---------------------------------------------------------------------------------------------- API: files
def _file_cases():
    from metricanything import depth_io as io

    def png8(t):
        Image.fromarray(np.ones((3, 4), np.uint8)).save(t / "d.png")
        return t / "d.png"

    def npz_two(t):
        np.savez(t / "d.npz", a=np.ones((2, 2)), b=np.ones((2, 2)))
        return t / "d.npz"

    return [
        ("depth-missing", lambda t: io.read_depth(t / "none.npy"), InputFileError, "does not exist"),
        ("depth-folder", lambda t: io.read_depth(t), InputFileError, "not a regular file"),
        ("depth-png-8bit", lambda t: io.read_depth(png8(t)), InputFileError, "16-bit"),
        ("depth-png-garbage", lambda t: io.read_depth((t / "d.png").write_bytes(b"xx") and t / "d.png"), InputFileError,
         "not a PNG"),
        ("depth-npy-truncated", lambda t: io.read_depth((t / "d.npy").write_bytes(b"\x93NUMPY") and t / "d.npy"),
         InputFileError, "corrupt or truncated"),
        ("depth-npz-no-key", lambda t: io.read_depth(npz_two(t)), InputFileError, "no array 'depth'"),
        ("depth-pfm-bad-magic", lambda t: io.read_depth((t / "d.pfm").write_bytes(b"P6\n1 1\n-1\n") and t / "d.pfm"),
         InputFileError, "magic"),
        ("depth-pfm-truncated", lambda t: io.read_depth((t / "d.pfm").write_bytes(b"Pf\n2 2\n-1\n\0\0") and t / "d.pfm"),
         InputFileError, "truncated"),
        ("depth-unknown-suffix", lambda t: io.read_depth((t / "d.bmp").write_bytes(b"x") and t / "d.bmp"),
         InputFileError, "unknown depth format"),
        ("write-png-too-deep", lambda t: io.write_depth(t / "d.png", np.full((2, 2), 70.0)), InvalidInputError,
         "65.535 m"),
        ("write-png-too-shallow", lambda t: io.write_depth(t / "d.png", np.full((2, 2), 1e-4)), InvalidInputError,
         "round to 0"),
        ("write-mask-shape", lambda t: io.write_depth(t / "d.npy", np.ones((2, 2)), np.ones((3, 3), bool)),
         InvalidInputError, "mask shape"),
        ("write-valid-but-nan", lambda t: io.write_depth(t / "d.npy", np.full((2, 2), np.nan), np.ones((2, 2), bool)),
         InvalidInputError, "marked valid"),
        ("write-unknown-suffix", lambda t: io.write_depth(t / "d.jpg", np.ones((2, 2))), InvalidInputError, "unknown"),
        ("image-bomb", lambda t: io.read_image(_bomb_png(t / "b.png")), InputFileError, "too large"),
        ("image-bomb-exif", lambda t: io.read_exif_focal_px(_bomb_png(t / "b.png")), InputFileError, "too large"),
        ("image-missing", lambda t: io.read_image(t / "none.png"), InputFileError, "does not exist"),
        ("intrinsics-no-fx", lambda t: io.read_intrinsics_json((t / "k.json").write_text("{}") and t / "k.json", 4, 3),
         InputFileError, "no 'fx'"),
        ("intrinsics-K-shape", lambda t: io.read_intrinsics_json((t / "k.json").write_text('{"K": [[1, 2]]}')
                                                                  and t / "k.json", 4, 3), InputFileError, "3x3"),
        ("intrinsics-not-object", lambda t: io.read_intrinsics_json((t / "k.json").write_text("[1]") and t / "k.json",
                                                                     4, 3), InputFileError, "object"),
        ("intrinsics-bool", lambda t: io.read_intrinsics_json((t / "k.json").write_text('{"fx": true}') and t / "k.json",
                                                               4, 3), InputFileError, "finite number"),
        ("intrinsics-width-only", lambda t: io.read_intrinsics_json((t / "k.json").write_text('{"fx": 3, "width": 4}')
                                                                     and t / "k.json", 4, 3), InputFileError, "both"),
    ]


@pytest.mark.parametrize("call,error,text", [c[1:] for c in _file_cases()], ids=[c[0] for c in _file_cases()])
def test_file_layer_errors(tmp_path, call, error, text):
    with pytest.raises(error, match=text):
        call(tmp_path)


# ---------------------------------------------------------------------------------------------- API: geometry
@pytest.mark.parametrize("pose,text", [
    (np.diag([2.0, 2.0, 2.0, 1.0]), "orthonormal"),
    (np.diag([1.0, 1.0, -1.0, 1.0]), "reflection"),
    (np.eye(4) + np.eye(4, k=1) * 0.3, "orthonormal"),
    (np.vstack([np.eye(4)[:3], [[0, 0, 1, 1]]]), "last row"),
    (np.full((4, 4), np.nan), "non-finite"),
    (np.eye(3), "4x4"),
])  # fmt: skip
def test_fuse_views_refuses_non_rigid_poses(pose, text):
    from metricanything.camera import Intrinsics
    from metricanything.tasks.fuse import fuse_views

    K = Intrinsics(10.0, 10.0, 1.5, 1.5, 4, 4)
    with pytest.raises(InvalidInputError, match=text):
        fuse_views([np.ones((4, 4), np.float32)], [np.ones((4, 4), bool)], [K], [pose])


def test_fuse_views_accepts_a_rigid_pose_with_float_noise():
    from metricanything.camera import Intrinsics
    from metricanything.tasks.fuse import fuse_views

    c, s = np.cos(0.3), np.sin(0.3)
    pose = np.array([[c, -s, 0, 1], [s, c, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1]]) + 1e-7
    pose[3] = [0, 0, 0, 1]
    K = Intrinsics(10.0, 10.0, 1.5, 1.5, 4, 4)
    fused = fuse_views([np.ones((4, 4), np.float32)], [np.ones((4, 4), bool)], [K], [pose])
    assert len(fused.points) == 16


@pytest.mark.parametrize("dims_true,dims_given,refused", [(5, 4, True), (4, 5, True), (4, 4, False), (5, 5, False),
                                                          (3, 3, False)])  # fmt: skip
def test_lidar_point_dims_check(tmp_path, dims_true, dims_given, refused):
    from metricanything.tasks.infer import check_point_dims

    pts = _lidar_points(400, dims=5)[:, :dims_true] if dims_true != 4 else _lidar_points(400, dims=4)
    raw = np.ascontiguousarray(pts, "<f4").reshape(-1)
    if refused:
        with pytest.raises(InputFileError, match=f'"point_dims": {dims_true}'):
            check_point_dims(raw, dims_given, tmp_path / "s.bin", tmp_path / "c.json")
    else:
        check_point_dims(raw, dims_given, tmp_path / "s.bin", tmp_path / "c.json")


# ---------------------------------------------------------------------------------------------- API: outputs, files
def test_output_path_checks(tmp_path):
    from metricanything.atomic import check_output_dir, check_output_file

    (tmp_path / "f").write_text("x")
    with pytest.raises(InvalidInputError, match="--out .*is a file"):
        check_output_dir(tmp_path / "f", "--out")
    with pytest.raises(InvalidInputError, match="--out .*is a file"):
        check_output_dir(tmp_path / "f" / "a" / "b", "--out")
    with pytest.raises(InvalidInputError, match="--onnx .*is a folder"):
        check_output_file(tmp_path, "--onnx")
    assert check_output_dir(tmp_path / "new" / "deep", "--out").is_dir()
    assert not [p for p in (tmp_path / "new" / "deep").iterdir()]  # the write probe leaves nothing


@needs_read_only
def test_read_only_output_folder(tmp_path):
    from metricanything.atomic import check_output_dir

    with pytest.raises(InvalidInputError, match="cannot write in this folder"):
        check_output_dir(READ_ONLY_DIR, "-o/--out")


def test_atomic_dir_keeps_the_old_folder_on_failure_and_replaces_it_whole_on_success(tmp_path):
    from metricanything.atomic import atomic_dir

    target = tmp_path / "img"
    target.mkdir()
    (target / "cloud.ply").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "depth.npy").write_text("half")
        raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img"] and (target / "cloud.ply").read_text() == "old"
    with atomic_dir(target) as tmp:
        (tmp / "depth.npy").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["depth.npy"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img"]


def test_config_and_resume_refusals_name_the_key(tmp_path):
    from metricanything.train.config import load_config, resume_changes

    with pytest.raises(ConfigError, match="train.stpes"):
        load_config("teacher_test", {"train.stpes": 3})
    with pytest.raises(ConfigError, match="teacher_test"):
        load_config("teacher_test", stage="distill")
    cfg = load_config("teacher_test")
    stored = load_config("teacher_test", {"model.preset": "tiny"}).to_dict()
    with pytest.raises(MetricAnythingError, match="model"):
        resume_changes(stored, cfg, source="ckpt", step=3)


def test_truncated_shard_is_indexed_to_its_last_complete_sample(tmp_path):
    from metricanything.data.render import render_sample
    from metricanything.data.shards import ShardIndex, ShardWriter

    with ShardWriter(tmp_path / "s", "shard", 10) as w:
        for i in range(4):
            w.write(render_sample(i, size=(32, 24)))
    tar = tmp_path / "s" / "shard-000000.tar"
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    index = ShardIndex(tmp_path / "s")
    assert 0 < len(index) < 4 and index.notes and "complete sample" in index.notes[0]


# ---------------------------------------------------------------------------------------------- logs
def test_progress_off_a_terminal_is_plain_lines_at_a_fixed_interval(capsys):
    from metricanything.progress import Progress

    bar = Progress(400, "pretrain", "step", initial=0)
    assert bar.mode == "lines"  # pytest's stdout is not a terminal
    for step in range(1, 401):
        bar.set(step, loss=1.0 / step)
    bar.close()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 20 and "\r" not in "".join(lines)
    assert lines[0].startswith("pretrain 20/400 (5%), loss 0.05") and "ETA" in lines[0]
    assert lines[-1].startswith("pretrain 400/400 (100%)") and "took" in lines[-1]
