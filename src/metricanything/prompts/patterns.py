"""Named evaluation prompt patterns, reproducible from a string and a seed.

A spec is ``base[:arg][+modifier:value]...``, e.g. ``lidar:16``, ``downsample:8``, ``points:500+noise:0.05``.
:func:`make_prompt` builds a :class:`Prompt` from ground truth (depth + validity, optional intrinsics and
image). Base patterns (full definitions in ``docs/design.md``):

* ``points:N`` - N valid pixels drawn uniformly without replacement (all of them if fewer than N).
* ``density:F`` - round(F * n_valid) valid pixels drawn uniformly (at least 1), 0 < F <= 1.
* ``downsample:K`` - super-resolution input: the image is cut into K x K blocks from the top-left corner;
  each block's value is the mean of its *valid* GT depths, placed at the block's centre
  (u = bx*K + (w_b - 1)/2, which is where a low-resolution pixel's centre lands under the pixel-edge
  convention). Blocks without valid GT give no point; partial blocks on the right/bottom border (when K
  does not divide W or H) are kept, averaged over their valid pixels and placed at their own centre.
* ``lidar:N`` - N beams of a virtual spinning LiDAR at the camera centre (no parallax). Beam elevations are
  spaced evenly over the camera's vertical field of view (bin centres). Valid GT is unprojected to 3-D; a
  point belongs to a beam when its elevation is within half a pixel's angle (0.5 / fy rad) of it; azimuth is
  quantised in steps of ``LIDAR_AZIMUTH_STEP_PX`` pixels' angle (step / fx rad) and each (beam, azimuth)
  cell keeps its point closest in elevation (one return per firing). The returns are re-projected with the
  z-buffer (:func:`splat_points_to_depth`).
* ``keypoints:orb`` / ``keypoints:fast`` - OpenCV ORB (1000 features) or FAST (threshold 20, non-maximum
  suppression) corners of the grey image; each keypoint's nearest pixel is kept when its GT is valid.
  Deterministic (the seed is unused).
* ``extreme:N`` - exactly N random valid pixels; raises if fewer than N pixels are valid.
* ``radar:N`` - automotive-radar-like: candidates are valid pixels whose ray elevation in the camera frame
  is within ``RADAR_BAND_DEG`` degrees of 0 (the camera's horizontal plane, y = 0; at least one pixel's
  angle); the camera's horizontal FoV is cut into N equal azimuth sectors and each sector contributes one
  random candidate (so at most N points, sparse in azimuth); every range gets multiplicative log-normal
  noise with sigma ``RADAR_RANGE_SIGMA`` = 5% (z and range scale together, so the pixel does not move).

Modifiers, applied left to right after the base pattern, each with its own random stream (so
``points:500+noise:0.05`` has the same locations as ``points:500``):

* ``+noise:S`` - multiplicative log-normal noise: z <- z * exp(S * e), e ~ N(0, 1) (std of ln z is S; z > 0).
* ``+outliers:F`` - floor(F * n + 0.5) points, chosen uniformly, get a depth drawn log-uniformly in
  [min, max] of the image's valid GT depth.

Without intrinsics (``K=None``) geometric patterns assume a centred principal point and focal = image
height (the Prior-Depth-Anything protocol's convention). Patterns return an empty prompt when nothing
qualifies (no valid GT, no keypoint), except ``extreme:N`` which raises.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from metricanything.camera import Intrinsics, splat_points_to_depth, unproject
from metricanything.errors import InvalidInputError
from metricanything.prompts.prompt import Prompt

#: Azimuth sampling of ``lidar:N``, in pixels at the image centre.
LIDAR_AZIMUTH_STEP_PX = 2.0
#: Half-height of the ``radar:N`` elevation band, degrees.
RADAR_BAND_DEG = 2.0
#: Log-normal range noise of ``radar:N``.
RADAR_RANGE_SIGMA = 0.05


@dataclass(frozen=True)
class _Ctx:
    depth: np.ndarray  # float64 H x W
    valid: np.ndarray  # bool H x W
    K: Intrinsics
    image: np.ndarray | None

    @property
    def width(self) -> int:
        return self.depth.shape[1]

    @property
    def height(self) -> int:
        return self.depth.shape[0]


@dataclass(frozen=True)
class PatternDef:
    """A registered base pattern or modifier."""

    name: str
    arg_type: str  # "int", "float" or "choice"
    description: str
    fn: Callable
    choices: tuple[str, ...] = ()
    default: str | None = None


@dataclass(frozen=True)
class PatternSpec:
    """A parsed spec: base name and argument, then modifiers ``(name, value)`` in order."""

    name: str
    arg: int | float | str | None
    modifiers: tuple[tuple[str, float], ...] = ()

    def __str__(self) -> str:
        base = self.name if self.arg is None else f"{self.name}:{self.arg}"
        return base + "".join(f"+{m}:{v:g}" for m, v in self.modifiers)


# ---------------------------------------------------------------------- base patterns


def _from_flat(ctx: _Ctx, flat: np.ndarray) -> Prompt:
    v, u = np.divmod(flat.astype(np.int64), ctx.width)
    pts = np.stack([u, v, ctx.depth[v, u]], axis=1).astype(np.float64)
    return Prompt.from_points(pts.reshape(-1, 3), ctx.width, ctx.height, allow_empty=True)


def _random_valid(ctx: _Ctx, n: int, rng: np.random.Generator) -> Prompt:
    flat = np.flatnonzero(ctx.valid)
    pick = rng.choice(flat.size, size=min(n, flat.size), replace=False)
    return _from_flat(ctx, np.sort(flat[pick]))


def _points(n: int, ctx: _Ctx, rng: np.random.Generator) -> Prompt:
    if n < 1:
        raise InvalidInputError(f"points:N needs N >= 1, got {n}")
    return _random_valid(ctx, n, rng)


def _density(f: float, ctx: _Ctx, rng: np.random.Generator) -> Prompt:
    if not 0.0 < f <= 1.0:
        raise InvalidInputError(f"density:F needs 0 < F <= 1, got {f}")
    n_valid = int(ctx.valid.sum())
    return _random_valid(ctx, max(1, int(round(f * n_valid))) if n_valid else 0, rng)


def _extreme(n: int, ctx: _Ctx, rng: np.random.Generator) -> Prompt:
    if n < 1:
        raise InvalidInputError(f"extreme:N needs N >= 1, got {n}")
    n_valid = int(ctx.valid.sum())
    if n_valid < n:
        raise InvalidInputError(f"extreme:{n} needs at least {n} valid GT pixels, the image has {n_valid}")
    return _random_valid(ctx, n, rng)


def block_means(depth: np.ndarray, valid: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of valid depth per k x k block (top-left aligned, partial border blocks kept) and its count.

    Returns ``(mean, count)`` of shape ceil(H/k) x ceil(W/k); mean is 0 where count is 0.
    """
    h, w = depth.shape
    hb, wb = -(-h // k), -(-w // k)
    d = np.zeros((hb * k, wb * k))
    m = np.zeros((hb * k, wb * k))
    d[:h, :w] = np.where(valid, depth, 0.0)
    m[:h, :w] = valid
    s = d.reshape(hb, k, wb, k).sum(axis=(1, 3))
    c = m.reshape(hb, k, wb, k).sum(axis=(1, 3))
    mean = np.divide(s, c, out=np.zeros_like(s), where=c > 0)
    return mean, c.astype(np.int64)


def _downsample(k: int, ctx: _Ctx, rng: np.random.Generator) -> Prompt:
    if k < 1:
        raise InvalidInputError(f"downsample:K needs K >= 1, got {k}")
    mean, count = block_means(ctx.depth, ctx.valid, k)
    by, bx = np.nonzero(count > 0)
    bh = np.minimum(k, ctx.height - by * k)
    bw = np.minimum(k, ctx.width - bx * k)
    u = bx * k + (bw - 1) / 2.0
    v = by * k + (bh - 1) / 2.0
    pts = np.stack([u, v, mean[by, bx]], axis=1).reshape(-1, 3)
    return Prompt.from_points(pts, ctx.width, ctx.height, allow_empty=True)


def _angles(ctx: _Ctx) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flat indices of valid pixels, their 3-D points, elevation (up positive) and azimuth (right positive)."""
    flat = np.flatnonzero(ctx.valid)
    pts = unproject(ctx.depth, ctx.K).reshape(-1, 3)[flat]
    x, y, z = pts[:, 0], pts[:, 1], pts[:, 2]
    elev = np.arctan2(-y, np.hypot(x, z))
    az = np.arctan2(x, z)
    return flat, pts, elev, az


def lidar_beam_elevations(K: Intrinsics, n_beams: int) -> np.ndarray:
    """Elevations (radians, up positive) of ``lidar:N`` beams: bin centres over the camera's vertical FoV."""
    top = math.atan((K.cy + 0.5) / K.fy)
    bottom = -math.atan((K.height - 0.5 - K.cy) / K.fy)
    return bottom + (np.arange(n_beams) + 0.5) * (top - bottom) / n_beams


def _lidar(n_beams: int, ctx: _Ctx, rng: np.random.Generator) -> Prompt:
    if n_beams < 1:
        raise InvalidInputError(f"lidar:N needs N >= 1 beams, got {n_beams}")
    K = ctx.K
    beams = lidar_beam_elevations(K, n_beams)
    _, pts, elev, az = _angles(ctx)
    spacing = (beams[-1] - beams[0]) / max(n_beams - 1, 1) if n_beams > 1 else 1.0
    j = np.clip(np.round((elev - beams[0]) / spacing), 0, n_beams - 1).astype(np.int64)
    d = np.abs(elev - beams[j])
    cand = d <= 0.5 / K.fy
    a = np.floor(az / (LIDAR_AZIMUTH_STEP_PX / K.fx)).astype(np.int64)
    j, a, d, pts = j[cand], a[cand], d[cand], pts[cand]
    if a.size:
        a = a - a.min()
    cell = j * (int(a.max()) + 1 if a.size else 1) + a
    order = np.lexsort((d, cell))
    first = np.ones(order.shape, dtype=bool)
    first[1:] = cell[order][1:] != cell[order][:-1]
    chosen = pts[order[first]]
    depth, mask = splat_points_to_depth(chosen, K)
    return Prompt.from_map(depth, mask, allow_empty=True)


def _radar(n: int, ctx: _Ctx, rng: np.random.Generator) -> Prompt:
    if n < 1:
        raise InvalidInputError(f"radar:N needs N >= 1, got {n}")
    K = ctx.K
    flat, _, elev, az = _angles(ctx)
    band = max(math.radians(RADAR_BAND_DEG), 1.0 / K.fy)
    cand = np.abs(elev) <= band
    flat, az = flat[cand], az[cand]
    left = -math.atan((K.cx + 0.5) / K.fx)
    right = math.atan((K.width - 0.5 - K.cx) / K.fx)
    sector = np.clip(np.floor((az - left) / (right - left) * n), 0, n - 1).astype(np.int64)
    # one random candidate per sector: random key, keep the smallest per sector
    key = rng.random(flat.size)
    order = np.lexsort((key, sector))
    first = np.ones(order.shape, dtype=bool)
    first[1:] = sector[order][1:] != sector[order][:-1]
    chosen = np.sort(flat[order[first]])
    v, u = np.divmod(chosen, ctx.width)
    z = ctx.depth[v, u] * np.exp(RADAR_RANGE_SIGMA * rng.standard_normal(chosen.size))
    pts = np.stack([u, v, z], axis=1).astype(np.float64).reshape(-1, 3)
    return Prompt.from_points(pts, ctx.width, ctx.height, allow_empty=True)


def _keypoints(detector: str, ctx: _Ctx, rng: np.random.Generator) -> Prompt:
    import cv2

    if ctx.image is None:
        raise InvalidInputError(f"keypoints:{detector} needs the image (pass image=...)")
    img = ctx.image
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    if detector == "orb":
        patch = 31 if min(ctx.width, ctx.height) >= 256 else 15
        det = cv2.ORB_create(nfeatures=1000, edgeThreshold=patch, patchSize=patch)
    else:
        det = cv2.FastFeatureDetector_create(threshold=20, nonmaxSuppression=True)
    kps = det.detect(gray, None)
    if not kps:
        return Prompt.empty(ctx.width, ctx.height)
    uv = np.array([kp.pt for kp in kps], dtype=np.float64)
    ui = np.clip(np.floor(uv[:, 0] + 0.5).astype(np.int64), 0, ctx.width - 1)
    vi = np.clip(np.floor(uv[:, 1] + 0.5).astype(np.int64), 0, ctx.height - 1)
    flat = np.unique(vi * ctx.width + ui)
    flat = flat[ctx.valid.reshape(-1)[flat]]
    return _from_flat(ctx, flat)


# ---------------------------------------------------------------------- modifiers


def _noise(sigma: float, prompt: Prompt, ctx: _Ctx, rng: np.random.Generator) -> Prompt:
    if not (sigma >= 0 and math.isfinite(sigma)):
        raise InvalidInputError(f"noise:S needs a finite S >= 0, got {sigma}")
    z = prompt.z * np.exp(sigma * rng.standard_normal(prompt.num_points))
    return Prompt(prompt.u, prompt.v, z, prompt.width, prompt.height, prompt.confidence)


def _outliers(frac: float, prompt: Prompt, ctx: _Ctx, rng: np.random.Generator) -> Prompt:
    if not 0.0 <= frac <= 1.0:
        raise InvalidInputError(f"outliers:F needs 0 <= F <= 1, got {frac}")
    n = prompt.num_points
    m = int(math.floor(frac * n + 0.5))
    if m == 0:
        return prompt
    gt = ctx.depth[ctx.valid]
    lo, hi = math.log(float(gt.min())), math.log(float(gt.max()))
    idx = rng.choice(n, size=m, replace=False)
    z = prompt.z.copy()
    z[idx] = np.exp(rng.uniform(lo, hi, size=m))
    return Prompt(prompt.u, prompt.v, z, prompt.width, prompt.height, prompt.confidence)


#: Base patterns, by name.
PATTERNS: dict[str, PatternDef] = {
    p.name: p
    for p in (
        PatternDef("points", "int", "N valid pixels drawn uniformly", _points),
        PatternDef("density", "float", "a fraction F of the valid pixels drawn uniformly", _density),
        PatternDef("downsample", "int", "K x K block means of valid GT at block centres", _downsample),
        PatternDef("lidar", "int", "N LiDAR beams over the vertical FoV, z-buffered", _lidar),
        PatternDef("keypoints", "choice", "OpenCV corners with valid GT", _keypoints, ("orb", "fast"), "orb"),
        PatternDef("extreme", "int", "exactly N random valid pixels", _extreme),
        PatternDef("radar", "int", "<= N points near the horizontal plane, 5% range noise", _radar),
    )
}

#: Modifiers, by name (always with a float value).
MODIFIERS: dict[str, PatternDef] = {
    p.name: p
    for p in (
        PatternDef("noise", "float", "multiplicative log-normal noise of std S in ln z", _noise),
        PatternDef("outliers", "float", "a fraction F of points get a random depth in the GT range", _outliers),
    )
}


def _parse_arg(d: PatternDef, raw: str | None, spec: str) -> int | float | str:
    if raw is None or raw == "":
        if d.default is None:
            raise InvalidInputError(f"pattern {spec!r}: {d.name} needs an argument, e.g. {d.name}:{_example(d)}")
        raw = d.default
    try:
        if d.arg_type == "int":
            val = float(raw)
            if val != int(val):
                raise ValueError
            return int(val)
        if d.arg_type == "float":
            return float(raw)
    except ValueError as exc:
        raise InvalidInputError(f"pattern {spec!r}: {d.name} needs a {d.arg_type} argument, got {raw!r}") from exc
    raw = raw.lower()
    if raw not in d.choices:
        raise InvalidInputError(f"pattern {spec!r}: {d.name} must be one of {list(d.choices)}, got {raw!r}")
    return raw


def _example(d: PatternDef) -> str:
    return {"points": "500", "density": "0.01", "downsample": "8", "lidar": "16", "extreme": "5", "radar": "50",
            "noise": "0.05", "outliers": "0.1"}.get(d.name, d.choices[0] if d.choices else "1")


def available_patterns() -> str:
    """Human-readable list of valid pattern and modifier names."""
    base = ", ".join(f"{n}:{_example(d)}" for n, d in PATTERNS.items())
    mods = ", ".join(f"+{n}:{_example(d)}" for n, d in MODIFIERS.items())
    return f"patterns: {base}; modifiers: {mods}"


def parse_pattern(spec: str) -> PatternSpec:
    """Parse ``base[:arg][+modifier:value]...``; raises :class:`InvalidInputError` listing valid names."""
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidInputError(f"empty prompt pattern; {available_patterns()}")
    parts = [p.strip() for p in spec.strip().split("+")]
    name, _, raw = parts[0].partition(":")
    name = name.strip().lower()
    if name not in PATTERNS:
        raise InvalidInputError(f"unknown prompt pattern {name!r} in {spec!r}; {available_patterns()}")
    arg = _parse_arg(PATTERNS[name], raw.strip() if raw else None, spec)
    mods = []
    for part in parts[1:]:
        mname, _, mraw = part.partition(":")
        mname = mname.strip().lower()
        if mname not in MODIFIERS:
            raise InvalidInputError(f"unknown prompt modifier {mname!r} in {spec!r}; {available_patterns()}")
        mods.append((mname, float(_parse_arg(MODIFIERS[mname], mraw.strip() if mraw else None, spec))))
    return PatternSpec(name, arg, tuple(mods))


def default_intrinsics(width: int, height: int) -> Intrinsics:
    """Fallback camera for geometric patterns without intrinsics: focal = image height, centred principal point."""
    return Intrinsics.from_focal(float(height), width, height)


def make_prompt(
    spec: str | PatternSpec,
    depth: np.ndarray,
    valid: np.ndarray,
    K: Intrinsics | None = None,
    image: np.ndarray | None = None,
    seed: int = 0,
) -> Prompt:
    """Build the prompt named by ``spec`` from GT ``depth`` (H x W, metres) and ``valid`` (bool H x W).

    Same spec, inputs and seed -> the same prompt. See the module docstring for every pattern's definition.
    """
    parsed = spec if isinstance(spec, PatternSpec) else parse_pattern(spec)
    depth = np.asarray(depth)
    valid = np.asarray(valid)
    if depth.ndim != 2:
        raise InvalidInputError(f"GT depth must be H x W, got shape {depth.shape}")
    if valid.shape != depth.shape or valid.dtype != np.bool_:
        raise InvalidInputError(f"valid must be a bool mask of the depth's shape {depth.shape}, got {valid.dtype} {valid.shape}")
    h, w = depth.shape
    d = np.where(valid, depth, 0.0).astype(np.float64)
    if not (np.isfinite(d).all() and (d[valid] > 0).all()):
        raise InvalidInputError("GT depth must be finite and > 0 wherever valid is True")
    if K is None:
        K = default_intrinsics(w, h)
    elif (K.width, K.height) != (w, h):
        raise InvalidInputError(f"intrinsics are {K.width}x{K.height} but the depth is {w}x{h}")
    if image is not None:
        image = np.asarray(image)
        if image.shape[:2] != (h, w) or image.dtype != np.uint8:
            raise InvalidInputError(f"image must be uint8 {h}x{w}[x3], got {image.dtype} {image.shape}")
    ctx = _Ctx(d, valid, K, image)
    seq = np.random.SeedSequence(int(seed))
    streams = seq.spawn(1 + len(parsed.modifiers))
    prompt = PATTERNS[parsed.name].fn(parsed.arg, ctx, np.random.default_rng(streams[0]))
    for (mname, value), stream in zip(parsed.modifiers, streams[1:], strict=True):
        prompt = MODIFIERS[mname].fn(value, prompt, ctx, np.random.default_rng(stream))
    return prompt
