"""Atomic writes: nothing half-written, ordinary permissions."""

from __future__ import annotations

import os
import stat

import pytest

from metricanything.atomic import atomic_open, atomic_path, write_text_atomic


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "a.txt"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as f:
        f.write("new, half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_written_files_get_ordinary_permissions(tmp_path):
    target = tmp_path / "b.bin"
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".bin" and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_atomic_open_refuses_read_modes(tmp_path):
    with pytest.raises(ValueError), atomic_open(tmp_path / "c", "r"):
        pass
