"""Camera conventions and the published view layouts, defined once for the whole plugin.

Conventions (every module that makes or reads a camera goes through this file):

* World frame: z is up, the object sits at the origin.
* Camera-to-world matrices are OpenGL style, as in Nerfstudio's ``transforms.json``: the camera
  looks down its own -z axis, +y is up in the image and +x is right.
* An orbit pose is (azimuth, elevation, radius) in degrees and scene units. Azimuth 0 is the
  input (front) camera, which sits on the -y axis looking towards +y; positive azimuth turns the
  camera counter-clockwise when seen from above (azimuth 90 sits on +x). Elevation is measured
  from the xy plane, positive above it.

Layouts (sources beside each constant below and in ``shared/notes/reference-parameters.md``):

* Input view: azimuth 0, elevation 0, radius 2.0, vertical field of view 49.1 degrees
  (the Consistent4D protocol).
* Pseudo views, Zero123++ v1.1: azimuths 30..330 step 60 relative to the input, absolute
  elevations 30 / -20, placed as STAG4D places them: at the input camera's radius and field of
  view (v1.1 keeps the input's framing; it fixes no field of view of its own).
* Pseudo views, Zero123++ v1.2: same azimuths, absolute elevations 20 / -10, field of view 30
  degrees and a normalised object size: InstantMesh places these cameras at radius 4.0 for an
  object normalised to about unit half-extent, so in our scene the radius is
  ``4.0 * object_half_extent`` (the input's framing does not matter).
* Evaluation views: Consistent4D azimuths -75, 15, 105, 195 at the input's elevation, radius
  and field of view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

import torch
from jaxtyping import Float
from torch import Tensor

from ds4d_ns.options import Zero123PlusRelease

INPUT_RADIUS = 2.0
"""Distance of the input camera from the object centre (Consistent4D)."""
INPUT_FOVY_DEG = 49.1
"""Vertical field of view of the input and evaluation cameras in degrees (Consistent4D)."""
ZERO123PP_AZIMUTHS_DEG: Tuple[float, ...] = (30.0, 90.0, 150.0, 210.0, 270.0, 330.0)
"""Zero123++ output azimuths (both releases), relative to the input view, in tile order (row-major 3 x 2
grid). Source: the Zero123++ README; STAG4D ``main.py`` ``set_fix_cam``; InstantMesh
``src/utils/camera_util.py`` ``get_zero123plus_input_cameras``."""
ZERO123PP_V12_AZIMUTHS_DEG = ZERO123PP_AZIMUTHS_DEG
"""Older name of ``ZERO123PP_AZIMUTHS_DEG`` (v1.1 and v1.2 share the azimuths)."""
ZERO123PP_V12_ELEVATIONS_DEG: Tuple[float, ...] = (20.0, -10.0, 20.0, -10.0, 20.0, -10.0)
"""Zero123++ v1.2 absolute elevations, matching ``ZERO123PP_AZIMUTHS_DEG``. Source: the Zero123++ README
("UPDATES v1.2": elevations changed to 20 and -10) and InstantMesh's ``get_zero123plus_input_cameras``."""
ZERO123PP_V11_ELEVATIONS_DEG: Tuple[float, ...] = (30.0, -20.0, 30.0, -20.0, 30.0, -20.0)
"""Zero123++ v1.1 absolute elevations (same azimuths). Source: the Zero123++ README (v1.1 used 30 and -20)
and STAG4D's ``set_fix_cam`` (input elevation - 30 / + 20 in its y-down elevation convention, i.e. 30
above / 20 below for an input at elevation 0)."""
ZERO123PP_V12_FOV_DEG = 30.0
"""Zero123++ v1.2 output field of view in degrees. Source: the Zero123++ README ("unifies the output field
of view to 30 degrees") and InstantMesh's ``get_zero123plus_input_cameras(fov=30.0)``."""
ZERO123PP_V12_RADIUS = 4.0
"""Camera distance of the v1.2 views for an object of half-extent ``ZERO123PP_V12_OBJECT_HALF_EXTENT``.
Source: InstantMesh ``get_zero123plus_input_cameras(radius=4.0)`` (also its ``ValidationData``)."""
ZERO123PP_V12_OBJECT_HALF_EXTENT = 1.0
"""Largest half-extent of v1.2's normalised object at ``ZERO123PP_V12_RADIUS``, in InstantMesh's units.
An assumption read from InstantMesh's reconstruction grid (``grid_scale: 2.1``, i.e. +-1.05), which the
object must fill; Zero123++ does not publish its normalisation."""
DEFAULT_FILL = 0.85
"""Share of the input image's side that the object fills (ds4d-process ``--fill`` default)."""
CONSISTENT4D_EVAL_AZIMUTHS_DEG: Tuple[float, ...] = (-75.0, 15.0, 105.0, 195.0)
"""Held-out evaluation azimuths of the Consistent4D protocol."""


@dataclass(frozen=True)
class OrbitView:
    """One camera on a sphere around the object."""

    azimuth_deg: float
    """Azimuth in degrees, 0 = input camera, counter-clockwise seen from above."""
    elevation_deg: float
    """Elevation above the xy plane in degrees."""
    radius: float
    """Distance to the origin in scene units."""
    fov_deg: float
    """Vertical (= horizontal, images are square) field of view in degrees."""


