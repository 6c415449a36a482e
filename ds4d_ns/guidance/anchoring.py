"""Which view SDS renders and what it conditions on (the closest public recipe, STAG4D).

Each SDS sample renders a random view around the object: azimuth uniform in [-180, 180) and
elevation the input's plus an offset uniform in [-30, 30] degrees. It is conditioned on the input
frame at that time when the view is near the front (|azimuth| < 30 degrees) or, otherwise, with
probability ``input_probability``; else on the pseudo view nearest to it (great-circle angle).
The camera pose given to Zero123 is the view's pose relative to the condition view's.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple


@dataclass(frozen=True)
class SdsView:
    """One SDS sample: where to render, which image conditions it, and the relative pose."""

    azimuth_deg: float
    """Azimuth of the rendered view (0 = input camera, counter-clockwise seen from above)."""
    elevation_deg: float
    """Elevation of the rendered view."""
    condition: Optional[int]
    """Index of the pseudo view conditioning it, or None for the input view."""
    delta_elevation_deg: float
    """Rendered elevation minus the condition view's."""
    delta_azimuth_deg: float
    """Rendered azimuth minus the condition view's, wrapped to [-180, 180)."""


def wrap_degrees(angle: float) -> float:
    """An angle in degrees wrapped to [-180, 180)."""
    return (angle + 180.0) % 360.0 - 180.0


def angular_distance_deg(a: Tuple[float, float], b: Tuple[float, float]) -> float:
    """Great-circle angle in degrees between two (azimuth, elevation) directions."""
    az1, el1, az2, el2 = (math.radians(v) for v in (*a, *b))
    cosine = math.sin(el1) * math.sin(el2) + math.cos(el1) * math.cos(el2) * math.cos(az1 - az2)
    return math.degrees(math.acos(max(-1.0, min(1.0, cosine))))


def choose_condition(
    azimuth_deg: float,
    elevation_deg: float,
    pseudo_views: Sequence[Tuple[float, float]],
    input_elevation_deg: float = 0.0,
    use_input: bool = False,
    front_threshold_deg: float = 30.0,
) -> SdsView:
    """Condition a view on the input (near the front, or when ``use_input``) or on the nearest pseudo view."""
    azimuth_deg = wrap_degrees(azimuth_deg)
    if use_input or abs(azimuth_deg) < front_threshold_deg or not pseudo_views:
        return SdsView(azimuth_deg, elevation_deg, None, elevation_deg - input_elevation_deg, azimuth_deg)
    distances = [angular_distance_deg((azimuth_deg, elevation_deg), view) for view in pseudo_views]
    nearest = min(range(len(pseudo_views)), key=distances.__getitem__)
    cond_az, cond_el = pseudo_views[nearest]
    return SdsView(azimuth_deg, elevation_deg, nearest, elevation_deg - cond_el, wrap_degrees(azimuth_deg - cond_az))


def sample_sds_view(
    rng: random.Random,
    pseudo_views: Sequence[Tuple[float, float]],
    input_elevation_deg: float = 0.0,
    elevation_range_deg: float = 30.0,
    input_probability: float = 0.6,
    front_threshold_deg: float = 30.0,
) -> SdsView:
    """A random SDS view and its conditioning (see the module docstring)."""
    azimuth = rng.uniform(-180.0, 180.0)
    elevation = input_elevation_deg + rng.uniform(-elevation_range_deg, elevation_range_deg)
    use_input = rng.random() < input_probability
    return choose_condition(azimuth, elevation, pseudo_views, input_elevation_deg, use_input, front_threshold_deg)
