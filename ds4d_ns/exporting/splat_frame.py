"""The Gaussians of one time step as float32 arrays, in the 3D Gaussian Splatting file conventions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch
from jaxtyping import Bool, Float

SH_C0 = 0.28209479177387814
"""Degree-0 spherical-harmonic basis constant: colour = 0.5 + SH_C0 * f_dc (the 3DGS convention)."""


@dataclass(frozen=True)
class SplatFrame:
    """Gaussians of one frame, as splat files store them (every array float32, one row per Gaussian)."""

    means: Float[np.ndarray, "n 3"]
    """Centres in the run's world coordinates."""
    sh_dc: Float[np.ndarray, "n 3"]
    """Degree-0 spherical-harmonic coefficients (RGB)."""
    sh_rest: Float[np.ndarray, "n k 3"]
    """Higher-degree coefficients, coefficient-major: ``[N, (degree + 1)^2 - 1, RGB]``."""
    opacity_logits: Float[np.ndarray, " n"]
    """Opacity before the sigmoid."""
    log_scales: Float[np.ndarray, "n 3"]
    """Per-axis scales before the exponential."""
    quats_wxyz: Float[np.ndarray, "n 4"]
    """Unit rotation quaternions, scalar first."""

    def __post_init__(self) -> None:
        n = self.means.shape[0]
        expected = {
            "means": (n, 3),
            "sh_dc": (n, 3),
            "opacity_logits": (n,),
            "log_scales": (n, 3),
            "quats_wxyz": (n, 4),
        }
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {getattr(self, name).shape}")
        if self.sh_rest.ndim != 3 or self.sh_rest.shape[0] != n or self.sh_rest.shape[2] != 3:
            raise ValueError(f"sh_rest must have shape ({n}, K, 3), got {self.sh_rest.shape}")
        for name in (*expected, "sh_rest"):
            if getattr(self, name).dtype != np.float32:
                raise ValueError(f"{name} must be float32, got {getattr(self, name).dtype}")

    @property
    def num_gaussians(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        """Spherical-harmonic degree: 0 with no ``sh_rest`` coefficients, 1 with 3, 2 with 8, 3 with 15."""
        degree = int(round(np.sqrt(self.sh_rest.shape[1] + 1))) - 1
        if (degree + 1) ** 2 - 1 != self.sh_rest.shape[1]:
            raise ValueError(f"{self.sh_rest.shape[1]} higher-order SH coefficients is no whole SH degree")
        return degree

    def bounds(self) -> Tuple[Float[np.ndarray, " 3"], Float[np.ndarray, " 3"]]:
        """Axis-aligned box of the Gaussian centres ``(min, max)`` (zeros for an empty frame)."""
        if self.num_gaussians == 0:
            return np.zeros(3, np.float32), np.zeros(3, np.float32)
        return self.means.min(axis=0), self.means.max(axis=0)

    def select(self, keep: Bool[np.ndarray, " n"]) -> "SplatFrame":
        """The frame with only the Gaussians where ``keep`` is true, in their order."""
        return SplatFrame(
            self.means[keep],
            self.sh_dc[keep],
            self.sh_rest[keep],
            self.opacity_logits[keep],
            self.log_scales[keep],
            self.quats_wxyz[keep],
        )

    def finite_rows(self) -> Bool[np.ndarray, " n"]:
        """Gaussians whose every value is finite (a diverged one would break a viewer's sort)."""
        arrays = (self.means, self.sh_dc, self.sh_rest, self.opacity_logits, self.log_scales, self.quats_wxyz)
        return np.all(np.stack([np.isfinite(a.reshape(self.num_gaussians, -1)).all(axis=1) for a in arrays]), axis=0)


def logit_colours_to_sh_dc(logits: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, "n 3"]:
    """Degree-0 SH coefficients that render the colours ``sigmoid(logits)``.

    Splatfacto stores logit colours instead of SH coefficients when ``sh_degree`` is 0; splat
    viewers always read ``f_dc`` as SH, so such a model is converted before it is written.
    """
    colours = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    return ((colours - 0.5) / SH_C0).astype(np.float32)


def splat_frame_from_model(model, time: float) -> SplatFrame:
    """The Gaussians of a ds4d ``model`` deformed to ``time`` (in [0, 1]), with unit quaternions.

    Colours and opacities are not deformed by time; positions, rotations and scales come from
    ``model.gaussians_at(time)`` (the exact deformation, not the playback cache's blend).
    """

    def array(tensor: torch.Tensor) -> np.ndarray:
        return tensor.detach().to(device="cpu", dtype=torch.float32).numpy()

    with torch.no_grad():
        geometry = model.gaussians_at(time)
        num = geometry.means.shape[0]
        sh_dc = array(model.shs_0.reshape(num, 3))
        if model.config.sh_degree == 0:
            sh_dc = logit_colours_to_sh_dc(sh_dc)
        return SplatFrame(
            means=array(geometry.means),
            sh_dc=sh_dc,
            sh_rest=array(model.shs_rest),  # [N, K, 3], K = 0 at SH degree 0
            opacity_logits=array(model.opacities.reshape(num)),
            log_scales=array(geometry.scales),
            quats_wxyz=array(torch.nn.functional.normalize(geometry.quats, dim=-1)),
        )
