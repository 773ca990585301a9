"""Training data: sources (embedded renderer, folders, shards) -> index-addressed, deterministic samples.

The loop asks for items by global index (see :mod:`metricanything.train.loop`). :class:`Mixture` maps an
index to (source, item) with a generator seeded by (seed, index): the source is drawn with probability
proportional to its weight; finite sources (folders, shards, ``render`` with ``num_samples`` > 0) are
sampled uniformly *with replacement*; an infinite ``render`` source renders seed ``source.seed + index``
(never the same scene twice). Everything downstream (label corruption, prompt preparation, crop, flip) draws
from generators seeded by (seed, index) too, so an item never depends on what was drawn before it.
"""

from __future__ import annotations

import math
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from metricanything.data.sample import RGBDSample
from metricanything.errors import DatasetError, InvalidInputError
from metricanything.train.config import SourceConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_normalise(image: torch.Tensor) -> torch.Tensor:
    """B x 3 x H x W in [0, 1] -> ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
    return (image - mean) / std


def item_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    """The generator of one purpose (``stream``) for item ``index`` of a run seeded with ``seed``."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index), int(stream)])


# ---------------------------------------------------------------------------------------------- sources
class Source(Protocol):
    name: str

    @property
    def length(self) -> int | None: ...

    def get(self, k: int) -> RGBDSample: ...


class RenderSource:
    """The embedded renderer: item k is ``render_mixed_sample(seed + k, size, sources)`` (exact depth through
    the simulated sensors of the mixture), or ``render_sample`` when the mixture module is unavailable."""

    def __init__(self, cfg: SourceConfig) -> None:
        self.cfg = cfg
        self.name = "render" + (f"[{','.join(cfg.sources)}]" if cfg.sources else "")
        self.size = tuple(cfg.render_size) if cfg.render_size else None
        if self.size is not None and len(self.size) != 2:
            raise InvalidInputError(f"render_size must be [W, H], got {cfg.render_size}")
        if cfg.fov_deg is not None:
            from metricanything.data.render import check_fov_range

            check_fov_range(cfg.fov_deg)

    @property
    def length(self) -> int | None:
        return self.cfg.num_samples or None

    def get(self, k: int) -> RGBDSample:
        seed = self.cfg.seed + int(k)
        try:
            from metricanything.data.mixture import render_mixed_sample
        except ImportError:  # pragma: no cover - the mixture module ships with the package
            render_mixed_sample = None
        if render_mixed_sample is not None:
            return render_mixed_sample(seed, size=self.size, sources=self.cfg.sources, fov_deg=self.cfg.fov_deg)
        from metricanything.data.render import render_sample

        return render_sample(seed, size=self.size, fov_deg=self.cfg.fov_deg)


class FolderSource:
    def __init__(self, cfg: SourceConfig) -> None:
        from metricanything.data.folder import FolderDataset

        self.ds = FolderDataset(cfg.path)
        self.name = f"folder:{cfg.path}"
        if len(self.ds) == 0:
            raise DatasetError(f"{cfg.path}: folder dataset has no samples")

    @property
    def length(self) -> int:
        return len(self.ds)

    def get(self, k: int) -> RGBDSample:
        return self.ds[int(k)]


class ShardIndex:
    """Random access into tar shards: member offsets are read once from the tar headers.

    ``get(k)`` decodes sample k (shards in sorted order, samples in stored order) with the shard module's
    decoder; ``extra(k, name)`` reads an optional ``<key>.<name>.npy`` member (None if absent).
    """

    def __init__(self, spec: str | Path | Sequence[str | Path]) -> None:
        from metricanything.data.shards import resolve_shards

        self.shards = resolve_shards(spec)
        self.entries: list[tuple[int, str, dict[str, tuple[int, int]]]] = []
        for si, path in enumerate(self.shards):
            try:
                with tarfile.open(path, "r:") as tar:
                    groups: dict[str, dict[str, tuple[int, int]]] = {}
                    order: list[str] = []
                    for info in tar.getmembers():
                        if not info.isfile():
                            continue
                        base = info.name.rsplit("/", 1)[-1]
                        key, dot, suffix = base.partition(".")
                        if not dot:
                            continue
                        if key not in groups:
                            groups[key] = {}
                            order.append(key)
                        groups[key][suffix] = (info.offset_data, info.size)
            except (tarfile.TarError, OSError) as exc:
                raise DatasetError(f"{path}: unreadable tar shard ({exc})") from exc
            self.entries.extend((si, key, groups[key]) for key in order)
        if not self.entries:
            raise DatasetError(f"{spec}: shards hold no samples")

    def __len__(self) -> int:
        return len(self.entries)

    def _read(self, k: int, suffixes: Sequence[str] | None = None) -> tuple[str, dict[str, bytes]]:
        si, key, members = self.entries[int(k)]
        path = self.shards[si]
        out: dict[str, bytes] = {}
        with open(path, "rb") as f:
            for suffix, (offset, size) in members.items():
                if suffixes is not None and suffix not in suffixes:
                    continue
                f.seek(offset)
                out[suffix] = f.read(size)
        return f"{path}:{key}", out

    def get(self, k: int) -> RGBDSample:
        from metricanything.data.shards import decode_sample

        where, members = self._read(k)
        return decode_sample(members, where)

    def extra(self, k: int, name: str) -> np.ndarray | None:
        from metricanything.data.folder import decode_npy

        where, members = self._read(k, [f"{name}.npy"])
        data = members.get(f"{name}.npy")
        return None if data is None else decode_npy(data, f"{where}.{name}.npy")


