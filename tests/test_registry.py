"""The model registry: every kind builds from its presets, round-trips through checkpoints and follows the one
call protocol; unknown kinds and released checkpoints are handled by the registry alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from metricanything import api
from metricanything.camera import IntrinsicsSource
from metricanything.errors import CheckpointError, InvalidInputError
from metricanything.models import registry
from metricanything.models.checkpoint import from_pretrained, save_pretrained
from metricanything.models.pointmap import save_official_checkpoint, tiny_random_pointmap
from metricanything.models.student import Student, student_config
from metricanything.models.teacher import Teacher, teacher_config

MANIFEST = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "official_pointmap" / "full_manifest.json"

#: a small preset of every kind (CPU-fast), with whether it estimates the focal
SMALL = {"teacher": "test", "student": "fixture_tiny", "pointmap": "fixture_tiny"}


def _small(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "pointmap":
        return tiny_random_pointmap(seed=0)
    return registry.build_model(kind, SMALL[kind]).eval()


def test_kinds_are_registered() -> None:
    assert registry.kinds() == ("teacher", "student", "pointmap")
    assert set(SMALL) == set(registry.kinds())  # a new kind needs a small preset here too


@pytest.mark.parametrize("kind", ["teacher", "student", "pointmap"])
def test_every_preset_builds(kind: str) -> None:
    spec = registry.get_spec(kind)
    assert spec.presets
    for name in spec.presets:
        cfg = registry.preset_config(kind, name)
        assert isinstance(cfg, spec.config_class)
        with torch.device("meta"):  # shapes only: the large presets allocate nothing
            model = registry.build_model(kind, cfg)
        assert isinstance(model, spec.model_class) and registry.kind_of(model) == kind
        assert sum(p.numel() for p in model.parameters()) > 0
        assert registry.estimates_focal(model) == spec.estimates_focal(cfg)
        assert registry.model_config(model) is cfg


def test_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(CheckpointError, match="unknown model kind 'depthnet'; known kinds: teacher, student, pointmap"):
        registry.get_spec("depthnet")
    with pytest.raises(CheckpointError, match="known kinds"):
        registry.build_model("depthnet", {})
    with pytest.raises(CheckpointError, match="not a registered model kind"):
        registry.kind_of(torch.nn.Linear(2, 2))
    with pytest.raises(CheckpointError, match="needs a TeacherConfig, got StudentConfig"):
        registry.build_model("teacher", student_config("fixture_tiny"))


def test_unknown_kind_in_a_checkpoint_config(tmp_path: Path) -> None:
    save_pretrained(_small("teacher"), tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    meta["model_kind"] = "depthnet"
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="unknown model kind 'depthnet'; known kinds: teacher, student"):
        from_pretrained(tmp_path / "m")


def _predict(model: torch.nn.Module, f: float) -> dict[str, torch.Tensor]:
    image = torch.rand(1, 3, 56, 70, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return registry.predict_depth(model, image, torch.tensor([f], dtype=torch.float64))


@pytest.mark.parametrize("kind", ["teacher", "student", "pointmap"])
def test_checkpoint_round_trip(kind: str, tmp_path: Path) -> None:
    model = _small(kind)
    save_pretrained(model, tmp_path / kind)
    assert json.loads((tmp_path / kind / "config.json").read_text())["model_kind"] == kind
    loaded = from_pretrained(tmp_path / kind)
    assert type(loaded) is type(model) and registry.kind_of(loaded) == kind
    assert registry.model_config(loaded) == registry.model_config(model)
    ref, got = model.state_dict(), loaded.state_dict()
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
    a, b = _predict(model, 60.0), _predict(loaded, 60.0)
    assert torch.equal(a["depth"], b["depth"]) and torch.equal(a["valid"], b["valid"])


def test_pointmap_official_format_round_trip_and_detection(tmp_path: Path) -> None:
    model = _small("pointmap")
    path = save_official_checkpoint(model, tmp_path / "weights.pt")  # no telling name, no config.json
    loaded = from_pretrained(path)
    assert registry.kind_of(loaded) == "pointmap" and loaded.cfg == model.cfg
    assert torch.equal(_predict(model, 60.0)["depth"], _predict(loaded, 60.0)["depth"])
    state = torch.load(path, weights_only=True)
    assert registry.official_kind(state) == "pointmap"
    assert registry.official_kind(state["model"]) == "pointmap"  # a bare state dict too
    with torch.device("meta"):
        student_keys = Student(student_config("official")).state_dict()
    assert registry.official_kind(student_keys) == "student"
    assert registry.official_kind({"something.else": torch.zeros(1)}) == registry.DEFAULT_OFFICIAL_KIND


@pytest.mark.skipif(not MANIFEST.is_file(), reason=f"manifest not found at {MANIFEST} (shared folder absent)")
def test_released_pointmap_keys_are_detected() -> None:
    keys = {e["key"]: None for e in json.loads(MANIFEST.read_text())["keys"]}
    assert registry.official_kind(keys) == "pointmap"


@pytest.mark.parametrize("kind", ["teacher", "student", "pointmap"])
def test_call_protocol(kind: str) -> None:
    model = _small(kind)
    spec = registry.get_spec(kind)
    if kind != "student":  # the Student carries the protocol through the registry (models/protocol.py)
        assert model.kind == kind and model.config is registry.model_config(model)
        assert model.estimates_focal == registry.estimates_focal(model)
    out = _predict(model, 60.0)
    assert set(out) >= {"depth", "valid", "f_px"}
    assert out["depth"].reshape(1, 56, 70).shape == out["valid"].reshape(1, 56, 70).shape
    assert out["valid"].dtype == torch.bool and out["f_px"].dtype == torch.float64
    assert float(out["f_px"][0]) == 60.0
    nan = torch.tensor([float("nan")], dtype=torch.float64)
    image = torch.rand(1, 3, 56, 70)
    if registry.estimates_focal(model):
        f = registry.predict_depth(model, image, nan)["f_px"]
        assert torch.isfinite(f).all() and float(f[0]) > 0
    else:
        with pytest.raises(InvalidInputError, match="field-of-view head"):
            registry.predict_depth(model, image, nan)
    if not spec.takes_prompt:
        pd, pm = torch.ones(1, 1, 56, 70), torch.ones(1, 1, 56, 70, dtype=torch.bool)
        with pytest.raises(InvalidInputError, match="prompt-free"):
            registry.predict_depth(model, image, torch.tensor([60.0], dtype=torch.float64), pd, pm)


def test_student_with_fov_head_estimates() -> None:
    torch.manual_seed(0)
    model = registry.build_model("student", student_config("fixture_tiny", use_fov_head=True)).eval()
    assert registry.estimates_focal(model)
    mixed = torch.tensor([float("nan"), 50.0], dtype=torch.float64)
    out = registry.predict_depth(model, torch.rand(2, 3, 40, 48), mixed)
    assert float(out["f_px"][1]) == 50.0 and torch.isfinite(out["f_px"]).all()


def test_api_infer_runs_every_kind() -> None:
    image = (torch.rand(48, 64, 3) * 255).to(torch.uint8).numpy()
    for kind in registry.kinds():
        model = _small(kind)
        res = api.infer(model, image, f_px=55.0)
        assert res.model_kind == kind and res.intrinsics_source == IntrinsicsSource.GIVEN
        assert res.depth.shape == (48, 64) and res.intrinsics.fx == 55.0
    with pytest.warns(api.EstimatedFocalWarning, match="point-map model"):
        pm = api.infer(_small("pointmap"), image)
    assert pm.intrinsics_source == IntrinsicsSource.ESTIMATED and pm.valid.any()
    with pytest.raises(InvalidInputError, match="the pointmap is prompt-free"):
        api.infer(_small("pointmap"), image, f_px=55.0, prompt=(image[..., 0] * 0.0 + 1.0, image[..., 0] > 0))


def test_teacher_protocol_matches_forward() -> None:
    model = Teacher(teacher_config("test")).eval()
    image = torch.rand(2, 3, 56, 56)
    f = torch.tensor([40.0, 70.0], dtype=torch.float64)
    from metricanything.models.protocol import imagenet_normalise

    with torch.no_grad():
        want = model(imagenet_normalise(image), f_px=f)
        got = model.predict_depth(image, f)["depth"]
    assert torch.equal(want, got)
