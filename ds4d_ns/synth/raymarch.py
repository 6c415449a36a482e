"""A small sphere tracer in pure torch: camera rays, SDF marching, Lambertian shading.

Only the ground-truth generator uses this; it is deliberately not Gaussian splatting, so the
sample data does not share the method's own rendering biases.

Everything works on flat batches of rays (all pixels of several cameras at once). Rays start where
they enter the scene's bounding sphere, march a fixed number of steps, and drop out of the batch
as soon as they hit or leave the sphere, so the cost follows the object's screen area rather than
the image size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, List, Tuple

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ds4d_ns.synth.scenes import Scene

DistanceFn = Callable[[Tensor], Tensor]

LIGHT_DIRECTION: Tuple[float, float, float] = (-0.35, -0.75, 0.55)
"""Direction towards the key light (world, unnormalised): from the front, above and the left, so the
input view is well lit."""
AMBIENT = 0.35
"""Light that reaches every surface, so the pseudo and evaluation views behind the object are not black."""
WRAP = 0.35
"""Wrap-around of the diffuse term (0 = plain Lambert): softens the terminator, still view-independent."""
HIT_FRACTION = 0.2
"""A ray hits when the distance drops below this fraction of its pixel's footprint."""
NORMAL_STEP = 1e-3
"""Finite-difference step for normals, in scene units (well below any feature size)."""


@dataclass(frozen=True)
class Rays:
    """A flat batch of rays."""

    origins: Float[Tensor, "n 3"]
    """Ray origins in world space."""
    directions: Float[Tensor, "n 3"]
    """Unit ray directions in world space."""
    cone: Float[Tensor, " n"]
    """Width of the ray's pixel per unit of distance along the ray (for hit tests and anti-aliasing)."""

    @staticmethod
    def cat(bundles: List[Rays]) -> Rays:
        """Concatenate several bundles (e.g. several cameras) into one batch."""
        return Rays(
            torch.cat([b.origins for b in bundles]),
            torch.cat([b.directions for b in bundles]),
            torch.cat([b.cone for b in bundles]),
        )


@dataclass(frozen=True)
class TraceResult:
    """Per-ray outcome of sphere tracing."""

    hit: Bool[Tensor, " n"]
    """Whether the ray reached the surface."""
    depth: Float[Tensor, " n"]
    """Distance along the ray of the hit, or of the ray's closest approach to the surface for misses."""
    coverage: Float[Tensor, " n"]
    """Approximate fraction of the pixel covered by the object, in [0, 1] (the alpha)."""


def camera_rays(c2w: Float[Tensor, "3 4"], focal: float, cx: float, cy: float, width: int, height: int) -> Rays:
    """Rays through the centres of all pixels of a pinhole camera, row-major (v, then u).

    ``c2w`` is OpenGL style (``ds4d_ns.camera_layouts``): the camera looks down its -z axis, +y is up in the
    image while pixel rows grow downwards, hence the minus sign on the y component.
    """
    v, u = torch.meshgrid(
        torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij"
    )
    x = (u + 0.5 - cx) / focal
    y = -(v + 0.5 - cy) / focal
    camera_dirs = torch.stack([x, y, -torch.ones_like(x)], dim=-1).reshape(-1, 3)
    length = camera_dirs.norm(dim=-1)
    rotation = c2w[:, :3].float()
    directions = (camera_dirs @ rotation.T) / length[:, None]
    origins = c2w[:, 3].float().expand_as(directions).contiguous()
    # A pixel is 1/focal wide per unit depth; depth = distance / |camera_dir|.
    return Rays(origins, directions, 1.0 / (focal * length))


