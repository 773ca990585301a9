"""``metricanything app``: a local web page to drop a photo and look at its metric depth and point cloud.

The server (:mod:`metricanything.app.server`) needs the optional extra ``pip install "metricanything[app]"``
(FastAPI, uvicorn, python-multipart); everything that is not HTTP (models, one request, its products, the
bounded result store) lives in :mod:`metricanything.app.engine` and needs only the core dependencies. The page
(``static/``) uses three.js, vendored unmodified from its npm package (``static/vendor/three/``, MIT), so the
app needs no internet at run time.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

#: import name -> distribution name of the packages of the ``app`` extra
APP_PACKAGES: dict[str, str] = {"fastapi": "fastapi", "uvicorn": "uvicorn", "multipart": "python-multipart"}
#: version of the vendored three.js (npm package ``three``)
THREE_VERSION = "0.180.0"


def missing_app_packages() -> list[str]:
    """Distribution names of the ``app`` extra's packages that are not installed."""
    return [dist for mod, dist in APP_PACKAGES.items() if importlib.util.find_spec(mod) is None]


def static_dir() -> Path:
    """Folder of the page, its script, its style sheet and the vendored three.js."""
    return Path(__file__).resolve().parent / "static"
