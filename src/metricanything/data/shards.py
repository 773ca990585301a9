"""WebDataset-style tar shards: a deterministic writer and a streaming, mixture-weighted reader.

A shard ``<prefix>-000000.tar`` holds consecutive groups of members sharing a key (the part of the member
name before the first dot)::

    <key>.rgb.png | <key>.rgb.jpg   RGB image (8 bit)
    <key>.depth.npy                 float32 H x W metres, 0 where invalid
    <key>.mask.png                  uint8 H x W, 0 invalid / 255 valid
    <key>.meta.json                 RGBDSample.meta_dict() + {"format_version": 1}
    <key>.<name>.npy                optional extra arrays (ignored by the sample decoder)

Tar headers are fixed (mtime 0, uid/gid 0, no owner names, mode 0644, ustar), members are written in a
fixed order, so packing the same samples twice gives byte-identical shards. Each shard is written to a
temporary file and renamed when complete; ``<prefix>-index.json`` lists shards and their sample counts.
"""

from __future__ import annotations

import glob as _glob
import io
import math
import multiprocessing
import multiprocessing.context
import os
import re
import tarfile
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metricanything.atomic import atomic_path
from metricanything.camera import Intrinsics
from metricanything.data.folder import (
    FORMAT_VERSION,
    FolderDataset,
    decode_depth_npy,
    decode_image,
    decode_mask,
    encode_image,
    encode_mask,
    encode_npy,
    is_folder_dataset,
    json_bytes,
    sample_from_meta,
)
from metricanything.data.sample import RGBDSample
from metricanything.errors import DatasetError, InputFileError, InvalidInputError, MetricAnythingError

__all__ = [
    "ShardWriter",
    "ShardDataset",
    "pack",
    "iter_shard",
    "decode_sample",
    "collate_samples",
    "resolve_shards",
    "open_source",
]

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


# ---------------------------------------------------------------------------------------------- sources
def open_source(source: str | os.PathLike | Iterable[RGBDSample]) -> Iterable[RGBDSample]:
    """Turn a pack source into samples: a folder dataset path, ``"loader_name:root"``, or an iterable."""
    if not isinstance(source, (str, os.PathLike)):
        return source
    text = os.fspath(source)
    path = Path(text)
    if path.is_dir():
        if is_folder_dataset(path):
            return FolderDataset(path)
        raise DatasetError(f"{path}: not a folder dataset (no index.json and no sample folder with meta.json)")
    if ":" in text and not path.exists():
        name, _, root = text.partition(":")
        split = None
        if "@" in name:  # "loader@split:root"
            name, _, split = name.partition("@")
        from metricanything.data.loaders import load_dataset

        return load_dataset(name, root, split=split)
    raise DatasetError(f"{text}: source does not exist (give a folder dataset or 'loader_name:root')")


def pack(
    sources: Sequence[str | os.PathLike | Iterable[RGBDSample]],
    out_dir: str | os.PathLike,
    *,
    prefix: str = "shard",
    max_samples_per_shard: int = 1000,
    image_format: str = "png",
    progress: bool = False,
    overwrite: bool = False,
) -> list[Path]:
    """Pack every sample of every source, in order, into shards under ``out_dir``; returns the shard paths.

    Refuses (InvalidInputError) a folder that already holds ``<prefix>-*.tar`` unless ``overwrite``.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    opened = [open_source(s) for s in sources]  # fail on a bad source before writing anything
    if not overwrite and _existing_shards(Path(out_dir), prefix):
        raise InvalidInputError(f"{out_dir} already holds {prefix}-*.tar shards; choose another folder/prefix or overwrite")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc="pack", unit="sample")
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
    return writer.paths


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


def iter_shard(path: str | os.PathLike) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Stream ``(key, {suffix: bytes})`` groups from one tar shard, in stored order.

    Raises :class:`InputFileError` (naming the shard) if the tar itself is unreadable or truncated; groups
    read before the damage have been yielded already.
    """
    path = Path(path)
    key: str | None = None
    group: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r|") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                base = info.name.rsplit("/", 1)[-1]
                k, dot, suffix = base.partition(".")
                if not dot:
                    continue
                f = tar.extractfile(info)
                data = f.read() if f is not None else b""
                if k != key:
                    if key is not None:
                        yield key, group
                    key, group = k, {}
                group[suffix] = data
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        if key is not None and group:
            yield key, group  # members read completely before the damage; the decoder checks what is missing
        raise InputFileError(path, f"tar shard is unreadable or truncated ({exc})") from None
    if not _has_end_marker(path):  # tarfile stops quietly when a file is cut at a header boundary
        if key is not None and group:
            yield key, group
        raise InputFileError(path, "tar shard is truncated (no end-of-archive marker)")
    if key is not None:
        yield key, group


