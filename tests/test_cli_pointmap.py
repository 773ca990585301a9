"""`metricanything infer --model student_pointmap.pt`: the point-map student through the CLI, end to end.

The checkpoint is a tiny random model of the released architecture (``fixture_tiny`` preset) written in the
released format (``{"model_config", "model"}`` with the official key names), loaded weights-only; its kind is
read from its keys, never from the file name.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metricanything.cli import main
from metricanything.depth_io import read_image
from metricanything.models.pointmap import PointMapModel, save_official_checkpoint, tiny_random_pointmap
from metricanything.pointcloud import read_ply

MANIFEST = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "official_pointmap" / "full_manifest.json"


@pytest.fixture(scope="module")
def pointmap(tmp_path_factory) -> tuple[PointMapModel, Path]:
    model = tiny_random_pointmap(seed=3)
    path = tmp_path_factory.mktemp("pm") / "student_pointmap.pt"
    save_official_checkpoint(model, path)
    return model, path


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    rng = np.random.default_rng(7)
    path = tmp_path_factory.mktemp("img") / "photo.jpg"
    Image.fromarray(rng.integers(0, 256, (72, 104, 3), dtype=np.uint8)).save(path, quality=95)
    return path


def _run(*args: str) -> int:
    return main(["infer", *args, "--quiet"])


def test_checkpoint_is_official_format(pointmap) -> None:
    model, path = pointmap
    obj = torch.load(path, map_location="cpu", weights_only=True)  # plain data only
    assert sorted(obj) == ["model", "model_config"]
    assert set(obj["model"]) == set(model.state_dict())
    if MANIFEST.is_file():  # the tiny model's keys are released key names (fewer blocks, same layout)
        released = {e["key"] for e in json.loads(MANIFEST.read_text())["keys"]}
        assert set(obj["model"]) <= released


def test_infer_pointmap_writes_points_depth_mask_and_estimated_intrinsics(pointmap, photo, tmp_path) -> None:
    model, ckpt = pointmap
    out = tmp_path / "out"
    assert _run("-i", str(photo), "--model", str(ckpt), "--ply", "-o", str(out)) == 0
    folder = out / "photo"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["cloud.ply", "depth.npy", "depth.png", "depth_vis.png", "intrinsics.json", "valid.png"]
    meta = json.loads((folder / "intrinsics.json").read_text())
    assert meta["source"] == "estimated"
    assert meta["estimated_by"]["model"] == str(ckpt) and meta["estimated_by"]["kind"] == "pointmap"
    assert meta["intrinsics_origin"].startswith("point-map model")
    assert "fov_head_error_deg" not in meta  # no FoV head: no FoV-head error figure

    rgb = read_image(photo)
    image = torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float() / 255.0
    pred = model.infer(image, apply_mask=False)
    want_valid = (pred.mask & (pred.depth > 0)).numpy()
    depth = np.load(folder / "depth.npy")
    valid = np.asarray(Image.open(folder / "valid.png")) == 255
    assert depth.shape == rgb.shape[:2] and depth.dtype == np.float32
    assert valid.any() and np.array_equal(valid, want_valid)
    np.testing.assert_allclose(depth[valid], pred.depth.numpy()[valid], rtol=1e-5)
    assert np.all(depth[~valid] == 0)
    w = rgb.shape[1]
    np.testing.assert_allclose(meta["fx"], float(pred.intrinsics[0, 0]) * w, rtol=1e-6)
    assert meta["fy"] == pytest.approx(meta["fx"], rel=1e-5)

    points, colours = read_ply(folder / "cloud.ply")
    assert 0 < len(points) <= int(valid.sum()) and colours is not None
    z = depth[valid]
    assert z.min() - 1e-4 <= points[:, 2].min() and points[:, 2].max() <= z.max() + 1e-4


def test_given_focal_is_kept(pointmap, photo, tmp_path) -> None:
    _, ckpt = pointmap
    out = tmp_path / "out"
    assert _run("-i", str(photo), "--model", str(ckpt), "--fx", "90", "-o", str(out)) == 0
    meta = json.loads((out / "photo" / "intrinsics.json").read_text())
    assert meta["source"] == "given" and meta["fx"] == 90.0 and "estimated_by" not in meta


def test_kind_comes_from_the_keys_not_the_file_name(pointmap, photo, tmp_path) -> None:
    _, ckpt = pointmap
    disguised = tmp_path / "student_depthmap.pt"  # the depth student's released file name
    disguised.write_bytes(ckpt.read_bytes())
    out = tmp_path / "out"
    assert _run("-i", str(photo), "--model", str(disguised), "-o", str(out)) == 0
    meta = json.loads((out / "photo" / "intrinsics.json").read_text())
    assert meta["estimated_by"]["kind"] == "pointmap"
    folder = tmp_path / "hub_snapshot"  # a folder holding the released file, as the hub repository does
    folder.mkdir()
    (folder / "student_pointmap.pt").write_bytes(ckpt.read_bytes())
    assert _run("-i", str(photo), "--model", str(folder), "-o", str(tmp_path / "out2")) == 0


def test_prompt_is_refused_for_the_pointmap_student(pointmap, photo, tmp_path, capsys) -> None:
    _, ckpt = pointmap
    prompt = tmp_path / "p.npy"
    np.save(prompt, np.ones((72, 104), np.float32))
    code = _run("-i", str(photo), "--model", str(ckpt), "--prompt", str(prompt), "--fx", "90", "-o",
                str(tmp_path / "out"))
    assert code == 2
    assert "prompt-free pointmap" in capsys.readouterr().err


def test_pickled_code_in_a_pointmap_file_is_refused(pointmap, photo, tmp_path, capsys) -> None:
    model, _ = pointmap
    bad = tmp_path / "student_pointmap.pt"
    payload = {"model_config": model.cfg.to_dict(), "model": model.state_dict(),
               "extra": json.dumps}  # a function reference: not plain data
    torch.save(payload, bad)
    code = _run("-i", str(photo), "--model", str(bad), "-o", str(tmp_path / "out"))
    assert code == 2
    assert "refused to load" in capsys.readouterr().err
    assert not (tmp_path / "out" / "photo").exists()
