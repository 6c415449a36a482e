"""The moving region of a view and the PSNR on it, against slow per-pixel references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ds4d_ns.evaluation.motion_region import (
    composite_on_white,
    masked_psnr,
    moving_region,
    moving_regions_by_view,
)


def _moving_region_reference(frames: np.ndarray, threshold: float, dilate_px: int) -> np.ndarray:
    t, h, w, _ = frames.shape
    moving = np.zeros((h, w), dtype=bool)
    for y in range(h):
        for x in range(w):
            median = [sorted(frames[:, y, x, c])[(t - 1) // 2] for c in range(3)]  # torch's lower median
            moving[y, x] = any(abs(frames[k, y, x, c] - median[c]) > threshold for k in range(t) for c in range(3))
    grown = np.zeros_like(moving)
    for y in range(h):
        for x in range(w):
            window = moving[max(0, y - dilate_px) : y + dilate_px + 1, max(0, x - dilate_px) : x + dilate_px + 1]
            grown[y, x] = window.any()
    return grown


@pytest.mark.parametrize("frames_count,dilate_px", [(5, 0), (6, 1), (4, 2)])
def test_moving_region_matches_a_per_pixel_reference(frames_count, dilate_px):
    rng = np.random.default_rng(frames_count)
    frames = np.full((frames_count, 12, 10, 3), 0.5, dtype=np.float32)
    frames += rng.normal(0, 0.01, frames.shape).astype(np.float32)  # noise below the threshold
    for k in range(frames_count):  # a 2x2 square walking right, one pixel per frame
        frames[k, 4:6, 1 + k : 3 + k] = [0.9, 0.1, 0.1]
    expected = _moving_region_reference(frames, 0.05, dilate_px)
    got = moving_region(torch.from_numpy(frames), threshold=0.05, dilate_px=dilate_px).numpy()
    np.testing.assert_array_equal(got, expected)
    assert expected.any() and not expected.all()


def test_a_still_view_has_no_moving_region():
    frames = torch.rand(1, 8, 8, 3).expand(7, 8, 8, 3).clone()
    assert not moving_region(frames).any()


def test_masked_psnr_against_hand_computation_and_empty_mask():
    target = torch.zeros(2, 3, 3, 3)
    pred = torch.zeros(2, 3, 3, 3)
    pred[0, 0, 0] = 0.1  # error 0.1 in one masked pixel, all channels
    pred[1, 2, 2] = 1.0  # a large error outside the mask must not count
    mask = torch.zeros(2, 3, 3, dtype=torch.bool)
    mask[0, 0, 0] = mask[0, 0, 1] = True  # two pixels: mse = (3 * 0.01) / 6
    expected = -10 * math.log10(0.03 / 6)
    assert masked_psnr(pred, target, mask).item() == pytest.approx(expected, rel=1e-5)
    assert math.isnan(masked_psnr(pred, target, torch.zeros_like(mask)).item())


def test_regions_are_per_view_and_composited_on_white():
    still = torch.zeros(6, 6, 4)  # transparent: white after compositing
    moving = [still.clone() for _ in range(3)]
    for k, image in enumerate(moving):
        image[2, k] = torch.tensor([0.0, 0.0, 0.0, 1.0])  # an opaque black pixel moving along a row
    images = [still, still, still] + moving
    regions = moving_regions_by_view(images, [0, 0, 0, 1, 1, 1])
    assert not regions[0].any()
    assert regions[1][2, 0] and regions[1][2, 2] and not regions[1][5, 5]
    assert composite_on_white(still)[0, 0].tolist() == [1.0, 1.0, 1.0]


def test_the_datamanager_serves_each_view_its_moving_region(fake_dataset):
    from ds4d_ns.data.datamanager import Ds4dDatamanagerConfig
    from ds4d_ns.dataparsers.ds4d_dataparser import Ds4dDataParserConfig

    config = Ds4dDatamanagerConfig(dataparser=Ds4dDataParserConfig(data=fake_dataset(frames=3)))
    datamanager = config.setup(device="cpu", test_mode="val")
    datamanager.static_stage_steps = 1
    cameras = datamanager.train_dataset.cameras
    for step in range(1, 4):
        _, batch = datamanager.next_train(step)
        masks = batch["motion_mask"]
        assert masks.dtype == torch.bool and masks.shape == batch["image"].shape[:3]
        for mask, image_idx in zip(masks, batch["image_idx"].tolist()):
            same_view = [
                i
                for i in range(len(cameras))
                if int(cameras.metadata["view_index"][i]) == int(cameras.metadata["view_index"][image_idx])
                and int(cameras.metadata["role"][i]) == int(cameras.metadata["role"][image_idx])
            ]
            frames = torch.stack([composite_on_white(datamanager.cached_train[i]["image"]) for i in same_view])
            assert torch.equal(mask, moving_region(frames))
    eval_entry = datamanager.fixed_indices_eval_dataloader[0][1]
    assert eval_entry["motion_mask"].shape == eval_entry["image"].shape[:2]