def _has_end_marker(path: Path) -> bool:
    """A complete tar ends with two zero blocks and is a whole number of 512-byte blocks."""
    try:
        size = path.stat().st_size
        if size % 512 or size < 1024:
            return False
        with open(path, "rb") as f:
            f.seek(size - 1024)
            return f.read(1024) == bytes(1024)
    except OSError:
        return False


def decode_sample(members: Mapping[str, bytes], where: str = "<sample>") -> RGBDSample:
    """Decode one shard group (``{"rgb.png": ..., "depth.npy": ..., "mask.png": ..., "meta.json": ...}``)."""
    import json

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


def _consumer() -> tuple[int, int]:
    info = torch.utils.data.get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def _dist_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class ShardDataset(torch.utils.data.IterableDataset):
    """Stream :class:`RGBDSample` s from one or more shard sets.

    ``sources``: one source or a list/dict of sources; each source is a shard directory, a tar file, a glob
    or a list of tar files (a dict names the sources). ``weights``: per-source mixture weights.

    Modes:

    * ``"epoch"`` (default): every sample of every source exactly once per epoch, across all DataLoader
      workers and DDP ranks together. Weights are ignored. Work is split by shard (shards of all sources
      shuffled per epoch with ``seed`` + epoch, shard i to consumer i mod C) when there are at least C =
      world_size x num_workers shards, otherwise by sample (each consumer reads every shard and decodes
      samples i mod C == its index).
    * ``"mixture"``: each consumer draws the source of every next sample with probability proportional to
      its weight and cycles through its share of that source's shards (reshuffled per pass). Stops after
      ``samples_per_epoch`` samples in total (split over consumers), or never when that is None.

    A ``shuffle_buffer`` > 0 shuffles samples within a consumer. Corrupt members/shards are skipped and
    counted: ``corrupt_count`` (shared with DataLoader workers), ``stats()``, and a ``RuntimeWarning`` at
    the end of every pass over the data that hit any. ``strict=True`` raises instead. ``set_epoch(e)``
    before each epoch changes the shuffles (with non-persistent workers). ``transform`` is applied to each
    decoded sample; the stream yields its result.
    """

    def __init__(
        self,
        sources: Any,
        weights: Sequence[float] | Mapping[str, float] | None = None,
        *,
        mode: str = "epoch",
        shuffle_buffer: int = 0,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        transform: Callable[[RGBDSample], Any] | None = None,
        samples_per_epoch: int | None = None,
        strict: bool = False,
    ) -> None:
        super().__init__()
        if mode not in ("epoch", "mixture"):
            raise InvalidInputError(f"mode must be 'epoch' or 'mixture', got {mode!r}")
        if isinstance(sources, Mapping):
            names, specs = list(sources.keys()), list(sources.values())
        elif isinstance(sources, (str, os.PathLike)):
            names, specs = [Path(sources).name or str(sources)], [sources]
        else:
            specs = list(sources)
            names = [Path(s).name if isinstance(s, (str, os.PathLike)) else f"source{i}" for i, s in enumerate(specs)]
        if not specs:
            raise DatasetError("ShardDataset needs at least one source")
        self.source_names = [str(n) for n in names]
        self.source_shards = [resolve_shards(s) for s in specs]
        if weights is None:
            w = [1.0] * len(specs)
        elif isinstance(weights, Mapping):
            missing = set(self.source_names) - set(weights)
            if missing:
                raise InvalidInputError(f"weights missing for sources {sorted(missing)}")
            w = [float(weights[n]) for n in self.source_names]
        else:
            w = [float(x) for x in weights]
        if len(w) != len(specs) or any(not math.isfinite(x) or x < 0 for x in w) or sum(w) <= 0:
            raise InvalidInputError(f"need one finite non-negative weight per source ({len(specs)}), not all 0; got {w}")
        self.weights = w
        self.mode = mode
        self.shuffle_buffer = int(shuffle_buffer)
        self.seed = int(seed)
        self.epoch = 0
        self.rank, self.world_size = rank, world_size
        if (rank is None) != (world_size is None):
            raise InvalidInputError("give both rank and world_size, or neither")
        if world_size is not None and not 0 <= rank < world_size:
            raise InvalidInputError(f"rank {rank} outside world_size {world_size}")
        self.transform = transform
        self.samples_per_epoch = samples_per_epoch
        self.strict = strict
        ctx = multiprocessing.get_context()
        self._shared = ctx.Array("q", 3)  # [samples yielded, corrupt samples, corrupt shards]
        self._local = [0, 0, 0]
        self.corrupt_examples: list[str] = []

    # -------------------------------------------------------------- bookkeeping
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if multiprocessing.context.get_spawning_popen() is None:
            state["_shared"] = None  # plain pickling (not a worker start): counters stay local
        return state

    def _bump(self, i: int) -> None:
        self._local[i] += 1
        if self._shared is not None:
            with self._shared.get_lock():
                self._shared[i] += 1

    @property
    def corrupt_count(self) -> int:
        """Corrupt samples skipped so far (all workers of this dataset object), plus unreadable shard tails."""
        s = self.stats()
        return s["corrupt_samples"] + s["corrupt_shards"]

    def stats(self) -> dict[str, int]:
        """Counters since construction: ``samples`` yielded, ``corrupt_samples``, ``corrupt_shards``."""
        vals = list(self._shared[:]) if self._shared is not None else self._local
        return {"samples": int(vals[0]), "corrupt_samples": int(vals[1]), "corrupt_shards": int(vals[2])}

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffles of ``epoch`` (call before creating the epoch's DataLoader iterator)."""
        self.epoch = int(epoch)

    @property
    def total_samples(self) -> int | None:
        """Sum of the sample counts in the shard sets' ``*-index.json`` files, or None if any is unknown."""
        import json

        counts: dict[Path, int] = {}
        for shards in self.source_shards:
            for d in {p.parent for p in shards}:
                for idx in d.glob("*-index.json"):
                    try:
                        data = json.loads(idx.read_text(encoding="utf-8"))
                        for s in data["shards"]:
                            counts[(d / s["name"]).resolve()] = int(s["samples"])
                    except (OSError, ValueError, KeyError, TypeError):
                        continue
        total = 0
        for shards in self.source_shards:
            for p in shards:
                if p.resolve() not in counts:
                    return None
                total += counts[p.resolve()]
        return total

    # -------------------------------------------------------------- iteration
    def _consumers(self) -> tuple[int, int]:
        worker, num_workers = _consumer()
        if self.world_size is not None:
            rank, world = self.rank, self.world_size
        else:
            rank, world = _dist_rank_world()
        return rank * num_workers + worker, world * num_workers

    def _read(self, shard: Path, keep: Callable[[int], bool] | None = None) -> Iterator[RGBDSample]:
        """Decoded samples of one shard; ``keep(i)`` selects by position; corrupt ones are skipped and counted."""
        i = -1
        try:
            for key, members in iter_shard(shard):
                i += 1
                if keep is not None and not keep(i):
                    continue
                try:
                    sample = decode_sample(members, f"{shard}:{key}")
                except MetricAnythingError as exc:
                    if self.strict:
                        raise
                    self._bump(1)
                    if len(self.corrupt_examples) < 20:
                        self.corrupt_examples.append(str(exc))
                    continue
                yield sample
        except InputFileError as exc:  # the tar itself is damaged: skip the rest of this shard
            if self.strict:
                raise
            self._bump(2)
            if len(self.corrupt_examples) < 20:
                self.corrupt_examples.append(str(exc))

    def _epoch_stream(self, cid: int, n: int) -> Iterator[RGBDSample]:
        shards = [p for group in self.source_shards for p in group]
        order = np.random.default_rng([self.seed, self.epoch, 0]).permutation(len(shards))
        shards = [shards[i] for i in order]
        if len(shards) >= n:
            for shard in shards[cid::n]:
                yield from self._read(shard)
        else:
            counter = {"i": -1}

            def keep(_: int) -> bool:
                counter["i"] += 1
                return counter["i"] % n == cid

            for shard in shards:
                yield from self._read(shard, keep)

    def _source_cycle(self, s: int, cid: int, n: int) -> Iterator[RGBDSample]:
        shards = self.source_shards[s]
        passes = 0
        while True:
            order = np.random.default_rng([self.seed, self.epoch, 1 + s, passes]).permutation(len(shards))
            ordered = [shards[i] for i in order]
            got = 0
            if len(ordered) >= n:
                for shard in ordered[cid::n]:
                    for sample in self._read(shard):
                        got += 1
                        yield sample
            else:
                counter = {"i": -1}

                def keep(_: int, counter: dict = counter) -> bool:
                    counter["i"] += 1
                    return counter["i"] % n == cid

                for shard in ordered:
                    for sample in self._read(shard, keep):
                        got += 1
                        yield sample
            if got == 0:
                return  # nothing (readable) for this consumer: leave the mixture
            passes += 1

    def _mixture_stream(self, cid: int, n: int) -> Iterator[RGBDSample]:
        rng = np.random.default_rng([self.seed, self.epoch, 2, cid])
        its = {s: self._source_cycle(s, cid, n) for s in range(len(self.source_shards)) if self.weights[s] > 0}
        limit = None
        if self.samples_per_epoch is not None:
            limit = self.samples_per_epoch // n + (1 if cid < self.samples_per_epoch % n else 0)
        produced = 0
        while its and (limit is None or produced < limit):
            keys = list(its)
            w = np.array([self.weights[s] for s in keys])
            s = keys[int(rng.choice(len(keys), p=w / w.sum()))]
            try:
                sample = next(its[s])
            except StopIteration:
                del its[s]
                continue
            produced += 1
            yield sample

    def _shuffled(self, stream: Iterator[RGBDSample], cid: int) -> Iterator[RGBDSample]:
        if self.shuffle_buffer <= 1:
            yield from stream
            return
        rng = np.random.default_rng([self.seed, self.epoch, 3, cid])
        buf: list[RGBDSample] = []
        for sample in stream:
            if len(buf) < self.shuffle_buffer:
                buf.append(sample)
                continue
            j = int(rng.integers(len(buf)))
            buf[j], sample = sample, buf[j]
            yield sample
        rng.shuffle(buf)
        yield from buf

    def __iter__(self) -> Iterator[Any]:
        cid, n = self._consumers()
        before = self._local[1] + self._local[2]
        stream = self._epoch_stream(cid, n) if self.mode == "epoch" else self._mixture_stream(cid, n)
        for sample in self._shuffled(stream, cid):
            self._bump(0)
            yield self.transform(sample) if self.transform is not None else sample
        skipped = self._local[1] + self._local[2] - before
        if skipped:
            warnings.warn(
                f"ShardDataset skipped {skipped} corrupt sample(s)/shard(s) in this pass (consumer {cid} of {n}); "
                f"first: {self.corrupt_examples[0] if self.corrupt_examples else '?'}",
                RuntimeWarning,
                stacklevel=2,
            )


# ---------------------------------------------------------------------------------------------- collate
def _get(sample: Any, name: str) -> Any:
    return sample[name] if isinstance(sample, Mapping) else getattr(sample, name)


def _intrinsics_of(sample: Any) -> Intrinsics:
    K = _get(sample, "intrinsics")
    if isinstance(K, Intrinsics):
        return K
    if isinstance(K, Mapping):
        return Intrinsics.from_dict(K)
    raise InvalidInputError(f"sample intrinsics must be Intrinsics or a dict, got {type(K).__name__}")


def _image_tensor(img: Any) -> torch.Tensor:
    if isinstance(img, torch.Tensor):
        t = img
        if t.ndim == 3 and t.shape[0] != 3 and t.shape[-1] == 3:
            t = t.permute(2, 0, 1)
        return t.to(torch.float32) / 255.0 if t.dtype == torch.uint8 else t.to(torch.float32)
    a = np.asarray(img)
    t = torch.from_numpy(np.ascontiguousarray(a))
    if t.ndim == 3 and t.shape[-1] == 3:
        t = t.permute(2, 0, 1)
    return t.to(torch.float32) / 255.0 if a.dtype == np.uint8 else t.to(torch.float32)


def _plane(x: Any, dtype: torch.dtype) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    if t.ndim == 2:
        t = t[None]
    return t.to(dtype)


_META_FIELDS = ("dataset", "source_kind", "sensor", "sample_id", "scene_id", "camera_id")


def collate_samples(samples: Sequence[Any]) -> dict[str, Any]:
    """Batch same-sized samples (RGBDSample or dicts with the same fields) into tensors.

    Returns ``image`` float (B,3,H,W) in [0, 1], ``depth`` float (B,1,H,W) metres (0 where invalid),
    ``valid`` bool (B,1,H,W), ``fx fy cx cy`` float (B,), ``metric_scale_trusted`` bool (B,), ``intrinsics``
    (list of Intrinsics) and lists for ``dataset source_kind sensor sample_id scene_id camera_id``.
    """
    if not samples:
        raise InvalidInputError("collate_samples needs at least one sample")
    images = [_image_tensor(_get(s, "image")) for s in samples]
    depths = [_plane(_get(s, "depth"), torch.float32) for s in samples]
    valids = [_plane(_get(s, "valid"), torch.bool) for s in samples]
    Ks = [_intrinsics_of(s) for s in samples]
    shapes = {tuple(d.shape[-2:]) for d in depths} | {tuple(i.shape[-2:]) for i in images}
    if len(shapes) != 1:
        raise InvalidInputError(f"collate_samples needs samples of one size, got {sorted(shapes)}; resize/crop first")
    depth = torch.stack(depths)
    valid = torch.stack(valids)
    out: dict[str, Any] = {
        "image": torch.stack(images),
        "depth": torch.where(valid, depth, torch.zeros((), dtype=depth.dtype)),
        "valid": valid,
        "fx": torch.tensor([K.fx for K in Ks], dtype=torch.float32),
        "fy": torch.tensor([K.fy for K in Ks], dtype=torch.float32),
        "cx": torch.tensor([K.cx for K in Ks], dtype=torch.float32),
        "cy": torch.tensor([K.cy for K in Ks], dtype=torch.float32),
        "intrinsics": Ks,
    }
    trusted = []
    for s in samples:
        try:
            trusted.append(bool(_get(s, "metric_scale_trusted")))
        except (KeyError, AttributeError):
            trusted.append(True)
    out["metric_scale_trusted"] = torch.tensor(trusted, dtype=torch.bool)
    for name in _META_FIELDS:
        vals = []
        for s in samples:
            try:
                vals.append(_get(s, name))
            except (KeyError, AttributeError):
                vals.append("")
        out[name] = vals
    return out
