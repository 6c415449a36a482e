"""Spatiotemporal similarity fusion (TSSF, DS4D Sec. 3): per-view frame features onto Gaussians.

Each Gaussian centre is projected into every training view's camera and the view's (decoupled)
feature map is sampled bilinearly there; a centre outside a view's image, or behind its camera,
gets nothing from that view. Occlusion is not tested: a centre hidden behind the object still
reads the surface in front of it, which is also what the paper's projection does.

The per-view point features are then fused into one feature per Gaussian:

* ``front``: the input view's feature alone (the ablation rows without TSSF).
* ``mean``: the average over the views that see the point (ablation F).
* ``ga`` (global-aware): a linear layer reads the point's features from all views at once and a
  softmax over the views that see it turns its outputs into one weight per view.
* ``da`` (distance-aware): the input (front) view is trusted most. The other views are weighted by
  a softmax of minus the L1 distance of their feature to the front view's (closer = more weight,
  learned temperature), fused, and mixed with the front feature by a learned gate (starting at
  half and half). The paper fixes neither the distance-to-weight map nor the mix; these are ours.

Every fusion also returns the weight it gave each view for each point (the paper's Fig. 5).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from ds4d_ns.options import FusionMode  # defined here before; ``ds4d_ns.fields.tssf.FusionMode`` still works

if TYPE_CHECKING:
    from ds4d_ns.features.feature_bank import FeatureBank

_MASKED_LOGIT = -1e4  # finite, so a point no view sees gets zero weights without NaN gradients


def project_points(
    points: Float[Tensor, "n 3"],
    viewmats: Float[Tensor, "views 4 4"],
    intrinsics: Float[Tensor, "views 3 3"],
    width: int,
    height: int,
    near: float = 1e-3,
) -> Tuple[Float[Tensor, "views n 2"], Bool[Tensor, "views n"]]:
    """Pixel coordinates of ``points`` in each OpenCV camera, and whether they land inside its image.

    Pixel (0, 0) is the top-left corner of the top-left pixel, so the image spans [0, width] x [0, height].
    """
    homogeneous = torch.cat([points, torch.ones_like(points[:, :1])], dim=-1)
    in_camera = torch.einsum("vij,nj->vni", viewmats[:, :3, :], homogeneous)
    depth = in_camera[..., 2]
    safe_depth = torch.where(depth > near, depth, torch.ones_like(depth))
    pixels = torch.einsum("vij,vnj->vni", intrinsics, in_camera / safe_depth[..., None])[..., :2]
    inside = (pixels[..., 0] >= 0) & (pixels[..., 0] <= width) & (pixels[..., 1] >= 0) & (pixels[..., 1] <= height)
    return pixels, inside & (depth > near)


def sample_view_features(
    maps: Float[Tensor, "views channels rows cols"],
    pixels: Float[Tensor, "views n 2"],
    valid: Bool[Tensor, "views n"],
    width: int,
    height: int,
) -> Float[Tensor, "views n channels"]:
    """Bilinear samples of each view's map at the points' pixels (maps cover the whole image); zero where invalid."""
    # grid_sample's coordinates: [-1, 1] across the image, pixel corners at the ends (align_corners=False)
    uv = torch.stack([2.0 * pixels[..., 0] / width - 1.0, 2.0 * pixels[..., 1] / height - 1.0], dim=-1)
    sampled = torch.nn.functional.grid_sample(
        maps, uv[:, None].to(maps.dtype), mode="bilinear", padding_mode="border", align_corners=False
    )
    return sampled[:, :, 0].permute(0, 2, 1) * valid[..., None].to(maps.dtype)


def masked_softmax(logits: Float[Tensor, "views n"], valid: Bool[Tensor, "views n"]) -> Float[Tensor, "views n"]:
    """Softmax over views restricted to valid ones; all zeros for a point with no valid view."""
    weights = torch.softmax(logits.masked_fill(~valid, _MASKED_LOGIT), dim=0) * valid
    return weights / weights.sum(dim=0, keepdim=True).clamp_min(1e-12)


@dataclass
class FusionResult:
    """A fused feature per point and the weight each view contributed to it."""

    features: Float[Tensor, "n channels"]
    view_weights: Float[Tensor, "views n"]


class FrontViewFusion(nn.Module):
    """The front (input) view's feature alone: frame features without TSSF (ablation rows D, E)."""

    def __init__(self, front_view: int = 0) -> None:
        super().__init__()
        self.front_view = front_view

    def forward(self, features: Float[Tensor, "views n c"], valid: Bool[Tensor, "views n"]) -> FusionResult:
        weights = torch.zeros(valid.shape, dtype=features.dtype, device=features.device)
        weights[self.front_view] = valid[self.front_view].to(features.dtype)
        return FusionResult(features[self.front_view] * weights[self.front_view, :, None], weights)


