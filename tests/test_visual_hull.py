"""Visual hull initial points: carving maths on a known sphere, and the hull of a ds4d-synth scene."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ds4d_ns import camera_layouts
from ds4d_ns.process.visual_hull import carve, occupancy_iou, sample_surface_points, surface_voxels, voxel_centres
from ds4d_ns.rendering.camera_matrices import opengl_c2w_to_opencv_viewmat


def _cameras(layout, size):
    viewmats = opengl_c2w_to_opencv_viewmat(torch.stack([camera_layouts.orbit_c2w(v) for v in layout]).float())
    intrinsics = []
    for view in layout:
        focal = camera_layouts.focal_from_fov(view.fov_deg, size)
        intrinsics.append(torch.tensor([[focal, 0, size / 2], [0, focal, size / 2], [0, 0, 1.0]]))
    return viewmats, torch.stack(intrinsics)


def _sphere_masks(layout, size, radius):
    """Exact silhouettes of a sphere at the origin (a disc of angular radius asin(r / d))."""
    masks = []
    for view in layout:
        focal = camera_layouts.focal_from_fov(view.fov_deg, size)
        disc = focal * math.tan(math.asin(radius / view.radius))
        ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
        masks.append((((xs - size / 2) ** 2 + (ys - size / 2) ** 2) <= disc**2).float())
    return masks


def test_hull_of_a_sphere_seen_from_many_sides_is_close_to_the_sphere():
    layout = [camera_layouts.input_view(), *camera_layouts.zero123pp_v12_views()]
    layout += [camera_layouts.OrbitView(az, 80.0, 2.0, 49.1) for az in (0.0, 120.0, 240.0)]  # from above too
    viewmats, intrinsics = _cameras(layout, 96)
    hull = carve(_sphere_masks(layout, 96, 0.4), viewmats, intrinsics, half_extent=0.6, resolution=48)
    truth = hull.centres.norm(dim=-1) <= 0.4
    assert occupancy_iou(hull.occupied, truth) > 0.85
    assert (truth & ~hull.occupied).sum() <= 0.03 * truth.sum()  # the hull contains the object (up to pixel rounding)


def test_a_voxel_outside_any_view_is_carved():
    layout = [camera_layouts.input_view()]
    viewmats, intrinsics = _cameras(layout, 32)
    hull = carve([torch.ones(32, 32)], viewmats, intrinsics, half_extent=3.0, resolution=24)
    far_corner = hull.centres[0, 0, 0]
    assert not hull.occupied[0, 0, 0], f"{far_corner} should be outside the input camera's frustum"
    assert hull.occupied.any()


def test_surface_voxels_of_a_solid_cube_are_its_shell():
    centres = voxel_centres(1.0, 6)
    from ds4d_ns.process.visual_hull import VoxelHull

    hull = VoxelHull(torch.ones(6, 6, 6, dtype=torch.bool), centres)
    shell = surface_voxels(hull)
    assert int(shell.sum()) == 6**3 - 4**3
    points = sample_surface_points(hull, 50, seed=1)
    assert points.shape == (50, 3) and points.abs().max() <= 1.0


def test_an_empty_hull_is_an_error():
    from ds4d_ns.process.visual_hull import VoxelHull

    empty = VoxelHull(torch.zeros(4, 4, 4, dtype=torch.bool), voxel_centres(1.0, 4))
    with pytest.raises(ValueError, match="empty"):
        sample_surface_points(empty, 10)


def test_hull_of_a_synth_scene_overlaps_the_true_shape(tmp_path: Path):
    from ds4d_ns.dataparsers.ds4d_dataparser import Ds4dDataParserConfig
    from ds4d_ns.scripts.synth import SynthConfig
    from ds4d_ns.scripts.synth import main as synth_main
    from ds4d_ns.synth.scenes import windmill

    data = tmp_path / "windmill"
    synth_main(SynthConfig(output=data, scene="windmill", frames=3, resolution=96, seed=0, num_points=200))
    outputs = Ds4dDataParserConfig(data=data).setup().get_dataparser_outputs("train")
    cameras = outputs.cameras
    middle = cameras.metadata["frame_index"].view(-1) == 1
    from PIL import Image

    masks = [
        torch.from_numpy(np.asarray(Image.open(outputs.image_filenames[i]).convert("RGBA"))[..., 3] / 255.0).float()
        for i in torch.nonzero(middle).view(-1).tolist()
    ]
    viewmats = opengl_c2w_to_opencv_viewmat(cameras.camera_to_worlds[middle])
    hull = carve(masks, viewmats, cameras.get_intrinsics_matrices()[middle], half_extent=0.8, resolution=64)
    time = float(cameras.times[middle][0])
    truth = windmill().distance(hull.centres.reshape(-1, 3), time).reshape(hull.occupied.shape) < 0
    iou = occupancy_iou(hull.occupied, truth)
    print(f"visual hull IoU on windmill (7 views, 64^3): {iou:.3f}")
    assert iou > 0.5
    assert (truth & ~hull.occupied).sum() <= 0.05 * truth.sum()  # the hull keeps (nearly) all of the object
