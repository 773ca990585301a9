"""WebDataset-style tar shards: a deterministic writer and the one random-access reader.

A shard ``<prefix>-000000.tar`` holds consecutive groups of members sharing a key (the part of the member
name before the first dot)::

    <key>.rgb.png | <key>.rgb.jpg   RGB image (8 bit)
    <key>.depth.npy                 float32 H x W metres, 0 where invalid
    <key>.mask.png                  uint8 H x W, 0 invalid / 255 valid
    <key>.<name>.npy                optional extra arrays (ignored by the sample decoder)
    <key>.meta.json                 RGBDSample.meta_dict() + {"format_version": 1}; always a sample's last member

Tar headers are fixed (mtime 0, uid/gid 0, no owner names, mode 0644, ustar), members are written in a
fixed order, so packing the same samples twice gives byte-identical shards. Each shard is written to a
temporary file and renamed when complete; ``<prefix>-index.json`` lists shards and their sample counts.

:class:`ShardIndex` reads member offsets from the tar headers once and then decodes any sample by its
position (shards in sorted order, samples in stored order). A damaged tar (cut short, or garbage after some
point) is indexed up to its last complete sample and the damage is recorded in ``ShardIndex.notes``.
"""

from __future__ import annotations

import glob as _glob
import io
import json
import os
import re
import tarfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metricanything.atomic import atomic_path
from metricanything.data.folder import (
    FORMAT_VERSION,
    decode_depth_npy,
    decode_image,
    decode_mask,
    decode_npy,
    encode_image,
    encode_mask,
    encode_npy,
    json_bytes,
    sample_from_meta,
)
from metricanything.data.sample import RGBDSample
from metricanything.errors import DatasetError, InputFileError, InvalidInputError

__all__ = ["ShardWriter", "ShardIndex", "PackResult", "pack", "decode_sample", "resolve_shards"]

_KEY_RE = re.compile(r"^[A-Za-z0-9_\-]+$")


# ---------------------------------------------------------------------------------------------- writer
def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