class MeanFusion(nn.Module):
    """Average over the views that see the point (ablation F)."""

    def forward(self, features: Float[Tensor, "views n c"], valid: Bool[Tensor, "views n"]) -> FusionResult:
        weights = valid.to(features.dtype)
        weights = weights / weights.sum(dim=0, keepdim=True).clamp_min(1.0)
        return FusionResult((weights[..., None] * features).sum(dim=0), weights)


class GlobalAwareFusion(nn.Module):
    """TSSF-GA: one linear layer over the features of all views, softmax over views."""

    def __init__(self, num_views: int, channels: int) -> None:
        super().__init__()
        self.score = nn.Linear(num_views * channels, num_views)
        nn.init.zeros_(self.score.weight)  # starts as the mean over visible views
        nn.init.zeros_(self.score.bias)

    def forward(self, features: Float[Tensor, "views n c"], valid: Bool[Tensor, "views n"]) -> FusionResult:
        num_views, num_points, _ = features.shape
        logits = self.score(features.permute(1, 0, 2).reshape(num_points, -1)).T
        weights = masked_softmax(logits, valid)
        return FusionResult((weights[..., None] * features).sum(dim=0), weights)


class DistanceAwareFusion(nn.Module):
    """TSSF-DA: other views weighted by their L1 closeness to the front view, then mixed with it."""

    def __init__(self, front_view: int = 0) -> None:
        super().__init__()
        self.front_view = front_view
        self.log_temperature = nn.Parameter(torch.zeros(()))
        """Distances are divided by exp(log_temperature) before the softmax; features have unit variance."""
        self.front_logit = nn.Parameter(torch.zeros(()))
        """sigmoid(front_logit) is the front view's share of the mix."""

    def forward(self, features: Float[Tensor, "views n c"], valid: Bool[Tensor, "views n"]) -> FusionResult:
        front = features[self.front_view]
        front_valid = valid[self.front_view]
        distance = (features - front).abs().mean(dim=-1)
        logits = torch.where(front_valid, -distance / self.log_temperature.exp(), torch.zeros_like(distance))
        others_valid = valid.clone()
        others_valid[self.front_view] = False
        other_weights = masked_softmax(logits, others_valid)
        others = (other_weights[..., None] * features).sum(dim=0)
        front_share = torch.sigmoid(self.front_logit) * front_valid.to(features.dtype)
        others_share = (1.0 - torch.sigmoid(self.front_logit)) * others_valid.any(dim=0).to(features.dtype)
        total = (front_share + others_share).clamp_min(1e-12)
        front_share, others_share = front_share / total, others_share / total
        weights = other_weights * others_share
        weights = torch.cat([weights[: self.front_view], front_share[None], weights[self.front_view + 1 :]])
        return FusionResult(front_share[:, None] * front + others_share[:, None] * others, weights)


def make_fusion(mode: FusionMode, num_views: int, channels: int, front_view: int = 0) -> nn.Module:
    """The fusion module of a mode."""
    if mode == "front":
        return FrontViewFusion(front_view)
    if mode == "mean":
        return MeanFusion()
    if mode == "ga":
        return GlobalAwareFusion(num_views, channels)
    if mode == "da":
        return DistanceAwareFusion(front_view)
    raise ValueError(f"unknown fusion mode {mode!r}")


def frame_bracket(times: Sequence[float] | Float[Tensor, " frames"], time: float) -> Tuple[int, int, float]:
    """The two frames around ``time`` and the blend weight of the second (times sorted ascending)."""
    times = [float(t) for t in times]
    time = min(max(float(time), times[0]), times[-1])
    upper = min(max(bisect.bisect_left(times, time), 1), len(times) - 1) if len(times) > 1 else 0
    lower = max(upper - 1, 0)
    span = times[upper] - times[lower]
    blend = (time - times[lower]) / span if span > 0 else 0.0
    return lower, upper, min(max(blend, 0.0), 1.0)


def frame_bracket_on_device(
    times: Float[Tensor, " frames"], time: Float[Tensor, ""]
) -> Tuple[Int[Tensor, "2"], Float[Tensor, "2"]]:
    """:func:`frame_bracket` computed where ``times`` live, never read back: the two frames around ``time`` and
    their weights ``(1 - blend, blend)``. A training step's time stays on the GPU, and a host wait there
    stalls the queue of kernels the host has run ahead with."""
    time = time.reshape(()).to(times).clamp(times[0], times[-1])
    last = len(times) - 1
    upper = torch.searchsorted(times, time.reshape(1)).clamp(min(1, last), last)  # [1]: bisect_left
    frames = torch.cat([(upper - 1).clamp_min(0), upper])
    # indexed with a one-dimensional index: a zero-dimensional one is read back as a Python int
    lower_time, upper_time = times[frames].unbind(0)
    span = upper_time - lower_time
    blend = torch.where(span > 0, (time - lower_time) / span.clamp_min(1e-12), 0.0).clamp(0.0, 1.0)
    return frames, torch.stack([1.0 - blend, blend])


