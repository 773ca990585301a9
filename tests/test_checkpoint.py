"""Tests for checkpoint save/load (teacher, student, official state dict, strictness)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from metricanything.errors import CheckpointError
from metricanything.models.checkpoint import CONFIG_NAME, WEIGHTS_NAME, from_pretrained, save_pretrained
from metricanything.models.student import Student, student_config
from metricanything.models.teacher import Teacher, teacher_config

torch.set_num_threads(1)

FIXTURE = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "official_student"


@pytest.fixture(scope="module")
def teacher() -> Teacher:
    torch.manual_seed(0)
    model = Teacher(teacher_config("test")).eval()
    with torch.no_grad():  # non-zero prompt branch so the round trip covers it
        for enc in model.decoder.prompt_encoders.values():
            enc.proj.weight.normal_(0, 0.1)
    return model


@pytest.fixture(scope="module")
def student() -> Student:
    torch.manual_seed(1)
    model = Student(student_config("fixture_tiny")).eval()
    weights = FIXTURE / "tiny_weights.safetensors"
    if weights.is_file():  # official-layout weights (bias_mask etc. set); random init otherwise
        model.load_state_dict(load_file(str(weights)), strict=True)
    return model


def _teacher_inputs():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 33, 45, generator=g)
    pd = 1 + 5 * torch.rand(2, 1, 33, 45, generator=g)
    pm = torch.rand(2, 1, 33, 45, generator=g) < 0.1
    return x, pd, pm


def test_teacher_round_trip_identical(tmp_path: Path, teacher: Teacher) -> None:
    save_pretrained(teacher, tmp_path / "ckpt", extra_card={"trained_on": ["synthetic"], "licence": "Apache-2.0"})
    meta = json.loads((tmp_path / "ckpt" / CONFIG_NAME).read_text())
    assert meta["model_kind"] == "teacher" and meta["format_version"] == 1
    assert meta["card"]["licence"] == "Apache-2.0"
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]  # no temp files
    loaded = from_pretrained(tmp_path / "ckpt")
    assert isinstance(loaded, Teacher) and not loaded.training
    assert loaded.config == teacher.config
    x, pd, pm = _teacher_inputs()
    with torch.no_grad():
        assert torch.equal(teacher(x, pd, pm, f_px=40.0), loaded(x, pd, pm, f_px=40.0))
        assert torch.equal(teacher(x, f_px=40.0), loaded(x, f_px=40.0))
    # the weights file alone (with its sibling config) loads too
    again = from_pretrained(tmp_path / "ckpt" / WEIGHTS_NAME)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), teacher.state_dict().values(), strict=True))


def test_student_round_trip_identical(tmp_path: Path, student: Student) -> None:
    save_pretrained(student, tmp_path / "s")
    loaded = from_pretrained(tmp_path / "s")
    assert isinstance(loaded, Student)
    assert loaded.cfg.to_dict() == student.cfg.to_dict()
    x = torch.randn(1, 3, 40, 70, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(student.infer(x, f_px=50.0)["depth"], loaded.infer(x, f_px=50.0)["depth"])


def test_missing_key_raises(tmp_path: Path, teacher: Teacher) -> None:
    d = save_pretrained(teacher, tmp_path / "ckpt")
    state = load_file(str(d / WEIGHTS_NAME))
    dropped = "decoder.prompt_encoders.0.proj.weight"
    del state[dropped]
    save_file(state, str(d / WEIGHTS_NAME))
    with pytest.raises(CheckpointError, match="missing keys 1: decoder.prompt_encoders.0.proj.weight"):
        from_pretrained(d)


def test_unexpected_key_and_shape_mismatch_raise(tmp_path: Path, teacher: Teacher) -> None:
    d = save_pretrained(teacher, tmp_path / "ckpt")
    state = load_file(str(d / WEIGHTS_NAME))
    state["decoder.something_new"] = torch.zeros(3)
    save_file(state, str(d / WEIGHTS_NAME))
    with pytest.raises(CheckpointError, match="unexpected keys 1: decoder.something_new"):
        from_pretrained(d)
    del state["decoder.something_new"]
    state["decoder.head.0.bias"] = torch.zeros(5)
    save_file(state, str(d / WEIGHTS_NAME))
    with pytest.raises(CheckpointError, match=r"shape mismatches 1: decoder.head.0.bias \(checkpoint \(5,\)"):
        from_pretrained(d)


def test_fp16_weights_load_into_fp32_model(tmp_path: Path, teacher: Teacher) -> None:
    d = save_pretrained(teacher, tmp_path / "ckpt")
    state = {k: v.half() if v.is_floating_point() else v for k, v in load_file(str(d / WEIGHTS_NAME)).items()}
    save_file(state, str(d / WEIGHTS_NAME))
    loaded = from_pretrained(d)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, teacher.state_dict()[k].half().float()), k
    bf = from_pretrained(d, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in bf.parameters())


def test_official_state_dict_loads(tmp_path: Path, student: Student) -> None:
    state = student.state_dict()
    torch.save(state, tmp_path / "student_depthmap.pt")
    torch.save({"state_dict": state}, tmp_path / "wrapped.pt")
    for src in (tmp_path / "student_depthmap.pt", tmp_path / "wrapped.pt", tmp_path):
        loaded = from_pretrained(src, official_preset="fixture_tiny")
        assert isinstance(loaded, Student) and not loaded.training
        got = loaded.state_dict()
        assert got.keys() == state.keys()
        assert all(torch.equal(got[k], v) for k, v in state.items())
    x = torch.randn(1, 3, 512, 512, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(loaded(x), student(x))
    # with the default (full-size official) preset the tiny weights do not fit: a clear error, no random weights
    with pytest.raises(CheckpointError, match="preset 'official'.*(missing keys|shape mismatches)"):
        from_pretrained(tmp_path / "student_depthmap.pt")


def test_bad_paths_and_configs(tmp_path: Path, teacher: Teacher, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        from_pretrained(tmp_path / "nothing_here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        from_pretrained(tmp_path / "empty")
    d = save_pretrained(teacher, tmp_path / "ckpt")
    meta = json.loads((d / CONFIG_NAME).read_text())
    meta["format_version"] = 99
    (d / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="newer"):
        from_pretrained(d)
    meta["format_version"] = 1
    meta["config"]["bogus_field"] = 1
    (d / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="bogus_field"):
        from_pretrained(d)
    (d / WEIGHTS_NAME).write_bytes(b"not a safetensors file")
    meta["config"].pop("bogus_field")
    (d / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="cannot read safetensors"):
        from_pretrained(d)

    import huggingface_hub

    def offline(**kwargs):
        raise OSError("offline mode is enabled")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(CheckpointError, match="Hugging Face hub failed.*offline"):
        from_pretrained("someone/some-model")


def test_save_rejects_other_modules(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="cannot save a Linear.*not a registered model kind"):
        save_pretrained(torch.nn.Linear(2, 2), tmp_path / "x")
    assert not (tmp_path / "x" / CONFIG_NAME).exists()