class ShardSource:
    def __init__(self, cfg: SourceConfig) -> None:
        self.index = ShardIndex(cfg.path)
        self.name = f"shards:{cfg.path}"

    @property
    def length(self) -> int:
        return len(self.index)

    def get(self, k: int) -> RGBDSample:
        return self.index.get(k)


def build_source(cfg: SourceConfig) -> Source:
    if cfg.kind == "render":
        return RenderSource(cfg)
    if cfg.kind == "folder":
        return FolderSource(cfg)
    if cfg.kind == "shards":
        return ShardSource(cfg)
    raise InvalidInputError(f"unknown source kind {cfg.kind!r}")


class Mixture:
    """Index -> sample over weighted sources (see the module docstring)."""

    def __init__(self, cfgs: Sequence[SourceConfig], seed: int) -> None:
        self.cfgs = list(cfgs)
        self.sources = [build_source(c) for c in self.cfgs]
        w = np.array([c.weight for c in self.cfgs], dtype=np.float64)
        if not (w >= 0).all() or w.sum() <= 0:
            raise InvalidInputError(f"source weights must be >= 0 and not all 0, got {w.tolist()}")
        self.p = w / w.sum()
        self.seed = seed

    def locate(self, index: int) -> tuple[int, int]:
        rng = item_rng(self.seed, index, 0)
        s = int(rng.choice(len(self.sources), p=self.p)) if len(self.sources) > 1 else 0
        length = self.sources[s].length
        k = int(index) if length is None else int(rng.integers(length))
        return s, k

    def get(self, index: int) -> tuple[RGBDSample, int]:
        s, k = self.locate(index)
        sample = self.sources[s].get(k)
        if not self.cfgs[s].trusted and sample.metric_scale_trusted:
            sample = sample.replace(metric_scale_trusted=False)
        return sample, s


# ---------------------------------------------------------------------------------------------- geometry
def _resize_sample(sample: RGBDSample, width: int, height: int) -> RGBDSample:
    if sample.depth.shape == (height, width):
        return sample
    from metricanything.data.augment import resize_sample

    # image: area when shrinking, bilinear when enlarging; depth never mixes values (nearest, or z-buffer
    # splatting when shrinking a sparse map)
    mode = "area" if width < sample.width else "bilinear"
    return resize_sample(sample, width, height, image_mode=mode, depth_mode="auto")


def square_crop(sample: RGBDSample, size: int, rng: np.random.Generator | None = None) -> RGBDSample:
    """Resize so the short side is ``size`` (times U(1, 1.25) with ``rng``), crop ``size`` x ``size`` (random
    with ``rng``, else centred) and, with ``rng``, flip horizontally with probability 0.5. Intrinsics follow."""
    h, w = sample.depth.shape
    zoom = float(rng.uniform(1.0, 1.25)) if rng is not None else 1.0
    scale = size * zoom / min(h, w)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    s = _resize_sample(sample, nw, nh)
    if rng is not None:
        left, top = int(rng.integers(nw - size + 1)), int(rng.integers(nh - size + 1))
    else:
        left, top = (nw - size) // 2, (nh - size) // 2
    sl = (slice(top, top + size), slice(left, left + size))
    s = s.replace(
        image=np.ascontiguousarray(s.image[sl]),
        depth=np.ascontiguousarray(s.depth[sl]),
        valid=np.ascontiguousarray(s.valid[sl]),
        intrinsics=s.intrinsics.cropped(left, top, size, size),
    )
    if rng is not None and rng.uniform() < 0.5:
        s = s.replace(
            image=np.ascontiguousarray(s.image[:, ::-1]),
            depth=np.ascontiguousarray(s.depth[:, ::-1]),
            valid=np.ascontiguousarray(s.valid[:, ::-1]),
            intrinsics=s.intrinsics.flipped_horizontally(),
        )
    return s


