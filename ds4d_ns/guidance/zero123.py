"""Zero123 guidance for multi-view SDS, assembled from diffusers and transformers parts.

Zero123 (Liu et al., ICCV 2023) is a Stable Diffusion UNet that denoises a view of an object given
one image of it and the relative camera pose. The conditioning has two paths: the condition
image's VAE latent is concatenated to the noisy latent (8 input channels), and its CLIP image
embedding, concatenated with the pose ``[delta polar (rad), sin(delta azimuth), cos(delta azimuth),
delta radius]``, goes through a linear "camera projection" into the cross-attention. Classifier-free
guidance drops both (zeros).

The released diffusers layout (``ashawkey/zero123-xl-diffusers``) keeps each part in a subfolder;
the camera projection is a custom class there, so we define our own with the same configuration
keys and parameter names and load it with ``from_pretrained``: no remote code. The condition image
reaches CLIP through the layout's ``feature_extractor`` (a ``CLIPImageProcessor``), as the released
pipeline and STAG4D's guidance feed it, so its resize and normalisation are the model's. Everything is
frozen, fp16 on CUDA, fp32 elsewhere. ``weights="random-init"`` builds the published
architectures with random weights for timing on machines that cannot download them.

Pose convention: Zero123's polar angle is measured from the up axis, so its delta polar is minus
our delta elevation; its azimuth turns the same way as ours (counter-clockwise seen from above).
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from jaxtyping import Float
from torch import Tensor, nn

from ds4d_ns.cuda_graphs import GraphedFunction, GraphedInference
from ds4d_ns.errors import WeightsUnavailable
from ds4d_ns.guidance import sds
from ds4d_ns.guidance.sds_config import SdsConfig

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Published architectures of the zero123-xl-diffusers parts (their config.json files), for random-init.
ZERO123_XL_UNET: Dict[str, object] = {
    "sample_size": 32,
    "in_channels": 8,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}
STABLE_DIFFUSION_VAE: Dict[str, object] = {
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "latent_channels": 4,
    "layers_per_block": 2,
    "sample_size": 256,
}
CLIP_VIT_L14: Dict[str, object] = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "patch_size": 14,
    "image_size": 224,
    "projection_dim": 768,
}


CLIP_IMAGE_PROCESSOR: Dict[str, object] = {
    "size": {"shortest_edge": 224},
    "crop_size": {"height": 224, "width": 224},
    "resample": 3,
    "do_center_crop": True,
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": list(CLIP_MEAN),
    "image_std": list(CLIP_STD),
}
"""CLIP ViT-L/14's standard preprocessing (its ``preprocessor_config.json``), for random-init; loaded weights come
with their own (:data:`CLIP_PROCESSOR_SUBFOLDER`)."""
CLIP_PROCESSOR_SUBFOLDER = "feature_extractor"
"""Subfolder of the diffusers layout holding the CLIP image processor the released pipeline runs."""


def clip_image_processor_class():
    """transformers' CLIPImageProcessor with PIL resampling, as the releases ran it (transformers 5 made the
    torchvision one the default; its resize differs from PIL's by up to 0.005)."""
    try:
        from transformers.models.clip import CLIPImageProcessorPil

        return CLIPImageProcessorPil
    except ImportError:  # transformers < 5: CLIPImageProcessor is the PIL one
        from transformers import CLIPImageProcessor

        return CLIPImageProcessor


class GuidanceWeightsUnavailable(WeightsUnavailable):
    """The diffusion model's weights could not be loaded."""


def _camera_projection_class():
    from diffusers.configuration_utils import ConfigMixin, register_to_config
    from diffusers.models.modeling_utils import ModelMixin

    class CameraProjection(ModelMixin, ConfigMixin):
        """Linear map of [CLIP image embedding, 4 pose numbers] to the UNet's cross-attention width."""

        @register_to_config
        def __init__(self, embedding_dim: int = 768, additional_embeddings: int = 4) -> None:
            super().__init__()
            self.proj = nn.Linear(embedding_dim + additional_embeddings, embedding_dim)

        def forward(self, embeddings: Tensor) -> Tensor:
            return self.proj(embeddings)

    return CameraProjection


