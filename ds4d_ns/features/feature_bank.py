"""The feature bank: DS4D's frame features as one product of the data side, consumed by the model.

The datamanager builds it once from the training images (``build_feature_bank``) and hands it to
the model at construction through the dataset's metadata (``FEATURE_BANK_KEY``), as
feature-splatting's datamanager does with its features; ``Ds4dModel.populate_modules`` turns it into
the TSSF module, whose buffers keep the maps in checkpoints.

When a trained run is loaded (``ns-eval``, ``ns-render``, the viewer, the ds4d commands) no backbone
runs: the bank's cameras and times come from the dataset (``empty_feature_bank``) or the checkpoint
(``feature_bank_from_state``), and its maps are zeros of the trained shape, worked out from this
configuration, that the checkpoint then fills.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import torch
from jaxtyping import Float
from torch import Tensor

from ds4d_ns.features.backbone import FrameFeatureExtractorConfig
from ds4d_ns.features.dsfd import ReferenceMode
from ds4d_ns.options import FeatureMode, FusionMode, ReductionMode, SamplingPoints

FEATURE_BANK_KEY = "feature_bank"
"""Key of the bank in the training dataset's metadata, which nerfstudio passes to the model."""
STATE_PREFIX = "frame_point_features."
"""Prefix of the bank's buffers in a model's state dict (the TSSF module of ``Ds4dModel``)."""


@dataclass
class FrameFeaturesConfig:
    """DS4D's frame features: which (the one switch, ``mode``), how they are made, and how the model reads them."""

    mode: FeatureMode = "none"
    """none (the 4D-GS baseline: no features), frame (DINOv2 frame features without decoupling, ablation D)
    or dsfd (DSFD's decoupled features: dynamic part + frame feature)."""
    fusion: FusionMode = "da"
    """How per-view point features are fused: front (input view only, no TSSF; ablations D, E),
    mean (F), ga (TSSF global-aware, G) or da (TSSF distance-aware, H, the paper's best)."""
    dim: int = 32
    """Channels of the point feature after reduction (half dynamic, half frame feature with DSFD)."""
    reduction: ReductionMode = "pca"
    """Channel reduction of the frame features: PCA fitted once on the dataset's features, or a
    linear layer learnt with TSSF (keeps full-width maps in memory and in checkpoints)."""
    dsfd_reference: ReferenceMode = "middle+mean"
    """DSFD reference per view and patch: average of the middle frame's and the mean feature (the
    paper combines the two without saying how), or either alone."""
    sampling_points: SamplingPoints = "canonical"
    """Where features are sampled: at the canonical centres, or at the centres deformed to the step's
    time (a first, gradient-free deformation pass; about one more MLP evaluation per step)."""
    extractor: FrameFeatureExtractorConfig = field(default_factory=FrameFeatureExtractorConfig)
    """Backbone, resolution and cache of the frame features."""

    @property
    def enabled(self) -> bool:
        """Whether the run uses frame features at all."""
        return self.mode != "none"

    def map_shape(self) -> Tuple[int, int, int]:
        """``(channels, rows, cols)`` of each feature map, from the configuration alone (no backbone weights).

        Raises:
            FeatureBackboneUnavailable: a linear reduction keeps the backbone's width, and the backbone's
                configuration cannot be read.
        """
        from ds4d_ns.features.backbone import backbone_geometry

        width, patch = backbone_geometry(self.extractor)
        side = self.extractor.image_size // patch
        channels = self.dim if self.reduction == "pca" else width * (2 if self.mode == "dsfd" else 1)
        return channels, side, side


