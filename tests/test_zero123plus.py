"""Our Zero123++ pipeline on tiny random-config parts saved in the release's layout (no download):
conditioning through the release's processors, noise from the seed alone, both temporal anchors,
and a missing model reported at once."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
import torch
from conftest import save_tiny_zero123plus, save_zero123plus_processors

from ds4d_ns.guidance.zero123 import clip_image_processor_class
from ds4d_ns.process.zero123plus import (
    AnchorCache,
    PseudoViewWeightsUnavailable,
    ReferenceAttentionProcessor,
    Zero123PlusConfig,
    Zero123PlusPipeline,
    on_grey,
    stag4d_anchor_tokens,
)


def _pipeline(folder: Path, **overrides: Any) -> Zero123PlusPipeline:
    settings: Dict[str, Any] = dict(model_id=str(folder), num_inference_steps=3, tile_size=16)
    settings.update(overrides)
    return Zero123PlusPipeline.load(Zero123PlusConfig(**settings), "cpu")


def _images(count: int, seed: int = 0, sizes=(24, 40, 33, 64, 20)) -> List[np.ndarray]:
    """RGBA crops of different square sizes, as ds4d-process passes them (source resolution)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (sizes[i % len(sizes)],) * 2 + (4,), dtype=np.uint8) for i in range(count)]


@pytest.fixture(scope="module")
def release_sized(tmp_path_factory) -> Path:
    """The tiny release with the VAE processor at the release's own size (512 px) and a VAE of the release's
    factor 8 (a tiny one of factor 2 would spend minutes in its mid-block attention over 256 x 256 tokens)."""
    from diffusers import AutoencoderKL

    folder = save_tiny_zero123plus(tmp_path_factory.mktemp("tiny_zero123plus_512"))
    torch.manual_seed(0)
    AutoencoderKL(
        block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=32,
    ).save_pretrained(folder / "vae")
    return save_zero123plus_processors(folder, vae_size=512, clip_size=28)


def test_six_tiles_per_input_of_any_size_in_range_and_deterministic(tiny_zero123plus: Path):
    pipeline = _pipeline(tiny_zero123plus)
    images = _images(2)
    views = pipeline(images)
    assert views.shape == (2, 6, 16, 16, 3)
    assert views.min() >= 0 and views.max() <= 1 and torch.isfinite(views).all()
    torch.testing.assert_close(pipeline(images), views)  # same seed, same views
    assert not torch.allclose(views[0], views[1])  # different inputs, different views


def test_reference_attention_makes_the_views_depend_on_the_input(tiny_zero123plus: Path):
    pipeline = _pipeline(tiny_zero123plus, guidance_scale=1.0)
    calls = []
    original = pipeline.unet.forward

    def spy(sample, timestep, encoder_hidden_states, **kwargs):
        calls.append(pipeline.reference.mode)
        return original(sample, timestep, encoder_hidden_states=encoder_hidden_states, **kwargs)

    pipeline.unet.forward = spy
    pipeline(_images(1))
    assert calls == ["record", "attend"] * 3  # a reference pass before every denoising pass
    assert pipeline.reference.mode == "off" and not pipeline.reference.tokens


