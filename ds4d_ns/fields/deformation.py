"""Deformation of canonical Gaussians over time: a HexPlane field read by a small MLP.

The MLP reads the HexPlane feature of each canonical centre at time t, optionally concatenated
with extra per-Gaussian features (the seam where DS4D's fused frame features plug in), and
predicts offsets of position, rotation (quaternion, added then renormalised by the rasteriser)
and log-scale. The last layer of every head is zero-initialised, so a new field is exactly the
identity and training starts from the canonical (static) fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from jaxtyping import Float
from torch import Tensor, nn

from ds4d_ns.fields.hexplane import HexPlaneField


@dataclass
class DeformedGaussians:
    """Gaussian geometry at one time step."""

    means: Float[Tensor, "n 3"]
    quats: Float[Tensor, "n 4"]
    scales: Float[Tensor, "n 3"]
    """Log-scales, as stored by splatfacto."""


def _head(width: int, out_dim: int) -> nn.Sequential:
    head = nn.Sequential(nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, out_dim))
    last = head[-1]
    assert isinstance(last, nn.Linear)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return head


class DeformationField(nn.Module):
    """HexPlane + deformation MLP with zero-initialised position, rotation and scale heads.

    Args:
        aabb: scene box ``[2, 3]`` normalising canonical positions for the HexPlane.
        spatial_resolution, time_resolution, multires, plane_features: HexPlane sizes.
        mlp_width: hidden width of the trunk and heads.
        mlp_depth: number of hidden layers of the shared trunk.
        extra_feature_dim: width of optional per-Gaussian features concatenated to the HexPlane
            feature (0 = none).
    """

    def __init__(
        self,
        aabb: Float[Tensor, "2 3"],
        spatial_resolution: int = 64,
        time_resolution: int = 25,
        multires: Sequence[int] = (1, 2),
        plane_features: int = 32,
        mlp_width: int = 64,
        mlp_depth: int = 1,
        extra_feature_dim: int = 0,
    ) -> None:
        super().__init__()
        self.hexplane = HexPlaneField(aabb, spatial_resolution, time_resolution, multires, plane_features)
        self.extra_feature_dim = extra_feature_dim
        layers: list[nn.Module] = [nn.Linear(self.hexplane.get_out_dim() + extra_feature_dim, mlp_width)]
        for _ in range(mlp_depth - 1):
            layers += [nn.ReLU(), nn.Linear(mlp_width, mlp_width)]
        self.trunk = nn.Sequential(*layers)
        self.position_head = _head(mlp_width, 3)
        self.rotation_head = _head(mlp_width, 4)
        self.scale_head = _head(mlp_width, 3)

    def forward(
        self,
        means: Float[Tensor, "n 3"],
        quats: Float[Tensor, "n 4"],
        scales: Float[Tensor, "n 3"],
        time: float | Float[Tensor, ""],
        extra_features: Optional[Float[Tensor, "n extra"]] = None,
    ) -> DeformedGaussians:
        """Deform canonical Gaussians to ``time`` (in [0, 1]), one time for all of them."""
        if extra_features is None and self.extra_feature_dim > 0:
            raise ValueError(f"this field expects extra features of width {self.extra_feature_dim}, got none")
        if extra_features is not None and extra_features.shape != (means.shape[0], self.extra_feature_dim):
            raise ValueError(
                f"extra_features must have shape ({means.shape[0]}, {self.extra_feature_dim}), "
                f"got {tuple(extra_features.shape)}"
            )
        if isinstance(time, Tensor):
            times = time.to(means).reshape(1, 1).expand(means.shape[0], 1)
        else:  # filled on the device: a Python number copied there would make the host wait for the GPU
            times = means.new_full((means.shape[0], 1), float(time))
        features = self.hexplane(means, times)
        if extra_features is not None:
            features = torch.cat([features, extra_features], dim=-1)
        hidden = self.trunk(features)
        return DeformedGaussians(
            means=means + self.position_head(hidden),
            quats=quats + self.rotation_head(hidden),
            scales=scales + self.scale_head(hidden),
        )
