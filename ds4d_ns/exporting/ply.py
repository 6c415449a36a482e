"""The standard 3D Gaussian Splatting PLY: one binary little-endian ``vertex`` element of float32 properties.

Property names and order are those of the reference implementation's ``save_ply``
(graphdeco-inria/gaussian-splatting, ``scene/gaussian_model.py``, ``construct_list_of_attributes``):
``x y z nx ny nz f_dc_0..2 f_rest_0..(3K-1) opacity scale_0..2 rot_0..3``, with the higher-order SH
coefficients channel-major (all red coefficients, then green, then blue), opacity as a logit,
log scales and wxyz quaternions. SuperSplat (playcanvas/supersplat, ``src/io/read/loader.ts``,
``validateGSplatData``) requires ``x y z scale_0..2 rot_0..3 f_dc_0..2 opacity`` and infers the SH
degree from the count of ``f_rest_*`` properties (9, 24 or 45; ``src/splat-serialize.ts``).
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np

from ds4d_ns.exporting.splat_frame import SplatFrame
from ds4d_ns.io.atomic import atomic_output


def splat_ply_property_names(sh_degree: int) -> List[str]:
    """The vertex properties of a 3DGS PLY of SH degree ``sh_degree``, in file order."""
    if sh_degree < 0:
        raise ValueError(f"sh_degree must be at least 0, got {sh_degree}")
    num_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (
        ["x", "y", "z", "nx", "ny", "nz"]
        + [f"f_dc_{i}" for i in range(3)]
        + [f"f_rest_{i}" for i in range(num_rest)]
        + ["opacity"]
        + [f"scale_{i}" for i in range(3)]
        + [f"rot_{i}" for i in range(4)]
    )


def splat_ply_vertices(frame: SplatFrame) -> np.ndarray:
    """The frame as a structured float32 array with one field per PLY property, in file order."""
    n = frame.num_gaussians
    columns = np.concatenate(
        [
            frame.means,
            np.zeros((n, 3), np.float32),  # normals: unused by splat renderers, kept for the layout
            frame.sh_dc,
            # [N, K, 3] -> [N, 3, K]: the reference layout stores each colour channel's coefficients together
            frame.sh_rest.transpose(0, 2, 1).reshape(n, -1),
            frame.opacity_logits[:, None],
            frame.log_scales,
            frame.quats_wxyz,
        ],
        axis=1,
    )
    names = splat_ply_property_names(frame.sh_degree)
    vertices = np.empty(n, dtype=[(name, "<f4") for name in names])
    for i, name in enumerate(names):
        vertices[name] = columns[:, i]
    return vertices


def write_splat_ply_atomic(path: Path, frame: SplatFrame) -> None:
    """Write ``frame`` as a binary little-endian 3DGS PLY to ``path`` (a complete file or none)."""
    from plyfile import PlyData, PlyElement

    element = PlyElement.describe(splat_ply_vertices(frame), "vertex")
    with atomic_output(Path(path)) as tmp:  # a ".tmp" name: no half-written file ever matches *.ply
        PlyData([element], byte_order="<").write(tmp)