class FramePointFeatures(nn.Module):
    """Frame feature maps of the training views, sampled at points and fused: TSSF as one module.

    Built from the data side's feature bank (``ds4d_ns.features.feature_bank``): its maps, cameras and
    times become buffers, so a checkpoint carries them and a trained model renders without the
    feature backbone. The bank's configuration gives the fusion mode and the width of the fused
    feature; maps wider than that get a learned linear reduction. At a time between two frames,
    both frames' point features are computed and blended linearly.
    """

    # buffers registered in ``__init__``, declared for type checkers
    maps: Tensor
    dynamic_magnitude: Tensor
    times: Tensor
    viewmats: Tensor
    intrinsics: Tensor
    image_size: Tensor
    front_view: Tensor

    def __init__(self, bank: FeatureBank) -> None:
        super().__init__()
        self.register_buffer("maps", bank.maps)
        self.register_buffer("dynamic_magnitude", bank.dynamic_magnitude)
        self.register_buffer("times", bank.times.float())
        self.register_buffer("viewmats", bank.viewmats.float())
        self.register_buffer("intrinsics", bank.intrinsics.float())
        self.register_buffer("image_size", torch.tensor([bank.width, bank.height]))
        self.register_buffer("front_view", torch.tensor(bank.front_view))  # checkpoints say which view is the input
        self.width, self.height = bank.width, bank.height  # Python copies: no device sync per step
        out_dim = bank.config.dim
        self.reduction: Optional[nn.Linear] = nn.Linear(bank.channels, out_dim) if bank.channels != out_dim else None
        self.fusion = make_fusion(bank.config.fusion, bank.num_views, out_dim, bank.front_view)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints written before the input view's index was kept put the input view first.
        state_dict.setdefault(f"{prefix}front_view", torch.tensor(0))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        # The Python copies follow the loaded buffers.
        self.width, self.height = (int(v) for v in self.image_size.tolist())
        if hasattr(self.fusion, "front_view"):
            self.fusion.front_view = int(self.front_view)

    @property
    def times_list(self) -> List[float]:
        """Frame times as Python floats, re-read only when the buffer is moved or written (no sync per step)."""
        key = (self.times.data_ptr(), self.times._version)
        cached = getattr(self, "_times_cache", None)
        if cached is None or cached[0] != key:
            cached = (key, self.times.tolist())
            self._times_cache = cached
        return cached[1]

    @property
    def num_views(self) -> int:
        return int(self.maps.shape[1])

    def _frame_maps(self, frame: int | Tensor) -> Float[Tensor, "*frames views channels rows cols"]:
        maps = self.maps[frame].float()
        if self.reduction is None:
            return maps
        # A linear map of the channels commutes with bilinear sampling: reduce the small maps, not the samples.
        bias = self.reduction.bias[:, None, None]
        return torch.einsum("oc,...chw->...ohw", self.reduction.weight, maps) + bias

    def per_view(
        self, points: Float[Tensor, "n 3"], time: float | Float[Tensor, ""]
    ) -> Tuple[Float[Tensor, "views n c"], Bool[Tensor, "views n"]]:
        """Point features from every view at ``time`` and which views see each point.

        A Python time finds its frames on the host and samples only those with a share; a tensor time (a
        training step's, on the GPU) samples both frames of its bracket in one batch, without a host wait
        (the one with no share counts for nothing, not even for which views see a point)."""
        if isinstance(time, Tensor):
            return self._per_view_on_device(points, time)
        width, height = self.width, self.height
        lower, upper, blend = frame_bracket(self.times_list, time)
        features, valid = None, None
        for frame, share in ((lower, 1.0 - blend), (upper, blend)):
            if share == 0.0 or (frame == upper and upper == lower):
                continue
            pixels, inside = project_points(points, self.viewmats[frame], self.intrinsics[frame], width, height)
            sampled = sample_view_features(self._frame_maps(frame), pixels, inside, width, height) * share
            features = sampled if features is None else features + sampled
            valid = inside if valid is None else valid | inside
        assert features is not None and valid is not None
        return features, valid

    def _per_view_on_device(
        self, points: Float[Tensor, "n 3"], time: Float[Tensor, ""]
    ) -> Tuple[Float[Tensor, "views n c"], Bool[Tensor, "views n"]]:
        frames, shares = frame_bracket_on_device(self.times, time)
        views = self.num_views
        pixels, inside = project_points(
            points, self.viewmats[frames].flatten(0, 1), self.intrinsics[frames].flatten(0, 1), self.width, self.height
        )
        maps = self._frame_maps(frames).flatten(0, 1)  # [2 * views, c, rows, cols]
        sampled = sample_view_features(maps, pixels, inside, self.width, self.height).unflatten(0, (2, views))
        features = (sampled * shares[:, None, None, None]).sum(dim=0)
        valid = (inside.unflatten(0, (2, views)) & (shares > 0)[:, None, None]).any(dim=0)
        return features, valid

    def forward(self, points: Float[Tensor, "n 3"], time: float | Float[Tensor, ""]) -> FusionResult:
        features, valid = self.per_view(points, time)
        return self.fusion(features, valid)
