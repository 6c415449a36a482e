"""How faithful an exported mesh is to the Gaussians it came from: silhouette, colour and motion.

* :func:`rasterize_mesh`: a z-buffered triangle rasteriser in torch (CPU or GPU), sampling pixel
  centres, with perspective-correct depth and vertex-colour interpolation. It counts both windings
  (a silhouette does not depend on which way a triangle faces).
* :func:`rasterize_flat`: the same sampling of 2D triangles (a UV atlas): face and barycentrics per pixel.
* :func:`silhouette_iou`: the mesh's coverage against the Gaussian render's alpha > 0.5.
* :func:`psnr`: of the vertex-coloured mesh against the Gaussian render, both over one background.
* :func:`motion_distance`: mean distance from the vertices to the nearest opaque Gaussian centre at
  the same time, relative to the Gaussians' bounding-box diagonal.
"""

from __future__ import annotations

from typing import Dict, Iterator, Optional, Tuple

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

_RASTER_ELEMENTS = 1 << 22
"""Candidate (triangle, pixel) pairs evaluated at once."""


def _candidates(
    screen: Float[Tensor, "v 3"], faces: Int[Tensor, "f 3"], width: int, height: int
) -> Iterator[Tuple[Tensor, Tensor, Tensor, Tensor]]:
    """Every (pixel, face) pair whose pixel centre lies in the face: ``(pixel index, face, barycentrics, depth)``.

    ``screen`` holds each vertex's pixel coordinates ``(u, v)`` (pixel centres at ``i + 0.5``) and camera depth.
    """
    corners = screen[faces]  # [f, 3, 3]
    uv, z = corners[..., :2], corners[..., 2]
    valid = (z > 1e-6).all(dim=-1)
    low = torch.ceil(uv.amin(dim=1) - 0.5).long()
    high = torch.floor(uv.amax(dim=1) - 0.5).long()
    low[:, 0].clamp_(0, width - 1)
    low[:, 1].clamp_(0, height - 1)
    high[:, 0].clamp_(max=width - 1)
    high[:, 1].clamp_(max=height - 1)
    size = (high - low + 1).amax(dim=-1)
    valid &= size > 0
    # triangles are processed in groups of one bounding-box size, so each group is one dense block
    for side in torch.unique(size[valid]).tolist():
        members = torch.nonzero(valid & (size == side)).view(-1)
        span = torch.arange(side, device=screen.device)
        offsets = torch.stack(torch.meshgrid(span, span, indexing="ij"), dim=-1).view(-1, 2)  # (dx, dy)
        chunk = max(1, _RASTER_ELEMENTS // offsets.shape[0])
        for start in range(0, members.numel(), chunk):
            index = members[start : start + chunk]
            pixel = low[index][:, None, :] + offsets[None]  # [g, p, 2]
            point = pixel.to(uv.dtype) + 0.5
            a, b, c = uv[index, 0][:, None], uv[index, 1][:, None], uv[index, 2][:, None]
            area = (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0])

            def edge(p: Tensor, q: Tensor) -> Tensor:
                return (q[..., 0] - p[..., 0]) * (point[..., 1] - p[..., 1]) - (q[..., 1] - p[..., 1]) * (
                    point[..., 0] - p[..., 0]
                )

            safe = torch.where(area.abs() > 1e-12, area, torch.ones_like(area))
            bary = torch.stack([edge(b, c), edge(c, a), edge(a, b)], dim=-1) / safe[..., None]
            inside = (
                (bary >= 0).all(dim=-1)
                & (area.abs() > 1e-12)
                & (pixel[..., 0] <= high[index][:, None, 0])
                & (pixel[..., 1] <= high[index][:, None, 1])
            )
            # screen-space barycentrics interpolate 1/z linearly (perspective-correct depth)
            inverse_depth = (bary / z[index][:, None, :]).sum(dim=-1)
            g, p = torch.nonzero(inside, as_tuple=True)
            flat = pixel[g, p, 1] * width + pixel[g, p, 0]
            yield flat, index[g], bary[g, p], 1.0 / inverse_depth[g, p]


def rasterize_flat(
    points: Float[Tensor, "v 2"], faces: Int[Tensor, "f 3"], width: int, height: int
) -> Tuple[Int[Tensor, "h w"], Float[Tensor, "h w 3"]]:
    """Rasterise non-overlapping 2D triangles (a UV atlas, in texels): at every pixel centre, the face that
    covers it (-1: none) and the barycentrics there. Where triangles overlap, one of them is kept."""
    screen = torch.cat([points, torch.ones_like(points[:, :1])], dim=-1)  # depth 1: no perspective
    face_of = torch.full((height * width,), -1, dtype=torch.long, device=points.device)
    bary_of = torch.zeros(height * width, 3, dtype=points.dtype, device=points.device)
    for flat, face, bary, _ in _candidates(screen, faces, width, height):
        face_of[flat] = face
        bary_of[flat] = bary
    return face_of.view(height, width), bary_of.view(height, width, 3)


