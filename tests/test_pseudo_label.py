"""Pseudo-labelling: prompt choice from the sample's own GT, shard output, resume by shard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from metricanything.camera import Intrinsics
from metricanything.data.sample import RGBDSample
from metricanything.errors import ConfigError
from metricanything.train.pseudo_label import (
    PseudoLabelConfig,
    choose_prompt,
    parse_data_spec,
    pseudo_label_config,
    run_pseudo_label,
)


def _sample(valid_fraction: float, seed: int = 0) -> RGBDSample:
    rng = np.random.default_rng(seed)
    h, w = 20, 30
    valid = rng.uniform(size=(h, w)) < valid_fraction
    depth = np.where(valid, rng.uniform(1, 5, (h, w)), 0).astype(np.float32)
    return RGBDSample(np.zeros((h, w, 3), np.uint8), depth, valid, Intrinsics.from_fov(60, w, h))


def test_prompt_choice_follows_the_gt_density():
    cfg = PseudoLabelConfig(teacher="x", data=["y"], prompt_fraction=0.1, sparse_threshold=0.05)
    sparse = _sample(0.03)
    mask, mode = choose_prompt(sparse, cfg, 0)
    assert mode == "all" and np.array_equal(mask, sparse.valid)
    dense = _sample(1.0)
    mask, mode = choose_prompt(dense, cfg, 3)
    assert mode == "fraction" and mask.sum() == 60 and not (mask & ~dense.valid).any()
    again, _ = choose_prompt(dense, cfg, 3)
    assert np.array_equal(mask, again)  # seeded by the sample index
    empty = _sample(0.0)
    mask, mode = choose_prompt(empty, cfg, 0)
    assert mode == "none" and not mask.any()


def test_data_specs_and_config_errors(tmp_path):
    src = parse_data_spec("render:12:7:64x48")
    assert (src.kind, src.num_samples, src.seed, src.render_size) == ("render", 12, 7, [64, 48])
    assert parse_data_spec("render:3:0:64x48:rendered,lidar").sources == ["rendered", "lidar"]
    rig = parse_data_spec("render:3:0:64x48:rendered:55-65")
    assert (rig.sources, rig.fov_deg) == (["rendered"], [55.0, 65.0])
    assert parse_data_spec("render:3:0:64x48::40-40").sources is None  # default kinds, one FoV
    for bad in ("render:3:0:64x48:rendered:65-55", "render:3:0:64x48:rendered:0-50", "render:3:0:64x48:rendered:50",
                "render:3:0:64x48:rendered:50-60:extra"):
        with pytest.raises(ConfigError):
            parse_data_spec(bad)
    with pytest.raises(ConfigError):
        parse_data_spec("render:x")
    with pytest.raises(ConfigError):
        parse_data_spec(str(tmp_path / "missing"))
    with pytest.raises(ConfigError):
        pseudo_label_config(teacher="t", data=["render:2"], shard_size=0)


@pytest.mark.slow
def test_writes_shards_and_resumes_by_shard(tmp_path: Path):
    from metricanything.data.shards import ShardIndex
    from metricanything.models.checkpoint import save_pretrained
    from metricanything.models.teacher import Teacher, teacher_config

    torch.manual_seed(0)
    teacher_dir = save_pretrained(Teacher(teacher_config("test", vit="dinov3_test", image_size=None)), tmp_path / "t")
    out = tmp_path / "pl"
    cfg = pseudo_label_config(teacher=str(teacher_dir), data=["render:5:3:48x32"], out=str(out), shard_size=2,
                              progress=False, min_confidence=0.0)
    manifest = run_pseudo_label(cfg)
    assert manifest["num_samples"] == 5 and manifest["num_shards"] == 3
    tars = sorted(out.glob("pl*.tar"))
    assert [p.name for p in tars] == ["pl000000-000000.tar", "pl000001-000000.tar", "pl000002-000000.tar"]
    idx = ShardIndex(out)
    assert len(idx) == 5
    s = idx.get(4)
    assert s.sensor == "pseudo" and s.metric_scale_trusted and s.depth.shape == (32, 48)
    assert s.meta["pseudo_label"]["index"] == 4
    conf = idx.extra(4, "confidence")
    assert conf.shape == (32, 48) and (conf >= 0).all() and (conf <= 1).all()

    # resume: completed blocks are skipped (bytes untouched), a missing one is redone identically
    before = {p.name: p.read_bytes() for p in tars}
    mtimes = {p.name: p.stat().st_mtime_ns for p in tars}
    (out / "pl000001-index.json").unlink()
    run_pseudo_label(cfg)
    assert (out / "pl000001-index.json").is_file()
    for p in sorted(out.glob("pl*.tar")):
        assert p.read_bytes() == before[p.name]
        if p.name != "pl000001-000000.tar":
            assert p.stat().st_mtime_ns == mtimes[p.name]


def test_refuses_to_resume_a_different_job(tmp_path: Path):
    from metricanything.models.checkpoint import save_pretrained
    from metricanything.models.teacher import Teacher, teacher_config

    torch.manual_seed(0)
    teacher_dir = save_pretrained(Teacher(teacher_config("test", vit="dinov3_test", image_size=None)), tmp_path / "t")
    out = tmp_path / "pl"
    common = dict(teacher=str(teacher_dir), out=str(out), shard_size=2, progress=False, min_confidence=0.0)
    run_pseudo_label(pseudo_label_config(data=["render:2:3:48x32"], **common))
    assert (out / "job.json").is_file()
    before = sorted(p.name for p in out.iterdir())
    # other data into the same folder: refused, naming what differs, nothing written
    with pytest.raises(ConfigError, match="data"):
        run_pseudo_label(pseudo_label_config(data=["render:2:4:48x32"], **common))
    # the same options with a re-trained teacher at the same path: refused too
    torch.manual_seed(1)
    save_pretrained(Teacher(teacher_config("test", vit="dinov3_test", image_size=None)), teacher_dir)
    with pytest.raises(ConfigError, match="teacher_sha256"):
        run_pseudo_label(pseudo_label_config(data=["render:2:3:48x32"], **common))
    assert sorted(p.name for p in out.iterdir()) == before
    # a folder from before job.json existed is checked against its manifest
    (out / "job.json").unlink()
    with pytest.raises(ConfigError, match="data"):
        run_pseudo_label(pseudo_label_config(data=["render:2:4:48x32"], **common))
    # run-only options (device, progress) may change; the limit may not (it sizes the last block)
    run_pseudo_label(pseudo_label_config(data=["render:2:3:48x32"], device="cpu", **common))
    with pytest.raises(ConfigError, match="limit"):
        run_pseudo_label(pseudo_label_config(data=["render:2:3:48x32"], limit=1, **common))
