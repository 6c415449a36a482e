"""Procedural animated scenes for ``ds4d-synth``, built from small signed-distance primitives.

Every scene is a static-dominant object of about unit size centred at the origin (world z up,
front facing the input camera on -y, see ``ds4d_ns.camera_layouts``): most of it never moves and a small
part moves rigidly and smoothly with time ``t`` in [0, 1]. This is the DS4D paper's
static-dominant case, where a method has to keep the static region sharp while it fits the motion.

A scene is a list of parts. A part is a primitive SDF plus a procedural albedo, both written in
the part's LOCAL frame, and a rigid pose (local to world) that depends on time. Because the
texture is evaluated in local coordinates it moves with the part, so misplaced or blurred motion
shows up in image metrics rather than hiding on a flat colour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Tuple

import torch
from jaxtyping import Float
from torch import Tensor

Pose = Tuple[Float[Tensor, "3 3"], Float[Tensor, "3"]]
"""Rigid transform ``x_world = R @ x_local + T`` as ``(R, T)``."""


# ----------------------------------------------------------------------------------------------
# Primitives: SDFs in the primitive's own frame. All are exact or lower bounds of the distance
# (Lipschitz <= 1), which sphere tracing needs to never step through a surface.
# ----------------------------------------------------------------------------------------------


def sd_sphere(p: Float[Tensor, "n 3"], radius: float) -> Float[Tensor, " n"]:
    """Sphere of ``radius`` centred at the origin."""
    return p.norm(dim=-1) - radius


def sd_box(
    p: Float[Tensor, "n 3"], half_extents: Tuple[float, float, float], rounding: float = 0.0
) -> Float[Tensor, " n"]:
    """Axis-aligned box with edges rounded by ``rounding`` (the outer size stays ``half_extents``)."""
    q = p.abs() - p.new_tensor(half_extents) + rounding
    outside = q.clamp(min=0.0).norm(dim=-1)
    inside = q.max(dim=-1).values.clamp(max=0.0)
    return outside + inside - rounding


def sd_capsule(
    p: Float[Tensor, "n 3"], a: Tuple[float, float, float], b: Tuple[float, float, float], radius: float
) -> Float[Tensor, " n"]:
    """Capsule: all points within ``radius`` of the segment ``a``-``b``."""
    start, end = p.new_tensor(a), p.new_tensor(b)
    axis = end - start
    # Elementwise dot product rather than a matmul, for batch-size-independent rounding (see to_local).
    along = (((p - start) * axis).sum(dim=-1) / axis.dot(axis)).clamp(0.0, 1.0)
    return (p - start - along[:, None] * axis).norm(dim=-1) - radius


def sd_cylinder(p: Float[Tensor, "n 3"], radius: float, half_height: float, axis: int = 2) -> Float[Tensor, " n"]:
    """Capped cylinder centred at the origin along coordinate ``axis`` (0 = x, 1 = y, 2 = z)."""
    others = [i for i in range(3) if i != axis]
    radial = p[:, others].norm(dim=-1) - radius
    height = p[:, axis].abs() - half_height
    q = torch.stack([radial, height], dim=-1)
    return q.clamp(min=0.0).norm(dim=-1) + q.max(dim=-1).values.clamp(max=0.0)


def smooth_union(a: Float[Tensor, " n"], b: Float[Tensor, " n"], k: float) -> Float[Tensor, " n"]:
    """Polynomial smooth minimum of two distances, blending over a band of width ``k``.

    Written as ``a * h + b * (1 - h)`` so that far from the blend band (h exactly 0 or 1) the result
    is bitwise equal to the nearer distance: static parts then render identically at every time.
    """
    if k <= 0.0:
        return torch.minimum(a, b)
    h = (0.5 + 0.5 * (b - a) / k).clamp(0.0, 1.0)
    return a * h + b * (1.0 - h) - k * h * (1.0 - h)


# ----------------------------------------------------------------------------------------------
# Rigid transforms
# ----------------------------------------------------------------------------------------------


def rotation(axis: int, angle: float) -> Float[Tensor, "3 3"]:
    """Right-handed rotation by ``angle`` radians about coordinate ``axis`` (0 = x, 1 = y, 2 = z)."""
    c, s = math.cos(angle), math.sin(angle)
    i, j = [k for k in range(3) if k != axis]
    if axis == 1:  # keep the cyclic order (z, x) so positive angles are right-handed about y
        i, j = j, i
    matrix = torch.eye(3)
    matrix[i, i], matrix[i, j], matrix[j, i], matrix[j, j] = c, -s, s, c
    return matrix


def to_local(points: Float[Tensor, "n 3"], pose: Pose) -> Float[Tensor, "n 3"]:
    """World points into a part's local frame, ``R^T (x - T)``.

    Spelled out as per-row products instead of a matmul: a BLAS kernel may round differently for
    different batch sizes, and resumed runs render subsets whose bytes must match the full run.
    """
    rot, offset = pose
    d = points - offset.to(points)
    rot = rot.to(points)
    return d[:, 0:1] * rot[0] + d[:, 1:2] * rot[1] + d[:, 2:3] * rot[2]


def fixed_pose(offset: Tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Callable[[float], Pose]:
    """Time-independent pose: a translation only."""
    pose = (torch.eye(3), torch.tensor(offset, dtype=torch.float32))
    return lambda t: pose


# ----------------------------------------------------------------------------------------------
# Procedural textures (inputs are local coordinates, outputs albedo in [0, 1])
# ----------------------------------------------------------------------------------------------


def rgb(r: float, g: float, b: float) -> Float[Tensor, "3"]:
    """A constant colour."""
    return torch.tensor([r, g, b], dtype=torch.float32)


def stripes(x: Float[Tensor, " n"], frequency: float, phase: float = 0.0) -> Float[Tensor, " n"]:
    """Square-ish wave in [0, 1]: steep but not hard transitions, so edges are not aliased."""
    return (0.5 + 3.0 * torch.sin(2.0 * math.pi * (frequency * x + phase))).clamp(0.0, 1.0)


def checker(u: Float[Tensor, " n"], v: Float[Tensor, " n"], frequency: float) -> Float[Tensor, " n"]:
    """Soft checkerboard in [0, 1] over two coordinates."""
    wave = torch.sin(2.0 * math.pi * frequency * u) * torch.sin(2.0 * math.pi * frequency * v)
    return (0.5 + 3.0 * wave).clamp(0.0, 1.0)


def mix(c0: Tensor, c1: Tensor, w: Float[Tensor, " n"]) -> Float[Tensor, "n 3"]:
    """Per-point linear blend between colours ``c0`` (w = 0) and ``c1`` (w = 1)."""
    return c0 + (c1 - c0) * w[:, None]


def azimuth(p: Float[Tensor, "n 3"], axis: int = 2) -> Float[Tensor, " n"]:
    """Angle around coordinate ``axis`` in turns ([-0.5, 0.5]), for wrapping textures round a body."""
    i, j = [k for k in range(3) if k != axis]
    return torch.atan2(p[:, j], p[:, i]) / (2.0 * math.pi)


# ----------------------------------------------------------------------------------------------
# Parts and scenes
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """A rigid piece of a scene, described in its local frame."""

    name: str
    """Human-readable name (also used in tests and logs)."""
    sdf: Callable[[Tensor], Tensor]
    """Signed distance of local points ``[n, 3]`` to the part's surface, ``[n]``."""
    albedo: Callable[[Tensor], Tensor]
    """Surface colour of local points ``[n, 3]``, ``[n, 3]`` in [0, 1]."""
    pose: Callable[[float], Pose]
    """Local-to-world transform at time ``t`` in [0, 1]."""
    moving: bool = False
    """Whether the pose depends on time (documentation and tests only; rendering ignores it)."""


