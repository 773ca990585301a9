"""The quickstart: a shrunken real run of every stage, the report, resuming, and loud failure."""

from __future__ import annotations

import argparse
import importlib
import json
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

from metricanything.cli import SUBCOMMANDS
from metricanything.config import find_config
from metricanything.tasks.quickstart import (
    STAGES,
    Quickstart,
    QuickstartError,
    QuickstartOptions,
    quickstart_command,
    run_quickstart,
)
from metricanything.tasks.training import training_config


def _tiny_options(out: Path, **kw) -> QuickstartOptions:
    base = dict(
        out=out, budget_minutes=0.5, num_samples=7, render_size=(48, 32), train_size=32, student_train_size=32,
        min_steps=2, max_steps=3, val_samples=1, eval_samples=1, num_examples=1, threads=1,
        teacher_config="teacher_test", student_config="student_test",
        progress=False,
    )  # fmt: skip
    base.update(kw)
    return QuickstartOptions(**base)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("qs") / "run"
    result = run_quickstart(_tiny_options(out))
    return out, result


@pytest.mark.slow
def test_quickstart_runs_every_stage_and_writes_the_report(finished):
    out, result = finished
    assert [s for s, r in result.stages.items() if r.status == "done"] == list(STAGES)
    assert not any(r.reused for r in result.stages.values())
    # real products of every stage
    assert (out / "corpus" / "index.json").is_file()
    corpus = json.loads((out / "corpus" / "index.json").read_text())
    ids = corpus["samples"] if isinstance(corpus, dict) else corpus
    assert {i.split("-", 1)[1] for i in ids} == {"rendered", "lidar", "tof", "structured_light", "stereo", "sfm", "mvs"}
    for model in ("teacher", "student"):
        assert (out / model / "model" / "model.safetensors").is_file()
    pre, dis = result.stages["pretrain"].info, result.stages["distill"].info
    assert 2 <= pre["steps"] <= 3 and 2 <= dis["steps"] <= 3
    assert pre["plan"]["seconds_per_step"] > 0
    assert (out / "pseudo_labels" / "manifest.json").is_file()
    assert result.stages["pseudo_label"].info["num_samples"] == 7
    ev = result.stages["evaluate"].info["benchmarks"]
    assert set(ev) == {"synthetic_indoor", "synthetic_outdoor"}
    prompted = ev["synthetic_indoor"]["prompted"]["headline"]
    assert {"teacher:teacher", "baseline:nearest", "baseline:linear"} <= set(prompted)
    free = ev["synthetic_indoor"]["prompt_free"]["headline"]
    assert {"teacher:teacher", "student:student", "baseline:train_median"} == set(free)
    assert all(np.isfinite(h["abs_rel"]) for h in free.values())
    # infer wrote metric depth at the example's exact size, with the student's focal from its FoV head
    depth = np.load(out / "infer" / "student" / "example_0" / "depth.npy")
    assert depth.shape == (32, 48) and depth.dtype == np.float32
    ex = result.stages["infer"].info["examples"]["example_0"]
    assert ex["student"]["intrinsics_source"] == "estimated"
    assert ex["teacher_prompted"]["intrinsics_source"] == "sidecar"
    # the report: self-contained, one section per stage, per-stage wall times
    text = result.report.read_text(encoding="utf-8")
    for heading in ("Stages and wall times", "1. Heterogeneous corpus", "2. Teacher pretraining", "3. Pseudo-labels",
                    "4. Student distillation", "5. Evaluation", "6. <code>metricanything infer</code>"):  # fmt: skip
        assert heading in text, heading
    assert len(re.findall(r'src="data:image/png;base64,', text)) >= 8
    assert 'src="http' not in text and "(figure missing" not in text
    for stage in STAGES[:-1]:
        assert f"<td>{stage}</td>" in text
    summary = json.loads((out / "quickstart.json").read_text())
    assert summary["stages"]["pretrain"]["seconds"] > 0


