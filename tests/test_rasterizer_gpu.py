"""The pure-torch rasteriser against gsplat's CUDA ``rasterization`` on the same CUDA tensors.

Needs a GPU (and builds gsplat's kernels on first use). Tolerances, and why they are what they are:

* Both run in float32, but gsplat uses ``__expf`` and sums in another order: on an H100 ordinary
  values differed by 1e-7 on average and 6e-6 at most; we require
  ``|ours - gsplat| <= 2e-5 + 2e-5 |gsplat|`` elementwise.
* A handful of (pixel, Gaussian) pairs lie within float rounding of a discrete decision
  (``alpha >= 1/255``, ``T <= 1e-4``, the integer radius that picks tiles) and may fall on the
  other side in the other implementation. One such flip moves a pixel by at most a few 1e-3 (seen:
  3 of 110592 values, up to 1.8e-3), so we allow 0.05% of elements outside the tolerance above,
  and no element off by more than 2e-2.
* Expected depth ``D / alpha`` is compared only where ``alpha > 0.2``: below that it divides
  rounding noise by a small number.
* Gradients are sums over many pixels, in another order, of terms that include the flips above, so
  they are compared by relative L2 error (< 5e-3; seen: at most 5e-4) and cosine similarity
  (> 0.9999) per parameter.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Tuple

import pytest
import torch
from torch import Tensor

from ds4d_ns.rendering.torch_rasterizer import RasterizeMode, torch_rasterization

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA for gsplat's kernels"),
]

WIDTH, HEIGHT = 128, 96
SH_DEGREE = 2
PARAM_KEYS = ("means", "quats", "scales", "opacities", "colors")


def _viewmat(eye: Tensor) -> Tensor:
    """OpenCV world-to-camera matrix of a camera at ``eye`` looking at the origin, y down."""
    forward = -eye / eye.norm()
    right = torch.linalg.cross(torch.tensor([0.0, -1.0, 0.0]), forward)
    right = right / right.norm()
    down = torch.linalg.cross(forward, right)
    rotation = torch.stack([right, down, forward])
    viewmat = torch.eye(4)
    viewmat[:3, :3] = rotation
    viewmat[:3, 3] = -rotation @ eye
    return viewmat


def _scene(seed: int, n: int = 2000, cameras: int = 3) -> Dict[str, Tensor]:
    """Random SH-coloured Gaussians seen by ``cameras`` cameras; some lie behind or beside them."""
    gen = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=gen) * 2 - 1) * torch.tensor([1.5, 1.2, 3.5])
    quats = torch.randn(n, 4, generator=gen)
    scales = torch.exp(torch.rand(n, 3, generator=gen) * math.log(15.0)) * 0.01
    opacities = torch.rand(n, generator=gen) * 0.95 + 0.04
    # A fifth fully opaque, so alpha hits the 0.999 cap and many pixels saturate (T <= 1e-4).
    opacities = torch.where(torch.rand(n, generator=gen) < 0.2, torch.ones_like(opacities), opacities)
    colors = torch.randn(n, (SH_DEGREE + 1) ** 2, 3, generator=gen) * 0.3
    eyes = [torch.tensor([3.0 * math.sin(a), -0.5, -3.0 * math.cos(a)]) for a in (0.0, 0.7, 2.0)[:cameras]]
    viewmats = torch.stack([_viewmat(eye) for eye in eyes])
    K = torch.tensor([[110.0, 0.0, 63.7], [0.0, 105.0, 48.2], [0.0, 0.0, 1.0]])
    backgrounds = torch.rand(cameras, 3, generator=gen)
    tensors = {
        "means": means,
        "quats": quats,
        "scales": scales,
        "opacities": opacities,
        "colors": colors,
        "viewmats": viewmats,
        "Ks": K.expand(cameras, 3, 3).contiguous(),
        "backgrounds": backgrounds,
    }
    return {k: v.cuda() for k, v in tensors.items()}


def _assert_mostly_close(ours: Tensor, ref: Tensor, what: str) -> None:
    """Elementwise ``2e-5 + 2e-5 |ref|`` for all but 0.05% of elements, and ``2e-2`` for all."""
    diff = (ours - ref).abs()
    off = diff > 2e-5 + 2e-5 * ref.abs()
    assert off.float().mean().item() <= 5e-4, f"{what}: {off.sum().item()} of {off.numel()} elements off"
    assert diff.max().item() <= 2e-2, f"{what}: max abs diff {diff.max().item():.3g}"


def _assert_grad_close(ours: Tensor, ref: Tensor, what: str) -> None:
    """Relative L2 error below 5e-3 and cosine similarity above 0.9999."""
    assert torch.isfinite(ours).all(), f"{what}: non-finite gradient"
    ref_norm = ref.norm().item()
    assert ref_norm > 0, f"{what}: gsplat's gradient is zero"
    rel = (ours - ref).norm().item() / ref_norm
    cos = torch.nn.functional.cosine_similarity(ours.flatten(), ref.flatten(), dim=0).item()
    assert rel < 5e-3 and cos > 0.9999, f"{what}: relative L2 error {rel:.3g}, cosine {cos:.6f}"


@pytest.mark.parametrize("rasterize_mode", ["classic", "antialiased"])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_gsplat_cuda(rasterize_mode: RasterizeMode, seed: int) -> None:
    from gsplat.rendering import rasterization

    scene = _scene(seed)
    outputs = {}
    backends: Tuple[Tuple[str, Callable[..., Any], Dict[str, Any]], ...] = (
        ("gsplat", rasterization, {"packed": False, "sparse_grad": False}),
        ("torch", torch_rasterization, {}),
    )
    for name, fn, extra in backends:
        params = {k: scene[k].clone().requires_grad_(True) for k in PARAM_KEYS}
        image, alpha, meta = fn(
            **params,
            viewmats=scene["viewmats"],
            Ks=scene["Ks"],
            width=WIDTH,
            height=HEIGHT,
            sh_degree=SH_DEGREE,
            backgrounds=scene["backgrounds"],
            render_mode="RGB+ED",
            rasterize_mode=rasterize_mode,
            absgrad=True,
            **extra,
        )
        meta["means2d"].retain_grad()
        outputs[name] = (params, image, alpha, meta)

    _, ref_image, ref_alpha, ref_meta = outputs["gsplat"]
    _, image, alpha, meta = outputs["torch"]
    ref_radii, radii = ref_meta["radii"], meta["radii"]
    assert radii.shape == ref_radii.shape == (3, 2000)
    # The scene must have culled and visible Gaussians and a mix of covered and empty pixels.
    assert (ref_radii == 0).any() and (ref_radii > 0).sum() > 1000
    assert (ref_alpha < 0.1).any() and (ref_alpha > 0.99).any()
    # Radii are ceil()s of float expressions: allow a rare off-by-one from rounding.
    assert ((radii > 0) == (ref_radii > 0)).float().mean() > 0.999
    assert (radii == ref_radii).float().mean() > 0.995

    assert image.shape == ref_image.shape == (3, HEIGHT, WIDTH, 4)
    _assert_mostly_close(image[..., :3], ref_image[..., :3], "colours")
    _assert_mostly_close(alpha, ref_alpha, "alphas")
    covered = (ref_alpha[..., 0] > 0.2).detach()
    ref_depth, depth = ref_image[..., 3][covered], image[..., 3][covered]
    assert ((depth - ref_depth).abs() <= 1e-3 * ref_depth.abs() + 1e-4).float().mean() > 0.999
    torch.testing.assert_close(depth, ref_depth, rtol=2e-2, atol=1e-3)

    # One random linear loss for both; the depth channel only where it is well conditioned.
    gen = torch.Generator().manual_seed(1000 + seed)
    weights = torch.randn(ref_image.shape, generator=gen).cuda()
    weights[..., 3] *= 0.1 * covered.float()
    alpha_weights = torch.randn(ref_alpha.shape, generator=gen).cuda()
    for name in ("gsplat", "torch"):
        _, out_image, out_alpha, _ = outputs[name]
        ((out_image * weights).sum() + (out_alpha * alpha_weights).sum()).backward()

    ref_params, params = outputs["gsplat"][0], outputs["torch"][0]
    for key in PARAM_KEYS:
        grad, ref_grad = params[key].grad, ref_params[key].grad
        assert grad is not None and ref_grad is not None, key
        _assert_grad_close(grad, ref_grad, f"grad of {key}")
    visible = (ref_radii > 0) & (radii > 0)
    _assert_grad_close(meta["means2d"].grad[visible], ref_meta["means2d"].grad[visible], "grad of means2d")
    _assert_grad_close(meta["means2d"].absgrad[visible], ref_meta["means2d"].absgrad[visible], "absgrad of means2d")
