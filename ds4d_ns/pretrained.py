"""Which pretrained models does a run need, and can this machine get them? All checked at once.

A ds4d method may need the DINOv2 backbone of the frame features, the VGG16 weights of the LPIPS
loss and the Zero123 model of SDS. :func:`require_weights` (called by the pipeline at ``ns-train``
set-up, before anything is loaded) checks every one and stops with one message listing all that
are missing, the switch that turns each off and the configuration without pretrained weights that
fits this machine (``ds4d-base``, or ``ds4d-base-cpu`` without CUDA), instead of failing on the
first, then on the next after the user turned that one off.

A model already in its cache (Hugging Face's or torch's) counts as available without being
loaded, so the check costs nothing on a machine that has them; anything else is loaded (and so
downloaded into the usual caches where the hub can be reached) the way training will load it.

``python -m ds4d_ns.scripts.weights METHOD`` (:mod:`ds4d_ns.scripts.weights`) runs the same check for a
method by name. This module is library code: it never imports the method configurations or the commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from ds4d_ns.errors import WeightsUnavailable

VGG16_CHECKPOINT = "vgg16-397923af.pth"
"""File name under which torchvision caches the ImageNet VGG16 weights LPIPS loads."""
ZERO123_FILES: Tuple[Tuple[str, ...], ...] = tuple(
    alternatives
    for part, weights_name in (
        ("unet", "diffusion_pytorch_model"),
        ("vae", "diffusion_pytorch_model"),
        ("image_encoder", "model"),
        ("clip_camera_projection", "diffusion_pytorch_model"),
    )
    for alternatives in ((f"{part}/config.json",), (f"{part}/{weights_name}.safetensors", f"{part}/{weights_name}.bin"))
) + (("scheduler/scheduler_config.json",), ("feature_extractor/preprocessor_config.json",))
"""Files of a diffusers-layout Zero123 repository that loading reads (any one of each tuple)."""
TRANSFORMERS_FILES: Tuple[Tuple[str, ...], ...] = (("config.json",), ("model.safetensors", "pytorch_model.bin"))
"""Files of a transformers model repository that loading reads (any one of each tuple)."""


@dataclass(frozen=True)
class MissingWeight:
    """One pretrained model a run needs and cannot load."""

    model: str
    """The model as the user knows it, e.g. ``DINOv2 'facebook/dinov2-small'``."""
    purpose: str
    """What in the run uses it."""
    switch: str
    """The flag that turns that part off."""
    detail: str
    """The loader's full message (why, and where to put a local copy)."""


def _hub_cached(model_id: str, files: Sequence[Tuple[str, ...]]) -> bool:
    """Whether a Hugging Face id or local folder has every file in ``files`` (any of each tuple)."""
    folder = Path(model_id)
    if folder.is_dir():
        return all(any((folder / name).is_file() for name in alternatives) for alternatives in files)
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return all(
            any(isinstance(try_to_load_from_cache(model_id, name), str) for name in alternatives)
            for alternatives in files
        )
    except ValueError:  # not a valid repository id: loading will say so
        return False


def _first_failure(load: Callable[[], object]) -> Optional[str]:
    try:
        load()
    except WeightsUnavailable as err:
        return str(err)
    return None


def _download_zero123(model_id: str) -> None:
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(model_id)
    except Exception as err:  # any hub, network or disk failure means "not available"
        raise WeightsUnavailable(
            f"SDS needs the Zero123 model '{model_id}', which could not be downloaded "
            f"({type(err).__name__}); turn SDS off with --pipeline.model.sds.weight 0."
        ) from err


def find_missing_weights(pipeline_config) -> List[MissingWeight]:
    """Every pretrained model ``pipeline_config`` (a ds4d pipeline's: its datamanager's frame features, its
    model's priors) needs and cannot load."""
    missing: List[MissingWeight] = []
    model_config = pipeline_config.model
    frame_features = pipeline_config.datamanager.frame_features
    features = frame_features.extractor
    if frame_features.enabled:
        from ds4d_ns.features.backbone import load_backbone

        cached = features.weights == "pretrained" and _hub_cached(features.model_id, TRANSFORMERS_FILES)
        problem = None if cached else _first_failure(lambda: load_backbone(features, "cpu"))
        if problem:
            missing.append(
                MissingWeight(
                    f"DINOv2 '{features.model_id}'",
                    "frame features",
                    "--pipeline.datamanager.frame-features.mode none",
                    problem,
                )
            )
    if model_config.lpips_loss_weight > 0 and model_config.lpips_backbone == "pretrained":
        import torch

        from ds4d_ns.losses.perceptual import build_lpips_vgg

        cached = (Path(torch.hub.get_dir()) / "checkpoints" / VGG16_CHECKPOINT).is_file()
        problem = None if cached else _first_failure(lambda: build_lpips_vgg(model_config.lpips_backbone))
        if problem:
            missing.append(
                MissingWeight("torchvision VGG16", "LPIPS loss", "--pipeline.model.lpips-loss-weight 0", problem)
            )
    if model_config.sds.weight > 0 and model_config.sds.weights == "pretrained":
        model_id = model_config.sds.model_id
        problem = None
        if not Path(model_id).is_dir() and not _hub_cached(model_id, ZERO123_FILES):
            problem = _first_failure(lambda: _download_zero123(model_id))
        if problem:
            missing.append(MissingWeight(f"Zero123 '{model_id}'", "SDS", "--pipeline.model.sds.weight 0", problem))
    return missing


def missing_weights(pipeline_config) -> List[str]:
    """Messages, one per pretrained model the pipeline configuration needs and cannot load."""
    return [missing.detail for missing in find_missing_weights(pipeline_config)]


def weightless_method(cuda: Optional[bool] = None) -> str:
    """The method that needs no pretrained weights and fits this machine (None: look for CUDA)."""
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    return "ds4d-base" if cuda else "ds4d-base-cpu"


def summarize_missing(missing: Sequence[MissingWeight], fallback: str) -> str:
    """One line: every missing model with what uses it and its switch, then the ways out."""
    listed = ", ".join(f"{m.model} ({m.purpose}; off: {m.switch})" for m in missing)
    return (
        f"pretrained weights missing: {listed}. Download them once with internet access (they are cached), "
        f"turn those parts off with the flags above, or train `ns-train {fallback}`, which needs none "
        "(`python -m ds4d_ns.scripts.weights METHOD` checks)."
    )


def require_weights(pipeline_config, cuda: Optional[bool] = None) -> None:
    """Stop, listing all of them at once, when any pretrained model the run needs is missing.

    Raises:
        WeightsUnavailable: the message names every missing model, its switch and the fallback
            configuration for this machine.
    """
    missing = find_missing_weights(pipeline_config)
    if missing:
        raise WeightsUnavailable(summarize_missing(missing, weightless_method(cuda)))
