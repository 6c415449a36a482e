"""HexPlane: a multi-resolution 4D feature grid factorised into six planes (4D-GS, K-Planes).

Each scale holds the planes of Nerfstudio's :class:`KPlanesEncoding` on (x, y, z, t): three
spatial planes (xy, xz, yz) and three space-time planes (xt, yt, zt), combined by a Hadamard
product. Scales multiply the spatial resolution only (time keeps its resolution, about half the
frame count) and their features are concatenated, as in 4D-GS.

The planes are stored as ``KPlanesEncoding`` parameters (checkpoint names and initialisation are
Nerfstudio's) but sampled here: the three spatial planes share a shape, as do the three time planes,
so each group is one batched ``grid_sample``, and every plane's coordinates come from one gather.
Nerfstudio's forward samples the six planes one by one, each with an index of a Python list, which
copies the index to the GPU and waits for it: twelve host synchronisations and some sixty more small
kernels per training step at two scales (``benchmarks/profile_step.py``). The result is the same
product (``tests/test_fields.py`` checks it against ``KPlanesEncoding.forward``).

Coordinates: positions are normalised from the scene's axis-aligned box and times from [0, 1],
both to [-1, 1], in :func:`normalize_xyzt` and nowhere else. A 4D-GS bug fed times in [0, 1] to a
[-1, 1] sampler and so used half of the time axis; the test suite checks that ours uses all of it.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple, cast

import torch
import torch.nn.functional as F
from jaxtyping import Float
from nerfstudio.field_components.encodings import KPlanesEncoding
from torch import Tensor, nn

SPATIAL_PLANES: Tuple[int, ...] = (0, 1, 3)
"""Indices of the xy, xz, yz planes in ``KPlanesEncoding.plane_coefs`` for 4D input."""
TIME_PLANES: Tuple[int, ...] = (2, 4, 5)
"""Indices of the xt, yt, zt planes; their time axis is dimension -2 of each plane tensor."""
PLANE_AXES: Tuple[Tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
"""(x-axis, y-axis) of the ``grid_sample`` coordinates of SPATIAL_PLANES then TIME_PLANES, in that
order (``KPlanesEncoding`` stores plane (i, j) as ``[channels, resolution[j], resolution[i]]``)."""


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


def plane_total_variation(plane: Float[Tensor, "*planes channels height width"]) -> Float[Tensor, "*planes"]:
    """Mean squared difference between neighbouring texels along both plane axes (per plane)."""
    d_height = plane[..., 1:, :] - plane[..., :-1, :]
    d_width = plane[..., :, 1:] - plane[..., :, :-1]
    return d_height.square().mean(dim=(-3, -2, -1)) + d_width.square().mean(dim=(-3, -2, -1))


def time_smoothness(plane: Float[Tensor, "*planes channels time space"]) -> Float[Tensor, "*planes"]:
    """Mean squared second difference along the time axis (penalises acceleration, not motion).

    Zero for planes with fewer than three time texels, which have no second difference.
    """
    if plane.shape[-2] < 3:
        return plane.new_zeros(plane.shape[:-3])
    first = plane[..., 1:, :] - plane[..., :-1, :]
    second = first[..., 1:, :] - first[..., :-1, :]
    return second.square().mean(dim=(-3, -2, -1))


def time_planes_l1(plane: Float[Tensor, "*planes channels time space"]) -> Float[Tensor, "*planes"]:
    """Mean absolute distance of a space-time plane from 1, the product's identity (no motion)."""
    return (1.0 - plane).abs().mean(dim=(-3, -2, -1))


def sample_plane_product(
    spatial_planes: Float[Tensor, "3 channels res res"],
    time_planes: Float[Tensor, "3 channels time res"],
    plane_coords: Float[Tensor, "6 n 2"],
) -> Float[Tensor, "n channels"]:
    """Product of the six planes' bilinear samples (border padding, corners aligned, as K-Planes).

    ``plane_coords`` are the points' coordinates in [-1, 1] on each plane, in ``PLANE_AXES`` order."""
    spatial = F.grid_sample(spatial_planes, plane_coords[:3, None], align_corners=True, padding_mode="border")
    temporal = F.grid_sample(time_planes, plane_coords[3:, None], align_corners=True, padding_mode="border")
    xy, xz, yz = spatial[:, :, 0].unbind(0)  # each [channels, n]
    xt, yt, zt = temporal[:, :, 0].unbind(0)
    return (xy * xz * yz * xt * yt * zt).T


class HexPlaneField(nn.Module):
    """Multi-resolution six-plane feature grid over (x, y, z, t).

    Args:
        aabb: scene box ``[2, 3]`` (min, max) used to normalise positions.
        spatial_resolution: base resolution of the x, y and z axes.
        time_resolution: resolution of the time axis (about half the number of frames).
        multires: multipliers of the spatial resolution, one grid per entry.
        feature_dim: channels per plane; the output has ``feature_dim * len(multires)`` channels.
    """

    # buffers registered in ``__init__``, declared for type checkers
    aabb: Tensor
    plane_axes: Tensor

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
        # not saved: checkpoints keep Nerfstudio's parameter names only
        self.register_buffer("plane_axes", torch.tensor(PLANE_AXES), persistent=False)

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
        plane_coords = coords[:, self.plane_axes].transpose(0, 1)  # [6, n, 2], one gather for all planes
        return torch.cat([sample_plane_product(*self._stacked_planes(s), plane_coords) for s in self._scales()], -1)

    def _scales(self) -> List[KPlanesEncoding]:
        """The six-plane grid of each resolution scale (``grids`` as its real type: ``ModuleList`` is untyped)."""
        return [cast(KPlanesEncoding, scale) for scale in self.grids]

    @staticmethod
    def _stacked_planes(scale: KPlanesEncoding) -> Tuple[Tensor, Tensor]:
        planes = scale.plane_coefs
        return torch.stack([planes[i] for i in SPATIAL_PLANES]), torch.stack([planes[i] for i in TIME_PLANES])

    def regularisers(self) -> Dict[str, Float[Tensor, ""]]:
        """The 4D-GS grid regularisers summed over scales (unweighted)."""
        plane_tv, time_smooth, time_l1 = [], [], []
        for scale in self._scales():
            spatial, temporal = self._stacked_planes(scale)  # each group's planes share a shape
            plane_tv.append(plane_total_variation(spatial).sum())
            time_smooth.append(time_smoothness(temporal).sum())
            time_l1.append(time_planes_l1(temporal).sum())
        return {
            "plane_tv": torch.stack(plane_tv).sum(),
            "time_smoothness": torch.stack(time_smooth).sum(),
            "time_l1": torch.stack(time_l1).sum(),
        }
