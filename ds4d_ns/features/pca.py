"""Principal-component reduction of feature channels, fitted once on a dataset's features."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor


@dataclass
class PcaBasis:
    """Mean and leading principal directions of a set of feature vectors."""

    mean: Float[Tensor, " channels"]
    components: Float[Tensor, "channels k"]
    """Orthonormal columns, by decreasing variance."""
    scale: float
    """Standard deviation of the projected values, so :meth:`project` returns unit-variance features."""

    def project(self, features: Float[Tensor, "*batch channels"]) -> Float[Tensor, "*batch k"]:
        """Coordinates of ``features`` in the basis, divided by their overall standard deviation."""
        centred = features.to(self.mean.dtype) - self.mean
        return (centred @ self.components) / self.scale


def fit_pca(samples: Float[Tensor, "n channels"], k: int, max_samples: int = 200_000, seed: int = 0) -> PcaBasis:
    """Fit the ``k`` leading principal components of ``samples`` (a random subset if there are many)."""
    if samples.ndim != 2:
        raise ValueError(f"samples must be [n, channels], got shape {tuple(samples.shape)}")
    if not 0 < k <= samples.shape[1]:
        raise ValueError(f"k must be in [1, {samples.shape[1]}], got {k}")
    if samples.shape[0] > max_samples:
        generator = torch.Generator(device="cpu").manual_seed(seed)
        keep = torch.randperm(samples.shape[0], generator=generator)[:max_samples].to(samples.device)
        samples = samples[keep]
    samples = samples.float()
    mean = samples.mean(dim=0)
    centred = samples - mean
    covariance = (centred.T @ centred).double() / max(samples.shape[0] - 1, 1)
    _, eigenvectors = torch.linalg.eigh(covariance)  # ascending eigenvalues
    components = eigenvectors.flip(-1)[:, :k].float()
    projected_std = float((centred @ components).std())
    return PcaBasis(mean=mean, components=components, scale=max(projected_std, 1e-8))
