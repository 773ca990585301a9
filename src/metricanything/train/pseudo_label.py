"""Pseudo-labelling: run a pretrained teacher over a dataset and write shards of pseudo-depth + confidence.

Data: any list of folder datasets, shard sets, native datasets (``LOADER[@SPLIT]:ROOT``) or the embedded
renderer (``render:N[:SEED[:WxH[:KINDS[:FOVLO-FOVHI]]]]``), read in a fixed order (sample i of the
concatenation). The samples are cut into consecutive blocks of ``shard_size``; block j is written by rank ``j mod world_size`` as ``<out>/pl<j:06d>-000000.tar`` plus its
``pl<j:06d>-index.json``. The index file is written last (atomically), so it marks a complete block: a
re-run (after a crash, or with more ranks) skips every block that has it. ``manifest.json`` (rank 0, at the
end) records the teacher, the options and the totals. ``job.json`` (rank 0, at the start) records what the
blocks depend on (the options but ``out``/``device``/``progress``, and a SHA-256 of the teacher's
files): a re-run with anything else different is refused instead of mixing two jobs' blocks in one folder.

Per sample, the prompt comes from whatever sparse GT the sample carries (``prompt_mode=auto``):

* no valid GT -> prompt-free (the teacher's own metric scale from the focal length);
* GT covering at most ``sparse_threshold`` of the pixels (LiDAR scans, SfM points) -> every valid point;
* denser GT -> ``prompt_fraction`` of the valid pixels drawn uniformly (seeded by the sample index).

Untrusted-scale GT (``metric_scale_trusted=False``, e.g. SfM) is first aligned (PDSA, then GMDR) to the
teacher's prompt-free prediction when ``align_untrusted`` (else it is used prompt-free). The output depth is
the teacher's prediction at the sample's full resolution; with ``tta_flip`` it is the geometric mean of the
plain and the horizontally flipped prediction, and confidence = exp(-|ln d - ln d_flip| / conf_tau)
(1 without TTA). Pixels with confidence below ``min_confidence`` (or a non-finite prediction) are invalid in
the written mask; the confidence itself is stored as the extra member ``<key>.confidence.npy``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from metricanything.atomic import write_text_atomic
from metricanything.data.sample import RGBDSample
from metricanything.data.sources import build_source, parse_loader_spec
from metricanything.errors import ConfigError, InvalidInputError
from metricanything.train.config import SourceConfig, build_config
from metricanything.train.data import imagenet_normalise


@dataclass
class PseudoLabelConfig:
    teacher: str = ""
    data: list[str] = field(default_factory=list)
    out: str = "runs/pseudo"
    shard_size: int = 64
    prompt_mode: Literal["auto", "all", "fraction", "none"] = "auto"
    prompt_fraction: float = 0.01
    sparse_threshold: float = 0.05
    align_untrusted: bool = True
    tta_flip: bool = True
    conf_tau: float = 0.05
    min_confidence: float = 0.5
    image_format: Literal["png", "jpg"] = "png"
    seed: int = 0
    limit: int | None = None
    device: str = "auto"
    progress: bool = True

    def validate(self) -> None:
        if not self.teacher:
            raise ConfigError("pseudo-label needs --teacher (a teacher checkpoint)")
        if not self.data:
            raise ConfigError("pseudo-label needs at least one --data source")
        if self.shard_size < 1:
            raise ConfigError("shard_size must be >= 1")
        if not 0 < self.prompt_fraction <= 1:
            raise ConfigError("prompt_fraction must be in (0, 1]")
        if not 0 <= self.min_confidence <= 1:
            raise ConfigError("min_confidence must be in [0, 1]")
        if self.conf_tau <= 0:
            raise ConfigError("conf_tau must be > 0")


RENDER_SPEC = "render:N[:SEED[:WxH[:KIND,...[:FOVLO-FOVHI]]]]"


def parse_data_spec(spec: str) -> SourceConfig:
    """``render:N[:SEED[:WxH[:KIND,KIND...[:FOVLO-FOVHI]]]]`` (the embedded mixture, optionally restricted to
    some source kinds and to a horizontal FoV range in degrees, e.g. ``render:384:0:160x120:rendered:55-65``), a
    shard set (directory of ``.tar``, a ``.tar`` or a glob), a folder dataset or a native dataset
    ``LOADER[@SPLIT]:ROOT`` (e.g. ``kitti@val:/data/kitti``)."""
    if spec.startswith("render:"):
        parts = spec.split(":")[1:]
        try:
            n = int(parts[0])
            seed = int(parts[1]) if len(parts) > 1 and parts[1] else 0
            size = [int(v) for v in parts[2].lower().split("x")] if len(parts) > 2 and parts[2] else None
            kinds = ([k for k in parts[3].split(",") if k] or None) if len(parts) > 3 else None
            fov = [float(v) for v in parts[4].split("-")] if len(parts) > 4 and parts[4] else None
        except (ValueError, IndexError) as exc:
            raise ConfigError(f"--data {spec!r}: expected {RENDER_SPEC}") from exc
        if n < 1 or (size is not None and len(size) != 2) or (fov is not None and len(fov) != 2) or len(parts) > 5:
            raise ConfigError(f"--data {spec!r}: expected {RENDER_SPEC} with N >= 1")
        if fov is not None:
            from metricanything.data.render import check_fov_range

            try:
                check_fov_range(fov)
            except InvalidInputError as exc:
                raise ConfigError(f"--data {spec!r}: {exc}") from exc
        return SourceConfig(kind="render", num_samples=n, seed=seed, render_size=size, sources=kinds, fov_deg=fov)
    p = Path(spec)
    from metricanything.data.folder import is_folder_dataset

    if p.is_dir() and is_folder_dataset(p):
        return SourceConfig(kind="folder", path=spec)
    if (p.is_dir() and any(p.glob("*.tar"))) or p.suffix == ".tar" or any(c in spec for c in "*?["):
        return SourceConfig(kind="shards", path=spec)
    loader = parse_loader_spec(spec)
    if loader is not None:
        return SourceConfig(kind="loader", name=loader[0], split=loader[1], path=loader[2])
    raise ConfigError(f"--data {spec!r}: not a folder dataset, a shard set, LOADER[@SPLIT]:ROOT or render:N")


class _Concat:
    def __init__(self, specs: Sequence[str]) -> None:
        self.sources = [build_source(parse_data_spec(s)) for s in specs]
        self.offsets = np.cumsum([0] + [int(s.length) for s in self.sources])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int) -> RGBDSample:
        s = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return self.sources[s].get(i - int(self.offsets[s]))


def choose_prompt(sample: RGBDSample, cfg: PseudoLabelConfig, index: int) -> tuple[np.ndarray, str]:
    """Bool H x W prompt mask drawn from the sample's own GT, and the mode used."""
    valid = sample.valid
    n = int(valid.sum())
    mode = cfg.prompt_mode
    if mode == "auto":
        mode = "none" if n == 0 else ("all" if n <= cfg.sparse_threshold * valid.size else "fraction")
    if mode == "none" or n == 0:
        return np.zeros_like(valid), "none"
    if mode == "all":
        return valid.copy(), "all"
    rng = np.random.default_rng([cfg.seed, int(index), 0x9E])
    k = max(1, int(round(cfg.prompt_fraction * n)))
    idx = rng.choice(np.flatnonzero(valid), size=min(k, n), replace=False)
    mask = np.zeros(valid.size, dtype=bool)
    mask[idx] = True
    return mask.reshape(valid.shape), "fraction"