@pytest.mark.slow
def test_quickstart_rerun_skips_finished_stages(finished):
    out, first = finished
    again = run_quickstart(_tiny_options(out))
    assert all(again.stages[s].reused for s in STAGES[:-1])
    assert again.stages["pretrain"].info["steps"] == first.stages["pretrain"].info["steps"]
    assert "reused from an earlier run" in again.report.read_text(encoding="utf-8")


def test_failing_stage_stops_the_run_with_a_partial_report(tmp_path):
    # a misspelt teacher setting: the run stops at pretraining (it never skips or fakes a stage), and the partial
    # report shows the finished corpus, the failure and its message
    opts = _tiny_options(tmp_path / "run", budget_minutes=0.2, teacher_overrides={"train.stpes": 3})
    with pytest.raises(QuickstartError, match="stage 'pretrain' failed: ConfigError.*did you mean 'train.steps'"):
        run_quickstart(opts)
    report = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert "FAILED at stage pretrain" in report and "1. Heterogeneous corpus" in report and "train.stpes" in report
    assert not (tmp_path / "run" / "teacher" / "model").exists()
    record = json.loads((tmp_path / "run" / "quickstart.json").read_text())
    assert record["stages"]["render"]["status"] == "done" and record["stages"]["pretrain"]["status"] == "failed"
    assert record["stages"]["distill"]["status"] == "pending"


def test_options_are_validated(tmp_path):
    with pytest.raises(Exception, match="num-samples"):
        run_quickstart(_tiny_options(tmp_path, num_samples=3))
    with pytest.raises(Exception, match="fractions"):
        run_quickstart(_tiny_options(tmp_path, teacher_fraction=0.6, student_fraction=0.5))


def _parse(command: str):
    """The options the real ``metricanything`` parser makes of a recorded command line."""
    words = shlex.split(command)
    assert words[0] == "metricanything"
    module = importlib.import_module(f"metricanything.cli.{SUBCOMMANDS[words[1]][0]}")
    parser = argparse.ArgumentParser()
    module.configure(parser)
    return module.options(parser.parse_args(words[2:]))


@pytest.mark.slow
def test_recorded_commands_reproduce_each_stage(finished):
    out, result = finished
    info = {name: r.info for name, r in result.stages.items()}
    render = _parse(info["render"]["command"])
    assert (render.out, render.num, render.size) == (out / "corpus", 7, (48, 32))
    for stage in ("pretrain", "distill"):  # the command's config is the one the stage trained with
        cfg = training_config(_parse(info[stage]["command"]))
        assert cfg.train.steps == info[stage]["steps"] and cfg.out_dir == str(out / ("teacher" if stage == "pretrain" else "student"))
        assert cfg.data.size == 32 and cfg.model.preset == info[stage]["model_preset"]
    pseudo = _parse(info["pseudo_label"]["command"])
    assert pseudo.teacher == str(out / "teacher" / "model") and pseudo.data == [str(out / "corpus")]
    prompted = _parse(info["evaluate"]["benchmarks"]["synthetic_indoor"]["prompted"]["command"])
    assert prompted.models == [str(out / "teacher" / "model")] and prompted.limit == 1 and prompted.panels == 1
    free = _parse(info["evaluate"]["benchmarks"]["synthetic_outdoor"]["prompt_free"]["command"])
    assert free.prompts == ["none"] and free.compare[-1].startswith("baseline:train_median=")
    teacher_infer = shlex.split(info["infer"]["runs"]["teacher_prompted"]["command"])
    assert teacher_infer[2:6] == ["-i", str(out / "examples" / "images_with_camera"), "-o", str(out / "infer" / "teacher_prompted")]
    assert "--prompt" in teacher_infer


def test_reproduce_command_round_trips_through_the_cli(tmp_path):
    opts = _tiny_options(tmp_path / "a b", teacher_overrides={"train.batch_size": 4, "data.sources": [{"kind": "render", "weight": 2.5}]}, eval_prompt="points:100")
    assert shlex.split(quickstart_command(opts))[:2] == ["metricanything", "quickstart"]
    assert _parse(quickstart_command(opts)) == opts
    assert quickstart_command(QuickstartOptions()) == "metricanything quickstart --out runs/quickstart"


