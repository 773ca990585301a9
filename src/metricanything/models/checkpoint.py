"""Checkpoints: a folder with ``config.json`` + ``model.safetensors`` that rebuilds a model exactly.

``config.json``::

    {"format": "metricanything-checkpoint", "format_version": 1, "model_kind": "teacher" | "student" | ...,
     "config": {...the full config dataclass...}, "metricanything_version": "...", "card": {...} | null}

:func:`from_pretrained` also reads a bare ``.safetensors`` with a sibling ``config.json``, the released
official checkpoints (``student_depthmap.pt``, a state dict mapped onto ``student_config("official")``;
``student_pointmap.pt``, ``{"model_config", "model"}``), told apart by their keys
(:func:`metricanything.models.registry.official_kind`), and Hugging Face hub ids. Model kinds come from
:mod:`metricanything.models.registry`. Loading is strict: missing or unexpected keys and shape mismatches raise :class:`CheckpointError` naming
the keys; a model is never returned with randomly initialised weights. Tensors stored in another floating
dtype (e.g. fp16 weights) are cast to the model's dtype.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from metricanything.atomic import atomic_path, write_text_atomic
from metricanything.errors import CheckpointError

FORMAT_NAME = "metricanything-checkpoint"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
OFFICIAL_STUDENT_FILE = "student_depthmap.pt"
#: released checkpoint files looked for in a folder without ``config.json`` (their kind is read from their keys)
OFFICIAL_FILES = (OFFICIAL_STUDENT_FILE, "student_pointmap.pt")
_MAX_LISTED = 20


# ---------------------------------------------------------------------------------------------- configs
def config_to_dict(cfg: Any) -> dict:
    """A config dataclass (possibly nested) as a JSON-serialisable dict (its ``to_dict`` when it has one)."""
    d = cfg.to_dict() if callable(getattr(cfg, "to_dict", None)) else dataclasses.asdict(cfg)
    return json.loads(json.dumps(d))


def config_from_dict(cls: type, data: dict, where: str = "") -> Any:
    """Rebuild a config dataclass ``cls`` from :func:`config_to_dict` output, strictly.

    A class with its own ``from_dict`` (e.g. a different on-disk layout) is read by it; every other one by the
    shared validator (:func:`metricanything.config.from_mapping`): unknown keys, missing required keys and
    wrong types raise :class:`CheckpointError` naming ``where`` (the file) and the dotted key.
    """
    from metricanything.config import from_mapping
    from metricanything.errors import ConfigError

    origin = where or f"{cls.__name__} config"
    if not isinstance(data, dict):
        raise CheckpointError(f"{origin}: config for {cls.__name__} must be a JSON object, got {type(data).__name__}")
    try:
        own = getattr(cls, "from_dict", None)
        if callable(own) and "origin" in inspect.signature(own).parameters:
            return own(dict(data), origin=origin)
        if callable(own):
            return own(dict(data))
        return from_mapping(cls, data, origin=origin)
    except ConfigError as e:
        raise CheckpointError(str(e) if str(e).startswith(origin) else f"{origin}: {e}") from e
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{origin}: invalid {cls.__name__}: {e}") from e


def _model_config(model: nn.Module) -> Any:
    for attr in ("config", "cfg"):
        cfg = getattr(model, attr, None)
        if cfg is not None and dataclasses.is_dataclass(cfg):
            return cfg
    raise CheckpointError(f"{type(model).__name__} has no dataclass config (.config / .cfg)")


def model_kind(model: nn.Module) -> str:
    """The registry kind of ``model`` (``"teacher"``, ``"student"``, ``"pointmap"``, ...)."""
    from metricanything.models.registry import kind_of

    return kind_of(model)


def build_model(kind: str, config: dict, where: str = "") -> nn.Module:
    """Instantiate an (uninitialised-weights) model of ``kind`` from a config dict (``where``: its file, for errors)."""
    from metricanything.models.registry import get_spec

    spec = get_spec(kind)
    return spec.build(config_from_dict(spec.config_class, config, where))


# ---------------------------------------------------------------------------------------------- saving
def _state_for_saving(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict with tensors made contiguous; tensors sharing storage are cloned (safetensors forbids it)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for k, v in model.state_dict().items():
        t = v.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        ptr = t.untyped_storage().data_ptr() if t.numel() else -1
        if ptr in seen or not t.is_contiguous():
            t = t.contiguous().clone()
        elif ptr != -1:
            seen.add(ptr)
        out[k] = t
    return out


def save_pretrained(model: nn.Module, directory: str | os.PathLike, extra_card: dict | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (each atomically) into ``directory``; return it.

    ``extra_card`` (JSON-serialisable) is stored under ``"card"`` in ``config.json`` (training data, licence,
    metrics, ...). The weights are written first, so a folder with a ``config.json`` always has its weights.
    """
    from safetensors.torch import save_file

    try:
        kind = model_kind(model)
    except CheckpointError as e:
        raise CheckpointError(f"cannot save a {type(model).__name__}: {e}") from None
    cfg = _model_config(model)
    from metricanything import __version__

    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model_kind": kind,
        "config": config_to_dict(cfg),
        "metricanything_version": __version__,
        "card": extra_card,
    }
    text = json.dumps(meta, indent=2, sort_keys=False)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_file(_state_for_saving(model), str(tmp), metadata={"format": FORMAT_NAME, "model_kind": kind})
    write_text_atomic(directory / CONFIG_NAME, text + "\n")
    return directory


