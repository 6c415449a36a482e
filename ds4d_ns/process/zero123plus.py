"""Zero123++ pseudo views with our own diffusers pipeline (no remote code).

Zero123++ (Shi et al. 2023) turns one image of an object into six views on a fixed camera layout,
generated together as one grid image, 3 x 2 tiles of 320 px (``ds4d_ns.camera_layouts`` has the cameras). It is a
Stable Diffusion 2 UNet (v-prediction) conditioned in two ways:

* **Reference attention.** The condition image's VAE latent, noised to the current timestep, is
  run through the same UNet first; every self-attention layer records its input tokens, and in
  the real (denoising) pass each self-attention also attends to the recorded tokens of the layer.
* **Global embedding.** The CLIP image embedding of the condition image is added to the
  (empty-prompt) text embedding, token ``i`` weighted by a published ramp of 77 coefficients
  (``ramping_coefficients`` in the model's ``model_index.json``).

Conditioning follows the release's own pipeline (``sudo-ai/zero123plus-pipeline``): an RGBA input is
pasted on uint8 grey 127; the VAE branch gets it through the model folder's
``feature_extractor_vae`` processor (shortest edge 512, bilinear, centre crop 512, mean 0.5, std 0.8:
a 64 x 64 reference latent) and CLIP through ``feature_extractor_clip``. Both processors are read
from the model folder, so condition images of any size work (the processors resize them). Latents
and decoded images use Zero123++'s affine rescaling (``LATENT_SHIFT``/``LATENT_SCALE``,
``IMAGE_SCALE``). Classifier-free guidance replaces the reference image by a blank one (zeros after
the processor) and drops the global embedding.

**Noise.** Every random draw of a frame (its reference latent sample, initial latents, the noise
of the reference at each step and the ancestral sampler's noise) comes from a generator seeded by
``seed`` alone (``frame_noise="same"``, the default: every frame starts from the same noise, as
STAG4D does with seed 42 for every frame) or by ``seed + frame`` (``"per-frame"``). So the views of
a frame do not depend on the batch it was generated in, nor on a resumed run.

**Temporal anchor** (``temporal_anchor``), the first frame's attention states kept per denoising
step and layer and mixed into later frames so their views agree over time:

* ``"stag4d"`` (default), STAG4D's mechanism (``guidance/zero123pp/pipeline.py`` of
  zeng-yifei/STAG4D): in the denoising pass only, the first ``9600 / (c / 320)^2`` key/value input
  tokens of every self-attention (``c`` its channel count) are averaged with the first frame's, in
  both guidance branches. At the three upper levels of the UNet these are exactly the generated
  grid image's own tokens (120 x 80 / 4^level); in the 15 x 10 middle block the count exceeds its 150 own
  plus 64 reference tokens, so there all of them are averaged. Here the count is written for any
  UNet as ``image_tokens / (c / c0)^2`` (``c0`` the first block's channels), which is STAG4D's
  formula for the release.
* ``"reference"``: the recorded reference-image tokens (what the denoising pass attends to besides
  itself) are blended with the first frame's instead; the grid image's own tokens are left alone.
* ``"none"``: frames are independent.

``anchor_weight`` is the first frame's share (STAG4D: 0.5). The parts are loaded with
``from_pretrained`` from the release's subfolders; a model neither in a local folder nor in the
Hugging Face cache fails at once when the hub cannot be reached. What could not be checked here is
the output quality with the released weights (none can be downloaded on our machines).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Literal, Optional, Sequence, Tuple

import numpy as np
import torch
from jaxtyping import Float, UInt8
from torch import Tensor

from ds4d_ns.errors import WeightsUnavailable
from ds4d_ns.guidance.zero123 import CLIP_IMAGE_PROCESSOR, STABLE_DIFFUSION_VAE, clip_image_processor_class
from ds4d_ns.options import WeightsMode, Zero123PlusRelease

if TYPE_CHECKING:  # annotations only: the loaders import diffusers and transformers when called
    from diffusers import AutoencoderKL, EulerAncestralDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection
    from transformers.image_processing_utils import BaseImageProcessor

LATENT_SHIFT, LATENT_SCALE = 0.22, 0.75
"""Zero123++ latents are ``(vae_latent * vae_scaling - 0.22) * 0.75``."""
IMAGE_SCALE = 0.8 / 0.5
"""Zero123++ decodes to images scaled by 0.5 / 0.8; multiplying by this undoes it."""
GREY = 0.5
"""Zero123++ paints its views on mid grey (what the matting of generated views keys on)."""
CONDITION_GREY_U8 = 127
"""Background an RGBA condition image is pasted on (the release's ``to_rgb_image``: uint8 127)."""
RELEASES = {"v1.2": "sudo-ai/zero123plus-v1.2", "v1.1": "sudo-ai/zero123plus-v1.1"}
RELEASE_SUBFOLDERS = (
    "unet",
    "vae",
    "text_encoder",
    "tokenizer",
    "vision_encoder",
    "scheduler",
    "feature_extractor_vae",
    "feature_extractor_clip",
)
"""Subfolders of a release (plus ``model_index.json``) that the pipeline reads."""
HUB_TIMEOUT_S = 5.0
"""Seconds to wait for the Hugging Face hub to answer before calling it unreachable."""

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
RELEASE_SCHEDULER: Dict[str, object] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "linear",
    "prediction_type": "v_prediction",
    "steps_offset": 1,
}
"""The releases' ``scheduler/scheduler_config.json`` (EulerAncestralDiscreteScheduler), for random-init."""
RELEASE_VAE_PROCESSOR: Dict[str, object] = {
    "size": {"shortest_edge": 512},
    "crop_size": {"height": 512, "width": 512},
    "resample": 2,
    "do_center_crop": True,
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.8, 0.8, 0.8],
}
"""The releases' ``feature_extractor_vae/preprocessor_config.json`` (CLIPImageProcessor), for random-init."""
RELEASE_CLIP_PROCESSOR: Dict[str, object] = dict(CLIP_IMAGE_PROCESSOR)
"""CLIP's standard preprocessing (``feature_extractor_clip``), for random-init."""

