"""The training step's graphed parts (``ds4d_ns.step_graphs``) against the eager code they replace.

On the CPU the graphed functions run eagerly and must equal the model's terms written out; on a GPU
(``gpu`` marker) the CUDA-graph replays must give the eager values and gradients, across new inputs
and a change of the Gaussian count (a new capture).
"""

from __future__ import annotations

from typing import Callable, Dict, List, Tuple

import pytest
import torch
from torch import Tensor

from ds4d_ns.cuda_graphs import GraphedFunction
from ds4d_ns.fields.deformation import DeformationField
from ds4d_ns.losses.photometric import photometric_loss
from ds4d_ns.options import SamplingPoints
from ds4d_ns.step_graphs import DeformationStep, ImageLosses

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")


def _field(device: str, extra: int = 0) -> DeformationField:
    torch.manual_seed(0)
    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    field = DeformationField(aabb, 8, 5, (1, 2), 4, mlp_width=16, extra_feature_dim=extra).to(device)
    for head in (field.position_head, field.rotation_head, field.scale_head):  # non-zero heads: real gradients
        last = head[-1]
        assert isinstance(last, torch.nn.Linear)
        torch.nn.init.normal_(last.weight, std=0.1)
    with torch.no_grad():
        for parameter in field.hexplane.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return field


def _gaussians(count: int, device: str, seed: int) -> List[Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shapes = ((count, 3), (count, 4), (count, 3))
    return [torch.randn(*shape, generator=generator).to(device).requires_grad_(True) for shape in shapes]


def _deformation_terms(step: Callable, owner: torch.nn.Module, tensors: List[Tensor], time: float) -> Tuple:
    """Values of the step's outputs (``step(means, quats, scales, time)``) and the gradients of one scalar built
    from all of them, for the Gaussians and every parameter of ``owner`` (the field, or field and features)."""
    deformed, regularisers = step(*tensors, torch.tensor(time, device=tensors[0].device))
    total = (deformed.means.sin().sum() + deformed.quats.square().sum() + deformed.scales.exp().sum()) * 1e-2
    total = total + sum(regularisers.values())
    parameters = [*tensors, *owner.parameters()]
    grads = torch.autograd.grad(total, parameters, allow_unused=True)
    values = [deformed.means, deformed.quats, deformed.scales, *regularisers.values()]
    return [v.detach().clone() for v in values], [None if g is None else g.clone() for g in grads]


def _eager_deformation(field: DeformationField) -> Callable:
    def step(means: Tensor, quats: Tensor, scales: Tensor, time: Tensor):
        return field(means, quats, scales, time), field.hexplane.regularisers()

    return step


def test_deformation_step_off_cuda_is_the_field_and_its_regularisers() -> None:
    field = _field("cpu")
    step = DeformationStep(field, enabled=True)
    tensors = _gaussians(40, "cpu", 1)
    ours = _deformation_terms(step, field, tensors, 0.3)
    reference = _deformation_terms(_eager_deformation(field), field, tensors, 0.3)
    for a, b in zip(ours[0] + ours[1], reference[0] + reference[1]):
        torch.testing.assert_close(a, b)
    assert step.captures == 0  # nothing captured off CUDA


def _image_batch(device: str, seed: int, views: int = 3) -> Dict[str, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    size = (views, 24, 20)

    def rand(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=generator).to(device)

    return {
        "pred": rand(*size, 3).requires_grad_(True),
        "target": rand(*size, 3),
        "weights": torch.tensor([1.0, 0.5, 0.5][:views], device=device),
        "alpha": rand(*size, 1).requires_grad_(True),
        "target_alpha": rand(*size, 1),
        "motion": (rand(*size) > 0.7),
    }


def _written_out(batch: Dict[str, Tensor], ssim_lambda: float, motion: float, mask: float) -> Dict[str, Tensor]:
    """The model's photometric and alpha terms as they were written before the graphs."""
    rgb = photometric_loss(batch["pred"], batch["target"], batch["weights"], ssim_lambda, batch["motion"], motion)
    return {"rgb_loss": rgb, "mask_loss": mask * (batch["alpha"] - batch["target_alpha"]).square().mean()}


def test_image_losses_off_cuda_equal_the_terms_written_out() -> None:
    batch = _image_batch("cpu", 0)
    losses = ImageLosses(0.2, 2.0, 0.7, enabled=True)
    ours = losses(
        batch["pred"], batch["target"], batch["weights"], batch["alpha"], batch["target_alpha"], batch["motion"]
    )
    reference = _written_out(batch, 0.2, 2.0, 0.7)
    assert ours.keys() == reference.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], reference[key])
    # without a target alpha there is no alpha term, and a zero motion weight ignores the mask
    plain = ImageLosses(0.2, 0.0, 0.7, enabled=True)(batch["pred"], batch["target"], batch["weights"], batch["alpha"])
    assert list(plain) == ["rgb_loss"]
    expected = photometric_loss(batch["pred"], batch["target"], batch["weights"], 0.2)
    torch.testing.assert_close(plain["rgb_loss"], expected)