@dataclass(frozen=True)
class Scene:
    """An animated object: a smooth union of rigid parts."""

    name: str
    """Registry name, the ``--scene`` value."""
    description: str
    """One line for logs and ``transforms.json``."""
    parts: Tuple[Part, ...]
    """The parts; their union is the object."""
    blend: float = 0.02
    """Smooth-union band in scene units: rounds the seams where parts touch."""
    bound_radius: float = 0.8
    """Radius of a sphere at the origin that contains the object at every time (rays start there)."""

    def part_distances(self, points: Float[Tensor, "n 3"], t: float) -> Float[Tensor, "p n"]:
        """Distance of world points to each part at time ``t``."""
        return torch.stack([part.sdf(to_local(points, part.pose(t))) for part in self.parts])

    def distance(self, points: Float[Tensor, "n 3"], t: float) -> Float[Tensor, " n"]:
        """Signed distance of world points to the object at time ``t``."""
        result = None
        for part in self.parts:
            d = part.sdf(to_local(points, part.pose(t)))
            result = d if result is None else smooth_union(result, d, self.blend)
        assert result is not None, "a scene needs at least one part"
        return result

    def albedo(self, points: Float[Tensor, "n 3"], t: float) -> Float[Tensor, "n 3"]:
        """Surface colour at world points (meant for points on or near the surface).

        Colours are blended with a soft-min over part distances, so seams inside the smooth-union
        band fade instead of showing a hard, staircase boundary.
        """
        distances = []
        colours = []
        for part in self.parts:
            local = to_local(points, part.pose(t))
            distances.append(part.sdf(local))
            colours.append(part.albedo(local).expand(points.shape[0], 3))
        weights = torch.softmax(-torch.stack(distances) / max(0.25 * self.blend, 1e-3), dim=0)
        return (weights[:, :, None] * torch.stack(colours)).sum(dim=0).clamp(0.0, 1.0)


