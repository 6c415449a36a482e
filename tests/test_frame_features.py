"""Frame features: DSFD maths against a slow reference, PCA, the DINOv2 loader on tiny offline
models, the on-disk cache, and the frame/view grid of a dataset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ds4d_ns.features import dsfd
from ds4d_ns.features.backbone import (
    FeatureBackboneUnavailable,
    FrameFeatureExtractorConfig,
    load_backbone,
    patch_features,
    preprocess,
)
from ds4d_ns.features.frame_features import (
    cache_key,
    extract_raw_features,
    frame_grid_from_dataset,
    prepare_features,
)
from ds4d_ns.features.pca import fit_pca


def _features(frames=5, views=3, patches=4, channels=6, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(frames, views, patches, channels, generator=generator, dtype=torch.float64)


# ---------------------------------------------------------------- DSFD
def test_static_plus_dynamic_is_the_frame_feature():
    features = _features()
    static, dynamic = dsfd.decouple(features, dsfd.reference_features(features, 2))
    torch.testing.assert_close(static + dynamic, features)


def test_dynamic_part_is_orthogonal_to_the_reference():
    features = _features()
    reference = dsfd.reference_features(features, 2)
    _, dynamic = dsfd.decouple(features, reference)
    dots = (dynamic * reference).sum(dim=-1)
    torch.testing.assert_close(dots, torch.zeros_like(dots), atol=1e-10, rtol=0)


def test_static_part_is_parallel_to_the_reference():
    features = _features()
    reference = dsfd.reference_features(features, 2)
    static, _ = dsfd.decouple(features, reference)
    cosine = torch.nn.functional.cosine_similarity(static, reference.expand_as(static), dim=-1).abs()
    torch.testing.assert_close(cosine, torch.ones_like(cosine))


def test_a_frame_equal_to_the_reference_has_no_dynamic_part():
    features = _features()
    _, dynamic = dsfd.decouple(features, dsfd.reference_features(features, 2, mode="middle"))
    assert dynamic[2].abs().max() < 1e-12
    assert dynamic[0].abs().max() > 0.1  # other frames do move


def test_a_scaled_reference_counts_as_static():
    features = _features()
    reference = dsfd.reference_features(features, 2)
    features[3] = -2.5 * reference  # brighter or darker, same direction: static
    _, dynamic = dsfd.decouple(features, reference)
    assert dynamic[3].abs().max() < 1e-12


def test_reference_modes_match_their_definitions():
    features = _features()
    torch.testing.assert_close(dsfd.reference_features(features, 1, "middle"), features[1])
    torch.testing.assert_close(dsfd.reference_features(features, 1, "mean"), features.mean(dim=0))
    torch.testing.assert_close(
        dsfd.reference_features(features, 1, "middle+mean"), 0.5 * (features[1] + features.mean(dim=0))
    )
    with pytest.raises(ValueError, match="outside"):
        dsfd.reference_features(features, 5)


def test_decoupling_matches_the_projection_matrix_reference():
    features = _features(frames=4, views=2, patches=3, channels=5)
    reference = dsfd.reference_features(features, 1)
    fast = dsfd.decouple(features, reference)
    slow = dsfd.decouple_with_projection_matrices(features, reference)
    for got, expected in zip(fast, slow):
        torch.testing.assert_close(got, expected)


def test_decoupled_feature_is_dynamic_then_frame_feature():
    features = _features()
    decoupled = dsfd.decoupled_features(features, 2)
    _, dynamic = dsfd.decouple(features, dsfd.reference_features(features, 2))
    assert decoupled.shape[-1] == 2 * features.shape[-1]
    torch.testing.assert_close(decoupled[..., :6], dynamic)
    torch.testing.assert_close(decoupled[..., 6:], features)


def test_decouple_rejects_a_reference_of_the_wrong_shape():
    with pytest.raises(ValueError, match="reference must have the shape"):
        dsfd.decouple(_features(), torch.zeros(2, 4, 6))


# ---------------------------------------------------------------- PCA
def test_pca_finds_the_planted_direction_and_returns_unit_variance():
    generator = torch.Generator().manual_seed(1)
    direction = torch.nn.functional.normalize(torch.randn(8, generator=generator), dim=0)
    samples = 5.0 * torch.randn(4000, 1, generator=generator) * direction + 0.05 * torch.randn(
        4000, 8, generator=generator
    )
    basis = fit_pca(samples + 3.0, k=2)
    assert abs(float(basis.components[:, 0] @ direction)) > 0.99
    torch.testing.assert_close(basis.components.T @ basis.components, torch.eye(2), atol=1e-5, rtol=0)
    projected = basis.project(samples + 3.0)
    assert abs(float(projected.std()) - 1.0) < 1e-3
    assert abs(float(projected.mean())) < 1e-3


def test_pca_rejects_more_components_than_channels():
    with pytest.raises(ValueError, match="k must be"):
        fit_pca(torch.randn(10, 3), k=4)


# ---------------------------------------------------------------- preparation
@pytest.mark.parametrize(
    ("mode", "reduction", "channels"),
    [("dsfd", "pca", 8), ("frame", "pca", 8), ("dsfd", "linear", 24), ("frame", "linear", 12)],
)
def test_prepared_maps_have_the_configured_width(mode, reduction, channels):
    raw = _features(frames=4, views=3, patches=9, channels=12).float().reshape(4, 3, 3, 3, 12)
    prepared = prepare_features(raw, middle_frame=1, mode=mode, reduction=reduction, dim=8)
    assert prepared.maps.shape == (4, 3, channels, 3, 3)
    assert prepared.dynamic_magnitude.shape == (4, 3, 3, 3)
    assert prepared.dynamic_magnitude[1].float().abs().max() > 0  # middle+mean reference: middle frame moves a bit


def test_dsfd_pca_needs_an_even_width():
    raw = _features(frames=3, views=2, patches=4, channels=6).float().reshape(3, 2, 2, 2, 6)
    with pytest.raises(ValueError, match="even"):
        prepare_features(raw, middle_frame=1, mode="dsfd", reduction="pca", dim=5)


# ---------------------------------------------------------------- backbone
def test_backbone_loads_a_local_dinov2_and_returns_a_patch_grid(tiny_dinov2: Path):
    config = FrameFeatureExtractorConfig(model_id=str(tiny_dinov2), image_size=56)
    backbone = load_backbone(config, "cpu")
    pixels = preprocess(torch.rand(2, 40, 40, 3), config.image_size)
    assert pixels.shape == (2, 3, 56, 56)
    grid = patch_features(backbone, pixels)
    assert grid.shape == (2, 4, 4, 16)
    assert torch.isfinite(grid).all()


def test_missing_weights_name_the_model_and_the_switch():
    config = FrameFeatureExtractorConfig(model_id="facebook/dinov2-small")
    with pytest.raises(FeatureBackboneUnavailable) as error:
        load_backbone(config, "cpu")
    message = str(error.value)
    assert "facebook/dinov2-small" in message
    assert "ds4d-base" in message and "--pipeline.datamanager.frame-features.mode none" in message


def test_random_init_builds_the_published_architecture_offline():
    config = FrameFeatureExtractorConfig(model_id="facebook/dinov2-small", weights="random-init")
    backbone = load_backbone(config, "cpu")
    assert backbone.config.hidden_size == 384 and backbone.config.num_hidden_layers == 12
    assert "RANDOM" in config.describe()
    assert "RANDOM" not in FrameFeatureExtractorConfig().describe()


# ---------------------------------------------------------------- grid and cache
def test_grid_puts_the_input_view_first_and_sorts_frames(fake_dataset, tiny_dinov2: Path):
    from ds4d_ns.data.datamanager import Ds4dDataset
    from ds4d_ns.dataparsers.ds4d_dataparser import Ds4dDataParserConfig

    data = fake_dataset(frames=3, size=28, pseudo_views=2)
    outputs = Ds4dDataParserConfig(data=data).setup().get_dataparser_outputs("train")
    grid = frame_grid_from_dataset(Ds4dDataset(outputs))
    assert grid.view_names == ["input_00", "pseudo_00", "pseudo_01"]
    torch.testing.assert_close(grid.times, torch.tensor([0.0, 0.5, 1.0]))
    assert grid.camera_to_worlds.shape == (3, 3, 3, 4) and grid.intrinsics.shape == (3, 3, 3, 3)
    assert grid.middle_frame == 1
    assert all(path.name == f"frame_{f:04d}.png" for f, row in enumerate(grid.image_paths) for path in row)
    assert all("input_00" in str(row[0]) for row in grid.image_paths)


def test_features_are_cached_outside_the_data_and_reused(fake_dataset, tiny_dinov2: Path, tmp_path, monkeypatch):
    from ds4d_ns.data.datamanager import Ds4dDataset
    from ds4d_ns.dataparsers.ds4d_dataparser import Ds4dDataParserConfig
    from ds4d_ns.features import frame_features

    data = fake_dataset(frames=2, size=28, pseudo_views=1)
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    outputs = Ds4dDataParserConfig(data=data).setup().get_dataparser_outputs("train")
    grid = frame_grid_from_dataset(Ds4dDataset(outputs))
    config = FrameFeatureExtractorConfig(model_id=str(tiny_dinov2), image_size=56, cache_dir=tmp_path / "cache")
    first = extract_raw_features(grid, config, "cpu")
    assert first.shape == (2, 2, 4, 4, 16) and first.dtype == torch.float16
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before  # nothing written into the data

    def no_backbone(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(frame_features, "load_backbone", no_backbone)
    torch.testing.assert_close(extract_raw_features(grid, config, "cpu"), first)


def test_cache_key_changes_with_images_model_and_resolution(fake_dataset, tiny_dinov2: Path):
    from ds4d_ns.data.datamanager import Ds4dDataset
    from ds4d_ns.dataparsers.ds4d_dataparser import Ds4dDataParserConfig

    data = fake_dataset(frames=2, size=28, pseudo_views=1)
    grid = frame_grid_from_dataset(Ds4dDataset(Ds4dDataParserConfig(data=data).setup().get_dataparser_outputs("train")))
    config = FrameFeatureExtractorConfig(model_id=str(tiny_dinov2), image_size=56)
    key = cache_key(grid, config)
    assert cache_key(grid, config) == key
    assert cache_key(grid, FrameFeatureExtractorConfig(model_id=str(tiny_dinov2), image_size=112)) != key
    assert cache_key(grid, FrameFeatureExtractorConfig(model_id="facebook/dinov2-base", image_size=56)) != key
    image = grid.image_paths[1][1]
    image.write_bytes(image.read_bytes() + b"\0")  # any change of an image's bytes
    assert cache_key(grid, config) != key


# ---------------------------------------------------------------- the feature bank
def _train_dataset(data: Path):
    from ds4d_ns.data.datamanager import Ds4dDataset
    from ds4d_ns.dataparsers.ds4d_dataparser import Ds4dDataParserConfig

    return Ds4dDataset(Ds4dDataParserConfig(data=data).setup().get_dataparser_outputs("train"))


@pytest.mark.parametrize(
    ("mode", "reduction"), [("dsfd", "pca"), ("frame", "pca"), ("dsfd", "linear"), ("frame", "linear")]
)
def test_a_bank_for_a_checkpoint_has_the_extracted_shape_without_the_backbone(
    fake_dataset, tiny_dinov2: Path, tmp_path, monkeypatch, mode, reduction
):
    """ns-eval, ns-render and the viewer build the model before loading its checkpoint: the bank they hand it has
    the trained maps' shape and the dataset's cameras, worked out from the configuration with no backbone."""
    from ds4d_ns.features import frame_features
    from ds4d_ns.features.feature_bank import FrameFeaturesConfig, build_feature_bank, empty_feature_bank

    dataset = _train_dataset(fake_dataset(frames=3, size=28, pseudo_views=2))
    extractor = FrameFeatureExtractorConfig(model_id=str(tiny_dinov2), image_size=56, cache_dir=tmp_path / "cache")
    config = FrameFeaturesConfig(mode=mode, reduction=reduction, dim=4, extractor=extractor)
    built = build_feature_bank(dataset, config, "cpu")

    def no_backbone(*args, **kwargs):
        raise AssertionError("loading a checkpoint needs no backbone")

    monkeypatch.setattr(frame_features, "load_backbone", no_backbone)
    monkeypatch.setattr(frame_features, "extract_raw_features", no_backbone)
    empty = empty_feature_bank(dataset, config)
    assert empty.maps.shape == built.maps.shape and empty.maps.dtype == built.maps.dtype
    assert empty.dynamic_magnitude.shape == built.dynamic_magnitude.shape
    assert built.channels == {"pca": 4, "linear": 16 * (2 if mode == "dsfd" else 1)}[reduction]
    for name in ("times", "viewmats", "intrinsics"):
        torch.testing.assert_close(getattr(empty, name), getattr(built, name))
    assert (empty.width, empty.height, empty.front_view) == (built.width, built.height, built.front_view)


def test_ds4d_viz_colours_the_gaussians_by_the_weights_the_model_samples(fake_dataset, tiny_dinov2: Path, monkeypatch):
    """With features sampled at deformed centres, ds4d-viz shows the fusion weights of the model's own sampling
    (at centres deformed by a first pass fed the canonical centres' features), not weights re-sampled at the
    final deformed centres."""
    from ds4d_ns.ds4d_model import Ds4dModelConfig
    from ds4d_ns.features.feature_bank import FEATURE_BANK_KEY, FrameFeaturesConfig, empty_feature_bank
    from ds4d_ns.rendering import rasterize
    from ds4d_ns.scripts.viz import VizFeatures, heat_colors

    dataset = _train_dataset(fake_dataset(frames=3, size=28, pseudo_views=2))
    extractor = FrameFeatureExtractorConfig(model_id=str(tiny_dinov2), image_size=56)
    config = FrameFeaturesConfig(mode="dsfd", fusion="da", dim=4, sampling_points="deformed", extractor=extractor)
    bank = empty_feature_bank(dataset, config)
    torch.manual_seed(0)
    bank.maps = torch.randn(bank.maps.shape).half()
    model = Ds4dModelConfig(hexplane_resolution=4, hexplane_multires=(1,), hexplane_features=2).setup(
        scene_box=dataset.scene_box, num_train_data=len(dataset), metadata={**dataset.metadata, FEATURE_BANK_KEY: bank}
    )
    with torch.no_grad():  # a deformation that moves the centres, and depends on the features
        model.deformation.position_head[-1].weight.normal_(0.0, 0.5)
    model.eval()
    time = 0.5
    with torch.no_grad():
        expected = model.frame_features_at(time).view_weights
        at_final_centres = model.frame_point_features(model.gaussians_at(time).means, time).view_weights
    assert not torch.allclose(expected, at_final_centres, atol=1e-3)  # the two samplings do differ here

    drawn = []
    rasterize_gaussians = rasterize.rasterize_gaussians

    def spy(**kwargs):
        drawn.append(kwargs["colors"])
        return rasterize_gaussians(**kwargs)

    monkeypatch.setattr(rasterize, "rasterize_gaussians", spy)
    VizFeatures(load_config=Path("unused.yml"), resolution=8)._weights(model, time)
    normalised = expected / expected.max()
    assert len(drawn) == bank.num_views
    for view, colors in enumerate(drawn):
        torch.testing.assert_close(colors, heat_colors(normalised[view]))
