"""How training reads data: the loader that asks for items by step, the accounting of skipped (bad) samples,
and what training does to a sample before it becomes an item (network input normalisation, the square
training view with intrinsics following every resize/crop/flip, label outliers, oracle scale alignment).

Sources, their index-addressed mixture and the item/batch layout live in :mod:`metricanything.data.sources`
and :mod:`metricanything.data.batch`. Every random choice here takes a generator seeded by (seed, index)
(:func:`metricanything.data.sources.item_rng`), so an item never depends on what was drawn before it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.distributed as dist

from metricanything.data.sample import RGBDSample
from metricanything.data.sources import DataFaults

if TYPE_CHECKING:
    from metricanything.train.config import TrainConfig
    from metricanything.train.logger import Logger
    from metricanything.train.loop import Dist, Task

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_normalise(image: torch.Tensor) -> torch.Tensor:
    """B x 3 x H x W in [0, 1] -> ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
    return (image - mean) / std


# ---------------------------------------------------------------------------------------------- loader
class StepBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of global item indices for this rank, from ``start_step`` to ``total_steps`` (the data position;
    see :mod:`metricanything.train.loop`)."""

    def __init__(self, start_step: int, total_steps: int, grad_accum: int, world_size: int, rank: int, batch: int):
        self.start, self.total = start_step, total_steps
        self.accum, self.world, self.rank, self.batch = grad_accum, world_size, rank, batch

    def __iter__(self) -> Iterator[list[int]]:
        for s in range(self.start, self.total):
            for m in range(self.accum):
                base = ((s * self.accum + m) * self.world + self.rank) * self.batch
                yield list(range(base, base + self.batch))

    def __len__(self) -> int:
        return max(0, self.total - self.start) * self.accum


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def make_loader(
    dataset: torch.utils.data.Dataset, task: Task, cfg: TrainConfig, d: Dist, start_step: int
) -> torch.utils.data.DataLoader:
    sampler = StepBatchSampler(start_step, cfg.train.steps, cfg.train.grad_accum, d.world_size, d.rank, cfg.train.batch_size)
    nw = cfg.data.num_workers
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=nw,
        collate_fn=task.collate,
        worker_init_fn=_worker_init if nw else None,
        prefetch_factor=2 if nw else None,
        pin_memory=d.device.type == "cuda",
        # its own generator: creating the iterator must not consume the global RNG (exact resume)
        generator=torch.Generator().manual_seed(cfg.seed),
    )


def account_data_faults(faults: DataFaults, counts: np.ndarray, skipped: list, d: Dist, log: Logger, step: int) -> None:
    """Sum one step's draw/bad counts over ranks, log every skipped sample, then stop if a source is too bad."""
    total = torch.from_numpy(counts).to(d.device)
    if d.enabled:
        dist.all_reduce(total)
    total_np = total.cpu().numpy()
    if total_np[len(faults.names):].any():
        gathered = [skipped]
        if d.enabled:
            gathered = [None] * d.world_size
            dist.all_gather_object(gathered, skipped)
        for f in (f for part in gathered for f in part):
            log.record(step, "data_fault", {"source": f.source, "name": faults.names[f.source], "where": f.where, "error": f.error})
            log.fault_message(f"[data] step {step}: skipped a sample that failed to decode, replaced by another draw: {f.error}"
                              + ("" if f.where in f.error else f" ({f.where})"))
    faults.add(total_np)
    faults.check()


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
    augmenting, else :func:`square_crop`. ``rng=None`` gives the deterministic centred view."""
    if rng is None:
        return square_crop(sample, size, None)
    from metricanything.data.augment import random_augment

    out = random_augment(sample, rng, (size, size))
    return out if out.depth.shape == (size, size) else square_crop(out, size, None)


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