class ShardWriter:
    """Write :class:`RGBDSample` s into ``out_dir/<prefix>-NNNNNN.tar`` shards of at most N samples.

    Use as a context manager (or call :meth:`close`); the last, partial shard is written on close.
    Existing ``<prefix>-NNNNNN.tar`` files in ``out_dir`` are replaced, and those this run does not rewrite
    are deleted on close (so a re-run never mixes old and new shards). Keys are ``<prefix>_<running index>`` (zero padded), so they are unique within the shard set.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        prefix: str = "shard",
        max_samples_per_shard: int = 1000,
        *,
        image_format: str = "png",
        jpeg_quality: int = 95,
        max_bytes_per_shard: int | None = None,
    ) -> None:
        if max_samples_per_shard < 1:
            raise InvalidInputError(f"max_samples_per_shard must be >= 1, got {max_samples_per_shard}")
        if not _KEY_RE.match(prefix):
            raise InvalidInputError(f"shard prefix {prefix!r} may only use letters, digits, '_' and '-'")
        if image_format.lower() not in ("png", "jpg", "jpeg"):
            raise InvalidInputError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._stale = _existing_shards(self.out_dir, prefix)  # replaced; leftovers removed on close
        self.prefix = prefix
        self.max_samples = int(max_samples_per_shard)
        self.max_bytes = max_bytes_per_shard
        self.image_ext = "png" if image_format.lower() == "png" else "jpg"
        self.jpeg_quality = jpeg_quality
        self.shards: list[dict[str, Any]] = []
        self.count = 0
        self._pending: list[tuple[str, bytes]] = []
        self._pending_samples = 0
        self._pending_bytes = 0
        self._closed = False

    @property
    def paths(self) -> list[Path]:
        """The shard files written so far."""
        return [self.out_dir / s["name"] for s in self.shards]

    def write(self, sample: RGBDSample, extras: Mapping[str, np.ndarray] | None = None) -> str:
        """Add one sample (plus optional extra arrays stored as ``<key>.<name>.npy``); returns its key."""
        if self._closed:
            raise InvalidInputError("ShardWriter is closed")
        sample.validate()
        key = f"{self.prefix}_{self.count:09d}"
        meta = sample.meta_dict()
        meta["format_version"] = FORMAT_VERSION
        depth = np.where(sample.valid, sample.depth, np.float32(0)).astype(np.float32)
        members = [
            (f"{key}.rgb.{self.image_ext}", encode_image(sample.image, self.image_ext, self.jpeg_quality)),
            (f"{key}.depth.npy", encode_npy(depth)),
            (f"{key}.mask.png", encode_mask(sample.valid)),
        ]
        for name in sorted(extras or {}):
            if not _KEY_RE.match(name) or name in ("rgb", "depth", "mask", "meta"):
                raise InvalidInputError(f"extra member name {name!r} is reserved or not [A-Za-z0-9_-]+")
            members.append((f"{key}.{name}.npy", encode_npy(np.asarray(extras[name]))))
        members.append((f"{key}.meta.json", json_bytes(meta)))
        self._pending.extend(members)
        self._pending_samples += 1
        self._pending_bytes += sum(len(b) for _, b in members)
        self.count += 1
        if self._pending_samples >= self.max_samples or (self.max_bytes and self._pending_bytes >= self.max_bytes):
            self._flush()
        return key

    def _flush(self) -> None:
        if not self._pending_samples:
            return
        name = f"{self.prefix}-{len(self.shards):06d}.tar"
        with atomic_path(self.out_dir / name) as tmp, tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for member, data in self._pending:
                tar.addfile(_tarinfo(member, len(data)), io.BytesIO(data))
        self.shards.append({"name": name, "samples": self._pending_samples})
        self._pending, self._pending_samples, self._pending_bytes = [], 0, 0

    def close(self) -> list[Path]:
        """Write the last shard and ``<prefix>-index.json``; returns the shard paths."""
        if not self._closed:
            self._flush()
            written = set(self.paths)
            for stale in self._stale:  # shards of an earlier, larger run in the same folder
                if stale not in written and stale.exists():
                    stale.unlink()
            index = {"format_version": FORMAT_VERSION, "shards": self.shards, "total": self.count}
            with atomic_path(self.out_dir / f"{self.prefix}-index.json") as tmp:
                tmp.write_bytes(json_bytes(index))
            self._closed = True
        return self.paths

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # keep completed shards, drop the partial one
            self._closed = True


def _existing_shards(out_dir: Path, prefix: str) -> list[Path]:
    return sorted(out_dir.glob(f"{prefix}-[0-9][0-9][0-9][0-9][0-9][0-9].tar"))


# ---------------------------------------------------------------------------------------------- pack
@dataclass(frozen=True)
class PackResult:
    """What :func:`pack` wrote: the shard files and the number of samples in them."""

    paths: list[Path]
    samples: int


def pack(
    sources: Sequence[str | os.PathLike | Iterable[RGBDSample]] | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    prefix: str = "shard",
    max_samples_per_shard: int = 1000,
    image_format: str = "png",
    progress: bool = False,
    overwrite: bool = False,
) -> PackResult:
    """Pack every sample of every source, in order, into shards under ``out_dir``.

    A source is a folder-dataset path, ``"loader:root"`` / ``"loader@split:root"`` (see
    :func:`metricanything.data.sources.open_samples`) or an iterable of samples. Refuses (InvalidInputError) a
    folder that already holds ``<prefix>-*.tar`` unless ``overwrite``.
    """
    from metricanything.data.sources import open_samples

    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    from metricanything.atomic import check_output_dir, clean_stale_temps
    from metricanything.progress import Progress

    opened = [open_samples(s) if isinstance(s, (str, os.PathLike)) else s for s in sources]  # fail before writing
    check_output_dir(out_dir, "--out")
    clean_stale_temps(out_dir)  # partial shards of a killed run
    if not overwrite and _existing_shards(Path(out_dir), prefix):
        raise InvalidInputError(
            f"--out {out_dir} already holds {prefix}-*.tar shards; choose another --out or --prefix, or pass "
            "--overwrite to replace them"
        )
    total = sum(len(s) for s in opened) if all(hasattr(s, "__len__") for s in opened) else None
    bar = Progress(total, "pack", "sample", lines=True, interval_s=30.0) if progress else None
    with ShardWriter(out_dir, prefix, max_samples_per_shard, image_format=image_format) as writer:
        for samples in opened:
            for sample in samples:
                writer.write(sample)
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    if writer.count == 0:
        raise DatasetError(f"no samples found in {', '.join(str(s) for s in sources)}")
    return PackResult(writer.paths, writer.count)


# ---------------------------------------------------------------------------------------------- reading
def resolve_shards(spec: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Shard files of one source: a directory (its ``*.tar``), a tar file, a glob, or a list of those."""
    if not isinstance(spec, (str, os.PathLike)):
        out: list[Path] = []
        for s in spec:
            out.extend(resolve_shards(s))
        if not out:
            raise DatasetError("empty list of shard sources")
        return out
    text = os.fspath(spec)
    p = Path(text)
    if p.is_dir():
        files = sorted(p.glob("*.tar"))
        if not files:
            raise DatasetError(f"{p}: directory holds no .tar shards")
        return files
    if p.is_file():
        return [p]
    if any(c in text for c in "*?["):
        files = sorted(Path(f) for f in _glob.glob(text))
        if not files:
            raise DatasetError(f"{text}: glob matches no shard files")
        return files
    raise DatasetError(f"{text}: shard source does not exist")


