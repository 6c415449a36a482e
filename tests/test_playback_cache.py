"""The playback cache (issue 12): outside training, deformed Gaussians are computed once per frame time
and reused; renders match a direct render, and any parameter change empties the cache."""

from __future__ import annotations

import pytest
import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.scene_box import SceneBox

from ds4d_ns.data.dataset_format import frame_time
from ds4d_ns.fields.deformation import DeformedGaussians
from ds4d_ns.rendering.playback import bracketing_frames, interpolate_geometry, normalised_lerp

NUM_FRAMES = 5


def _model(seed: int = 0, **config):
    from ds4d_ns.ds4d_model import Ds4dModelConfig

    torch.manual_seed(seed)
    model_config = Ds4dModelConfig(
        hexplane_resolution=4,
        hexplane_multires=(1,),
        hexplane_features=2,
        deformation_width=8,
        num_random=64,
        **config,
    )
    model = model_config.setup(
        scene_box=SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3])),
        num_train_data=1,
        metadata={"num_frames": NUM_FRAMES},
    )
    with torch.no_grad():  # the heads start at zero (no motion): give the field real motion to cache
        for parameter in model.deformation.hexplane.parameters():  # planes multiply: keep them near 1
            parameter.uniform_(0.2, 1.8)
        for name, parameter in model.deformation.named_parameters():
            if not name.startswith("hexplane."):
                parameter.normal_(0.0, 0.4)
    return model.eval()


def _camera(time: float) -> Cameras:
    c2w = torch.eye(4)[:3][None].clone()
    c2w[0, 2, 3] = 2.5  # OpenGL camera looking down -z at the origin
    return Cameras(
        camera_to_worlds=c2w, fx=20.0, fy=20.0, cx=8.0, cy=8.0, width=16, height=16, times=torch.tensor([[time]])
    )


def _render(model, time: float) -> torch.Tensor:
    return model.get_outputs_for_camera(_camera(time))["rgb"]


def _direct(model, time: float) -> torch.Tensor:
    mode, model.config.playback_cache = model.config.playback_cache, "off"
    try:
        return _render(model, time)
    finally:
        model.config.playback_cache = mode


def _count_deformations(model, monkeypatch):
    calls = []
    deform = model.gaussians_at

    def counting(time):
        calls.append(time)
        return deform(time)

    monkeypatch.setattr(model, "gaussians_at", counting)
    return calls


def test_a_frame_time_renders_the_same_image_as_a_direct_render():
    model = _model()
    t = frame_time(1, NUM_FRAMES)
    assert _render(model, t).std() > 0  # something is drawn
    torch.testing.assert_close(_render(model, t), _direct(model, t))
    torch.testing.assert_close(_render(model, t), _direct(model, t))  # again, from the cache


def test_the_motion_is_real_so_the_next_tests_can_fail():
    model = _model()
    a, b = model.gaussians_at(frame_time(1, NUM_FRAMES)), model.gaussians_at(frame_time(2, NUM_FRAMES))
    assert (a.means - b.means).abs().max() > 1e-3
    assert not torch.allclose(_direct(model, frame_time(1, NUM_FRAMES)), _direct(model, frame_time(2, NUM_FRAMES)))


def test_between_frames_the_geometry_is_the_blend_of_the_two_cached_frames(monkeypatch):
    model = _model()
    t1, t2 = frame_time(1, NUM_FRAMES), frame_time(2, NUM_FRAMES)
    time = t1 + 0.3 * (t2 - t1)
    expected = interpolate_geometry(model.gaussians_at(t1), model.gaussians_at(t2), 0.3)
    got = model.playback_geometry(time)
    torch.testing.assert_close(got.means, expected.means)
    torch.testing.assert_close(got.scales, expected.scales)
    torch.testing.assert_close(got.quats, expected.quats)

    # the image is the image of that blend, not of the deformation at ``time``
    blended = DeformedGaussians(expected.means, expected.quats, expected.scales)
    monkeypatch.setattr(model, "gaussians_at", lambda _: blended)
    torch.testing.assert_close(_render(model, time), _direct(model, time))


