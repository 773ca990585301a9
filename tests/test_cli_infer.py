"""`metricanything infer` end to end on small files: outputs, intrinsics sources, prompts, bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from metricanything.cli import main
from metricanything.depth_io import read_depth, write_depth


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    from metricanything.models.checkpoint import save_pretrained
    from metricanything.models.teacher import Teacher, teacher_config

    torch.manual_seed(0)
    model = Teacher(teacher_config("test"))
    out = tmp_path_factory.mktemp("ckpt") / "teacher"
    save_pretrained(model, out)
    return out


def _image(path, w=40, h=30, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def test_folder_with_a_corrupt_image(tmp_path, teacher_dir, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    _image(inp / "a.png", 40, 30, 0)
    _image(inp / "b.jpg", 33, 47, 1)
    (inp / "c.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    out = tmp_path / "out"
    code = main(["infer", "-i", str(inp), "-o", str(out), "--model", str(teacher_dir), "--fx", "50", "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    assert "c.png" in err or "c:" in err
    assert sorted(p.name for p in out.iterdir()) == ["a", "b"]
    for name, (w, h) in {"a": (40, 30), "b": (33, 47)}.items():
        d = np.load(out / name / "depth.npy")
        assert d.shape == (h, w) and d.dtype == np.float32
        meta = json.loads((out / name / "intrinsics.json").read_text())
        assert meta["source"] == "given" and meta["fx"] == 50.0
        png, valid = read_depth(out / name / "depth.png", scale=meta["depth_png_scale_m"])
        assert np.abs(png - d)[valid].max() <= 0.0005 + 1e-6  # within 1 mm (rounding to 1 mm steps)
        assert (out / name / "depth_vis.png").is_file()


def test_intrinsics_sources_sidecar_and_fallback(tmp_path, teacher_dir, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    _image(inp / "side.png")
    (inp / "side.json").write_text(json.dumps({"cam_in": [60.0, 61.0, 20.0, 15.0]}))
    _image(inp / "plain.png")
    out = tmp_path / "out"
    assert main(["infer", "-i", str(inp), "-o", str(out), "--model", str(teacher_dir), "--no-vis"]) == 0
    printed = capsys.readouterr().out
    assert "warning (plain)" in printed and "from fallback" in printed  # the fallback is announced per image
    assert "warning (side)" not in printed
    side = json.loads((out / "side" / "intrinsics.json").read_text())
    assert side["source"] == "sidecar" and (side["fx"], side["fy"], side["cx"], side["cy"]) == (60.0, 61.0, 20.0, 15.0)
    plain = json.loads((out / "plain" / "intrinsics.json").read_text())
    assert plain["source"] == "fallback"
    assert not (out / "plain" / "depth_vis.png").exists()


def test_points_prompt_csv_and_ply(tmp_path, teacher_dir):
    _image(tmp_path / "img.png")
    rows = ["u,v,z"] + [f"{u},{v},{2.0 + 0.01 * u}" for u, v in [(3, 4), (10, 20), (30, 7), (25, 25)]]
    (tmp_path / "p.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    code = main(["infer", "-i", str(tmp_path / "img.png"), "-o", str(out), "--model", str(teacher_dir),
                 "--prompt", str(tmp_path / "p.csv"), "--ply", "--quiet", "--no-vis"])
    assert code == 0
    meta = json.loads((out / "img" / "intrinsics.json").read_text())
    assert meta["prompt_points"] == 4 and meta["source"] == "fallback"
    assert (out / "img" / "cloud.ply").stat().st_size > 100


def test_lidar_prompt_is_projected_with_the_zbuffer(tmp_path):
    from metricanything.camera import Intrinsics
    from metricanything.tasks.infer import read_lidar_prompt

    K = Intrinsics.from_focal(20.0, 16, 12)
    # LiDAR frame = camera frame shifted 1 m back along z; two points on one ray: the nearer must win
    pts = np.array([[0.0, 0.0, 3.0, 0.5], [0.0, 0.0, 6.0, 0.5], [1.0, 0.0, 5.0, 0.1]], dtype="<f4")
    (tmp_path / "scan.bin").write_bytes(pts.tobytes())
    T = np.eye(4)
    T[2, 3] = -1.0
    (tmp_path / "calib.json").write_text(json.dumps({"T_cam_lidar": T.tolist(), "point_dims": 4}))
    depth, mask = read_lidar_prompt(tmp_path / "scan.bin", tmp_path / "calib.json", K)
    assert mask.sum() == 2
    assert depth[int(np.floor(K.cy + 0.5)), int(np.floor(K.cx + 0.5))] == pytest.approx(2.0)
    u = int(np.floor(20.0 * 1.0 / 4.0 + K.cx + 0.5))
    assert depth[int(np.floor(K.cy + 0.5)), u] == pytest.approx(4.0)


def test_missing_input_and_bad_prompt_are_clear_errors(tmp_path, teacher_dir, capsys):
    assert main(["infer", "-i", str(tmp_path / "nope.png"), "-o", str(tmp_path / "o"), "--model", str(teacher_dir)]) == 2
    assert "nope.png" in capsys.readouterr().err
    _image(tmp_path / "img.png")
    write_depth(tmp_path / "bad.npy", np.zeros((5, 5), np.float32), np.zeros((5, 5), bool))
    code = main(["infer", "-i", str(tmp_path / "img.png"), "-o", str(tmp_path / "o"), "--model", str(teacher_dir),
                 "--prompt", str(tmp_path / "bad.npy"), "--quiet"])
    assert code == 1
    assert "bad.npy" in capsys.readouterr().err


@pytest.mark.parametrize("seed", [900_000, 900_001, 900_004])
def test_bundled_teacher_honours_a_500_point_prompt(tmp_path, seed, capsys):
    """Issue acceptance: a 500-point prompt file from a known depth map, ``infer`` without ``--model`` (so the
    bundled teacher), median relative error at those 500 pixels <= 5%. Indoor and outdoor renders."""
    from metricanything.data.render import render_sample

    s = render_sample(seed, size=(256, 192))
    Image.fromarray(s.image).save(tmp_path / "view.png")
    rng = np.random.default_rng(seed)
    v, u = np.nonzero(s.valid)
    k = rng.choice(len(v), 500, replace=False)
    z = s.depth[v[k], u[k]]
    lines = ["u,v,z"] + [f"{a},{b},{c:.6f}" for a, b, c in zip(u[k], v[k], z, strict=True)]
    (tmp_path / "points.csv").write_text("\n".join(lines) + "\n")
    k_ = s.intrinsics
    code = main(["infer", "-i", str(tmp_path / "view.png"), "-o", str(tmp_path / "out"), "--prompt",
                 str(tmp_path / "points.csv"), "--fx", str(k_.fx), "--fy", str(k_.fy), "--cx", str(k_.cx),
                 "--cy", str(k_.cy), "--no-vis", "--quiet"])
    assert code == 0, capsys.readouterr().err
    meta = json.loads((tmp_path / "out" / "view" / "intrinsics.json").read_text())
    from metricanything.models.bundled import bundled_model_dir

    assert meta["model"] == str(bundled_model_dir("teacher")) and meta["prompt_points"] == 500
    pred = np.load(tmp_path / "out" / "view" / "depth.npy")
    rel = np.abs(pred[v[k], u[k]] - z) / z
    assert float(np.median(rel)) <= 0.05


# ---------------------------------------------------------------------------------------------- honest defaults
PX = "Focal lengths are in pixels of this image"
PP = "--cx/--cy are pixel coordinates in this"


@pytest.mark.parametrize(
    ("size", "flags", "named", "fix"),
    [
        ((640, 480), ["--fx", "4.25"], "--fx 4.25", PX),  # millimetres by mistake: hFoV 178.5 deg
        ((640, 480), ["--fx", "1e12"], "--fx 1e+12", PX),  # would give an all-zero depth map
        ((451, 300), ["--fx", "400", "--cx", "5000"], "--cx 5000", PP),
        ((451, 300), ["--fx", "400", "--cy", "-3"], "--cy -3", PP),
        ((640, 480), ["--fx", "500", "--fy", "2"], "--fy 2", PX),
        ((40, 900), ["--fx", "30"], "--fx (used as fy) 30", PX),  # fine horizontally, 172.4 deg vertically
        ((640, 480), ["--fx", "500", "--fy", "5000"], "--fy 5000", PX),  # pixel aspect 10
        ((640, 480), ["--fov-x", "1"], "--fov-x 1", "in degrees (not radians)"),
    ],
)
def test_implausible_intrinsics_flags_fail_naming_the_flag(tmp_path, teacher_dir, capsys, size, flags, named, fix):
    _image(tmp_path / "img.png", *size)
    out = tmp_path / "out"
    code = main(["infer", "-i", str(tmp_path / "img.png"), "-o", str(out), "--model", str(teacher_dir),
                 "--quiet", "--no-vis", *flags])
    assert code == 1
    captured = capsys.readouterr()
    assert f"FAILED img: {named}:" in captured.err
    assert "outside" in captured.err and fix in captured.err
    assert "0 done, 1 failed" in captured.out
    assert not (out / "img").exists()


def test_plausible_extremes_are_accepted(tmp_path, teacher_dir):
    """Realistic lenses pass: 10 mm on full frame (122 deg) and 400 mm (5.2 deg across the long side), in
    landscape and in portrait (where the horizontal FoV of the 400 mm lens is 3.9 deg)."""
    for w, h in ((640, 480), (480, 640)):
        _image(tmp_path / "img.png", w, h)
        for mm in (10, 400):
            fx = max(w, h) / 36 * mm
            code = main(["infer", "-i", str(tmp_path / "img.png"), "-o", str(tmp_path / f"o{w}_{mm}"), "--model",
                         str(teacher_dir), "--quiet", "--no-vis", "--fx", str(fx)])
            assert code == 0, (w, h, mm)


def test_fov_x_outside_the_range_is_refused_before_any_work(tmp_path, teacher_dir, capsys):
    _image(tmp_path / "img.png")
    code = main(["infer", "-i", str(tmp_path / "img.png"), "-o", str(tmp_path / "o"), "--model", str(teacher_dir),
                 "--fov-x", "179"])
    assert code == 2
    assert "--fov-x 179" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_implausible_sidecar_and_exif_name_the_file(tmp_path, teacher_dir, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    _image(inp / "side.png", 640, 480)
    (inp / "side.json").write_text(json.dumps({"cam_in": [4.25, 4.25, 320.0, 240.0]}))
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 1  # a 1 mm (35 mm-equivalent) lens: 173.6 deg
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(inp / "cam.jpg", exif=exif)
    code = main(["infer", "-i", str(inp), "-o", str(tmp_path / "o"), "--model", str(teacher_dir), "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    assert f"FAILED side: {inp / 'side.json'}: implausible intrinsics for side.png" in err
    assert f"FAILED cam: {inp / 'cam.jpg'}: its EXIF FocalLengthIn35mmFilm" in err


def test_all_invalid_depth_is_a_failure(tmp_path, capsys):
    from metricanything.models.checkpoint import save_pretrained
    from metricanything.models.teacher import Teacher, teacher_config

    model = Teacher(teacher_config("test"))
    with torch.no_grad():
        model.decoder.head[0].bias.fill_(float("nan"))  # the network now outputs NaN everywhere
    save_pretrained(model, tmp_path / "broken")
    _image(tmp_path / "img.png")
    out = tmp_path / "out"
    code = main(["infer", "-i", str(tmp_path / "img.png"), "-o", str(out), "--model", str(tmp_path / "broken"),
                 "--fx", "40", "--quiet"])
    assert code == 1
    captured = capsys.readouterr()
    assert "FAILED img: the model gave no valid depth anywhere in this image" in captured.err
    assert "0 done, 1 failed" in captured.out
    assert not (out / "img").exists()


def test_fp16_on_cpu_is_refused_with_bf16_suggested(tmp_path, teacher_dir, capsys):
    _image(tmp_path / "img.png")
    code = main(["infer", "-i", str(tmp_path / "img.png"), "-o", str(tmp_path / "o"), "--model", str(teacher_dir),
                 "--fx", "40", "--precision", "fp16", "--device", "cpu"])
    assert code == 2
    err = capsys.readouterr().err
    assert "fp16 on the CPU is refused" in err and "--precision bf16" in err
    assert main(["infer", "-i", str(tmp_path / "img.png"), "-o", str(tmp_path / "o"), "--model", str(teacher_dir),
                 "--fx", "40", "--precision", "bf16", "--quiet", "--no-vis"]) == 0


def test_bundled_student_notices_once_per_run_and_fov_error_recorded(tmp_path, capsys):
    """Without --model and intrinsics: one line saying the bundled student is a synthetic-data demonstrator
    (naming the official student), one line with the FoV head's measured error, for a run of three images;
    each intrinsics.json records that error as written in the checkpoint's training.json."""
    from metricanything.models.bundled import bundled_model_dir

    inp = tmp_path / "in"
    inp.mkdir()
    for k in range(3):
        _image(inp / f"v{k}.png", 48, 36, seed=k)
    code = main(["infer", "-i", str(inp), "-o", str(tmp_path / "out"), "--quiet", "--no-vis"])
    assert code == 0
    captured = capsys.readouterr()
    err = captured.err
    assert err.count("synthetic renders only") == 1
    assert "student_depthmap.pt" in err and "yjh001/metricanything_student_depthmap" in err
    assert err.count("field-of-view head") == 1
    check = json.loads((bundled_model_dir("student") / "training.json").read_text())["fov_head_check"]
    assert f"{check['mean_abs_fov_error_deg']:.1f} deg" in err
    assert "synthetic" not in captured.out and "field-of-view" not in captured.out  # stderr only
    for k in range(3):
        meta = json.loads((tmp_path / "out" / f"v{k}" / "intrinsics.json").read_text())
        assert meta["source"] == "estimated" and meta["intrinsics_origin"] == "model FoV head"
        assert meta["fov_head_error_deg"] == check["mean_abs_fov_error_deg"]
        assert meta["fov_head_median_rel_focal_error"] == check["median_rel_focal_error"]
        assert meta["fov_head_error_samples"] == check["samples"]
    # with a focal given: the demonstrator notice stays, the FoV-head warning goes
    code = main(["infer", "-i", str(inp), "-o", str(tmp_path / "out2"), "--quiet", "--no-vis", "--fov-x", "60"])
    assert code == 0
    err = capsys.readouterr().err
    assert err.count("synthetic renders only") == 1 and "field-of-view head" not in err
    assert "fov_head_error_deg" not in json.loads((tmp_path / "out2" / "v0" / "intrinsics.json").read_text())


def test_own_student_fov_head_error_is_unmeasured(tmp_path, capsys):
    from metricanything.models.checkpoint import save_pretrained
    from metricanything.models.student import Student, student_config

    torch.manual_seed(0)
    save_pretrained(Student(student_config("fixture_tiny", use_fov_head=True)), tmp_path / "own")
    _image(tmp_path / "img.png", 48, 36)
    code = main(["infer", "-i", str(tmp_path / "img.png"), "-o", str(tmp_path / "out"), "--model",
                 str(tmp_path / "own"), "--quiet", "--no-vis"])
    assert code == 0
    err = capsys.readouterr().err
    assert "synthetic renders only" not in err  # not the bundled demonstrator
    assert err.count("field-of-view head (its error is unmeasured") == 1
    meta = json.loads((tmp_path / "out" / "img" / "intrinsics.json").read_text())
    assert meta["source"] == "estimated" and meta["fov_head_error_deg"] == "unmeasured"
