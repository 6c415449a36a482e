"""The moving region of a view and the PSNR measured on it (issue 12: motion made visible).

A whole-image PSNR of a clip whose object mostly stands still is dominated by the static pixels:
a model can fit them at 36 dB and the moving parts at 24 dB and still look good in the number. The
moving region of one camera (one view over the clip) is every pixel whose ground truth differs
from that pixel's temporal median by more than a threshold in some frame, in any channel, with the
images composited over white (as the evaluation protocol does), dilated by a few pixels so the
edges of a moving part count too. PSNR is then taken over those pixels only.

The region is fixed per view (not per frame), so an error that leaves a part behind where it was
counts as well as one that misses where it went.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

MOTION_THRESHOLD = 0.05
"""Change from the temporal median (0-1 colour units, any channel) that counts as motion: well above
8-bit quantisation and JPEG noise, well below the contrast of a moving part."""
MOTION_DILATION_PX = 2
"""Pixels the region is grown by, so the border of a moving part is inside it."""


def composite_on_white(image: Float[Tensor, "*batch h w c"]) -> Float[Tensor, "*batch h w 3"]:
    """RGB over white for RGBA images (RGB images are returned as they are), values in [0, 1]."""
    image = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()  # uint8 caches hold 0-255
    if image.shape[-1] == 4:
        return image[..., :3] * image[..., 3:] + (1.0 - image[..., 3:])
    return image[..., :3]


def moving_region(
    frames: Float[Tensor, "t h w 3"],
    threshold: float = MOTION_THRESHOLD,
    dilate_px: int = MOTION_DILATION_PX,
) -> Bool[Tensor, "h w"]:
    """Pixels of one view whose colour leaves its temporal median by more than ``threshold``."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape (t, h, w, 3), got {tuple(frames.shape)}")
    median = frames.median(dim=0).values
    moving = ((frames - median).abs().amax(dim=-1) > threshold).any(dim=0)
    if dilate_px <= 0:
        return moving
    size = 2 * dilate_px + 1
    grown = F.max_pool2d(moving.float()[None, None], size, stride=1, padding=dilate_px)
    return grown[0, 0] > 0


def masked_psnr(
    pred: Float[Tensor, "*batch h w 3"],
    target: Float[Tensor, "*batch h w 3"],
    mask: Bool[Tensor, "*batch h w"],
) -> Float[Tensor, ""]:
    """PSNR (data range 1) over the masked pixels of all images together; NaN when the mask is empty.

    Computed on the device without reading anything back, so it costs the training step no host sync."""
    weight = mask.to(pred.dtype)[..., None]
    squared = ((pred - target).square() * weight).sum()
    count = weight.sum() * pred.shape[-1]
    mse = squared / count  # 0/0 = NaN for an empty mask
    return -10.0 * torch.log10(mse.clamp_min(1e-10))


def moving_regions_by_view(images: Sequence[Tensor], view_of_image: Sequence[int]) -> Dict[int, Bool[Tensor, "h w"]]:
    """The moving region of each view from its images over the clip (any RGB/RGBA layout, see
    :func:`composite_on_white`). A view with a single frame has no motion: an empty region."""
    by_view: Dict[int, List[Tensor]] = {}
    for image, view in zip(images, view_of_image):
        by_view.setdefault(int(view), []).append(composite_on_white(image))
    return {view: moving_region(torch.stack(frames)) for view, frames in by_view.items()}
