"""``metricanything render``: a heterogeneous synthetic RGB-D dataset in the folder format.

Sample ``i`` is source kind ``i mod K`` of the embedded renderer + sensor simulators
(:class:`metricanything.data.mixture.MixedRenderDataset`), so the output is byte-identical for a seed with any
number of worker processes.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from metricanything.atomic import check_output_dir, clean_stale_temps, write_text_atomic
from metricanything.data.folder import write_index, write_sample
from metricanything.data.mixture import MixedRenderDataset, render_mixed_sample
from metricanything.data.sample import RGBDSample
from metricanything.depth_io import write_image, write_intrinsics_json
from metricanything.errors import InvalidInputError
from metricanything.tasks.options import option


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` -> (W, H), each side 8-8192 pixels."""
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError as exc:
        raise InvalidInputError(f"--size must look like WIDTHxHEIGHT (e.g. 256x192), got {text!r}") from exc
    if w < 8 or h < 8 or w > 8192 or h > 8192:
        raise InvalidInputError(f"--size must be between 8 and 8192 pixels per side, got {w}x{h}")
    return w, h


def format_size(size: tuple[int, int]) -> str:
    """(W, H) -> ``"WxH"`` (the inverse of :func:`parse_size`)."""
    return f"{size[0]}x{size[1]}"


@dataclass
class RenderOptions:
    """What ``metricanything render`` takes (see ``metricanything render --help``)."""

    out: Path = option("--out", Path("."), always=True)
    num: int = option("--num", 200)
    seed: int = option("--seed", 0)
    size: tuple[int, int] | None = option("--size", None, words=format_size)  # None: random per sample
    sources: str | None = option("--sources", None)  # comma-separated source kinds; None: the default mix
    fov_deg: tuple[float, float] | None = option("--fov-deg", None, many="nargs")
    depth_format: str = option("--depth-format", "npy")
    workers: int = option("--workers", 1)
    progress: bool = option("--no-progress", True, invert=True)


@dataclass
class RenderResult:
    """What was written: sample ids in order and one row of facts per sample (source, sensor, validity, ...)."""

    out: Path
    sample_ids: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def by_source(self) -> dict[str, dict[str, Any]]:
        """Per source kind: sensor, family, trusted scale, sample count and mean valid-pixel fraction."""
        out: dict[str, dict[str, Any]] = {}
        for r in self.rows:
            d = out.setdefault(r["source"], {k: r[k] for k in ("sensor", "source_kind", "metric_scale_trusted")})
            d.setdefault("valid", []).append(r["valid_fraction"])
        for d in out.values():
            d["count"] = len(d["valid"])
            d["mean_valid_fraction"] = float(np.mean(d.pop("valid")))
        return out

    def trusted_median_depth(self) -> float | None:
        """Median over samples with trusted metric scale of each sample's median valid depth."""
        values = [r["median_depth"] for r in self.rows if r["metric_scale_trusted"] and r["median_depth"] is not None]
        return float(np.median(values)) if values else None


def _render_one(job: tuple[MixedRenderDataset, int, str, str]) -> dict[str, Any]:
    dataset, i, out, depth_format = job
    s = dataset[i]
    write_sample(out, s, depth_format=depth_format)
    return {
        "sample_id": s.sample_id, "source": s.meta.get("source", s.sensor), "sensor": s.sensor,
        "source_kind": s.source_kind, "metric_scale_trusted": bool(s.metric_scale_trusted),
        "valid_fraction": float(s.valid.mean()),
        "median_depth": float(np.median(s.depth[s.valid])) if s.valid.any() else None,
    }  # fmt: skip


def run(options: RenderOptions) -> RenderResult:
    """Render ``options.num`` samples into ``options.out`` (+ ``index.json``); prints one summary line."""
    o = options
    if o.num < 1:
        raise InvalidInputError(f"--num must be >= 1, got {o.num}")
    if o.seed < 0:
        raise InvalidInputError(f"--seed must be >= 0, got {o.seed}")
    if o.workers < 1:
        raise InvalidInputError(f"--workers must be >= 1, got {o.workers}")
    dataset = MixedRenderDataset(o.num, o.seed, o.size, o.sources, fov_deg=o.fov_deg)
    out = check_output_dir(o.out, "--out")
    clean_stale_temps(out)
    jobs = [(dataset, i, str(out), o.depth_format) for i in range(len(dataset))]
    result = RenderResult(out)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one intra-op thread per process: the renderer's tensors are small, threads contend
    try:
        with contextlib.ExitStack() as stack:
            bar = stack.enter_context(tqdm(total=len(jobs), desc="render", unit="sample", disable=not o.progress))
            if o.workers == 1:
                rows = map(_render_one, jobs)
            else:
                pool = stack.enter_context(mp.get_context("spawn").Pool(o.workers, torch.set_num_threads, (1,)))
                rows = pool.imap(_render_one, jobs, chunksize=4)  # ordered
            for row in rows:
                result.rows.append(row)
                bar.update(1)
    finally:
        torch.set_num_threads(threads)
    result.sample_ids = [r["sample_id"] for r in result.rows]
    write_index(out, result.sample_ids)
    counts = Counter(r["sensor"] for r in result.rows)
    print(f"wrote {len(result.rows)} samples to {out} ({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))})")
    return result


def write_examples(out: Path, num: int, first_seed: int, size: tuple[int, int], rng: np.random.Generator,
                   prompt_fraction: float = 0.01) -> dict[str, tuple[RGBDSample, tuple[np.ndarray, np.ndarray]]]:
    """Example inputs for ``metricanything infer``: ``num`` exact renders (seeds ``first_seed + i``) as
    ``out/images/example_<i>.png``, the same next to sidecar intrinsics in ``out/images_with_camera``, a ``u,v,z``
    prompt CSV of ``prompt_fraction`` of the valid pixels (drawn with ``rng``) in ``out/prompts`` and the exact
    depth + intrinsics in ``out/truth``. Returns {name: (sample, (prompt u, prompt v))}."""
    examples = {}
    for i in range(num):
        name, s = f"example_{i}", render_mixed_sample(first_seed + i, tuple(size), source="rendered")
        write_image(out / "images" / f"{name}.png", s.image)
        write_image(out / "images_with_camera" / f"{name}.png", s.image)
        write_intrinsics_json(out / "images_with_camera" / f"{name}.json", s.intrinsics)
        write_intrinsics_json(out / "truth" / f"{name}_intrinsics.json", s.intrinsics)
        np.save(out / "truth" / f"{name}_depth.npy", np.where(s.valid, s.depth, 0).astype(np.float32))
        idx = np.flatnonzero(s.valid)
        v, u = np.unravel_index(rng.choice(idx, size=max(1, round(prompt_fraction * idx.size)), replace=False),
                                s.valid.shape)  # fmt: skip
        rows = ["u,v,z"] + [f"{a},{b},{s.depth[b, a]:.6f}" for a, b in zip(u, v, strict=True)]
        write_text_atomic(out / "prompts" / f"{name}.csv", "\n".join(rows) + "\n")
        examples[name] = (s, (u, v))
    return examples


__all__ = ["RenderOptions", "RenderResult", "format_size", "parse_size", "run", "write_examples"]