# ----------------------------------------------------------------------------------------------
# Scene 1: windmill. A brick tower with a dome roof on a grass base; a three-bladed rotor on the
# front (facing the input camera) turns about the world y axis. Each blade has its own colour, so
# the rotor's 120 degree symmetry cannot hide the motion.
# ----------------------------------------------------------------------------------------------

_HUB = (0.0, -0.23, 0.14)
_BLADE_COLOURS = (rgb(0.85, 0.15, 0.12), rgb(0.12, 0.3, 0.85), rgb(0.1, 0.6, 0.2))


def windmill_rotor_angle(t: float) -> float:
    """Rotor angle in radians at time ``t``: a constant-speed 162 degree turn over the clip."""
    return 0.9 * math.pi * t


def _tower_albedo(p: Tensor) -> Tensor:
    # Bricks: rows along z, joints offset every other row, wrapped around the tower.
    row = torch.floor(p[:, 2] * 14.0)
    brick = stripes(azimuth(p) * 12.0 + 0.5 * torch.remainder(row, 2.0), 1.0)
    colour = mix(rgb(0.93, 0.86, 0.7), rgb(0.7, 0.32, 0.2), brick)
    # A dark door on the front (-y) side, so the views' left/right and front/back are unambiguous.
    door = ((p[:, 0].abs() < 0.06) & (p[:, 2] < -0.16) & (p[:, 1] < 0.0)).float()
    return mix(colour, rgb(0.25, 0.15, 0.08), door)


def _roof_albedo(p: Tensor) -> Tensor:
    return mix(rgb(0.55, 0.1, 0.12), rgb(0.2, 0.22, 0.35), stripes(azimuth(p), 8.0))


def _base_albedo(p: Tensor) -> Tensor:
    return mix(rgb(0.3, 0.6, 0.2), rgb(0.55, 0.75, 0.3), checker(p[:, 0], p[:, 1], 5.0))


def _hub_albedo(p: Tensor) -> Tensor:
    # Radial spokes in the rotor frame (x, z), so even the small hub shows the rotation.
    return mix(rgb(0.95, 0.8, 0.2), rgb(0.3, 0.25, 0.1), stripes(azimuth(p, axis=1), 4.0))


_BLADE_CENTRE = (0.0, -0.03, 0.17)
"""Blade centre in the rotor frame: along the blade's +z, a little in front of the hub (-y) so
the blades clear the tower and roof by more than the blend band."""


def _blade_sdf(p: Tensor) -> Tensor:
    return sd_box(p - p.new_tensor(_BLADE_CENTRE), (0.04, 0.012, 0.12), 0.008)