def test_exact_mode_renders_between_frames_as_a_direct_render():
    model = _model(playback_cache="exact")
    time = 0.5 * (frame_time(1, NUM_FRAMES) + frame_time(2, NUM_FRAMES)) + 0.01
    torch.testing.assert_close(_render(model, time), _direct(model, time))
    frames = _model(playback_cache="frames")
    assert not torch.allclose(frames.playback_geometry(time).means, frames.gaussians_at(time).means)


def test_each_frame_time_is_deformed_once_over_repeated_renders(monkeypatch):
    model = _model()
    calls = _count_deformations(model, monkeypatch)
    times = [frame_time(i, NUM_FRAMES) for i in range(NUM_FRAMES)]
    between = [0.5 * (a + b) for a, b in zip(times, times[1:])]
    for _ in range(3):
        for time in times + between:
            _render(model, time)
    assert sorted(calls) == times


def test_off_deforms_at_every_render(monkeypatch):
    model = _model(playback_cache="off")
    calls = _count_deformations(model, monkeypatch)
    for _ in range(3):
        _render(model, frame_time(1, NUM_FRAMES))
    assert len(calls) == 3


def _change_in_place(model):
    with torch.no_grad():
        model.deformation.hexplane.parameters().__next__().mul_(1.5)


def _optimiser_step(model):
    model.train()
    model.step = model.config.static_stage_steps  # the deformation trains from the dynamic stage on
    optimiser = torch.optim.Adam(model.deformation.parameters(), lr=0.1)
    model.gaussians_at(frame_time(1, NUM_FRAMES)).means.square().sum().backward()
    optimiser.step()
    model.eval()


def _move_canonical_means(model):
    with torch.no_grad():
        model.means.add_(0.05)


def _densify(model):
    # densification replaces the Gaussian tensors by longer ones
    for name, value in list(model.gauss_params.items()):
        model.gauss_params[name] = torch.nn.Parameter(torch.cat([value.detach(), value.detach()[:3]]))


def _load_another(model):
    model.load_state_dict(_model(seed=7).state_dict())


@pytest.mark.parametrize("change", [_change_in_place, _optimiser_step, _move_canonical_means, _densify, _load_another])
def test_a_parameter_change_empties_the_cache(change, monkeypatch):
    model = _model()
    t = frame_time(1, NUM_FRAMES)
    before = _render(model, t)
    change(model)
    after = _direct(model, t)
    assert not torch.allclose(before, after)  # the change shows in a direct render
    torch.testing.assert_close(_render(model, t), after)


def test_training_mode_never_uses_the_cache(monkeypatch):
    model = _model()
    t = frame_time(1, NUM_FRAMES)
    _render(model, t)
    model.train()
    assert len(model._playback) == 0  # entering training drops it
    model.step = model.config.static_stage_steps  # dynamic stage: the deformation is used
    calls = _count_deformations(model, monkeypatch)
    for _ in range(2):
        geometry = model.playback_geometry(t)
        assert geometry.means.requires_grad  # a live deformation, with gradients
    assert len(calls) == 2 and len(model._playback) == 0


def test_normalised_lerp_takes_the_short_arc_and_hits_both_ends():
    q0 = torch.nn.functional.normalize(torch.randn(10, 4), dim=-1)
    q1 = torch.nn.functional.normalize(torch.randn(10, 4), dim=-1)
    torch.testing.assert_close(normalised_lerp(q0, q1, 0.0), q0)
    end = normalised_lerp(q0, q1, 1.0)
    torch.testing.assert_close(end * torch.sign((end * q1).sum(-1, keepdim=True)), q1)
    # -q1 is the same rotation: the blend is the same
    torch.testing.assert_close(normalised_lerp(q0, -q1, 0.4), normalised_lerp(q0, q1, 0.4))


def test_bracketing_frames():
    times = [0.0, 0.25, 0.5, 0.75, 1.0]
    assert bracketing_frames(0.25, times) == (1, 1, 0.0)
    assert bracketing_frames(0.25 + 1e-8, times) == (1, 1, 0.0)  # a float32 camera time
    i, j, w = bracketing_frames(0.3, times)
    assert (i, j) == (1, 2) and w == pytest.approx(0.2)
    assert bracketing_frames(1.0, times) == (4, 4, 0.0)
    assert bracketing_frames(1.2, times) is None and bracketing_frames(-0.1, times) is None
