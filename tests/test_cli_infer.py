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
    assert main(["infer", "-i", str(inp), "-o", str(out), "--model", str(teacher_dir), "--quiet", "--no-vis"]) == 0
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
