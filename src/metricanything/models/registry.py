"""The model registry: the one place that knows which model kinds exist and how each is built and run.

Every kind is one frozen :class:`ModelSpec` (its model class, config dataclass, presets, whether it takes prompt
points, whether it can estimate the focal length and how its released checkpoint looks).
Checkpoint loading and saving (:mod:`metricanything.models.checkpoint`), :func:`metricanything.api.infer`, the
CLI and the tasks ask the registry instead of switching on kind names.

The call protocol every kind follows (:func:`predict_depth`)::

    predict_depth(model, image, f_px, prompt_depth=None, prompt_mask=None) -> {"depth", "valid", "f_px", ...}

``image``: B x 3 x H x W float RGB in [0, 1] on the model's device (the model applies its own normalisation
and casts to its weight dtype); ``f_px``: B float64 horizontal focal lengths in pixels of this image, NaN =
unknown (only for a model that estimates the focal); ``prompt_depth`` / ``prompt_mask``: B x 1 x H x W metres /
bool, only for kinds that take prompts. Returns ``depth`` (B x [1 x] H x W metres), ``valid`` (bool, same
shape) and ``f_px`` (B float64: the focal used, estimated where it was NaN).

Adding a kind: write its module (model class with ``kind``, ``config``, ``estimates_focal`` and
``predict_depth``, a config dataclass, a preset function) and add one :class:`ModelSpec` to ``_SPECS`` below.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from metricanything.errors import CheckpointError
from metricanything.models.pointmap import PointMapModel, from_official_checkpoint
from metricanything.models.pointmap_config import POINTMAP_PRESETS, PointMapConfig, pointmap_config
from metricanything.models.student import STUDENT_PRESETS, Student, StudentConfig, student_config
from metricanything.models.teacher import TEACHER_PRESETS, Teacher, TeacherConfig, teacher_config

__all__ = [
    "ModelSpec", "get_spec", "kinds", "kind_of", "spec_of", "build_model", "preset_config", "predict_depth",
    "estimates_focal", "model_config", "official_kind",
]


@dataclass(frozen=True)
class ModelSpec:
    """Everything the package needs to know about one model kind.

    Attributes:
        kind: the kind's name (``model_kind`` in checkpoint ``config.json`` files, ``DepthResult.model_kind``).
        model_class: the ``nn.Module`` class (built as ``model_class(config)``).
        config_class: its config dataclass (read and written by :mod:`metricanything.models.checkpoint`).
        preset: preset name -> a fresh config.
        presets: the preset names.
        takes_prompt: the model accepts prompt points (metric depth hints).
        focal_estimator: how the model estimates the focal length (``None``: it cannot; see
            :attr:`estimates_focal`); quoted in warnings and ``intrinsics.json``.
        focal_origin: short label of that estimate (``intrinsics_origin`` in ``intrinsics.json``).
        estimates_focal: config -> whether a model of this config estimates the focal length.
        official_markers: state-dict key prefixes that identify this kind's released ``.pt`` checkpoint
            (all must be present); empty: no released format of its own.
        load_official: (loaded ``.pt`` content, source name, preset) -> model, for the released format.
    """

    kind: str
    model_class: type[nn.Module]
    config_class: type
    preset: Callable[[str], Any]
    presets: tuple[str, ...]
    takes_prompt: bool
    focal_estimator: str | None
    estimates_focal: Callable[[Any], bool]
    focal_origin: str = ""
    official_markers: tuple[str, ...] = ()
    load_official: Callable[[Mapping[str, Any], str, str], nn.Module] | None = None

    def build(self, config: Any) -> nn.Module:
        """A model of this kind (fresh weights) from a config dataclass instance or a preset name."""
        cfg = self.preset(config) if isinstance(config, str) else config
        if not isinstance(cfg, self.config_class):
            raise CheckpointError(
                f"a {self.kind} model needs a {self.config_class.__name__}, got {type(cfg).__name__}"
            )
        return self.model_class(cfg)


def _student_official(obj: Mapping[str, Any], source: str, preset: str) -> nn.Module:
    from metricanything.models.checkpoint import build_and_load, unwrap_state_dict

    state = unwrap_state_dict(obj, source)
    return build_and_load(lambda: Student(student_config(preset)), state, f"{source} (official student state dict, "
                          f"preset {preset!r})")  # fmt: skip


def _pointmap_official(obj: Mapping[str, Any], source: str, preset: str) -> nn.Module:
    if isinstance(obj, Mapping) and "model_config" in obj:  # the released {"model_config", "model"} file
        return from_official_checkpoint(obj, name=source)
    from metricanything.models.checkpoint import build_and_load, unwrap_state_dict

    state = unwrap_state_dict(obj, source)  # a bare state dict: the released architecture
    return build_and_load(lambda: PointMapModel(pointmap_config("official")), state,
                          f"{source} (point-map state dict without model_config: preset 'official')")


_SPECS: dict[str, ModelSpec] = {
    spec.kind: spec
    for spec in (
        ModelSpec(
            kind="teacher", model_class=Teacher, config_class=TeacherConfig, preset=teacher_config,
            presets=tuple(TEACHER_PRESETS), takes_prompt=True, focal_estimator=None,
            estimates_focal=lambda cfg: False,
        ),
        ModelSpec(
            kind="student", model_class=Student, config_class=StudentConfig, preset=student_config,
            presets=tuple(STUDENT_PRESETS), takes_prompt=False, focal_estimator="the model's field-of-view head",
            estimates_focal=lambda cfg: bool(cfg.use_fov_head),
            focal_origin="model FoV head", load_official=_student_official,
        ),
        ModelSpec(
            kind="pointmap", model_class=PointMapModel, config_class=PointMapConfig, preset=pointmap_config,
            presets=tuple(POINTMAP_PRESETS), takes_prompt=False,
            focal_estimator="the point-map model (focal and shift recovered from its affine point map)",
            estimates_focal=lambda cfg: True,
            focal_origin="point-map model (focal solver)",
            official_markers=("encoder.backbone.", "points_head.", "mask_head.", "scale_head."),
            load_official=_pointmap_official,
        ),
    )
}
#: the kind a bare state dict without a recognised layout is read as (the released student's plain state dict)
DEFAULT_OFFICIAL_KIND = "student"


def kinds() -> tuple[str, ...]:
    """The registered model kinds."""
    return tuple(_SPECS)


def get_spec(kind: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``kind``; :class:`CheckpointError` listing the known kinds otherwise."""
    spec = _SPECS.get(kind) if isinstance(kind, str) else None
    if spec is None:
        raise CheckpointError(f"unknown model kind {kind!r}; known kinds: {', '.join(kinds())}")
    return spec


