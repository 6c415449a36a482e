"""Camera matrices, views, learning-rate schedule and densification threshold."""

from __future__ import annotations

import pytest
import torch

from ds4d_ns import camera_layouts
from ds4d_ns.rendering.camera_matrices import opengl_c2w_to_opencv_viewmat
from ds4d_ns.schedulers import log_linear_factor
from ds4d_ns.strategy import top_fraction_threshold


def test_viewmat_puts_the_looked_at_point_in_front_of_an_opencv_camera():
    c2w = torch.stack([camera_layouts.orbit_c2w(v) for v in camera_layouts.zero123pp_v12_views()])
    viewmats = opengl_c2w_to_opencv_viewmat(c2w)
    origin = torch.tensor([0.0, 0.0, 0.0, 1.0])
    in_camera = viewmats @ origin
    radius = camera_layouts.zero123pp_v12_views()[0].radius
    torch.testing.assert_close(in_camera[:, :3], torch.tensor([0.0, 0.0, radius]).expand(6, 3), atol=1e-5, rtol=0)
    # world up (+z) projects upwards in the image, i.e. to negative OpenCV y
    up = viewmats @ torch.tensor([0.0, 0.0, 0.1, 1.0])
    assert (up[:, 1] < 0).all()
    torch.testing.assert_close(viewmats @ torch.linalg.inv(viewmats), torch.eye(4).expand(6, 4, 4), atol=1e-5, rtol=0)


def test_orbit_convention_front_camera_on_minus_y_and_azimuth_90_on_plus_x():
    torch.testing.assert_close(camera_layouts.orbit_position(0, 0, 2), torch.tensor([0.0, -2.0, 0.0]))
    torch.testing.assert_close(
        camera_layouts.orbit_position(90, 0, 2), torch.tensor([2.0, 0.0, 0.0]), atol=1e-6, rtol=0
    )
    assert camera_layouts.orbit_position(0, 30, 2)[2].item() == pytest.approx(1.0)


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


def test_ping_pong_plays_forward_then_back_without_repeating_the_turning_frames():
    from ds4d_ns.scripts.render import ping_pong

    assert ping_pong([0, 1, 2, 3], 0) == [0, 1, 2, 3]
    assert ping_pong([0, 1, 2, 3], 1) == [0, 1, 2, 3, 2, 1, 0]
    assert ping_pong([0, 1, 2, 3], 2) == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
    assert ping_pong([7], 3) == [7]