def _blade_albedo(index: int) -> Callable[[Tensor], Tensor]:
    def albedo(p: Tensor) -> Tensor:
        # Bands along the blade's length plus a darker trailing half (local +x).
        bands = mix(rgb(0.95, 0.95, 0.92), _BLADE_COLOURS[index], stripes(p[:, 2], 9.0))
        return mix(bands, 0.45 * _BLADE_COLOURS[index], (p[:, 0] > 0.02).float())

    return albedo


def _rotor_pose(blade_index: int) -> Callable[[float], Pose]:
    """Pose of blade ``blade_index`` (0 also carries the hub): rotor angle plus 120 degree spacing."""
    spacing = rotation(1, 2.0 * math.pi * blade_index / 3.0)
    hub = torch.tensor(_HUB)
    return lambda t: (rotation(1, windmill_rotor_angle(t)) @ spacing, hub)


def windmill() -> Scene:
    """Tower + dome + base (static) with a small three-bladed rotor turning in front."""
    parts = (
        Part("base", lambda p: sd_box(p, (0.26, 0.26, 0.04), 0.015), _base_albedo, fixed_pose((0.0, 0.0, -0.48))),
        Part("tower", lambda p: sd_cylinder(p, 0.18, 0.34), _tower_albedo, fixed_pose((0.0, 0.0, -0.1))),
        Part("roof", lambda p: sd_sphere(p, 0.2), _roof_albedo, fixed_pose((0.0, 0.0, 0.24))),
        Part("hub", lambda p: sd_cylinder(p, 0.05, 0.05, axis=1), _hub_albedo, _rotor_pose(0), moving=True),
    ) + tuple(Part(f"blade{i}", _blade_sdf, _blade_albedo(i), _rotor_pose(i), moving=True) for i in range(3))
    return Scene("windmill", "static brick windmill with a small rotor turning 162 degrees", parts)


# ----------------------------------------------------------------------------------------------
# Scene 2: waving. A round robot-like creature: body and head (static) with one arm that waves
# up (visible from the front) and a short tail that wags (visible from the sides and back).
# ----------------------------------------------------------------------------------------------

_SHOULDER = (0.22, 0.0, 0.03)
_TAIL_ROOT = (0.0, 0.2, -0.28)
_ARM_LENGTH = 0.26


def waving_arm_angle(t: float) -> float:
    """Arm angle from hanging straight down, towards +x, in radians: raises from 35 to 150 degrees
    with a small wave on top (smooth, non-monotone, and different at t = 0 and t = 1)."""
    raise_deg = 35.0 + 115.0 * 0.5 * (1.0 - math.cos(math.pi * t))
    return math.radians(raise_deg + 15.0 * math.sin(4.0 * math.pi * t))


def waving_tail_angle(t: float) -> float:
    """Tail yaw about the world z axis in radians: a side-to-side wag of +-40 degrees."""
    return math.radians(40.0 * math.sin(2.5 * math.pi * t))


def _arm_pose(t: float) -> Pose:
    # Local arm hangs along -z; rotating by -angle about y swings its tip towards +x (image right).
    return rotation(1, -waving_arm_angle(t)), torch.tensor(_SHOULDER)


def _tail_pose(t: float) -> Pose:
    return rotation(2, waving_tail_angle(t)), torch.tensor(_TAIL_ROOT)


def _arm_sdf(p: Tensor) -> Tensor:
    arm = sd_capsule(p, (0.0, 0.0, 0.0), (0.0, 0.0, -_ARM_LENGTH), 0.05)
    hand = sd_sphere(p - p.new_tensor((0.0, 0.0, -_ARM_LENGTH - 0.03)), 0.07)
    return smooth_union(arm, hand, 0.03)


def _arm_albedo(p: Tensor) -> Tensor:
    sleeve = mix(rgb(0.95, 0.95, 0.95), rgb(0.85, 0.1, 0.1), stripes(p[:, 2], 10.0))
    # Thumb-side marking on the hand so the hand's own rotation is visible too.
    hand = mix(rgb(0.98, 0.78, 0.3), rgb(0.3, 0.15, 0.05), (p[:, 0] > 0.03).float())
    return mix(sleeve, hand, (p[:, 2] < -_ARM_LENGTH + 0.02).float())


