"""``metricanything pack``: folder datasets and LOADER:ROOT sources into shards, with clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from metricanything.camera import Intrinsics
from metricanything.cli import main
from metricanything.data.folder import write_sample
from metricanything.data.loaders import loader_names
from metricanything.data.sample import RGBDSample
from metricanything.data.shards import ShardIndex


def sample(i: int) -> RGBDSample:
    rng = np.random.default_rng(i)
    depth = rng.uniform(1, 5, (6, 8)).astype(np.float32)
    return RGBDSample(
        rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), depth, np.ones((6, 8), bool),
        Intrinsics(9.0, 9.0, 3.5, 2.5, 8, 6), dataset="mine", sample_id=f"m{i}",
    )


def diode_root(root: Path) -> Path:
    scan = root / "val/indoors/scene_00001/scan_00001"
    scan.mkdir(parents=True)
    import cv2

    cv2.imwrite(str(scan / "a.png"), np.full((6, 8, 3), 100, np.uint8))
    np.save(scan / "a_depth.npy", np.full((6, 8, 1), 2.5, np.float32))
    np.save(scan / "a_depth_mask.npy", np.ones((6, 8), np.float32))
    return root


def test_pack_folder_and_loader_sources(tmp_path: Path, capsys) -> None:
    for i in range(3):
        write_sample(tmp_path / "folder", sample(i))
    droot = diode_root(tmp_path / "diode")
    out = tmp_path / "shards"
    rc = main(["pack", str(tmp_path / "folder"), f"diode@val:{droot}", "--out", str(out), "--shard-size", "2", "--no-progress"])
    assert rc == 0
    assert "wrote 4 samples in 2 shard(s)" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.tar")) == ["shard-000000.tar", "shard-000001.tar"]
    got = {s.sample_id: s for s in ShardIndex(out)}
    assert sorted(got) == ["a", "m0", "m1", "m2"]
    assert got["a"].dataset == "diode" and float(got["a"].depth[0, 0]) == 2.5
    assert np.array_equal(got["m1"].depth, sample(1).depth)
    # a second run into the same folder needs --overwrite; stale shards of the larger run are removed
    assert main(["pack", str(tmp_path / "folder"), "--out", str(out), "--no-progress"]) == 2
    assert main(["pack", str(tmp_path / "folder"), "--out", str(out), "--no-progress", "--overwrite"]) == 0
    assert sorted(p.name for p in out.glob("*.tar")) == ["shard-000000.tar"]
    assert len(ShardIndex(out)) == 3


@pytest.mark.parametrize(
    "src, message",
    [("{tmp}/missing", "missing: source does not exist"), ("nope:{tmp}", "unknown dataset loader 'nope'"),
     ("kitti:{tmp}/none", "none: kitti root does not exist"), ("{tmp}", "not a folder dataset")],
)
def test_pack_errors_name_the_source(tmp_path: Path, capsys, src: str, message: str) -> None:
    rc = main(["pack", src.format(tmp=tmp_path), "--out", str(tmp_path / "o"), "--no-progress"])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not list((tmp_path / "o").glob("*.tar")) if (tmp_path / "o").exists() else True


def test_pack_rejects_bad_shard_size(tmp_path: Path, capsys) -> None:
    write_sample(tmp_path / "f", sample(0))
    assert main(["pack", str(tmp_path / "f"), "--out", str(tmp_path / "o"), "--shard-size", "0"]) == 2
    assert "--shard-size" in capsys.readouterr().err


def test_pack_help_lists_the_registered_loaders(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["pack", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(loaders: {', '.join(loader_names())})" in text
    assert "kitti" in loader_names() and "nuscenes" in loader_names()
