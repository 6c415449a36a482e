"""Camera matrices, views, learning-rate schedule and densification threshold."""

from __future__ import annotations

import pytest
import torch

from ds4d_ns import views
from ds4d_ns.rendering.camera_matrices import opengl_c2w_to_opencv_viewmat
from ds4d_ns.schedulers import log_linear_factor
from ds4d_ns.strategy import top_fraction_threshold


def test_viewmat_puts_the_looked_at_point_in_front_of_an_opencv_camera():
    c2w = torch.stack([views.orbit_c2w(v) for v in views.zero123pp_v12_views()])
    viewmats = opengl_c2w_to_opencv_viewmat(c2w)
    origin = torch.tensor([0.0, 0.0, 0.0, 1.0])
    in_camera = viewmats @ origin
    radius = views.zero123pp_v12_views()[0].radius
    torch.testing.assert_close(in_camera[:, :3], torch.tensor([0.0, 0.0, radius]).expand(6, 3), atol=1e-5, rtol=0)
    # world up (+z) projects upwards in the image, i.e. to negative OpenCV y
    up = viewmats @ torch.tensor([0.0, 0.0, 0.1, 1.0])
    assert (up[:, 1] < 0).all()
    torch.testing.assert_close(viewmats @ torch.linalg.inv(viewmats), torch.eye(4).expand(6, 4, 4), atol=1e-5, rtol=0)


def test_orbit_convention_front_camera_on_minus_y_and_azimuth_90_on_plus_x():
    torch.testing.assert_close(views.orbit_position(0, 0, 2), torch.tensor([0.0, -2.0, 0.0]))
    torch.testing.assert_close(views.orbit_position(90, 0, 2), torch.tensor([2.0, 0.0, 0.0]), atol=1e-6, rtol=0)
    assert views.orbit_position(0, 30, 2)[2].item() == pytest.approx(1.0)


def test_log_linear_factor_reaches_the_final_rate_and_stays_there():
    assert log_linear_factor(0, 1e-2, 1e-4, 100) == pytest.approx(1.0)
    assert log_linear_factor(50, 1e-2, 1e-4, 100) == pytest.approx(0.1)
    assert log_linear_factor(100, 1e-2, 1e-4, 100) == pytest.approx(0.01)
    assert log_linear_factor(500, 1e-2, 1e-4, 100) == pytest.approx(0.01)
    assert type(log_linear_factor(10, 1e-2, 1e-4, 100)) is float  # numpy scalars break weights_only loading


def test_top_fraction_threshold_selects_the_requested_share():
    grads = torch.arange(1000, dtype=torch.float32)
    counts = torch.ones(1000)
    threshold = top_fraction_threshold(grads, counts, 0.025, floor=0.0)
    assert int((grads > threshold).sum()) == 25
    # unseen Gaussians are ignored, and the floor wins when the quantile is below it
    counts[:500] = 0  # unseen: never rendered since the last refinement, so no gradient either
    grads[:500] = 0.0
    assert int((grads > top_fraction_threshold(grads, counts, 0.1, floor=0.0)).sum()) == 50
    assert top_fraction_threshold(grads, counts, 0.1, floor=1e6) == 1e6