@dataclass
class FeatureBank:
    """Frame feature maps of every training view and frame, with the cameras and times they were seen at."""

    config: FrameFeaturesConfig
    """How the maps were made and how the model reads them (fusion, width, sampling points)."""
    maps: Float[Tensor, "frames views channels rows cols"]
    """Reduced (or, for a learnt reduction, standardised) feature maps, fp16."""
    dynamic_magnitude: Float[Tensor, "frames views rows cols"]
    """Norm of the full-width dynamic feature per patch (the paper's Fig. 4 heatmaps), fp16."""
    times: Float[Tensor, " frames"]
    """Frame times, increasing."""
    viewmats: Float[Tensor, "frames views 4 4"]
    """OpenCV world-to-camera matrices."""
    intrinsics: Float[Tensor, "frames views 3 3"]
    """Pinhole intrinsics for an image of ``width`` x ``height`` pixels."""
    width: int
    height: int
    front_view: int
    """Index of the input view, the one distance-aware fusion trusts most."""

    @property
    def num_frames(self) -> int:
        return int(self.maps.shape[0])

    @property
    def num_views(self) -> int:
        return int(self.maps.shape[1])

    @property
    def channels(self) -> int:
        return int(self.maps.shape[2])


def _bank_of_grid(grid, config: FrameFeaturesConfig, maps: Tensor, dynamic_magnitude: Tensor) -> FeatureBank:
    from ds4d_ns.features.frame_features import grid_cameras

    viewmats, intrinsics = grid_cameras(grid)
    return FeatureBank(
        config=config,
        maps=maps,
        dynamic_magnitude=dynamic_magnitude,
        times=grid.times,
        viewmats=viewmats,
        intrinsics=intrinsics,
        width=grid.width,
        height=grid.height,
        front_view=grid.front_view,
    )


def build_feature_bank(dataset, config: FrameFeaturesConfig, device: torch.device | str) -> FeatureBank:
    """Extract (or load from the cache), decouple and reduce the features of a ds4d training dataset.

    Raises:
        FeatureBackboneUnavailable: the backbone cannot be loaded (and the features are not cached).
        ValueError: the dataset lacks the ds4d camera metadata or a view misses a frame.
    """
    from nerfstudio.utils.rich_utils import CONSOLE
    from rich.markup import escape

    from ds4d_ns.features.frame_features import extract_raw_features, frame_grid_from_dataset, prepare_features

    grid = frame_grid_from_dataset(dataset)
    raw = extract_raw_features(grid, config.extractor, device)
    prepared = prepare_features(
        raw, grid.middle_frame, config.mode, config.reduction, config.dim, config.dsfd_reference
    )
    CONSOLE.log(
        f"Frame features ({escape(config.extractor.describe())}): {config.mode}, {config.reduction} to "
        f"{config.dim} channels, fusion {config.fusion}, views {escape(', '.join(grid.view_names))}"
    )
    return _bank_of_grid(grid, config, prepared.maps, prepared.dynamic_magnitude)


def empty_feature_bank(dataset, config: FrameFeaturesConfig) -> FeatureBank:
    """The bank of a trained run before its checkpoint is loaded: the dataset's cameras and times, zero maps of
    the trained shape (``FrameFeaturesConfig.map_shape``). Needs no backbone weights."""
    from ds4d_ns.features.frame_features import frame_grid_from_dataset

    grid = frame_grid_from_dataset(dataset)
    channels, rows, cols = config.map_shape()
    frames, views = len(grid.image_paths), len(grid.view_names)
    maps = torch.zeros(frames, views, channels, rows, cols, dtype=torch.float16)
    return _bank_of_grid(grid, config, maps, torch.zeros(frames, views, rows, cols, dtype=torch.float16))


def feature_bank_from_state(state: Dict[str, Tensor], config: FrameFeaturesConfig) -> Optional[FeatureBank]:
    """The bank stored in a model's state dict (keys without the ``_model.`` prefix), or None if it has none.

    Checkpoints written before the input view's index was kept put the input view first.
    """
    if not config.enabled or f"{STATE_PREFIX}maps" not in state:
        return None
    width, height = (int(v) for v in state[f"{STATE_PREFIX}image_size"].tolist())
    front_view = state.get(f"{STATE_PREFIX}front_view")
    return FeatureBank(
        config=config,
        maps=state[f"{STATE_PREFIX}maps"],
        dynamic_magnitude=state[f"{STATE_PREFIX}dynamic_magnitude"],
        times=state[f"{STATE_PREFIX}times"],
        viewmats=state[f"{STATE_PREFIX}viewmats"],
        intrinsics=state[f"{STATE_PREFIX}intrinsics"],
        width=width,
        height=height,
        front_view=0 if front_view is None else int(front_view),
    )
