"""TSSF maths: projecting Gaussian centres into the views, sampling the maps there, and fusing the views."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import dispatched_operations, moving_cameras_feature_bank

from ds4d_ns import camera_layouts
from ds4d_ns.features.feature_bank import FeatureBank, FrameFeaturesConfig
from ds4d_ns.fields.tssf import (
    DistanceAwareFusion,
    FramePointFeatures,
    FrontViewFusion,
    GlobalAwareFusion,
    MeanFusion,
    frame_bracket,
    frame_bracket_on_device,
    masked_softmax,
    project_points,
    sample_view_features,
)
from ds4d_ns.rendering.camera_matrices import opengl_c2w_to_opencv_viewmat

SIZE = 16
"""Width and height of the toy camera's image."""
TOY_K = torch.tensor([[10.0, 0.0, 8.0], [0.0, 10.0, 8.0], [0.0, 0.0, 1.0]])
"""Focal 10 px, principal point at the image centre (8, 8)."""
IDENTITY_VIEW = torch.eye(4)
"""OpenCV camera at the origin looking down +z."""
VISIBLE = (0.4, -0.2, 2.0)
"""Lands on pixel (10 * 0.2 + 8, 10 * -0.1 + 8) = (10, 7) of the toy camera."""
BEHIND = (1.0, 1.0, -0.5)
"""Behind the toy camera; without the depth test its pixel, K @ (1, 1, -0.5) = (6, 6), would be inside the image."""
OUTSIDE = (2.0, 0.0, 1.0)
"""In front of the toy camera but at u = 10 * 2 + 8 = 28 > 16."""


def _toy_projection(points):
    return project_points(torch.tensor(points), IDENTITY_VIEW[None], TOY_K[None], SIZE, SIZE)


# ---------------------------------------------------------------------------------------------------------------------
# Projection


def test_project_points_matches_a_hand_computed_pinhole_projection():
    pixels, valid = _toy_projection([VISIBLE])
    assert pixels.shape == (1, 1, 2) and valid.shape == (1, 1)
    torch.testing.assert_close(pixels[0, 0], torch.tensor([10.0, 7.0]))
    assert bool(valid[0, 0])


def test_project_points_marks_points_behind_the_camera_invalid():
    _, valid = _toy_projection([BEHIND, (-0.4, 0.2, -2.0)])  # the second mirrors VISIBLE through the camera
    assert not valid.any()


def test_project_points_marks_points_outside_the_image_invalid():
    _, valid = _toy_projection([OUTSIDE, (0.0, -1.0, 1.0), VISIBLE])
    assert valid.tolist() == [[False, False, True]]


def test_project_points_handles_several_views_at_once():
    shifted = torch.eye(4)
    shifted[0, 3] = -0.4  # camera moved to x = 0.4: the visible point is straight ahead of it
    viewmats = torch.stack([IDENTITY_VIEW, shifted])
    pixels, valid = project_points(torch.tensor([VISIBLE]), viewmats, TOY_K.expand(2, 3, 3), SIZE, SIZE)
    torch.testing.assert_close(pixels[:, 0], torch.tensor([[10.0, 7.0], [8.0, 7.0]]))
    assert valid.all()


def test_input_camera_projects_the_world_origin_to_the_image_centre():
    size = 64
    view = camera_layouts.input_view()
    viewmat = opengl_c2w_to_opencv_viewmat(camera_layouts.orbit_c2w(view)[None])
    focal = camera_layouts.focal_from_fov(view.fov_deg, size)
    intrinsics = torch.tensor([[[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]]])
    # The input camera sits at (0, -2, 0) looking at +y with z up: world +x is image right, world +z is image up.
    points = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.5]])
    pixels, valid = project_points(points, viewmat, intrinsics, size, size)
    expected = torch.tensor([[32.0, 32.0], [32.0 + focal * 0.25, 32.0], [32.0, 32.0 - focal * 0.25]])
    torch.testing.assert_close(pixels[0], expected, atol=1e-4, rtol=1e-5)
    assert valid.all()


