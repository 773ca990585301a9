"""The embedded heterogeneous data source: rendered scenes passed through simulated sensors.

:func:`render_mixed_sample` turns one seed into one sample of one source kind (exact rendered, LiDAR, ToF,
structured light, stereo, SfM, MVS); :class:`MixedRenderDataset` is the map-style dataset used by
``metricanything render`` and for training on embedded data (no files needed). Everything is a pure
function of the seed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from metricanything.data.render import FAMILIES, check_fov_range, render_sample
from metricanything.data.sample import RGBDSample
from metricanything.data.sensors import simulate
from metricanything.errors import InvalidInputError

#: source names accepted by ``--sources`` -> simulated sensor
SOURCE_SENSORS: dict[str, str] = {
    "rendered": "synthetic",
    "lidar": "lidar",
    "tof": "tof",
    "structured_light": "structured_light",
    "stereo": "stereo",
    "sfm": "sfm",
    "mvs": "mvs",
}
#: the default mix: one of each kind of the paper's three families (rendered, captured, reconstructed)
DEFAULT_SOURCES: tuple[str, ...] = ("rendered", "lidar", "tof", "stereo", "sfm", "mvs")
#: probability of the indoor family per source (ToF / structured light only work at short range)
INDOOR_PROBABILITY: dict[str, float] = {
    "rendered": 0.5, "lidar": 0.3, "tof": 1.0, "structured_light": 1.0, "stereo": 0.5, "sfm": 0.5, "mvs": 0.5,
}


def parse_sources(sources: str | Sequence[str] | None) -> tuple[str, ...]:
    """Normalise a comma-separated string or a list of source names; raise on unknown names."""
    if sources is None:
        return DEFAULT_SOURCES
    items = sources.split(",") if isinstance(sources, str) else list(sources)
    names = tuple(s.strip().lower() for s in items if s.strip())
    names = tuple("rendered" if s == "synthetic" else s for s in names)
    if not names:
        raise InvalidInputError("no sources given")
    unknown = [s for s in names if s not in SOURCE_SENSORS]
    if unknown:
        raise InvalidInputError(f"unknown source(s) {', '.join(unknown)}; choose from {', '.join(SOURCE_SENSORS)}")
    return tuple(dict.fromkeys(names))


def derive_seed(seed: int, index: int) -> int:
    """A well-mixed 63-bit seed for item ``index`` of a run started with ``seed``."""
    if seed < 0 or index < 0:
        raise InvalidInputError(f"seed and index must be non-negative, got {seed}, {index}")
    state = np.random.SeedSequence([int(seed), int(index), 0x5EED]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def render_mixed_sample(
    seed: int,
    size: tuple[int, int] | None = None,
    sources: str | Sequence[str] | None = None,
    source: str | None = None,
    fov_deg: Sequence[float] | None = None,
) -> RGBDSample:
    """One sample from the embedded mixture, a pure function of ``seed``.

    The source kind is ``source`` if given, else drawn uniformly from ``sources`` (default
    :data:`DEFAULT_SOURCES`); the scene family is drawn with :data:`INDOOR_PROBABILITY` for that source.
    The exact render is then passed through the sensor simulator (``rendered`` stays exact). ``fov_deg``
    restricts the camera's horizontal FoV (see :func:`metricanything.data.render.sample_camera`).
    """
    names = parse_sources(sources)
    rng = np.random.default_rng([int(seed), 0xC0DE])
    if source is None:
        source = names[int(rng.integers(len(names)))]
    elif source not in SOURCE_SENSORS:
        raise InvalidInputError(f"unknown source {source!r}; choose from {', '.join(SOURCE_SENSORS)}")
    family = FAMILIES[0] if rng.uniform() < INDOOR_PROBABILITY[source] else FAMILIES[1]
    exact = render_sample(int(rng.integers(2**62)), family, size, fov_deg)
    sensor = SOURCE_SENSORS[source]
    out = simulate(exact, sensor, np.random.default_rng([int(seed), 0x5E45]))
    meta = dict(out.meta)
    meta["mixture_seed"] = int(seed)
    meta["source"] = source
    return out.replace(sample_id=f"mix-{int(seed)}-{source}", meta=meta)


class MixedRenderDataset:
    """Map-style dataset of ``num`` embedded samples; item ``i`` uses source ``sources[i % len(sources)]`` (so
    every source is present once ``num >= len(sources)``) and seed :func:`derive_seed` ``(seed, i)``.

    Items are RGBDSample records with ``sample_id = "{i:06d}-{source}"``; ``dataset`` is
    ``metricanything-render``. Usable directly as a torch ``Dataset`` with a collate function of your choice.
    """

    def __init__(self, num: int, seed: int = 0, size: tuple[int, int] | None = None,
                 sources: str | Sequence[str] | None = None, fov_deg: Sequence[float] | None = None) -> None:
        if num < 0:
            raise InvalidInputError(f"num must be >= 0, got {num}")
        if seed < 0:
            raise InvalidInputError(f"seed must be >= 0, got {seed}")
        self.num, self.seed, self.size = int(num), int(seed), size
        self.sources = parse_sources(sources)
        self.fov_deg = None if fov_deg is None else check_fov_range(fov_deg)

    def __len__(self) -> int:
        return self.num

    def source_of(self, i: int) -> str:
        return self.sources[i % len(self.sources)]

    def __getitem__(self, i: int) -> RGBDSample:
        if not -self.num <= i < self.num:
            raise IndexError(f"index {i} out of range for {self.num} samples")
        i %= self.num
        src = self.source_of(i)
        s = render_mixed_sample(derive_seed(self.seed, i), self.size, self.sources, source=src, fov_deg=self.fov_deg)
        meta = dict(s.meta)
        meta["index"] = i
        return s.replace(sample_id=f"{i:06d}-{src}", meta=meta)

    def __iter__(self) -> Iterator[RGBDSample]:
        for i in range(self.num):
            yield self[i]
