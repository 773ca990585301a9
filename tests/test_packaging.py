"""The package outside the checkout: build the wheel, install it into a fresh virtualenv, run the CLI from an
empty folder; and the wheel's metadata fits other people's environments (a torch range, heavy features as extras).

The build runs offline (``pip wheel --no-build-isolation`` with the test environment's setuptools) on a copy of
the sources, so the checkout gets no ``build/`` folder. The fresh virtualenv sees the already-installed
dependencies through one ``.pth`` line naming this environment's site-packages; a plain path line does not run
the ``.pth`` files inside that folder, so the checkout's editable install stays invisible there.
"""

from __future__ import annotations

import email.parser
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "metricanything"

#: packages that only optional features use: never a hard requirement
HEAVY_OPTIONAL = ("tensorboard", "h5py", "onnx", "onnxruntime", "onnxscript", "fastapi", "uvicorn", "python-multipart")


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "RANK", "WORLD_SIZE")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env


def _source_files() -> list[str]:
    """Files of the package in the checkout (tracked by git when it is a git checkout), relative to src/."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "src/metricanything"], cwd=ROOT, capture_output=True, check=True)
        files = [f for f in out.stdout.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        files = []
    if not files:
        files = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*") if p.is_file()]
    return [f[len("src/"):] for f in files if "__pycache__" not in f and not f.endswith(".pyc")]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    tree = work / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(PACKAGE, tree / "src" / "metricanything",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))  # fmt: skip
    out = work / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", str(tree),
         "-w", str(out)],
        capture_output=True, text=True, env=_clean_env(), timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = sorted(out.glob("metricanything-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(z.read(name).decode("utf-8"))


def test_wheel_ships_every_package_file_configs_and_assets_included(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    missing = sorted(set(_source_files()) - names)
    assert not missing, f"not in the wheel: {missing[:20]}"
    for needed in ("metricanything/configs/teacher_test.yaml", "metricanything/configs/student_tiny.yaml",
                   "metricanything/configs/benchmarks/synthetic_indoor.yaml",
                   "metricanything/assets/models/student/model.safetensors",
                   "metricanything/app/static/index.html"):  # fmt: skip
        assert needed in names, needed


def test_wheel_metadata_asks_a_torch_range_and_no_heavy_optional_package(wheel):
    meta = _metadata(wheel)
    requires = meta.get_all("Requires-Dist") or []
    hard = [r for r in requires if "extra ==" not in r]
    hard_names = {re.split(r"[\s<>=!~;\[(]", r, maxsplit=1)[0].lower().replace("_", "-") for r in hard}
    torch = [r for r in hard if re.match(r"torch\b", r) and not r.startswith("torchvision")]
    assert len(torch) == 1, hard
    spec = torch[0][len("torch"):].replace(" ", "")
    assert "==" not in spec and "===" not in spec and spec.startswith(">="), torch[0]
    assert not hard_names & set(HEAVY_OPTIONAL), sorted(hard_names & set(HEAVY_OPTIONAL))
    extras = set(meta.get_all("Provides-Extra") or [])
    assert {"onnx", "tensorboard", "loaders", "app", "dev"} <= extras
    by_extra: dict[str, set[str]] = {}
    for r in requires:
        m = re.search(r'extra\s*==\s*"([^"]+)"', r)
        if m:
            by_extra.setdefault(m.group(1), set()).add(re.split(r"[\s<>=!~;\[(]", r, maxsplit=1)[0].lower())
    assert by_extra["tensorboard"] == {"tensorboard"} and by_extra["loaders"] == {"h5py"}
    assert {"onnx", "onnxruntime", "onnxscript"} <= by_extra["onnx"]
    assert set(HEAVY_OPTIONAL) <= by_extra["dev"] | {"python-multipart"}


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("venv") / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True, text=True, env=_clean_env(), timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(site) / "_shared_dependencies.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    return venv


def _run(venv: Path, cwd: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / "metricanything"), *args], cwd=cwd, capture_output=True, text=True,
                          env=_clean_env(), timeout=timeout)  # fmt: skip


@pytest.mark.slow
def test_installed_wheel_works_from_an_empty_folder(installed, tmp_path):
    venv = installed
    empty = tmp_path / "empty"
    empty.mkdir()
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import metricanything, metricanything.config as c; "
         "from metricanything.models.bundled import bundled_root; "
         "print(metricanything.__file__); print(c.packaged_config_dir()); print(bundled_root() / 'student')"],
        cwd=empty, capture_output=True, text=True, env=_clean_env(), check=True,
    ).stdout.split()  # fmt: skip
    assert Path(where[0]).resolve().is_relative_to(venv.resolve()), where
    assert not Path(where[0]).resolve().is_relative_to(ROOT), where
    assert all(Path(w).resolve().is_relative_to(venv.resolve()) for w in where[1:]), where

    help_ = _run(venv, empty, "quickstart", "--help")
    assert help_.returncode == 0, help_.stderr
    assert "--teacher-config" in help_.stdout and "teacher_tiny" in help_.stdout

    ev = _run(venv, empty, "eval", "--benchmark", "synthetic_indoor", "--limit", "2", "--model", where[2],
              "--out", "ev", "--quiet", "--panels", "0")  # fmt: skip
    assert ev.returncode == 0, ev.stdout[-2000:] + ev.stderr[-3000:]
    metrics = json.loads((empty / "ev" / "metrics.json").read_text())
    assert metrics["num_samples"] == 2 and metrics["benchmark"]["name"] == "synthetic_indoor"

    tr = _run(venv, empty, "pretrain", "--config", "teacher_test", "--set", "train.steps=2", "--set",
              "data.val_samples=1", "--out", "run")  # fmt: skip
    assert tr.returncode == 0, tr.stdout[-2000:] + tr.stderr[-3000:]
    assert (empty / "run" / "model" / "model.safetensors").is_file()
    assert json.loads((empty / "run" / "summary.json").read_text())["step"] == 2
    assert sorted(p.name for p in empty.iterdir()) == ["ev", "run"]  # nothing else written to the folder

    bad = _run(venv, empty, "pretrain", "--config", "teacher_test", "--set", "train.stpes=2")
    assert bad.returncode == 2 and "train.stpes: unknown key (did you mean 'train.steps'?)" in bad.stderr


# ---------------------------------------------------------------------------------------------- missing extras
def _hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make ``modules`` look uninstalled: importing them fails and find_spec finds nothing."""
    import importlib.util

    real = importlib.util.find_spec
    for name in modules:
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            monkeypatch.delitem(sys.modules, loaded)
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda n, *a, **k: None if n.split(".")[0] in modules else real(n, *a, **k))  # fmt: skip