# ---------------------------------------------------------------------------------------------------------------------
# Sampling


def _sample_2x2(pixels, valid):
    maps = torch.tensor([[1.0, 2.0], [3.0, 4.0]])[None, None]  # 1 view, 1 channel, covers a 4 x 4 pixel image
    return sample_view_features(maps, torch.tensor(pixels)[None], torch.tensor(valid)[None], 4, 4)


def test_sample_view_features_matches_hand_computed_bilinear_values():
    # (x, y) pixels: top-left cell centre, image centre, halfway along the top row, halfway down the left column.
    sampled = _sample_2x2([[1.0, 1.0], [2.0, 2.0], [2.0, 1.0], [1.0, 2.0], [3.0, 3.0]], [True] * 5)
    assert sampled.shape == (1, 5, 1)
    torch.testing.assert_close(sampled[0, :, 0], torch.tensor([1.0, 2.5, 1.5, 2.0, 4.0]))


def test_sample_view_features_gives_zero_for_invalid_points():
    sampled = _sample_2x2([[1.0, 1.0], [3.0, 3.0]], [False, True])
    torch.testing.assert_close(sampled[0, :, 0], torch.tensor([0.0, 4.0]))


def test_sample_view_features_reads_each_view_from_its_own_map():
    maps = torch.stack([torch.full((2, 2, 2), 5.0), torch.full((2, 2, 2), -1.0)])
    pixels = torch.tensor([[[1.0, 1.0]], [[3.0, 2.0]]])
    sampled = sample_view_features(maps, pixels, torch.ones(2, 1, dtype=torch.bool), 4, 4)
    torch.testing.assert_close(sampled, torch.tensor([[[5.0, 5.0]], [[-1.0, -1.0]]]))


# ---------------------------------------------------------------------------------------------------------------------
# Masked softmax


def test_masked_softmax_matches_a_hand_computed_softmax_over_valid_views():
    logits = torch.tensor([[0.0], [math.log(2.0)], [5.0]])
    valid = torch.tensor([[True], [True], [False]])
    torch.testing.assert_close(masked_softmax(logits, valid), torch.tensor([[1 / 3], [2 / 3], [0.0]]))


def test_masked_softmax_sums_to_one_over_valid_views_and_is_zero_on_invalid_ones():
    torch.manual_seed(0)
    logits = 3.0 * torch.randn(5, 40)
    valid = torch.rand(5, 40) > 0.4
    valid[0] = True  # every point has at least one view
    weights = masked_softmax(logits, valid)
    torch.testing.assert_close(weights.sum(dim=0), torch.ones(40))
    assert (weights[~valid] == 0).all()
    assert (weights[valid] > 0).all()


def test_masked_softmax_is_all_zero_with_finite_gradients_for_a_point_no_view_sees():
    torch.manual_seed(0)
    logits = torch.randn(4, 3, requires_grad=True)
    valid = torch.tensor([[True, False, True], [False, False, True], [True, False, False], [False, False, True]])
    weights = masked_softmax(logits, valid)
    torch.testing.assert_close(weights[:, 1], torch.zeros(4))
    (weights * torch.randn(4, 3)).sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


# ---------------------------------------------------------------------------------------------------------------------
# Simple fusions

FEATURES = torch.tensor(
    [
        [[1.0, 10.0], [2.0, 20.0]],  # view 0, points 0 and 1
        [[3.0, 30.0], [4.0, 40.0]],  # view 1
        [[5.0, 50.0], [6.0, 60.0]],  # view 2
    ]
)
VALID = torch.tensor([[True, True], [False, True], [True, True]])  # view 1 misses point 0


def test_mean_fusion_averages_the_visible_views_only():
    result = MeanFusion()(FEATURES, VALID)
    torch.testing.assert_close(result.features, torch.tensor([[3.0, 30.0], [4.0, 40.0]]))
    torch.testing.assert_close(result.view_weights, torch.tensor([[0.5, 1 / 3], [0.0, 1 / 3], [0.5, 1 / 3]]))


