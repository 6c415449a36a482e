"""Zero123++ pseudo views with our own diffusers pipeline (no remote code).

Zero123++ (Shi et al. 2023) turns one image of an object into six views on a fixed camera layout,
generated together as one 3 x 2 grid of 320 px tiles (``ds4d_ns.views`` has the cameras). It is a
Stable Diffusion 2 UNet (v-prediction) conditioned in two ways:

* **Reference attention.** The condition image's VAE latent, noised to the current timestep, is
  run through the same UNet first; every self-attention layer records its input tokens, and in
  the real pass each self-attention also attends to the recorded tokens of the same layer.
* **Global embedding.** The CLIP image embedding of the condition image is added to the
  (empty-prompt) text embedding, token ``i`` weighted by a published ramp of 77 coefficients
  (``ramping_coefficients`` in the model's ``model_index.json``).

Latents and decoded images use Zero123++'s own affine rescaling (``LATENT_SHIFT``/``LATENT_SCALE``,
``IMAGE_SCALE``). Classifier-free guidance replaces the reference image by a blank one (mid grey)
and drops the global embedding. The parts are loaded with ``from_pretrained`` from the released subfolders, so the
pipeline runs offline once the weights are cached and is tested on tiny random-config parts.
What could not be checked here is the output quality with the released weights (none can be
downloaded on our machines).

Temporal anchor (STAG4D): the first frame's reference tokens are kept per denoising step and layer
and blended into later frames' (``anchor_weight``), so the views of different frames agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional

import torch
from jaxtyping import Float
from torch import Tensor

from ds4d_ns.errors import WeightsUnavailable
from ds4d_ns.guidance.zero123 import STABLE_DIFFUSION_VAE, clip_pixel_values

LATENT_SHIFT, LATENT_SCALE = 0.22, 0.75
"""Zero123++ latents are ``(vae_latent * vae_scaling - 0.22) * 0.75``."""
IMAGE_SCALE = 0.8 / 0.5
"""Zero123++ decodes to images scaled by 0.5 / 0.8; multiplying by this undoes it."""
GREY = 0.5
"""Zero123++ sees its input composited over mid grey, and paints its views on grey."""
RELEASES = {"v1.2": "sudo-ai/zero123plus-v1.2", "v1.1": "sudo-ai/zero123plus-v1.1"}

# Published architectures (the releases' config.json files), used by weights="random-init" for timing.
SD2_UNET: Dict[str, object] = {
    "sample_size": 96,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 1024,
    "attention_head_dim": (5, 10, 20, 20),
    "use_linear_projection": True,
}
OPENCLIP_H_TEXT: Dict[str, object] = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 23,
    "num_attention_heads": 16,
    "projection_dim": 1024,
    "hidden_act": "gelu",
}
CLIP_H_VISION: Dict[str, object] = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 16,
    "patch_size": 14,
    "image_size": 224,
    "projection_dim": 1024,
    "hidden_act": "gelu",
}


class PseudoViewWeightsUnavailable(WeightsUnavailable):
    """The Zero123++ weights could not be loaded."""


@dataclass
class Zero123PlusConfig:
    """Zero123++ release, sampling and temporal anchoring."""

    version: Literal["v1.2", "v1.1"] = "v1.2"
    """Release: v1.2 (fov 30, elevations 20/-10) or v1.1 (elevations 30/-20); see ds4d_ns.views."""
    model_id: Optional[str] = None
    """Hugging Face id or local folder in the release's layout; None uses sudo-ai's id for the version."""
    weights: Literal["pretrained", "random-init"] = "pretrained"
    """random-init builds the published architecture with random weights (timing only)."""
    num_inference_steps: int = 75
    """Denoising steps (Zero123++ recommends 28 to 75)."""
    guidance_scale: float = 4.0
    """Classifier-free guidance scale."""
    seed: int = 0
    """Seed of the initial noise and the ancestral sampler: the same input gives the same views."""
    temporal_anchor: bool = False
    """Blend the first frame's reference-attention tokens into later frames (STAG4D)."""
    anchor_weight: float = 0.5
    """Share of the first frame's tokens in the blend."""
    tile_size: int = 320
    """Side of one view in pixels (320 for the releases; smaller only for tests)."""

    def resolved_model_id(self) -> str:
        return self.model_id or RELEASES[self.version]


class ReferenceAttentionState:
    """What the self-attention processors do in the current UNet call, and the tokens they share."""

    def __init__(self) -> None:
        self.mode: Literal["off", "record", "attend"] = "off"
        self.tokens: Dict[str, Tensor] = {}
        self.anchor: Optional[Dict[str, Tensor]] = None
        self.anchor_weight = 0.5


