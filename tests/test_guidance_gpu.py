"""Zero123 SDS and LPIPS on CUDA (run on the GPU machine): fp16 parts, finite gradients."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ds4d_ns.guidance.priors import SdsConfig
from ds4d_ns.guidance.zero123 import Zero123Guidance
from ds4d_ns.losses.perceptual import build_lpips_vgg, lpips_distance

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_fp16_sds_on_cuda_gives_finite_gradients(tiny_zero123: Path):
    guidance = Zero123Guidance(SdsConfig(model_id=str(tiny_zero123), resolution=16), "cuda")
    assert next(guidance.unet.parameters()).dtype == torch.float16
    embeds, latents = guidance.embed_condition(torch.rand(1, 20, 20, 3, device="cuda"))
    renders = torch.rand(1, 24, 24, 3, device="cuda", requires_grad=True)
    pose = Zero123Guidance.pose_embedding(torch.tensor([5.0]), torch.tensor([120.0]))
    loss = guidance.sds_loss(renders, embeds, latents, pose, sds_step=100)
    loss.backward()
    grad = renders.grad
    assert grad is not None and torch.isfinite(loss) and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_lpips_on_cuda_matches_the_cpu():
    torch.manual_seed(0)
    network = build_lpips_vgg("random-init")
    a, b = torch.rand(2, 2, 32, 32, 3)
    expected = lpips_distance(network, a, b)
    got = lpips_distance(network.cuda(), a.cuda(), b.cuda()).cpu()
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-3)


def test_zero123plus_in_fp16_on_cuda_gives_finite_views(tiny_zero123plus: Path):
    from ds4d_ns.process.zero123plus import AnchorCache, Zero123PlusConfig, Zero123PlusPipeline

    config = Zero123PlusConfig(model_id=str(tiny_zero123plus), num_inference_steps=3, tile_size=16)
    pipeline = Zero123PlusPipeline.load(config, "cuda")  # default temporal anchor: stag4d
    cache = AnchorCache()
    images = [(torch.rand(24, 24, 4) * 255).to(torch.uint8).numpy() for _ in range(3)]
    first = pipeline(images[:1], anchor=cache)
    later = pipeline(images[1:], anchor=cache, frames=[1, 2])
    assert first.shape == (1, 6, 16, 16, 3) and later.shape == (2, 6, 16, 16, 3)
    assert torch.isfinite(later).all()
