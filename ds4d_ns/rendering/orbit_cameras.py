"""Nerfstudio cameras on an orbit around the object, at given times."""

from __future__ import annotations

from typing import Sequence

import torch
from nerfstudio.cameras.cameras import Cameras, CameraType

from ds4d_ns import camera_layouts


def orbit_cameras(
    azimuths_deg: Sequence[float],
    times: Sequence[float],
    elevation_deg: float = 0.0,
    radius: float = camera_layouts.INPUT_RADIUS,
    fov_deg: float = camera_layouts.INPUT_FOVY_DEG,
    resolution: int = 512,
) -> Cameras:
    """One square pinhole camera per (azimuth, time) pair, looking at the origin."""
    if len(azimuths_deg) != len(times):
        raise ValueError(f"need one time per azimuth, got {len(azimuths_deg)} azimuths and {len(times)} times")
    c2w = torch.stack(
        [camera_layouts.orbit_c2w(camera_layouts.OrbitView(az, elevation_deg, radius, fov_deg)) for az in azimuths_deg]
    )
    focal = camera_layouts.focal_from_fov(fov_deg, resolution)
    n = len(azimuths_deg)
    return Cameras(
        camera_to_worlds=c2w,
        fx=torch.full((n, 1), focal),
        fy=torch.full((n, 1), focal),
        cx=torch.full((n, 1), resolution / 2),
        cy=torch.full((n, 1), resolution / 2),
        width=torch.full((n, 1), resolution, dtype=torch.int64),
        height=torch.full((n, 1), resolution, dtype=torch.int64),
        camera_type=CameraType.PERSPECTIVE,
        times=torch.tensor(list(times), dtype=torch.float32)[:, None],
    )