def test_mean_fusion_gives_zero_for_a_point_no_view_sees():
    result = MeanFusion()(FEATURES, torch.zeros(3, 2, dtype=torch.bool))
    torch.testing.assert_close(result.features, torch.zeros(2, 2))
    torch.testing.assert_close(result.view_weights, torch.zeros(3, 2))


def test_front_view_fusion_returns_the_front_feature_with_weight_one_on_the_front_view():
    result = FrontViewFusion()(FEATURES, VALID)
    torch.testing.assert_close(result.features, FEATURES[0])
    torch.testing.assert_close(result.view_weights, torch.tensor([[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]))


def test_front_view_fusion_gives_nothing_for_a_point_the_front_view_misses():
    valid = torch.tensor([[False, True], [True, True], [True, True]])
    result = FrontViewFusion()(FEATURES, valid)
    torch.testing.assert_close(result.features, torch.tensor([[0.0, 0.0], [2.0, 20.0]]))
    torch.testing.assert_close(result.view_weights, torch.tensor([[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]))


# ---------------------------------------------------------------------------------------------------------------------
# Global-aware fusion


def test_ga_weights_sum_to_one_over_visible_views_with_random_layer_weights():
    torch.manual_seed(0)
    views_, points, channels = 4, 30, 5
    fusion = GlobalAwareFusion(views_, channels)
    with torch.no_grad():
        fusion.score.weight.normal_()
        fusion.score.bias.normal_()
    features = torch.randn(views_, points, channels)
    valid = torch.rand(views_, points) > 0.3
    valid[2] = True
    result = fusion(features, valid)
    torch.testing.assert_close(result.view_weights.sum(dim=0), torch.ones(points))
    assert (result.view_weights[~valid] == 0).all()
    assert not torch.allclose(result.view_weights, MeanFusion()(features, valid).view_weights)  # really learned
    torch.testing.assert_close(result.features, (result.view_weights[..., None] * features).sum(dim=0))


def test_ga_weights_match_a_hand_computed_softmax_of_the_layer():
    fusion = GlobalAwareFusion(num_views=2, channels=1)
    with torch.no_grad():
        fusion.score.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))  # view 0's logit is view 0's feature
    features = torch.tensor([[[math.log(3.0)]], [[2.0]]])
    result = fusion(features, torch.ones(2, 1, dtype=torch.bool))
    torch.testing.assert_close(result.view_weights, torch.tensor([[0.75], [0.25]]))
    torch.testing.assert_close(result.features, torch.tensor([[0.75 * math.log(3.0) + 0.25 * 2.0]]))


def test_ga_starts_as_the_mean_over_visible_views():
    torch.manual_seed(0)
    features = torch.randn(3, 20, 4)
    valid = torch.rand(3, 20) > 0.3
    ga = GlobalAwareFusion(3, 4)(features, valid)
    mean = MeanFusion()(features, valid)
    torch.testing.assert_close(ga.features, mean.features)
    torch.testing.assert_close(ga.view_weights, mean.view_weights)


def test_ga_gradients_reach_the_score_layer():
    torch.manual_seed(0)
    fusion = GlobalAwareFusion(3, 4)
    features = torch.randn(3, 10, 4)
    valid = torch.ones(3, 10, dtype=torch.bool)
    (fusion(features, valid).features * torch.randn(10, 4)).sum().backward()
    assert fusion.score.weight.grad is not None
    assert fusion.score.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------------------------------
# Distance-aware fusion


def _da_features():
    torch.manual_seed(0)
    front = torch.randn(1, 6, 4)
    return torch.cat([front, front, front + 5.0])  # view 1 equals the front view, view 2 is 5 away in L1 mean


