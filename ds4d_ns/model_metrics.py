"""What the ds4d model reports besides its losses: per-step training metrics and per-image evaluation metrics.

Training (``get_metrics_dict``): PSNR of the step's views and, where the datamanager marks a moving
region, its PSNR (``psnr_moving``, also per frame as ``psnr_moving_frame/NNN``), so tensorboard shows
how well the motion is learnt and not only the static pixels that dominate the image. Everything
stays on the device: no host sync per step.

Evaluation (``get_image_metrics_and_images``, used by ``ns-eval`` and the trainer's eval steps):
PSNR, SSIM, the moving region's PSNR, and LPIPS (VGG) when its weights can be loaded.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
from jaxtyping import Float
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

from ds4d_ns.evaluation.motion_region import masked_psnr


def step_metrics(
    pred: Float[Tensor, "views h w 3"], target: Float[Tensor, "views h w 3"], batch: Dict[str, Tensor]
) -> Dict[str, Tensor]:
    """PSNR of a training step's views, and of their moving region when the batch marks one."""
    mse = (pred - target).square().mean()
    metrics = {"psnr": -10.0 * torch.log10(mse.clamp_min(1e-10))}
    if "motion_mask" in batch:
        moving = masked_psnr(pred, target, batch["motion_mask"].to(pred.device))
        metrics["psnr_moving"] = moving
        if "frame_index" in batch:
            metrics[f"psnr_moving_frame/{int(batch['frame_index']):03d}"] = moving
    return metrics


def load_lpips_metric(device: torch.device | str) -> Optional[torch.nn.Module]:
    """torchmetrics' LPIPS (VGG), or None, said once in the log, when its backbone weights cannot be loaded."""
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    try:
        return LearnedPerceptualImagePatchSimilarity(net_type="vgg", normalize=True).to(device)
    except Exception as err:  # any failure to fetch or read the backbone weights
        CONSOLE.log(
            "[yellow]LPIPS not reported: the torchvision VGG16 weights it needs could not be loaded "
            f"({type(err).__name__}: {err}). Run once with internet access to cache them, "
            "or set --pipeline.model.eval-lpips False to silence this."
        )
        return None


def image_metrics(
    pred: Float[Tensor, "h w 3"],
    target: Float[Tensor, "h w 3"],
    batch: Dict[str, Tensor],
    psnr: torch.nn.Module,
    ssim: torch.nn.Module,
    lpips: Optional[torch.nn.Module],
) -> Dict[str, float]:
    """PSNR, SSIM, the moving region's PSNR (NaN where the view has none) and LPIPS when given, of one image."""
    target_nchw, pred_nchw = target.permute(2, 0, 1)[None], pred.permute(2, 0, 1)[None]
    metrics = {"psnr": float(psnr(target_nchw, pred_nchw).item()), "ssim": float(ssim(target_nchw, pred_nchw))}
    if "motion_mask" in batch:  # the view's moving region (see the datamanager)
        metrics["psnr_moving"] = float(masked_psnr(pred, target, batch["motion_mask"].to(pred.device)))
    if lpips is not None:
        metrics["lpips"] = float(lpips(target_nchw, pred_nchw))
    return metrics
