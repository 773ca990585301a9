"""Optional features and the pip extras that install them.

The core install (``pip install metricanything``) runs inference, training, evaluation and every task on the
core dependencies. Heavier packages that only some features use are extras::

    pip install "metricanything[tensorboard]"   # TensorBoard logging of training runs (else: log.jsonl only)
    pip install "metricanything[loaders]"       # native dataset loaders that need h5py (NYU Depth v2 .mat)
    pip install "metricanything[onnx]"          # metricanything export (ONNX) and its verification
    pip install "metricanything[app]"           # metricanything app (local web page)

A feature whose package is missing raises :class:`~metricanything.errors.MissingExtraError` (an ImportError)
saying which extra to install.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from metricanything.errors import MissingExtraError

#: import name -> (distribution name, extra that installs it)
EXTRA_PACKAGES: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "h5py": ("h5py", "loaders"),
    "onnx": ("onnx", "onnx"),
    "onnxruntime": ("onnxruntime", "onnx"),
    "onnxscript": ("onnxscript", "onnx"),
    "fastapi": ("fastapi", "app"),
    "uvicorn": ("uvicorn", "app"),
    "multipart": ("python-multipart", "app"),
}


def missing_extra_message(module: str, feature: str) -> str:
    """``<feature> needs the optional package <dist>, which is not installed: pip install "metricanything[<extra>]"``."""
    dist, extra = EXTRA_PACKAGES[module]
    return f'{feature} needs the optional package {dist}, which is not installed: pip install "metricanything[{extra}]"'


def require_extra(module: str, feature: str) -> ModuleType:
    """Import the optional package ``module`` for ``feature``, or raise :class:`MissingExtraError` naming its extra."""
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if top not in EXTRA_PACKAGES or importlib.util.find_spec(top) is not None:
            raise  # not an extra, or installed but broken: the original error says more
        raise MissingExtraError(missing_extra_message(top, feature)) from exc


__all__ = ["EXTRA_PACKAGES", "missing_extra_message", "require_extra"]
