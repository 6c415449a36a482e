"""The pseudo views' agreement with the input view: the hull renderer against a slow projection, and the
coverage score on a known object framed right and re-framed."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from ds4d_ns import camera_layouts
from ds4d_ns.fields.tssf import project_points
from ds4d_ns.process.view_agreement import hull_silhouette, orbit_cameras, silhouette_coverage
from ds4d_ns.process.visual_hull import VoxelHull, voxel_centres


def _l_shape(resolution: int = 32, half: float = 0.6) -> VoxelHull:
    """An asymmetric object away from the origin: an L of two bars (a mirrored render would not match)."""
    centres = voxel_centres(half, resolution)
    x, y, z = centres.unbind(-1)
    upright = (x > 0.05) & (x < 0.25) & (y.abs() < 0.15) & (z > -0.4) & (z < 0.45)
    foot = (x > 0.05) & (x < 0.55) & (y.abs() < 0.15) & (z > -0.4) & (z < -0.2)
    return VoxelHull(upright | foot, centres)


def _projected_reference(hull: VoxelHull, view: camera_layouts.OrbitView, size: int) -> np.ndarray:
    """Slow reference silhouette: 5^3 points spread through every occupied voxel, projected to pixels."""
    voxel = hull.voxel_size
    offsets = (torch.arange(5, dtype=torch.float32) + 0.5) / 5 - 0.5
    grid = torch.stack(torch.meshgrid(offsets, offsets, offsets, indexing="ij"), dim=-1).reshape(-1, 3) * voxel
    points = (hull.centres[hull.occupied][:, None, :] + grid[None]).reshape(-1, 3)
    viewmat, intrinsics = orbit_cameras([view], size)
    pixels, inside = project_points(points, viewmat, intrinsics, size, size)
    image = np.zeros((size, size), dtype=bool)
    kept = pixels[0][inside[0]].floor().long().clamp(0, size - 1).numpy()
    image[kept[:, 1], kept[:, 0]] = True
    return image


def test_the_hull_renderer_matches_a_slow_projection_of_the_voxels():
    hull = _l_shape()
    for view in (camera_layouts.input_view(), *camera_layouts.zero123pp_views("v1.1")):
        viewmat, intrinsics = orbit_cameras([view], 48)
        fast = hull_silhouette(hull, viewmat[0], intrinsics[0], 48, 48).numpy()
        slow = _projected_reference(hull, view, 48)
        # a ray through a pixel's centre hits the voxels whose footprint covers that centre: inside the
        # reference (which also marks pixels a footprint only grazes) and all of it but its rim
        assert not (fast & ~slow).any(), f"view {view}: pixels outside the projected voxels"
        interior = ndimage.binary_erosion(slow)
        assert (interior & ~fast).sum() <= 0.02 * slow.sum(), f"view {view}: interior pixels missed"
    # the input camera sits on -y looking at +y, x to the right: the foot (x > 0) lies right of centre
    viewmat, intrinsics = orbit_cameras([camera_layouts.input_view()], 48)
    front = hull_silhouette(hull, viewmat[0], intrinsics[0], 48, 48).numpy()
    columns = np.flatnonzero(front.any(axis=0))
    assert columns.min() >= 24 and columns.max() > 36


def _render(hull: VoxelHull, views, size: int) -> list:
    viewmats, intrinsics = orbit_cameras(views, size)
    return [
        hull_silhouette(hull, viewmats[i], intrinsics[i], size, size).numpy().astype(np.float32)
        for i in range(len(views))
    ]


def test_coverage_is_full_for_views_of_one_object_and_low_for_a_zoomed_input():
    hull = _l_shape(resolution=48)
    half = 0.6
    views = camera_layouts.zero123pp_views("v1.1")
    pseudo = _render(hull, views, 64)
    front = _render(hull, [camera_layouts.input_view()], 128)[0]
    coverage = silhouette_coverage(front, pseudo, camera_layouts.input_view(), views, half)
    assert coverage > 0.97
    # the same input zoomed 1.3x about the image centre (a re-framed crop), the views unchanged
    side = round(128 / 1.3)
    start = (128 - side) // 2
    zoomed = torch.nn.functional.interpolate(
        torch.from_numpy(front[start : start + side, start : start + side])[None, None],
        size=(128, 128),
        mode="bilinear",
    )[0, 0].numpy()
    coverage = silhouette_coverage(zoomed, pseudo, camera_layouts.input_view(), views, half)
    assert coverage < 0.8
    # the v1.2 release's cameras for views made at v1.1's: the hull shrinks to what both agree on
    coverage_v12 = silhouette_coverage(
        front, pseudo, camera_layouts.input_view(), camera_layouts.zero123pp_views("v1.2", half), half
    )
    assert coverage_v12 < 0.9
