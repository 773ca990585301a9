"""The CLI is argument parsing only: each command's options round-trip through the command line that
:func:`metricanything.tasks.options.command_line` writes, ``--help`` stays free of heavy imports, and the
evaluation runner never imports the report writers."""

from __future__ import annotations

import argparse
import importlib
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from metricanything.cli import SUBCOMMANDS
from metricanything.tasks.evaluate import EvalOptions
from metricanything.tasks.export import ExportOptions
from metricanything.tasks.fuse import FuseOptions
from metricanything.tasks.infer import InferOptions, IntrinsicsOptions
from metricanything.tasks.options import command_line
from metricanything.tasks.quickstart import QuickstartOptions
from metricanything.tasks.render import RenderOptions
from metricanything.tasks.smoke import SmokeOptions
from metricanything.tasks.training import DistillOptions, FinetuneOptions, PseudoLabelOptions, TrainOptions

SRC = Path(__file__).resolve().parents[1] / "src"


def parse(command: str):
    """The options the real parser of ``metricanything <command>`` makes of a command line."""
    words = shlex.split(command)
    assert words[0] == "metricanything"
    module = importlib.import_module(f"metricanything.cli.{SUBCOMMANDS[words[1]][0]}")
    parser = argparse.ArgumentParser()
    module.configure(parser)
    return module.options(parser.parse_args(words[2:]))


CASES = [
    ("render", RenderOptions(out=Path("my data"))),
    ("render", RenderOptions(out=Path("d"), num=12, seed=3, size=(48, 36), sources="lidar,sfm", fov_deg=(55.0, 65.5),
                             depth_format="png", workers=2, progress=False)),
    ("pretrain", TrainOptions()),
    ("pretrain", TrainOptions(config="teacher_test", out="runs/t", resume=True, overrides={
        "train.steps": 5, "optim.lr": 1e-4, "data.sources": [{"kind": "folder", "path": "a b", "weight": 2.5}]})),
    ("distill", DistillOptions(teacher="runs/t/model", data=["s1", "s 2"], overrides={"train.batch_size": 2})),
    ("finetune", FinetuneOptions(teacher="t/model", data=["kitti@val:/data/k", "f"], val_data="v", prompt_pattern="radar:64",
                                 untrusted=True, config="teacher_small")),
    ("pseudo-label", PseudoLabelOptions(teacher="t", data=["render:8"], out="o")),
    ("pseudo-label", PseudoLabelOptions(teacher="t", data=["render:8:1:64x48", "f"], out="o", shard_size=4,
                                        prompt_mode="all", prompt_fraction=0.02, sparse_threshold=0.1, tta=False,
                                        min_confidence=0.2, conf_tau=0.1, align=False, image_format="jpg", limit=3,
                                        seed=1, device="cpu", progress=False)),
    ("eval", EvalOptions(models=["a", "b"], benchmark="synthetic_indoor", prompts=["points:500", "none"], out=Path("o"),
                         compare=["baseline:linear", "baseline:train_median=2.5"], root="r", limit=2, frames=["x", "y"],
                         panels=0, device="cuda", precision="bf16", progress=False)),
    ("eval", EvalOptions(data="folder:frames", list_only=True)),
    ("fuse", FuseOptions(out=Path("c.ply"), data=Path("views"), depth_source="gt")),
    ("fuse", FuseOptions(out=Path("c.glb"), images=[Path("a.png"), Path("b c.png")], poses=Path("p.json"), voxel=0.0,
                         free_space_tol=0.05, model="m", device="cuda")),
    ("smoke", SmokeOptions()),
    ("smoke", SmokeOptions(out=Path("s"), width=40, height=30)),
    ("export", ExportOptions(model="m", onnx=Path("m.onnx"))),
    ("export", ExportOptions(model="m", onnx=Path("m.onnx"), opset=19, verify=True, tolerance=1e-3, external_data=False,
                             optimize=False)),
    ("quickstart", QuickstartOptions(out=Path("q"), budget_minutes=2.5, render_size=(64, 48), teacher_config="teacher_test",
                                     student_overrides={"train.batch_size": 1}, fresh=True, progress=False)),
]  # fmt: skip


@pytest.mark.parametrize(("command", "options"), CASES, ids=[f"{c}-{i}" for i, (c, _) in enumerate(CASES)])
def test_command_line_round_trips_through_the_parser(command, options):
    line = command_line(command, options)
    assert line.startswith(f"metricanything {command}")
    assert parse(line) == options


def test_infer_command_line_round_trips_with_its_input_and_output():
    opts = InferOptions(model="m", prompt=Path("p.csv"), intrinsics=IntrinsicsOptions(fx=500.0, cx=31.5, cy=20.0),
                        device="cuda", precision="bf16", batch_size=2, ply=True, glb=True, no_vis=True, video_stride=3,
                        progress=False)  # fmt: skip
    line = command_line("infer", opts, "-i", "in put", "-o", "out")
    assert shlex.split(line)[2:6] == ["-i", "in put", "-o", "out"]
    assert parse(line) == opts
    assert command_line("infer", InferOptions(), "-i", "x", "-o", "y") == "metricanything infer -i x -o y"


def test_defaults_write_only_the_required_flags():
    assert command_line("render", RenderOptions(out=Path("d"))) == "metricanything render --out d"
    assert command_line("pretrain", TrainOptions()) == "metricanything pretrain"
    assert command_line("distill", DistillOptions()) == "metricanything distill"
    assert command_line("pretrain", TrainOptions(overrides={"a.b": [1, 2]})) == "metricanything pretrain --set 'a.b=[1, 2]'"


@pytest.mark.parametrize("command", ["", *SUBCOMMANDS])
def test_help_imports_no_heavy_module(command):
    # `metricanything --help` / `<command> --help` must stay fast: no torch, matplotlib or scipy behind them
    code = (
        "import sys\nfrom metricanything.cli import main\n"
        f"try:\n    main([a for a in ({command!r}, '--help') if a])\nexcept SystemExit as exc:\n    assert exc.code == 0\n"
        "print(sorted(m for m in ('torch', 'matplotlib', 'scipy') if m in sys.modules))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(SRC), "PATH": ""})  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "[]"


def test_the_evaluation_runner_does_not_import_the_report_writers():
    code = ("import sys, metricanything.eval.runner\n"
            "print([m for m in ('metricanything.eval.report', 'metricanything.eval.html', 'matplotlib') if m in sys.modules])")  # fmt: skip
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(SRC), "PATH": ""})  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