def test_da_gives_the_view_closest_to_the_front_more_weight():
    features = _da_features()
    result = DistanceAwareFusion()(features, torch.ones(3, 6, dtype=torch.bool))
    weights = result.view_weights
    assert (weights[1] > weights[2]).all()
    torch.testing.assert_close(weights.sum(dim=0), torch.ones(6))
    # By hand: the front keeps half (sigmoid(0)); the others split the rest by softmax(-[0, 5]).
    near, far = 1.0 / (1.0 + math.exp(-5.0)), math.exp(-5.0) / (1.0 + math.exp(-5.0))
    expected = torch.tensor([0.5, 0.5 * near, 0.5 * far])[:, None].expand(3, 6)
    torch.testing.assert_close(weights, expected)
    fused = 0.5 * features[0] + 0.5 * near * features[1] + 0.5 * far * features[2]
    torch.testing.assert_close(result.features, fused)


def test_da_returns_the_front_feature_exactly_when_only_the_front_view_sees_the_point():
    features = _da_features()
    valid = torch.zeros(3, 6, dtype=torch.bool)
    valid[0] = True
    result = DistanceAwareFusion()(features, valid)
    torch.testing.assert_close(result.features, features[0], rtol=0, atol=0)
    torch.testing.assert_close(result.view_weights, torch.tensor([1.0, 0.0, 0.0])[:, None].expand(3, 6))


def test_da_shares_all_the_weight_among_the_others_when_the_front_view_misses_the_point():
    features = _da_features()
    features[0] = 0.0  # what sampling gives an invalid view
    valid = torch.ones(3, 6, dtype=torch.bool)
    valid[0] = False
    result = DistanceAwareFusion()(features, valid)
    torch.testing.assert_close(result.view_weights[0], torch.zeros(6))
    torch.testing.assert_close(result.view_weights.sum(dim=0), torch.ones(6))
    # Without a front feature there is no distance to measure: the others are averaged.
    torch.testing.assert_close(result.view_weights[1:], torch.full((2, 6), 0.5))
    torch.testing.assert_close(result.features, 0.5 * (features[1] + features[2]))


def test_da_puts_the_front_share_on_the_front_view_index():
    features = _da_features()[[2, 1, 0]]  # the front view (index 2 now) equals view 1, view 0 is far
    result = DistanceAwareFusion(front_view=2)(features, torch.ones(3, 6, dtype=torch.bool))
    torch.testing.assert_close(result.view_weights[2], torch.full((6,), 0.5))
    assert (result.view_weights[1] > result.view_weights[0]).all()
    torch.testing.assert_close(result.view_weights.sum(dim=0), torch.ones(6))


def test_da_gives_zero_without_nan_for_a_point_no_view_sees():
    fusion = DistanceAwareFusion()
    features = torch.zeros(3, 2, 4, requires_grad=True)
    result = fusion(features, torch.zeros(3, 2, dtype=torch.bool))
    torch.testing.assert_close(result.features, torch.zeros(2, 4))
    torch.testing.assert_close(result.view_weights, torch.zeros(3, 2))
    result.features.sum().backward()
    for grad in (features.grad, fusion.log_temperature.grad, fusion.front_logit.grad):
        assert grad is not None and torch.isfinite(grad).all()


# ---------------------------------------------------------------------------------------------------------------------
# Frames in time


@pytest.mark.parametrize(
    ("time", "expected"),
    [
        (0.0, (0, 1, 0.0)),
        (0.375, (1, 2, 0.5)),
        (1.0, (3, 4, 1.0)),
        (-0.5, (0, 1, 0.0)),
        (1.7, (3, 4, 1.0)),
    ],
)
def test_frame_bracket_finds_the_two_frames_around_a_time_and_the_blend(time, expected):
    lower, upper, blend = frame_bracket(torch.linspace(0.0, 1.0, 5), time)
    assert (lower, upper) == expected[:2]
    assert blend == pytest.approx(expected[2])


