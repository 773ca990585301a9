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
