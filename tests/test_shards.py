"""Tar shards: deterministic packing, exact decoding, worker x rank splitting, corrupt members, mixtures."""

from __future__ import annotations

import collections
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from metricanything.camera import Intrinsics
from metricanything.data.folder import write_sample
from metricanything.data.sample import RGBDSample
from metricanything.data.shards import (
    ShardDataset,
    ShardWriter,
    collate_samples,
    decode_sample,
    iter_shard,
    pack,
    resolve_shards,
)
from metricanything.errors import DatasetError, InputFileError, InvalidInputError


def tiny(i: int, dataset: str = "unit", h: int = 6, w: int = 8) -> RGBDSample:
    rng = np.random.default_rng(i)
    depth = rng.uniform(0.5, 20, (h, w)).astype(np.float32)
    valid = rng.random((h, w)) > 0.2
    depth[~valid] = 0
    K = Intrinsics(10.0 + i, 11.0 + i, 3.5, 2.5, w, h)
    return RGBDSample(
        rng.integers(0, 256, (h, w, 3), dtype=np.uint8), depth, valid, K, source_kind="captured", sensor="lidar",
        dataset=dataset, sample_id=f"{dataset}-{i:03d}", scene_id=f"scene{i % 3}", meta={"i": i},
    )


def write_set(out: Path, n: int, per_shard: int, dataset: str = "unit", start: int = 0) -> list[Path]:
    with ShardWriter(out, "shard", per_shard) as w:
        for i in range(start, start + n):
            w.write(tiny(i, dataset))
    return w.paths


def ids(stream) -> list[str]:
    return [s.sample_id for s in stream]


def test_pack_is_deterministic_and_exact(tmp_path: Path) -> None:
    a = write_set(tmp_path / "a", 10, 4)
    b = write_set(tmp_path / "b", 10, 4)
    assert [p.name for p in a] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    for pa, pb in zip(a, b, strict=True):
        assert pa.read_bytes() == pb.read_bytes()
    assert (tmp_path / "a" / "shard-index.json").read_bytes() == (tmp_path / "b" / "shard-index.json").read_bytes()
    with tarfile.open(a[0]) as tar:
        infos = tar.getmembers()
    assert [m.name for m in infos[:4]] == [
        "shard_000000000.rgb.png", "shard_000000000.depth.npy", "shard_000000000.mask.png", "shard_000000000.meta.json"
    ]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in infos} == {(0, 0, 0, "", "", 0o644)}
    ds = ShardDataset(tmp_path / "a")
    assert ds.total_samples == 10
    got = list(ds)
    assert sorted(ids(got)) == [f"unit-{i:03d}" for i in range(10)]
    for s in got:
        ref = tiny(s.meta["i"])
        assert np.array_equal(s.image, ref.image) and np.array_equal(s.valid, ref.valid)
        assert np.array_equal(s.depth, ref.depth) and s.intrinsics == ref.intrinsics
        assert (s.source_kind, s.sensor, s.scene_id) == ("captured", "lidar", ref.scene_id)
    assert not list(tmp_path.glob("a/.*"))  # no temporary files left


def test_pack_sources_folder_and_iterables(tmp_path: Path) -> None:
    for i in range(3):
        write_sample(tmp_path / "folder", tiny(i, "fold"))
    paths = pack([tmp_path / "folder", [tiny(7, "mem")]], tmp_path / "out", max_samples_per_shard=2, image_format="jpg")
    assert len(paths) == 2
    got = list(ShardDataset(tmp_path / "out"))
    assert sorted(ids(got)) == ["fold-000", "fold-001", "fold-002", "mem-007"]
    assert all(np.array_equal(s.depth, tiny(s.meta["i"]).depth) for s in got)  # depth lossless even with JPEG
    with pytest.raises(DatasetError, match="does not exist"):
        pack([tmp_path / "nothing"], tmp_path / "out2")
    with pytest.raises(DatasetError, match="no samples"):
        pack([[]], tmp_path / "out3")


def consume(ds: ShardDataset, workers: int) -> list[str]:
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers)
    return ids(loader)


@pytest.mark.parametrize("n, per_shard", [(24, 3), (9, 5)])  # 8 shards >= 4 consumers; 2 shards < 4 consumers
def test_two_workers_two_ranks_see_each_sample_once(tmp_path: Path, n: int, per_shard: int) -> None:
    write_set(tmp_path / "s", n, per_shard)
    expected = sorted(f"unit-{i:03d}" for i in range(n))
    for epoch in (0, 1):
        seen = []
        per_rank = []
        for rank in (0, 1):
            ds = ShardDataset(tmp_path / "s", rank=rank, world_size=2, shuffle_buffer=4, seed=5)
            ds.set_epoch(epoch)
            got = consume(ds, 2)
            per_rank.append(got)
            seen += got
        assert sorted(seen) == expected, epoch
        assert all(per_rank), "every rank gets work"


def test_epochs_reshuffle_deterministically(tmp_path: Path) -> None:
    write_set(tmp_path / "s", 20, 2)
    ds = ShardDataset(tmp_path / "s", shuffle_buffer=8, seed=1)
    e0 = ids(ds)
    assert ids(ds) == e0  # same epoch, same order
    ds.set_epoch(1)
    e1 = ids(ds)
    assert e1 != e0 and sorted(e1) == sorted(e0)


