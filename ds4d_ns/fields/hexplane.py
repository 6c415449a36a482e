"""HexPlane: a multi-resolution 4D feature grid factorised into six planes (4D-GS, K-Planes).

Each scale is Nerfstudio's :class:`KPlanesEncoding` on (x, y, z, t): three spatial planes
(xy, xz, yz) and three space-time planes (xt, yt, zt), combined by a Hadamard product. Scales
multiply the spatial resolution only (time keeps its resolution, about half the frame count) and
their features are concatenated, as in 4D-GS.

Coordinates: positions are normalised from the scene's axis-aligned box and times from [0, 1],
both to [-1, 1], in :func:`normalize_xyzt` and nowhere else. A 4D-GS bug fed times in [0, 1] to a
[-1, 1] sampler and so used half of the time axis; the test suite checks that ours uses all of it.
"""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import torch
from jaxtyping import Float
from nerfstudio.field_components.encodings import KPlanesEncoding
from torch import Tensor, nn

SPATIAL_PLANES: Tuple[int, ...] = (0, 1, 3)
"""Indices of the xy, xz, yz planes in ``KPlanesEncoding.plane_coefs`` for 4D input."""
TIME_PLANES: Tuple[int, ...] = (2, 4, 5)
"""Indices of the xt, yt, zt planes; their time axis is dimension -2 of each plane tensor."""


def normalize_xyzt(
    positions: Float[Tensor, "*bs 3"], times: Float[Tensor, "*bs 1"], aabb: Float[Tensor, "2 3"]
) -> Float[Tensor, "*bs 4"]:
    """Map positions inside ``aabb`` and times in [0, 1] to [-1, 1]^4.

    Positions outside the box are clamped to its border, so a Gaussian that drifts away reads the
    edge features rather than garbage.
    """
    low, high = aabb[0], aabb[1]
    xyz = (positions - low) / (high - low) * 2.0 - 1.0
    t = times * 2.0 - 1.0
    return torch.cat([xyz, t], dim=-1).clamp(-1.0, 1.0)


def plane_total_variation(plane: Float[Tensor, "channels height width"]) -> Float[Tensor, ""]:
    """Mean squared difference between neighbouring texels along both plane axes."""
    d_height = plane[:, 1:, :] - plane[:, :-1, :]
    d_width = plane[:, :, 1:] - plane[:, :, :-1]
    return d_height.square().mean() + d_width.square().mean()


def time_smoothness(plane: Float[Tensor, "channels time space"]) -> Float[Tensor, ""]:
    """Mean squared second difference along the time axis (penalises acceleration, not motion).

    Zero for planes with fewer than three time texels, which have no second difference.
    """
    if plane.shape[1] < 3:
        return plane.new_zeros(())
    first = plane[:, 1:, :] - plane[:, :-1, :]
    second = first[:, 1:, :] - first[:, :-1, :]
    return second.square().mean()


def time_planes_l1(plane: Float[Tensor, "channels time space"]) -> Float[Tensor, ""]:
    """Mean absolute distance of a space-time plane from 1, the product's identity (no motion)."""
    return (1.0 - plane).abs().mean()


class HexPlaneField(nn.Module):
    """Multi-resolution six-plane feature grid over (x, y, z, t).

    Args:
        aabb: scene box ``[2, 3]`` (min, max) used to normalise positions.
        spatial_resolution: base resolution of the x, y and z axes.
        time_resolution: resolution of the time axis (about half the number of frames).
        multires: multipliers of the spatial resolution, one grid per entry.
        feature_dim: channels per plane; the output has ``feature_dim * len(multires)`` channels.
    """

    def __init__(
        self,
        aabb: Float[Tensor, "2 3"],
        spatial_resolution: int = 64,
        time_resolution: int = 25,
        multires: Sequence[int] = (1, 2),
        feature_dim: int = 32,
    ) -> None:
        super().__init__()
        if aabb.shape != (2, 3):
            raise ValueError(f"aabb must have shape (2, 3), got {tuple(aabb.shape)}")
        if not bool((aabb[1] > aabb[0]).all()):
            raise ValueError(f"aabb max must exceed min on every axis, got {aabb.tolist()}")
        self.register_buffer("aabb", aabb.detach().clone().float())
        self.grids = nn.ModuleList(
            KPlanesEncoding(
                resolution=(spatial_resolution * m,) * 3 + (time_resolution,),
                num_components=feature_dim,
                reduce="product",
            )
            for m in multires
        )
        self.feature_dim = feature_dim

    def get_out_dim(self) -> int:
        """Number of output channels."""
        return self.feature_dim * len(self.grids)

    def forward(self, positions: Float[Tensor, "n 3"], times: Float[Tensor, "n 1"]) -> Float[Tensor, "n features"]:
        """Features of canonical positions at the given times (in [0, 1])."""
        if positions.ndim != 2 or positions.shape[-1] != 3:
            raise ValueError(f"positions must have shape (n, 3), got {tuple(positions.shape)}")
        if times.shape != (positions.shape[0], 1):
            raise ValueError(f"times must have shape ({positions.shape[0]}, 1), got {tuple(times.shape)}")
        coords = normalize_xyzt(positions, times, self.aabb)
        return torch.cat([grid(coords) for grid in self.grids], dim=-1)

    def regularisers(self) -> Dict[str, Float[Tensor, ""]]:
        """The 4D-GS grid regularisers summed over scales (unweighted)."""
        plane_tv = time_smooth = time_l1 = 0.0
        for grid in self.grids:
            planes = grid.plane_coefs
            plane_tv = plane_tv + sum(plane_total_variation(planes[i]) for i in SPATIAL_PLANES)
            time_smooth = time_smooth + sum(time_smoothness(planes[i]) for i in TIME_PLANES)
            time_l1 = time_l1 + sum(time_planes_l1(planes[i]) for i in TIME_PLANES)
        return {"plane_tv": plane_tv, "time_smoothness": time_smooth, "time_l1": time_l1}
