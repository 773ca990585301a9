"""Configs: one strict validator, stage-split training configs, dict overrides, shipped presets, resume checks."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from metricanything.config import (
    apply_overrides,
    find_config,
    format_set,
    from_mapping,
    list_configs,
    parse_set,
    to_plain,
)
from metricanything.errors import CheckpointError, ConfigError
from metricanything.train.config import (
    RESUMABLE_CHANGES,
    DistillConfig,
    PretrainConfig,
    build_config,
    dump_config,
    load_config,
    resume_changes,
)

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# ---------------------------------------------------------------------------------------------- the validator
@dataclass
class _Inner:
    a: int = 1
    b: tuple[float, float] = (0.0, 1.0)


@dataclass
class _Outer:
    name: str
    mode: Literal["x", "y"] = "x"
    ratio: float = 0.5
    inner: _Inner = field(default_factory=_Inner)
    items: list[_Inner] = field(default_factory=list)
    maybe: int | None = None
    either: str | _Inner = "s"
    free: dict[str, int] = field(default_factory=dict)


def test_validator_builds_nested_typed_dataclasses():
    out = from_mapping(_Outer, {"name": "n", "mode": "y", "ratio": 2, "inner": {"b": [1, 2]},
                                "items": [{"a": 3}], "either": {"a": 4}, "free": {"k": 5}})  # fmt: skip
    assert out == _Outer("n", "y", 2.0, _Inner(1, (1.0, 2.0)), [_Inner(3)], None, _Inner(4), {"k": 5})
    assert isinstance(out.ratio, float) and isinstance(out.inner.b, tuple)


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"name": "n", "inner": {"aa": 1}}, "inner.aa: unknown key (did you mean 'inner.a'?)"),
        ({"name": "n", "items": [{"a": 1}, {"c": 1}]}, "items.1.c: unknown key"),
        ({"name": "n", "mode": "z"}, "mode: must be one of ['x', 'y'], got 'z'"),
        ({"name": "n", "ratio": True}, "ratio: expected a number"),
        ({"name": "n", "inner": {"a": 1.5}}, "inner.a: expected an integer"),
        ({"name": "n", "inner": {"b": [1, 2, 3]}}, "inner.b: expected 2 values, got 3"),
        ({"name": "n", "either": {"zz": 1}}, "either.zz: unknown key"),
        ({"name": "n", "free": {"k": "v"}}, "free.k: expected an integer"),
        ({"mode": "x"}, "name: required key is missing"),
        ({"name": "n", "maybe": "3"}, "maybe: expected an integer, got str '3'"),
        ({"name": "n", "either": 5}, "either: expected a string, got int 5"),
    ],
)
def test_validator_errors_name_the_origin_and_the_dotted_key(data, fragment):
    with pytest.raises(ConfigError) as info:
        from_mapping(_Outer, data, origin="file.yaml")
    assert str(info.value).startswith("file.yaml: ")
    assert fragment in str(info.value)


def test_overrides_merge_sections_replace_values_and_check_keys():
    tree = to_plain(_Outer("n", items=[_Inner()], free={"a": 1, "b": 2}))
    out = apply_overrides(_Outer, tree, {"inner": {"a": 7}, "items.0.b": [3, 4], "free": {"c": 3}})
    assert out["inner"] == {"a": 7, "b": [0.0, 1.0]}  # a section: merged key by key
    assert out["free"] == {"c": 3}  # a free-form mapping: replaced
    assert out["items"][0]["b"] == [3, 4] and tree["inner"]["a"] == 1  # the input is not modified
    with pytest.raises(ConfigError, match=r"override 'inner.c': inner.c: unknown key"):
        apply_overrides(_Outer, tree, {"inner.c": 1})
    with pytest.raises(ConfigError, match=r"index 2 out of range for a list of 1"):
        apply_overrides(_Outer, tree, {"items.2.a": 1})


def test_set_strings_are_yaml_and_the_last_one_wins():
    assert parse_set(["a.b=1e-4", "a=[64, 48]", "c=null", "d=text=with=equals", "a.b=3"]) == {
        "a": [64, 48], "c": None, "d": "text=with=equals", "a.b": 3}  # fmt: skip
    assert list(parse_set(["x=1", "y=2", "x=3"])) == ["y", "x"]  # a repeated key applies at its last place
    for bad, fragment in [("nokey", "key.path=value"), ("=1", "empty key"), ("a.=1", "empty key"),
                          ("a=[1", "not valid YAML")]:  # fmt: skip
        with pytest.raises(ConfigError, match=fragment):
            parse_set([bad])


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False, width=32),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=12),
    st.sampled_from(["1e-4", "null", "yes", "a: b", "[1]", "{x: 1}", "", " ", "#c", "- 1", "1_000", ".inf"]),
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["a", "b.c", "d.0.e"]),
                       st.recursive(_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(
                           alphabet="abcxyz", min_size=1, max_size=3), c, max_size=3), max_leaves=6)))
def test_format_set_round_trips_through_parse_set(overrides):
    assert parse_set(format_set(overrides)) == overrides


# ---------------------------------------------------------------------------------------------- training configs
def test_yaml_merges_over_defaults_and_overrides_apply_in_order(tmp_path):
    p = _write(tmp_path, "stage: pretrain\nseed: 3\noptim:\n  lr: 0.01\ntrain:\n  steps: 7\n")
    cfg = load_config(p, {"optim.lr": 2e-4, "train": {"steps": 9, "batch_size": 3}, "data.sources.0.weight": 2})
    assert isinstance(cfg, PretrainConfig) and cfg.seed == 3
    assert cfg.optim.lr == pytest.approx(2e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.train.steps == 9 and cfg.train.batch_size == 3
    assert cfg.optim.warmup_steps == PretrainConfig().optim.warmup_steps  # untouched default
    assert cfg.data.sources[0].weight == 2.0
    assert load_config(p, parse_set(["train.steps=9", "train.steps=11"])).train.steps == 11


def test_source_lists_replace_defaults_and_fill_item_defaults(tmp_path):
    p = _write(tmp_path, "stage: pretrain\ndata:\n  sources:\n    - {kind: folder, path: /x, weight: 3}\n    - {kind: render}\n")
    cfg = load_config(p)
    assert [s.kind for s in cfg.data.sources] == ["folder", "render"]
    assert cfg.data.sources[0].weight == 3.0 and cfg.data.sources[1].weight == 1.0
    assert cfg.data.sources[0].metric_scale_trusted is None


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("stage: pretrain\noptim:\n  lrr: 1\n", "optim.lrr: unknown key (did you mean 'optim.lr'?)"),
        ("stage: pretrain\nbogus: 1\n", "bogus: unknown key"),
        ("stage: pretrain\ntrain:\n  steps: 1.5\n", "train.steps: expected an integer"),
        ("stage: pretrain\ntrain:\n  steps: true\n", "train.steps: expected an integer"),
        ("stage: pretrain\ntrain:\n  deterministic: 1\n", "expected true/false"),
        ("stage: pretrain\nloss:\n  space: sqrt\n", "loss.space: must be one of"),
        ("stage: pretrain\ndata:\n  sources:\n    - {kind: folder}\n", "data.sources.0: a 'folder' source needs a path"),
        ("stage: pretrain\ndata:\n  sources:\n    - {kind: render, colour: red}\n", "data.sources.0.colour: unknown key"),
        ("stage: pretrain\nloss:\n  trim: 1.0\n", "loss.trim must be in [0, 1)"),
        ("stage: pretrain\nprompts:\n  sampler: {p_fulll: 0.2}\n", "prompts.sampler.p_fulll: unknown key (did you mean"),
        ("stage: pretrain\nmodel:\n  overrides: {decoder_featurez: 8}\n", "model.overrides.decoder_featurez: unknown teacher setting"),
        ("stage: distill\nmodel:\n  preset: nope\n", "unknown student preset 'nope'"),
        ("stage: pretrain\nprompts:\n  pattern: 'lidar:x'\n", "prompts.pattern"),
        ("- 1\n- 2\n", "top level must be a mapping"),
        ("seed: 1\n", "which training stage?"),
        ("stage: finetune\n", "stage: must be one of ['pretrain', 'distill']"),
    ],
)
def test_bad_files_raise_config_error_naming_the_key_and_the_file(tmp_path, text, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    assert fragment in str(info.value)
    assert "c.yaml" in str(info.value)


@pytest.mark.parametrize(
    "stage, text, key, other",
    [
        ("distill", "prompts:\n  prior: none\n", "prompts", "pretrain"),
        ("distill", "loss:\n  trim: 0.1\n", "loss.trim", "pretrain"),
        ("distill", "data:\n  val_prompt_fraction: 0.1\n", "data.val_prompt_fraction", "pretrain"),
        ("distill", "model:\n  backbone: x.pth\n", "model.backbone", "pretrain"),
        ("pretrain", "distill:\n  teacher: runs/t\n", "distill", "distill"),
        ("pretrain", "loss:\n  n_bins: 4\n", "loss.n_bins", "distill"),
    ],
)
def test_a_key_of_the_other_stage_is_refused_saying_which_stage_reads_it(tmp_path, stage, text, key, other):
    p = _write(tmp_path, f"stage: {stage}\n{text}")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    msg = str(info.value)
    assert str(p) in msg and f"{key}: unknown key" in msg
    assert f"{key} is a {other} (" in msg and f"this is a {stage} config" in msg
    # the same key as an override of a shipped preset
    dotted = key if "." in key else f"{key}.{yaml.safe_load(text)[key].popitem()[0]}"
    with pytest.raises(ConfigError, match=rf"override '{dotted}': {key}: unknown key; {key} is a {other} \("):
        load_config("student_test" if stage == "distill" else "teacher_test", {dotted: 1})


@pytest.mark.parametrize(
    "override, fragment",
    [
        (["train.stepz=3"], "override 'train.stepz': train.stepz: unknown key (did you mean 'train.steps'?)"),
        (["train.steps=abc"], "train.steps: expected an integer"),
        (["data.sources.5.weight=1"], "out of range"),
        (["data.sources.x.weight=1"], "index it with an integer"),
        (["seed.x=1"], "not a section"),
        (["model.overrides.vit=nope"], "vit"),
        (["optim.betas=[0.9]"], "optim.betas must have two values"),
    ],
)
def test_bad_set_overrides_raise_naming_the_key(override, fragment):
    with pytest.raises(ConfigError) as info:
        load_config("teacher_test", parse_set(override))
    assert fragment in str(info.value)


def test_stage_mismatch_and_missing_files_say_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match=r"student_test.yaml: is a distill config \(stage: distill\), but a pretrain config"):
        load_config("student_test", stage="pretrain")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    # the presets moved into the package: the old path names the fix
    with pytest.raises(ConfigError, match=r"configs/teacher_tiny.yaml: training config file not found; 'teacher_tiny' is a shipped"):
        load_config("configs/teacher_tiny.yaml")
    with pytest.raises(ConfigError, match=r"unknown training config 'teacher_tinny'. Did you mean 'teacher_tiny'\?"):
        load_config("teacher_tinny")
    cfg = load_config(None, {"train.steps": 3}, stage="distill")  # defaults of a stage
    assert isinstance(cfg, DistillConfig) and cfg.train.steps == 3


def test_dump_round_trips():
    for stage in ("pretrain", "distill"):
        cfg = load_config(None, {"seed": 5, "optim.betas": [0.8, 0.9]}, stage=stage)
        again = build_config(type(cfg), yaml.safe_load(dump_config(cfg)))
        assert again == cfg


def test_distill_untrusted_gt_setting_drives_the_oracle_alignment():
    assert load_config("student_test").untrusted_oracle_noise == pytest.approx(0.1)
    assert load_config("student_test", {"distill.untrusted_gt": "drop"}).untrusted_oracle_noise is None
    assert load_config("teacher_test", {"prompts.prior": "model"}).untrusted_oracle_noise is None
    assert load_config("teacher_test", {"prompts.oracle_noise": 0.3}).untrusted_oracle_noise == pytest.approx(0.3)


PRESETS = list_configs()


@pytest.mark.parametrize("name", PRESETS)
def test_shipped_presets_load_and_name_their_stage(name):
    cfg = load_config(name)
    assert type(cfg) is (PretrainConfig if name.startswith("teacher") else DistillConfig)
    assert find_config(name).parent == ROOT / "src" / "metricanything" / "configs"


def test_at_least_the_documented_presets_exist():
    for kind in ("teacher", "student"):
        for size in ("test", "tiny", "small", "base", "large"):
            assert f"{kind}_{size}" in PRESETS
    assert "synthetic_indoor" in list_configs("benchmarks")


def test_no_config_folder_is_left_at_the_checkout_root():
    assert not (ROOT / "configs").exists()


# ---------------------------------------------------------------------------------------------- checkpoint configs
def test_checkpoint_config_json_is_read_strictly_naming_the_file_and_key(tmp_path):
    import torch

    from metricanything.models.checkpoint import from_pretrained, save_pretrained
    from metricanything.models.teacher import Teacher, teacher_config

    torch.manual_seed(0)
    d = save_pretrained(Teacher(teacher_config("test")), tmp_path / "m")
    meta = json.loads((d / "config.json").read_text())
    meta["config"]["vit"]["dept"] = 4
    (d / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as info:
        from_pretrained(d)
    msg = str(info.value)
    assert str(d / "config.json") in msg and "vit.dept: unknown key (did you mean 'vit.depth'?)" in msg
    del meta["config"]["vit"]["dept"]
    meta["config"]["decoder_features"] = "wide"
    (d / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="decoder_features: expected an integer, got str 'wide'"):
        from_pretrained(d)


def test_bundled_checkpoints_pass_the_strict_reader():
    from metricanything.models.checkpoint import config_from_dict
    from metricanything.models.student import StudentConfig
    from metricanything.models.teacher import TeacherConfig

    assets = ROOT / "src" / "metricanything" / "assets" / "models"
    for kind, cls in (("teacher", TeacherConfig), ("student", StudentConfig)):
        meta = json.loads((assets / kind / "config.json").read_text())
        cfg = config_from_dict(cls, meta["config"], "bundled")
        assert to_plain(cfg) == json.loads(json.dumps(to_plain(cls.from_dict(meta["config"]))))


# ---------------------------------------------------------------------------------------------- resume
def _stored(cfg) -> str:
    return json.dumps(cfg.to_dict(), sort_keys=True, default=str)


def test_resume_allows_only_settings_that_leave_the_run_unchanged():
    base = load_config("teacher_test", {"train.steps": 8})
    same = resume_changes(_stored(base), base, source="ckpt", step=4)
    assert same == {}
    longer = load_config("teacher_test", {"train.steps": 20, "train.log_every": 1, "train.progress": True})
    changed = resume_changes(_stored(base), longer, source="ckpt", step=4)
    assert changed == {"train.steps": (8, 20), "train.log_every": (2, 1), "train.progress": (False, True)}
    assert set(changed) <= RESUMABLE_CHANGES
    bad = load_config("teacher_test", {"train.steps": 20, "optim.lr": 5.0, "data.sources.0.weight": 2.0, "seed": 3})
    with pytest.raises(ConfigError) as info:
        resume_changes(_stored(base), bad, source="runs/x/checkpoints/step_00000004.pt", step=4)
    msg = str(info.value)
    assert msg.startswith("runs/x/checkpoints/step_00000004.pt: --resume cannot change")
    assert "optim.lr: 0.001 in the checkpoint, 5.0 requested" in msg and "seed: 0 in the checkpoint, 3 requested" in msg
    assert "data.sources:" in msg and "train.steps" not in msg.split("Resuming may change only")[0]
    assert "another --out" in msg and "drop the --set" in msg.lower()
    with pytest.raises(ConfigError, match="train.steps 3 is below the checkpoint's step 4"):
        resume_changes(_stored(base), load_config("teacher_test", {"train.steps": 3}), source="c", step=4)
    with pytest.raises(ConfigError, match="trained by stage 'pretrain'; it cannot be resumed as a distill run"):
        resume_changes(_stored(base), load_config("student_test"), source="c", step=4)


def test_resume_reads_configs_recorded_before_the_stage_split():
    # an old checkpoint's config: one TrainConfig with both stages' sections
    cfg = load_config("student_test")
    old = {**cfg.to_dict(), "prompts": {"prior": "oracle"}, "loss": {**cfg.to_dict()["loss"], "trim": 0.2}}
    assert resume_changes(json.dumps(old), cfg, source="c", step=2) == {}


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    import os

    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return subprocess.run([sys.executable, "-m", "metricanything.cli", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


@pytest.mark.slow
def test_resume_refuses_changed_settings_and_applies_allowed_ones(tmp_path):
    run = tmp_path / "run"
    common = ("pretrain", "--config", "teacher_test", "--out", str(run), "--set", "train.steps=4",
              "--set", "train.ckpt_every=2", "--set", "data.val_samples=1")  # fmt: skip
    first = _cli(*common, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    recorded = (run / "config.yaml").read_text()
    weights = (run / "model" / "model.safetensors").read_bytes()

    refused = _cli(*common, "--resume", "--set", "optim.lr=5.0", cwd=tmp_path)
    assert refused.returncode == 2
    assert "--resume cannot change these settings of a run already at step 4" in refused.stderr
    assert "optim.lr: 0.001 in the checkpoint, 5.0 requested" in refused.stderr
    assert (run / "config.yaml").read_text() == recorded  # nothing rewritten
    assert (run / "model" / "model.safetensors").read_bytes() == weights

    longer = _cli(*common[:-6], "--set", "train.steps=6", "--set", "train.ckpt_every=2", "--set",
                  "data.val_samples=1", "--set", "train.log_every=1", "--resume", cwd=tmp_path)  # fmt: skip
    assert longer.returncode == 0, longer.stderr
    out = longer.stdout + longer.stderr
    assert "resumed from" in out and "(step 4)" in out
    assert "changed settings applied (config.yaml records them): train.log_every 2 -> 1; train.steps 4 -> 6" in out
    now = yaml.safe_load((run / "config.yaml").read_text())
    assert now["train"]["steps"] == 6 and now["train"]["log_every"] == 1 and now["optim"]["lr"] == pytest.approx(1e-3)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["step"] == 6 and summary["resumed_from"] == 4
    logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if r["kind"] == "train"][-2:] == [5, 6]  # log_every=1 applied
    assert all(math.isfinite(r["loss"]) for r in logged if r["kind"] == "train")