AnchorMode = Literal["stag4d", "reference", "none"]


class PseudoViewWeightsUnavailable(WeightsUnavailable):
    """The Zero123++ weights could not be loaded."""


@dataclass
class Zero123PlusConfig:
    """Zero123++ release, sampling, noise and temporal anchoring."""

    version: Zero123PlusRelease = "v1.2"
    """Release: v1.2 (fov 30, elevations 20/-10, normalised object size) or v1.1 (the input's framing,
    elevations 30/-20; what STAG4D and DS4D use); cameras in ds4d_ns.camera_layouts."""
    model_id: Optional[str] = None
    """Hugging Face id or local folder in the release's layout; None uses sudo-ai's id for the version."""
    weights: WeightsMode = "pretrained"
    """random-init builds the published architecture with random weights (timing only)."""
    num_inference_steps: int = 75
    """Denoising steps (Zero123++ recommends 28 to 75)."""
    guidance_scale: float = 4.0
    """Classifier-free guidance scale."""
    seed: int = 0
    """Seed of every random draw: the same input gives the same views, whatever the batch or a resume."""
    frame_noise: Literal["same", "per-frame"] = "same"
    """same: every frame starts from the same noise (seed), as STAG4D does; per-frame: frame k uses seed + k."""
    temporal_anchor: AnchorMode = "stag4d"
    """Mix the first frame's attention states into later frames: stag4d (the generated grid image's own
    key/value tokens, STAG4D's anchor), reference (the reference-image tokens), or none."""
    anchor_weight: float = 0.5
    """Share of the first frame's tokens in the anchor's average (STAG4D: 0.5)."""
    tile_size: int = 320
    """Side of one view in pixels (320 for the releases; smaller only for tests)."""

    def resolved_model_id(self) -> str:
        return self.model_id or RELEASES[self.version]


