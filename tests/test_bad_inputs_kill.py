"""SIGKILL during ``infer``, ``pack``, ``pseudo-label`` and ``pretrain``: nothing half-written is visible, a rerun
completes and removes the killed run's hidden temporaries; and a piped ``pretrain`` log stays short."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metricanything.atomic import is_temp_name

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1",
               PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))  # fmt: skip
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(key, None)
    return env


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "metricanything.cli", *map(str, args)]


def _kill_when(cmd: list[str], ready: Callable[[], bool], timeout: float = 240.0) -> None:
    """Start ``cmd``, SIGKILL it as soon as ``ready()`` holds (it must still be running then)."""
    proc = subprocess.Popen(cmd, env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, "finished before it could be killed: " + proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "not ready in time"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()


def _visible(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if not any(is_temp_name(part) for part in p.relative_to(folder).parts)]


def _temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if is_temp_name(p.name)]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    from metricanything.models.checkpoint import save_pretrained
    from metricanything.models.teacher import Teacher, teacher_config

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("kill") / "teacher"
    save_pretrained(Teacher(teacher_config("test")), out)
    return out


def test_sigkill_during_infer(tmp_path, teacher):
    inp = tmp_path / "in"
    inp.mkdir()
    rng = np.random.default_rng(0)
    for k in range(300):
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(inp / f"im{k:03d}.png")
    out = tmp_path / "out"
    cmd = _cli("infer", "-i", inp, "-o", out, "--model", teacher, "--fx", "30", "--ply")
    _kill_when(cmd, lambda: out.is_dir() and sum(1 for p in out.iterdir() if not is_temp_name(p.name)) >= 3)
    complete = {"depth.npy", "depth.png", "valid.png", "depth_vis.png", "intrinsics.json", "cloud.ply"}
    folders = [p for p in out.iterdir() if not is_temp_name(p.name)]
    assert 3 <= len(folders) < 300
    for folder in folders:  # every visible folder is complete and readable
        assert {p.name for p in folder.iterdir()} == complete, folder
        assert np.load(folder / "depth.npy").shape == (24, 32)
        json.loads((folder / "intrinsics.json").read_text())
    proc = subprocess.run(cmd, env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(list(out.iterdir())) == 300 and not _temps(out)


def _render(out: Path, n: int) -> None:
    from metricanything.data.folder import write_index, write_sample
    from metricanything.data.render import render_sample

    ids = []
    for i in range(n):
        s = render_sample(i, size=(32, 24))
        write_sample(out, s)
        ids.append(s.sample_id)
    write_index(out, ids)


def test_sigkill_during_pack(tmp_path):
    from metricanything.data.shards import ShardIndex

    data = tmp_path / "data"
    _render(data, 150)
    shards = tmp_path / "shards"
    cmd = _cli("pack", data, "--out", shards, "--shard-size", "1", "--overwrite")
    _kill_when(cmd, lambda: shards.is_dir() and len(list(shards.glob("shard-*.tar"))) >= 5)
    tars = sorted(shards.glob("shard-*.tar"))
    assert 5 <= len(tars) < 150 and not (shards / "shard-index.json").exists()
    for tar in tars:  # every visible shard is complete
        assert len(ShardIndex(tar)) == 1
    proc = subprocess.run(cmd, env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(ShardIndex(shards)) == 150 and not _temps(shards)


def test_sigkill_during_pseudo_label(tmp_path, teacher):
    from metricanything.data.shards import ShardIndex

    out = tmp_path / "pl"
    cmd = _cli("pseudo-label", "--teacher", teacher, "--data", "render:400:0:32x24", "--out", out, "--shard-size", "2",
               "--no-tta", "--device", "cpu")  # fmt: skip
    _kill_when(cmd, lambda: out.is_dir() and len(list(out.glob("*.tar"))) >= 3)
    tars = sorted(out.glob("*.tar"))
    assert tars and not (out / "manifest.json").exists()
    for tar in tars:
        assert len(ShardIndex(tar)) == 2
    proc = subprocess.run(cmd, env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_samples"] == 400 and not _temps(out)


def test_sigkill_during_pretrain_leaves_a_model_eval_can_read(tmp_path):
    from metricanything.api import load_model

    run = tmp_path / "run"
    cmd = _cli("pretrain", "--config", "teacher_test", "--out", run, "--set", "train.steps=400", "--set",
               "train.ckpt_every=3", "--set", "data.val_samples=1")  # fmt: skip
    _kill_when(cmd, lambda: (run / "model" / "training_state.json").is_file()
               and json.loads((run / "model" / "training_state.json").read_text())["step"] >= 6)  # fmt: skip
    state = json.loads((run / "model" / "training_state.json").read_text())
    assert state["final"] is False and 6 <= state["step"] < 400
    assert load_model(run / "model") is not None  # a complete, self-describing model of the last checkpoint
    for p in _visible(run / "checkpoints"):
        assert p.name.startswith("step_") and p.suffix == ".pt"
    proc = subprocess.run([*cmd, "--resume", "--set", "train.steps=12"], env=_env(), cwd=ROOT, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((run / "model" / "training_state.json").read_text())["final"] is True
    assert not _temps(run) and not _temps(run / "checkpoints")


def test_piped_pretrain_log_is_short_plain_lines(tmp_path):
    """``pretrain ... | cat`` for 200 steps: at most 40 progress lines, each with the loss, no carriage returns."""
    cmd = " ".join(_cli("pretrain", "--config", "teacher_test", "--out", tmp_path / "run", "--set", "train.steps=200",
                        "--set", "train.ckpt_every=50", "--set", "train.progress=false", "--set",
                        "data.val_samples=1")) + " 2>&1 | cat"  # fmt: skip
    proc = subprocess.run(cmd, shell=True, env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    progress = [line for line in lines if line.startswith("pretrain ")]
    assert 10 <= len(progress) <= 40, proc.stdout
    assert all("loss" in line and "step/s" in line for line in progress)
    assert progress[-1].startswith("pretrain 200/200")
    assert "\r" not in proc.stdout and len(lines) <= 60, proc.stdout