def training_view(sample: RGBDSample, size: int, rng: np.random.Generator | None) -> RGBDSample:
    """A ``size`` x ``size`` training view: the data module's ``random_augment`` (photometric + geometric) when
    augmenting and available, else :func:`square_crop`. ``rng=None`` gives the deterministic centred view."""
    if rng is not None:
        try:
            from metricanything.data.augment import random_augment
        except ImportError:  # pragma: no cover
            random_augment = None
        if random_augment is not None:
            out = random_augment(sample, rng, (size, size))
            if out.depth.shape == (size, size):
                return out
            return square_crop(out, size, None)
    return square_crop(sample, size, rng)


# ---------------------------------------------------------------------------------------------- labels
def corrupt_labels(sample: RGBDSample, fraction: float, rng: np.random.Generator) -> tuple[RGBDSample, np.ndarray]:
    """Gross label outliers (SfM-like): round(fraction * n) valid pixels get depth * exp(+-U(0.3, 1.2)).

    Returns the corrupted sample and the outlier mask (the robustness experiment of ``benchmarks/train_tiny``).
    """
    idx = np.flatnonzero(sample.valid)
    n = int(round(fraction * idx.size))
    mask = np.zeros(sample.depth.size, dtype=bool)
    if n == 0:
        return sample, mask.reshape(sample.depth.shape)
    pick = rng.choice(idx, size=n, replace=False)
    factor = np.exp(rng.choice([-1.0, 1.0], n) * rng.uniform(0.3, 1.2, n))
    depth = sample.depth.copy().reshape(-1)
    depth[pick] = (depth[pick] * factor).astype(np.float32)
    mask[pick] = True
    return sample.replace(depth=depth.reshape(sample.depth.shape)), mask.reshape(sample.depth.shape)


def oracle_align(sample: RGBDSample, noise: float, rng: np.random.Generator) -> RGBDSample | None:
    """PDSA with the simulated truth as the prior: divide an untrusted sample by its recorded
    ``meta["true_scale"]`` times a log-normal error exp(noise * N(0, 1)) (what a good monocular prior's
    global scale error looks like). None when the sample does not record its true scale."""
    true_scale = sample.meta.get("true_scale")
    if true_scale is None or not math.isfinite(float(true_scale)) or float(true_scale) <= 0:
        return None
    s = math.exp(float(noise) * float(rng.standard_normal())) / float(true_scale)
    depth = np.where(sample.valid, sample.depth * np.float32(s), np.float32(0)).astype(np.float32)
    meta = dict(sample.meta, pdsa_scale=s, pdsa_applied=True, pdsa_prior="oracle")
    return sample.replace(depth=depth, meta=meta, metric_scale_trusted=True)


def to_item(sample: RGBDSample, index: int, source: int) -> dict[str, Any]:
    """Tensors of one training view (image float [0, 1], depth 0 where invalid) plus bookkeeping."""
    valid = sample.valid
    return {
        "image": torch.from_numpy(np.ascontiguousarray(sample.image.transpose(2, 0, 1))).float() / 255.0,
        "depth": torch.from_numpy(np.where(valid, sample.depth, np.float32(0)).astype(np.float32))[None],
        "valid": torch.from_numpy(valid.copy())[None],
        "fx": torch.tensor(sample.intrinsics.fx, dtype=torch.float32),
        "trusted": torch.tensor(bool(sample.metric_scale_trusted)),
        "index": torch.tensor(int(index), dtype=torch.int64),
        "source": torch.tensor(int(source), dtype=torch.int64),
        "fov_known": torch.tensor(bool(sample.meta.get("intrinsics_known", True))),
        "sensor": sample.sensor,
    }


def collate_items(items: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in items[0]:
        vals = [it[k] for it in items]
        out[k] = torch.stack(vals) if isinstance(vals[0], torch.Tensor) else vals
    return out