# ---------------------------------------------------------------------- pure helpers
def on_grey(image: UInt8[np.ndarray, "h w c"]) -> UInt8[np.ndarray, "h w 3"]:
    """An RGB or RGBA uint8 image as Zero123++ sees it: RGBA pasted on grey 127 (PIL's rounding, as the
    release's ``to_rgb_image``); RGB unchanged."""
    from PIL import Image

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"condition images are uint8 RGB or RGBA (h, w, 3|4), got {image.dtype} {image.shape}")
    if image.shape[2] == 3:
        return image
    rgba = Image.fromarray(image, mode="RGBA")
    canvas = Image.new("RGB", rgba.size, (CONDITION_GREY_U8,) * 3)
    canvas.paste(rgba, mask=rgba.getchannel("A"))
    return np.asarray(canvas)


def stag4d_anchor_tokens(channels: int, image_tokens: int, base_channels: int) -> int:
    """How many leading key/value tokens STAG4D's anchor averages in a self-attention of ``channels``.

    STAG4D hard-codes ``9600 / (channels // 320) ** 2`` for the release: 9600 = 120 x 80 latent tokens of
    the 960 x 640 grid image, 320 the first block's channels. ``image_tokens`` and ``base_channels`` generalise
    both so that tiny test models get the same rule.
    """
    return image_tokens // max(channels // base_channels, 1) ** 2


def blend_anchor(tokens: Tensor, anchor: Tensor, weight: float) -> Tensor:
    """``(1 - weight) * tokens + weight * anchor`` (STAG4D's ``(anchor + tokens) / 2`` at weight 0.5)."""
    return (1.0 - weight) * tokens + weight * anchor


@dataclass
class AnchorCache:
    """The first frame's anchored tokens per denoising step and layer, filled by the first call that gets
    this cache (from the first image of that call), read by every later call."""

    steps: List[Dict[str, Tensor]] = field(default_factory=list)


class ReferenceAttentionState:
    """What the self-attention processors do in the current UNet call, and the tokens they share."""

    def __init__(self) -> None:
        self.mode: Literal["off", "record", "attend"] = "off"
        self.tokens: Dict[str, Tensor] = {}
        self.anchor_mode: AnchorMode = "none"
        self.anchor_weight = 0.5
        self.anchor: Optional[Dict[str, Tensor]] = None
        """The anchor frame's tokens for this step, per layer ([2, n, c]: guidance halves)."""
        self.record: Optional[Dict[str, Tensor]] = None
        """Set when this call holds the anchor frame (its first image): its tokens are stored here."""
        self.batch = 1
        self.image_tokens = 0
        """Latent tokens of the generated grid image at the UNet's first level."""
        self.base_channels = 1

    def anchored(self, name: str, tokens: Tensor, count: int) -> Tensor:
        """``tokens`` ([2 b, n, c]: unconditional rows then conditional rows) with the first ``count``
        tokens of every image blended with the anchor frame's."""
        head, rows = tokens[:, :count], [0, self.batch]
        if self.record is not None:
            self.record[name] = head[rows]
            anchor = self.record[name]
        elif self.anchor is not None:
            anchor = self.anchor[name]
        else:
            return tokens
        blended = blend_anchor(head, anchor.repeat_interleave(self.batch, dim=0), self.anchor_weight)
        if self.record is not None:
            blended[rows] = head[rows]  # the anchor frame itself stays exactly as it is
        return torch.cat([blended, tokens[:, count:]], dim=1)


