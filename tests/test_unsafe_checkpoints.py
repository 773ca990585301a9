"""Nothing ever unpickles code: crafted ``step_*.pt`` files are refused, before their payload runs, by
``pretrain --resume``, ``distill --resume``, ``eval --model`` and ``load_model``, with a message naming the file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from metricanything.api import load_model
from metricanything.cli import main
from metricanything.errors import CheckpointError
from metricanything.models.checkpoint import from_pretrained, save_pretrained
from metricanything.train.checkpointing import FORMAT_VERSION, load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: it creates the marker file (a harmless stand-in for code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _craft(path: Path, marker: Path) -> Path:
    """A file that looks like a training checkpoint, with the payload hidden in its RNG entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"format_version": FORMAT_VERSION, "step": 8, "model": {"w": torch.zeros(2)}, "optimizer": {},
         "rng": [_Payload(marker)]},  # fmt: skip
        path,
    )
    return path


def test_the_crafted_file_really_runs_code_when_unpickled(tmp_path: Path) -> None:
    """Sanity check of the fixture: unsafe unpickling (what `pretrain --resume` used to do) runs the payload."""
    marker = tmp_path / "ran"
    path = _craft(tmp_path / "step_00000008.pt", marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_load_checkpoint_refuses_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = _craft(tmp_path / "run" / "checkpoints" / "step_00000008.pt", marker)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: refused to load this training checkpoint")
    assert "references io.open" in msg and "could run arbitrary code" in msg
    assert "weights_only=False" not in msg  # never advise the unsafe way
    assert not marker.exists()


def test_old_format_with_numpy_state_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints" / "step_00000004.pt"
    path.parent.mkdir()
    torch.save({"format_version": 1, "step": 4, "rng": [{"numpy": np.random.get_state()}]}, path)
    with pytest.raises(CheckpointError, match=r"refused to load this training checkpoint.*numpy.*without --resume"):
        load_checkpoint(path)


def test_plain_checkpoint_round_trips_and_wrong_format_is_named(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, 3, {"model": {"w": torch.ones(2)}, "config_json": "{}"})
    assert load_checkpoint(path)["step"] == 3
    torch.save({"format_version": 99, "step": 1}, path)
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(path))}: not a metricanything training checkpoint of format 2 \(found format 99\)"):
        load_checkpoint(path)


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT / "src"))
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


@pytest.mark.parametrize(
    ("command", "config"), [("pretrain", "teacher_test"), ("distill", "student_test")]
)
def test_resume_refuses_a_crafted_checkpoint(tmp_path: Path, command: str, config: str) -> None:
    run = tmp_path / "run"
    marker = tmp_path / "ran"
    crafted = _craft(run / "checkpoints" / "step_00000008.pt", marker)
    proc = subprocess.run(
        [sys.executable, "-m", "metricanything.cli", command, "--config", config, "--out",
         str(run), "--set", "train.progress=false", "--resume"],  # fmt: skip
        env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"metricanything {command}: error: {crafted}: refused to load this training checkpoint" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists()
    assert crafted.exists() and not (run / "model").exists()  # nothing trained, nothing deleted


def test_eval_and_load_model_refuse_a_crafted_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    marker = tmp_path / "ran"
    crafted = _craft(tmp_path / "runs" / "x" / "checkpoints" / "step_00000008.pt", marker)
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(crafted))}: refused to load this model file.*<run>/model"):
        load_model(crafted)
    with pytest.raises(CheckpointError, match="refused"):
        from_pretrained(crafted, official_preset="fixture_tiny")
    code = main(["eval", "--model", str(crafted), "--benchmark", "synthetic_indoor", "--limit", "1", "--quiet",
                 "--out", str(tmp_path / "eval")])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert f"metricanything eval: error: {crafted}: refused to load this model file" in err
    assert "weights_only=False" not in err
    assert not marker.exists()


def test_a_real_training_checkpoint_is_not_a_model(tmp_path: Path) -> None:
    """An intermediate `runs/x/checkpoints/step_*.pt` given as a model points to the run's exported model."""
    from metricanything.models.teacher import Teacher, teacher_config

    teacher = Teacher(teacher_config("test"))
    run = tmp_path / "runs" / "x"
    path = save_checkpoint(run, 8, {"model": teacher.state_dict(), "optimizer": {"state": {}, "param_groups": []}})
    with pytest.raises(CheckpointError, match=rf"{re.escape(str(path))}: this is a training checkpoint \(step 8.*<run>/model"):
        load_model(path)
    save_pretrained(teacher, run / "model")
    with pytest.raises(CheckpointError, match=rf"load the run's exported model folder {re.escape(str(run / 'model'))}$"):
        load_model(path)
