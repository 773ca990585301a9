"""The app's bundled example images: renders of this project's own renderer, with their exact intrinsics.

Each example is ``<id>.png`` (8-bit RGB) with its sidecar ``<id>.json`` (``fx, fy, cx, cy, width, height``, the
format ``metricanything infer`` reads) and, for some, ``<id>_prompt.csv``: a sparse metric prompt (``u,v,z``)
sampled from the render's exact depth, like a LiDAR sweep. ``examples.json`` lists them. No third-party
content: the pictures are made by :mod:`metricanything.data.render` and ship under the project's licence.

Regenerate (deterministic per seed) with ``python -m metricanything.app.examples [OUT_DIR]``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from metricanything.errors import InvalidInputError

LICENCE = "Apache-2.0 (rendered by metricanything.data.render; no third-party content)"


@dataclass(frozen=True)
class ExampleSpec:
    """One example: a render of ``family`` at ``seed`` and ``size`` (W, H), optionally with a prompt."""

    id: str
    title: str
    family: str
    seed: int
    size: tuple[int, int] = (320, 240)
    fov_deg: tuple[float, float] = (55.0, 70.0)
    prompt_points: int = 0


EXAMPLES: tuple[ExampleSpec, ...] = (
    ExampleSpec("room", "Room", "indoor", 2),
    ExampleSpec("corner", "Corner + prompt", "indoor", 5, prompt_points=300),
    ExampleSpec("street", "Street + prompt", "outdoor", 5, prompt_points=400),
)


def examples_dir() -> Path:
    """Folder of the shipped examples."""
    return Path(__file__).resolve().parent / "examples"


def list_examples(root: Path | None = None) -> list[dict]:
    """Entries of ``examples.json`` (id, title, image, intrinsics, prompt or None, ...); [] when absent."""
    manifest = (root or examples_dir()) / "examples.json"
    if not manifest.is_file():
        return []
    return json.loads(manifest.read_text(encoding="utf-8"))["examples"]


def render_example(spec: ExampleSpec):
    """The :class:`~metricanything.data.sample.RGBDSample` of an example (deterministic)."""
    from metricanything.data.render import render_sample

    return render_sample(spec.seed, spec.family, size=spec.size, fov_deg=spec.fov_deg)


def prompt_points_for(sample, n: int, seed: int) -> np.ndarray:
    """``n`` (u, v, z) points at distinct valid pixels of ``sample``, z rounded to millimetres."""
    v, u = np.nonzero(sample.valid)
    if len(u) < n:
        raise InvalidInputError(f"only {len(u)} valid pixels for {n} prompt points")
    pick = np.sort(np.random.default_rng(seed).choice(len(u), size=n, replace=False))
    z = np.round(sample.depth[v[pick], u[pick]].astype(np.float64), 3)
    return np.stack([u[pick], v[pick], z], axis=1)


def generate(out_dir: Path, specs: tuple[ExampleSpec, ...] = EXAMPLES) -> list[dict]:
    """Render every example into ``out_dir`` (PNG, sidecar JSON, optional prompt CSV) and write the manifest."""
    from metricanything.atomic import write_text_atomic
    from metricanything.depth_io import write_image, write_intrinsics_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for spec in specs:
        sample = render_example(spec)
        write_image(out_dir / f"{spec.id}.png", sample.image)
        write_intrinsics_json(out_dir / f"{spec.id}.json", sample.intrinsics)
        prompt = None
        if spec.prompt_points:
            pts = prompt_points_for(sample, spec.prompt_points, spec.seed)
            rows = ["u,v,z"] + [f"{int(a)},{int(b)},{c:.3f}" for a, b, c in pts]
            prompt = f"{spec.id}_prompt.csv"
            write_text_atomic(out_dir / prompt, "\n".join(rows) + "\n")
        d = sample.depth[sample.valid]
        entries.append({
            "id": spec.id,
            "title": spec.title,
            "image": f"{spec.id}.png",
            "intrinsics": f"{spec.id}.json",
            "prompt": prompt,
            "prompt_points": spec.prompt_points,
            "family": spec.family,
            "seed": spec.seed,
            "size": list(spec.size),
            "fov_deg": list(spec.fov_deg),
            "true_depth_range_m": [round(float(d.min()), 3), round(float(d.max()), 3)],
            "licence": LICENCE,
        })  # fmt: skip
    manifest = {"generator": "python -m metricanything.app.examples", "examples": entries}
    write_text_atomic(out_dir / "examples.json", json.dumps(manifest, indent=2) + "\n")
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="render the web app's example images")
    parser.add_argument("out", nargs="?", type=Path, default=examples_dir(), help="output folder (default: the package's)")
    args = parser.parse_args(argv)
    for entry in generate(args.out):
        print(f"{args.out / entry['image']}: depth {entry['true_depth_range_m'][0]}-{entry['true_depth_range_m'][1]} m")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
