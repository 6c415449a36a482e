"""DINOv2 patch features of images, through transformers.

The backbone is loaded with ``AutoModel.from_pretrained`` from a Hugging Face id or a local
folder. ``weights="random-init"`` builds the same architecture with random weights instead: it
exists for benchmarks on machines that cannot download the weights (timing and memory do not
depend on the weights) and is never a default; every message and result made with it says so.

transformers is imported inside the functions: this module is reachable from nerfstudio's
plugin entry points, which must stay light.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Optional, Tuple

import torch
from jaxtyping import Float
from torch import Tensor

from ds4d_ns.errors import WeightsUnavailable
from ds4d_ns.options import WeightsMode

if TYPE_CHECKING:
    from transformers import PreTrainedModel

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Published architectures of the DINOv2 family (the ``config.json`` of each Hugging Face id), so
# that ``random-init`` needs no download.
DINOV2_ARCHITECTURES: Dict[str, Dict[str, object]] = {
    "facebook/dinov2-small": {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6},
    "facebook/dinov2-base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12},
    "facebook/dinov2-large": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16},
    "facebook/dinov2-giant": {
        "hidden_size": 1536,
        "num_hidden_layers": 40,
        "num_attention_heads": 24,
        "use_swiglu_ffn": True,
    },
}


class FeatureBackboneUnavailable(WeightsUnavailable):
    """The frame-feature backbone's weights could not be loaded."""


@dataclass
class FrameFeatureExtractorConfig:
    """Which backbone computes frame features, at what resolution, and where they are cached."""

    model_id: str = "facebook/dinov2-small"
    """Hugging Face id or local folder of a DINOv2 model (AutoModel). The small model is the default:
    features are reduced to a few dozen channels anyway, and it extracts 30 frames x 7 views in a
    fraction of the time and memory of the larger ones (benchmarks/RESULTS.md)."""
    weights: WeightsMode = "pretrained"
    """``pretrained`` loads the model's weights; ``random-init`` builds its architecture with random
    weights (benchmarks only: the features then carry no semantics)."""
    image_size: int = 448
    """Side of the square image given to the backbone (a multiple of its 14-pixel patch): 448 gives
    a 32 x 32 patch grid."""
    batch_size: int = 16
    """Images per forward pass."""
    cache_dir: Optional[Path] = None
    """Folder of the feature cache; None uses $DS4D_CACHE_DIR, else $XDG_CACHE_HOME/ds4d_ns or ~/.cache/ds4d_ns."""

    def describe(self) -> str:
        """The backbone's name as every log line and result gives it."""
        if self.weights == "random-init":
            return f"{self.model_id} [RANDOM weights, not pretrained]"
        return self.model_id


def backbone_geometry(config: FrameFeatureExtractorConfig) -> Tuple[int, int]:
    """``(channels, patch size)`` of the backbone's patch features, read from its configuration, not its weights.

    Raises:
        FeatureBackboneUnavailable: the model is not a published DINOv2 and its ``config.json`` cannot be read.
    """
    from transformers import AutoConfig, Dinov2Config

    if config.model_id in DINOV2_ARCHITECTURES:
        architecture = Dinov2Config(**DINOV2_ARCHITECTURES[config.model_id])
    else:
        try:
            architecture = AutoConfig.from_pretrained(config.model_id)
        except (OSError, ValueError) as err:
            raise FeatureBackboneUnavailable(
                f"The frame features' model '{config.model_id}' has no readable configuration ({type(err).__name__}); "
                "its config.json gives the feature maps' shape: put the model back where "
                "--pipeline.datamanager.frame-features.extractor.model-id says."
            ) from err
    return int(architecture.hidden_size), int(architecture.patch_size)


def load_backbone(config: FrameFeatureExtractorConfig, device: torch.device | str) -> PreTrainedModel:
    """The backbone in eval mode, fp16 on CUDA and fp32 elsewhere.

    Raises:
        FeatureBackboneUnavailable: the weights (or, for random-init, the architecture) cannot be found;
            the message names the model and the switches that turn frame features off.
    """
    from transformers import AutoConfig, AutoModel, Dinov2Config

    device = torch.device(device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    try:
        if config.weights == "random-init":
            if config.model_id in DINOV2_ARCHITECTURES:
                architecture = Dinov2Config(**DINOV2_ARCHITECTURES[config.model_id])
            else:
                architecture = AutoConfig.from_pretrained(config.model_id)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)  # the same random weights in every run, so cached features stay valid
                model = AutoModel.from_config(architecture)
        else:
            model = AutoModel.from_pretrained(config.model_id)
    except (OSError, ValueError) as err:
        raise FeatureBackboneUnavailable(
            f"Frame features need the model '{config.model_id}' ({config.weights}), which could not be "
            f"loaded: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}\n"
            "Download it once with internet access (Hugging Face caches it), or point "
            "--pipeline.datamanager.frame-features.extractor.model-id at a local copy, or train without frame "
            "features: `ns-train ds4d-base` (or --pipeline.datamanager.frame-features.mode none)."
        ) from err
    return model.to(device=device, dtype=dtype).eval()


def preprocess(
    images: Float[Tensor, "batch height width 3"], image_size: int
) -> Float[Tensor, "batch 3 image_size image_size"]:
    """Resize RGB images in [0, 1] to the backbone's square input and normalise them as ImageNet."""
    pixels = images.permute(0, 3, 1, 2).float()
    pixels = torch.nn.functional.interpolate(
        pixels, size=(image_size, image_size), mode="bicubic", align_corners=False, antialias=True
    ).clamp(0.0, 1.0)
    mean = torch.tensor(IMAGENET_MEAN, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=pixels.device).view(1, 3, 1, 1)
    return (pixels - mean) / std


@torch.no_grad()
def patch_features(
    backbone: PreTrainedModel, pixels: Float[Tensor, "batch 3 size size"]
) -> Float[Tensor, "batch grid grid channels"]:
    """Last-layer patch tokens of the backbone (class and register tokens dropped), as a grid."""
    patch = int(backbone.config.patch_size)
    if pixels.shape[-1] % patch or pixels.shape[-2] % patch:
        raise ValueError(f"image side {tuple(pixels.shape[-2:])} is not a multiple of the {patch}-pixel patch")
    rows, cols = pixels.shape[-2] // patch, pixels.shape[-1] // patch
    parameter = next(backbone.parameters())
    tokens = backbone(pixel_values=pixels.to(device=parameter.device, dtype=parameter.dtype)).last_hidden_state
    patches = tokens[:, -rows * cols :]  # the patch tokens come last, after class/register tokens
    return patches.reshape(pixels.shape[0], rows, cols, -1)
