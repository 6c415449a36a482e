"""The pure-torch rasteriser against a slow dense reference with gsplat's semantics (CPU only).

The reference projects with gsplat's own pure-torch helpers (``gsplat.cuda._torch_impl``, an
implementation independent of ours) and composites every pixel with an explicit loop over all
Gaussians in depth order, written after gsplat's CUDA kernel ``rasterize_to_pixels_fwd.cu``: no
tiling except gsplat's rule that a Gaussian only reaches the tiles its radius box touches. Scenes
are small and run in float64 so values and gradients must agree to ~1e-9.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Tuple

import pytest
import torch
from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci, _spherical_harmonics
from torch import Tensor

from ds4d_ns.rendering.rasterize import rasterize_gaussians
from ds4d_ns.rendering.torch_rasterizer import RasterizeMode, RenderMode, torch_rasterization

WIDTH, HEIGHT = 32, 24
DTYPE = torch.float64


def look_at_viewmat(eye: Tensor, target: Tensor) -> Tensor:
    """OpenCV world-to-camera matrix of a camera at ``eye`` looking at ``target`` (y down)."""
    forward = (target - eye) / (target - eye).norm()
    right = torch.linalg.cross(torch.tensor([0.0, -1.0, 0.0], dtype=eye.dtype), forward)
    right = right / right.norm()
    down = torch.linalg.cross(forward, right)
    rotation = torch.stack([right, down, forward])
    viewmat = torch.eye(4, dtype=eye.dtype)
    viewmat[:3, :3] = rotation
    viewmat[:3, 3] = -rotation @ eye
    return viewmat


def scene_inputs(scene: Dict[str, Tensor]) -> Dict[str, Any]:
    """The scene's tensors that the rasteriser takes, as keyword arguments (beside others of other types)."""
    return {k: scene[k] for k in ("means", "quats", "scales", "opacities", "colors", "viewmats", "Ks")}


def prefixed(prefix: str) -> Callable[[str], str]:
    """An ``assert_close`` message callback: its own message after ``prefix``."""
    return lambda message: f"{prefix}: {message}"


def make_scene(n: int, seed: int, sh_degree: Optional[int], cameras: int = 2) -> Dict[str, Tensor]:
    """Random Gaussians around the origin seen by ``cameras`` cameras at distance 3.

    The cloud is wider than the field of view and extends behind the cameras, so the scene has
    culled, partly off-screen and saturating (T <= 1e-4) Gaussians.
    """
    gen = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=gen, dtype=DTYPE) * 2 - 1) * torch.tensor([2.5, 2.0, 4.0], dtype=DTYPE)
    quats = torch.randn(n, 4, generator=gen, dtype=DTYPE)
    scales = torch.rand(n, 3, generator=gen, dtype=DTYPE) * 0.5 + 0.03
    opacities = torch.rand(n, generator=gen, dtype=DTYPE) * 0.9 + 0.05
    # Some fully opaque Gaussians: alpha hits gsplat's 0.999 cap and pixels saturate (T <= 1e-4).
    opacities = torch.where(torch.rand(n, generator=gen, dtype=DTYPE) < 0.3, torch.ones_like(opacities), opacities)
    if sh_degree is None:
        colors = torch.rand(n, 3, generator=gen, dtype=DTYPE)
    else:
        colors = torch.randn(n, (sh_degree + 1) ** 2, 3, generator=gen, dtype=DTYPE) * 0.5
    viewmats = []
    for index in range(cameras):
        angle = 0.6 * index
        eye = torch.tensor([3.0 * math.sin(angle), -0.4, -3.0 * math.cos(angle)], dtype=DTYPE)
        viewmats.append(look_at_viewmat(eye, torch.zeros(3, dtype=DTYPE)))
    focal = torch.tensor([30.0, 26.0], dtype=DTYPE)
    K = torch.tensor([[focal[0], 0.0, 15.3], [0.0, focal[1], 12.6], [0.0, 0.0, 1.0]], dtype=DTYPE)
    backgrounds = torch.rand(cameras, 3, generator=gen, dtype=DTYPE)
    return {
        "means": means,
        "quats": quats,
        "scales": scales,
        "opacities": opacities,
        "colors": colors,
        "viewmats": torch.stack(viewmats),
        "Ks": K.expand(cameras, 3, 3).clone(),
        "backgrounds": backgrounds,
    }