class ReferenceAttentionProcessor:
    """Self-attention that records its input tokens, or also attends to the recorded ones."""

    def __init__(self, name: str, state: ReferenceAttentionState) -> None:
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.name, self.state, self.inner = name, state, AttnProcessor2_0()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        if self.state.mode == "record":
            self.state.tokens[self.name] = hidden_states
        elif self.state.mode == "attend":
            reference = self.state.tokens[self.name]
            if self.state.anchor is not None:
                anchor = self.state.anchor[self.name]
                anchor = anchor.repeat_interleave(reference.shape[0] // anchor.shape[0], dim=0)
                reference = (1.0 - self.state.anchor_weight) * reference + self.state.anchor_weight * anchor
            encoder_hidden_states = torch.cat([hidden_states, reference], dim=1)
        return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


@dataclass
class AnchorCache:
    """Reference tokens of the first frame, per denoising step (filled by the first call)."""

    steps: List[Dict[str, Tensor]] = field(default_factory=list)


class Zero123PlusPipeline:
    """Six pseudo views per input image (see the module docstring)."""

    def __init__(self, parts: Dict[str, object], ramp: Tensor, config: Zero123PlusConfig, device) -> None:
        self.config = config
        self.device = torch.device(device)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.vae, self.unet = parts["vae"], parts["unet"]
        self.text_encoder, self.tokenizer = parts["text_encoder"], parts["tokenizer"]
        self.vision_encoder, self.scheduler = parts["vision_encoder"], parts["scheduler"]
        for module in (self.vae, self.unet, self.text_encoder, self.vision_encoder):
            module.to(self.device, self.dtype).eval().requires_grad_(False)  # type: ignore[attr-defined]
        self.ramp = ramp.to(self.device, self.dtype)
        self.reference = ReferenceAttentionState()
        self.unet.set_attn_processor(  # type: ignore[attr-defined]
            {
                name: ReferenceAttentionProcessor(name, self.reference) if name.endswith("attn1.processor") else proc
                for name, proc in self.unet.attn_processors.items()  # type: ignore[attr-defined]
            }
        )
        self.vae_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, config: Zero123PlusConfig, device) -> "Zero123PlusPipeline":
        """Load the release's parts (or build random ones); raise with the model id when impossible."""
        from diffusers import AutoencoderKL, EulerAncestralDiscreteScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection

        model_id = config.resolved_model_id()
        if config.weights == "random-init":
            return cls(*_random_parts(), config, device)
        try:
            parts = {
                "vae": AutoencoderKL.from_pretrained(model_id, subfolder="vae"),
                "unet": UNet2DConditionModel.from_pretrained(model_id, subfolder="unet"),
                "text_encoder": CLIPTextModel.from_pretrained(model_id, subfolder="text_encoder"),
                "tokenizer": CLIPTokenizer.from_pretrained(model_id, subfolder="tokenizer"),
                "vision_encoder": CLIPVisionModelWithProjection.from_pretrained(model_id, subfolder="vision_encoder"),
                "scheduler": EulerAncestralDiscreteScheduler.from_pretrained(
                    model_id, subfolder="scheduler", timestep_spacing="trailing"
                ),
            }
            ramp = torch.tensor(_model_index(model_id)["ramping_coefficients"], dtype=torch.float32)
        except (OSError, ValueError, KeyError) as err:
            raise PseudoViewWeightsUnavailable(
                f"Pseudo views need the Zero123++ model '{model_id}', which could not be loaded "
                f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). Download it once "
                "with internet access, or pass --model-id a local copy of the release."
            ) from err
        return cls(parts, ramp, config, device)

    # ------------------------------------------------------------------ conditioning
    @torch.no_grad()
    def _encode_condition(self, images: Float[Tensor, "b h w 3"], generator: torch.Generator):
        pixels = images.permute(0, 3, 1, 2).to(self.device, torch.float32)
        size = int(self.vision_encoder.config.image_size)  # type: ignore[attr-defined]
        image_embeds = self.vision_encoder(pixel_values=clip_pixel_values(pixels, size).to(self.dtype)).image_embeds
        tile = self.config.tile_size
        vae_in = torch.nn.functional.interpolate(pixels, (tile, tile), mode="bicubic", align_corners=False)
        vae_pixels = (vae_in.clamp(0, 1) * 2 - 1).to(self.dtype)
        reference_latents = self.vae.encode(vae_pixels).latent_dist.sample(generator=generator)
        # the unconditional branch references a blank image (0 in [-1, 1], i.e. mid grey), as in the release
        blank_latents = self.vae.encode(torch.zeros_like(vae_pixels)).latent_dist.sample(generator=generator)
        tokens = self.tokenizer(
            [""], padding="max_length", max_length=self.tokenizer.model_max_length, return_tensors="pt"
        ).input_ids.to(self.device)
        prompt = self.text_encoder(tokens).last_hidden_state.expand(images.shape[0], -1, -1)
        ramp = self.ramp[: prompt.shape[1], None]
        conditional = prompt + image_embeds[:, None, :] * ramp
        # guidance: the unconditional half has no global embedding and a blank reference image
        hidden = torch.cat([prompt, conditional])
        reference = torch.cat([blank_latents, reference_latents])
        return hidden, reference

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def __call__(
        self,
        images: Float[Tensor, "b h w 3"],
        anchor: Optional[AnchorCache] = None,
        progress: bool = False,
    ) -> Float[Tensor, "b 6 tile tile 3"]:
        """Six views of each input (RGB in [0, 1] over grey), as tiles in the release's order."""
        batch = images.shape[0]
        generator = torch.Generator(device="cpu").manual_seed(self.config.seed)
        hidden, reference_latents = self._encode_condition(images, generator)
        tile, factor = self.config.tile_size, self.vae_factor
        shape = (batch, 4, 3 * tile // factor, 2 * tile // factor)
        latents = torch.randn(shape, generator=generator).to(self.device, torch.float32)
        self.scheduler.set_timesteps(self.config.num_inference_steps, device=self.device)  # type: ignore[attr-defined]
        latents = latents * self.scheduler.init_noise_sigma  # type: ignore[attr-defined]
        record_anchor = anchor is not None and not anchor.steps
        timesteps = self.scheduler.timesteps  # type: ignore[attr-defined]
        for index, timestep in enumerate(timesteps):
            noise = torch.randn(reference_latents.shape, generator=generator).to(self.device, reference_latents.dtype)
            noisy_reference = self.scheduler.add_noise(  # type: ignore[attr-defined]
                reference_latents.float(), noise.float(), timestep.reshape(1).expand(reference_latents.shape[0])
            )
            noisy_reference = self.scheduler.scale_model_input(noisy_reference, timestep)  # type: ignore[attr-defined]
            self.reference.mode, self.reference.tokens, self.reference.anchor = "record", {}, None
            self.unet(noisy_reference.to(self.dtype), timestep, encoder_hidden_states=hidden)  # type: ignore[operator]
            if record_anchor:
                assert anchor is not None
                anchor.steps.append({k: v[::batch] for k, v in self.reference.tokens.items()})
            elif anchor is not None:
                self.reference.anchor = anchor.steps[index]
                self.reference.anchor_weight = self.config.anchor_weight
            self.reference.mode = "attend"
            model_in = self.scheduler.scale_model_input(torch.cat([latents] * 2), timestep)  # type: ignore[attr-defined]
            prediction = self.unet(  # type: ignore[operator]
                model_in.to(self.dtype), timestep, encoder_hidden_states=hidden
            ).sample.float()
            unconditional, conditional = prediction.chunk(2)
            guided = unconditional + self.config.guidance_scale * (conditional - unconditional)
            latents = self.scheduler.step(guided, timestep, latents, generator=generator).prev_sample  # type: ignore[attr-defined]
        self.reference.mode, self.reference.tokens, self.reference.anchor = "off", {}, None
        return self._decode_tiles(latents)

    def _decode_tiles(self, latents: Tensor) -> Float[Tensor, "b 6 tile tile 3"]:
        scaling = float(getattr(self.vae.config, "scaling_factor", 0.18215))  # type: ignore[attr-defined]
        vae_latents = (latents / LATENT_SCALE + LATENT_SHIFT) / scaling
        image = self.vae.decode(vae_latents.to(self.dtype)).sample.float() * IMAGE_SCALE  # type: ignore[attr-defined]
        image = ((image.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1)  # [b, 3 tiles high, 2 tiles wide, 3]
        tile = self.config.tile_size
        rows = image.reshape(image.shape[0], 3, tile, 2, tile, 3).permute(0, 1, 3, 2, 4, 5)
        return rows.reshape(image.shape[0], 6, tile, tile, 3)


def _model_index(model_id: str) -> dict:
    """The release's ``model_index.json`` (local folder or Hugging Face cache/download)."""
    folder = Path(model_id)
    if folder.is_dir():
        return json.loads((folder / "model_index.json").read_text())
    from huggingface_hub import hf_hub_download

    return json.loads(Path(hf_hub_download(model_id, "model_index.json")).read_text())


def _random_parts():
    from diffusers import AutoencoderKL, EulerAncestralDiscreteScheduler, UNet2DConditionModel
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTokenizer,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        parts = {
            "vae": AutoencoderKL(**STABLE_DIFFUSION_VAE),  # type: ignore[arg-type]
            "unet": UNet2DConditionModel(**SD2_UNET),  # type: ignore[arg-type]
            "text_encoder": CLIPTextModel(CLIPTextConfig(**OPENCLIP_H_TEXT)),
            "vision_encoder": CLIPVisionModelWithProjection(CLIPVisionConfig(**CLIP_H_VISION)),
        }
    parts["tokenizer"] = _offline_tokenizer(CLIPTokenizer)
    parts["scheduler"] = EulerAncestralDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="v_prediction",
        timestep_spacing="trailing",
    )
    ramp = torch.linspace(0.0, 1.0, 77)
    return parts, ramp


def _offline_tokenizer(tokenizer_class):
    """A CLIP tokenizer with a two-token vocabulary: the empty prompt is all Zero123++ encodes."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="ds4d_tokenizer_"))
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return tokenizer_class(
        str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token="<|endoftext|>", model_max_length=77
    )
