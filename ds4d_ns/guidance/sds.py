"""Score distillation sampling (SDS): the pure pieces, independent of the diffusion model.

SDS (DreamFusion) pushes a render's latent ``z`` along ``w(t) (eps_pred - eps)``, where ``eps``
is the noise added at timestep ``t`` and ``eps_pred`` the model's (classifier-free guided)
estimate of it; no gradient flows through the denoiser. It is implemented as a loss whose gradient
with respect to ``z`` is exactly that vector, so autograd carries it back through the VAE encoder
and the rasteriser to the Gaussians.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Tuple

import torch
from jaxtyping import Float
from torch import Tensor


@dataclass(frozen=True)
class TimestepSchedule:
    """Range of SDS timesteps (fractions of the diffusion's steps), annealed linearly over training."""

    min_start: float = 0.5
    """Lower end of the range at the first SDS step (STAG4D)."""
    min_end: float = 0.02
    """Lower end once annealed."""
    max_start: float = 0.95
    """Upper end at the first SDS step."""
    max_end: float = 0.5
    """Upper end once annealed."""
    anneal_steps: int = 3000
    """SDS steps over which the range moves from start to end."""

    def fractions(self, sds_step: int) -> Tuple[float, float]:
        """``(low, high)`` fractions of the diffusion's timesteps after ``sds_step`` SDS steps."""
        progress = min(max(sds_step, 0) / max(self.anneal_steps, 1), 1.0)
        low = self.min_start + (self.min_end - self.min_start) * progress
        high = self.max_start + (self.max_end - self.max_start) * progress
        return low, max(high, low)

    def timestep_range(self, sds_step: int, num_train_timesteps: int) -> Tuple[int, int]:
        """Inclusive integer range of timesteps to sample from."""
        low, high = self.fractions(sds_step)
        return int(low * num_train_timesteps), max(int(high * num_train_timesteps), int(low * num_train_timesteps))


def sds_weight(alphas_cumprod: Float[Tensor, " steps"], timesteps: Tensor) -> Float[Tensor, " batch"]:
    """``w(t) = 1 - alpha_bar(t)``, the weighting of DreamFusion and STAG4D."""
    return 1.0 - alphas_cumprod.to(timesteps.device)[timesteps]


def guided_noise(
    noise_uncond: Float[Tensor, "b c h w"], noise_cond: Float[Tensor, "b c h w"], guidance_scale: float
) -> Float[Tensor, "b c h w"]:
    """Classifier-free guidance: move from the unconditional estimate towards the conditional one."""
    return noise_uncond + guidance_scale * (noise_cond - noise_uncond)


def sds_gradient(
    noise_pred: Float[Tensor, "b c h w"],
    noise: Float[Tensor, "b c h w"],
    weight: Float[Tensor, " b"],
    clip: float | None = None,
) -> Float[Tensor, "b c h w"]:
    """``w(t) (eps_pred - eps)``, non-finite entries zeroed, each entry clamped to ``[-clip, clip]`` if given."""
    gradient = weight.view(-1, 1, 1, 1) * (noise_pred - noise)
    gradient = torch.nan_to_num(gradient, nan=0.0, posinf=0.0, neginf=0.0)
    if clip is not None:
        gradient = gradient.clamp(-clip, clip)
    return gradient


def sds_loss(latents: Float[Tensor, "b c h w"], gradient: Float[Tensor, "b c h w"]) -> Float[Tensor, ""]:
    """A scalar whose gradient with respect to ``latents`` is ``gradient / b`` (the batch mean of SDS)."""
    target = (latents - gradient).detach()
    return 0.5 * (latents - target).square().sum() / latents.shape[0]


class _ScaleGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tuple[Tensor, None]:
        return grad * ctx.scale, None


def weight_after_encoder(
    renders: Float[Tensor, "*shape"], weight: float, loss_of: Callable[[Tensor], Tensor]
) -> Float[Tensor, ""]:
    """``weight * loss_of(renders)`` whose gradient is scaled at ``renders``, not at the loss.

    SDS weights are small (1e-5 to 1e-4) and the VAE encoder runs in fp16 on the GPU: scaling the
    loss would send gradients below fp16's smallest normal number through the encoder, flushing
    many to zero. Here the encoder back-propagates the unweighted SDS gradient and the weight is
    applied to the (fp32) render gradient; the value is still ``weight * loss``.
    """
    loss = loss_of(_ScaleGradient.apply(renders, weight))
    return loss + (weight - 1.0) * loss.detach()
