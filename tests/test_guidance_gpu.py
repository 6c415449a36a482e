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


def test_graphed_sds_networks_equal_eager(tiny_zero123: Path):
    """The CUDA-graph replays of the VAE encoder (forward + backward) and the guided UNet call give the
    eager values and gradients, across new inputs."""
    config = SdsConfig(model_id=str(tiny_zero123), resolution=16)
    graphed, eager = Zero123Guidance(config, "cuda", cuda_graphs=True), Zero123Guidance(config, "cuda")
    embeds, latents = eager.embed_condition(torch.rand(1, 20, 20, 3, device="cuda"))
    for seed in range(3):
        generator = torch.Generator().manual_seed(seed)
        renders = torch.rand(1, 24, 24, 3, generator=generator).cuda().requires_grad_(True)
        results = []
        for guidance in (graphed, eager):
            mean, std = guidance._encoder(renders)
            grad = torch.autograd.grad((mean.float().sin().sum() + std.float().sum()), renders)[0]
            noisy = torch.randn(latents.shape, generator=generator).cuda()
            timesteps = torch.tensor([300 + seed], device="cuda")
            pose = Zero123Guidance.pose_embedding(torch.tensor([5.0]), torch.tensor([30.0 * seed])).cuda()
            noise = guidance.predict_noise(noisy, timesteps, embeds, latents, pose).clone()
            results.append((mean.detach().clone(), std.detach().clone(), grad, noise))
        for ours, reference in zip(*results):
            torch.testing.assert_close(ours, reference, rtol=2e-3, atol=2e-4)  # fp16 networks
    assert graphed._encoder.captures == 1 and graphed._noise.captures == 1


def test_graphed_lpips_equals_eager():
    from ds4d_ns.guidance.priors import TrainingPriors

    torch.manual_seed(0)
    network = build_lpips_vgg("random-init").cuda()
    priors = {
        mode: TrainingPriors(1.0, SdsConfig(weight=0.0), network, None, cuda_graphs=mode) for mode in (True, False)
    }
    roles = torch.tensor([0, 1, 1, 1])  # the input view and three pseudo views
    for seed in range(2):
        generator = torch.Generator().manual_seed(seed)
        renders = torch.rand(4, 32, 32, 3, generator=generator).cuda().requires_grad_(True)
        targets = torch.rand(4, 32, 32, 3, generator=generator).cuda()
        values = {}
        for mode, prior in priors.items():
            loss = prior.lpips_loss(renders, targets, roles, (0, 1, 2, 3))["lpips_loss"]
            values[mode] = (loss.detach().clone(), torch.autograd.grad(loss, renders)[0])
        torch.testing.assert_close(values[True][0], values[False][0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(values[True][1], values[False][1], rtol=1e-4, atol=1e-7)
        assert values[True][1][0].abs().sum() == 0  # the input view takes no LPIPS gradient
