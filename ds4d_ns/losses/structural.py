"""The SSIM window built once on the training device.

``pytorch_msssim.ssim`` builds its Gaussian window on the CPU at every call and copies it to the
images' device, which on a GPU makes the host wait for the GPU once per step. Passing this window
(the same 11-tap, sigma 1.5 Gaussian, cached per device and dtype) gives the same values without it.
"""

from __future__ import annotations

import functools

import torch
from jaxtyping import Float
from torch import Tensor

WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5
"""pytorch_msssim's defaults, which the photometric loss has always used."""


@functools.lru_cache(maxsize=8)
def ssim_window(channels: int, device: torch.device, dtype: torch.dtype) -> Float[Tensor, "channels 1 1 size"]:
    """Normalised 1D Gaussian, one row per channel, in the layout ``pytorch_msssim.ssim(win=...)`` takes."""
    offsets = torch.arange(WINDOW_SIZE, dtype=torch.float64) - WINDOW_SIZE // 2
    taps = torch.exp(-offsets.square() / (2 * WINDOW_SIGMA**2))
    taps = (taps / taps.sum()).to(dtype)
    return taps.view(1, 1, 1, WINDOW_SIZE).repeat(channels, 1, 1, 1).to(device)
