"""The motion-weighted photometric L1 against a per-pixel loop."""

from __future__ import annotations

import pytest
import torch

from ds4d_ns.losses.motion import weighted_l1


@pytest.mark.parametrize("weight", [0.0, 1.0, 4.0])
def test_weighted_l1_matches_a_per_pixel_loop(weight):
    torch.manual_seed(0)
    pred, target = torch.rand(2, 4, 5, 3), torch.rand(2, 4, 5, 3)
    mask = torch.rand(2, 4, 5) > 0.6
    expected = []
    for v in range(2):
        total = 0.0
        for y in range(4):
            for x in range(5):
                factor = 1.0 + weight * float(mask[v, y, x])
                total += factor * float((pred[v, y, x] - target[v, y, x]).abs().sum())
        expected.append(total / (4 * 5 * 3))
    torch.testing.assert_close(weighted_l1(pred, target, mask, weight), torch.tensor(expected))


def test_without_a_mask_it_is_the_plain_mean_and_moving_errors_weigh_more():
    pred, target = torch.zeros(1, 2, 2, 3), torch.zeros(1, 2, 2, 3)
    pred[0, 0, 0] = 1.0  # one wrong pixel
    plain = weighted_l1(pred, target)
    assert plain.item() == pytest.approx(3 / 12)
    moving = torch.zeros(1, 2, 2, dtype=torch.bool)
    moving[0, 0, 0] = True
    assert weighted_l1(pred, target, moving, 4.0).item() == pytest.approx(5 * 3 / 12)
    assert weighted_l1(pred, target, ~moving, 4.0).item() == pytest.approx(plain.item())  # the error is static


def test_the_cached_ssim_window_gives_pytorch_msssims_default_ssim():
    from pytorch_msssim import ssim

    from ds4d_ns.losses.structural import ssim_window

    torch.manual_seed(2)
    x, y = torch.rand(3, 3, 32, 40), torch.rand(3, 3, 32, 40)
    expected = ssim(x, y, data_range=1.0, size_average=False)
    window = ssim_window(3, x.device, x.dtype)
    torch.testing.assert_close(ssim(x, y, data_range=1.0, size_average=False, win=window), expected)