class PseudoLabeler:
    """Runs the teacher on one sample at a time (any size) and returns (depth, confidence, info)."""

    def __init__(self, teacher: torch.nn.Module, cfg: PseudoLabelConfig, device: torch.device) -> None:
        self.teacher = teacher.to(device).eval()
        self.cfg = cfg
        self.device = device

    @torch.no_grad()
    def _predict(self, image: np.ndarray, pdepth: np.ndarray | None, pmask: np.ndarray | None, fx: float) -> np.ndarray:
        img = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div(255.0)[None].to(self.device)
        img = imagenet_normalise(img)
        f = torch.tensor([fx], device=self.device)
        if pmask is None or not pmask.any():
            out = self.teacher(img, f_px=f)
        else:
            pd = torch.from_numpy(np.where(pmask, pdepth, 0).astype(np.float32))[None, None].to(self.device)
            pm = torch.from_numpy(np.ascontiguousarray(pmask))[None, None].to(self.device)
            out = self.teacher(img, pd, pm, f)
        return out[0, 0].float().cpu().numpy()

    def label(self, sample: RGBDSample, index: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        cfg = self.cfg
        fx = sample.intrinsics.fx
        info: dict[str, Any] = {"aligned": False}
        depth, valid = sample.depth, sample.valid
        if not sample.metric_scale_trusted and valid.any():
            if cfg.align_untrusted:
                from metricanything.prompts.prep import PrepConfig, prepare_arrays

                prior = self._predict(sample.image, None, None, fx)
                try:
                    res = prepare_arrays(depth, valid, prior, trusted=False, cfg=PrepConfig())
                    depth, valid = res.depth, res.valid
                    info.update(aligned=True, pdsa_scale=res.scale, gmdr_rejected=res.num_rejected)
                except InvalidInputError:
                    valid = np.zeros_like(valid)
            else:
                valid = np.zeros_like(valid)
        mask, mode = choose_prompt(sample.replace(depth=np.where(valid, depth, 0).astype(np.float32), valid=valid), cfg, index)
        info.update(prompt_mode=mode, prompt_points=int(mask.sum()))
        d1 = self._predict(sample.image, depth, mask, fx)
        if cfg.tta_flip:
            d2 = self._predict(sample.image[:, ::-1], depth[:, ::-1], mask[:, ::-1], fx)[:, ::-1]
            with np.errstate(invalid="ignore", divide="ignore"):
                diff = np.abs(np.log(d1) - np.log(d2))
                out = np.sqrt(d1 * d2)
            conf = np.exp(-diff / cfg.conf_tau)
        else:
            out, conf = d1, np.ones_like(d1)
        conf = np.where(np.isfinite(conf), conf, 0.0).astype(np.float32)
        return out.astype(np.float32), conf, info


def _setup_dist() -> tuple[int, int, torch.device]:
    from metricanything.train.loop import setup_distributed

    d = setup_distributed(deterministic=False)
    return d.rank, d.world_size, d.device


#: options that do not change what is written (where, on what device, with a progress bar). ``limit`` is not
#: one: it sets the size of the last block, which a re-run with another limit would skip as complete.
RUN_ONLY_OPTIONS = ("out", "device", "progress")


def teacher_fingerprint(path: str | Path) -> str:
    """SHA-256 over the bytes of a checkpoint: a file, or the files (not sub-folders) of a ``save_pretrained``
    folder, by name."""
    import hashlib

    p = Path(path)
    files = sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


def job_identity(cfg: PseudoLabelConfig) -> dict[str, Any]:
    """What a pseudo-label folder's blocks depend on: every option but :data:`RUN_ONLY_OPTIONS`, plus the
    teacher's weights fingerprint (a re-trained teacher at the same path is a different job)."""
    ident = {k: v for k, v in asdict(cfg).items() if k not in RUN_ONLY_OPTIONS}
    ident["teacher_sha256"] = teacher_fingerprint(cfg.teacher)
    return ident


def check_job(out: Path, ident: dict[str, Any]) -> None:
    """Refuse to add blocks to ``out`` when it was started by a different job (``job.json``, or the
    ``manifest.json`` of a folder written before ``job.json`` existed); write ``job.json`` when absent."""
    job_file = out / "job.json"
    previous: dict[str, Any] | None = None
    if job_file.is_file():
        try:
            previous = json.loads(job_file.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{job_file}: unreadable ({exc}); delete it or use a new --out") from exc
    elif (out / "manifest.json").is_file():
        try:
            old = json.loads((out / "manifest.json").read_text()).get("config", {})
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{out / 'manifest.json'}: unreadable ({exc}); use a new --out") from exc
        previous = {k: v for k, v in old.items() if k not in RUN_ONLY_OPTIONS}
    if previous is not None:
        keys = sorted(k for k in previous if previous[k] != ident.get(k))
        if keys:
            raise ConfigError(
                f"{out}: holds pseudo-labels of a different job (differs in {', '.join(keys)}); its blocks would "
                "be mixed with the new ones. Use a new --out, or delete the folder to start over"
            )
    if not job_file.is_file():
        write_text_atomic(job_file, json.dumps(ident, indent=2, sort_keys=True))


def run_pseudo_label(cfg: PseudoLabelConfig) -> dict[str, Any]:
    """Label every block not yet written; returns the manifest (on every rank)."""
    import torch.distributed as dist

    from metricanything.data.shards import ShardWriter
    from metricanything.models.checkpoint import from_pretrained
    from metricanything.models.teacher import Teacher

    cfg.validate()
    rank, world, device = _setup_dist()
    if cfg.device != "auto":
        device = torch.device(cfg.device)
    teacher = from_pretrained(cfg.teacher)
    if not isinstance(teacher, Teacher):
        raise ConfigError(f"--teacher {cfg.teacher}: is a {type(teacher).__name__}, not a teacher checkpoint")
    labeler = PseudoLabeler(teacher, cfg, device)
    data = _Concat(cfg.data)
    total = len(data) if cfg.limit is None else min(len(data), cfg.limit)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ident = job_identity(cfg)
    if rank == 0:
        check_job(out, ident)
    if world > 1 and dist.is_initialized():
        dist.barrier()
    if rank != 0:
        check_job(out, ident)  # every rank refuses, not only rank 0
    n_blocks = math.ceil(total / cfg.shard_size)
    mine = [j for j in range(n_blocks) if j % world == rank]
    todo = [j for j in mine if not (out / f"pl{j:06d}-index.json").is_file()]
    bar = None
    if rank == 0 and cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(min(cfg.shard_size, total - j * cfg.shard_size) for j in todo), unit="img", desc="pseudo-label")
    t0 = time.perf_counter()
    done = 0
    for j in todo:
        with ShardWriter(out, prefix=f"pl{j:06d}", max_samples_per_shard=cfg.shard_size, image_format=cfg.image_format) as w:
            for i in range(j * cfg.shard_size, min(total, (j + 1) * cfg.shard_size)):
                sample = data[i]
                depth, conf, info = labeler.label(sample, i)
                valid = np.isfinite(depth) & (depth > 0) & (conf >= cfg.min_confidence)
                meta = dict(sample.meta)
                meta["pseudo_label"] = {"teacher": str(cfg.teacher), "index": i, "gt_sensor": sample.sensor,
                                        "gt_valid_fraction": float(sample.valid.mean()), **info}
                labelled = sample.replace(
                    depth=np.where(valid, depth, 0).astype(np.float32), valid=valid, sensor="pseudo",
                    metric_scale_trusted=True, meta=meta,
                )
                w.write(labelled, extras={"confidence": conf})
                done += 1
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    if world > 1 and dist.is_initialized():
        dist.barrier()
    manifest = {
        "teacher": str(cfg.teacher),
        "config": asdict(cfg),
        "num_samples": total,
        "num_shards": n_blocks,
        "shards": [f"pl{j:06d}-000000.tar" for j in range(n_blocks)],
    }
    if rank == 0:
        write_text_atomic(out / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True))
        print(f"[pseudo-label] {done} samples labelled by rank 0 in {seconds:.1f}s "
              f"({done / max(seconds, 1e-9):.2f} img/s); {len(mine) - len(todo)} of its blocks were already done",
              flush=True)
    if world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return manifest


def pseudo_label_config(**values: Any) -> PseudoLabelConfig:
    """Build a validated :class:`PseudoLabelConfig` from keyword values (None values keep the defaults)."""
    cfg = build_config(PseudoLabelConfig, {k: v for k, v in values.items() if v is not None}, where="pseudo-label")
    return cfg


__all__ = ["PseudoLabelConfig", "PseudoLabeler", "choose_prompt", "parse_data_spec", "pseudo_label_config", "run_pseudo_label"]
