"""The real-frames protocol (``real_dev`` / ``eval --data folder:PATH``) on tiny generated folder datasets.

Completion with ``frac:F`` prompts drawn by the README recipe, scored on held-out pixels only; the linear and
nearest baselines on the same prompts; monocular next to the per-frame oracle constant; summary figures against
the linear baseline. Nothing here needs ``../shared`` except the smoke tests at the end (skipped without it).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.interpolate import LinearNDInterpolator, NearestNDInterpolator

from metricanything.camera import Intrinsics
from metricanything.cli import main as cli_main
from metricanything.data.folder import write_sample
from metricanything.data.sample import RGBDSample
from metricanything.errors import DatasetError, InvalidInputError
from metricanything.eval.baselines import Predictor, linear_fill
from metricanything.eval.benchmarks import load_benchmark, resolve_root, spec_from_dict
from metricanything.eval.protocol import compare_to_reference, fraction_prompt, oracle_constant
from metricanything.eval.runner import ORACLE, build_prompt, evaluate

REPO = Path(__file__).resolve().parents[1]
SHARED_FRAMES = REPO.parent / "shared" / "real_frames"
needs_frames = pytest.mark.skipif(not SHARED_FRAMES.is_dir(), reason=f"{SHARED_FRAMES} is absent (no ../shared)")


def make_frame(sid: str, h: int = 24, w: int = 32, seed: int = 0, holes: float = 0.2) -> RGBDSample:
    rng = np.random.default_rng(seed)
    vv, uu = np.mgrid[0:h, 0:w]
    depth = (2.0 + 0.05 * uu + 0.03 * vv + rng.uniform(0, 0.5, (h, w))).astype(np.float32)
    valid = rng.random((h, w)) >= holes
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    K = Intrinsics(30.0, 30.0, w / 2, h / 2, w, h)
    return RGBDSample(image, np.where(valid, depth, 0).astype(np.float32), valid, K, sample_id=sid, dataset="tiny")


@pytest.fixture
def frames(tmp_path):
    root = tmp_path / "frames"
    for i, sid in enumerate(["a", "b", "c"]):
        write_sample(root, make_frame(sid, seed=i, w=32 + 8 * i))
    return root


def tiny_spec(root, **over):
    spec = load_benchmark("real_dev")
    return dataclasses.replace(spec, root=str(root), root_env=None, **over)


def readme_prompt(depth, valid, frac):
    """The recipe of ../shared/real_frames/README.md, verbatim."""
    H, W = valid.shape
    rng = np.random.default_rng(0)
    vv, uu = np.nonzero(valid)
    pick = rng.choice(len(vv), size=int(frac * H * W), replace=False)
    return vv[pick], uu[pick], depth[vv[pick], uu[pick]]


class Recorder(Predictor):
    """Records what it is given; predicts the GT it was handed at construction, spoiled at the prompt pixels."""

    name = "recorder"
    accepts_prompt = True

    def __init__(self, gts):
        self.gts, self.prompts, self.focals = gts, {}, {}

    def predict(self, sample, prompt, intrinsics_for_model):
        assert not sample.valid.any()
        self.prompts.setdefault(sample.sample_id, []).append(prompt)
        self.focals[sample.sample_id] = intrinsics_for_model
        gt = self.gts[sample.sample_id]
        pred = np.where(gt > 0, gt, 1.0).astype(np.float32)
        if prompt is not None:
            d, m = prompt.to_map()
            pred[m] = 100.0 * d[m]  # wildly wrong where the prompt is: must not be scored
        return pred


class Constant(Predictor):
    accepts_prompt = True

    def __init__(self, name, values):
        self.name, self.values = name, values

    def predict(self, sample, prompt, intrinsics_for_model):
        return np.full((sample.height, sample.width), self.values[sample.sample_id], np.float32)


# ---------------------------------------------------------------------------------------------- prompts
def test_frac_prompt_is_exactly_the_readme_recipe():
    s = make_frame("a", h=40, w=50)
    for frac in (0.01, 0.05, 0.001 * 25):
        p = fraction_prompt(s.depth, s.valid, frac, seed=0)
        vv, uu, zz = readme_prompt(s.depth, s.valid, frac)
        np.testing.assert_array_equal(p.v, vv)
        np.testing.assert_array_equal(p.u, uu)
        np.testing.assert_array_equal(p.z, zz.astype(np.float64))
        assert len(p.u) == int(frac * 40 * 50)
    assert len(build_prompt("frac:0.01", s, 0).u) == 20
    with pytest.raises(InvalidInputError, match="frac:0.9 needs 1800 valid GT pixels"):
        fraction_prompt(s.depth, s.valid, 0.9)
    with pytest.raises(InvalidInputError, match="0 < F <= 1"):
        build_prompt("frac:2", s, 0)


def test_every_frame_gets_the_recipe_prompt_and_prompt_pixels_are_not_scored(frames):
    from metricanything.data.folder import FolderDataset

    samples = {s.sample_id: s for s in FolderDataset(frames)}
    rec = Recorder({k: s.depth for k, s in samples.items()})
    results = evaluate({"recorder": rec}, tiny_spec(frames), ["frac:0.05", "none"])
    for sid, s in samples.items():
        given = rec.prompts[sid][0]
        vv, uu, zz = readme_prompt(s.depth, s.valid, 0.05)  # seed 0 on every frame
        np.testing.assert_array_equal(given.v, vv)
        np.testing.assert_array_equal(given.u, uu)
        assert rec.focals[sid] == s.intrinsics  # the frame's own intrinsics, for every column
        assert rec.prompts[sid][1] is None
    rows = {(r["predictor"], r["prompt"], r["sample_id"]): r for r in results.records}
    for sid, s in samples.items():
        row = rows[("recorder", "frac:0.05", sid)]
        assert row["abs_rel"] == 0.0 and row["delta1"] == 1.0  # the spoiled prompt pixels are held out
        assert row["n"] == s.valid.sum() - int(0.05 * s.valid.size)
        assert row["prompt_points"] == int(0.05 * s.valid.size)
        assert rows[("recorder", "none", sid)]["n"] == s.valid.sum()  # monocular: every valid pixel
        # the baselines saw the same prompt and were scored on the same pixels
        lin = rows[("baseline:linear", "frac:0.05", sid)]
        assert lin["n"] == row["n"] and lin["prompt_points"] == row["prompt_points"]
        vv, uu, zz = readme_prompt(s.depth, s.valid, 0.05)
        d = np.zeros_like(s.depth)
        m = np.zeros(s.valid.shape, bool)
        d[vv, uu], m[vv, uu] = zz, True
        held = s.valid & ~m
        p = linear_fill(d, m)
        assert lin["abs_rel"] == pytest.approx(np.mean(np.abs(p[held] - s.depth[held]) / s.depth[held]), rel=1e-6)
    # incompatible cells are left out, not refused: no baseline in the monocular column, oracle only there
    assert results.summaries["baseline:linear"]["none"]["not_applicable"]
    assert results.summaries[ORACLE]["frac:0.05"]["not_applicable"]
    assert results.headline(ORACLE, "none") is not None


# ---------------------------------------------------------------------------------------------- baselines
def test_linear_baseline_is_exact_on_a_plane_and_matches_scipy():
    h, w = 30, 40
    vv, uu = np.mgrid[0:h, 0:w]
    plane = 3.0 + 0.02 * uu - 0.015 * vv
    rng = np.random.default_rng(1)
    mask = rng.random((h, w)) < 0.03
    mask[[0, 0, -1, -1], [0, -1, 0, -1]] = True  # the corners: the hull is the whole image
    out = linear_fill(np.where(mask, plane, 0), mask)
    np.testing.assert_allclose(out, plane, rtol=1e-6)
    # the definition: Delaunay-linear (LinearNDInterpolator), nearest prompt point outside the hull
    mask[[0, 0, -1, -1], [0, -1, 0, -1]] = False
    depth = rng.uniform(1.0, 5.0, (h, w))
    pts = np.stack(np.nonzero(mask)[::-1], axis=1).astype(float)
    z = depth[mask]
    grid = np.stack([uu.ravel(), vv.ravel()], axis=1).astype(float)
    ref = LinearNDInterpolator(pts, z)(grid).reshape(h, w)
    outside = np.isnan(ref)
    ref[outside] = NearestNDInterpolator(pts, z)(grid).reshape(h, w)[outside]
    out = linear_fill(np.where(mask, depth, 0), mask)
    inside = ~outside
    np.testing.assert_allclose(out[inside], ref[inside], rtol=1e-5)
    # nearest outside the hull (ties between equidistant points may pick either)
    d_out = np.abs(out[outside] - ref[outside])
    assert (d_out < 1e-5).mean() > 0.95


# ---------------------------------------------------------------------------------------------- oracle
def test_oracle_constant_on_a_constructed_case():
    g = np.array([1.0, 1.0, 1.0, 1.2, 1.2, 5.0, 5.0, 5.0, 5.0])
    best = oracle_constant(g)
    # the window {1, 1.2} (ratio 1.2 < 1.25^2) holds 5 values, {5} only 4
    assert best["delta1"] == pytest.approx(5 / 9)
    c = best["constant"]
    assert 1.2 / 1.25 < c < 1.25 and c == pytest.approx(math.sqrt(1.2))
    # AbsRel: the 1/g-weighted median; weights 1,1,1,.83,.83,.2 x4 -> the lower weighted median is 1.0
    assert best["abs_rel_constant"] == 1.0
    assert best["abs_rel_at_abs_rel_constant"] == pytest.approx(np.mean(np.abs(1.0 - g) / g))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_oracle_constant_beats_every_candidate_on_a_dense_grid(seed):
    rng = np.random.default_rng(seed)
    g = np.exp(np.concatenate([rng.normal(0.3, 0.4, 300), rng.normal(2.0, 0.2, 200)]))
    best = oracle_constant(g)
    grid = np.exp(np.linspace(np.log(g.min()) - 0.3, np.log(g.max()) + 0.3, 4001))
    d1 = np.array([np.mean(np.maximum(c / g, g / c) < 1.25) for c in grid])
    ar = np.array([np.mean(np.abs(c - g) / g) for c in grid])
    assert best["delta1"] >= d1.max()
    assert best["delta1"] == pytest.approx(np.mean(np.maximum(best["constant"] / g, g / best["constant"]) < 1.25))
    assert best["abs_rel_at_abs_rel_constant"] <= ar.min() + 1e-12
    assert best["abs_rel"] >= best["abs_rel_at_abs_rel_constant"]


def test_oracle_rows_in_the_prompt_free_column(frames):
    from metricanything.data.folder import FolderDataset

    results = evaluate({}, tiny_spec(frames), ["frac:0.05", "none"])
    for s in FolderDataset(frames):
        row = next(r for r in results.records if r["predictor"] == ORACLE and r["sample_id"] == s.sample_id)
        best = oracle_constant(s.depth[s.valid])
        assert row["constant"] == pytest.approx(best["constant"], rel=1e-6)
        assert row["delta1"] == pytest.approx(best["delta1"])
        assert row["abs_rel_constant"] == best["abs_rel_constant"]


# ---------------------------------------------------------------------------------------------- summaries
def test_compare_to_reference_figures():
    cmp = compare_to_reference({"a": 0.02, "b": 0.01, "c": 0.03, "x": 1.0}, {"a": 0.01, "b": 0.02, "c": 0.03})
    assert cmp["frames"] == 3 and cmp["frames_worse"] == 1
    assert cmp["geomean_ratio"] == pytest.approx((2.0 * 0.5 * 1.0) ** (1 / 3))
    assert (cmp["worst_ratio"], cmp["worst_frame"]) == (pytest.approx(2.0), "a")
    assert compare_to_reference({"a": 1.0}, {"b": 1.0}) is None


def test_summary_geomean_against_linear_in_an_evaluation(frames):
    from metricanything.data.folder import FolderDataset

    samples = list(FolderDataset(frames))
    values = {s.sample_id: float(np.median(s.depth[s.valid])) * f for s, f in zip(samples, (1.1, 0.7, 1.4), strict=True)}
    results = evaluate({"const": Constant("const", values)}, tiny_spec(frames), ["frac:0.05"])
    mine = results.per_frame("const", "frac:0.05")
    lin = results.per_frame("baseline:linear", "frac:0.05")
    ratios = np.array([mine[k] / lin[k] for k in mine])
    cmp = results.comparisons["frac:0.05"]["const"]
    assert cmp["geomean_ratio"] == pytest.approx(float(np.exp(np.mean(np.log(ratios)))))
    assert cmp["frames_worse"] == int((ratios > 1).sum()) and cmp["worst_ratio"] == pytest.approx(ratios.max())
    assert "baseline:nearest" in results.comparisons["frac:0.05"]
    from metricanything.eval.report import comparison_lines, markdown_report

    text = "\n".join(comparison_lines(results))
    assert f"{cmp['geomean_ratio']:.3f}" in text and "const / baseline:linear" in text
    assert "| a |" in markdown_report(results)  # per-frame rows


# ---------------------------------------------------------------------------------------------- spec / cli
def test_real_dev_spec_and_a_clear_error_when_its_frames_are_absent(tmp_path, monkeypatch):
    spec = load_benchmark("real_dev")
    assert spec.dataset == "folder" and spec.root == "../shared/real_frames" and not spec.seed_per_sample
    assert spec.prompts == ("frac:0.01", "frac:0.001", "lidar:16", "none") and spec.exclude_prompt_pixels
    assert spec.reference == "baseline:linear" and spec.oracle_constant and spec.alignment == "none"
    monkeypatch.delenv("METRICANYTHING_REAL_FRAMES", raising=False)
    monkeypatch.chdir(tmp_path)
    missing = dataclasses.replace(spec, root="no_such_frames")
    with pytest.raises(DatasetError, match=r"'no_such_frames' of benchmark 'real_dev' does not exist.*no_such_frames"):
        resolve_root(missing)
    (tmp_path / "no_such_frames").mkdir()
    assert resolve_root(missing) == tmp_path / "no_such_frames"  # relative to the current directory first
    with pytest.raises(DatasetError, match="reference 'baseline:ipbasic' must be one of compare"):
        spec_from_dict({**spec.to_dict(), "reference": "baseline:ipbasic", "depth_range": [0, None]})
    with pytest.raises(DatasetError, match="input_resize must be one of native, released"):
        spec_from_dict({"name": "x", "dataset": "folder", "input_resize": "antialias"})


def test_eval_cli_data_folder(frames, tmp_path, capsys):
    from metricanything.models.checkpoint import save_pretrained
    from metricanything.models.student import Student, student_config

    ckpt = save_pretrained(Student(student_config("fixture_tiny")), tmp_path / "student")
    out = tmp_path / "out"
    rc = cli_main(["eval", "--data", f"folder:{frames}", "--model", str(ckpt), "--prompt", "frac:0.05", "none",
                   "--frames", "a", "c", "--out", str(out), "--panels", "0", "--quiet"])  # fmt: skip
    text = capsys.readouterr().out
    assert rc == 0
    assert "real_dev@frames: 2 images" in text and "student:student mean δ1" in text
    assert "baseline:linear" in text and "| c |" in text and "| b |" not in text
    data = json.loads((out / "metrics.json").read_text())
    assert data["benchmark"]["dataset"] == "folder" and data["reference"] == "baseline:linear"
    assert set(data["comparisons"]["frac:0.05"]) == {"baseline:nearest", "baseline:knn_plane_guided"}
    assert data["results"]["student:student"]["frac:0.05"]["not_applicable"]
    rc = cli_main(["eval", "--data", f"folder:{tmp_path / 'nope'}", "--compare", "baseline:linear"])
    assert rc == 2 and "does not exist" in capsys.readouterr().err


def test_benchmark_script_skips_without_frames(tmp_path, capsys):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import real_frames
    finally:
        sys.path.pop(0)
    assert real_frames.main(["--frames-root", str(tmp_path / "absent")]) == 0
    assert "SKIP: the real frames are not available" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------- ../shared
@needs_frames
def test_real_dev_smoke_on_shared_frames(tmp_path, capsys):
    """One real frame through ``eval --benchmark real_dev`` with the bundled teacher and student."""
    assets = REPO / "src" / "metricanything" / "assets" / "models"
    rc = cli_main(["eval", "--benchmark", "real_dev", "--model", str(assets / "teacher"), "--model", str(assets / "student"),
                   "--frames", "nyu_00000", "--prompt", "frac:0.01", "none", "--out", str(tmp_path), "--panels", "0",
                   "--quiet"])  # fmt: skip
    text = capsys.readouterr().out
    assert rc == 0 and "| nyu_00000 | " in text
    data = json.loads((tmp_path / "metrics.json").read_text())
    teacher = data["results"]["teacher:teacher"]["frac:0.01"]["headline"]
    linear = data["results"]["baseline:linear"]["frac:0.01"]["headline"]
    assert 0 < linear["abs_rel"] < 0.1 and 0 < teacher["abs_rel"] < 0.2  # completion at 1 % is close to the GT
    from metricanything.data.folder import read_sample

    frame = read_sample(SHARED_FRAMES / "nyu_00000")
    oracle = data["results"][ORACLE]["none"]["headline"]
    assert oracle["delta1"] == pytest.approx(oracle_constant(frame.depth[frame.valid])["delta1"])
    assert oracle["n"] == frame.valid.sum()
