"""torchrun --nproc_per_node=2 (gloo, CPU): a few steps of pretrain and of distill; both ranks end identical."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _torchrun(subcommand: str, config: str, out: Path, *extra: str) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "metricanything.cli", subcommand, "--config", config, "--out", str(out),
        "--set", "train.dump_rank_weights=true", "--set", "train.steps=3", "--set", "train.ckpt_every=3",
        "--set", "data.val_samples=2", *extra,
    ]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, f"torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def _check_ranks_identical_and_trained(out: Path, init_keys_prefix: str) -> None:
    w0 = torch.load(out / "rank0_weights.pt", weights_only=True)
    w1 = torch.load(out / "rank1_weights.pt", weights_only=True)
    assert w0.keys() == w1.keys() and len(w0) > 10
    for k in w0:
        assert torch.equal(w0[k], w1[k]), f"ranks disagree on {k}"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["step"] == 3
    assert summary["samples_per_step"] == 2 * 2  # batch 2 per rank x 2 ranks
    assert any(k.startswith(init_keys_prefix) for k in w0)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any(r["kind"] == "train" and r["step"] == 3 for r in log)


@pytest.mark.slow
def test_ddp_pretrain_and_distill_keep_ranks_identical(tmp_path: Path) -> None:
    teacher = tmp_path / "teacher"
    _torchrun("pretrain", "teacher_test", teacher)
    _check_ranks_identical_and_trained(teacher, "encoder.")
    assert (teacher / "model" / "model.safetensors").is_file()

    student = tmp_path / "student"
    log = _torchrun("distill", "student_test", student, "--teacher", str(teacher / "model"))
    # same ViT config: the whole teacher encoder initialises the student's
    assert "76 of 76 tensors copied" in log
    _check_ranks_identical_and_trained(student, "student.encoder.")
    assert (student / "model" / "config.json").is_file()