def test_a_missing_extra_names_the_pip_extra(monkeypatch, tmp_path):
    from metricanything.errors import MissingExtraError
    from metricanything.extras import require_extra

    _hide(monkeypatch, "h5py", "onnxscript")
    with pytest.raises(MissingExtraError, match=r'reading X needs the optional package h5py, which is not installed: '
                                                r'pip install "metricanything\[loaders\]"'):  # fmt: skip
        require_extra("h5py", "reading X")
    assert isinstance(MissingExtraError("x"), ImportError)

    from metricanything.data.loaders.nyu import load_nyu

    with pytest.raises(MissingExtraError, match=r"metricanything\[loaders\]"):
        next(iter(load_nyu(tmp_path)))

    from metricanything.tasks.export import export_onnx

    with pytest.raises(MissingExtraError, match=r"ONNX export needs the optional package onnxscript.*metricanything\[onnx\]"):
        export_onnx("no-such-model", tmp_path / "m.onnx")


def test_training_without_tensorboard_says_which_extra_and_still_logs(monkeypatch, tmp_path, capsys):
    from metricanything.train.config import load_config
    from metricanything.train.loop import Dist, Logger

    _hide(monkeypatch, "tensorboard", "torch.utils.tensorboard")
    cfg = load_config("teacher_test", {"train.progress": False})
    log = Logger(cfg, Dist(), tmp_path, 0)
    log.scalars(1, {"loss": 0.5}, "train")
    log.close()
    out = capsys.readouterr().out
    assert 'TensorBoard logging needs the optional package tensorboard, which is not installed: ' \
           'pip install "metricanything[tensorboard]"' in out
    assert log.tb is None
    assert json.loads((tmp_path / "log.jsonl").read_text())["loss"] == 0.5