def rasterize_mesh(
    vertices: Float[Tensor, "v 3"],
    faces: Int[Tensor, "f 3"],
    viewmat: Float[Tensor, "4 4"],
    K: Float[Tensor, "3 3"],
    width: int,
    height: int,
    colours: Optional[Float[Tensor, "v 3"]] = None,
) -> Dict[str, Tensor]:
    """Rasterise a triangle mesh with a z-buffer.

    Args:
        vertices, faces: the mesh in world coordinates.
        viewmat, K: OpenCV world-to-camera matrix and pinhole intrinsics (pixel centres at ``i + 0.5``).
        colours: optional per-vertex colours, interpolated perspective-correctly.

    Returns:
        ``mask`` [H, W] (covered pixels), ``depth`` [H, W] (camera z of the nearest surface, inf where
        uncovered), ``face`` [H, W] (index of the nearest face, -1 where uncovered) and, with ``colours``,
        ``rgb`` [H, W, 3] (zero where uncovered).
    """
    camera = vertices @ viewmat[:3, :3].T + viewmat[:3, 3]
    z = camera[:, 2]
    projected = camera @ K.T
    screen = torch.stack([projected[:, 0] / z, projected[:, 1] / z, z], dim=-1)
    zbuffer = torch.full((height * width,), float("inf"), dtype=vertices.dtype, device=vertices.device)
    for flat, _, _, depth in _candidates(screen, faces, width, height):
        zbuffer.scatter_reduce_(0, flat, depth, reduce="amin")
    face_of = torch.full((height * width,), -1, dtype=torch.long, device=vertices.device)
    bary_of = torch.zeros(height * width, 3, dtype=vertices.dtype, device=vertices.device)
    for flat, face, bary, depth in _candidates(screen, faces, width, height):
        nearest = depth <= zbuffer[flat]
        face_of[flat[nearest]] = face[nearest]
        bary_of[flat[nearest]] = bary[nearest]
    mask = face_of >= 0
    out = {"mask": mask.view(height, width), "depth": zbuffer.view(height, width), "face": face_of.view(height, width)}
    if colours is not None:
        rgb = torch.zeros(height * width, 3, dtype=colours.dtype, device=colours.device)
        corner = faces[face_of[mask]]  # [m, 3]
        weights = bary_of[mask] / z[corner]  # perspective-correct: barycentrics over depth, renormalised
        weights = weights / weights.sum(dim=-1, keepdim=True)
        rgb[mask] = (weights[..., None] * colours[corner]).sum(dim=1)
        out["rgb"] = rgb.view(height, width, 3)
    return out


def silhouette_iou(mask: Tensor, alpha: Tensor, threshold: float = 0.5) -> float:
    """Intersection over union of ``mask`` and ``alpha > threshold`` (1 when both are empty)."""
    other = alpha > threshold
    union = (mask | other).sum().item()
    return 1.0 if union == 0 else float((mask & other).sum().item() / union)


def psnr(image: Tensor, reference: Tensor, where: Optional[Tensor] = None) -> float:
    """Peak signal-to-noise ratio in dB of images in [0, 1] (over the pixels ``where`` is true, if given)."""
    diff = (image - reference) ** 2
    if where is not None:
        if not bool(where.any()):
            return float("nan")
        diff = diff[where]
    mse = float(diff.mean().item())
    return float("inf") if mse == 0 else float(-10.0 * np.log10(mse))


def motion_distance(vertices: Float[np.ndarray, "v 3"], centres: Float[np.ndarray, "n 3"]) -> Tuple[float, float]:
    """Mean distance from each vertex to the nearest of ``centres``, absolute and relative to the
    diagonal of the centres' bounding box: ``(mean, mean / diagonal)``."""
    from scipy.spatial import cKDTree

    if centres.shape[0] == 0:
        raise ValueError("no Gaussian centres to measure against")
    distances, _ = cKDTree(centres).query(vertices)
    diagonal = float(np.linalg.norm(centres.max(axis=0) - centres.min(axis=0)))
    mean = float(distances.mean())
    return mean, mean / max(diagonal, 1e-12)