@pytest.mark.parametrize("frame", [1, 2, 3])
def test_frame_bracket_gives_all_the_weight_to_a_frame_hit_exactly(frame):
    lower, upper, blend = frame_bracket([0.0, 0.25, 0.5, 0.75, 1.0], 0.25 * frame)
    shares = {lower: 1.0 - blend}
    shares[upper] = shares.get(upper, 0.0) + blend
    assert shares.get(frame) == pytest.approx(1.0)


def test_frame_bracket_of_a_single_frame_is_that_frame():
    assert frame_bracket([0.3], 0.9) == (0, 0, 0.0)


@pytest.mark.parametrize("times", [[0.0, 0.25, 0.5, 0.75, 1.0], [0.1, 0.2, 0.6], [0.3]])
@pytest.mark.parametrize("time", [-0.5, 0.0, 0.1, 0.2, 0.25, 0.3, 0.375, 0.6, 0.74, 0.75, 1.0, 1.7])
def test_frame_bracket_on_device_gives_each_frame_the_host_brackets_share(times, time):
    """The training step's bracket, computed on the device, against the host's (the reference)."""
    lower, upper, blend = frame_bracket(times, time)
    expected = torch.zeros(len(times), dtype=torch.float64)
    expected[lower] += 1.0 - blend
    expected[upper] += blend
    frames, shares = frame_bracket_on_device(torch.tensor(times), torch.tensor(time))
    assert frames.dtype == torch.long and frames.shape == (2,) and shares.shape == (2,)
    assert int(frames[0]) == lower  # the first is the lower frame, the second the upper (the same frame alone)
    given = torch.zeros(len(times), dtype=torch.float64).index_add_(0, frames, shares.double())
    torch.testing.assert_close(given, expected, atol=1e-6, rtol=0.0)


@pytest.mark.parametrize("fusion", ["front", "mean", "ga", "da"])
def test_frame_point_features_at_a_tensor_time_equal_those_at_the_same_python_time(fusion):
    """A training step's time is a device tensor and its frames are found there, both bracket frames sampled in
    one batch: features, view weights and gradients equal the host path's, which samples only the frames
    with a share (the reference), at frame times, between them and outside the clip."""
    torch.manual_seed(0)
    module = FramePointFeatures(moving_cameras_feature_bank(fusion, out_dim=2))
    generator = torch.Generator().manual_seed(1)
    points = torch.randn(64, 3, generator=generator) * torch.tensor([0.8, 0.8, 0.5]) + torch.tensor([0.0, 0.0, 1.5])
    for time in (0.0, 0.3, 0.45, 0.7, 0.99, 1.0, -0.2, 1.3):
        results, grads = [], []
        stored = torch.tensor(time)  # float32, as a camera's time is; the host path read it back with float()
        for given in (float(stored), stored):
            module.zero_grad(set_to_none=True)
            at = points.clone().requires_grad_(True)
            result = module(at, given)
            (result.features.square().sum() + result.view_weights.sum()).backward()
            results.append(result)
            grads.append([at.grad] + [p.grad for p in module.parameters()])
        host, device = results
        visible = host.view_weights.sum(0) > 0
        assert 0 < int(visible.sum()) < len(points), f"time {time}: the toy cameras should see some points, not all"
        torch.testing.assert_close(device.features, host.features, msg=f"time {time}")
        torch.testing.assert_close(device.view_weights, host.view_weights, msg=f"time {time}")
        for got, want in zip(grads[1], grads[0]):
            if want is None:
                assert got is None or not got.any()
            else:
                torch.testing.assert_close(got, want, msg=f"time {time}")


@pytest.mark.parametrize("fusion", ["front", "mean", "ga", "da"])
def test_frame_point_features_at_a_tensor_time_read_nothing_back(fusion):
    """Every fusion at a tensor time dispatches no host read (``aten._local_scalar_dense``, what ``float()``,
    ``.item()`` and ``bool()`` dispatch to) and no data-dependent shape (``nonzero``): both would stall a GPU
    step and break its CUDA-graph capture."""
    torch.manual_seed(0)
    module = FramePointFeatures(moving_cameras_feature_bank(fusion, out_dim=2))
    points = (torch.randn(32, 3) * 0.5 + torch.tensor([0.0, 0.0, 1.5])).requires_grad_(True)
    with dispatched_operations() as seen:
        result = module(points, torch.tensor(0.45))
        (result.features.sum() + result.view_weights.sum()).backward()
    assert seen.host_reads == []


