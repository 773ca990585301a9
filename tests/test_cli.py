"""The installed ``metricanything`` console script and the smoke subcommand."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from metricanything import depth_io, pointcloud
from metricanything.cli import SUBCOMMANDS, main


def _console_script() -> str:
    candidate = Path(sys.executable).parent / "metricanything"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("metricanything")
    if found is None:
        pytest.skip("the metricanything console script is not installed next to this Python")
    return found


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([_console_script(), *args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd)


def test_console_script_help_lists_every_subcommand() -> None:
    res = _run("--help")
    assert res.returncode == 0, res.stderr
    assert "usage: metricanything" in res.stdout
    for name in SUBCOMMANDS:
        assert name in res.stdout
    version = _run("--version")
    assert version.returncode == 0 and "metricanything" in version.stdout


def test_unknown_subcommand_fails_clearly() -> None:
    res = _run("no-such-command")
    assert res.returncode != 0 and "unknown command 'no-such-command'" in res.stderr


def test_smoke_console_script_exits_zero(tmp_path: Path) -> None:
    res = _run("smoke", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SMOKE JOB" in res.stdout and "smoke PASSED" in res.stdout and "FAIL" not in res.stdout.replace("FAILED", "")
    assert not list(tmp_path.iterdir())  # without --out nothing is left behind
    helped = _run("smoke", "--help")
    assert helped.returncode == 0 and "--out" in helped.stdout


def test_smoke_writes_readable_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["smoke", "--out", str(tmp_path / "s"), "--width", "40", "--height", "30"]) == 0
    out = capsys.readouterr().out
    assert "[ok] z-buffer splat" in out and "[ok] PLY" in out
    npz_depth, npz_valid = depth_io.read_depth(tmp_path / "s" / "depth.npz")
    png_depth, png_valid = depth_io.read_depth(tmp_path / "s" / "depth_mm.png")
    assert npz_depth.shape == (30, 40) and np.array_equal(npz_valid, png_valid)
    assert np.abs(png_depth - npz_depth)[npz_valid].max() <= 0.0005 + 1e-6
    pts, colors = pointcloud.read_ply(tmp_path / "s" / "cloud.ply")
    assert len(pts) > 0.8 * npz_valid.sum() and colors is not None
    assert (pts[:, 2] >= npz_depth[npz_valid].min() - 1e-6).all()
    K = depth_io.read_intrinsics_json(tmp_path / "s" / "intrinsics.json")
    assert K.size == (40, 30) and K.fov_x == pytest.approx(60.0)
