"""Generative priors: SDS maths, the timestep schedule, view anchoring, Zero123 loading on tiny
offline parts, and the LPIPS loss with a random backbone."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from conftest import ds4d_parts

from ds4d_ns import camera_layouts
from ds4d_ns.guidance import sds
from ds4d_ns.guidance.anchoring import choose_condition, sample_sds_view
from ds4d_ns.guidance.priors import SdsConfig
from ds4d_ns.guidance.sds import TimestepSchedule
from ds4d_ns.guidance.zero123 import GuidanceWeightsUnavailable, Zero123Guidance
from ds4d_ns.losses.perceptual import PerceptualWeightsUnavailable, build_lpips_vgg, lpips_distance

PSEUDO_V12 = list(zip(camera_layouts.ZERO123PP_V12_AZIMUTHS_DEG, camera_layouts.ZERO123PP_V12_ELEVATIONS_DEG))


# ---------------------------------------------------------------- SDS maths
def test_sds_loss_gradient_is_the_weighted_noise_residual():
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(3, 4, 5, 5, generator=generator, requires_grad=True)
    noise, predicted = torch.randn(2, 3, 4, 5, 5, generator=generator)
    weight = torch.tensor([0.1, 0.5, 0.9])
    gradient = sds.sds_gradient(predicted, noise, weight)
    sds.sds_loss(latents, gradient).backward()
    expected = weight.view(3, 1, 1, 1) * (predicted - noise) / 3
    torch.testing.assert_close(latents.grad, expected)


def test_sds_gradient_zeroes_non_finite_entries_and_clamps():
    predicted = torch.tensor([[[[float("nan"), 5.0, -5.0, 0.2]]]])
    gradient = sds.sds_gradient(predicted, torch.zeros_like(predicted), torch.ones(1), clip=1.0)
    torch.testing.assert_close(gradient, torch.tensor([[[[0.0, 1.0, -1.0, 0.2]]]]))


def test_guidance_weight_and_classifier_free_guidance():
    alphas = torch.tensor([0.9, 0.5, 0.1])
    torch.testing.assert_close(sds.sds_weight(alphas, torch.tensor([0, 2])), torch.tensor([0.1, 0.9]))
    uncond, cond = torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1)
    torch.testing.assert_close(sds.guided_noise(uncond, cond, 5.0), torch.full((1, 1, 1, 1), 5.0))


def test_timestep_range_anneals_linearly_over_the_first_steps():
    schedule = TimestepSchedule()
    assert schedule.fractions(0) == pytest.approx((0.5, 0.95))
    assert schedule.fractions(1500) == pytest.approx((0.26, 0.725))
    assert schedule.fractions(3000) == pytest.approx((0.02, 0.5))
    assert schedule.fractions(10_000) == pytest.approx((0.02, 0.5))
    assert schedule.timestep_range(0, 1000) == (500, 950)
    assert schedule.timestep_range(3000, 1000) == (20, 500)


# ---------------------------------------------------------------- anchoring
def test_a_view_near_the_front_is_conditioned_on_the_input():
    view = choose_condition(20.0, 12.0, PSEUDO_V12)
    assert view.condition is None
    assert (view.delta_azimuth_deg, view.delta_elevation_deg) == pytest.approx((20.0, 12.0))


def test_a_side_view_is_conditioned_on_the_nearest_pseudo_view():
    view = choose_condition(100.0, 0.0, PSEUDO_V12)
    assert view.condition == 1  # azimuth 90, elevation -10
    assert (view.delta_azimuth_deg, view.delta_elevation_deg) == pytest.approx((10.0, 10.0))
    back = choose_condition(-170.0, 0.0, PSEUDO_V12)  # = azimuth 190
    assert back.condition == 3  # azimuth 210, elevation -10 (closer than 150 at elevation 20)
    assert (back.delta_azimuth_deg, back.delta_elevation_deg) == pytest.approx((-20.0, 10.0))
    high = choose_condition(-40.0, 25.0, PSEUDO_V12)  # = azimuth 320
    assert high.condition == 5  # azimuth 330, elevation -10: 36 degrees away, against 47 for (270, 20)
    assert (high.delta_azimuth_deg, high.delta_elevation_deg) == pytest.approx((-10.0, 35.0))


def test_forced_input_condition_uses_the_pose_relative_to_the_input():
    view = choose_condition(150.0, -5.0, PSEUDO_V12, input_elevation_deg=10.0, use_input=True)
    assert view.condition is None
    assert (view.delta_azimuth_deg, view.delta_elevation_deg) == pytest.approx((150.0, -15.0))


def test_sampled_views_stay_in_range_and_mix_conditions():
    rng = random.Random(0)
    samples = [sample_sds_view(rng, PSEUDO_V12) for _ in range(2000)]
    assert all(-180.0 <= s.azimuth_deg < 180.0 and -30.0 <= s.elevation_deg <= 30.0 for s in samples)
    on_input = sum(s.condition is None for s in samples) / len(samples)
    # P(input) = P(|az| < 30) + P(|az| >= 30) * 0.6 = 1/6 + 5/6 * 0.6 = 2/3
    assert on_input == pytest.approx(2 / 3, abs=0.04)


# ---------------------------------------------------------------- Zero123
def test_zero123_loads_from_the_diffusers_layout_and_gives_finite_gradients(tiny_zero123: Path):
    guidance = Zero123Guidance(SdsConfig(model_id=str(tiny_zero123), resolution=16), "cpu")
    condition = torch.rand(2, 20, 20, 3)
    embeds, latents = guidance.embed_condition(condition)
    assert embeds.shape == (2, 1, 16) and latents.shape == (2, 4, 8, 8)
    renders = torch.rand(2, 24, 24, 3, requires_grad=True)
    pose = Zero123Guidance.pose_embedding(torch.tensor([10.0, -5.0]), torch.tensor([30.0, 180.0]))
    loss = guidance.sds_loss(renders, embeds, latents, pose, sds_step=0, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and renders.grad is not None
    assert torch.isfinite(renders.grad).all() and renders.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in guidance.unet.parameters())


def test_zero123_sds_pushes_latents_along_the_guided_prediction(tiny_zero123: Path):
    guidance = Zero123Guidance(SdsConfig(model_id=str(tiny_zero123), resolution=16), "cpu")

    class KnownUNet(torch.nn.Module):
        """Predicts 1 for the conditional half and 0 for the unconditional half."""

        def forward(self, sample, timestep, encoder_hidden_states):
            half = sample.shape[0] // 2
            out = torch.cat([torch.ones(half, 4, *sample.shape[2:]), torch.zeros(half, 4, *sample.shape[2:])])
            return type("Output", (), {"sample": out})()

    guidance.unet = KnownUNet()
    latents = torch.randn(2, 4, 8, 8, requires_grad=True)
    guidance.encode_render = lambda renders: latents  # type: ignore[method-assign]  # known latents, no VAE
    generator = torch.Generator().manual_seed(3)
    embeds, cond_latents = guidance.embed_condition(torch.rand(2, 16, 16, 3))
    pose = Zero123Guidance.pose_embedding(torch.zeros(2), torch.zeros(2))
    guidance.config.gradient_clip = None
    guidance.sds_loss(torch.zeros(2, 16, 16, 3), embeds, cond_latents, pose, sds_step=0, generator=generator).backward()
    replay = torch.Generator().manual_seed(3)
    low, high = guidance.config.schedule.timestep_range(0, guidance.num_train_timesteps)
    timesteps = torch.randint(low, high + 1, (2,), generator=replay)
    noise = torch.randn(2, 4, 8, 8, generator=replay)
    weight = (1.0 - guidance.alphas_cumprod[timesteps]).view(2, 1, 1, 1)
    expected = weight * (5.0 - noise) / 2  # guided = 0 + 5 * (1 - 0); mean over the batch of 2
    torch.testing.assert_close(latents.grad, expected)


@pytest.mark.parametrize("side", [16, 20])
def test_zero123_condition_goes_to_clip_through_the_models_image_processor(tiny_zero123: Path, side: int):
    """As the released Zero123 guidance code: the condition at the VAE's size (bilinear), in 8 bits, through
    the model folder's CLIPImageProcessor (PIL bicubic, centre crop, CLIP's mean and std), then the encoder."""
    from PIL import Image
    from transformers import CLIPVisionModelWithProjection

    from ds4d_ns.guidance.zero123 import CLIP_PROCESSOR_SUBFOLDER, clip_image_processor_class

    guidance = Zero123Guidance(SdsConfig(model_id=str(tiny_zero123), resolution=16), "cpu")
    condition = torch.randint(0, 256, (2, side, side, 3), generator=torch.Generator().manual_seed(side)) / 255.0
    embeds, _ = guidance.embed_condition(condition)

    at_vae_size = torch.nn.functional.interpolate(condition.permute(0, 3, 1, 2), (16, 16), mode="bilinear")
    images = [Image.fromarray((image * 255).round().byte().permute(1, 2, 0).numpy()) for image in at_vae_size]
    processor = clip_image_processor_class().from_pretrained(tiny_zero123, subfolder=CLIP_PROCESSOR_SUBFOLDER)
    encoder = CLIPVisionModelWithProjection.from_pretrained(tiny_zero123, subfolder="image_encoder")
    with torch.no_grad():
        expected = encoder(pixel_values=processor(images=images, return_tensors="pt").pixel_values).image_embeds
    torch.testing.assert_close(embeds, expected[:, None])


def test_a_zero123_image_processor_of_another_size_than_its_encoder_is_refused(tiny_zero123: Path, tmp_path: Path):
    import json
    import shutil

    folder = shutil.copytree(tiny_zero123, tmp_path / "mixed")
    config_path = folder / "feature_extractor" / "preprocessor_config.json"
    config = json.loads(config_path.read_text())
    config.update(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    config_path.write_text(json.dumps(config))
    with pytest.raises(GuidanceWeightsUnavailable, match="feature_extractor gives 224x224 images but its"):
        Zero123Guidance(SdsConfig(model_id=str(folder), resolution=16), "cpu")


def test_zero123_pose_embedding_follows_zero123s_convention():
    pose = Zero123Guidance.pose_embedding(torch.tensor([30.0]), torch.tensor([90.0]))
    torch.testing.assert_close(pose, torch.tensor([[-torch.pi / 6, 1.0, 0.0, 0.0]]), atol=1e-6, rtol=0)


def test_missing_zero123_weights_name_the_model_and_the_switch(tmp_path):
    config = SdsConfig(model_id=str(tmp_path / "no-such-model"))
    with pytest.raises(GuidanceWeightsUnavailable) as error:
        Zero123Guidance(config, "cpu")
    assert "no-such-model" in str(error.value) and "--pipeline.model.sds.weight 0" in str(error.value)


# ---------------------------------------------------------------- LPIPS
def test_lpips_with_a_random_backbone_is_zero_on_equal_images_and_positive_otherwise():
    network = build_lpips_vgg("random-init")
    images = torch.rand(2, 32, 32, 3)
    same = lpips_distance(network, images, images)
    different = lpips_distance(network, images, torch.rand(2, 32, 32, 3))
    assert same.shape == (2,) and same.abs().max() < 1e-6
    assert (different > same + 1e-4).all()


def test_missing_vgg_weights_name_them_and_the_switch(tmp_path, monkeypatch):
    import urllib.error

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(PerceptualWeightsUnavailable) as error:
        build_lpips_vgg("pretrained")
    assert "VGG16" in str(error.value) and "--pipeline.model.lpips-loss-weight 0" in str(error.value)


def test_weights_check_lists_every_missing_model_and_passes_with_local_ones(
    tiny_dinov2: Path, tiny_zero123: Path, tmp_path, monkeypatch
):
    import urllib.error

    from ds4d_ns.method_configs.ds4d_config import make_ds4d_config
    from ds4d_ns.scripts.weights import missing_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    config = make_ds4d_config(priors=True)
    pipeline, (datamanager, model) = config.pipeline, ds4d_parts(config)
    problems = missing_weights(pipeline)
    assert len(problems) == 3
    assert "facebook/dinov2-small" in problems[0] and "VGG16" in problems[1] and "zero123" in problems[2]
    datamanager.frame_features.extractor.model_id = str(tiny_dinov2)
    model.lpips_backbone = "random-init"
    model.sds.model_id = str(tiny_zero123)
    assert missing_weights(pipeline) == []
    assert missing_weights(make_ds4d_config(frame_features="none", priors=False).pipeline) == []


def test_a_weight_applied_after_the_encoder_scales_value_and_gradient_alike():
    def loss_of(renders):  # stands in for the fp16 encoder + SDS: any differentiable function
        return (renders.sin() * 3.0).square().sum()

    renders = torch.rand(2, 4, 4, 3, requires_grad=True)
    reference = torch.rand(2, 4, 4, 3).copy_(renders.detach()).requires_grad_(True)
    weighted = sds.weight_after_encoder(renders, 5e-5, loss_of)
    weighted.backward()
    expected = 5e-5 * loss_of(reference)
    expected.backward()
    torch.testing.assert_close(weighted, expected)
    torch.testing.assert_close(renders.grad, reference.grad)


def test_the_encoder_sees_the_unweighted_gradient():
    seen = {}

    def loss_of(renders):
        renders.register_hook(lambda grad: seen.setdefault("grad", grad.clone()))
        return renders.sum()

    renders = torch.rand(3, requires_grad=True)
    sds.weight_after_encoder(renders, 1e-5, loss_of).backward()
    torch.testing.assert_close(seen["grad"], torch.ones(3))  # not 1e-5: no fp16 underflow inside
    torch.testing.assert_close(renders.grad, torch.full((3,), 1e-5))


def test_the_sds_camera_is_kept_on_the_device_and_rewritten_each_step():
    from ds4d_ns.guidance.priors import TrainingPriors
    from ds4d_ns.rendering.orbit_cameras import orbit_cameras

    priors = TrainingPriors(0.0, SdsConfig(weight=0.0))
    first = priors._on_device(orbit_cameras([10.0], [0.0], resolution=32), torch.tensor(0.25))
    second_host = orbit_cameras([70.0], [0.0], elevation_deg=15.0, resolution=32)
    second = priors._on_device(second_host, torch.tensor(0.75))
    assert second is first  # one camera, rewritten
    torch.testing.assert_close(second.camera_to_worlds, second_host.camera_to_worlds)
    assert float(second.times[0, 0]) == 0.75
    third = priors._on_device(orbit_cameras([70.0], [0.0], resolution=64), torch.tensor(0.5))
    assert third is not first and int(third.width[0, 0]) == 64  # other intrinsics: a new camera
