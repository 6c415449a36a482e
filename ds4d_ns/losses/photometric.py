"""The photometric term of every training step: L1 and SSIM per view, weighted by what the view is.

The input video is the truth and the pseudo views are a generator's guesses, so each view's loss is
scaled by its role's weight (``input_rgb_weight``, ``pseudo_rgb_weight``); the moving region can be
weighted up inside each view (:mod:`ds4d_ns.losses.motion`).
"""

from __future__ import annotations

from typing import Optional

import torch
from jaxtyping import Bool, Float, Int
from pytorch_msssim import ssim
from torch import Tensor

from ds4d_ns.data.dataset_format import ROLE_CODES
from ds4d_ns.losses.motion import weighted_l1
from ds4d_ns.losses.structural import ssim_window


def role_weights(roles: Int[Tensor, " views"], input_weight: float, pseudo_weight: float) -> Float[Tensor, " views"]:
    """Each view's weight: ``input_weight`` for the input camera, ``pseudo_weight`` for any other."""
    # Python numbers, not tensors made from them: copying those to the GPU would wait for it
    return torch.where(roles == ROLE_CODES["input"], input_weight, pseudo_weight)


def photometric_loss(
    pred: Float[Tensor, "views h w 3"],
    target: Float[Tensor, "views h w 3"],
    view_weights: Float[Tensor, " views"],
    ssim_lambda: float,
    motion_mask: Optional[Bool[Tensor, "views h w"]] = None,
    motion_weight: float = 0.0,
) -> Float[Tensor, ""]:
    """Mean over views of ``weight * ((1 - ssim_lambda) * L1 + ssim_lambda * (1 - SSIM))`` (splatfacto's mix)."""
    l1 = weighted_l1(pred, target, motion_mask, motion_weight)
    window = ssim_window(3, pred.device, pred.dtype)
    structural = 1.0 - ssim(
        pred.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2), data_range=1.0, size_average=False, win=window
    )
    return (view_weights * ((1.0 - ssim_lambda) * l1 + ssim_lambda * structural)).mean()
