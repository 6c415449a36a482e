"""The settings of multi-view SDS with Zero123, owned by neither side that reads them.

The model's config holds them, :mod:`ds4d_ns.guidance.priors` turns them into a training loss, and
:mod:`ds4d_ns.guidance.zero123` loads the model they name; both import them from here, so neither
guidance module needs the other to describe its settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ds4d_ns.guidance.sds import TimestepSchedule
from ds4d_ns.options import WeightsMode


@dataclass
class SdsConfig:
    """Every setting of multi-view SDS with Zero123: its weights, the views it renders, the model and its schedule."""

    weight: float = 0.0
    """Weight of the whole SDS term (lambda_1 of the paper, which uses 1.0); 0 turns SDS off."""
    pseudo_condition_weight: float = 5e-5
    """alpha_1: scale of SDS samples conditioned on a pseudo view. The paper gives no value; this keeps
    SDS's share of the loss at STAG4D's ratio to the photometric term (1 to 20000)."""
    input_condition_weight: float = 5e-5
    """alpha_2: scale of SDS samples conditioned on the input frame."""
    input_probability: float = 0.6
    """Probability of conditioning on the input frame when the SDS view is not near the front (STAG4D)."""
    elevation_range: float = 30.0
    """SDS views sit at the input's elevation plus an offset uniform in [-range, range] degrees (STAG4D)."""
    seed: int = 0
    """Seed of the SDS view sampling."""
    model_id: str = "ashawkey/zero123-xl-diffusers"
    """Hugging Face id or local folder of Zero123 in the diffusers layout (unet, vae, image_encoder,
    feature_extractor, clip_camera_projection, scheduler subfolders)."""
    weights: WeightsMode = "pretrained"
    """``pretrained`` loads the weights; ``random-init`` builds the architecture with random weights
    (timing benchmarks only: its gradients are noise)."""
    guidance_scale: float = 5.0
    """Classifier-free guidance scale (STAG4D)."""
    resolution: int = 256
    """Renders are made at, and resized to, this square size for VAE encoding (Zero123's training size)."""
    schedule: TimestepSchedule = field(default_factory=TimestepSchedule)
    """Timestep range, annealed over the SDS steps."""
    gradient_clip: Optional[float] = 1.0
    """Clamp of each latent-gradient entry (None: no clamp); non-finite entries are always zeroed."""

    def describe(self) -> str:
        """The Zero123 model as every log line and result names it."""
        if self.weights == "random-init":
            return f"{self.model_id} [RANDOM weights, not pretrained]"
        return self.model_id
