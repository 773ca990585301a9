"""Training configs: strict YAML validation, dotted overrides, the shipped presets all load."""

from __future__ import annotations

from pathlib import Path

import pytest

from metricanything.errors import ConfigError
from metricanything.train.config import (
    TrainConfig,
    build_config,
    dump_config,
    load_config,
    load_yaml,
    parse_override,
)

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted((ROOT / "configs").glob("*_*.yaml"))


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_yaml_merges_over_defaults_and_overrides_apply_in_order(tmp_path):
    p = _write(tmp_path, "seed: 3\noptim:\n  lr: 0.01\ntrain:\n  steps: 7\n")
    cfg = load_config(p, ["optim.lr=2e-4", "train.steps=9", "train.steps=11", "data.sources.0.weight=2"])
    assert cfg.seed == 3
    assert cfg.optim.lr == pytest.approx(2e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.train.steps == 11
    assert cfg.optim.warmup_steps == TrainConfig().optim.warmup_steps  # untouched default
    assert cfg.data.sources[0].weight == 2.0


def test_source_lists_replace_defaults_and_fill_item_defaults(tmp_path):
    p = _write(tmp_path, "data:\n  sources:\n    - {kind: folder, path: /x, weight: 3}\n    - {kind: render}\n")
    cfg = load_config(p)
    assert [s.kind for s in cfg.data.sources] == ["folder", "render"]
    assert cfg.data.sources[0].weight == 3.0 and cfg.data.sources[1].weight == 1.0
    assert cfg.data.sources[0].metric_scale_trusted is None


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("optim:\n  lrr: 1\n", "unknown key"),
        ("bogus: 1\n", "unknown key"),
        ("train:\n  steps: 1.5\n", "train.steps: expected an integer"),
        ("train:\n  steps: true\n", "train.steps: expected an integer"),
        ("train:\n  deterministic: 1\n", "expected true/false"),
        ("loss:\n  space: sqrt\n", "must be one of"),
        ("data:\n  sources:\n    - {kind: folder}\n", "needs a path"),
        ("data:\n  sources:\n    - {kind: render, colour: red}\n", "data.sources[0]: unknown key"),
        ("loss:\n  trim: 1.0\n", "loss.trim"),
        ("- 1\n- 2\n", "top level must be a mapping"),
    ],
)
def test_bad_files_raise_config_error_naming_the_key(tmp_path, text, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    assert fragment in str(info.value)
    assert "c.yaml" in str(info.value)


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("train.stepz=3", "unknown key"),
        ("train.steps=abc", "expected an integer"),
        ("nokey", "key.path=value"),
        ("data.sources.5.weight=1", "out of range"),
        ("data.sources.x.weight=1", "use an integer"),
        ("seed.x=1", "not a section"),
        ("optim.lr=[1", "not valid YAML"),
    ],
)
def test_bad_overrides_raise(override, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert fragment in str(info.value)


def test_override_values_are_yaml():
    assert parse_override("a.b=1e-4") == (["a", "b"], 1e-4)
    assert parse_override("a=[64, 48]") == (["a"], [64, 48])
    assert parse_override("a=null") == (["a"], None)
    assert parse_override("a=text=with=equals") == (["a"], "text=with=equals")
    cfg = load_config(None, ["model.overrides.image_size=null", "model.init=null", "prompts.sampler.p_full=0.2"])
    assert cfg.model.overrides == {"image_size": None} and cfg.prompts.sampler == {"p_full": 0.2}


def test_dump_round_trips():
    cfg = load_config(None, ["seed=5", "optim.betas=[0.8, 0.9]"])
    again = build_config(TrainConfig, __import__("yaml").safe_load(dump_config(cfg)))
    assert again == cfg


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("path", PRESETS, ids=[p.stem for p in PRESETS])
def test_shipped_presets_load_and_name_their_stage(path):
    cfg = load_config(path)
    stage = "pretrain" if path.stem.startswith("teacher") else "distill"
    assert cfg.stage == stage
    assert load_yaml(path)  # non-empty
    # the nested model/sampler/prep sections are valid for the classes they configure
    from metricanything.prompts.prep import PrepConfig
    from metricanything.prompts.sampler import PromptSamplerConfig
    from metricanything.train.config import config_from_mapping

    config_from_mapping(PromptSamplerConfig, cfg.prompts.sampler, "prompts.sampler")
    config_from_mapping(PrepConfig, cfg.prompts.prep, "prompts.prep")
    if stage == "pretrain":
        from metricanything.models.teacher import teacher_config

        teacher_config(cfg.model.preset, **cfg.model.overrides)
    else:
        from metricanything.models.student import student_config

        student_config(cfg.model.preset, **cfg.model.overrides)


def test_at_least_the_documented_presets_exist():
    names = {p.stem for p in PRESETS}
    for kind in ("teacher", "student"):
        for size in ("test", "tiny", "small", "base", "large"):
            assert f"{kind}_{size}" in names