def decode_sample(members: Mapping[str, bytes], where: str = "<sample>") -> RGBDSample:
    """Decode one shard group (``{"rgb.png": ..., "depth.npy": ..., "mask.png": ..., "meta.json": ...}``)."""
    image_key = next((k for k in ("rgb.png", "rgb.jpg", "rgb.jpeg", "png", "jpg") if k in members), None)
    for need, present in (("rgb.png|rgb.jpg", image_key), ("depth.npy", "depth.npy" in members), ("meta.json", "meta.json" in members)):
        if not present:
            raise InputFileError(where, f"member {need} is missing")
    try:
        meta = json.loads(members["meta.json"].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(f"{where}.meta.json", f"not valid JSON ({exc})") from None
    image = decode_image(members[image_key], f"{where}.{image_key}")
    depth = decode_depth_npy(members["depth.npy"], f"{where}.depth.npy")
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(depth) & (depth > 0)
    if "mask.png" in members:
        mask = decode_mask(members["mask.png"], f"{where}.mask.png")
        if mask.shape != depth.shape:
            raise InputFileError(f"{where}.mask.png", f"mask shape {mask.shape} differs from depth {depth.shape}")
        valid &= mask
    if image.shape[:2] != depth.shape:
        raise InputFileError(where, f"image {image.shape[:2]} and depth {depth.shape} differ in size")
    if not valid.all():
        depth = np.where(valid, depth, np.float32(0))
    return sample_from_meta(meta, image, depth, valid, f"{where}.meta.json")


class ShardIndex:
    """Random access into tar shards: member offsets are read once from the tar headers.

    ``len(index)``, ``index[k]`` / ``get(k)`` (decode sample k), ``where(k)`` (``<shard>:<key>``) and
    ``extra(k, name)`` (the optional ``<key>.<name>.npy`` member, None if absent). A tar that is cut short or
    damaged keeps the samples before the damage; ``notes`` says which shard and how many samples were kept.
    """

    def __init__(self, spec: str | os.PathLike | Sequence[str | os.PathLike]) -> None:
        self.shards = resolve_shards(spec)
        self.entries: list[tuple[int, str, dict[str, tuple[int, int]]]] = []
        self.notes: list[str] = []
        for si, path in enumerate(self.shards):
            groups, problem = _index_tar(path)
            if problem is not None:
                self.notes.append(f"{path}: {problem}; indexed the {len(groups)} complete sample(s) before it")
            self.entries.extend((si, key, members) for key, members in groups)
        if not self.entries:
            raise DatasetError(f"{spec}: shards hold no readable samples" + (f" ({self.notes[0]})" if self.notes else ""))

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, k: int) -> RGBDSample:
        return self.get(k)

    def where(self, k: int) -> str:
        si, key, _ = self.entries[int(k)]
        return f"{self.shards[si]}:{key}"

    def _read(self, k: int, suffixes: Sequence[str] | None = None) -> dict[str, bytes]:
        si, _, members = self.entries[int(k)]
        out: dict[str, bytes] = {}
        with open(self.shards[si], "rb") as f:
            for suffix, (offset, size) in members.items():
                if suffixes is None or suffix in suffixes:
                    f.seek(offset)
                    out[suffix] = f.read(size)
        return out

    def get(self, k: int) -> RGBDSample:
        return decode_sample(self._read(k), self.where(k))

    def extra(self, k: int, name: str) -> np.ndarray | None:
        data = self._read(k, [f"{name}.npy"]).get(f"{name}.npy")
        return None if data is None else decode_npy(data, f"{self.where(k)}.{name}.npy")


def _index_tar(path: Path) -> tuple[list[tuple[str, dict[str, tuple[int, int]]]], str | None]:
    """(key, {suffix: (offset, size)}) groups of one tar in stored order, and what is wrong with it (or None).

    Only members whose data lies wholly in the file are kept. After damage the last group is dropped unless it
    has its ``meta.json`` (always a sample's last member), so a kept group is a complete sample.
    """
    groups: dict[str, dict[str, tuple[int, int]]] = {}
    problem = None
    try:
        size = path.stat().st_size
        with tarfile.open(path, "r:") as tar:
            while (info := tar.next()) is not None:
                if info.offset_data + info.size > size:
                    problem = f"tar is cut off inside member {info.name}"
                    break
                key, dot, suffix = info.name.rsplit("/", 1)[-1].partition(".")
                if info.isfile() and dot:
                    groups.setdefault(key, {})[suffix] = (info.offset_data, info.size)
            end = tar.offset
        if problem is None:
            with open(path, "rb") as f:  # tarfile stops quietly at a cut header or garbage: what follows must be zeros
                f.seek(end)
                tail = f.read()
            if len(tail) < 1024 or tail.count(0) != len(tail):
                problem = f"tar is truncated or damaged at byte {end} (no end-of-archive marker there)"
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        problem = f"tar is unreadable ({exc})"
    items = list(groups.items())
    if problem is not None and items and "meta.json" not in items[-1][1]:
        items.pop()
    return items, problem
