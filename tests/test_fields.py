"""HexPlane and deformation maths."""

from __future__ import annotations

import pytest
import torch

from ds4d_ns.fields.deformation import DeformationField
from ds4d_ns.fields.hexplane import (
    SPATIAL_PLANES,
    TIME_PLANES,
    HexPlaneField,
    normalize_xyzt,
    plane_total_variation,
    time_planes_l1,
    time_smoothness,
)

AABB = torch.tensor([[-1.0, -2.0, 0.0], [1.0, 2.0, 4.0]])


def test_normalize_maps_box_corners_and_time_ends_to_minus_one_and_one():
    positions = torch.stack([AABB[0], AABB[1], AABB.mean(0)])
    times = torch.tensor([[0.0], [1.0], [0.5]])
    coords = normalize_xyzt(positions, times, AABB)
    expected = torch.tensor([[-1.0, -1.0, -1.0, -1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(coords, expected)


def test_normalize_clamps_points_outside_the_box():
    coords = normalize_xyzt(torch.tensor([[5.0, -9.0, 2.0]]), torch.tensor([[0.25]]), AABB)
    torch.testing.assert_close(coords, torch.tensor([[1.0, -1.0, 0.0, -0.5]]))


def test_time_planes_are_read_over_their_whole_time_axis():
    """The 4D-GS bug (times in [0, 1] fed to a [-1, 1] sampler) reads only half the time axis."""
    torch.manual_seed(0)
    field = HexPlaneField(AABB, spatial_resolution=4, time_resolution=5, multires=(1,), feature_dim=2)
    grid = field.grids[0]
    with torch.no_grad():
        for i in SPATIAL_PLANES:
            grid.plane_coefs[i].fill_(1.0)
        for i in TIME_PLANES:
            plane = grid.plane_coefs[i]
            ramp = torch.linspace(1.0, 2.0, plane.shape[-2])[None, :, None]  # time is dimension -2
            plane.copy_(ramp.expand_as(plane))
    point = AABB.mean(0, keepdim=True)
    first = field(point, torch.tensor([[0.0]]))
    last = field(point, torch.tensor([[1.0]]))
    torch.testing.assert_close(first, torch.ones_like(first))  # 1 * 1 * 1 at the first time texel
    torch.testing.assert_close(last, torch.full_like(last, 8.0))  # 2 * 2 * 2 at the last one


def test_hexplane_output_width_is_features_times_scales():
    field = HexPlaneField(AABB, spatial_resolution=4, time_resolution=3, multires=(1, 2, 4), feature_dim=5)
    out = field(torch.rand(7, 3), torch.rand(7, 1))
    assert out.shape == (7, 15) and field.get_out_dim() == 15


def test_hexplane_rejects_bad_shapes():
    field = HexPlaneField(AABB, spatial_resolution=4, time_resolution=3)
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        field(torch.rand(7, 2), torch.rand(7, 1))
    with pytest.raises(ValueError, match="times"):
        field(torch.rand(7, 3), torch.rand(7))
    with pytest.raises(ValueError, match="aabb"):
        HexPlaneField(torch.zeros(2, 3))


def test_deformation_starts_as_the_identity():
    torch.manual_seed(0)
    deform = DeformationField(AABB, spatial_resolution=8, time_resolution=4, multires=(1, 2), plane_features=4)
    means, quats, scales = torch.rand(50, 3), torch.randn(50, 4), torch.randn(50, 3)
    for t in (0.0, 0.3, 1.0):
        out = deform(means, quats, scales, t)
        torch.testing.assert_close(out.means, means)
        torch.testing.assert_close(out.quats, quats)
        torch.testing.assert_close(out.scales, scales)


def test_gradients_reach_every_plane_and_layer_after_one_step():
    torch.manual_seed(0)
    deform = DeformationField(AABB, spatial_resolution=8, time_resolution=4, multires=(1, 2), plane_features=4)
    means = (torch.rand(400, 3) * (AABB[1] - AABB[0]) + AABB[0]).requires_grad_(True)
    quats, scales = torch.randn(400, 4), torch.randn(400, 3)
    optimizer = torch.optim.SGD(deform.parameters(), lr=0.1)
    target = torch.randn(400, 3)
    for _ in range(2):  # zero heads block the trunk's gradient until they have moved once
        optimizer.zero_grad()
        out = deform(means, quats, scales, 0.7)
        loss = (out.means - target).square().mean() + out.quats.square().mean() + out.scales.square().mean()
        loss.backward()
        optimizer.step()
    for name, parameter in deform.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert means.grad is not None and means.grad.abs().sum() > 0


def test_deformation_depends_on_time_once_trained():
    torch.manual_seed(0)
    deform = DeformationField(AABB, spatial_resolution=8, time_resolution=4, multires=(1,), plane_features=4)
    means, quats, scales = torch.zeros(10, 3), torch.randn(10, 4), torch.randn(10, 3)
    optimizer = torch.optim.Adam(deform.parameters(), lr=0.01)
    for _ in range(200):  # learn to move points up by t
        for t in (0.0, 1.0):
            optimizer.zero_grad()
            out = deform(means, quats, scales, t)
            (out.means[:, 2] - t).square().mean().backward()
            optimizer.step()
    early, late = deform(means, quats, scales, 0.0).means, deform(means, quats, scales, 1.0).means
    assert (late[:, 2] - early[:, 2]).mean() > 0.8


def test_extra_features_must_match_the_declared_width():
    deform = DeformationField(AABB, spatial_resolution=4, time_resolution=3, extra_feature_dim=6)
    means, quats, scales = torch.rand(5, 3), torch.randn(5, 4), torch.randn(5, 3)
    out = deform(means, quats, scales, 0.5, extra_features=torch.randn(5, 6))
    torch.testing.assert_close(out.means, means)
    with pytest.raises(ValueError, match="extra features"):
        deform(means, quats, scales, 0.5)
    with pytest.raises(ValueError, match=r"\(5, 6\)"):
        deform(means, quats, scales, 0.5, extra_features=torch.randn(5, 4))


def test_regularisers_against_hand_computation():
    plane = torch.tensor([[[0.0, 1.0], [2.0, 4.0], [4.0, 9.0]]])  # 1 channel, 3 x 2
    # height differences: [2, 3], [2, 5] -> squares 4, 9, 4, 25 -> mean 10.5
    # width differences: 1, 2, 5 -> squares 1, 4, 25 -> mean 10
    assert plane_total_variation(plane).item() == pytest.approx(20.5)
    # second differences along dimension 1: (4-2)-(2-0) = 0 and (9-4)-(4-1) = 2 -> mean of 0, 4 = 2
    assert time_smoothness(plane).item() == pytest.approx(2.0)
    assert time_smoothness(torch.rand(1, 2, 4)).item() == 0.0  # two time texels: no acceleration
    assert time_planes_l1(torch.ones(2, 3, 3)).item() == 0.0
    assert time_planes_l1(torch.full((2, 3, 3), 1.5)).item() == pytest.approx(0.5)


def test_fresh_hexplane_time_regularisers_are_zero():
    field = HexPlaneField(AABB, spatial_resolution=4, time_resolution=3)
    terms = field.regularisers()
    assert terms["time_l1"].item() == 0.0 and terms["time_smoothness"].item() == 0.0
    assert terms["plane_tv"].item() > 0.0  # spatial planes start random


def test_hexplane_sampling_equals_nerfstudio_kplanes_forward_and_gradients():
    """The grouped sampling is K-Planes' product: same values and same gradients for points and planes."""
    torch.manual_seed(3)
    field = HexPlaneField(AABB, spatial_resolution=6, time_resolution=5, multires=(1, 2), feature_dim=4)
    with torch.no_grad():  # time planes start at 1 (no motion): make them vary so the test can fail
        for grid in field.grids:
            for i in TIME_PLANES:
                grid.plane_coefs[i].uniform_(0.5, 1.5)
    positions = (torch.rand(50, 3) * 2.4 - 1.2).requires_grad_(True)  # some outside the box (clamped)
    times = torch.rand(50, 1)
    ours = field(positions, times)
    coords = normalize_xyzt(positions, times, AABB)
    reference = torch.cat([grid(coords) for grid in field.grids], dim=-1)  # Nerfstudio's KPlanesEncoding.forward
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)
    weights = torch.randn_like(ours)
    ours_grads = torch.autograd.grad((ours * weights).sum(), [positions, *field.parameters()])
    reference_grads = torch.autograd.grad((reference * weights).sum(), [positions, *field.parameters()])
    for mine, theirs in zip(ours_grads, reference_grads):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-6)


def test_stacked_regularisers_equal_the_sum_over_planes():
    torch.manual_seed(4)
    field = HexPlaneField(AABB, spatial_resolution=5, time_resolution=6, multires=(1, 2), feature_dim=3)
    with torch.no_grad():
        for grid in field.grids:
            for plane in grid.plane_coefs:
                plane.uniform_(0.0, 2.0)
    regularisers = field.regularisers()
    planes = [grid.plane_coefs for grid in field.grids]
    expected_tv = sum(plane_total_variation(p[i]) for p in planes for i in SPATIAL_PLANES)
    expected_smooth = sum(time_smoothness(p[i]) for p in planes for i in TIME_PLANES)
    expected_l1 = sum(time_planes_l1(p[i]) for p in planes for i in TIME_PLANES)
    torch.testing.assert_close(regularisers["plane_tv"], expected_tv)
    torch.testing.assert_close(regularisers["time_smoothness"], expected_smooth)
    torch.testing.assert_close(regularisers["time_l1"], expected_l1)
