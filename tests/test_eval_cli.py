"""``metricanything eval``: clear errors on bad inputs, and a tiny synthetic run that writes every output."""

from __future__ import annotations

import csv
import json

import pytest

from metricanything.cli import main

BASELINES = ["baseline:nearest", "baseline:linear", "baseline:ipbasic", "baseline:prompt_median",
             "baseline:train_median"]  # fmt: skip


def run_cli(capsys, *args):
    rc = main(["eval", *map(str, args)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_benchmark_typo_lists_valid_names_with_a_suggestion(capsys):
    rc, _, err = run_cli(capsys, "--benchmark", "synthetic_indor", "--compare", "baseline:train_median=2")
    assert rc == 2
    assert "unknown benchmark 'synthetic_indor'" in err and "Did you mean 'synthetic_indoor'?" in err
    assert "kitti_eigen" in err and "booster" in err


def test_missing_dataset_folder_names_it_and_the_layout(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("METRICANYTHING_KITTI_ROOT", raising=False)
    monkeypatch.delenv("METRICANYTHING_DATA", raising=False)
    missing = tmp_path / "kitti_missing"
    rc, _, err = run_cli(capsys, "--benchmark", "kitti_eigen", "--root", missing, "--compare", "baseline:train_median=12")
    assert rc == 2 and str(missing) in err and "does not exist" in err
    assert "Expected layout (kitti loader)" in err and "proj_depth/groundtruth" in err
    rc, _, err = run_cli(capsys, "--benchmark", "kitti_eigen", "--compare", "baseline:train_median=12")
    assert rc == 2 and "--root PATH or $METRICANYTHING_KITTI_ROOT" in err


def test_benchmark_without_a_loader_says_so(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "--benchmark", "sintel", "--root", tmp_path, "--compare", "baseline:train_median=5")
    assert rc == 2 and "needs a 'sintel' loader" in err


def test_prompt_only_baseline_without_prompt_is_refused(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "--benchmark", "synthetic_indoor", "--compare", "baseline:linear", "--out", tmp_path)
    assert rc == 2 and "baseline:linear needs a prompt" in err and "--prompt" in err
    assert not (tmp_path / "metrics.json").exists()


def test_prompt_free_student_with_prompt_is_refused(capsys, tmp_path):
    from metricanything.models.checkpoint import save_pretrained
    from metricanything.models.student import Student, student_config

    ckpt = save_pretrained(Student(student_config("fixture_tiny")), tmp_path / "student")
    rc, _, err = run_cli(capsys, "--model", ckpt, "--benchmark", "synthetic_indoor", "--prompt", "points:100",
                         "--out", tmp_path / "out")  # fmt: skip
    assert rc == 2 and "student:student is prompt-free and cannot use --prompt points:100" in err


def test_other_bad_arguments(capsys):
    rc, _, err = run_cli(capsys, "--benchmark", "synthetic_indoor", "--compare", "baseline:cubic")
    assert rc == 2 and "unknown baseline 'baseline:cubic'" in err and "baseline:ipbasic" in err
    rc, _, err = run_cli(capsys, "--benchmark", "synthetic_indoor")
    assert rc == 2 and "--model CKPT" in err
    rc, _, err = run_cli(capsys, "--benchmark", "synthetic_indoor", "--compare", "baseline:nearest", "--prompt", "dots:5")
    assert rc == 2 and "dots" in err
    rc, _, err = run_cli(capsys, "--benchmark", "booster", "--compare", "baseline:train_median")
    assert rc == 2 and "baseline:train_median=VALUE" in err


def test_list_benchmarks(capsys):
    rc, out, _ = run_cli(capsys, "--list")
    assert rc == 0 and "booster" in out and "synthetic_unseen_cameras" in out


def test_tiny_synthetic_run_writes_every_output(capsys, tmp_path):
    out_dir = tmp_path / "eval"
    args = ["--benchmark", "synthetic_indoor", "--limit", "2", "--panels", "1", "--prompt", "points:60", "lidar:8",
            "--compare", *BASELINES, "--out", out_dir]  # fmt: skip
    rc, out, err = run_cli(capsys, *args)
    assert rc == 0, err
    for b in BASELINES:
        assert f"| {b} |" in out
    assert "| model | points:60 | lidar:8 |" in out
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["benchmark"]["name"] == "synthetic_indoor" and metrics["num_samples"] == 2
    assert metrics["prompt_columns"] == ["points:60", "lidar:8"]
    cell = metrics["results"]["baseline:linear"]["points:60"]
    assert cell["num_images"] == 2 and cell["aggregation"] == "per_image"
    assert cell["headline"]["abs_rel"] == pytest.approx(cell["per_image_mean"]["abs_rel"])
    assert cell["ranges"]  # per-distance breakdown present
    rows = list(csv.DictReader((out_dir / "per_image.csv").open()))
    assert len(rows) == 2 * 2 * len(BASELINES)
    linear = [float(r["abs_rel"]) for r in rows if r["predictor"] == "baseline:linear" and r["prompt"] == "points:60"]
    assert sum(linear) / 2 == pytest.approx(cell["headline"]["abs_rel"], rel=1e-5)
    report = (out_dir / "report.md").read_text()
    assert "aggregation: **per_image**" in report and "## Prompt: lidar:8" in report
    assert (out_dir / "error_by_distance.png").stat().st_size > 1000
    panels = sorted(p.name for p in (out_dir / "panels").iterdir())
    assert panels == ["synthetic_indoor-1000000__lidar_8.png", "synthetic_indoor-1000000__points_60.png"]
    assert not [p for p in out_dir.rglob("*.tmp*")]  # atomic writes leave no temporaries


def test_synthetic_benchmark_is_deterministic():
    from metricanything.eval.benchmarks import load_benchmark
    from metricanything.eval.runner import build_predictor, evaluate

    spec = load_benchmark("synthetic_unseen_cameras")
    preds = lambda: {n: build_predictor(n, spec) for n in ("baseline:nearest", "baseline:ipbasic")}  # noqa: E731
    a = evaluate(preds(), spec, ["points:50+noise:0.05"], limit=2, num_panels=0)
    b = evaluate(preds(), spec, ["points:50+noise:0.05"], limit=2, num_panels=0)
    assert a.summaries == b.summaries and a.records == b.records
    assert a.headline("baseline:nearest", "points:50+noise:0.05")["abs_rel"] > 0


@pytest.mark.slow
def test_teacher_next_to_baselines(capsys, tmp_path):
    import torch

    from metricanything.models.checkpoint import save_pretrained
    from metricanything.models.teacher import teacher_from_config

    torch.manual_seed(0)
    ckpt = save_pretrained(teacher_from_config("test"), tmp_path / "teacher")
    rc, out, err = run_cli(capsys, "--model", ckpt, "--benchmark", "synthetic_unseen_cameras", "--limit", "1",
                           "--panels", "0", "--prompt", "points:100", "none", "--compare", "baseline:train_median",
                           "--out", tmp_path / "out")  # fmt: skip
    assert rc == 0, err
    assert "| teacher:teacher |" in out and "| baseline:train_median |" in out and "| model | points:100 | none |" in out
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["results"]["teacher:teacher"]["none"]["num_images"] == 1