class ReferenceAttentionProcessor:
    """Self-attention that records its input tokens, or also attends to the recorded ones."""

    def __init__(self, name: str, state: ReferenceAttentionState) -> None:
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.name, self.state, self.inner = name, state, AttnProcessor2_0()

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        state = self.state
        if state.mode == "record":
            state.tokens[self.name] = hidden_states
        elif state.mode == "attend":
            reference = state.tokens[self.name]
            if state.anchor_mode == "reference":
                reference = state.anchored(self.name, reference, reference.shape[1])
            context = torch.cat([hidden_states, reference], dim=1)
            if state.anchor_mode == "stag4d":
                count = stag4d_anchor_tokens(context.shape[-1], state.image_tokens, state.base_channels)
                context = state.anchored(self.name, context, min(count, context.shape[1]))
            encoder_hidden_states = context
        return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


@dataclass
class Zero123PlusParts:
    """What a Zero123++ release is made of (the folders of its repository), loaded or built at random."""

    vae: AutoencoderKL
    unet: UNet2DConditionModel
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    vision_encoder: CLIPVisionModelWithProjection
    scheduler: EulerAncestralDiscreteScheduler
    vae_processor: BaseImageProcessor
    """Pixels for the VAE (the release's ``feature_extractor_vae``; a ``CLIPImageProcessor``, PIL backend)."""
    clip_processor: BaseImageProcessor
    """Pixels for the CLIP vision encoder (``feature_extractor_clip``; the same class)."""


