"""Our Zero123++ pipeline on tiny random-config parts saved in the release's layout (no download)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ds4d_ns.process.zero123plus import (
    AnchorCache,
    PseudoViewWeightsUnavailable,
    Zero123PlusConfig,
    Zero123PlusPipeline,
)


def _pipeline(folder: Path, **overrides) -> Zero123PlusPipeline:
    config = Zero123PlusConfig(model_id=str(folder), num_inference_steps=3, tile_size=16, **overrides)
    return Zero123PlusPipeline.load(config, "cpu")


def test_six_tiles_per_input_in_range_and_deterministic(tiny_zero123plus: Path):
    pipeline = _pipeline(tiny_zero123plus)
    images = torch.rand(2, 24, 24, 3)
    views = pipeline(images)
    assert views.shape == (2, 6, 16, 16, 3)
    assert views.min() >= 0 and views.max() <= 1 and torch.isfinite(views).all()
    torch.testing.assert_close(pipeline(images), views)  # same seed, same views
    assert not torch.allclose(views[0], views[1])  # different inputs, different views


def test_reference_attention_makes_the_views_depend_on_the_input(tiny_zero123plus: Path):
    pipeline = _pipeline(tiny_zero123plus, guidance_scale=1.0)  # conditional branch only
    calls = []
    original = pipeline.unet.forward

    def spy(sample, timestep, encoder_hidden_states, **kwargs):
        calls.append(pipeline.reference.mode)
        return original(sample, timestep, encoder_hidden_states=encoder_hidden_states, **kwargs)

    pipeline.unet.forward = spy
    pipeline(torch.rand(1, 24, 24, 3))
    assert calls == ["record", "attend"] * 3  # a reference pass before every denoising pass
    assert pipeline.reference.mode == "off" and not pipeline.reference.tokens


def test_temporal_anchor_pulls_later_frames_towards_the_first(tiny_zero123plus: Path):
    first, later = torch.rand(1, 24, 24, 3), torch.rand(1, 24, 24, 3)
    plain = _pipeline(tiny_zero123plus)
    anchored = _pipeline(tiny_zero123plus, temporal_anchor=True, anchor_weight=0.9)
    cache = AnchorCache()
    first_anchored = anchored(first, anchor=cache)
    assert len(cache.steps) == 3 and cache.steps[0]
    torch.testing.assert_close(first_anchored, plain(first))  # recording does not change the first frame
    later_plain, later_anchored = plain(later), anchored(later, anchor=cache)
    assert not torch.allclose(later_plain, later_anchored)
    distance_plain = (later_plain - first_anchored).abs().mean()
    distance_anchored = (later_anchored - first_anchored).abs().mean()
    assert distance_anchored < distance_plain


def test_missing_release_names_the_model(tmp_path: Path):
    with pytest.raises(PseudoViewWeightsUnavailable, match="no-such-release"):
        Zero123PlusPipeline.load(Zero123PlusConfig(model_id=str(tmp_path / "no-such-release")), "cpu")


def test_releases_default_to_sudo_ai_ids():
    assert Zero123PlusConfig().resolved_model_id() == "sudo-ai/zero123plus-v1.2"
    assert Zero123PlusConfig(version="v1.1").resolved_model_id() == "sudo-ai/zero123plus-v1.1"