# ---------------------------------------------------------------------------------------------- loading
def _listing(keys: list[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_MAX_LISTED])
    more = f", ... ({len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return f"{len(keys)}: {shown}{more}"


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise :class:`CheckpointError` unless ``state`` has exactly the model's keys with the same shapes.

    Works on a model built on the meta device (only names and shapes are compared).
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    not_tensors = [k for k in own if k in state and not isinstance(state[k], torch.Tensor)]
    mismatched = [
        f"{k} (checkpoint {tuple(state[k].shape)}, model {tuple(own[k].shape)})"
        for k in own
        if k in state and isinstance(state[k], torch.Tensor) and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_listing(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches {_listing(mismatched)}")
    if not_tensors:
        problems.append(f"entries that are not tensors {_listing(not_tensors)}")
    if problems:
        raise CheckpointError(f"{source} does not match {type(model).__name__}: " + "; ".join(problems))


def load_state_dict_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``state`` into ``model``; every key must match exactly in name and shape.

    Floating tensors are cast to the dtype of the model's tensor (so fp16 checkpoints load into fp32 models).
    Raises :class:`CheckpointError` naming the missing, unexpected and mis-shaped keys.
    """
    check_state_dict(model, state, source)
    own = model.state_dict()
    cast = {}
    for k, ref in own.items():
        t = state[k]
        if t.is_floating_point() and ref.is_floating_point() and t.dtype != ref.dtype:
            t = t.to(ref.dtype)
        cast[k] = t
    model.load_state_dict(cast, strict=True)


def _read_config(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: cannot read checkpoint config ({e})") from e
    if not isinstance(meta, dict) or "model_kind" not in meta or "config" not in meta:
        raise CheckpointError(f"{path}: not a metricanything checkpoint config (needs 'model_kind' and 'config')")
    version = meta.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is newer than this metricanything supports "
            f"({FORMAT_VERSION}); upgrade metricanything"
        )
    return meta


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (OSError, SafetensorError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read safetensors weights ({e})") from e


def _unsafe_globals(path: Path) -> list[str]:
    """The pickled classes / functions ``path`` refers to that plain-data loading refuses (read statically)."""
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # noqa: BLE001 - not a torch zip file (legacy pickle) or unreadable: nothing to list
        return []


def load_plain_torch_file(path: str | os.PathLike, what: str, fix: str) -> Any:
    """``torch.load`` of a file that may hold only plain data: tensors, numbers, strings, lists, tuples, dicts.

    Loads with ``weights_only=True``, so a file that pickles anything else (classes, functions: loading
    those can run arbitrary code) is refused *before* any of it runs, with a :class:`CheckpointError`
    naming the file, what it references, and ``fix``. ``what`` names the expected content (e.g.
    "training checkpoint"). Unreadable files raise :class:`CheckpointError` too.
    """
    import pickle

    p = Path(path)
    try:
        return torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        names = _unsafe_globals(p)
        refs = f" (it references {', '.join(names[:8])}{', ...' if len(names) > 8 else ''})" if names else ""
        # ``from None``: torch's own message suggests weights_only=False, i.e. running the file's code
        raise CheckpointError(
            f"{p}: refused to load this {what}: it holds pickled Python objects{refs}, not only tensors and "
            f"plain values, and unpickling them could run arbitrary code. {fix}"
        ) from None
    except Exception as e:  # noqa: BLE001 - torch raises many types for corrupt or truncated files
        raise CheckpointError(f"{p}: cannot read this {what} ({type(e).__name__}: {e}). {fix}") from e


def _training_checkpoint_error(path: Path, obj: dict) -> CheckpointError:
    """A model was asked for, but ``path`` is a training checkpoint (``<run>/checkpoints/step_*.pt``)."""
    run = path.parent.parent if path.parent.name == "checkpoints" else None
    exported = run / "model" if run is not None else None
    where = (
        f"load the run's exported model folder {exported}"
        if exported is not None and (exported / CONFIG_NAME).is_file()
        else "load the run's exported model folder (<run>/model, written when training finishes), or finish "
        "the run with --resume first"
    )
    return CheckpointError(
        f"{path}: this is a training checkpoint (step {obj.get('step')}, model + optimiser state for "
        f"--resume), not a model checkpoint; {where}"
    )


def _looks_like_training_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and "format_version" in obj and "optimizer" in obj and "step" in obj


def _load_torch_state(path: Path) -> dict[str, torch.Tensor]:
    return unwrap_state_dict(_read_torch_file(path), str(path))


_TORCH_FIX = (
    "Model weights are read only from safetensors files or plain PyTorch state dicts (name -> tensor); "
    "a training checkpoint <run>/checkpoints/step_*.pt is not a model: use <run>/model."
)


def _read_torch_file(path: Path) -> Any:
    """The plain content of a model ``.pt`` (weights-only loading); a training checkpoint is refused."""
    obj = load_plain_torch_file(path, "model file", _TORCH_FIX)
    if _looks_like_training_checkpoint(obj):
        raise _training_checkpoint_error(path, obj)
    return obj


def unwrap_state_dict(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """The state dict in a loaded ``.pt`` (itself, or under ``state_dict`` / ``model`` / ``model_state_dict``)."""
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{source}: expected a state dict (name -> tensor)")
    return obj


def build_and_load(build, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Build a model, check ``state`` against it (on the meta device: no memory) and load it strictly.

    When every buffer is persistent the model is materialised with ``to_empty`` (skipping the random init,
    slow for large models), since the state dict then overwrites every tensor; otherwise it is built normally.
    """
    try:
        with torch.device("meta"):
            model = build()
    except (RuntimeError, NotImplementedError):  # a constructor that needs real data: build normally
        model = build()
    check_state_dict(model, state, source)
    persistent = set(model.state_dict().keys())
    if any(t.is_meta for t in model.state_dict().values()):
        if all(name in persistent for name, _ in model.named_buffers()):
            model = model.to_empty(device="cpu")
        else:
            model = build()
    load_state_dict_strict(model, state, source)
    return model


def _finish(model: nn.Module, device: str | torch.device, dtype: torch.dtype | None) -> nn.Module:
    model = model.to(device=device)
    if dtype is not None:
        model = model.to(dtype=dtype)
    return model.eval()


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    return _load_safetensors(path) if path.suffix == ".safetensors" else _load_torch_state(path)


def _load_with_config(weights: Path, cfg_path: Path, device, dtype) -> nn.Module:
    meta = _read_config(cfg_path)
    kind = meta["model_kind"]
    state = _read_weights(weights)
    model = build_and_load(lambda: build_model(kind, meta["config"], f"{cfg_path}: config"), state, str(weights))
    return _finish(model, device, dtype)


def _load_official(path: Path, device, dtype, preset: str) -> nn.Module:
    """A released-format checkpoint without ``config.json``; its kind is told from its keys (never its name)."""
    from metricanything.models.registry import get_spec, official_kind

    obj = _load_safetensors(path) if path.suffix == ".safetensors" else _read_torch_file(path)
    spec = get_spec(official_kind(obj))
    if spec.load_official is None:  # pragma: no cover - official_kind only returns kinds with a loader
        raise CheckpointError(f"{path}: no released checkpoint format for {spec.kind} models")
    return _finish(spec.load_official(obj, str(path), preset), device, dtype)


def _load_dir(d: Path, device, dtype, preset: str) -> nn.Module:
    cfg_path = d / CONFIG_NAME
    if cfg_path.is_file():
        weights = d / WEIGHTS_NAME
        if not weights.is_file():
            candidates = sorted(d.glob("*.safetensors"))
            if len(candidates) != 1:
                raise CheckpointError(f"{d}: has {CONFIG_NAME} but no {WEIGHTS_NAME}")
            weights = candidates[0]
        return _load_with_config(weights, cfg_path, device, dtype)
    for name in OFFICIAL_FILES:
        if (d / name).is_file():
            return _load_official(d / name, device, dtype, preset)
    raise CheckpointError(f"{d}: no {CONFIG_NAME} (metricanything checkpoint) and no {' or '.join(OFFICIAL_FILES)}")


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:  # pragma: no cover - huggingface_hub is a dependency
        raise CheckpointError(f"{repo_id!r} is not a local path and huggingface_hub is not installed") from e
    try:
        return Path(snapshot_download(repo_id=repo_id))
    except Exception as e:  # noqa: BLE001 - the hub raises many types (offline, 404, auth)
        offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes")
        hint = " (HF_HUB_OFFLINE is set and the model is not in the local cache)" if offline else ""
        raise CheckpointError(
            f"{repo_id!r} is not a local file or folder, and downloading it from the Hugging Face hub failed"
            f"{hint}: {type(e).__name__}: {e}"
        ) from e


def from_pretrained(
    path_or_hub_id: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    official_preset: str = "official",
) -> nn.Module:
    """Load a model of any registered kind exactly as saved (eval mode).

    Accepts a checkpoint folder, a ``.safetensors`` file with a sibling ``config.json``, a ``.pt``/``.pth``
    file (the official ``student_depthmap.pt`` / ``student_pointmap.pt``, or a state dict with a sibling
    ``config.json``),
    or a Hugging Face hub id (downloaded with ``snapshot_download``). ``dtype`` casts the loaded model.
    A file without ``config.json`` is read as the released checkpoint its keys identify; a plain state dict
    of other keys is loaded into ``Student(student_config(official_preset))`` (errors name the keys).
    """
    p = Path(path_or_hub_id).expanduser()
    if p.is_dir():
        return _load_dir(p, device, dtype, official_preset)
    if p.is_file():
        if p.suffix not in (".safetensors", ".pt", ".pth", ".bin"):
            raise CheckpointError(f"{p}: unsupported checkpoint file type {p.suffix!r} (.safetensors or .pt)")
        sibling = p.parent / CONFIG_NAME
        if sibling.is_file():
            return _load_with_config(p, sibling, device, dtype)
        return _load_official(p, device, dtype, official_preset)
    text = str(path_or_hub_id)
    looks_local = text.startswith((".", "/", "~")) or text.endswith((".pt", ".pth", ".safetensors", ".json"))
    if looks_local or text.count("/") != 1:
        raise CheckpointError(f"{text}: no such checkpoint file or folder")
    return _load_dir(_download(text), device, dtype, official_preset)
