"""`metricanything app`: help without the extra, a clear exit without it, a live server on a free port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from metricanything.cli import SUBCOMMANDS, main

SRC = Path(__file__).resolve().parents[1] / "src"


def _block_app_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    for mod in ("fastapi", "uvicorn", "multipart"):
        monkeypatch.setitem(sys.modules, mod, None)  # import and find_spec now fail as if not installed


def test_help_works_without_the_app_extra(monkeypatch, capsys) -> None:
    _block_app_packages(monkeypatch)
    assert "app" in SUBCOMMANDS
    with pytest.raises(SystemExit) as exc:
        main(["app", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--port", "--host", "--model", "--max-megapixels", "0 = any free port", "127.0.0.1"):
        assert flag in out


def test_missing_extra_exits_2_naming_it(monkeypatch, capsys) -> None:
    _block_app_packages(monkeypatch)
    assert main(["app", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert 'pip install "metricanything[app]"' in err and "fastapi" in err and "python-multipart" in err


def test_bad_flags_exit_2(capsys) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    pytest.importorskip("multipart")
    assert main(["app", "--port", "70000"]) == 2
    assert "--port must be 0-65535" in capsys.readouterr().err
    assert main(["app", "--model", "/no/such/model"]) == 2
    assert "--model /no/such/model: no such file or folder" in capsys.readouterr().err


def test_serves_on_a_free_loopback_port_and_prints_the_url(tmp_path) -> None:
    for mod in ("fastapi", "uvicorn", "multipart"):
        pytest.importorskip(mod)
    env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""), HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "metricanything.cli", "app", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert "serving on http://127.0.0.1:" in line, line + proc.stderr.read() if proc.poll() is not None else line
        url = line.split("serving on ")[1].split()[0]
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        assert port > 0
        with urllib.request.urlopen(url + "api/config", timeout=30) as r:
            cfg = json.load(r)
        assert cfg["default_model"] == "auto" and cfg["allow_model_paths"] is True
        with urllib.request.urlopen(url, timeout=30) as r:
            assert b"metricanything" in r.read()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, -signal.SIGINT, 130)