def sphere_trace(distance: DistanceFn, rays: Rays, bound_radius: float, steps: int) -> TraceResult:
    """March rays through a signed distance field with a fixed step budget.

    Misses keep the smallest ratio (distance / pixel footprint) seen along the ray; near the
    silhouette that ratio says how much of the pixel the object covers, which gives a cheap
    anti-aliased alpha without supersampling.
    """
    o, d, cone = rays.origins, rays.directions, rays.cone
    n = o.shape[0]
    # Entry and exit of the bounding sphere: |o + s d|^2 = R^2.
    b = (o * d).sum(dim=-1)
    disc = b * b - ((o * o).sum(dim=-1) - bound_radius**2)
    root = disc.clamp(min=0.0).sqrt()
    s_far = -b + root
    s = (-b - root).clamp(min=0.0)
    hit = torch.zeros(n, dtype=torch.bool)
    best_ratio = torch.full((n,), math.inf)
    best_s = s.clone()
    active = torch.nonzero((disc > 0.0) & (s_far > 0.0)).squeeze(-1)
    for _ in range(steps):
        if active.numel() == 0:
            break
        s_active = s[active]
        dist = distance(o[active] + s_active[:, None] * d[active])
        footprint = (s_active * cone[active]).clamp(min=1e-6)
        ratio = dist / footprint
        closer = ratio < best_ratio[active]
        best_ratio[active] = torch.where(closer, ratio, best_ratio[active])
        best_s[active] = torch.where(closer, s_active, best_s[active])
        is_hit = ratio < HIT_FRACTION
        hit[active] = is_hit
        s_next = torch.where(is_hit, s_active, s_active + dist)
        s[active] = s_next
        active = active[~is_hit & (s_next < s_far[active])]
    # Continuous at the hit threshold: ratio = HIT_FRACTION gives 1, one full footprint away gives 0.
    soft = ((1.0 - best_ratio) / (1.0 - HIT_FRACTION)).clamp(0.0, 1.0)
    coverage = torch.where(hit, torch.ones_like(soft), soft)
    return TraceResult(hit=hit, depth=torch.where(hit, s, best_s), coverage=coverage)


def sdf_gradient(distance: DistanceFn, points: Float[Tensor, "n 3"], step: float = NORMAL_STEP) -> Float[Tensor, "n 3"]:
    """Gradient of the distance by central differences along the four tetrahedron directions.

    Four evaluations instead of six; exact for linear fields, good enough for shading and for
    Newton projection onto the surface.
    """
    corners = points.new_tensor([[1.0, -1.0, -1.0], [-1.0, -1.0, 1.0], [-1.0, 1.0, -1.0], [1.0, 1.0, 1.0]])
    n = points.shape[0]
    shifted = (points[None] + step * corners[:, None]).reshape(-1, 3)
    values = distance(shifted).reshape(4, n)
    return (values[:, :, None] * corners[:, None]).sum(dim=0) / (4.0 * step)


def shade(scene: Scene, points: Float[Tensor, "n 3"], t: float) -> Float[Tensor, "n 3"]:
    """Lit surface colour at points on (or within a pixel of) the surface at time ``t``.

    A fixed light in world space and no view-dependent term, so every camera sees the same colour
    at the same surface point (the multi-view consistency a 4D method may assume).
    """
    normals = torch.nn.functional.normalize(sdf_gradient(lambda x: scene.distance(x, t), points), dim=-1)
    light = torch.nn.functional.normalize(points.new_tensor(LIGHT_DIRECTION), dim=0)
    diffuse = (((normals * light).sum(dim=-1) + WRAP) / (1.0 + WRAP)).clamp(min=0.0)
    return (scene.albedo(points, t) * (AMBIENT + (1.0 - AMBIENT) * diffuse[:, None])).clamp(0.0, 1.0)


def render_rays(scene: Scene, t: float, rays: Rays, steps: int) -> Float[Tensor, "n 4"]:
    """Straight (not premultiplied) RGBA per ray; colour is 0 where alpha is 0."""
    trace = sphere_trace(lambda x: scene.distance(x, t), rays, scene.bound_radius, steps)
    rgba = torch.zeros(rays.origins.shape[0], 4)
    visible = torch.nonzero(trace.coverage > 0.0).squeeze(-1)
    if visible.numel() > 0:
        points = rays.origins[visible] + trace.depth[visible, None] * rays.directions[visible]
        rgba[visible, :3] = shade(scene, points, t)
    rgba[:, 3] = trace.coverage
    return rgba