class Zero123Guidance:
    """Frozen Zero123 parts and the SDS loss. Deliberately not an ``nn.Module``: its billion
    parameters must stay out of the model's state dict and checkpoints."""

    def __init__(self, config: SdsConfig, device: torch.device | str, cuda_graphs: bool = False) -> None:
        self.config = config
        self.device = torch.device(device)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.unet, self.vae, self.image_encoder, self.projection, scheduler, self.clip_processor = _load_parts(config)
        _check_clip_processor(self.clip_processor, int(self.image_encoder.config.image_size), config.model_id)
        for part in (self.unet, self.vae, self.image_encoder, self.projection):
            part.to(device=self.device, dtype=self.dtype).eval().requires_grad_(False)
        self.num_train_timesteps = int(scheduler.config.num_train_timesteps)
        self.alphas_cumprod = scheduler.alphas_cumprod.to(self.device, torch.float32)
        self.latent_scale = float(getattr(self.vae.config, "scaling_factor", 0.18215))
        # With cuda_graphs on a GPU, the encoder's forward + backward and the UNet call each replay as CUDA
        # graphs: their shapes never change, and eager they cost the host more than the GPU spends on them.
        self._encoder = GraphedFunction(self._latent_moments, enabled=cuda_graphs)
        self._noise = GraphedInference(self._guided_noise, enabled=cuda_graphs)

    # ------------------------------------------------------------------ conditioning
    @torch.no_grad()
    def embed_condition(
        self, images: Float[Tensor, "b h w 3"]
    ) -> Tuple[Float[Tensor, "b 1 e"], Float[Tensor, "b 4 hl wl"]]:
        """CLIP image embeddings and (unscaled) VAE latents of condition images in [0, 1] on white.

        As in the released Zero123 guidance code, both encoders see the image resized to ``config.resolution``
        (bilinear), and CLIP gets it through the model's own image processor (``feature_extractor``: PIL bicubic
        resize of the shortest side, centre crop, CLIP's mean and std) rather than a resize of our own.
        """
        pixels = self._resize(images.permute(0, 3, 1, 2).to(self.device, torch.float32))
        embeds = self.image_encoder(pixel_values=self._clip_pixel_values(pixels)).image_embeds[:, None]
        latents = self.vae.encode((pixels * 2.0 - 1.0).to(self.dtype)).latent_dist.mode()
        return embeds, latents

    def _clip_pixel_values(self, pixels: Float[Tensor, "b 3 h w"]) -> Tensor:
        """The CLIP image processor's pixel values of images in [0, 1].

        The processor works on 8-bit images on the host, so nothing here is differentiable; nothing needs to
        be: the condition is a fixed training image, and SDS's gradient reaches the Gaussians through the
        render's VAE latents only. Rounded to 8 bits, so an image read from an 8-bit file goes through
        unchanged (the reference code's ``to_pil_image`` truncates, at most one grey level lower).
        """
        from PIL import Image

        eight_bit = (pixels.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        images = [Image.fromarray(image) for image in eight_bit]
        values = self.clip_processor(images=images, return_tensors="pt").pixel_values
        return values.to(self.device, self.dtype)

    @staticmethod
    def pose_embedding(
        delta_elevation_deg: Tensor, delta_azimuth_deg: Tensor, delta_radius: Optional[Tensor] = None
    ) -> Float[Tensor, "b 4"]:
        """Zero123's relative pose: [delta polar (rad), sin delta azimuth, cos delta azimuth, delta radius]."""
        delta_polar = torch.deg2rad(-delta_elevation_deg.float())
        azimuth = torch.deg2rad(delta_azimuth_deg.float())
        radius = torch.zeros_like(azimuth) if delta_radius is None else delta_radius.float()
        return torch.stack([delta_polar, torch.sin(azimuth), torch.cos(azimuth), radius], dim=-1)

    # ------------------------------------------------------------------ SDS
    def _resize(self, pixels: Tensor) -> Tensor:
        size = self.config.resolution
        if pixels.shape[-2:] == (size, size):
            return pixels
        return torch.nn.functional.interpolate(pixels, (size, size), mode="bilinear", align_corners=False)

    def encode_render(self, renders: Float[Tensor, "b h w 3"]) -> Float[Tensor, "b 4 hl wl"]:
        """Scaled VAE latents of renders in [0, 1] (a sample of the posterior), differentiable with respect
        to the renders."""
        mean, std = self._encoder(renders)
        # diffusers' DiagonalGaussianDistribution.sample, drawn outside the graph
        return (mean + std * torch.randn_like(mean)) * self.latent_scale

    def _latent_moments(self, renders: Float[Tensor, "b h w 3"]) -> Tuple[Tensor, Tensor]:
        """Mean and standard deviation of the VAE posterior of renders in [0, 1]."""
        pixels = self._resize(renders.permute(0, 3, 1, 2)) * 2.0 - 1.0
        posterior = self.vae.encode(pixels.to(self.dtype)).latent_dist
        return posterior.mean, posterior.std

    def predict_noise(
        self,
        noisy_latents: Tensor,
        timesteps: Tensor,
        clip_embeds: Tensor,
        condition_latents: Tensor,
        pose: Tensor,
    ) -> Tensor:
        """Classifier-free guided noise estimate (conditional and unconditional halves in one UNet call)."""
        return self._noise(noisy_latents, timesteps, clip_embeds, condition_latents, pose)[0]

    def _guided_noise(
        self, noisy_latents: Tensor, timesteps: Tensor, clip_embeds: Tensor, condition_latents: Tensor, pose: Tensor
    ) -> Tuple[Tensor]:
        camera = self.projection(torch.cat([clip_embeds, pose[:, None].to(clip_embeds.dtype)], dim=-1))
        hidden = torch.cat([camera, torch.zeros_like(camera)])
        concat = torch.cat([condition_latents, torch.zeros_like(condition_latents)])
        model_in = torch.cat([torch.cat([noisy_latents] * 2), concat], dim=1).to(self.dtype)
        noise = self.unet(model_in, torch.cat([timesteps] * 2), encoder_hidden_states=hidden).sample.float()
        noise_cond, noise_uncond = noise.chunk(2)
        return (sds.guided_noise(noise_uncond, noise_cond, self.config.guidance_scale),)

    def sds_loss(
        self,
        renders: Float[Tensor, "b h w 3"],
        clip_embeds: Tensor,
        condition_latents: Tensor,
        pose: Float[Tensor, "b 4"],
        sds_step: int,
        generator: Optional[torch.Generator] = None,
    ) -> Float[Tensor, ""]:
        """SDS loss of renders conditioned on images (``embed_condition``) and relative poses."""
        latents = self.encode_render(renders).float()
        low, high = self.config.schedule.timestep_range(sds_step, self.num_train_timesteps)
        timesteps = torch.randint(low, high + 1, (latents.shape[0],), device=self.device, generator=generator)
        noise = torch.randn(latents.shape, device=self.device, generator=generator)
        alpha_bar = self.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
        noisy = alpha_bar.sqrt() * latents.detach() + (1.0 - alpha_bar).sqrt() * noise
        noise_pred = self.predict_noise(noisy, timesteps, clip_embeds, condition_latents, pose.to(self.device))
        weight = sds.sds_weight(self.alphas_cumprod, timesteps)
        gradient = sds.sds_gradient(noise_pred, noise, weight, self.config.gradient_clip)
        return sds.sds_loss(latents, gradient)


def _load_parts(config: SdsConfig):
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    projection_class = _camera_projection_class()
    if config.weights == "random-init":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            unet = UNet2DConditionModel(**ZERO123_XL_UNET)
            vae = AutoencoderKL(**STABLE_DIFFUSION_VAE)
            image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**CLIP_VIT_L14))
            projection = projection_class()
        scheduler = DDIMScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False
        )
        return unet, vae, image_encoder, projection, scheduler, clip_image_processor_class()(**CLIP_IMAGE_PROCESSOR)
    model_id = config.model_id
    try:
        unet = UNet2DConditionModel.from_pretrained(model_id, subfolder="unet")
        vae = AutoencoderKL.from_pretrained(model_id, subfolder="vae")
        image_encoder = CLIPVisionModelWithProjection.from_pretrained(model_id, subfolder="image_encoder")
        projection = projection_class.from_pretrained(model_id, subfolder="clip_camera_projection")
        scheduler = DDIMScheduler.from_pretrained(model_id, subfolder="scheduler")
        clip_processor = clip_image_processor_class().from_pretrained(model_id, subfolder=CLIP_PROCESSOR_SUBFOLDER)
    except (OSError, ValueError) as err:
        first_line = str(err).splitlines()[0] if str(err) else ""
        raise GuidanceWeightsUnavailable(
            f"SDS needs the Zero123 model '{model_id}', which could not be loaded: {type(err).__name__}: "
            f"{first_line}\nDownload it once with internet access (Hugging Face caches it), point "
            "--pipeline.model.sds.model-id at a local copy in the diffusers layout, or train without SDS: "
            "--pipeline.model.sds.weight 0 (or `ns-train ds4d-base`)."
        ) from err
    return unet, vae, image_encoder, projection, scheduler, clip_processor


def _check_clip_processor(processor, image_size: int, model_id: str) -> None:
    """Refuse an image processor whose output size is not the image encoder's input size."""
    from PIL import Image

    # asked rather than read from its size fields, whose form differs between transformers versions
    probe = Image.new("RGB", (2 * image_size + 1, image_size + 3))
    height, width = processor(images=[probe], return_tensors="pt").pixel_values.shape[-2:]
    if (height, width) != (image_size, image_size):
        raise GuidanceWeightsUnavailable(
            f"the Zero123 model '{model_id}': its {CLIP_PROCESSOR_SUBFOLDER} gives {height}x{width} images but its "
            f"image_encoder takes {image_size}x{image_size}; the folder mixes parts of different models"
        )
