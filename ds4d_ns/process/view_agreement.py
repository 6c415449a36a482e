"""Do the pseudo views and the input view describe one object? A visual-hull check at a few frames.

Pseudo views are only useful if they agree with the input frame they stand beside: the six views
are generated from (or imported for) the input image, and training puts all seven on one set of
cameras. A framing that differs between the two (the input re-cropped after the views were made),
the wrong release's cameras or tiles in the wrong order all leave files that look right one by one
but describe different objects, and training then averages them into a blur.

The check carves the visual hull of the six pseudo views' silhouettes on their cameras and renders
that hull from the input camera. The hull contains every object the views agree on, so when they
agree with the input, the hull's silhouette covers the input's silhouette (all of it, up to matting
and the generator's mistakes: real Zero123++ v1.1 views framed as their input covered 94 % of it on
public data). The share of the input silhouette that is covered is the score; the same views beside
an input re-cropped after they were made covered 62 %. The hull holds more than the object (six views
cannot see every concavity), so the score is lenient: it catches views that disagree, it does not grade
good ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ds4d_ns import camera_layouts
from ds4d_ns.camera_layouts import OrbitView
from ds4d_ns.data.dataset_format import middle_frame
from ds4d_ns.process.visual_hull import VoxelHull, carve
from ds4d_ns.rendering.camera_matrices import opengl_c2w_to_opencv_viewmat

MIN_COVERAGE = 0.9
"""Default share of the input's silhouette the pseudo views' hull must cover (``--min-view-agreement``)."""
CHECK_SIZE = 96
"""Side in pixels at which silhouettes are compared (the hull's voxels are about a pixel wide there)."""
HULL_RESOLUTION = 64
"""Voxels per side of the hull carved for the check."""
OPAQUE_SHARE = 0.98
"""A view whose foreground covers at least this share of its image has no background: its matting failed
(an opaque view carves nothing, so it would agree with any input)."""


def orbit_cameras(
    views: Sequence[OrbitView], size: int
) -> Tuple[Float[Tensor, "views 4 4"], Float[Tensor, "views 3 3"]]:
    """OpenCV world-to-camera matrices and pinhole intrinsics of square orbit views ``size`` pixels wide."""
    c2w = torch.stack([camera_layouts.orbit_c2w(view) for view in views]).float()
    viewmats = opengl_c2w_to_opencv_viewmat(c2w)
    intrinsics = []
    for view in views:
        focal = camera_layouts.focal_from_fov(view.fov_deg, size)
        intrinsics.append(torch.tensor([[focal, 0.0, size / 2.0], [0.0, focal, size / 2.0], [0.0, 0.0, 1.0]]))
    return viewmats, torch.stack(intrinsics)


def hull_silhouette(
    hull: VoxelHull, viewmat: Float[Tensor, "4 4"], intrinsics: Float[Tensor, "3 3"], width: int, height: int
) -> Bool[Tensor, "h w"]:
    """Pixels whose ray (through the pixel centre) passes through an occupied voxel of ``hull``.

    Rays are marched at half a voxel per step (in depth along the optical axis) through the hull's
    bounding sphere; occupancy is looked up at the nearest voxel.
    """
    voxel = hull.voxel_size
    half = float(hull.centres.abs().max()) + voxel / 2.0
    c2w = torch.linalg.inv(viewmat.double()).float()
    rows, columns = torch.meshgrid(
        torch.arange(height, dtype=torch.float32) + 0.5, torch.arange(width, dtype=torch.float32) + 0.5, indexing="ij"
    )
    # OpenCV camera: x right, y down, z forward; a point at depth z lies at z * (x', y', 1)
    rays = (
        torch.stack(
            [
                (columns - intrinsics[0, 2]) / intrinsics[0, 0],
                (rows - intrinsics[1, 2]) / intrinsics[1, 1],
                torch.ones_like(rows),
            ],
            dim=-1,
        ).reshape(-1, 3)
        @ c2w[:3, :3].T
    )
    origin = c2w[:3, 3]
    distance = float(origin.norm())
    reach = math.sqrt(3.0) * half
    depths = torch.arange(max(distance - reach, 1e-3), distance + reach, voxel / 2.0)
    # grid_sample reads a [1, 1, D, H, W] volume with coordinates ordered (W, H, D); occupied[i, j, k]
    # is the voxel at (x_i, y_j, z_k), so x indexes D and the coordinates are given as (z, y, x)
    volume = hull.occupied.float()[None, None]
    hit = torch.zeros(rays.shape[0], dtype=torch.bool)
    for chunk in depths.split(32):
        points = origin + chunk[:, None, None] * rays[None]  # [depths, pixels, 3]
        grid = (points[..., [2, 1, 0]] / half).reshape(1, 1, -1, 1, 3)
        occupied = torch.nn.functional.grid_sample(
            volume, grid, mode="nearest", padding_mode="zeros", align_corners=False
        ).reshape(chunk.shape[0], -1)
        hit |= (occupied > 0.5).any(dim=0)
    return hit.reshape(height, width)


def _resize_mask(alpha: np.ndarray, size: int) -> Float[Tensor, "size size"]:
    """A [0, 1] mask (any square size) resized to ``size`` (area average, so thin parts keep their share)."""
    tensor = torch.from_numpy(np.ascontiguousarray(alpha, dtype=np.float32))[None, None]
    return torch.nn.functional.interpolate(tensor, size=(size, size), mode="area")[0, 0]


def silhouette_coverage(
    input_alpha: np.ndarray,
    pseudo_alphas: Sequence[np.ndarray],
    input_view: OrbitView,
    pseudo_views: Sequence[OrbitView],
    half_extent: float,
    size: int = CHECK_SIZE,
    hull_resolution: int = HULL_RESOLUTION,
) -> float:
    """Share of the input's silhouette (alpha > 0.5) covered by the pseudo views' visual hull, in [0, 1].

    Args:
        input_alpha: the input view's alpha in [0, 1] (square, any size).
        pseudo_alphas: each pseudo view's alpha in [0, 1], in ``pseudo_views`` order.
        half_extent: the object's largest half-extent in scene units; the hull is carved in a cube 1.5x wider.
    """
    masks = [_resize_mask(alpha, size) for alpha in pseudo_alphas]
    viewmats, intrinsics = orbit_cameras(pseudo_views, size)
    hull = carve(masks, viewmats, intrinsics, 1.5 * half_extent, hull_resolution)
    input_viewmat, input_intrinsics = orbit_cameras([input_view], size)
    outline = hull_silhouette(hull, input_viewmat[0], input_intrinsics[0], size, size)
    target = _resize_mask(input_alpha, size) > 0.5
    if not target.any():
        return 1.0  # nothing to cover (frames without foreground are refused earlier)
    return float((outline & target).sum()) / float(target.sum())


@dataclass(frozen=True)
class ViewAgreement:
    """The check's result at a few frames."""

    frames: Tuple[int, ...]
    """Dataset frame indices checked."""
    coverage: Tuple[float, ...]
    """Share of the input's silhouette covered by the pseudo views' hull, per checked frame."""
    opaque_views: Tuple[int, ...] = ()
    """Pseudo views (indices) that are foreground nearly everywhere at some checked frame: not matted."""

    @property
    def worst(self) -> float:
        """The lowest coverage over the checked frames."""
        return min(self.coverage)

    def agrees(self, min_coverage: float) -> bool:
        """Whether every checked frame is covered at least ``min_coverage`` by views that all have a background."""
        return self.worst >= min_coverage and not self.opaque_views

    def describe(self) -> str:
        """Coverage per checked frame (and the views without background), for a log line."""
        shown = ", ".join(f"frame {f}: {c:.0%}" for f, c in zip(self.frames, self.coverage))
        text = f"the pseudo views' visual hull covers {shown} of the input view's silhouette"
        if self.opaque_views:
            views = ", ".join(str(v) for v in self.opaque_views)
            text += f"; pseudo view(s) {views} have no background (foreground nearly everywhere: not matted)"
        return text


def check_frames(num_frames: int) -> List[int]:
    """The frames checked: first, middle (the canonical frame) and last (fewer for short clips)."""
    return sorted({0, middle_frame(num_frames), num_frames - 1})


def measure_agreement(
    frames: Sequence[int],
    input_alphas: Sequence[np.ndarray],
    pseudo_alphas: Sequence[Sequence[np.ndarray]],
    input_view: OrbitView,
    pseudo_views: Sequence[OrbitView],
    half_extent: float,
) -> ViewAgreement:
    """:func:`silhouette_coverage` at each of ``frames`` (alphas given per checked frame, in [0, 1])."""
    coverage = [
        silhouette_coverage(input_alpha, views, input_view, pseudo_views, half_extent)
        for input_alpha, views in zip(input_alphas, pseudo_alphas)
    ]
    opaque = sorted(
        {v for views in pseudo_alphas for v, alpha in enumerate(views) if (alpha > 0.5).mean() >= OPAQUE_SHARE}
    )
    return ViewAgreement(tuple(frames), tuple(coverage), tuple(opaque))