def test_graphed_function_runs_eagerly_when_disabled_or_without_gradients() -> None:
    calls: List[int] = []

    def double(x: Tensor) -> Tuple[Tensor]:
        calls.append(1)
        return (2 * x,)

    graphed = GraphedFunction(double, enabled=False)
    assert torch.equal(graphed(torch.ones(2))[0], torch.full((2,), 2.0))
    with torch.no_grad():
        GraphedFunction(double, enabled=True)(torch.ones(2))
    assert len(calls) == 2 and graphed.captures == 0


@pytest.mark.gpu
@needs_cuda
def test_graphed_deformation_equals_eager_across_inputs_and_a_new_count() -> None:
    field = _field("cuda")
    graphed = DeformationStep(field, enabled=True)
    eager = _eager_deformation(field)
    for count, seed, time in ((300, 1, 0.1), (300, 2, 0.8), (420, 3, 0.5), (420, 4, 0.0)):
        tensors = _gaussians(count, "cuda", seed)
        ours = _deformation_terms(graphed, field, tensors, time)
        reference = _deformation_terms(eager, field, tensors, time)
        for a, b in zip(ours[0], reference[0]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        for a, b in zip(ours[1], reference[1]):
            # grid_sample's backward adds with atomics: the order of the sums differs between runs
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert graphed.captures == 2  # one capture per Gaussian count


def _featured_parts(device: str, sampling: SamplingPoints):
    """A field reading 2-channel frame features, the toy bank's features (distance-aware fusion, a learnt reduction),
    the step, its eager composition, and Gaussians near the toy cameras."""
    from conftest import moving_cameras_feature_bank

    from ds4d_ns.fields.tssf import FramePointFeatures
    from ds4d_ns.step_graphs import gaussian_frame_features

    field = _field(device, extra=2)
    torch.manual_seed(0)
    features = FramePointFeatures(moving_cameras_feature_bank("da", out_dim=2)).to(device)
    step = DeformationStep(field, enabled=True, features=features)

    def eager(means: Tensor, quats: Tensor, scales: Tensor, time: Tensor):
        extra = gaussian_frame_features(features, field, sampling, means, quats, scales, time).features
        return field(means, quats, scales, time, extra), field.hexplane.regularisers()

    def stepped(means: Tensor, quats: Tensor, scales: Tensor, time: Tensor):
        return step(means, quats, scales, time, sampling)

    def gaussians(count: int, seed: int) -> List[Tensor]:
        tensors = _gaussians(count, device, seed)
        with torch.no_grad():  # in front of the toy cameras
            tensors[0].mul_(torch.tensor([0.5, 0.5, 0.3], device=device)).add_(
                torch.tensor([0.0, 0.0, 0.8], device=device)
            )
        return tensors

    return step, stepped, eager, step.parameters_owner, gaussians


@pytest.mark.parametrize("sampling", ["canonical", "deformed"])
def test_deformation_step_with_frame_features_off_cuda_is_the_features_then_the_field(sampling: SamplingPoints) -> None:
    """The step samples the frame features itself (so that a GPU replays them with the deformation): off CUDA
    it equals the features computed first and handed to the field, values and gradients (the fusion's and
    reduction's parameters included)."""
    step, stepped, eager, owner, gaussians = _featured_parts("cpu", sampling)
    tensors = gaussians(60, 1)
    ours, reference = (
        _deformation_terms(stepped, owner, tensors, 0.45),
        _deformation_terms(eager, owner, tensors, 0.45),
    )
    for a, b in zip(ours[0], reference[0]):
        torch.testing.assert_close(a, b)
    for a, b in zip(ours[1], reference[1]):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b)
    fusion_grads = ours[1][3 + len(list(step.field.parameters())) :]
    assert any(g is not None and g.abs().sum() > 0 for g in fusion_grads)  # the features learn through the step
    assert step.captures == 0


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("sampling", ["canonical", "deformed"])
def test_graphed_deformation_with_frame_features_equals_eager(sampling: SamplingPoints) -> None:
    """The frame features inside the graph: replays give the eager values and the gradients of the Gaussians and
    of the fusion's parameters, at frame times and between them, and after a new Gaussian count."""
    step, stepped, eager, owner, gaussians = _featured_parts("cuda", sampling)
    for count, seed, time in ((200, 5, 0.3), (200, 6, 0.45), (260, 7, 1.0)):
        tensors = gaussians(count, seed)
        ours = _deformation_terms(stepped, owner, tensors, time)
        reference = _deformation_terms(eager, owner, tensors, time)
        for a, b in zip(ours[0], reference[0]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        for a, b in zip(ours[1], reference[1]):
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert step.captures == 2


@pytest.mark.gpu
@needs_cuda
def test_graphed_image_losses_equal_eager_values_and_gradients() -> None:
    graphed = ImageLosses(0.2, 2.0, 0.7, enabled=True)
    for seed in range(3):
        batch = _image_batch("cuda", seed, views=7)
        args = (
            batch["pred"],
            batch["target"],
            batch["weights"],
            batch["alpha"],
            batch["target_alpha"],
            batch["motion"],
        )
        ours = graphed(*args)
        reference = _written_out(batch, 0.2, 2.0, 0.7)
        total_ours, total_reference = (torch.stack(list(terms.values())).sum() for terms in (ours, reference))
        grads_ours = torch.autograd.grad(total_ours, [batch["pred"], batch["alpha"]])
        grads_reference = torch.autograd.grad(total_reference, [batch["pred"], batch["alpha"]])
        torch.testing.assert_close(total_ours, total_reference, rtol=1e-5, atol=1e-7)
        for a, b in zip(grads_ours, grads_reference):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-8)
    assert graphed.captures == 1