class Zero123PlusPipeline:
    """Six pseudo views per input image (see the module docstring)."""

    def __init__(self, parts: Zero123PlusParts, ramp: Tensor, config: Zero123PlusConfig, device) -> None:
        self.config = config
        self.device = torch.device(device)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.vae, self.unet = parts.vae, parts.unet
        self.text_encoder, self.tokenizer = parts.text_encoder, parts.tokenizer
        self.vision_encoder, self.scheduler = parts.vision_encoder, parts.scheduler
        self.vae_processor, self.clip_processor = parts.vae_processor, parts.clip_processor
        for module in (self.vae, self.unet, self.text_encoder, self.vision_encoder):
            module.to(self.device, self.dtype).eval().requires_grad_(False)
        self.ramp = ramp.to(self.device, self.dtype)
        self.reference = ReferenceAttentionState()
        self.unet.set_attn_processor(
            {
                name: ReferenceAttentionProcessor(name, self.reference) if name.endswith("attn1.processor") else proc
                for name, proc in self.unet.attn_processors.items()
            }
        )
        self.vae_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self._blank_posterior: Optional[Tuple[Tensor, Tensor]] = None

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, config: Zero123PlusConfig, device) -> "Zero123PlusPipeline":
        """Load the release's parts (or build random ones); raise at once, naming the model, when impossible."""
        if config.weights == "random-init":
            parts, ramp = _random_parts()
        else:
            parts, ramp = _load_release(config.resolved_model_id())
        return cls(parts, ramp, config, device)

    # ------------------------------------------------------------------ noise
    def generators(self, frames: Sequence[int]) -> List[torch.Generator]:
        """One CPU generator per image, seeded by the seed alone (or seed + frame with per-frame noise)."""
        per_frame = self.config.frame_noise == "per-frame"
        return [torch.Generator().manual_seed(self.config.seed + (frame if per_frame else 0)) for frame in frames]

    def _randn(self, generators: List[torch.Generator], shape: Sequence[int]) -> Tensor:
        """A [len(generators), *shape] standard normal sample, each row from its own generator (on the CPU,
        so the numbers are the same on every device)."""
        rows = [torch.randn(tuple(shape), generator=generator) for generator in generators]
        return torch.stack(rows).to(self.device)

    # ------------------------------------------------------------------ conditioning
    def preprocess(self, images: Sequence[np.ndarray]) -> Tuple[Float[Tensor, "b 3 hv wv"], Float[Tensor, "b 3 hc wc"]]:
        """Pixels for the VAE and for CLIP, through the release's two processors."""
        rgb = [on_grey(image) for image in images]
        vae_pixels = self.vae_processor(images=rgb, return_tensors="pt").pixel_values
        clip_pixels = self.clip_processor(images=rgb, return_tensors="pt").pixel_values
        return vae_pixels, clip_pixels

    @torch.no_grad()
    def encode_condition(
        self, images: Sequence[np.ndarray], generators: List[torch.Generator]
    ) -> Tuple[Float[Tensor, "twob 77 d"], Float[Tensor, "twob 4 hr wr"]]:
        """Text-plus-ramped-CLIP hidden states and reference latents, unconditional half first."""
        vae_pixels, clip_pixels = self.preprocess(images)
        embeds = self.vision_encoder(pixel_values=clip_pixels.to(self.device, self.dtype)).image_embeds
        posterior = self.vae.encode(vae_pixels.to(self.device, self.dtype)).latent_dist
        mean, std = posterior.mean.float(), posterior.std.float()
        reference = mean + std * self._randn(generators, mean.shape[1:])
        if self._blank_posterior is None or self._blank_posterior[0].shape[1:] != mean.shape[1:]:
            # the unconditional branch references a blank image (zeros after the processor), as in the release;
            # encoded alone, so that it is the same whatever the batch
            blank = self.vae.encode(torch.zeros_like(vae_pixels[:1]).to(self.device, self.dtype)).latent_dist
            self._blank_posterior = (blank.mean.float(), blank.std.float())
        blank_mean, blank_std = self._blank_posterior
        blank_latents = blank_mean + blank_std * self._randn(generators, mean.shape[1:])
        tokens = self.tokenizer(
            [""], padding="max_length", max_length=self.tokenizer.model_max_length, return_tensors="pt"
        ).input_ids.to(self.device)
        prompt = self.text_encoder(tokens).last_hidden_state.expand(len(images), -1, -1)
        conditional = prompt + embeds[:, None, :] * self.ramp[: prompt.shape[1], None]
        # guidance: the unconditional half has no global embedding and a blank reference image
        return torch.cat([prompt, conditional]), torch.cat([blank_latents, reference])

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def __call__(
        self,
        images: Sequence[np.ndarray],
        anchor: Optional[AnchorCache] = None,
        frames: Optional[Sequence[int]] = None,
    ) -> Float[Tensor, "b 6 tile tile 3"]:
        """Six views of each condition image, as tiles in the release's order (RGB in [0, 1], grey background).

        Args:
            images: uint8 RGB or RGBA arrays (h, w, 3|4) of any size, square crops of the object.
            anchor: temporal-anchor cache shared by the calls of one clip; an empty cache is filled from
                this call's first image (which must then be the clip's first frame).
            frames: the images' frame indices (for per-frame noise); default 0, 1, ...
        """
        batch = len(images)
        frames = list(range(batch)) if frames is None else list(frames)
        if len(frames) != batch:
            raise ValueError(f"{batch} images but {len(frames)} frame indices")
        generators = self.generators(frames)
        hidden, reference_latents = self.encode_condition(images, generators)
        tile, factor = self.config.tile_size, self.vae_factor
        latent_size = (3 * tile // factor, 2 * tile // factor)  # of the grid image: 3 x 2 tiles
        self.scheduler.set_timesteps(self.config.num_inference_steps, device=self.device)
        latents = self._randn(generators, (4, *latent_size)) * self.scheduler.init_noise_sigma
        state = self.reference
        # the anchor frame's tokens per step: read, or recorded by this call when the cache is still empty
        anchor_steps = anchor.steps if anchor is not None and self.config.temporal_anchor != "none" else None
        recording = anchor_steps is not None and not anchor_steps
        state.anchor_mode = self.config.temporal_anchor if anchor_steps is not None else "none"
        state.anchor_weight, state.batch = self.config.anchor_weight, batch
        state.image_tokens = latent_size[0] * latent_size[1]
        state.base_channels = int(self.unet.config.block_out_channels[0])
        try:
            for index, timestep in enumerate(self.scheduler.timesteps):
                # the reference is noised afresh at every step, blank and condition image, from each image's generator
                noise = self._randn(generators, (2, *reference_latents.shape[1:]))
                noise = torch.cat([noise[:, 0], noise[:, 1]])
                noisy_reference = self.scheduler.add_noise(
                    reference_latents, noise, timestep.reshape(1).expand(reference_latents.shape[0])
                )
                noisy_reference = self.scheduler.scale_model_input(noisy_reference, timestep)
                state.mode, state.tokens, state.anchor, state.record = "record", {}, None, None
                self.unet(noisy_reference.to(self.dtype), timestep, encoder_hidden_states=hidden)
                state.mode = "attend"
                record: Optional[Dict[str, Tensor]] = {} if recording else None  # filled by the processors
                if record is not None:
                    state.record = record
                elif anchor_steps is not None:
                    state.anchor = anchor_steps[index]
                model_in = self.scheduler.scale_model_input(torch.cat([latents] * 2), timestep)
                prediction = self.unet(model_in.to(self.dtype), timestep, encoder_hidden_states=hidden).sample.float()
                if record is not None and anchor_steps is not None:
                    anchor_steps.append(record)
                unconditional, conditional = prediction.chunk(2)
                guided = unconditional + self.config.guidance_scale * (conditional - unconditional)
                latents = self.scheduler.step(guided, timestep, latents, generator=generators).prev_sample
        finally:
            state.mode, state.tokens, state.anchor, state.record = "off", {}, None, None
        return self._decode_tiles(latents)

    def _decode_tiles(self, latents: Tensor) -> Float[Tensor, "b 6 tile tile 3"]:
        scaling = float(getattr(self.vae.config, "scaling_factor", 0.18215))
        vae_latents = (latents / LATENT_SCALE + LATENT_SHIFT) / scaling
        image = self.vae.decode(vae_latents.to(self.dtype)).sample.float() * IMAGE_SCALE
        image = ((image.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1)  # [b, 3 tiles high, 2 tiles wide, 3]
        tile = self.config.tile_size
        rows = image.reshape(image.shape[0], 3, tile, 2, tile, 3).permute(0, 1, 3, 2, 4, 5)
        return rows.reshape(image.shape[0], 6, tile, tile, 3)


# ---------------------------------------------------------------------- loading
def _looks_like_path(model_id: str) -> bool:
    """A local path rather than a hub id (``owner/name``)."""
    return model_id.startswith(("/", ".", "~")) or model_id.count("/") > 1 or "\\" in model_id


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def hub_unreachable_reason() -> Optional[str]:
    """Why the Hugging Face hub cannot be used now (offline mode, no connection), or None if it answers.

    One request with a short timeout: ``from_pretrained`` would otherwise retry five times with back-off
    (about 30 s) before failing.
    """
    from huggingface_hub import constants

    if getattr(constants, "HF_HUB_OFFLINE", False):
        return "HF_HUB_OFFLINE is set"
    endpoint = constants.ENDPOINT
    try:
        with urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=HUB_TIMEOUT_S):
            return None
    except urllib.error.HTTPError:
        return None  # the hub answered (even an error status means it can be reached)
    except (OSError, ValueError) as err:
        return f"{endpoint} cannot be reached ({_first_line(getattr(err, 'reason', err))})"


def _missing_message(model_id: str, why: str) -> str:
    return (
        f"Pseudo views need the Zero123++ model '{model_id}': {why}. Ways out: import pseudo views made "
        "elsewhere with --pseudo-views DIR; or pass --model-id LOCAL_DIR, a copy of the release's folder "
        f"({', '.join(RELEASE_SUBFOLDERS)}, model_index.json); or download it once where the hub can be "
        f"reached (`huggingface-cli download {model_id}`) and run again."
    )


def _load_release(model_id: str) -> Tuple[Zero123PlusParts, Tensor]:
    """The release's parts from a local folder, the Hugging Face cache or (only if the hub answers) the hub."""
    folder = Path(model_id).expanduser()
    if folder.is_dir():
        try:
            return _release_parts(str(folder))
        except (OSError, ValueError, KeyError) as err:
            raise PseudoViewWeightsUnavailable(
                _missing_message(model_id, f"this folder is not a complete release ({_first_line(err)})")
            ) from err
    if _looks_like_path(model_id):
        raise PseudoViewWeightsUnavailable(_missing_message(model_id, "no such folder"))
    cached = _cached_snapshot(model_id)
    cache_error: Optional[BaseException] = None
    if cached is not None:
        try:
            return _release_parts(str(cached))
        except (OSError, ValueError, KeyError) as err:  # a partial cache: the hub may complete it
            cache_error = err
    unreachable = hub_unreachable_reason()
    if unreachable is not None:
        where = "it is not in the Hugging Face cache" if cache_error is None else "its cached copy is incomplete"
        raise PseudoViewWeightsUnavailable(_missing_message(model_id, f"{where} and {unreachable}"))
    try:
        return _release_parts(model_id)
    except (OSError, ValueError, KeyError) as err:
        raise PseudoViewWeightsUnavailable(
            _missing_message(model_id, f"it could not be loaded ({_first_line(err)})")
        ) from err


def _cached_snapshot(model_id: str) -> Optional[Path]:
    """The Hugging Face cache's snapshot folder of ``model_id``, without any network request."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model_id, local_files_only=True))
    except (OSError, ValueError):  # not cached, or not a valid hub id
        return None


def _release_parts(source: str) -> Tuple[Zero123PlusParts, Tensor]:
    from diffusers import AutoencoderKL, EulerAncestralDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection

    processor = clip_image_processor_class()
    parts = Zero123PlusParts(
        vae=AutoencoderKL.from_pretrained(source, subfolder="vae"),
        unet=UNet2DConditionModel.from_pretrained(source, subfolder="unet"),
        text_encoder=CLIPTextModel.from_pretrained(source, subfolder="text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(source, subfolder="tokenizer"),
        vision_encoder=CLIPVisionModelWithProjection.from_pretrained(source, subfolder="vision_encoder"),
        # trailing spacing, as the release's README and STAG4D set it (the config says linspace)
        scheduler=EulerAncestralDiscreteScheduler.from_pretrained(
            source, subfolder="scheduler", timestep_spacing="trailing"
        ),
        vae_processor=processor.from_pretrained(source, subfolder="feature_extractor_vae"),
        clip_processor=processor.from_pretrained(source, subfolder="feature_extractor_clip"),
    )
    ramp = torch.tensor(_model_index(source)["ramping_coefficients"], dtype=torch.float32)
    return parts, ramp


def _model_index(model_id: str) -> dict:
    """The release's ``model_index.json`` (local folder or Hugging Face cache/download)."""
    folder = Path(model_id)
    if folder.is_dir():
        return json.loads((folder / "model_index.json").read_text())
    from huggingface_hub import hf_hub_download

    return json.loads(Path(hf_hub_download(model_id, "model_index.json")).read_text())


def _random_parts() -> Tuple[Zero123PlusParts, Tensor]:
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
        vae = AutoencoderKL(**STABLE_DIFFUSION_VAE)
        unet = UNet2DConditionModel(**SD2_UNET)
        text_encoder = CLIPTextModel(CLIPTextConfig(**OPENCLIP_H_TEXT))
        vision_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**CLIP_H_VISION))
    processor = clip_image_processor_class()
    parts = Zero123PlusParts(
        vae=vae,
        unet=unet,
        text_encoder=text_encoder,
        tokenizer=_offline_tokenizer(CLIPTokenizer),
        vision_encoder=vision_encoder,
        scheduler=EulerAncestralDiscreteScheduler(**RELEASE_SCHEDULER, timestep_spacing="trailing"),
        vae_processor=processor(**RELEASE_VAE_PROCESSOR),
        clip_processor=processor(**RELEASE_CLIP_PROCESSOR),
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
