"""The default weights shipped inside the package (``metricanything/assets/models/<kind>/``).

They are trained by this project's own commands on its embedded synthetic data; the exact command, config
and measured metrics sit next to them in ``MODEL_CARD.md`` and ``training.json``.
"""

from __future__ import annotations

from pathlib import Path

from metricanything.errors import CheckpointError

BUNDLED_KINDS = ("teacher", "student")


def bundled_root() -> Path:
    """Folder that holds the bundled checkpoints."""
    return Path(__file__).resolve().parents[1] / "assets" / "models"


def bundled_model_dir(kind: str) -> Path:
    """Checkpoint folder of the bundled ``teacher`` or ``student``; raises if it is not installed."""
    if kind not in BUNDLED_KINDS:
        raise CheckpointError(f"no bundled model of kind {kind!r}; choose from {BUNDLED_KINDS}")
    path = bundled_root() / kind
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise CheckpointError(
            f"{path}: the bundled {kind} is missing (expected config.json + model.safetensors); "
            "pass --model, or rebuild it with scripts/train_bundled.sh"
        )
    return path


def resolve_model(path_or_id: str | None, kind: str) -> str:
    """``path_or_id`` if given, else the bundled checkpoint of ``kind``."""
    return str(path_or_id) if path_or_id else str(bundled_model_dir(kind))
