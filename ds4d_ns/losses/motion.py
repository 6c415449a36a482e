"""Photometric L1 with the moving region weighted up (issue 12: motion as sharp as the static parts).

Most pixels of an object clip stand still, so a plain mean over the image gives the moving parts a
small share of the gradient however badly they are fitted. Weighting the moving region (see
``ds4d_ns.evaluation.motion_region``) by ``1 + weight`` raises their share without lowering anyone
else's: the static pixels keep the gradient they had.
"""

from __future__ import annotations

from typing import Optional

from jaxtyping import Bool, Float
from torch import Tensor


def weighted_l1(
    pred: Float[Tensor, "views h w 3"],
    target: Float[Tensor, "views h w 3"],
    motion_mask: Optional[Bool[Tensor, "views h w"]] = None,
    motion_weight: float = 0.0,
) -> Float[Tensor, " views"]:
    """Mean absolute error of each view, moving pixels counted ``1 + motion_weight`` times.

    With no mask or a zero weight this is the plain per-view mean L1."""
    error = (pred - target).abs()
    if motion_mask is None or motion_weight == 0.0:
        return error.mean(dim=(1, 2, 3))
    weight = 1.0 + motion_weight * motion_mask.to(error.dtype)[..., None]
    return (weight * error).mean(dim=(1, 2, 3))
