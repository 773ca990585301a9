"""``metricanything render``: deterministic bytes, every source kind, readable folder dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from metricanything.cli import main


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple[Path, Path]:
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    for out in (a, b):
        rc = main(["render", "--out", str(out), "--num", "12", "--seed", "0", "--size", "48x36", "--no-progress"])
        assert rc == 0
    return a, b


def test_same_seed_gives_byte_identical_output(rendered):
    a, b = rendered
    ta, tb = _tree(a), _tree(b)
    assert len(ta) == 12 * 4 + 1  # image, depth, mask, meta per sample + index.json
    assert ta == tb


def test_every_source_kind_is_present_and_readable(rendered):
    from metricanything.data.folder import FolderDataset

    ds = FolderDataset(rendered[0])
    assert len(ds) == 12
    samples = list(ds)
    sensors = {s.sensor for s in samples}
    assert sensors == {"synthetic", "lidar", "tof", "stereo", "sfm", "mvs"}
    assert {s.source_kind for s in samples} == {"rendered", "captured", "reconstructed"}
    for s in samples:
        assert (s.width, s.height) == (48, 36) and s.intrinsics.size == (48, 36)
        assert s.dataset == "metricanything-render" and s.pose is not None
        assert s.metric_scale_trusted == (s.sensor not in ("sfm", "mvs"))
        if not s.metric_scale_trusted:
            assert 0.2 <= s.meta["true_scale"] <= 5.0 and 0 <= s.meta["outlier_fraction"] < 0.2
        assert s.meta["sim"]["sensor"] == s.sensor
    exact = [s for s in samples if s.sensor == "synthetic"]
    assert all(s.valid.mean() > 0.5 for s in exact)
    assert len({s.intrinsics for s in samples}) == 12  # a different camera model for every sample


def test_different_seed_and_source_subset(tmp_path):
    rc = main(["render", "--out", str(tmp_path), "--num", "3", "--seed", "5", "--size", "32x24",
               "--sources", "lidar,sfm", "--no-progress"])
    assert rc == 0
    metas = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*/meta.json"))]
    assert [m["sensor"] for m in metas] == ["lidar", "sfm", "lidar"]
    img = np.load(tmp_path / "000000-lidar" / "depth.npy")
    assert img.dtype == np.float32 and img.shape == (24, 32)


def test_fov_range_for_a_camera_rig(tmp_path):
    from metricanything.data.folder import FolderDataset

    rc = main(["render", "--out", str(tmp_path), "--num", "3", "--size", "32x24", "--sources", "rendered",
               "--fov-deg", "58", "62", "--no-progress"])
    assert rc == 0
    for s in FolderDataset(tmp_path):
        assert 58 - 1e-4 <= s.intrinsics.fov_x <= 62 + 1e-4


@pytest.mark.parametrize("args", [["--size", "48by36"], ["--num", "0"], ["--sources", "lidar,sonar"], ["--seed", "-3"],
                                  ["--fov-deg", "70", "50"]])
def test_bad_arguments_exit_with_code_2(tmp_path, args, capsys):
    rc = main(["render", "--out", str(tmp_path / "x"), "--num", "2", "--no-progress", *args])
    assert rc == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.slow
def test_parallel_workers_write_the_same_bytes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    common = ["--num", "4", "--seed", "3", "--size", "32x24", "--no-progress"]
    assert main(["render", "--out", str(a), *common]) == 0
    assert main(["render", "--out", str(b), "--workers", "2", *common]) == 0
    assert _tree(a) == _tree(b)
