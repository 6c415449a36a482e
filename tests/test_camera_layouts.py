"""Pseudo-view cameras of each Zero123++ release against the public code that places them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ds4d_ns import camera_layouts

# STAG4D main.py set_fix_cam: orbit_camera(input_elevation + d, azimuth, radius=2) with fovy 49.1, in
# its convention (y up, elevation negative above, azimuth 0 on +z turning towards +x)
STAG4D_V11 = [(-30, 30), (20, 90), (-30, 150), (20, 210), (-30, 270), (20, 330)]
# InstantMesh src/utils/camera_util.py get_zero123plus_input_cameras(radius=4.0, fov=30.0): z up, azimuth
# 0 on +x turning towards +y
INSTANTMESH_V12 = list(zip([30, 90, 150, 210, 270, 330], [20, -10, 20, -10, 20, -10]))


def _stag4d_position(elevation: float, azimuth: float, radius: float) -> np.ndarray:
    el, az = math.radians(elevation), math.radians(azimuth)
    x, y, z = radius * math.cos(el) * math.sin(az), -radius * math.sin(el), radius * math.cos(el) * math.cos(az)
    return np.array([x, -z, y])  # their (x, y up, z towards the input camera) -> ours (x, y, z up)


def _instantmesh_position(azimuth: float, elevation: float, radius: float) -> np.ndarray:
    el, az = math.radians(elevation), math.radians(azimuth)
    x, y, z = radius * math.cos(el) * math.cos(az), radius * math.cos(el) * math.sin(az), radius * math.sin(el)
    return np.array([y, -x, z])  # their input camera sits on +x, ours on -y: a quarter turn about z


def test_v11_views_sit_where_stag4d_puts_them():
    layout = camera_layouts.zero123pp_views("v1.1")
    positions = np.stack(
        [camera_layouts.orbit_position(v.azimuth_deg, v.elevation_deg, v.radius).numpy() for v in layout]
    )
    expected = np.stack([_stag4d_position(el, az, 2.0) for el, az in STAG4D_V11])
    np.testing.assert_allclose(positions, expected, atol=1e-5)
    assert all(v.fov_deg == pytest.approx(49.1) for v in layout)
    assert camera_layouts.zero123pp_v11_views() == layout


def test_v12_views_sit_where_instantmesh_puts_them_scaled_by_the_object():
    half_extent = 0.7
    layout = camera_layouts.zero123pp_views("v1.2", half_extent=half_extent)
    positions = np.stack(
        [camera_layouts.orbit_position(v.azimuth_deg, v.elevation_deg, v.radius).numpy() for v in layout]
    )
    expected = np.stack([_instantmesh_position(az, el, 4.0) for az, el in INSTANTMESH_V12]) * half_extent
    np.testing.assert_allclose(positions, expected, atol=1e-5)
    assert all(v.fov_deg == 30.0 for v in layout)


def test_v12_draws_the_object_at_one_size_whatever_the_input_framing():
    """A normalised object size: the share of the tile the object fills does not depend on --fill."""
    shares = []
    for fill in (0.5, 0.85, 0.95):
        extent = camera_layouts.object_half_extent(fill)
        view = camera_layouts.zero123pp_v12_views(extent)[0]
        shares.append(extent / (view.radius * math.tan(math.radians(view.fov_deg / 2))))
    assert shares == pytest.approx([1.0 / (4.0 * math.tan(math.radians(15.0)))] * 3)
    # the default layout is the one of an object filling ds4d-process's default share of the input image
    assert camera_layouts.zero123pp_v12_views() == camera_layouts.zero123pp_v12_views(
        camera_layouts.object_half_extent(0.85)
    )
    assert camera_layouts.object_half_extent(1.0) == pytest.approx(2.0 * math.tan(math.radians(49.1 / 2)))
