"""Point clouds from depth: flying-pixel removal, coloured PLY (write/read) and GLB export.

Points are float32 N x 3 in the OpenCV camera frame (x right, y down, z forward, metres) unless a caller
transformed them; colours are uint8 N x 3 RGB.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from metricanything.atomic import atomic_open, atomic_path
from metricanything.camera import Intrinsics, unproject
from metricanything.errors import InputFileError, InvalidInputError

PathLike = str | os.PathLike

#: default relative depth jump that marks a discontinuity (see :func:`depth_edge_mask`)
DEFAULT_EDGE_THRESHOLD = 0.05

#: rotation taking OpenCV camera axes (y down, z forward) to glTF/OpenGL axes (y up, z backward)
OPENCV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip


# ---------------------------------------------------------------------------------------------- edges
def _neighbour_views(a: np.ndarray, dy: int, dx: int, fill) -> np.ndarray:
    """``out[y, x] = a[y + dy, x + dx]`` with ``fill`` outside the image."""
    h, w = a.shape
    out = np.full_like(a, fill)
    ys, yd = slice(max(dy, 0), h + min(dy, 0)), slice(max(-dy, 0), h + min(-dy, 0))
    xs, xd = slice(max(dx, 0), w + min(dx, 0)), slice(max(-dx, 0), w + min(-dx, 0))
    out[yd, xd] = a[ys, xs]
    return out


def depth_edge_mask(
    depth: np.ndarray, valid: np.ndarray, threshold: float = DEFAULT_EDGE_THRESHOLD, dilate: int = 0
) -> np.ndarray:
    """Flag valid pixels that sit on a depth discontinuity (where flying pixels appear).

    A valid pixel p is an edge when some valid 8-neighbour q has ``|z_p - z_q| > threshold * min(z_p, z_q)``
    (a relative jump, so the test is scale-free: 5% means 5 cm at 1 m and 5 m at 100 m). Both sides of a
    jump are flagged. Invalid pixels are never edges and never count as neighbours. ``dilate`` grows the
    mask by that many pixels (8-connected), staying inside ``valid``. Near the principal point, a plane
    whose normal is a degrees off the optical axis changes depth by about tan(a)/f per pixel (f in pixels),
    so the default 0.05 keeps planes up to ~79 degrees at f = 100 px and ~89 degrees at f = 1000 px.
    """
    depth = np.asarray(depth, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    if depth.ndim != 2 or valid.shape != depth.shape:
        raise InvalidInputError(f"depth and valid must be the same H x W, got {depth.shape} and {valid.shape}")
    if not threshold > 0:
        raise InvalidInputError(f"edge threshold must be positive, got {threshold}")
    z = np.where(valid, depth, np.nan)
    edge = np.zeros(depth.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dy == 0 and dx == 0:
                    continue
                zn = _neighbour_views(z, dy, dx, np.nan)
                edge |= np.abs(z - zn) > threshold * np.fmin(z, zn)  # NaN compares False
    edge &= valid
    for _ in range(int(dilate)):
        grown = edge.copy()
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                grown |= _neighbour_views(edge, dy, dx, False)
        edge = grown & valid
    return edge


def depth_to_point_cloud(
    depth: np.ndarray,
    valid: np.ndarray,
    K: Intrinsics,
    image: np.ndarray | None = None,
    drop_edges: bool = True,
    edge_threshold: float = DEFAULT_EDGE_THRESHOLD,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Unproject valid pixels to points (float32 N x 3, OpenCV frame) with their colours (uint8 N x 3).

    Points are in row-major pixel order. With ``drop_edges``, pixels flagged by :func:`depth_edge_mask`
    are left out. ``colors`` is None when no image is given.
    """
    valid = np.asarray(valid, dtype=bool)
    if valid.shape != np.shape(depth):
        raise InvalidInputError(f"valid mask shape {valid.shape} differs from depth shape {np.shape(depth)}")
    keep = valid.copy()
    if drop_edges:
        keep &= ~depth_edge_mask(depth, valid, edge_threshold)
    pts = unproject(np.where(valid, depth, 0).astype(np.float32), K)[keep].astype(np.float32)
    colors = None
    if image is not None:
        image = np.asarray(image)
        if image.shape[:2] != valid.shape or image.ndim != 3 or image.shape[2] != 3:
            raise InvalidInputError(f"image must be H x W x 3 matching depth {valid.shape}, got {image.shape}")
        if image.dtype != np.uint8:
            raise InvalidInputError(f"image must be uint8, got {image.dtype}")
        colors = image[keep]
    return pts, colors


