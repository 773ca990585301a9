"""Training data faults: bad samples are skipped, counted per source, logged with shard and key, replaced
deterministically (a SIGKILLed run resumes bit-identically past them); a truncated tar keeps its complete
samples; a source failing too often stops the run with an error naming it and the threshold option."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from metricanything.camera import Intrinsics
from metricanything.cli import main
from metricanything.data.sample import RGBDSample
from metricanything.data.shards import ShardIndex, ShardWriter
from metricanything.data.sources import SourceMixture
from metricanything.train.config import load_config
from metricanything.train.loop import list_checkpoints

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "teacher_test"
STEPS = 24
BAD_ITEMS = (3, 30)  # items of step 1 (before the checkpoint the kill waits for) and of step 15 (after it)


def sample(i: int) -> RGBDSample:
    """A cheap 64 x 48 LiDAR-like sample: smooth depth (sparse validity), random texture."""
    rng = np.random.default_rng(i)
    yy, xx = np.mgrid[0:48, 0:64]
    depth = (2.0 + 0.05 * yy + rng.uniform(0, 3) + 0.2 * np.sin(xx / 7.0 + i)).astype(np.float32)
    valid = rng.random((48, 64)) > 0.3
    depth[~valid] = 0
    image = np.clip(rng.normal(120, 40, (48, 64, 3)) + 2 * yy[..., None], 0, 255).astype(np.uint8)
    return RGBDSample(image, depth, valid, Intrinsics(60.0, 60.0, 31.5, 23.5, 64, 48), source_kind="captured",
                      sensor="lidar", dataset="unit", sample_id=f"u{i:04d}")


def _corrupt_depth(index: ShardIndex, k: int) -> str:
    """Overwrite sample k's depth.npy with garbage of the same size (the tar stays intact); returns shard:key."""
    si, key, members = index.entries[k]
    offset, size = members["depth.npy"]
    with open(index.shards[si], "r+b") as f:
        f.seek(offset)
        f.write(b"garbage!" * (size // 8) + b"!" * (size % 8))
    return index.where(k)


def make_corrupt_shards(root: Path, n: int = 200, per_shard: int = 20) -> tuple[list[str], str]:
    """``n`` samples in shards; the last shard cut in half; the samples drawn by :data:`BAD_ITEMS` corrupted
    (2 of 200 = 1 %). Returns the corrupted samples' ``shard:key`` and the truncated shard's path."""
    with ShardWriter(root, "shard", per_shard) as w:
        for i in range(n):
            w.write(sample(i))
    last = w.paths[-1]
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    index = ShardIndex(root)
    cfg = load_config(CONFIG, {"data.sources": [{"kind": "shards", "path": str(root)}]})
    mixture = SourceMixture(cfg.data.sources, cfg.seed)
    bad = [_corrupt_depth(index, mixture.locate(i)[1]) for i in BAD_ITEMS]
    return bad, str(last)


def _cmd(out: Path, shards: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "metricanything.cli", "pretrain", "--config", str(CONFIG), "--out", str(out),
        "--set", f"data.sources=[{{kind: shards, path: '{shards}'}}]", "--set", f"train.steps={STEPS}",
        "--set", "train.ckpt_every=4", "--set", "train.keep_last=2", "--set", "train.progress=false",
        "--set", "data.val_samples=2", "--verbose", *extra,
    ]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH")) if p)
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def _log(run: Path, kind: str) -> list[dict]:
    return [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if r["kind"] == kind]


@pytest.mark.slow
def test_corrupt_and_truncated_shards_train_through_and_resume_bit_identically(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    bad, truncated = make_corrupt_shards(shards)

    full = tmp_path / "full"
    done = subprocess.run(_cmd(full, shards), env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((full / "summary.json").read_text())
    assert summary["step"] == STEPS
    data = summary["data"]
    assert data["bad"] == 2 and data["draws"] == STEPS * 2 + 2  # every item drawn once, plus one redraw per bad sample
    assert data["sources"][0]["bad"] == 2 and data["sources"][0]["name"] == f"shards:{shards}"
    assert len(data["notes"]) == 1 and truncated in data["notes"][0] and "complete sample(s)" in data["notes"][0]
    faults = _log(full, "data_fault")
    assert [f["where"] for f in faults] == bad and [f["step"] for f in faults] == [2, 16]
    assert all("depth.npy" in f["error"] for f in faults)
    assert _log(full, "data")[-1]["bad"] == 2 and len(_log(full, "data_note")) == 1
    assert done.stdout.count(truncated) == 1  # said once
    assert "2 of 50 drawn samples failed to decode and were replaced" in done.stdout

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(killed, shards), env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen, deadline = [], time.monotonic() + 300
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
    assert json.loads((killed / "model" / "training_state.json").read_text())["final"] is False  # refreshed, not final
    assert max(s for s, _ in list_checkpoints(killed)) < 16  # the second bad sample is still ahead

    again = subprocess.run(_cmd(killed, shards, "--resume"), env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    resumed = json.loads((killed / "summary.json").read_text())
    assert resumed["resumed_from"] in (8, 4) and resumed["data"] == data  # counts carried over the kill
    assert _log(killed, "data_fault") == faults and len(_log(killed, "data_note")) == 1

    from safetensors.torch import load_file

    a, b = load_file(str(full / "model" / "model.safetensors")), load_file(str(killed / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_source_failing_too_often_stops_the_run_naming_it(tmp_path: Path, capsys) -> None:
    with ShardWriter(tmp_path / "s", "shard", 10) as w:
        for i in range(30):
            w.write(sample(i))
    index = ShardIndex(tmp_path / "s")
    for k in range(0, 30, 3):  # a third of the samples
        _corrupt_depth(index, k)
    rc = main([
        "pretrain", "--config", str(CONFIG), "--out", str(tmp_path / "run"), "--set", "train.steps=20",
        "--set", f"data.sources=[{{kind: shards, path: '{tmp_path / 's'}', max_bad_fraction: 0.1, min_draws: 12}}]",
        "--set", "data.num_workers=2",  # counts travel with the items from the loader's worker processes
    ])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"data source 0 (shards:{tmp_path / 's'})" in err and "data.sources.0.max_bad_fraction=0.1" in err
    assert "failed to decode" in err and "depth.npy" in err
    model = tmp_path / "run" / "model"  # only the refresh of a checkpoint before the stop, never a final model
    assert not model.exists() or json.loads((model / "training_state.json").read_text())["final"] is False
    fault_steps = [r["step"] for r in _log(tmp_path / "run", "data_fault")]
    assert fault_steps and max(fault_steps) < 20


def test_a_corrupt_folder_sample_is_replaced_deterministically(tmp_path: Path) -> None:
    from metricanything.data.folder import write_sample
    from metricanything.train.config import SourceConfig

    for i in range(4):
        write_sample(tmp_path / "f", sample(i))
    (tmp_path / "f" / "u0002" / "depth.npy").write_bytes(b"not an array")
    mix = SourceMixture([SourceConfig(kind="folder", path=str(tmp_path / "f"))], seed=3)
    hits = [i for i in range(40) if mix.locate(i)[1] == 2]
    assert hits
    draw = mix.get(hits[0])
    assert draw.sample.sample_id != "u0002" and len(draw.faults) >= 1
    assert draw.faults[0].where == str(tmp_path / "f" / "u0002") and "depth.npy" in draw.faults[0].error
    again = mix.get(hits[0])
    assert again.sample.sample_id == draw.sample.sample_id and again.faults == draw.faults
    assert mix.get(hits[0] + 1000).faults == [] or mix.locate(hits[0] + 1000)[1] == 2
    for name in ("u0000", "u0001", "u0002", "u0003"):
        (tmp_path / "f" / name / "depth.npy").write_bytes(b"bad")
    with pytest.raises(Exception, match="16 draws in a row failed to decode"):
        mix.get(0)


@pytest.mark.slow
def test_ddp_counts_and_names_bad_samples_of_every_rank(tmp_path: Path) -> None:
    """torchrun, 2 ranks (gloo): the sample of item 3 (rank 1, step 0) is bad; it is also item 1's (rank 0): rank 0
    logs both skips, the counts are summed over the ranks, and the ranks stay identical."""
    with ShardWriter(tmp_path / "s", "shard", 10) as w:
        for i in range(40):
            w.write(sample(i))
    cfg = load_config(CONFIG, {"data.sources": [{"kind": "shards", "path": str(tmp_path / "s")}]})
    mixture = SourceMixture(cfg.data.sources, cfg.seed)
    k = mixture.locate(3)[1]
    assert [i for i in range(12) if mixture.locate(i)[1] == k] == [1, 3]  # items of rank 0 and of rank 1
    bad = _corrupt_depth(ShardIndex(tmp_path / "s"), k)
    env = _env()
    for k in ("LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *_cmd(tmp_path / "run", tmp_path / "s")[1:],
           "--set", "train.steps=3", "--set", "train.dump_rank_weights=true"]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["data"]["bad"] == 2 and summary["data"]["draws"] == 3 * 4 + 2
    assert [(f["step"], f["where"]) for f in _log(tmp_path / "run", "data_fault")] == [(1, bad), (1, bad)]
    w0, w1 = (torch.load(tmp_path / "run" / f"rank{r}_weights.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