# ---------------------------------------------------------------------- conditioning (defect 2)
def test_conditioning_goes_through_the_releases_processors(release_sized: Path):
    """The VAE sees the processor's 512 px crop with mean 0.5 / std 0.8 (a 64 x 64 reference latent), CLIP
    sees its own processor's pixels, RGBA is pasted on grey 127."""
    pipeline = _pipeline(release_sized)
    seen: Dict[str, torch.Tensor] = {}
    encode, vision = pipeline.vae.encode, pipeline.vision_encoder.forward

    def spy_encode(pixels, *args, **kwargs):
        seen.setdefault("vae", pixels.clone())
        return encode(pixels, *args, **kwargs)

    def spy_vision(pixel_values=None, **kwargs):
        seen["clip"] = pixel_values.clone()
        return vision(pixel_values=pixel_values, **kwargs)

    pipeline.vae.encode, pipeline.vision_encoder.forward = spy_encode, spy_vision
    image = np.zeros((300, 300, 4), dtype=np.uint8)
    image[..., :3], image[..., 3] = (255, 102, 0), 255
    image[:, :150, 3] = 0  # the left half is transparent: Zero123++ sees grey 127 there
    hidden, reference = pipeline.encode_condition([image], pipeline.generators([0]))

    assert seen["vae"].shape == (1, 3, 512, 512)
    assert pipeline.vae_factor == 8 and reference.shape == (2, 4, 64, 64)  # blank and condition image
    expected = (torch.tensor([255.0, 102.0, 0.0]) / 255 - 0.5) / 0.8  # contrast of the release (not [-1, 1])
    torch.testing.assert_close(seen["vae"][0, :, 256, 400], expected)
    torch.testing.assert_close(seen["vae"][0, :, 256, 100], torch.full((3,), (127 / 255 - 0.5) / 0.8))
    processor = clip_image_processor_class()
    rgb = on_grey(image)
    for branch, subfolder in (("vae", "feature_extractor_vae"), ("clip", "feature_extractor_clip")):
        reference_processor = processor.from_pretrained(release_sized, subfolder=subfolder)
        torch.testing.assert_close(seen[branch], reference_processor(images=[rgb], return_tensors="pt").pixel_values)
    assert seen["clip"].shape == (1, 3, 28, 28)
    assert hidden.shape[0] == 2


# ---------------------------------------------------------------------- noise (defect 4)
def test_views_depend_on_the_seed_alone_not_on_batch_or_resume(tiny_zero123plus: Path):
    pipeline = _pipeline(tiny_zero123plus)  # default anchor: stag4d
    images = _images(4)
    cache = AnchorCache()
    alone = torch.cat([pipeline([image], anchor=cache, frames=[f]) for f, image in enumerate(images)])
    cache = AnchorCache()
    batched = torch.cat([pipeline(images[:3], anchor=cache, frames=[0, 1, 2]), pipeline(images[3:], anchor=cache)])
    cache = AnchorCache()
    pipeline(images[:1], anchor=cache, frames=[0])  # a resumed run records the anchor frame again
    resumed = pipeline(images[2:], anchor=cache, frames=[2, 3])
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(resumed, alone[2:], atol=1e-5, rtol=0)