def test_graphed_inference_runs_eagerly_off_cuda_without_gradients() -> None:
    from ds4d_ns.cuda_graphs import GraphedInference

    weight = torch.ones(3, requires_grad=True)
    inference = GraphedInference(lambda x: (x * weight,), enabled=True)
    (out,) = inference(torch.arange(3.0))
    assert torch.equal(out, torch.arange(3.0)) and not out.requires_grad and inference.captures == 0


class _EverywhereGraphed(GraphedFunction):
    """Takes the capture path on the CPU too (the capture itself is replaced in the tests below)."""

    def _graphable(self, args) -> bool:
        return self.enabled


def test_graphed_function_captures_once_per_layout_and_again_when_parameters_are_replaced(monkeypatch) -> None:
    captured: List[tuple] = []

    def fake_capture(module, samples, allow_unused_input=False):
        captured.append(tuple(sample.shape for sample in samples))
        assert all(sample.is_leaf for sample in samples)  # detached copies, never the caller's tensors
        return module  # replays as the eager module would

    monkeypatch.setattr(torch.cuda, "make_graphed_callables", fake_capture)
    owner = torch.nn.Linear(3, 2)
    graphed = _EverywhereGraphed(lambda x: (owner(x),), owner=owner)
    for rows in (4, 4, 5, 5, 4):
        (out,) = graphed(torch.ones(rows, 3))
        assert out.shape == (rows, 2)
    assert captured == [((4, 3),), ((5, 3),), ((4, 3),)]  # a new capture whenever the shapes change
    owner.weight = torch.nn.Parameter(torch.zeros(2, 3))  # a checkpoint load replaces a parameter
    graphed(torch.ones(4, 3))
    assert len(captured) == 4 and graphed.captures == 4


def test_a_failed_capture_warns_once_and_runs_eagerly_from_then_on(monkeypatch, capsys) -> None:
    def failing_capture(module, samples, allow_unused_input=False):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(torch.cuda, "make_graphed_callables", failing_capture)
    graphed = _EverywhereGraphed(lambda x: (2 * x,))
    assert torch.equal(graphed(torch.ones(2))[0], torch.full((2,), 2.0))
    assert torch.equal(graphed(torch.ones(3))[0], torch.full((3,), 2.0))
    assert not graphed.enabled and graphed.captures == 0
    logged = capsys.readouterr().out
    assert logged.count("CUDA graph capture") == 1 and "runs eagerly" in logged
