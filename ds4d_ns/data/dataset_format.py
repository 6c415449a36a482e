"""The ds4d dataset format: names, records and atomic writers shared by every tool.

A dataset is a folder with a ``transforms.json`` in Nerfstudio's style. Per frame::

    file_path          RGBA image (or RGB with ``mask_path``), relative to the folder
    mask_path          optional single-channel foreground mask, used as alpha
    transform_matrix   4 x 4 OpenGL camera-to-world matrix
    fl_x fl_y cx cy w h   pinhole intrinsics in pixels
    time               float in [0, 1]
    frame_index        integer index of the video frame this view belongs to
    role               "input" | "pseudo" | "eval"
    view_index         integer index of the camera within its role

Top level: optional ``ply_file_path`` (initial points, xyz + optional uint8 rgb).

Writers here are atomic (write to a temporary name in the same folder, then rename), so a
reader never sees a half-written file and an interrupted run leaves nothing behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Literal, Optional, Tuple

import numpy as np

from ds4d_ns.io.atomic import atomic_output

Role = Literal["input", "pseudo", "eval"]
ROLES: Tuple[str, ...] = ("input", "pseudo", "eval")
"""Valid values of a frame's ``role``; their position is the integer code used in camera metadata."""
ROLE_CODES: Dict[str, int] = {name: code for code, name in enumerate(ROLES)}
TRANSFORMS_NAME = "transforms.json"
REQUIRED_FRAME_KEYS: Tuple[str, ...] = (
    "file_path",
    "transform_matrix",
    "fl_x",
    "fl_y",
    "cx",
    "cy",
    "w",
    "h",
    "time",
    "frame_index",
    "role",
    "view_index",
)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_output(path) as tmp:
        Path(tmp).write_bytes(data)


def write_json_atomic(path: Path, content: Any) -> None:
    """Write ``content`` as indented JSON to ``path`` atomically."""
    _atomic_write_bytes(Path(path), (json.dumps(content, indent=2) + "\n").encode())


def write_png_atomic(path: Path, image: np.ndarray) -> None:
    """Write a uint8 ``[H, W, C]`` image (C in 1, 3, 4) as PNG to ``path`` atomically."""
    import imageio.v3 as iio

    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image for {path}, got {image.dtype}")
    _atomic_write_bytes(Path(path), iio.imwrite("<bytes>", image, extension=".png"))


def write_ply_points_atomic(path: Path, points: np.ndarray, colors: Optional[np.ndarray] = None) -> None:
    """Write points ``[N, 3]`` (and uint8 colours ``[N, 3]``) as a binary PLY atomically."""
    from plyfile import PlyData, PlyElement

    fields = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    if colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertices = np.empty(len(points), dtype=fields)
    for axis, name in enumerate("xyz"):
        vertices[name] = points[:, axis]
    if colors is not None:
        for axis, name in enumerate(("red", "green", "blue")):
            vertices[name] = colors[:, axis]
    with atomic_output(path) as tmp:
        PlyData([PlyElement.describe(vertices, "vertex")]).write(tmp)


def frame_record(
    file_path: str,
    c2w: np.ndarray,
    focal: Tuple[float, float],
    principal_point: Tuple[float, float],
    size: Tuple[int, int],
    time: float,
    frame_index: int,
    role: Role,
    view_index: int,
    mask_path: Optional[str] = None,
) -> Dict[str, Any]:
    """One entry of ``frames`` in ``transforms.json``.

    Args:
        c2w: OpenGL camera-to-world matrix, ``[3, 4]`` or ``[4, 4]``.
        size: image (width, height) in pixels.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    matrix = np.eye(4)
    matrix[:3, :4] = np.asarray(c2w, dtype=np.float64)[:3, :4]
    record: Dict[str, Any] = {
        "file_path": file_path,
        "transform_matrix": matrix.tolist(),
        "fl_x": float(focal[0]),
        "fl_y": float(focal[1]),
        "cx": float(principal_point[0]),
        "cy": float(principal_point[1]),
        "w": int(size[0]),
        "h": int(size[1]),
        "time": float(time),
        "frame_index": int(frame_index),
        "role": role,
        "view_index": int(view_index),
    }
    if mask_path is not None:
        record["mask_path"] = mask_path
    return record
