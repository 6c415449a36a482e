"""Densification that grows the top fraction of Gaussians by accumulated screen-space gradient.

DS4D (after STAG4D) densifies the top 2.5 % of Gaussians by accumulated gradient instead of those
above a fixed threshold, which keeps growth in proportion to the model whatever the image size
or loss scale. gsplat's :class:`DefaultStrategy` does everything else (split/duplicate choice,
pruning, opacity reset); only the threshold changes, computed at each refinement.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Dict, Tuple

import torch
from gsplat.strategy import DefaultStrategy


def top_fraction_threshold(mean_grads: torch.Tensor, counts: torch.Tensor, fraction: float, floor: float) -> float:
    """Gradient above which a Gaussian is in the top ``fraction`` of those seen, at least ``floor``."""
    seen = mean_grads[counts > 0]
    if seen.numel() == 0 or fraction <= 0:
        return float("inf")
    return max(floor, float(torch.quantile(seen.float(), 1.0 - fraction)))


@dataclass
class TopFractionStrategy(DefaultStrategy):
    """gsplat's default strategy with a per-refinement quantile threshold for growth."""

    grow_top_fraction: float = 0.025
    """Fraction of the Gaussians (among those seen since the last refinement) grown each time."""

    @classmethod
    def from_model_config(cls, config: Any, num_train_data: int) -> "TopFractionStrategy":
        """The strategy splatfacto builds from its model config (``SplatfactoModelConfig``'s densification
        fields, the same names), growing the top ``config.densify_top_fraction`` instead of a fixed threshold."""
        return cls(
            prune_opa=config.cull_alpha_thresh,
            grow_grad2d=config.densify_grad_thresh,
            grow_scale3d=config.densify_size_thresh,
            grow_scale2d=config.split_screen_size,
            prune_scale3d=config.cull_scale_thresh,
            prune_scale2d=config.cull_screen_size,
            refine_scale2d_stop_iter=config.stop_screen_size_at,
            refine_start_iter=config.warmup_length,
            refine_stop_iter=config.stop_split_at,
            reset_every=config.reset_alpha_every * config.refine_every,
            refine_every=config.refine_every,
            pause_refine_after_reset=num_train_data + config.refine_every,
            absgrad=config.use_absgrad,
            revised_opacity=False,
            verbose=False,
            grow_top_fraction=config.densify_top_fraction,
        )

    @torch.no_grad()
    def _grow_gs(self, params, optimizers, state: Dict[str, Any], step: int) -> Tuple[int, int]:
        mean_grads = state["grad2d"] / state["count"].clamp_min(1)
        threshold = top_fraction_threshold(mean_grads, state["count"], self.grow_top_fraction, self.grow_grad2d)
        # ``grow_grad2d`` acts as the floor, so a converged model stops growing. A copy with the
        # threshold set (not ``dataclasses.replace``, whose field check cannot see untyped gsplat's fields).
        thresholded = copy.copy(self)
        thresholded.grow_grad2d = threshold
        return DefaultStrategy._grow_gs(thresholded, params, optimizers, state, step)
