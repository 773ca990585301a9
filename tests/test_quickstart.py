"""The quickstart: a shrunken real run of every stage, the report, resuming, and loud failure."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from metricanything.tasks.quickstart import (
    STAGES,
    QuickstartError,
    QuickstartOptions,
    find_config,
    run_quickstart,
)


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
    assert {"teacher (ours)", "baseline:nearest", "baseline:linear"} <= set(prompted)
    free = ev["synthetic_indoor"]["prompt_free"]["headline"]
    assert {"teacher (ours)", "student (ours)", "baseline:train_median"} == set(free)
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


def test_missing_stage_fails_loudly_with_a_partial_report(tmp_path, monkeypatch):
    # the pretraining module "has not landed": the run stops at that stage, it never skips or fakes it
    monkeypatch.setitem(sys.modules, "metricanything.train.pretrain", None)
    opts = _tiny_options(tmp_path / "run", budget_minutes=0.2)
    with pytest.raises(QuickstartError, match="pretrain"):
        run_quickstart(opts)
    report = (tmp_path / "run" / "report.html").read_text(encoding="utf-8")
    assert "FAILED" in report and "1. Heterogeneous corpus" in report
    assert not (tmp_path / "run" / "teacher" / "model").exists()


def test_options_are_validated(tmp_path):
    with pytest.raises(Exception, match="num-samples"):
        run_quickstart(_tiny_options(tmp_path, num_samples=3))
    with pytest.raises(Exception, match="fractions"):
        run_quickstart(_tiny_options(tmp_path, teacher_fraction=0.6, student_fraction=0.5))


def test_reproduce_command_round_trips_through_the_cli(tmp_path):
    import argparse
    import shlex

    from metricanything.cli import quickstart as cli
    from metricanything.tasks.quickstart import quickstart_command

    opts = _tiny_options(tmp_path / "a b", teacher_overrides={"train.batch_size": 4, "data.sources": [{"kind": "render", "weight": 2.5}]}, eval_prompt="points:100")
    words = shlex.split(quickstart_command(opts))
    assert words[:2] == ["metricanything", "quickstart"]
    parser = argparse.ArgumentParser()
    cli.configure(parser)
    back = cli.options_from_args(parser.parse_args(words[2:] + ["--quiet"]))
    assert back == opts


def test_find_config_reports_where_it_looked(tmp_path):
    with pytest.raises(Exception, match="unknown training config 'no_such_config_xyz'.*teacher_tiny"):
        find_config("no_such_config_xyz")
    with pytest.raises(Exception, match="not found"):
        find_config(str(tmp_path / "missing.yaml"))
    assert find_config("teacher_test").name == "teacher_test.yaml"
    p = tmp_path / "c.yaml"
    p.write_text("stage: pretrain\n")
    assert find_config(str(p)) == p