def test_front_view_motion_separates_a_moving_render_from_a_static_one():
    """The CPU-demo benchmark's motion measure: recall 1 when the render moves as the truth does, 0 when static."""
    import importlib.util
    from pathlib import Path

    import torch

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "cpu_demo_motion.py"
    spec = importlib.util.spec_from_file_location("cpu_demo_motion", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    truths = torch.ones(5, 16, 16, 3)
    for t in range(5):  # a dark bar moving right by two pixels per frame
        truths[t, 6:10, 2 * t : 2 * t + 3] = 0.0
    moving = module.front_view_motion(truths.clone(), truths)
    assert moving["motion_recall"] == 1.0 and moving["change_ratio"] == 1.0 and moving["psnr_moving"] > 90
    static = module.front_view_motion(truths[2:3].expand(5, -1, -1, -1), truths)
    assert static["motion_recall"] == 0.0 and static["change_ratio"] == 0.0
    assert static["psnr_moving"] < moving["psnr_moving"]


@pytest.mark.parametrize("scale", [1.0, 0.5, 1 / 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_intrinsics_and_size_equal_nerfstudios_rescaled_intrinsics(scale, dtype):
    from nerfstudio.cameras.cameras import Cameras

    from ds4d_ns.rendering.camera_matrices import intrinsics_and_size

    cameras = Cameras(
        camera_to_worlds=torch.eye(4, dtype=dtype)[:3].expand(3, 3, 4),
        fx=torch.tensor([[100.0], [120.0], [90.5]], dtype=dtype),
        fy=torch.tensor([[101.0], [119.0], [91.5]], dtype=dtype),
        cx=torch.tensor([[63.5], [64.0], [62.25]], dtype=dtype),
        cy=torch.tensor([[47.5], [48.0], [46.75]], dtype=dtype),
        width=127,
        height=95,
    )
    Ks, width, height = intrinsics_and_size(cameras, scale)
    cameras.rescale_output_resolution(scale)
    torch.testing.assert_close(Ks, cameras.get_intrinsics_matrices())  # dtype included: float32
    assert (width, height) == (int(cameras.width[0]), int(cameras.height[0]))


def test_motion_headroom_reads_a_batch_clip_per_frame_and_its_training_log(tmp_path):
    """benchmarks/motion_headroom.py: per-frame means over views, the middle frame, and the training log's tail."""
    import importlib.util
    from pathlib import Path

    from torch.utils.tensorboard import SummaryWriter

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "motion_headroom.py"
    spec = importlib.util.spec_from_file_location("motion_headroom", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    clip = tmp_path / "base-windmill-0.0"
    eval_dir = clip / "clips" / clip.name / "eval"
    eval_dir.mkdir(parents=True)
    rows = ["view,frame,time,psnr,ssim,psnr_moving"]
    for frame in range(5):  # view means: moving 20 + frame, except the middle frame (2) at 30
        for view, offset in (("eval_0", -1.0), ("eval_1", 1.0)):
            moving = (30.0 if frame == 2 else 20.0 + frame) + offset
            rows.append(f"{view},{frame},{frame / 4},{40.0 + offset},0.9,{moving}")
    (eval_dir / "per_frame.csv").write_text("\n".join(rows) + "\n")
    run = clip / "clips" / clip.name / "train" / "ds4d-base" / "run"
    writer = SummaryWriter(str(run))
    for step in range(15):  # the last ten values are 5..14
        writer.add_scalar("Train Metrics Dict/psnr_moving", float(step), step)
    writer.close()

    record = module.clip_record(clip)
    assert record["eval_moving_per_frame"] == [20.0, 21.0, 30.0, 23.0, 24.0]
    assert record["eval_psnr_per_frame"] == [40.0] * 5
    assert record["middle_frame"] == 2 and record["eval_moving_middle"] == 30.0
    assert record["eval_moving_mean"] == pytest.approx(23.6)
    assert record["motion_headroom_db"] == pytest.approx(6.4)
    assert record["train_moving_last"] == pytest.approx(9.5)
    assert module.clip_record(tmp_path / "no-such-clip") is None


def test_the_photometric_loss_weights_each_view_by_its_role():
    """rgb_loss = mean over views of role weight x ((1 - lambda) L1 + lambda (1 - SSIM)), input views at their
    own weight: a slow per-view reference against ``ds4d_ns.losses.photometric``."""
    import torch
    from pytorch_msssim import ssim

    from ds4d_ns.data.dataset_format import ROLE_CODES
    from ds4d_ns.losses.photometric import photometric_loss, role_weights

    generator = torch.Generator().manual_seed(0)
    pred, target = torch.rand(3, 16, 16, 3, generator=generator), torch.rand(3, 16, 16, 3, generator=generator)
    roles = torch.tensor([ROLE_CODES["input"], ROLE_CODES["pseudo"], ROLE_CODES["pseudo"]])
    weights = role_weights(roles, 2.0, 0.5)
    assert weights.tolist() == [2.0, 0.5, 0.5]
    expected = 0.0
    for view in range(3):
        l1 = (pred[view] - target[view]).abs().mean()
        structural = 1.0 - ssim(
            pred[view].permute(2, 0, 1)[None], target[view].permute(2, 0, 1)[None], data_range=1.0, win_size=11
        )
        expected += float(weights[view] * (0.8 * l1 + 0.2 * structural)) / 3
    assert abs(float(photometric_loss(pred, target, weights, 0.2)) - expected) < 1e-5


def test_image_size_is_read_once_per_size_tensors_and_again_after_a_write() -> None:
    from ds4d_ns.rendering.camera_matrices import _image_size

    width, height = torch.tensor([[64], [64]]), torch.tensor([[48], [48]])
    assert _image_size(width, height) == (64, 48)
    assert _image_size(width, height) == (64, 48)
    width[:] = 80  # an in-place write bumps the version: read again
    assert _image_size(width, height) == (80, 48)
    assert _image_size(width, torch.tensor([[30]])) == (80, 30)  # another height tensor


def test_camera_matrices_are_built_once_per_cached_cameras_and_again_after_a_write() -> None:
    """Training serves each frame's cameras as the same tensors at every step: the world-to-camera and pinhole
    matrices are built on the first step that sees them (no operation dispatched after that), and again when
    a tensor is written to or the scale changes; always equal to the direct computation."""
    from conftest import dispatched_operations
    from nerfstudio.cameras.cameras import Cameras

    from ds4d_ns.rendering.camera_matrices import cached_viewmats, intrinsics_and_size, opengl_c2w_to_opencv_viewmat

    generator = torch.Generator().manual_seed(0)
    cameras = Cameras(
        camera_to_worlds=torch.randn(3, 3, 4, generator=generator),
        fx=torch.tensor([[100.0], [120.0], [90.5]]),
        fy=torch.tensor([[101.0], [119.0], [91.5]]),
        cx=torch.full((3, 1), 32.0),
        cy=torch.full((3, 1), 24.0),
        width=64,
        height=48,
    )

    def direct(scale: float):
        copy = Cameras(
            camera_to_worlds=cameras.camera_to_worlds.clone(),
            fx=cameras.fx.clone(),
            fy=cameras.fy.clone(),
            cx=cameras.cx.clone(),
            cy=cameras.cy.clone(),
            width=64,
            height=48,
        )
        copy.rescale_output_resolution(scale)
        return opengl_c2w_to_opencv_viewmat(cameras.camera_to_worlds.clone()), copy.get_intrinsics_matrices()

    first = cached_viewmats(cameras.camera_to_worlds), intrinsics_and_size(cameras, 0.5)[0]
    with dispatched_operations() as seen:
        again = cached_viewmats(cameras.camera_to_worlds), intrinsics_and_size(cameras, 0.5)[0]
    assert seen.operations == [] and again[0] is first[0] and again[1] is first[1]
    for got, want in zip(first, direct(0.5)):
        torch.testing.assert_close(got, want)

    cameras.camera_to_worlds[0, 0, 3] += 1.0  # a write: built again
    cameras.cx[1] = 30.0
    rebuilt = cached_viewmats(cameras.camera_to_worlds), intrinsics_and_size(cameras, 0.5)[0]
    for got, want in zip(rebuilt, direct(0.5)):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(intrinsics_and_size(cameras, 1.0)[0], direct(1.0)[1])  # another scale
    moving = cameras.camera_to_worlds.clone().requires_grad_(True)  # a pose being optimised: never cached
    assert cached_viewmats(moving).requires_grad and cached_viewmats(moving) is not cached_viewmats(moving)