def _corrupt_member(shard: Path, member_suffix: str, index: int = 0) -> str:
    with tarfile.open(shard) as tar:
        m = [m for m in tar.getmembers() if m.name.endswith(member_suffix)][index]
    with open(shard, "r+b") as f:
        f.seek(m.offset_data)
        f.write(b"\x00garbage" * (m.size // 8) + b"\x00" * (m.size % 8))
    return m.name.split(".")[0]


def test_corrupt_member_is_skipped_counted_and_reported(tmp_path: Path) -> None:
    paths = write_set(tmp_path / "s", 8, 4)
    _corrupt_member(paths[1], ".rgb.png", 1)  # sample 5
    ds = ShardDataset(tmp_path / "s")
    with pytest.warns(RuntimeWarning, match="skipped 1 corrupt"):
        got = ids(ds)
    assert sorted(got) == [f"unit-{i:03d}" for i in range(8) if i != 5]
    assert ds.corrupt_count == 1 and ds.stats()["corrupt_samples"] == 1 and ds.stats()["samples"] == 7
    assert "rgb.png" in ds.corrupt_examples[0]
    with pytest.raises(InputFileError, match="rgb.png"):
        list(ShardDataset(tmp_path / "s", strict=True))


def test_corrupt_count_reaches_the_main_process_from_workers(tmp_path: Path) -> None:
    paths = write_set(tmp_path / "s", 8, 2)
    _corrupt_member(paths[0], ".depth.npy", 0)
    _corrupt_member(paths[3], ".meta.json", 1)
    ds = ShardDataset(tmp_path / "s", rank=0, world_size=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = consume(ds, 2)
    assert len(got) == 6 and ds.corrupt_count == 2


def test_truncated_shard_keeps_earlier_samples(tmp_path: Path) -> None:
    paths = write_set(tmp_path / "s", 6, 6)
    data = paths[0].read_bytes()
    paths[0].write_bytes(data[: len(data) // 2])
    ds = ShardDataset(tmp_path / "s")
    with pytest.warns(RuntimeWarning, match="corrupt"):
        got = ids(ds)
    assert 1 <= len(got) < 6 and got == [f"unit-{i:03d}" for i in range(len(got))]
    assert ds.stats()["corrupt_shards"] == 1
    with pytest.raises(InputFileError, match="truncated"):
        list(iter_shard(paths[0]))


def test_mixture_weights_are_respected(tmp_path: Path) -> None:
    write_set(tmp_path / "a", 6, 3, "A")
    write_set(tmp_path / "b", 5, 5, "B", start=100)
    write_set(tmp_path / "c", 2, 2, "C", start=200)
    ds = ShardDataset(
        {"a": tmp_path / "a", "b": tmp_path / "b", "c": tmp_path / "c"}, {"a": 3.0, "b": 1.0, "c": 0.0},
        mode="mixture", samples_per_epoch=2000, seed=3,
    )
    counts = collections.Counter(s.dataset for s in ds)
    assert sum(counts.values()) == 2000 and counts["C"] == 0
    assert abs(counts["A"] / 2000 - 0.75) < 0.035
    # every sample of a source is visited (cycling through its shards)
    per_id = collections.Counter(s.sample_id for s in ShardDataset([tmp_path / "a"], mode="mixture", samples_per_epoch=60))
    assert len(per_id) == 6 and set(per_id.values()) == {10}


def test_mixture_split_over_ranks_gives_requested_total(tmp_path: Path) -> None:
    write_set(tmp_path / "a", 8, 2, "A")
    total = 0
    for rank in range(3):
        ds = ShardDataset(tmp_path / "a", mode="mixture", samples_per_epoch=50, rank=rank, world_size=3)
        total += len(ids(ds))
    assert total == 50


def test_transform_and_collate(tmp_path: Path) -> None:
    write_set(tmp_path / "s", 4, 4)
    ds = ShardDataset(tmp_path / "s", transform=lambda s: s.replace(meta={**s.meta, "t": True}))
    samples = list(ds)
    assert all(s.meta["t"] for s in samples)
    batch = collate_samples(samples)
    assert batch["image"].shape == (4, 3, 6, 8) and batch["image"].dtype == torch.float32
    s0 = samples[0]
    assert torch.allclose(batch["image"][0, 1], torch.from_numpy(s0.image[..., 1]).float() / 255)
    assert torch.equal(batch["valid"][0, 0], torch.from_numpy(s0.valid))
    assert torch.equal(batch["depth"][0, 0], torch.from_numpy(s0.depth))
    assert batch["fx"].tolist() == [s.intrinsics.fx for s in samples]
    assert batch["cy"].tolist() == [2.5] * 4 and batch["metric_scale_trusted"].all()
    assert batch["sample_id"] == [s.sample_id for s in samples] and batch["sensor"] == ["lidar"] * 4
    as_dicts = [{"image": s.image, "depth": s.depth, "valid": s.valid, "intrinsics": s.intrinsics.to_dict()} for s in samples]
    assert torch.equal(collate_samples(as_dicts)["depth"], batch["depth"])
    with pytest.raises(InvalidInputError, match="one size"):
        collate_samples([samples[0], tiny(9, h=5)])
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate_samples)
    assert [b["image"].shape[0] for b in loader] == [2, 2]


def test_decode_and_resolve_errors(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="depth.npy is missing"):
        decode_sample({"rgb.png": b"", "meta.json": b"{}"}, "x")
    with pytest.raises(DatasetError, match="does not exist"):
        resolve_shards(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no .tar"):
        ShardDataset(tmp_path / "empty")
    with pytest.raises(DatasetError, match="glob"):
        resolve_shards(str(tmp_path / "x-*.tar"))
    paths = write_set(tmp_path / "s", 2, 1)
    assert resolve_shards(str(tmp_path / "s" / "shard-*.tar")) == paths
    with pytest.raises(InvalidInputError, match="weight"):
        ShardDataset([tmp_path / "s"], [-1.0])
    with pytest.raises(InvalidInputError, match="mode"):
        ShardDataset(tmp_path / "s", mode="bogus")
