"""The user-facing Sparse Metric Prompt: metric points ``(u, v, z[, confidence])`` on an image grid.

A :class:`Prompt` stores *points* with continuous pixel coordinates (OpenCV convention of
:mod:`metricanything.camera`: pixel centres at integers, the nearest pixel of ``(u, v)`` is
``(floor(u + 0.5), floor(v + 0.5))``) together with the size of the image they belong to. A depth map + mask
converts to points at pixel centres and back without loss.

Rules (every constructor enforces them and raises :class:`InvalidInputError` with the reason):

* every ``z`` is finite and > 0 (0 is never a depth; NaN/inf/negative are rejected, not dropped);
* every point's nearest pixel lies inside the image, unless the constructor is called with
  ``drop_outside=True``, which silently discards those points (documented option, used by crops);
* an empty prompt is an error unless ``allow_empty=True`` (an empty prompt is legitimate for prompt-free
  inference: it encodes to ``has_prompt = False``, see :func:`encode_prompt`).

Several points landing in one pixel (:meth:`Prompt.to_map`): the **nearest** one (smallest z) wins, the same
z-buffer rule as :func:`metricanything.camera.splat_points_to_depth`, so a background point never shows
through a foreground one. Resizing therefore maps every point exactly (pixel edges onto pixel edges, as
:meth:`Intrinsics.resized`) and re-rasterises with the z-buffer: sparse data is never interpolated.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metricanything.camera import Intrinsics
from metricanything.errors import InputFileError, InvalidInputError
from metricanything.prompts.encoding import EncodedPrompt, encode_prompt


def _as_1d(name: str, values: np.ndarray | list | None, n: int | None = None) -> np.ndarray | None:
    if values is None:
        return None
    arr = np.array(values, dtype=np.float64).reshape(-1)  # a private copy (it is made read-only)
    if n is not None and arr.shape[0] != n:
        raise InvalidInputError(f"prompt {name} has {arr.shape[0]} entries, expected {n}")
    return arr


@dataclass(frozen=True, eq=False)
class Prompt:
    """Metric prompt points on a ``width`` x ``height`` image.

    ``u``, ``v`` (float64, pixels), ``z`` (float64, metres, z-depth) and optional ``confidence`` (float64,
    finite, >= 0) are 1-D arrays of equal length. Build with :meth:`from_points` / :meth:`from_map` /
    :meth:`empty` / :func:`read_prompt_file` rather than directly, so validation options apply.
    """

    u: np.ndarray
    v: np.ndarray
    z: np.ndarray
    width: int
    height: int
    confidence: np.ndarray | None = None

    def __post_init__(self) -> None:
        if int(self.width) != self.width or int(self.height) != self.height or self.width < 1 or self.height < 1:
            raise InvalidInputError(f"prompt image size must be positive integers, got {self.width}x{self.height}")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        u = _as_1d("u", self.u)
        n = u.shape[0]
        object.__setattr__(self, "u", u)
        object.__setattr__(self, "v", _as_1d("v", self.v, n))
        object.__setattr__(self, "z", _as_1d("z", self.z, n))
        object.__setattr__(self, "confidence", _as_1d("confidence", self.confidence, n))
        _validate(self.u, self.v, self.z, self.confidence, self.width, self.height)
        for arr in (self.u, self.v, self.z, self.confidence):
            if arr is not None:
                arr.setflags(write=False)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def empty(cls, width: int, height: int) -> Prompt:
        """A prompt with no points (prompt-free inference)."""
        e = np.zeros(0)
        return cls(e, e, e, width, height)

    @classmethod
    def from_points(
        cls,
        points: np.ndarray,
        width: int,
        height: int,
        *,
        drop_outside: bool = False,
        allow_empty: bool = False,
    ) -> Prompt:
        """Points ``N x 3`` (u, v, z) or ``N x 4`` (u, v, z, confidence) on a ``width`` x ``height`` image.

        Points whose nearest pixel is outside the image raise :class:`InvalidInputError`, or are discarded
        with ``drop_outside=True``. Non-finite or non-positive ``z`` always raises.
        """
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim == 1 and pts.size == 0:
            pts = pts.reshape(0, 3)
        if pts.ndim != 2 or pts.shape[1] not in (3, 4):
            raise InvalidInputError(f"prompt points must be N x 3 (u, v, z) or N x 4 (+confidence), got {pts.shape}")
        if not np.isfinite(pts[:, :2]).all():
            raise InvalidInputError("prompt point coordinates (u, v) must be finite")
        if drop_outside:
            pts = pts[_inside(pts[:, 0], pts[:, 1], width, height)]
        if pts.shape[0] == 0 and not allow_empty:
            raise InvalidInputError(
                "prompt has no points" + (" inside the image" if drop_outside else "")
                + " (pass allow_empty=True for a deliberate prompt-free input)"
            )
        conf = pts[:, 3] if pts.shape[1] == 4 else None
        return cls(pts[:, 0], pts[:, 1], pts[:, 2], width, height, conf)

    @classmethod
    def from_map(
        cls,
        depth: np.ndarray,
        mask: np.ndarray,
        confidence: np.ndarray | None = None,
        *,
        allow_empty: bool = False,
    ) -> Prompt:
        """A depth map (H x W, metres) and its bool mask (H x W) -> points at the masked pixel centres.

        Values under ``mask = False`` are ignored whatever they are. Masked values must be finite and > 0.
        """
        depth = np.asarray(depth)
        mask = np.asarray(mask)
        if depth.ndim != 2:
            raise InvalidInputError(f"prompt depth map must be H x W, got shape {depth.shape}")
        if mask.shape != depth.shape:
            raise InvalidInputError(f"prompt mask {mask.shape} and depth map {depth.shape} differ in shape")
        if mask.dtype != np.bool_:
            if not np.isin(mask, (0, 1)).all():
                raise InvalidInputError("prompt mask must be boolean (or 0/1)")
            mask = mask.astype(bool)
        if not mask.any() and not allow_empty:
            raise InvalidInputError("prompt mask is empty (pass allow_empty=True for a deliberate prompt-free input)")
        v, u = np.nonzero(mask)
        conf = None
        if confidence is not None:
            confidence = np.asarray(confidence)
            if confidence.shape != depth.shape:
                raise InvalidInputError(f"confidence map {confidence.shape} and depth map {depth.shape} differ")
            conf = confidence[v, u]
        h, w = depth.shape
        return cls(u.astype(np.float64), v.astype(np.float64), depth[v, u].astype(np.float64), w, h, conf)

    # ------------------------------------------------------------------ views
    @property
    def num_points(self) -> int:
        """Number of stored points (before any pixel collisions are resolved)."""
        return int(self.z.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the image the prompt belongs to."""
        return self.width, self.height

    def __len__(self) -> int:
        return self.num_points

    def __repr__(self) -> str:
        conf = ", with confidence" if self.confidence is not None else ""
        return f"Prompt({self.num_points} points on {self.width}x{self.height}{conf})"

    def to_points(self) -> np.ndarray:
        """``N x 3`` (u, v, z), or ``N x 4`` (u, v, z, confidence) when confidences are present; float64."""
        cols = [self.u, self.v, self.z] + ([self.confidence] if self.confidence is not None else [])
        return np.stack(cols, axis=1) if self.num_points else np.zeros((0, len(cols)))

    def pixel_indices(self) -> tuple[np.ndarray, np.ndarray]:
        """Integer (column, row) of each point's nearest pixel, ``floor(u + 0.5)``, ``floor(v + 0.5)``."""
        return np.floor(self.u + 0.5).astype(np.int64), np.floor(self.v + 0.5).astype(np.int64)

    def _winners(self) -> tuple[np.ndarray, np.ndarray]:
        """Flat pixel index and index of the winning (nearest) point of each occupied pixel."""
        ui, vi = self.pixel_indices()
        flat = vi * self.width + ui
        order = np.lexsort((self.z, flat))  # by pixel, nearest first
        fs = flat[order]
        first = np.ones(fs.shape, dtype=bool)
        first[1:] = fs[1:] != fs[:-1]
        return fs[first], order[first]

    def to_map(self) -> tuple[np.ndarray, np.ndarray]:
        """Rasterise to ``(depth float32 H x W, mask bool H x W)``; depth is 0 (meaningless) where mask is False.

        When several points share a pixel the nearest (smallest z) wins (z-buffer).
        """
        depth = np.zeros(self.height * self.width, dtype=np.float32)
        mask = np.zeros(self.height * self.width, dtype=bool)
        pix, win = self._winners()
        depth[pix] = self.z[win].astype(np.float32)
        mask[pix] = True
        return depth.reshape(self.height, self.width), mask.reshape(self.height, self.width)

    def confidence_map(self) -> np.ndarray | None:
        """float32 H x W confidence of the winning point per pixel (0 elsewhere), or None without confidences."""
        if self.confidence is None:
            return None
        out = np.zeros(self.height * self.width, dtype=np.float32)
        pix, win = self._winners()
        out[pix] = self.confidence[win]
        return out.reshape(self.height, self.width)

    def to_tensors(self, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(depth float32 1 x 1 x H x W, mask bool 1 x 1 x H x W)`` torch tensors (see :meth:`to_map`)."""
        d, m = self.to_map()
        return (
            torch.from_numpy(d).reshape(1, 1, self.height, self.width).to(device),
            torch.from_numpy(m).reshape(1, 1, self.height, self.width).to(device),
        )

    def encode(self, device: torch.device | str | None = None) -> EncodedPrompt:
        """Network encoding through :func:`metricanything.prompts.encoding.encode_prompt` (batch of 1)."""
        return encode_prompt(*self.to_tensors(device))

    # ------------------------------------------------------------------ geometric operations
    def _with(self, u: np.ndarray, v: np.ndarray, width: int, height: int, drop_outside: bool) -> Prompt:
        keep = _inside(u, v, width, height) if drop_outside else np.ones(u.shape, dtype=bool)
        conf = None if self.confidence is None else self.confidence[keep]
        return Prompt(u[keep], v[keep], self.z[keep], width, height, conf)

    def resized(self, width: int, height: int) -> Prompt:
        """The prompt on the image resized to ``width`` x ``height``: u -> (u + 0.5) W'/W - 0.5 (as Intrinsics).

        Points keep their depth (resizing does not move the camera). Collisions are resolved at
        :meth:`to_map` time by the z-buffer, so shrinking a dense map acts as a per-pixel nearest-depth pool.
        """
        sx, sy = width / self.width, height / self.height
        return self._with((self.u + 0.5) * sx - 0.5, (self.v + 0.5) * sy - 0.5, width, height, drop_outside=False)

    def cropped(self, left: int, top: int, width: int, height: int) -> Prompt:
        """The prompt on the window [left, left+width) x [top, top+height) (as :meth:`Intrinsics.cropped`).

        Points falling outside the window are dropped (that is what a crop means); the result may be empty.
        """
        return self._with(self.u - left, self.v - top, width, height, drop_outside=True)

    def padded(self, left: int, top: int, right: int, bottom: int) -> Prompt:
        """The prompt after padding the image (negative values crop; points that fall outside are dropped)."""
        w, h = self.width + left + right, self.height + top + bottom
        return self._with(self.u + left, self.v + top, w, h, drop_outside=True)

    def flipped_horizontally(self) -> Prompt:
        """Mirror left-right: u -> W - 1 - u (as :meth:`Intrinsics.flipped_horizontally`)."""
        return self._with(self.width - 1 - self.u, self.v, self.width, self.height, drop_outside=False)

    def flipped_vertically(self) -> Prompt:
        """Mirror top-bottom: v -> H - 1 - v."""
        return self._with(self.u, self.height - 1 - self.v, self.width, self.height, drop_outside=False)

    def check_size(self, K: Intrinsics) -> None:
        """Raise :class:`InvalidInputError` unless the prompt's image size equals the intrinsics' size."""
        if (K.width, K.height) != (self.width, self.height):
            raise InvalidInputError(
                f"prompt is for a {self.width}x{self.height} image but the intrinsics are {K.width}x{K.height}"
            )


def stack_prompts(
    prompts: list[Prompt], device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch prompts of one image size: ``(depth float32 B x 1 x H x W, mask bool B x 1 x H x W)``."""
    if not prompts:
        raise InvalidInputError("stack_prompts needs at least one prompt")
    sizes = {p.size for p in prompts}
    if len(sizes) != 1:
        raise InvalidInputError(f"prompts of different image sizes cannot be batched: {sorted(sizes)}")
    tensors = [p.to_tensors() for p in prompts]
    return torch.cat([t[0] for t in tensors]).to(device), torch.cat([t[1] for t in tensors]).to(device)


def _inside(u: np.ndarray, v: np.ndarray, width: int, height: int) -> np.ndarray:
    ui, vi = np.floor(u + 0.5), np.floor(v + 0.5)
    return (ui >= 0) & (ui < width) & (vi >= 0) & (vi < height)


def _validate(
    u: np.ndarray, v: np.ndarray, z: np.ndarray, conf: np.ndarray | None, width: int, height: int
) -> None:
    if not (np.isfinite(u).all() and np.isfinite(v).all()):
        raise InvalidInputError("prompt point coordinates (u, v) must be finite")
    bad = ~np.isfinite(z)
    if bad.any():
        raise InvalidInputError(f"prompt has {int(bad.sum())} non-finite depth value(s) (NaN/inf); depth must be > 0")
    bad = z <= 0
    if bad.any():
        raise InvalidInputError(
            f"prompt has {int(bad.sum())} depth value(s) <= 0 (min {z.min():g}); 0 is never a depth - "
            "leave such points out (or mask them) instead"
        )
    out = ~_inside(u, v, width, height)
    if out.any():
        i = int(np.nonzero(out)[0][0])
        raise InvalidInputError(
            f"{int(out.sum())} prompt point(s) lie outside the {width}x{height} image (first: u={u[i]:g}, "
            f"v={v[i]:g}; valid range is -0.5 <= u < {width - 0.5:g}, -0.5 <= v < {height - 0.5:g}); "
            "use drop_outside=True to discard them"
        )
    if conf is not None and not (np.isfinite(conf).all() and (conf >= 0).all()):
        raise InvalidInputError("prompt confidences must be finite and >= 0")


# ---------------------------------------------------------------------- files

#: File suffixes understood by :func:`read_prompt_file`.
PROMPT_FILE_SUFFIXES = (".npy", ".csv", ".png")


def _map_to_prompt(depth: np.ndarray, mask: np.ndarray, width: int, height: int, path: Path) -> Prompt:
    """A prompt map of the image's size, or of another size with the same aspect ratio (low-res depth)."""
    h, w = depth.shape
    if not mask.any():
        raise InputFileError(path, "the prompt map has no valid depth (every pixel is 0 or NaN)")
    prompt = Prompt.from_map(depth, mask)
    if (w, h) == (width, height):
        return prompt
    if abs(w / h - width / height) > 0.01 * (width / height):
        raise InputFileError(
            path,
            f"the prompt map is {w}x{h} but the image is {width}x{height}; a map of another size is accepted "
            "only with the same aspect ratio (low-resolution depth)",
        )
    return prompt.resized(width, height)


def read_prompt_file(
    path: str | os.PathLike, width: int, height: int, *, drop_outside: bool = False, png_scale: float = 1e-3
) -> Prompt:
    """Read a user prompt file for a ``width`` x ``height`` image. Raises :class:`InputFileError` on any problem.

    Formats:

    * ``.npy`` of shape H x W: a depth map in metres; **0 and NaN mean "no prompt"** at that pixel; negative
      or infinite values are errors. ``.npy`` of shape N x 3 / N x 4: points (u, v, z[, confidence]); a
      2-D array with 3 or 4 columns is always read as points unless its shape is exactly H x W.
    * ``.csv`` with a header naming the columns ``u``, ``v``, ``z`` (optionally ``confidence``; other columns
      are ignored); one point per row.
    * ``.png`` 16-bit single-channel depth, ``png_scale`` metres per unit (**millimetres** by default), 0 = no
      prompt.

    A map whose size differs from the image but has the same aspect ratio (within 1%) is taken as
    low-resolution depth: each of its pixels becomes a point at the corresponding location of the image
    (pixel edges onto pixel edges, :meth:`Prompt.resized`). Points outside the image are an error unless
    ``drop_outside=True``. An empty prompt is an error. Messages name the file and speak of its content (rows,
    columns, pixels), not of Python arguments, so they read right from the command line too.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(p, "prompt file not found")
    if not p.is_file():
        raise InputFileError(p, "prompt path is not a file")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            return _read_npy(p, width, height, drop_outside)
        if suffix == ".csv":
            return _read_csv(p, width, height, drop_outside)
        if suffix == ".png":
            return _read_png(p, width, height, png_scale)
    except InvalidInputError as exc:
        raise InputFileError(p, str(exc)) from exc
    raise InputFileError(p, f"unsupported prompt file type {suffix!r}; expected one of {PROMPT_FILE_SUFFIXES}")


def _points_or_error(pts: np.ndarray, width: int, height: int, drop_outside: bool, path: Path) -> Prompt:
    if pts.shape[0] == 0:
        raise InputFileError(path, "the prompt file contains no points")
    if not np.isfinite(pts[:, :2]).all():
        raise InputFileError(path, f"{int((~np.isfinite(pts[:, :2])).any(axis=1).sum())} point(s) have a non-finite u or v")
    out = ~_inside(pts[:, 0], pts[:, 1], width, height)
    if out.any() and not drop_outside:
        i = int(np.nonzero(out)[0][0])
        raise InputFileError(
            path,
            f"{int(out.sum())} of {len(pts)} prompt point(s) lie outside the {width}x{height} image (first: point "
            f"{i + 1}, u={pts[i, 0]:g}, v={pts[i, 1]:g}); u and v are pixel coordinates of this image (pixel centres "
            f"at integers: -0.5 <= u < {width - 0.5:g}, -0.5 <= v < {height - 0.5:g}). Remove those points, or check "
            "that the prompt was made for an image of this size",
        )
    prompt = Prompt.from_points(pts, width, height, drop_outside=drop_outside, allow_empty=True)
    if prompt.num_points == 0:
        raise InputFileError(path, f"none of the {pts.shape[0]} prompt points lies inside the {width}x{height} image")
    return prompt


def _read_npy(p: Path, width: int, height: int, drop_outside: bool) -> Prompt:
    try:
        arr = np.load(p, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any decoding failure is a bad file
        raise InputFileError(p, f"cannot read as .npy ({exc})") from exc
    if not isinstance(arr, np.ndarray) or not np.issubdtype(arr.dtype, np.number):
        raise InputFileError(p, f"expected a numeric array, got dtype {getattr(arr, 'dtype', type(arr))}")
    arr = arr.astype(np.float64)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 2 and arr.shape == (height, width):
        return _read_map_array(arr, width, height, p)
    if arr.ndim == 2 and arr.shape[1] in (3, 4):
        return _points_or_error(arr, width, height, drop_outside, p)
    if arr.ndim == 2 and min(arr.shape) >= 2 and abs(arr.shape[1] / arr.shape[0] - width / height) <= 0.01 * (width / height):
        return _read_map_array(arr, width, height, p)
    if arr.ndim == 2:
        raise InputFileError(
            p,
            f"array of shape {arr.shape} is neither N x 3 / N x 4 points (u, v, z[, confidence]) nor a depth map of "
            f"this image's {width}x{height} size or aspect ratio (H x W rows x columns; a lower resolution with the "
            "same aspect is accepted)",
        )
    raise InputFileError(
        p,
        f"array of shape {arr.shape} is neither an H x W depth map ({height}x{width}) nor N x 3 / N x 4 points",
    )


def _read_map_array(arr: np.ndarray, width: int, height: int, p: Path) -> Prompt:
    if np.isinf(arr).any():
        raise InputFileError(p, f"the prompt map has {int(np.isinf(arr).sum())} infinite value(s)")
    neg = arr < 0
    if neg.any():
        raise InputFileError(p, f"the prompt map has {int(neg.sum())} negative value(s); use 0 or NaN for 'no prompt'")
    mask = np.isfinite(arr) & (arr > 0)
    return _map_to_prompt(np.where(mask, arr, 0.0), mask, width, height, p)


def _read_csv(p: Path, width: int, height: int, drop_outside: bool) -> Prompt:
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise InputFileError(p, "the CSV file is empty (expected a header u,v,z)")
            names = [h.strip().lower() for h in header]
            missing = [c for c in ("u", "v", "z") if c not in names]
            if missing:
                raise InputFileError(p, f"CSV header {header} lacks column(s) {missing}; expected u,v,z[,confidence]")
            cols = [names.index(c) for c in ("u", "v", "z")]
            for alias in ("confidence", "conf"):
                if alias in names:
                    cols.append(names.index(alias))
                    break
            rows = []
            for lineno, row in enumerate(reader, start=2):
                if not row or all(not c.strip() for c in row):
                    continue
                try:
                    rows.append([float(row[i]) for i in cols])
                except (ValueError, IndexError) as exc:
                    raise InputFileError(p, f"line {lineno}: cannot read numbers u,v,z from {row}") from exc
    except UnicodeDecodeError as exc:
        raise InputFileError(p, "the CSV file is not UTF-8 text") from exc
    pts = np.asarray(rows, dtype=np.float64).reshape(-1, len(cols))
    return _points_or_error(pts, width, height, drop_outside, p)


def _read_png(p: Path, width: int, height: int, scale: float) -> Prompt:
    from metricanything.depth_io import read_depth

    depth, mask = read_depth(p, scale=scale)  # 16-bit, metres = value x scale, 0 = no prompt; errors name the file
    return _map_to_prompt(np.where(mask, depth, 0).astype(np.float64), mask, width, height, p)

