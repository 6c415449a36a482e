"""Nerfstudio cameras on an orbit around the object, at given times."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from nerfstudio.cameras.cameras import Cameras, CameraType

from ds4d_ns import camera_layouts


def orbit_cameras(
    azimuths_deg: Sequence[float],
    times: Sequence[float],
    elevation_deg: Union[float, Sequence[float]] = 0.0,
    radius: float = camera_layouts.INPUT_RADIUS,
    fov_deg: float = camera_layouts.INPUT_FOVY_DEG,
    resolution: int = 512,
    centre: Optional[Sequence[float]] = None,
) -> Cameras:
    """One square pinhole camera per (azimuth, time) pair, looking at the origin (or at ``centre``, the orbit
    moved there); ``elevation_deg`` is one elevation for all or one per azimuth."""
    if len(azimuths_deg) != len(times):
        raise ValueError(f"need one time per azimuth, got {len(azimuths_deg)} azimuths and {len(times)} times")
    elevations = (
        [float(elevation_deg)] * len(azimuths_deg) if isinstance(elevation_deg, (int, float)) else elevation_deg
    )
    if len(elevations) != len(azimuths_deg):
        raise ValueError(f"need one elevation per azimuth, got {len(elevations)} for {len(azimuths_deg)}")
    c2w = torch.stack(
        [
            camera_layouts.orbit_c2w(camera_layouts.OrbitView(az, el, radius, fov_deg))
            for az, el in zip(azimuths_deg, elevations)
        ]
    )
    if centre is not None:
        c2w[:, :3, 3] += torch.as_tensor(centre, dtype=c2w.dtype)
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
