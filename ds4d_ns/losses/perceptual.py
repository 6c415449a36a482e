"""LPIPS (VGG) between renders and pseudo views, as the DS4D supplement's L_lpips.

The lpips package ships its small linear heads; the VGG16 backbone comes from torchvision's
ImageNet weights, downloaded on first use and cached by torch (``~/.cache/torch/hub/checkpoints``).
Where they cannot be loaded, building the loss fails with a message naming them and the switch
that turns the loss off. ``backbone="random-init"`` gives the same network with random VGG weights,
for tests only.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from ds4d_ns.errors import WeightsUnavailable
from ds4d_ns.options import WeightsMode

VGG16_WEIGHTS_NAME = "torchvision VGG16 ImageNet weights (vgg16-397923af.pth)"


class PerceptualWeightsUnavailable(WeightsUnavailable):
    """The LPIPS backbone weights could not be loaded."""


def build_lpips_vgg(backbone: WeightsMode = "pretrained") -> torch.nn.Module:
    """Frozen LPIPS with a VGG backbone, inputs in [-1, 1].

    Raises:
        PerceptualWeightsUnavailable: the VGG16 weights are neither cached nor downloadable.
    """
    import lpips

    try:
        module = lpips.LPIPS(net="vgg", pnet_rand=backbone == "random-init", verbose=False)
    except (OSError, RuntimeError) as err:  # URLError is an OSError; a truncated file is a RuntimeError
        raise PerceptualWeightsUnavailable(
            f"The LPIPS loss needs the {VGG16_WEIGHTS_NAME}, which could not be loaded "
            f"({type(err).__name__}: {err}). Run once with internet access (torch caches them in "
            "~/.cache/torch/hub/checkpoints), or turn the loss off: --pipeline.model.lpips-loss-weight 0."
        ) from err
    return module.eval().requires_grad_(False)


def lpips_distance(
    network: torch.nn.Module, prediction: Float[Tensor, "b h w 3"], target: Float[Tensor, "b h w 3"]
) -> Float[Tensor, " b"]:
    """LPIPS per image of images in [0, 1] (channels last)."""
    pred = prediction.permute(0, 3, 1, 2) * 2.0 - 1.0
    gt = target.permute(0, 3, 1, 2) * 2.0 - 1.0
    return network(pred, gt).view(-1)