def test_find_config_reports_where_it_looked(tmp_path):
    with pytest.raises(Exception, match="unknown training config 'no_such_config_xyz'.*teacher_tiny"):
        find_config("no_such_config_xyz", what="training config")
    with pytest.raises(Exception, match="not found"):
        find_config(str(tmp_path / "missing.yaml"), what="training config")
    assert find_config("teacher_test", what="training config").name == "teacher_test.yaml"
    p = tmp_path / "c.yaml"
    p.write_text("stage: pretrain\n")
    assert find_config(str(p)) == p


def test_what_a_stage_prints_is_logged_under_its_name(tmp_path, capsys):
    q = Quickstart(_tiny_options(tmp_path))

    def noisy() -> int:
        print("wrote 7 samples")
        print("note: a warning", file=sys.stderr)
        return 3

    assert q.call("render", noisy) == 3
    out = capsys.readouterr().out
    assert re.search(r"\[quickstart +[\d.]+s\] render: wrote 7 samples", out) and "render: note: a warning" in out


def _partial_record(out: Path, losses: list[float], prompt_free: list[float] | None = None) -> dict:
    """A record where only the teacher was trained (a partial report), with the given per-step losses."""
    run = out / "teacher"
    run.mkdir(parents=True)
    rows = [{"kind": "train", "step": i + 1, "loss": v, **({"prompt_free": prompt_free[i]} if prompt_free else {})}
            for i, v in enumerate(losses)]  # fmt: skip
    (run / "log.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    info = {"run_dir": str(run), "steps": len(losses), "plan": {"batch_size": 4}, "train_seconds": 9.0,
            "first_loss": losses[0], "final_loss": losses[-1], "val": {"abs_rel": 0.05, "abs_rel_noprompt": 0.06}}  # fmt: skip
    stages = {"render": {"status": "done", "seconds": 1.0, "info": {}}, "pretrain": {"status": "done", "seconds": 9.0, "info": info},
              "distill": {"status": "failed", "seconds": 0.5, "info": {}, "error": "boom"}}  # fmt: skip
    return {"out": str(out), "stages": stages, "total_seconds": 10.5, "budget_seconds": 60.0, "this_run_seconds": 10.5,
            "environment": "test", "threads": 1, "seed": 0, "command": "metricanything quickstart"}  # fmt: skip


def _explanation(report: str, section: str) -> str:
    return re.search(rf'<section id="{section}">.*?<p class="explain">(.*?)</p>', report, re.S).group(1)


def test_report_says_the_loss_ends_higher_only_when_it_does(tmp_path):
    from metricanything.eval.html import loss_trend, quickstart_report

    rising = [0.1, 0.12, 0.11, 0.13, 0.15, 0.14, 0.16, 0.18, 0.17, 0.2]
    t = loss_trend([{"loss": v} for v in rising])
    assert (t["start"], t["end"], t["tenth"]) == (0.1, 0.2, 1) and t["p10"] < t["p90"]
    text = _explanation(quickstart_report(_partial_record(tmp_path / "a", rising)), "pretrain")
    assert "ends higher than it starts" in text and "+100%" in text and "comes from the prompts" not in text
    # falling on average although the final single step is above the first: the text says both, and why
    falling = [0.1, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15, 0.1, 0.08, 0.06, 0.3] * 2
    free = [0.0, 0.5] * 11
    report = quickstart_report(_partial_record(tmp_path / "b", falling, free))
    text = _explanation(report, "pretrain")
    assert "ends higher" not in text and "The first and final single steps (0.1 → 0.3) say the opposite" in text
    assert "prompt-free samples have a median loss" in text
    assert "Stage distill failed" in _explanation(report, "stages") and "Not run" in report  # the partial report
    assert "<th></th>" not in report