def kind_of(model: nn.Module) -> str:
    """The kind of ``model`` (its class, or a ``kind`` / ``model_kind`` attribute naming a registered kind)."""
    for spec in _SPECS.values():
        if isinstance(model, spec.model_class):
            return spec.kind
    for attr in ("kind", "model_kind"):
        kind = getattr(model, attr, None)
        if isinstance(kind, str) and kind in _SPECS:
            return kind
    raise CheckpointError(
        f"{type(model).__name__} is not a registered model kind ({', '.join(kinds())}); see models/registry.py"
    )


def spec_of(model: nn.Module) -> ModelSpec:
    """The :class:`ModelSpec` of ``model``'s kind."""
    return _SPECS[kind_of(model)]


def model_config(model: nn.Module) -> Any:
    """The config dataclass of ``model`` (``.config``, else ``.cfg``)."""
    cfg = getattr(model, "config", None)
    return cfg if cfg is not None else getattr(model, "cfg", None)


def estimates_focal(model: nn.Module) -> bool:
    """Whether ``model`` estimates the focal length itself (a student's FoV head, the point-map solver)."""
    return bool(spec_of(model).estimates_focal(model_config(model)))


def preset_config(kind: str, name: str) -> Any:
    """A fresh config of ``kind``'s preset ``name``."""
    return get_spec(kind).preset(name)


def build_model(kind: str, config: Any) -> nn.Module:
    """A model of ``kind`` (fresh weights) from its config dataclass or a preset name."""
    return get_spec(kind).build(config)


def predict_depth(
    model: nn.Module,
    image: torch.Tensor,
    f_px: torch.Tensor,
    prompt_depth: torch.Tensor | None = None,
    prompt_mask: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Run ``model`` through the call protocol (see the module docstring): its own ``predict_depth``."""
    spec_of(model)  # a registered kind, or a CheckpointError naming the kinds
    return model.predict_depth(image, f_px, prompt_depth, prompt_mask)


def official_kind(obj: Any) -> str:
    """The kind of a loaded released-format ``.pt`` (a state dict, or ``{"model_config", "model"}``) by its keys.

    A kind matches when every one of its ``official_markers`` prefixes starts some key; otherwise the content is
    read as :data:`DEFAULT_OFFICIAL_KIND` (whose loader reports missing / unexpected keys).
    """
    state = obj.get("model") if isinstance(obj, Mapping) and isinstance(obj.get("model"), Mapping) else obj
    keys = [k for k in state if isinstance(k, str)] if isinstance(state, Mapping) else []
    for spec in _SPECS.values():
        if spec.official_markers and all(any(k.startswith(m) for k in keys) for m in spec.official_markers):
            return spec.kind
    return DEFAULT_OFFICIAL_KIND