def _static_arm_sdf(p: Tensor) -> Tensor:
    return sd_capsule(p, (-0.22, 0.0, 0.03), (-0.31, 0.0, -0.2), 0.05)


def _static_arm_albedo(p: Tensor) -> Tensor:
    return mix(rgb(0.95, 0.95, 0.95), rgb(0.1, 0.35, 0.85), stripes(p[:, 2], 10.0))


def _body_albedo(p: Tensor) -> Tensor:
    height = ((p[:, 2] + 0.45) / 0.7).clamp(0.0, 1.0)
    base = mix(rgb(0.1, 0.55, 0.6), rgb(0.25, 0.2, 0.6), height)
    belt = stripes(p[:, 2], 6.0) * stripes(azimuth(p), 10.0)
    colour = mix(base, rgb(0.9, 0.85, 0.3), 0.6 * belt)
    # A pale belly patch on the front makes the front/back unambiguous.
    belly = ((p[:, 0] ** 2 + (p[:, 2] + 0.15) ** 2 < 0.12**2) & (p[:, 1] < 0.0)).float()
    return mix(colour, rgb(0.95, 0.9, 0.8), belly)


def _head_albedo(p: Tensor) -> Tensor:
    colour = mix(rgb(0.95, 0.75, 0.55), rgb(0.85, 0.55, 0.45), stripes(p[:, 2], 7.0))
    # Two eyes and a mouth on the front: features that a correct camera model must put in place.
    left = (p - p.new_tensor((-0.06, -0.15, 0.04))).norm(dim=-1) < 0.035
    right = (p - p.new_tensor((0.06, -0.15, 0.04))).norm(dim=-1) < 0.035
    mouth = (p[:, 0].abs() < 0.06) & ((p[:, 2] + 0.05).abs() < 0.015) & (p[:, 1] < 0.0)
    return mix(colour, rgb(0.08, 0.05, 0.05), (left | right | mouth).float())


def _feet_sdf(p: Tensor) -> Tensor:
    left = sd_sphere(p - p.new_tensor((-0.11, -0.04, -0.46)), 0.08)
    right = sd_sphere(p - p.new_tensor((0.11, -0.04, -0.46)), 0.08)
    return torch.minimum(left, right)


def _feet_albedo(p: Tensor) -> Tensor:
    return mix(rgb(0.35, 0.2, 0.1), rgb(0.6, 0.4, 0.2), checker(p[:, 0], p[:, 1], 12.0))


def _tail_sdf(p: Tensor) -> Tensor:
    return sd_capsule(p, (0.0, 0.0, 0.0), (0.0, 0.2, 0.06), 0.035)


def _tail_albedo(p: Tensor) -> Tensor:
    return mix(rgb(0.95, 0.5, 0.1), rgb(0.1, 0.08, 0.05), stripes(p[:, 1], 12.0))


def waving() -> Scene:
    """Body + head + feet + one static arm, with one small arm waving and a small tail wagging."""
    origin = fixed_pose()
    parts = (
        Part("body", lambda p: sd_capsule(p, (0.0, 0.0, -0.2), (0.0, 0.0, 0.02), 0.23), _body_albedo, origin),
        Part("head", lambda p: sd_sphere(p, 0.17), _head_albedo, fixed_pose((0.0, 0.0, 0.37))),
        Part("feet", _feet_sdf, _feet_albedo, origin),
        Part("left_arm", _static_arm_sdf, _static_arm_albedo, origin),
        Part("right_arm", _arm_sdf, _arm_albedo, _arm_pose, moving=True),
        Part("tail", _tail_sdf, _tail_albedo, _tail_pose, moving=True),
    )
    return Scene("waving", "static round creature waving one arm and wagging a small tail", parts, blend=0.03)


SCENES: Dict[str, Callable[[], Scene]] = {"windmill": windmill, "waving": waving}
"""Scene registry: ``--scene`` name to a constructor."""
DEFAULT_SCENE = "windmill"


def get_scene(name: str) -> Scene:
    """Build a registered scene by name, with a clear error listing the choices."""
    if name not in SCENES:
        raise ValueError(f"unknown scene {name!r}; choose one of {sorted(SCENES)}")
    return SCENES[name]()
