"""Generic atomic writers: JSON, PNG and point-cloud PLY files.

Each writes to a temporary name beside its target and renames it when complete
(:func:`ds4d_ns.io.atomic.atomic_output`), so a reader never sees a half-written file, an
interrupted run leaves nothing behind, and an open output folder hears of the file first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ds4d_ns.io.atomic import atomic_output


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_output(Path(path)) as tmp:
        Path(tmp).write_bytes(data)


def write_json_atomic(path: Path, content: Any) -> None:
    """Write ``content`` as indented JSON to ``path`` atomically."""
    write_bytes_atomic(Path(path), (json.dumps(content, indent=2) + "\n").encode())


def write_png_atomic(path: Path, image: np.ndarray) -> None:
    """Write a uint8 ``[H, W, C]`` image (C in 1, 3, 4) or ``[H, W]`` grey image as PNG to ``path`` atomically."""
    import imageio.v3 as iio

    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image for {path}, got {image.dtype}")
    write_bytes_atomic(Path(path), iio.imwrite("<bytes>", image, extension=".png"))


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
    with atomic_output(Path(path)) as tmp:
        PlyData([PlyElement.describe(vertices, "vertex")]).write(tmp)
