"""Densification that grows the top fraction of Gaussians by accumulated screen-space gradient.

DS4D (after STAG4D) densifies the top 2.5 % of Gaussians by accumulated gradient instead of those
above a fixed threshold, which keeps growth in proportion to the model whatever the image size
or loss scale. gsplat's :class:`DefaultStrategy` does everything else (split/duplicate choice,
pruning, opacity reset); only the threshold changes, computed at each refinement.

The running statistics of every step are gathered without reading anything back: gsplat selects the
Gaussians each camera saw with ``torch.where``, whose output size the host must wait for (three waits
a step); here the same sums are made over the dense ``[C, N]`` layout with the unseen entries zeroed.
The largest screen size is a true maximum over the cameras; gsplat's indexed write keeps one camera's
value where several saw a Gaussian.
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
    def _update_state(self, params, state: Dict[str, Any], info: Dict[str, Any], packed: bool = False) -> None:
        if packed:  # the rasteriser is always called unpacked (ds4d_ns.rendering.rasterize); keep gsplat's path
            return DefaultStrategy._update_state(self, params, state, info, packed=packed)
        gradient = info[self.key_for_gradient]
        grads = (gradient.absgrad if self.absgrad else gradient.grad).clone()  # [C, N, 2]
        # screen-space normalisation to [-1, 1], as gsplat's
        grads[..., 0] *= info["width"] / 2.0 * info["n_cameras"]
        grads[..., 1] *= info["height"] / 2.0 * info["n_cameras"]
        seen = info["radii"] > 0.0  # [C, N]
        count = len(params["means"])
        for key in ("grad2d", "count") + (("radii",) if self.refine_scale2d_stop_iter > 0 else ()):
            if state[key] is None:
                state[key] = torch.zeros(count, device=grads.device)
        state["grad2d"] += torch.where(seen, grads.norm(dim=-1), 0.0).sum(dim=0)
        state["count"] += seen.sum(dim=0)
        if self.refine_scale2d_stop_iter > 0:
            largest = torch.where(seen, info["radii"] / float(max(info["width"], info["height"])), 0.0).amax(dim=0)
            torch.maximum(state["radii"], largest, out=state["radii"])

    @torch.no_grad()
    def _grow_gs(self, params, optimizers, state: Dict[str, Any], step: int) -> Tuple[int, int]:
        mean_grads = state["grad2d"] / state["count"].clamp_min(1)
        threshold = top_fraction_threshold(mean_grads, state["count"], self.grow_top_fraction, self.grow_grad2d)
        # ``grow_grad2d`` acts as the floor, so a converged model stops growing. A copy with the
        # threshold set (not ``dataclasses.replace``, whose field check cannot see untyped gsplat's fields).
        thresholded = copy.copy(self)
        thresholded.grow_grad2d = threshold
        return DefaultStrategy._grow_gs(thresholded, params, optimizers, state, step)
