"""Initial points from silhouettes: the visual hull of one frame's masks (no extra model needed).

A voxel is kept when its centre projects inside the foreground of every view; a voxel that falls
outside a view's image is carved too, since every view of an object-centric capture sees the
whole object. The hull contains the object (it cannot see concavities between the views), so the
seeds are taken on its surface: occupied voxels with an empty neighbour, coloured from the view
that faces them most directly (the input view by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ds4d_ns.fields.tssf import project_points


@dataclass
class VoxelHull:
    """A visual hull: the occupancy of a cubic voxel grid."""

    occupied: Bool[Tensor, "r r r"]
    centres: Float[Tensor, "r r r 3"]

    @property
    def voxel_size(self) -> float:
        return float(self.centres[1, 0, 0, 0] - self.centres[0, 0, 0, 0])


def voxel_centres(half_extent: float, resolution: int) -> Float[Tensor, "r r r 3"]:
    """Centres of a ``resolution``^3 grid filling the cube [-half_extent, half_extent]^3."""
    step = 2.0 * half_extent / resolution
    axis = -half_extent + step * (torch.arange(resolution, dtype=torch.float32) + 0.5)
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1)


def carve(
    masks: Sequence[Float[Tensor, "h w"]],
    viewmats: Float[Tensor, "views 4 4"],
    intrinsics: Float[Tensor, "views 3 3"],
    half_extent: float = 1.0,
    resolution: int = 96,
    threshold: float = 0.5,
) -> VoxelHull:
    """Visual hull of foreground masks (values in [0, 1]) seen by OpenCV cameras."""
    if len(masks) != viewmats.shape[0] or len(masks) != intrinsics.shape[0]:
        raise ValueError(f"need one camera per mask, got {len(masks)} masks and {viewmats.shape[0]} cameras")
    centres = voxel_centres(half_extent, resolution)
    points = centres.reshape(-1, 3)
    occupied = torch.ones(points.shape[0], dtype=torch.bool)
    for view, mask in enumerate(masks):
        height, width = mask.shape
        pixels, inside = project_points(points, viewmats[view : view + 1], intrinsics[view : view + 1], width, height)
        columns = pixels[0, :, 0].floor().long().clamp(0, width - 1)
        rows = pixels[0, :, 1].floor().long().clamp(0, height - 1)
        occupied &= inside[0] & (mask[rows, columns] > threshold)
    return VoxelHull(occupied.reshape(resolution, resolution, resolution), centres)


def surface_voxels(hull: VoxelHull) -> Bool[Tensor, "r r r"]:
    """Occupied voxels with at least one empty face neighbour (grid borders count as empty)."""
    padded = torch.nn.functional.pad(hull.occupied.float()[None, None], (1, 1, 1, 1, 1, 1))
    kernel = torch.zeros(1, 1, 3, 3, 3)
    kernel[0, 0, 1, 1, :] = kernel[0, 0, 1, :, 1] = kernel[0, 0, :, 1, 1] = 1.0
    kernel[0, 0, 1, 1, 1] = 0.0
    neighbours = torch.nn.functional.conv3d(padded, kernel)[0, 0]
    return hull.occupied & (neighbours < 6)


def occupancy_iou(a: Bool[Tensor, "..."], b: Bool[Tensor, "..."]) -> float:
    """Intersection over union of two occupancies."""
    union = (a | b).sum()
    return float((a & b).sum() / union) if union > 0 else 1.0


def sample_surface_points(hull: VoxelHull, count: int, jitter: bool = True, seed: int = 0) -> Float[Tensor, "n 3"]:
    """Up to ``count`` points on the hull's surface voxels, jittered within their voxel."""
    centres = hull.centres[surface_voxels(hull)]
    if centres.shape[0] == 0:
        raise ValueError("the visual hull is empty: the masks share no foreground (check masks and cameras)")
    generator = torch.Generator().manual_seed(seed)
    if centres.shape[0] > count:
        centres = centres[torch.randperm(centres.shape[0], generator=generator)[:count]]
    if jitter:
        centres = centres + (torch.rand(centres.shape, generator=generator) - 0.5) * hull.voxel_size
    return centres