def test_every_frame_starts_from_the_same_noise_unless_per_frame(tiny_zero123plus: Path):
    image = _images(1)[0]
    same = _pipeline(tiny_zero123plus, temporal_anchor="none")([image, image, image], anchor=None, frames=[0, 1, 5])
    torch.testing.assert_close(same[1], same[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(same[2], same[0], atol=1e-5, rtol=0)
    per_frame = _pipeline(tiny_zero123plus, temporal_anchor="none", frame_noise="per-frame")
    views = per_frame([image, image], frames=[0, 1])
    assert not torch.allclose(views[0], views[1], atol=1e-3)
    torch.testing.assert_close(per_frame([image], frames=[1])[0], views[1], atol=1e-5, rtol=0)


def test_generated_pseudo_views_are_the_same_for_any_batch_size_and_on_resume(tiny_zero123plus: Path, tmp_path):
    from PIL import Image

    from ds4d_ns.process.run import ProcessConfig, _generate_pseudo_views

    pipeline = _pipeline(tiny_zero123plus)
    images = _images(3)

    def matting(tile: np.ndarray) -> np.ndarray:
        rgb = (np.clip(tile, 0, 1) * 255).round().astype(np.uint8)
        return np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=-1)

    def run(name: str, batch_size: int, todo: List[int]) -> np.ndarray:
        out = tmp_path / name
        config = ProcessConfig(
            input=tmp_path, output=out, resolution=12, batch_size=batch_size, zero123plus=pipeline.config
        )
        _generate_pseudo_views(config, out, images, todo, pipeline, matting)
        return np.stack(
            [
                np.asarray(Image.open(out / f"images/pseudo_{view:02d}/frame_{frame:04d}.png"), dtype=np.int16)
                for frame in todo
                for view in range(6)
            ]
        )

    one = run("one", 1, [0, 1, 2])
    assert one.shape == (18, 12, 12, 4)
    assert np.abs(run("two", 2, [0, 1, 2]) - one).max() <= 1  # rounding to 8 bits at most
    assert np.abs(run("resumed", 2, [2]) - one[12:]).max() <= 1


# ---------------------------------------------------------------------- temporal anchor (defect 5)
def _spy_attention(pipeline: Zero123PlusPipeline) -> list:
    """Record, for every self-attention in a denoising pass: (layer, its own tokens, the reference tokens,
    the key/value tokens it actually got)."""
    seen: list = []
    for name, processor in pipeline.unet.attn_processors.items():
        if isinstance(processor, ReferenceAttentionProcessor):
            inner = processor.inner

            def spy(attn, hidden, context=None, mask=None, temb=None, inner=inner, name=name):
                if pipeline.reference.mode == "attend":
                    seen.append((name, hidden.clone(), pipeline.reference.tokens[name].clone(), context.clone()))
                return inner(attn, hidden, context, mask, temb)

            processor.inner = spy
    return seen


def test_stag4d_anchor_averages_the_grid_images_own_key_value_tokens_with_the_first_frames(tiny_zero123plus: Path):
    assert Zero123PlusConfig().temporal_anchor == "stag4d"
    first, later = _images(1, seed=1), _images(2, seed=2)
    pipeline = _pipeline(tiny_zero123plus)
    seen = _spy_attention(pipeline)
    cache = AnchorCache()
    pipeline(first, anchor=cache)
    recorded = list(seen)
    seen.clear()
    pipeline(later, anchor=cache)
    assert len(seen) == len(recorded) > 0 and len(cache.steps) == 3
    for (name, own, reference, context), (anchor_name, anchor_own, anchor_reference, _) in zip(seen, recorded):
        assert name == anchor_name
        count = own.shape[1]  # the generated grid image's own tokens; the reference tokens follow them
        anchor = torch.cat([anchor_own, anchor_reference], dim=1)[:, :count]  # [2: unconditional, conditional]
        expected_head = 0.5 * own + 0.5 * anchor.repeat_interleave(2, dim=0)
        torch.testing.assert_close(context[:, :count], expected_head)
        torch.testing.assert_close(context[:, count:], reference)  # the reference image's tokens are not touched
    for name, own, reference, context in recorded:  # the first frame attends to its own tokens only
        torch.testing.assert_close(context, torch.cat([own, reference], dim=1))


def test_stag4d_token_count_is_the_grid_images_at_every_level_of_the_release():
    # the release: a 960 x 640 grid image is 120 x 80 latent tokens at 320 channels; 60 x 40 at 640; 30 x 20 at 1280
    assert [stag4d_anchor_tokens(c, 9600, 320) for c in (320, 640, 1280)] == [9600, 2400, 600]
    # the 15 x 10 middle block (1280 channels) has 150 own + 64 reference tokens: STAG4D averages them all
    assert stag4d_anchor_tokens(1280, 9600, 320) > 150 + 8 * 8


def test_reference_anchor_blends_the_first_frames_reference_tokens(tiny_zero123plus: Path):
    first, later = _images(1, seed=1), _images(2, seed=2)
    pipeline = _pipeline(tiny_zero123plus, temporal_anchor="reference", anchor_weight=0.25)
    seen = _spy_attention(pipeline)
    cache = AnchorCache()
    pipeline(first, anchor=cache)
    recorded = list(seen)
    seen.clear()
    pipeline(later, anchor=cache)
    assert len(seen) == len(recorded) > 0
    for (name, own, reference, context), (_, _, anchor_reference, _) in zip(seen, recorded):
        count = own.shape[1]
        torch.testing.assert_close(context[:, :count], own)  # the grid image's own tokens are not touched
        expected = 0.75 * reference + 0.25 * anchor_reference.repeat_interleave(2, dim=0)
        torch.testing.assert_close(context[:, count:], expected)
    for name, own, reference, context in recorded:
        torch.testing.assert_close(context, torch.cat([own, reference], dim=1))


def test_anchor_leaves_the_first_frame_and_changes_later_ones(tiny_zero123plus: Path):
    first, later = _images(1, seed=1), _images(1, seed=2)
    plain = _pipeline(tiny_zero123plus, temporal_anchor="none")
    plain_first, plain_later = plain(first), plain(later)
    for mode in ("stag4d", "reference"):
        anchored = _pipeline(tiny_zero123plus, temporal_anchor=mode, anchor_weight=0.9)
        cache = AnchorCache()
        torch.testing.assert_close(anchored(first, anchor=cache), plain_first)
        assert not torch.allclose(anchored(later, anchor=cache), plain_later, atol=1e-4)


# ---------------------------------------------------------------------- missing weights (issue 15)
def test_a_missing_local_release_names_the_folder_and_the_ways_out(tmp_path: Path):
    with pytest.raises(PseudoViewWeightsUnavailable, match="no-such-release") as error:
        Zero123PlusPipeline.load(Zero123PlusConfig(model_id=str(tmp_path / "no-such-release")), "cpu")
    assert "--pseudo-views DIR" in str(error.value) and "--model-id LOCAL_DIR" in str(error.value)


def test_an_incomplete_local_release_says_what_is_missing(tiny_zero123plus: Path, tmp_path: Path):
    folder = tmp_path / "release"
    shutil.copytree(tiny_zero123plus, folder)
    shutil.rmtree(folder / "feature_extractor_vae")
    with pytest.raises(PseudoViewWeightsUnavailable, match="not a complete release"):
        Zero123PlusPipeline.load(Zero123PlusConfig(model_id=str(folder)), "cpu")


def test_an_unreachable_hub_fails_at_once_without_retries(monkeypatch):
    """Without the model in the cache and without a connection, say so in one request, not after five
    retries with back-off (about 30 s)."""
    import urllib.error
    import urllib.request

    from huggingface_hub import constants

    from ds4d_ns.process import zero123plus

    requests: list = []

    def no_network(request, timeout=None):
        requests.append((request.full_url, timeout))
        raise urllib.error.URLError(OSError(-2, "Name or service not known"))

    def no_loading(source):
        raise AssertionError(f"tried to load {source} from the hub")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(zero123plus, "_release_parts", no_loading)
    started = time.perf_counter()
    with pytest.raises(PseudoViewWeightsUnavailable) as error:
        Zero123PlusPipeline.load(Zero123PlusConfig(model_id="nobody/zero123plus-not-cached"), "cpu")
    assert time.perf_counter() - started < 5.0 and len(requests) == 1
    message = str(error.value)
    assert "nobody/zero123plus-not-cached" in message and "cannot be reached" in message
    assert "--pseudo-views DIR" in message and "--model-id LOCAL_DIR" in message


def test_offline_mode_fails_at_once_naming_the_model():
    """The test session runs with HF_HUB_OFFLINE=1 (conftest)."""
    with pytest.raises(PseudoViewWeightsUnavailable, match="HF_HUB_OFFLINE") as error:
        Zero123PlusPipeline.load(Zero123PlusConfig(version="v1.1"), "cpu")
    assert "sudo-ai/zero123plus-v1.1" in str(error.value) and "--pseudo-views DIR" in str(error.value)


def test_releases_default_to_sudo_ai_ids():
    assert Zero123PlusConfig().resolved_model_id() == "sudo-ai/zero123plus-v1.2"
    assert Zero123PlusConfig(version="v1.1").resolved_model_id() == "sudo-ai/zero123plus-v1.1"
