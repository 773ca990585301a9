"""scripts/bundle_models.py: fp16 install of a checkpoint into the bundled-model layout, and its model card."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from metricanything.models.checkpoint import from_pretrained, save_pretrained
from metricanything.models.teacher import Teacher, teacher_config

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bundle_models.py"


@pytest.fixture(scope="module")
def bundle():
    spec = importlib.util.spec_from_file_location("bundle_models", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run_dir(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    run = tmp_path / "run"
    save_pretrained(Teacher(teacher_config("test", image_size=None)), run / "model", extra_card={"train_config": {}})
    (run / "summary.json").write_text(json.dumps({"step": 3, "final_loss": 0.5, "seconds_this_run": 2.0,
                                                  "val": {"abs_rel": 0.3}}))  # fmt: skip
    (run / "config.yaml").write_text("stage: pretrain\n")
    return run


@pytest.mark.slow
def test_install_writes_fp16_weights_that_reproduce_the_fp32_model(tmp_path, bundle):
    run = _run_dir(tmp_path)
    dest = tmp_path / "assets" / "teacher"
    assert bundle.main(["install", "--kind", "teacher", "--run", str(run), "--dest", str(dest)]) == 0
    state = load_file(str(dest / "model.safetensors"))
    floats = [t for t in state.values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float16 for t in floats)
    original = load_file(str(run / "model" / "model.safetensors"))
    assert set(state) == set(original)
    cfg = json.loads((dest / "config.json").read_text())
    assert cfg["card"]["licence"] == "Apache-2.0" and cfg["model_kind"] == "teacher"
    model = from_pretrained(dest)  # fp16 tensors load into the fp32 model
    assert next(model.parameters()).dtype == torch.float32
    check = json.loads((dest / "fp16_check.json").read_text())
    assert check["valid_pixels_compared"] > 0 and check["max_rel_depth_diff_fp16_vs_fp32"] < 1e-2
    with pytest.raises(SystemExit, match="not a student"):
        bundle.main(["install", "--kind", "student", "--run", str(run), "--dest", str(tmp_path / "s")])


@pytest.mark.slow
def test_card_records_commands_data_and_metrics(tmp_path, bundle):
    run = _run_dir(tmp_path)
    dest = tmp_path / "assets" / "teacher"
    bundle.main(["install", "--kind", "teacher", "--run", str(run), "--dest", str(dest)])
    ev = tmp_path / "eval"
    ev.mkdir()
    metrics = {
        "benchmark": {"name": "synthetic_indoor", "focal_source": "gt", "alignment": "none"},
        "num_samples": 2, "aggregation": "per_image", "prompt_columns": ["points:500"],
        "predictors": ["teacher:teacher", "baseline:linear"],
        "results": {"teacher:teacher": {"points:500": {"headline": {"abs_rel": 0.05, "rmse": 0.2, "delta1": 0.97}}},
                    "baseline:linear": {"points:500": {"headline": {"abs_rel": 0.03, "rmse": 0.1, "delta1": 0.98}}}},
    }  # fmt: skip
    (ev / "metrics.json").write_text(json.dumps(metrics))
    cmd = "metricanything pretrain --config teacher_bundled --set train.steps=3"
    assert bundle.main(["card", "--kind", "teacher", "--run", str(run), "--dest", str(dest), "--config",
                        "teacher_bundled", "--eval", str(ev), "--command", cmd]) == 0  # fmt: skip
    card = (dest / "MODEL_CARD.md").read_text()
    assert cmd in card and "Apache-2.0" in card and "Synthetic data only" in card
    assert "| teacher:teacher | points:500 | 0.0500 | 0.2000 | 0.9700 |" in card
    record = json.loads((dest / "training.json").read_text())
    assert record["parameters"] == sum(p.numel() for p in from_pretrained(dest).parameters())
    assert record["evaluation"][0]["results"]["baseline:linear"]["points:500"]["abs_rel"] == 0.03
    assert record["training_summary"]["step"] == 3
    fid = record["prompt_fidelity"]
    assert fid["points"] == 500 and len(fid["per_image"]) == fid["samples"] and fid["median_rel_err_at_prompts"] >= 0
    assert "Prompt fidelity" in card
    with pytest.raises(SystemExit, match="missing"):
        bundle.main(["card", "--kind", "teacher", "--run", str(run), "--dest", str(dest), "--config", "c.yaml",
                     "--eval", str(tmp_path / "nope")])  # fmt: skip


def _real_frames_json(path: Path, with_student: bool = True) -> Path:
    """A small ``benchmarks/real_frames.py --json`` output: teacher, student, a baseline and the oracle constant."""
    h = lambda a, d: {"headline": {"abs_rel": a, "delta1": d, "rmse": 1.0}}  # noqa: E731
    results = {
        "teacher": {"frac:0.01": h(0.0128, 0.9941), "none": h(0.9226, 0.2090)},
        "baseline:linear": {"frac:0.01": h(0.0162, 0.9935), "none": None},
        "oracle:constant": {"frac:0.01": None, "none": h(0.2995, 0.5110)},
    }
    if with_student:
        results["student"] = {"frac:0.01": None, "none": h(0.5465, 0.2098)}
    data = {
        "benchmark": {"name": "real_dev", "description": "13 real RGB-D frames: test", "source": "frames (see README)"},
        "num_samples": 13, "frames_root": "../shared/real_frames", "reference": "baseline:linear",
        "results": results, "seconds_per_image": {"teacher": 7.14},
        "comparisons": {"frac:0.01": {"teacher": {"geomean_ratio": 0.9021, "frames_worse": 2, "frames": 13}}},
    }
    path.write_text(json.dumps(data))
    return path


def test_real_frames_section_is_written_once_with_the_run_figures(tmp_path, bundle):
    dest = tmp_path / "teacher"
    dest.mkdir()
    (dest / "MODEL_CARD.md").write_text("# Card\n\nintro\n\n## Intended use\n\ndemo\n")
    rf = _real_frames_json(tmp_path / "rf.json")
    assert bundle.main(["real-frames", "--kind", "teacher", "--json", str(rf), "--dest", str(dest)]) == 0
    card = (dest / "MODEL_CARD.md").read_text()
    assert "## Real frames (../shared/real_frames, 13 frames)" in card
    row = next(line for line in card.splitlines() if line.startswith("| frac:0.01 |"))
    assert "0.0128" in row and "0.0162" in row and "0.902 (2 of 13)" in row
    assert "mean δ1 **0.209** vs **0.511**" in card
    assert card.index("## Real frames") < card.index("## Intended use")
    # a second run replaces the section (one heading), keeping the rest of the card
    assert bundle.main(["real-frames", "--kind", "teacher", "--json", str(rf), "--dest", str(dest),
                        "--remark", "R1."]) == 0  # fmt: skip
    card2 = (dest / "MODEL_CARD.md").read_text()
    assert card2.count("## Real frames") == 1 and "R1." in card2 and card2.endswith("## Intended use\n\ndemo\n")


def test_real_frames_errors_name_the_missing_piece(tmp_path, bundle):
    rf = _real_frames_json(tmp_path / "rf.json", with_student=False)
    with pytest.raises(SystemExit, match="missing"):
        bundle.main(["real-frames", "--kind", "teacher", "--json", str(rf), "--dest", str(tmp_path / "none")])
    dest = tmp_path / "student"
    dest.mkdir()
    (dest / "MODEL_CARD.md").write_text("# Card\n")
    with pytest.raises(SystemExit, match="no 'student' predictor"):
        bundle.main(["real-frames", "--kind", "student", "--json", str(rf), "--dest", str(dest)])


@pytest.mark.slow
def test_gate_picks_the_best_residual_gate_on_held_out_frames_and_the_card_lists_data_sources(tmp_path, bundle):
    """``gate`` scores every gate with the real-frames protocol on held-out folders, keeps the lowest geometric mean
    of teacher / linear AbsRel in config.json + gate_check.json; ``card --data-source`` lists the real sources."""
    from metricanything.data.folder import write_sample
    from metricanything.data.render import render_sample

    run = _run_dir(tmp_path)
    dest = tmp_path / "assets" / "teacher"
    bundle.main(["install", "--kind", "teacher", "--run", str(run), "--dest", str(dest)])
    frames = tmp_path / "heldout"
    for i in range(2):
        write_sample(frames, render_sample(777_777 + i, size=(96, 72)))
    assert bundle.main(["gate", "--dest", str(dest), "--frames", str(frames), "--gates", "0", "1"]) == 0
    check = json.loads((dest / "gate_check.json").read_text())
    means = {float(g): v["all"] for g, v in check["summary"].items()}
    assert set(means) == {0.0, 1.0} and check["best"] == min(means, key=means.get)
    assert check["num_frames"] == 2 and {r["density"] for r in check["rows"]} == {0.01, 0.001}
    assert json.loads((dest / "config.json").read_text())["config"]["residual_gate"] == check["best"]
    assert from_pretrained(dest).config.residual_gate == check["best"]
    src = "real stereo|10 OAK-D pairs -> SGBM depth|CC BY 4.0"
    assert bundle.main(["card", "--kind", "teacher", "--run", str(run), "--dest", str(dest), "--config",
                        "teacher_bundled", "--data-source", src]) == 0  # fmt: skip
    card = (dest / "MODEL_CARD.md").read_text()
    assert "| real stereo | 10 OAK-D pairs -> SGBM depth | CC BY 4.0 |" in card and "Synthetic data only" not in card
    assert "Residual gate (`scripts/bundle_models.py gate`, 2 held-out frames" in card
    record = json.loads((dest / "training.json").read_text())
    assert [d["name"] for d in record["data_sources"]] == ["synthetic renders", "real stereo"]
    assert record["residual_gate_check"]["best"] == check["best"]
    assert "real stereo" in json.loads((dest / "config.json").read_text())["card"]["training_data"]
    with pytest.raises(SystemExit, match="name\\|what\\|licence"):
        bundle.main(["card", "--kind", "teacher", "--run", str(run), "--dest", str(dest), "--config", "c",
                     "--data-source", "only a name"])  # fmt: skip