# ---------------------------------------------------------------------------------------------- PLY
def _check_cloud(points: np.ndarray, colors: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise InvalidInputError(f"points must be N x 3, got shape {points.shape}")
    if not np.isfinite(points).all():
        raise InvalidInputError(f"{int((~np.isfinite(points)).any(axis=1).sum())} points are not finite")
    if colors is not None:
        colors = np.asarray(colors)
        if colors.shape != points.shape:
            raise InvalidInputError(f"colors must be N x 3 like points {points.shape}, got {colors.shape}")
        if colors.dtype != np.uint8:
            raise InvalidInputError(f"colors must be uint8, got {colors.dtype}")
    return points, colors


def write_ply(path: PathLike, points: np.ndarray, colors: np.ndarray | None = None) -> None:
    """Write a binary little-endian PLY: vertex x, y, z (float) and, with colours, red, green, blue (uchar)."""
    points, colors = _check_cloud(points, colors)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    rec = np.empty(len(points), dtype=fields)
    rec["x"], rec["y"], rec["z"] = points[:, 0], points[:, 1], points[:, 2]
    header = ["ply", "format binary_little_endian 1.0", "comment written by metricanything",
              f"element vertex {len(points)}", "property float x", "property float y", "property float z"]  # fmt: skip
    if colors is not None:
        rec["red"], rec["green"], rec["blue"] = colors[:, 0], colors[:, 1], colors[:, 2]
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header.append("end_header")
    with atomic_open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(rec.tobytes())


def read_ply(path: PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Read the vertices of a PLY point cloud: ``(points float32 N x 3, colors uint8 N x 3 or None)``.

    Handles binary little/big-endian and ASCII files with any scalar vertex properties, provided the vertex
    element comes first or only scalar-property elements precede it.
    """
    p = Path(path)
    if not p.is_file():
        raise InputFileError(p, "file does not exist")
    raw = p.read_bytes()
    if not raw.startswith(b"ply"):
        raise InputFileError(p, "not a PLY file (missing 'ply' magic)")
    end = raw.find(b"end_header")
    if end < 0:
        raise InputFileError(p, "bad PLY header (no 'end_header')")
    body_start = raw.find(b"\n", end) + 1
    if body_start == 0:
        raise InputFileError(p, "bad PLY header (no line break after 'end_header')")
    fmt = None
    elements: list[tuple[str, int, list[tuple[str, str]]]] = []
    for line in raw[:end].decode("ascii", errors="replace").splitlines()[1:]:
        parts = line.split()
        if not parts or parts[0] in ("comment", "obj_info"):
            continue
        if parts[0] == "format" and len(parts) >= 2:
            fmt = parts[1]
        elif parts[0] == "element" and len(parts) == 3 and re.fullmatch(r"\d+", parts[2]):
            elements.append((parts[1], int(parts[2]), []))
        elif parts[0] == "property" and elements:
            if parts[1] == "list":
                elements[-1][2].append((parts[-1], "list"))
            elif len(parts) == 3 and parts[1] in _PLY_TYPES:
                elements[-1][2].append((parts[2], _PLY_TYPES[parts[1]]))
            else:
                raise InputFileError(p, f"bad PLY property line {line!r}")
        else:
            raise InputFileError(p, f"bad PLY header line {line!r}")
    if fmt not in ("binary_little_endian", "binary_big_endian", "ascii"):
        raise InputFileError(p, f"unsupported PLY format {fmt!r}")
    names = [e[0] for e in elements]
    if "vertex" not in names:
        raise InputFileError(p, "PLY has no 'vertex' element")
    vi = names.index("vertex")
    _, count, props = elements[vi]
    if any(t == "list" for e in elements[: vi + 1] for _, t in e[2]):
        raise InputFileError(p, "list properties before/in the vertex element are not supported")
    for axis in "xyz":
        if axis not in [n for n, _ in props]:
            raise InputFileError(p, f"PLY vertex element has no '{axis}' property")
    if fmt == "ascii":
        lines = raw[body_start:].decode("ascii", errors="replace").splitlines()
        skip = sum(e[1] for e in elements[:vi])
        rows = [ln.split() for ln in lines[skip : skip + count]]
        if len(rows) < count or any(len(r) < len(props) for r in rows):
            raise InputFileError(p, f"truncated ASCII PLY: expected {count} vertex rows of {len(props)} values")
        table = np.array([r[: len(props)] for r in rows], dtype=np.float64).reshape(count, len(props))
        cols = {n: table[:, i] for i, (n, _) in enumerate(props)}
    else:
        order = "<" if fmt == "binary_little_endian" else ">"
        offset = body_start
        for _, n_prev, props_prev in elements[:vi]:
            offset += n_prev * np.dtype([(n, order + t) for n, t in props_prev]).itemsize
        dtype = np.dtype([(n, order + t) for n, t in props])
        need = offset + count * dtype.itemsize
        if len(raw) < need:
            raise InputFileError(p, f"truncated PLY: {len(raw)} bytes, vertex data needs {need}")
        rec = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
        cols = {n: rec[n] for n, _ in props}
    points = np.stack([cols["x"], cols["y"], cols["z"]], axis=1).astype(np.float32)
    colors = None
    for keys in (("red", "green", "blue"), ("r", "g", "b"), ("diffuse_red", "diffuse_green", "diffuse_blue")):
        if all(k in cols for k in keys):
            colors = np.stack([cols[k] for k in keys], axis=1).astype(np.uint8)
            break
    return points, colors


# ---------------------------------------------------------------------------------------------- GLB
def write_glb(
    path: PathLike, points: np.ndarray, colors: np.ndarray | None = None, opencv_to_gl: bool = True
) -> None:
    """Export a point cloud as binary glTF (GLB) via trimesh, atomically.

    glTF viewers expect y up and the camera looking down -z; with ``opencv_to_gl`` (default) the points are
    rotated from the OpenCV frame by diag(1, -1, -1), i.e. (x, y, z) -> (x, -y, -z), so the scene appears
    upright in front of the default camera.
    """
    import trimesh  # local import: trimesh is only needed for GLB

    points, colors = _check_cloud(points, colors)
    if len(points) == 0:
        raise InvalidInputError(f"{os.fspath(path)}: cannot export an empty point cloud as GLB")
    pts = np.asarray(points, dtype=np.float64)
    if opencv_to_gl:
        pts = pts * np.array([1.0, -1.0, -1.0])
    rgba = None
    if colors is not None:
        rgba = np.concatenate([colors, np.full((len(colors), 1), 255, np.uint8)], axis=1)
    cloud = trimesh.PointCloud(vertices=pts, colors=rgba)
    data = trimesh.Scene(cloud).export(file_type="glb")
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def rigid_transform_problem(T: np.ndarray, tol: float = 1e-3) -> str | None:
    """Why the 4x4 ``T`` is not a rigid transform (rotation + translation), or None when it is."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        return f"must be 4x4, got shape {T.shape}"
    if not np.isfinite(T).all():
        return "has non-finite values"
    if not np.allclose(T[3], [0, 0, 0, 1], atol=tol):
        return f"last row must be [0, 0, 0, 1], got {np.round(T[3], 6).tolist()}"
    R = T[:3, :3]
    err = float(np.abs(R.T @ R - np.eye(3)).max())
    if err > tol:
        return f"its 3x3 rotation part is not orthonormal (max |R^T R - I| = {err:.3g}; scale or shear?)"
    if np.linalg.det(R) < 0:
        return "its rotation part is a reflection (determinant -1)"
    return None