def _constant_frames(fusion="mean", out_dim=3):
    """Two frames of two identical toy cameras; frame 0's maps are all ones, frame 1's all threes."""
    frames, num_views, channels = 2, 2, 3
    maps = torch.ones(frames, num_views, channels, 4, 4)
    maps[1] = 3.0
    return FramePointFeatures(
        FeatureBank(
            config=FrameFeaturesConfig(mode="dsfd", fusion=fusion, dim=out_dim),
            maps=maps,
            dynamic_magnitude=torch.zeros(frames, num_views, 4, 4),
            times=torch.tensor([0.0, 1.0]),
            viewmats=IDENTITY_VIEW.expand(frames, num_views, 4, 4).clone(),
            intrinsics=TOY_K.expand(frames, num_views, 3, 3).clone(),
            width=SIZE,
            height=SIZE,
            front_view=0,
        )
    )


def test_frame_point_features_blend_the_two_frames_around_the_time():
    module = _constant_frames()
    points = torch.tensor([VISIBLE, (0.0, 0.0, 1.0), (-0.5, 0.5, 1.0)])
    for time, value in ((0.0, 1.0), (0.25, 1.5), (0.5, 2.0), (1.0, 3.0)):
        result = module(points, time)
        torch.testing.assert_close(result.features, torch.full((3, 3), value), msg=f"time {time}")
        torch.testing.assert_close(result.view_weights, torch.full((2, 3), 0.5))


def test_frame_point_features_reduce_wide_maps_with_a_learned_linear_layer():
    module = _constant_frames(out_dim=2)
    assert isinstance(module.reduction, torch.nn.Linear)
    assert module.reduction.in_features == 3 and module.reduction.out_features == 2
    with torch.no_grad():
        module.reduction.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]))
        module.reduction.bias.copy_(torch.tensor([0.5, -1.0]))
    result = module(torch.tensor([VISIBLE]), 0.5)
    # The blended map is 2 in every channel: [2 + 0.5, 2 + 2 - 1].
    torch.testing.assert_close(result.features, torch.tensor([[2.5, 3.0]]))


def test_frame_point_features_reduction_gets_gradients_through_the_fused_features():
    torch.manual_seed(0)
    module = _constant_frames(out_dim=2)
    module(torch.tensor([VISIBLE, (0.1, 0.1, 1.0)]), 0.3).features.sum().backward()
    assert module.reduction is not None
    assert module.reduction.weight.grad is not None and module.reduction.weight.grad.abs().sum() > 0
    assert module.reduction.bias.grad is not None and module.reduction.bias.grad.abs().sum() > 0


def test_frame_point_features_have_no_reduction_when_maps_already_have_the_output_width():
    assert _constant_frames(out_dim=3).reduction is None


@pytest.mark.parametrize("fusion", ["front", "mean", "ga", "da"])
def test_frame_point_features_are_zero_without_nan_for_a_point_outside_every_view(fusion):
    torch.manual_seed(0)
    module = _constant_frames(fusion=fusion, out_dim=2)
    points = torch.tensor([VISIBLE, BEHIND, OUTSIDE], requires_grad=True)
    result = module(points, 0.6)
    assert torch.isfinite(result.features).all() and torch.isfinite(result.view_weights).all()
    torch.testing.assert_close(result.features[1:], torch.zeros(2, 2))
    torch.testing.assert_close(result.view_weights[:, 1:], torch.zeros(2, 2))
    result.features.sum().backward()
    assert torch.isfinite(points.grad).all()
    for name, parameter in module.named_parameters():
        assert parameter.grad is None or torch.isfinite(parameter.grad).all(), name
