"""SIGKILL a training run after a checkpoint, resume it, and get the uninterrupted run's weights bit for bit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from metricanything.train.checkpointing import (
    capture_rng_state,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from metricanything.train.loop import lr_factor

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "teacher_test"  # a shipped preset
STEPS = 24


def _cmd(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "metricanything.cli", "pretrain", "--config", str(CONFIG), "--out", str(out),
        "--set", f"train.steps={STEPS}", "--set", "train.ckpt_every=4", "--set", "train.keep_last=2",
        "--set", "train.progress=false", "--verbose", "--set", "data.val_samples=2", *extra,
    ]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def _final_weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "model" / "model.safetensors"))


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    full = tmp_path / "full"
    subprocess.run(_cmd(full), check=True, env=_env(), cwd=ROOT, capture_output=True, timeout=300)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(killed), env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    deadline = time.monotonic() + 240
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if "checkpoint saved: step 8" in line:
            break
        assert time.monotonic() < deadline, "no checkpoint within the time limit:\n" + "".join(seen)
    assert proc.poll() is None, "the run finished before it could be killed:\n" + "".join(seen)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    steps_saved = [s for s, _ in list_checkpoints(killed)]
    assert steps_saved and max(steps_saved) < STEPS
    # the killed run has a complete model of its last checkpoint (refreshed at every checkpoint), marked not final
    state = json.loads((killed / "model" / "training_state.json").read_text())
    assert state["final"] is False and state["step"] in steps_saved
    from metricanything.api import load_model

    assert load_model(killed / "model") is not None

    subprocess.run(_cmd(killed, "--resume"), check=True, env=_env(), cwd=ROOT, capture_output=True, timeout=300)
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["resumed_from"] in steps_saved and summary["step"] == STEPS

    a, b = _final_weights(full), _final_weights(killed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    # the optimiser state matches too
    sa, sb = load_checkpoint(latest_checkpoint(full)), load_checkpoint(latest_checkpoint(killed))
    assert sa["step"] == sb["step"] == STEPS
    for pid, st in sa["optimizer"]["state"].items():
        assert torch.equal(st["exp_avg_sq"], sb["optimizer"]["state"][pid]["exp_avg_sq"])
    assert len(list_checkpoints(killed)) == 2  # keep_last
    # the JSON-lines log of the resumed run has each logged step once (records after the checkpoint are redone)
    log = [json.loads(line) for line in (killed / "log.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in log if r["kind"] == "train"]
    assert train_steps == sorted(set(train_steps)) and train_steps[-1] == STEPS


def test_checkpoints_are_atomic_and_pruned(tmp_path: Path) -> None:
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, {"model": {"w": torch.full((2,), float(step))}}, keep_last=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [3, 4]
    assert not list((tmp_path / "checkpoints").glob(".*tmp*")), "temporary files left behind"
    state = load_checkpoint(latest_checkpoint(tmp_path))
    assert state["step"] == 4 and torch.equal(state["model"]["w"], torch.full((2,), 4.0))
    # a stray half-written temporary (a killed writer) is never listed as a checkpoint
    (tmp_path / "checkpoints" / ".step_00000009.pt.abc.tmp.pt").write_bytes(b"garbage")
    assert latest_checkpoint(tmp_path).name == "step_00000004.pt"


def test_rng_state_is_plain_data_and_restores_exactly(tmp_path: Path) -> None:
    import random

    import numpy as np

    random.random()
    np.random.standard_normal()  # leaves a cached Gaussian in numpy's legacy state
    state = capture_rng_state()
    first = (random.random(), random.gauss(0, 1), np.random.standard_normal(4), np.random.randint(0, 1 << 30),
             torch.rand(3))  # fmt: skip
    path = save_checkpoint(tmp_path, 1, {"rng": [state]})
    torch.load(path, weights_only=True)  # plain data: loads without unpickling any object
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    restore_rng_state(load_checkpoint(path)["rng"][0])
    again = (random.random(), random.gauss(0, 1), np.random.standard_normal(4), np.random.randint(0, 1 << 30),
             torch.rand(3))  # fmt: skip
    assert first[:2] == again[:2] and first[3] == again[3]
    assert np.array_equal(first[2], again[2]) and torch.equal(first[4], again[4])


def test_lr_schedule_warmup_then_cosine() -> None:
    assert lr_factor(0, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, 0.1) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, 0.1) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, 0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(100, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(0, 10, 0, 0.0) == pytest.approx(1.0)
