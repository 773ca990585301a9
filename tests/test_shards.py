"""Tar shards: deterministic packing, exact random-access decoding, corrupt members, truncated and damaged tars."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest

from metricanything.camera import Intrinsics
from metricanything.data.folder import write_sample
from metricanything.data.sample import RGBDSample
from metricanything.data.shards import ShardIndex, ShardWriter, decode_sample, pack, resolve_shards
from metricanything.errors import DatasetError, InputFileError


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


def ids(index: ShardIndex) -> list[str]:
    return [index[k].sample_id for k in range(len(index))]


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
    index = ShardIndex(tmp_path / "a")
    assert len(index) == 10 and not index.notes
    assert ids(index) == [f"unit-{i:03d}" for i in range(10)]  # shards in order, samples in stored order
    for k in (9, 0, 5):  # random access, any order
        s, ref = index[k], tiny(k)
        assert np.array_equal(s.image, ref.image) and np.array_equal(s.valid, ref.valid)
        assert np.array_equal(s.depth, ref.depth) and s.intrinsics == ref.intrinsics
        assert (s.source_kind, s.sensor, s.scene_id, s.metric_scale_trusted) == ("captured", "lidar", ref.scene_id, True)
    assert index.where(5) == f"{a[1]}:shard_000000005"
    assert not list(tmp_path.glob("a/.*"))  # no temporary files left


def test_pack_sources_folder_and_iterables(tmp_path: Path) -> None:
    for i in range(3):
        write_sample(tmp_path / "folder", tiny(i, "fold"))
    result = pack([tmp_path / "folder", [tiny(7, "mem")]], tmp_path / "out", max_samples_per_shard=2, image_format="jpg")
    assert len(result.paths) == 2 and result.samples == 4
    index = ShardIndex(tmp_path / "out")
    assert ids(index) == ["fold-000", "fold-001", "fold-002", "mem-007"]
    assert all(np.array_equal(index[k].depth, tiny(index[k].meta["i"]).depth) for k in range(4))  # lossless depth with JPEG
    with pytest.raises(DatasetError, match="does not exist"):
        pack([tmp_path / "nothing"], tmp_path / "out2")
    with pytest.raises(DatasetError, match="no samples"):
        pack([[]], tmp_path / "out3")


def _corrupt_member(shard: Path, member_suffix: str, index: int = 0) -> str:
    with tarfile.open(shard) as tar:
        m = [m for m in tar.getmembers() if m.name.endswith(member_suffix)][index]
    with open(shard, "r+b") as f:
        f.seek(m.offset_data)
        f.write(b"\x00garbage" * (m.size // 8) + b"\x00" * (m.size % 8))
    return m.name.split(".")[0]


@pytest.mark.parametrize("member", [".rgb.png", ".depth.npy", ".meta.json", ".mask.png"])
def test_a_corrupt_member_fails_only_its_sample_and_names_it(tmp_path: Path, member: str) -> None:
    paths = write_set(tmp_path / "s", 8, 4)
    key = _corrupt_member(paths[1], member, 1)  # sample 5
    index = ShardIndex(tmp_path / "s")
    assert len(index) == 8 and not index.notes  # the tar itself is intact
    with pytest.raises(InputFileError, match=f"{key}{member.replace('.', '[.]')}"):
        index[5]
    assert [index[k].sample_id for k in (4, 6)] == ["unit-004", "unit-006"]


@pytest.mark.parametrize("cut", ["middle", "header", "end_marker"])
def test_truncated_shard_is_indexed_up_to_its_last_complete_sample(tmp_path: Path, cut: str) -> None:
    paths = write_set(tmp_path / "s", 12, 6)
    data = paths[0].read_bytes()
    with tarfile.open(paths[0]) as tar:
        members = tar.getmembers()
    meta3 = [m for m in members if m.name == "shard_000000003.meta.json"][0]
    end3 = meta3.offset_data + (meta3.size + 511) // 512 * 512  # the header of sample 4 starts here
    keep = {"middle": len(data) // 2, "header": end3 + 100, "end_marker": end3}[cut]
    paths[0].write_bytes(data[:keep])
    index = ShardIndex(tmp_path / "s")
    complete = 4 if cut != "middle" else sum(1 for m in members if m.name.endswith("meta.json") and m.offset_data + m.size <= keep)
    assert ids(index) == [f"unit-{i:03d}" for i in range(complete)] + [f"unit-{i:03d}" for i in range(6, 12)]
    assert len(index.notes) == 1 and str(paths[0]) in index.notes[0] and f"{complete} complete sample(s)" in index.notes[0]
    assert all(index[k].sample_id for k in range(len(index)))  # every indexed sample decodes


def test_garbage_in_the_middle_of_a_tar_ends_it_there(tmp_path: Path) -> None:
    paths = write_set(tmp_path / "s", 6, 6)
    with tarfile.open(paths[0]) as tar:
        m = [m for m in tar.getmembers() if m.name == "shard_000000002.rgb.png"][0]
    data = bytearray(paths[0].read_bytes())
    data[m.offset : m.offset + 512] = b"\xff" * 512  # the header of sample 2's first member
    paths[0].write_bytes(bytes(data))
    index = ShardIndex(tmp_path / "s")
    assert ids(index) == ["unit-000", "unit-001"] and "damaged" in index.notes[0]


def test_unreadable_shards_only(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "a.tar").write_bytes(b"not a tar at all" * 40)
    with pytest.raises(DatasetError, match="no readable samples.*unreadable"):
        ShardIndex(tmp_path / "s")


def test_extras_are_read_by_name(tmp_path: Path) -> None:
    with ShardWriter(tmp_path, "t", max_samples_per_shard=2) as w:
        for i in range(5):
            w.write(tiny(i), extras={"confidence": np.full((6, 8), i / 10, np.float32)})
    index = ShardIndex(tmp_path)
    assert len(index) == 5
    for k in (4, 0, 2):
        assert index.extra(k, "confidence")[0, 0] == pytest.approx(k / 10)
        assert np.array_equal(index.get(k).depth, tiny(k).depth)
    assert index.extra(1, "missing") is None


def test_decode_and_resolve_errors(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="depth.npy is missing"):
        decode_sample({"rgb.png": b"", "meta.json": b"{}"}, "x")
    with pytest.raises(DatasetError, match="does not exist"):
        resolve_shards(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no .tar"):
        ShardIndex(tmp_path / "empty")
    with pytest.raises(DatasetError, match="glob"):
        resolve_shards(str(tmp_path / "x-*.tar"))
    paths = write_set(tmp_path / "s", 2, 1)
    assert resolve_shards(str(tmp_path / "s" / "shard-*.tar")) == paths