def orbit_position(azimuth_deg: float, elevation_deg: float, radius: float) -> Float[Tensor, "3"]:
    """World position of an orbit camera (see the module docstring for the convention)."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return torch.tensor(
        [radius * math.cos(el) * math.sin(az), -radius * math.cos(el) * math.cos(az), radius * math.sin(el)],
        dtype=torch.float32,
    )


def look_at_c2w(
    position: Float[Tensor, "3"],
    target: Float[Tensor, "3"] | None = None,
    up: Float[Tensor, "3"] | None = None,
) -> Float[Tensor, "3 4"]:
    """OpenGL camera-to-world matrix of a camera at ``position`` looking at ``target`` (z-up)."""
    target = torch.zeros(3) if target is None else target
    up = torch.tensor([0.0, 0.0, 1.0]) if up is None else up
    back = position - target
    back = back / back.norm()
    right = torch.linalg.cross(up.to(back), back)
    if right.norm() < 1e-6:  # looking straight up or down: any horizontal right vector works
        right = torch.tensor([1.0, 0.0, 0.0])
    right = right / right.norm()
    cam_up = torch.linalg.cross(back, right)
    return torch.stack([right, cam_up, back, position.to(back)], dim=1)


def orbit_c2w(view: OrbitView) -> Float[Tensor, "3 4"]:
    """Camera-to-world matrix of an orbit view looking at the origin."""
    return look_at_c2w(orbit_position(view.azimuth_deg, view.elevation_deg, view.radius))


def focal_from_fov(fov_deg: float, size_px: int) -> float:
    """Pinhole focal length in pixels for a field of view across ``size_px`` pixels."""
    return 0.5 * size_px / math.tan(0.5 * math.radians(fov_deg))


def framing_radius(
    fov_deg: float, reference_radius: float = INPUT_RADIUS, reference_fov_deg: float = INPUT_FOVY_DEG
) -> float:
    """Distance at which a camera of ``fov_deg`` frames the object as the reference camera does."""
    return reference_radius * math.tan(0.5 * math.radians(reference_fov_deg)) / math.tan(0.5 * math.radians(fov_deg))


def object_half_extent(fill: float = DEFAULT_FILL) -> float:
    """Largest half-extent (scene units) of an object filling ``fill`` of the input image's side.

    The input camera sees a half-width of ``radius * tan(fov / 2)`` at the origin.
    """
    return fill * INPUT_RADIUS * math.tan(0.5 * math.radians(INPUT_FOVY_DEG))


def input_view() -> OrbitView:
    """The monocular video's camera."""
    return OrbitView(0.0, 0.0, INPUT_RADIUS, INPUT_FOVY_DEG)


def zero123pp_v11_views() -> Tuple[OrbitView, ...]:
    """The six Zero123++ v1.1 pseudo views, in the generator's tile order: at the input camera's radius
    and field of view (as STAG4D places them: ``set_fix_cam`` with ``radius: 2``, ``fovy: 49.1``)."""
    return tuple(
        OrbitView(az, el, INPUT_RADIUS, INPUT_FOVY_DEG)
        for az, el in zip(ZERO123PP_AZIMUTHS_DEG, ZERO123PP_V11_ELEVATIONS_DEG)
    )


def zero123pp_v12_views(half_extent: float | None = None) -> Tuple[OrbitView, ...]:
    """The six Zero123++ v1.2 pseudo views, in the generator's tile order.

    v1.2 draws the object at a normalised size whatever the input's framing, so the camera distance
    scales with the object: InstantMesh's radius 4.0 for a unit half-extent, times ``half_extent``
    (scene units; default: an object filling ``DEFAULT_FILL`` of the input image).
    """
    half_extent = object_half_extent() if half_extent is None else half_extent
    radius = ZERO123PP_V12_RADIUS * half_extent / ZERO123PP_V12_OBJECT_HALF_EXTENT
    return tuple(
        OrbitView(az, el, radius, ZERO123PP_V12_FOV_DEG)
        for az, el in zip(ZERO123PP_AZIMUTHS_DEG, ZERO123PP_V12_ELEVATIONS_DEG)
    )


def zero123pp_views(version: Zero123PlusRelease = "v1.2", half_extent: float | None = None) -> Tuple[OrbitView, ...]:
    """The six pseudo views of a Zero123++ release (``half_extent`` only matters for v1.2)."""
    if version == "v1.2":
        return zero123pp_v12_views(half_extent)
    if version == "v1.1":
        return zero123pp_v11_views()
    raise ValueError(f"unknown Zero123++ version {version!r} (v1.1 or v1.2)")


def consistent4d_eval_views() -> Tuple[OrbitView, ...]:
    """The four held-out evaluation views of the Consistent4D protocol."""
    return tuple(OrbitView(az, 0.0, INPUT_RADIUS, INPUT_FOVY_DEG) for az in CONSISTENT4D_EVAL_AZIMUTHS_DEG)
