"""``benchmarks/paper_claims.py``: the table / monotone logic on hand-made numbers, and a ``--quick`` run on a
tiny generated frames folder (no ``../shared`` needed)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from metricanything.camera import Intrinsics
from metricanything.data.folder import write_sample
from metricanything.data.sample import RGBDSample

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
try:
    import paper_claims
finally:
    sys.path.pop(0)


def _row(samples: int, abs_rel: float, ratio: float) -> dict:
    return {"samples": samples, "steps": samples // 8, "batch": 8, "teacher_abs_rel": abs_rel, "linear_abs_rel": 0.05,
            "geomean_ratio": ratio, "frames_worse": 1, "frames": 3, "train_seconds": 1.0, "eval_seconds": 2.0}


def test_strictly_decreasing():
    assert paper_claims.strictly_decreasing([0.3, 0.2, 0.1])
    assert not paper_claims.strictly_decreasing([0.3, 0.3, 0.1])  # a tie is not a fall
    assert not paper_claims.strictly_decreasing([0.3, 0.1, 0.2])
    assert not paper_claims.strictly_decreasing([0.3])  # one size shows no trend


def test_scaling_summary_sorts_by_size_and_table_prints_the_verdict():
    rows = [_row(320, 0.08, 1.2), _row(80, 0.10, 1.1), _row(1280, 0.07, 1.3)]  # unsorted on purpose
    flags = paper_claims.scaling_summary(rows)
    assert flags == {"monotone": True, "monotone_geomean_ratio": False}
    assert not paper_claims.scaling_summary([_row(80, 0.07, 1.0), _row(320, 0.08, 0.9)])["monotone"]
    part = {"config": "teacher_bundled", "density": 0.01, "frames": 3, "rows": sorted(rows, key=lambda r: r["samples"]),
            **flags}
    text = paper_claims.scaling_table(part)
    assert "samples seen = steps x batch" in text
    assert "| 1280 | 160 | 8 | 0.07000 | 0.05000 | 1.300 | 1/3 |" in text
    assert "strictly falls with every larger data size: True" in text
    assert "geomean teacher/linear strictly falls: False" in text


def test_training_overrides():
    plan = paper_claims.Plan()
    ov = paper_claims.training_overrides(plan, 8, 50, Path("runs/x"), 80)
    assert ov["train.steps"] == 10 and ov["train.batch_size"] == 8 and ov["optim.warmup_steps"] == 2
    assert paper_claims.training_overrides(plan, 8, 50, Path("runs/x"), 5120)["optim.warmup_steps"] == 50
    assert ov["data.sources"][0]["kind"] == "render" and ov["data.sources"][0]["sources"] == paper_claims.CORPUS_KINDS
    with pytest.raises(ValueError, match="multiple of the batch size"):
        paper_claims.training_overrides(plan, 8, 50, Path("runs/x"), 84)
    argv = paper_claims.pretrain_argv("teacher_bundled", {"train.steps": 10, "loss.trim": 0.0})
    assert argv == ["pretrain", "--config", "teacher_bundled", "--set", "train.steps=10", "--set", "loss.trim=0.0"]


def _frame(sid: str, seed: int, w: int = 160, h: int = 120) -> RGBDSample:
    rng = np.random.default_rng(seed)
    vv, uu = np.mgrid[0:h, 0:w]
    depth = (1.5 + 0.02 * uu + 0.01 * vv + rng.uniform(0, 0.2, (h, w))).astype(np.float32)
    valid = rng.random((h, w)) >= 0.2
    image = np.clip(np.stack([uu, vv, uu + vv], -1) + rng.integers(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)
    return RGBDSample(image, np.where(valid, depth, 0).astype(np.float32), valid, Intrinsics(140.0, 140.0, w / 2, h / 2, w, h),
                      sample_id=sid, dataset="tiny")


def test_quick_run_on_generated_frames(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root = tmp_path / "frames"
    for i, sid in enumerate(["f0", "f1"]):
        write_sample(root, _frame(sid, i))
    out = tmp_path / "out"
    assert paper_claims.main(["--quick", "--frames-root", str(root), "--out", str(out)]) == 0
    data = json.loads((out / "paper_claims.json").read_text())
    assert (out / "paper_claims.png").stat().st_size > 10_000
    assert {"scaling", "robust", "sparsity"} <= set(data)
    for part in ("scaling", "robust", "sparsity"):
        for row in data[part]["rows"]:
            for key in ("teacher_abs_rel", "linear_abs_rel", "geomean_ratio"):
                assert math.isfinite(row[key]) and row[key] >= 0, (part, key, row)
    rows = data["scaling"]["rows"]
    assert [r["samples"] for r in rows] == list(paper_claims.QUICK.sizes) and len(rows) >= 3
    assert all(r["command"].startswith("metricanything pretrain --config teacher_bundled --set") for r in rows)
    abs_rel = [r["teacher_abs_rel"] for r in rows]
    assert isinstance(data["scaling"]["monotone"], bool)
    assert data["scaling"]["monotone"] == all(b < a for a, b in zip(abs_rel, abs_rel[1:], strict=False))
    robust = {r["name"]: r for r in data["robust"]["rows"]}
    assert robust["trimmed MAE"]["trim"] == 0.2 and robust["plain MAE"]["trim"] == 0.0
    assert "data.label_outlier_sources=[stereo]" in robust["plain MAE"]["command"]
    assert data["robust"]["trimmed_beats_plain"] == (robust["trimmed MAE"]["teacher_abs_rel"]
                                                      < robust["plain MAE"]["teacher_abs_rel"])
    sparsity = data["sparsity"]["rows"]
    assert [r["density"] for r in sparsity] == list(paper_claims.DENSITIES)
    assert [round(r["prompt_points_mean"]) for r in sparsity] == [1, 19, 192, 1920]  # int(F * 160 * 120)
    assert data["sparsity"]["frame_ids"] == ["f0", "f1"]
    text = capsys.readouterr().out
    assert "QUICK" in text and "Prompt sparsity" in text and "Robust MAE" in text
    # --keep-skipped: a second run that only re-scores sparsity keeps the earlier trainings' tables
    assert paper_claims.main(["--quick", "--frames-root", str(root), "--out", str(out), "--skip", "scaling",
                              "--skip", "robust", "--keep-skipped"]) == 0  # fmt: skip
    again = json.loads((out / "paper_claims.json").read_text())
    assert again["scaling"] == data["scaling"] and again["robust"] == data["robust"]
    assert [r["density"] for r in again["sparsity"]["rows"]] == list(paper_claims.DENSITIES)
    text = capsys.readouterr().out
    assert "kept from" in text and "Robust MAE" in text and "Prompt sparsity" in text
    with pytest.raises(SystemExit, match="another config"):
        paper_claims.main(["--quick", "--frames-root", str(root), "--out", str(out), "--skip", "scaling",
                           "--keep-skipped", "--config", "teacher_tiny"])  # fmt: skip


def test_skips_without_frames(tmp_path, capsys):
    assert paper_claims.main(["--quick", "--frames-root", str(tmp_path / "absent"), "--out", str(tmp_path / "o")]) == 0
    assert "SKIP: the real frames are not available" in capsys.readouterr().out
    assert not (tmp_path / "o").exists()