def dense_reference(
    scene: Dict[str, Tensor],
    sh_degree: Optional[int],
    render_mode: RenderMode,
    rasterize_mode: RasterizeMode,
    use_background: bool,
    tile_size: int = 16,
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Slow per-pixel compositing with gsplat's rules. Returns ``(colors, alphas, radii, means2d, stopped)``.

    ``stopped`` marks pixels where the T <= 1e-4 rule ended compositing, so tests can check that
    the rule was exercised.
    """
    means, quats, scales = scene["means"], scene["quats"], scene["scales"]
    viewmats, Ks = scene["viewmats"], scene["Ks"]
    n_cameras = viewmats.shape[0]
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_covar=True, compute_preci=False)
    radii, means2d, depths, conics, compensations = _fully_fused_projection(
        means, covars, viewmats, Ks, WIDTH, HEIGHT, calc_compensations=rasterize_mode == "antialiased"
    )
    opacities = scene["opacities"][None].expand(n_cameras, -1)
    if compensations is not None:
        opacities = opacities * compensations
    if sh_degree is None:
        colors = scene["colors"][None].expand(n_cameras, -1, -1)
    else:
        centres = torch.linalg.inv(viewmats)[:, :3, 3]
        dirs = means[None] - centres[:, None]
        coeffs = scene["colors"][None].expand(n_cameras, -1, -1, -1)
        colors = torch.clamp_min(_spherical_harmonics(sh_degree, dirs, coeffs) + 0.5, 0.0)
    backgrounds = scene["backgrounds"] if use_background else None
    if render_mode == "RGB+ED":
        colors = torch.cat([colors, depths[..., None]], dim=-1)
        if backgrounds is not None:
            backgrounds = torch.cat([backgrounds, torch.zeros(n_cameras, 1, dtype=DTYPE)], dim=-1)

    ys, xs = torch.meshgrid(torch.arange(HEIGHT), torch.arange(WIDTH), indexing="ij")
    px, py = xs.reshape(-1).to(DTYPE) + 0.5, ys.reshape(-1).to(DTYPE) + 0.5
    pixel_tile_x, pixel_tile_y = xs.reshape(-1) // tile_size, ys.reshape(-1) // tile_size
    tile_width, tile_height = math.ceil(WIDTH / tile_size), math.ceil(HEIGHT / tile_size)
    images, alphas, stops = [], [], []
    for cam in range(n_cameras):
        visible = torch.nonzero(radii[cam] > 0).squeeze(-1)
        visible = visible[torch.sort(depths[cam, visible].detach(), stable=True).indices]
        transmittance = torch.ones(HEIGHT * WIDTH, dtype=DTYPE)
        image = torch.zeros(HEIGHT * WIDTH, colors.shape[-1], dtype=DTYPE)
        done = torch.zeros(HEIGHT * WIDTH, dtype=torch.bool)
        stopped = torch.zeros(HEIGHT * WIDTH, dtype=torch.bool)
        for g in visible.tolist():
            mx, my = means2d[cam, g, 0], means2d[cam, g, 1]
            r = float(radii[cam, g])
            tx, ty = mx.item() / tile_size, my.item() / tile_size
            x_lo = min(max(math.floor(tx - r / tile_size), 0), tile_width)
            x_hi = min(max(math.ceil(tx + r / tile_size), 0), tile_width)
            y_lo = min(max(math.floor(ty - r / tile_size), 0), tile_height)
            y_hi = min(max(math.ceil(ty + r / tile_size), 0), tile_height)
            in_box = (pixel_tile_x >= x_lo) & (pixel_tile_x < x_hi) & (pixel_tile_y >= y_lo) & (pixel_tile_y < y_hi)
            a, b, c = conics[cam, g]
            dx, dy = mx - px, my - py
            sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
            alpha = torch.clamp(opacities[cam, g] * torch.exp(-sigma), max=0.999)
            hits = in_box & ~done & (sigma >= 0) & (alpha >= 1.0 / 255.0)
            ends = hits & (transmittance * (1 - alpha) <= 1e-4)
            stopped |= ends
            done |= ends
            alpha = torch.where(hits & ~ends, alpha, torch.zeros_like(alpha))
            image = image + (alpha * transmittance)[:, None] * colors[cam, g]
            transmittance = transmittance * (1 - alpha)
        if backgrounds is not None:
            image = image + transmittance[:, None] * backgrounds[cam]
        images.append(image.reshape(HEIGHT, WIDTH, -1))
        alphas.append((1 - transmittance).reshape(HEIGHT, WIDTH, 1))
        stops.append(stopped.reshape(HEIGHT, WIDTH))
    image, alpha = torch.stack(images), torch.stack(alphas)
    if render_mode == "RGB+ED":
        image = torch.cat([image[..., :-1], image[..., -1:] / alpha.clamp(min=1e-10)], dim=-1)
    return image, alpha, radii, means2d, torch.stack(stops)


GRAD_KEYS = ("means", "quats", "scales", "opacities", "colors")
CASES = [
    # (seed, n, sh_degree, render_mode, rasterize_mode, use_background)
    (0, 120, None, "RGB", "classic", False),
    (1, 200, 0, "RGB+ED", "classic", True),
    (2, 100, 1, "RGB+ED", "antialiased", True),
    (5, 100, None, "RGB+ED", "antialiased", False),
]


@pytest.mark.parametrize("seed,n,sh_degree,render_mode,rasterize_mode,use_background", CASES)
def test_matches_dense_reference_values_and_gradients(
    seed: int,
    n: int,
    sh_degree: Optional[int],
    render_mode: RenderMode,
    rasterize_mode: RasterizeMode,
    use_background: bool,
) -> None:
    scene = make_scene(n, seed, sh_degree)
    for key in GRAD_KEYS:
        scene[key].requires_grad_(True)

    ref_image, ref_alpha, ref_radii, ref_means2d, stopped = dense_reference(
        scene, sh_degree, render_mode, rasterize_mode, use_background
    )
    image, alpha, meta = torch_rasterization(
        **scene_inputs(scene),
        width=WIDTH,
        height=HEIGHT,
        sh_degree=sh_degree,
        backgrounds=scene["backgrounds"] if use_background else None,
        render_mode=render_mode,
        rasterize_mode=rasterize_mode,
    )
    # The scene must exercise culling, visibility and the transmittance stop, else it proves little.
    radii = meta["radii"]
    assert (radii == 0).any() and (radii > 0).any()
    assert stopped.any()
    assert (ref_alpha < 0.5).any() and (ref_alpha > 0.99).any()

    assert radii.dtype == torch.int32 and radii.shape == (2, n)
    torch.testing.assert_close(radii, ref_radii.to(torch.int32), rtol=0, atol=0)
    assert image.shape == ref_image.shape == (2, HEIGHT, WIDTH, 4 if render_mode == "RGB+ED" else 3)
    torch.testing.assert_close(image, ref_image, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(alpha, ref_alpha, rtol=1e-9, atol=1e-9)

    gen = torch.Generator().manual_seed(100 + seed)
    weights = torch.randn(image.shape, generator=gen, dtype=DTYPE)
    alpha_weights = torch.randn(alpha.shape, generator=gen, dtype=DTYPE)
    ref_means2d.retain_grad()
    meta["means2d"].retain_grad()
    ours = torch.autograd.grad(
        (image * weights).sum() + (alpha * alpha_weights).sum(), [scene[k] for k in GRAD_KEYS], retain_graph=True
    )
    theirs = torch.autograd.grad(
        (ref_image * weights).sum() + (ref_alpha * alpha_weights).sum(),
        [scene[k] for k in GRAD_KEYS],
        retain_graph=True,
    )
    for key, mine, ref in zip(GRAD_KEYS, ours, theirs):
        assert ref.abs().max() > 0, key
        torch.testing.assert_close(mine, ref, rtol=1e-7, atol=1e-9, msg=prefixed(f"grad of {key}"))

    # Screen-space gradients, as densification reads them.
    ((image * weights).sum() + (alpha * alpha_weights).sum()).backward(inputs=[meta["means2d"]])
    ((ref_image * weights).sum() + (ref_alpha * alpha_weights).sum()).backward(inputs=[ref_means2d])
    visible = radii > 0
    grad2d, ref_grad2d = meta["means2d"].grad, ref_means2d.grad
    assert grad2d is not None and ref_grad2d is not None and grad2d.shape == (2, n, 2)
    torch.testing.assert_close(grad2d[visible], ref_grad2d[visible], rtol=1e-7, atol=1e-9)
    assert (grad2d[~visible] == 0).all()
    assert (grad2d[visible].abs().sum(-1) > 0).float().mean() > 0.5


def test_opaque_stack_caps_alpha_and_excludes_the_saturating_gaussian() -> None:
    # Two opaque Gaussians centred on pixel (8, 8): alpha is capped at 0.999, and the second one,
    # which would take T from 1e-3 to 1e-6 <= 1e-4, is excluded altogether (gsplat's rule).
    means = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, 3.0]], dtype=DTYPE)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 2, dtype=DTYPE)
    scales = torch.full((2, 3), 0.5, dtype=DTYPE)
    opacities = torch.ones(2, dtype=DTYPE)
    colors = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=DTYPE)
    K = torch.tensor([[10.0, 0.0, 8.5], [0.0, 10.0, 8.5], [0.0, 0.0, 1.0]], dtype=DTYPE)[None]
    image, alpha, _ = torch_rasterization(
        means, quats, scales, opacities, colors, torch.eye(4, dtype=DTYPE)[None], K, 16, 16
    )
    torch.testing.assert_close(alpha[0, 8, 8, 0], torch.tensor(0.999, dtype=DTYPE), rtol=0, atol=1e-12)
    torch.testing.assert_close(image[0, 8, 8], torch.tensor([0.999, 0.0, 0.0], dtype=DTYPE), rtol=0, atol=1e-12)
    # Off centre the first Gaussian is not saturating, so the second one shows through.
    assert image[0, 8, 11, 1] > 0.01


def test_radii_mark_visible_gaussians() -> None:
    scene = make_scene(80, 7, None, cameras=1)
    # Gaussian 0 behind the camera, 1 far off-screen, 2 straight ahead.
    eye = torch.linalg.inv(scene["viewmats"][0])[:3, 3]
    ahead = -eye / eye.norm()
    scene["means"][0] = eye - ahead
    scene["means"][1] = eye + 2.0 * ahead + torch.tensor([0.0, 40.0, 0.0], dtype=DTYPE)
    scene["means"][2] = eye + 2.0 * ahead
    _, _, meta = torch_rasterization(
        **scene_inputs(scene),
        width=WIDTH,
        height=HEIGHT,
    )
    radii, depths, means2d = meta["radii"][0], meta["depths"][0], meta["means2d"][0]
    assert radii[0] == 0 and radii[1] == 0 and radii[2] > 0
    on_screen = (
        (means2d[:, 0] + radii > 0)
        & (means2d[:, 0] - radii < WIDTH)
        & (means2d[:, 1] + radii > 0)
        & (means2d[:, 1] - radii < HEIGHT)
    )
    torch.testing.assert_close(radii > 0, (depths > 0.01) & on_screen)
    assert meta["gaussian_ids"] is None and meta["n_cameras"] == 1
    assert (meta["width"], meta["height"]) == (WIDTH, HEIGHT)


def test_empty_scene_renders_background() -> None:
    scene = make_scene(30, 4, 1)
    for key in GRAD_KEYS:
        scene[key].requires_grad_(True)
    eye = torch.linalg.inv(scene["viewmats"][0])[:3, 3]
    behind = (eye * 1.5).detach()
    means = behind + 0.0 * scene["means"]  # keeps the graph to means, all behind camera 0 and 1
    single = {k: v[:1] for k, v in scene.items() if k in ("viewmats", "Ks", "backgrounds")}
    image, alpha, meta = torch_rasterization(
        means,
        scene["quats"],
        scene["scales"],
        scene["opacities"],
        scene["colors"],
        single["viewmats"],
        single["Ks"],
        WIDTH,
        HEIGHT,
        sh_degree=1,
        backgrounds=single["backgrounds"],
        render_mode="RGB+ED",
    )
    assert (meta["radii"] == 0).all()
    assert (alpha == 0).all()
    expected = torch.cat([single["backgrounds"][0], torch.zeros(1, dtype=DTYPE)]).expand(HEIGHT, WIDTH, 4)
    torch.testing.assert_close(image[0], expected, rtol=0, atol=0)
    meta["means2d"].retain_grad()
    (image.sum() + alpha.sum()).backward()
    # As with gsplat, the screen-space gradient exists (densification reads it) and is zero.
    assert meta["means2d"].grad is not None and (meta["means2d"].grad == 0).all()
    for key in GRAD_KEYS:
        grad = scene[key].grad
        assert grad is None or (grad == 0).all(), key


def test_absgrad_sums_absolute_per_pixel_gradients() -> None:
    scene = make_scene(100, 5, None, cameras=1)
    scene["means"].requires_grad_(True)
    inputs = scene_inputs(scene)
    pixels = [(5, 7), (12, 20), (13, 21)]
    per_pixel = []
    for y, x in pixels:
        image, _, meta = torch_rasterization(**inputs, width=WIDTH, height=HEIGHT, absgrad=True)
        meta["means2d"].retain_grad()
        image[0, y, x].sum().backward()
        # A single pixel: the absolute gradient is the absolute value of the gradient.
        torch.testing.assert_close(meta["means2d"].absgrad, meta["means2d"].grad.abs(), rtol=1e-12, atol=0)
        per_pixel.append(meta["means2d"].grad)
    image, _, meta = torch_rasterization(**inputs, width=WIDTH, height=HEIGHT, absgrad=True)
    meta["means2d"].retain_grad()
    signs = [1.0, -1.0, 1.0]
    torch.stack([sign * image[0, y, x].sum() for sign, (y, x) in zip(signs, pixels)]).sum().backward()
    expected_abs = sum(grad.abs() for grad in per_pixel)
    assert (expected_abs > 0).any()
    torch.testing.assert_close(meta["means2d"].absgrad, expected_abs, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(
        meta["means2d"].grad, sum(s * g for s, g in zip(signs, per_pixel)), rtol=1e-10, atol=1e-14
    )


def test_default_strategy_reads_meta() -> None:
    from gsplat.strategy import DefaultStrategy

    scene = make_scene(100, 6, 0)
    params = torch.nn.ParameterDict(
        {k: torch.nn.Parameter(scene[k].float()) for k in ("means", "quats", "scales", "opacities", "colors")}
    )
    optimizers = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    strategy = DefaultStrategy(refine_scale2d_stop_iter=10)
    state = strategy.initialize_state()
    image, _, info = rasterize_gaussians(
        params["means"],
        params["quats"],
        params["scales"],
        params["opacities"],
        params["colors"],
        scene["viewmats"].float(),
        scene["Ks"].float(),
        WIDTH,
        HEIGHT,
        sh_degree=0,
    )
    strategy.step_pre_backward(params, optimizers, state, 1, info)
    image.square().sum().backward()
    strategy.step_post_backward(params, optimizers, state, 1, info)
    seen = (info["radii"] > 0).any(dim=0)
    assert state["count"][seen].min() >= 1 and (state["count"][~seen] == 0).all()
    assert (state["grad2d"][seen] > 0).float().mean() > 0.5
    assert (state["radii"][seen] > 0).all()


def test_float32_matches_float64() -> None:
    scene = make_scene(150, 8, 1)
    inputs = scene_inputs(scene)
    kwargs: Dict[str, Any] = dict(width=WIDTH, height=HEIGHT, sh_degree=1, render_mode="RGB+ED")
    image64, alpha64, _ = torch_rasterization(**inputs, **kwargs)
    image32, alpha32, _ = torch_rasterization(**{k: v.float() for k, v in inputs.items()}, **kwargs)
    assert image32.dtype == torch.float32
    torch.testing.assert_close(image32[..., :3].double(), image64[..., :3], rtol=0, atol=1e-4)
    torch.testing.assert_close(alpha32.double(), alpha64, rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"quats": torch.zeros(5, 3)}, r"quats must have shape \(4, 4\), got \(5, 3\)"),
        ({"colors": torch.zeros(4, 2, 3)}, r"sh_degree 1 needs K >= 4"),
        ({"Ks": torch.zeros(2, 3, 3)}, r"Ks must have shape \(1, 3, 3\), got \(2, 3, 3\)"),
        ({"render_mode": "RGBD"}, r"render_mode must be one of"),
    ],
)
def test_bad_inputs_raise(change: Dict[str, Any], message: str) -> None:
    args: Dict[str, Any] = {
        "means": torch.zeros(4, 3),
        "quats": torch.zeros(4, 4),
        "scales": torch.ones(4, 3),
        "opacities": torch.ones(4),
        "colors": torch.zeros(4, 4, 3),
        "viewmats": torch.eye(4)[None],
        "Ks": torch.eye(3)[None],
        "width": 8,
        "height": 8,
        "sh_degree": 1,
    }
    args.update(change)
    with pytest.raises(ValueError, match=message):
        torch_rasterization(**args)
