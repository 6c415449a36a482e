"""A pure-PyTorch 3D Gaussian rasteriser with gsplat 1.4.0's semantics, for machines without CUDA.

gsplat's ``rasterization()`` JIT-builds CUDA kernels and so cannot run on a CPU, and its pure-torch
reference (``gsplat.cuda._torch_impl``) still calls CUDA for the per-pixel compositing. This module
re-implements the whole pipeline with differentiable torch operations, following the CUDA kernels
of gsplat 1.4.0 (``fully_fused_projection_fwd.cu``, ``isect_tiles.cu``,
``rasterize_to_pixels_fwd.cu``, ``spherical_harmonics.cuh``) rule by rule:

* projection: pinhole Jacobian with gsplat's field-of-view clamp, ``eps2d`` blur, optional
  antialiasing compensation, the 3-sigma integer radius, culling by near/far plane, degenerate
  covariance and image bounds;
* binning: a Gaussian is composited only into the tiles its radius box touches, in depth order
  (ties by Gaussian index, as gsplat's stable radix sort leaves them);
* compositing: ``alpha = min(0.999, opacity * exp(-sigma))``; a Gaussian is skipped for a pixel
  when ``sigma < 0`` or ``alpha < 1/255``; the pixel stops *before* the first Gaussian that would
  bring its transmittance to ``<= 1e-4`` (that Gaussian is excluded, as in gsplat's kernel);
  the background is added as ``T_final * background``.

Speed comes from tiling: the Gaussians of each 16x16 tile are gathered in depth order, tiles with
similar Gaussian counts are batched into one padded ``[tiles, pixels, gaussians]`` block and the
transmittance is a ``cumprod`` along the Gaussian axis, so Python only loops over a few blocks.
Projection, SH and gathering are differentiated by autograd; the compositing of a block has a
closed-form backward (``_CompositeTiles``). The projected 2D means are one tensor of the graph
(``meta["means2d"]``) so that ``retain_grad()`` gives the screen-space gradient that gsplat's
densification strategies read; ``absgrad=True`` additionally fills ``meta["means2d"].absgrad`` with
the per-pixel absolute gradients summed, as gsplat's backward kernel does.
"""

from __future__ import annotations

import bisect
import math
from typing import Any, Dict, List, Literal, Optional, Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

RenderMode = Literal["RGB", "D", "ED", "RGB+D", "RGB+ED"]
RasterizeMode = Literal["classic", "antialiased"]

_RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")
_RASTERIZE_MODES = ("classic", "antialiased")
# gsplat's compositing constants (rasterize_to_pixels_fwd.cu).
_ALPHA_MAX = 0.999
_ALPHA_MIN = 1.0 / 255.0
_TRANSMITTANCE_MIN = 1e-4
# Upper bound on the elements of one padded [tiles, pixels, gaussians] block: large enough that
# Python loops over few blocks, small enough that the forward's temporaries (about eight such
# tensors) stay well under 100 MB in float32.
_BLOCK_ELEMENTS = 1 << 21
# A block's tiles are padded to its longest list; a tile joins only if its list is at least this
# fraction of that length, which bounds the padding to a third of the real work.
_MIN_FILL = 0.75


def quat_to_rotmat(quats: Float[Tensor, "n 4"]) -> Float[Tensor, "n 3 3"]:
    """Rotation matrices of (not necessarily unit) wxyz quaternions."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    rows = (
        1 - 2 * (y * y + z * z),
        2 * (x * y - w * z),
        2 * (x * z + w * y),
        2 * (x * y + w * z),
        1 - 2 * (x * x + z * z),
        2 * (y * z - w * x),
        2 * (x * z - w * y),
        2 * (y * z + w * x),
        1 - 2 * (x * x + y * y),
    )
    return torch.stack(rows, dim=-1).reshape(-1, 3, 3)


def gaussian_covariances(quats: Float[Tensor, "n 4"], scales: Float[Tensor, "n 3"]) -> Float[Tensor, "n 3 3"]:
    """World-space covariances ``R S S^T R^T`` of Gaussians with rotation ``quats`` and axis ``scales``."""
    half = quat_to_rotmat(quats) * scales[:, None, :]
    return half @ half.transpose(-1, -2)


def project_gaussians(
    means: Float[Tensor, "n 3"],
    covars: Float[Tensor, "n 3 3"],
    viewmats: Float[Tensor, "c 4 4"],
    Ks: Float[Tensor, "c 3 3"],
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    antialiased: bool = False,
) -> Tuple[
    Int[Tensor, "c n"],
    Float[Tensor, "c n 2"],
    Float[Tensor, "c n"],
    Float[Tensor, "c n 3"],
    Optional[Float[Tensor, "c n"]],
]:
    """Pinhole projection of 3D Gaussians, as gsplat's ``fully_fused_projection`` (unpacked).

    Returns ``(radii, means2d, depths, conics, compensations)``; ``radii`` is 0 for culled
    Gaussians, whose other outputs are finite but meaningless (gsplat writes zeros there).
    ``compensations`` is None unless ``antialiased``.
    """
    rotation = viewmats[:, :3, :3]
    means_c = torch.einsum("cij,nj->cni", rotation, means) + viewmats[:, None, :3, 3]
    covars_c = rotation[:, None] @ covars[None] @ rotation[:, None].transpose(-1, -2)
    x, y, z = means_c.unbind(-1)
    in_depth = (z >= near_plane) & (z <= far_plane)
    # Culled Gaussians may sit at z = 0; a safe depth keeps their (unused) values and, more
    # importantly, their zero gradients finite, so no NaN leaks into means.grad.
    z_safe = torch.where(in_depth, z, torch.ones_like(z))
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    # gsplat clamps the direction used in the Jacobian to 1.3x the field of view so Gaussians far
    # off-screen do not get huge, distorted footprints.
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos, lim_x_neg = (width - cx) / fx + 0.3 * tan_fovx, cx / fx + 0.3 * tan_fovx
    lim_y_pos, lim_y_neg = (height - cy) / fy + 0.3 * tan_fovy, cy / fy + 0.3 * tan_fovy
    rz = 1.0 / z_safe
    tx = z_safe * torch.minimum(lim_x_pos, torch.maximum(-lim_x_neg, x * rz))
    ty = z_safe * torch.minimum(lim_y_pos, torch.maximum(-lim_y_neg, y * rz))
    zeros = torch.zeros_like(z)
    jacobian = torch.stack([fx * rz, zeros, -fx * tx * rz * rz, zeros, fy * rz, -fy * ty * rz * rz], dim=-1).reshape(
        *z.shape, 2, 3
    )
    cov2d = jacobian @ covars_c @ jacobian.transpose(-1, -2)
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], dim=-1)

    xx, xy, yx, yy = cov2d[..., 0, 0], cov2d[..., 0, 1], cov2d[..., 1, 0], cov2d[..., 1, 1]
    det_orig = xx * yy - xy * yx
    xx, yy = xx + eps2d, yy + eps2d
    det = xx * yy - xy * yx
    invertible = in_depth & (det > 0)
    det_safe = torch.where(invertible, det, torch.ones_like(det))
    conics = torch.stack([yy / det_safe, -xy / det_safe, xx / det_safe], dim=-1)
    compensations = torch.sqrt(torch.clamp(det_orig / det_safe, min=0.0)) if antialiased else None

    with torch.no_grad():
        # The radius is not differentiable in gsplat either.
        half_trace = 0.5 * (xx + yy)
        v1 = half_trace + torch.sqrt(torch.clamp(half_trace * half_trace - det, min=0.01))
        radius = torch.ceil(3.0 * torch.sqrt(v1))
        valid = invertible & (radius > radius_clip)
        mx, my = means2d.unbind(-1)
        valid &= (mx + radius > 0) & (mx - radius < width) & (my + radius > 0) & (my - radius < height)
        radii = torch.where(valid, radius, torch.zeros_like(radius)).to(torch.int32)
    return radii, means2d, z, conics, compensations


def _sh_bases(degree: int, dirs: Float[Tensor, "*b 3"]) -> Float[Tensor, "*b k"]:
    """Real SH bases up to ``degree`` (<= 4) at ``dirs``, in gsplat's order and sign convention.

    Uses Sloan's recurrences ("Efficient Spherical Harmonic Evaluation", JCGT 2013) like gsplat's
    kernel, so the float rounding follows it closely.
    """
    bases = [torch.full_like(dirs[..., 0], 0.2820947917738781)]
    if degree >= 1:
        x, y, z = F.normalize(dirs, dim=-1).unbind(-1)
        bases += [-0.48860251190292 * y, 0.48860251190292 * z, -0.48860251190292 * x]
    if degree >= 2:
        z2 = z * z
        c1, s1 = x * x - y * y, 2 * x * y
        tmp_b = -1.092548430592079 * z
        sh6 = 0.9461746957575601 * z2 - 0.3153915652525201
        bases += [0.5462742152960395 * s1, tmp_b * y, sh6, tmp_b * x, 0.5462742152960395 * c1]
    if degree >= 3:
        c2, s2 = x * c1 - y * s1, x * s1 + y * c1
        tmp_c = -2.285228997322329 * z2 + 0.4570457994644658
        tmp_b = 1.445305721320277 * z
        sh12 = z * (1.865881662950577 * z2 - 1.119528997770346)
        bases += [
            -0.5900435899266435 * s2,
            tmp_b * s1,
            tmp_c * y,
            sh12,
            tmp_c * x,
            tmp_b * c1,
            -0.5900435899266435 * c2,
        ]
    if degree >= 4:
        c3, s3 = x * c2 - y * s2, x * s2 + y * c2
        tmp_d = z * (-4.683325804901025 * z2 + 2.007139630671868)
        tmp_c = 3.31161143515146 * z2 - 0.47308734787878
        tmp_b = -1.770130769779931 * z
        bases += [
            0.6258357354491763 * s3,
            tmp_b * s2,
            tmp_c * s1,
            tmp_d * y,
            1.984313483298443 * z * sh12 - 1.006230589874905 * sh6,
            tmp_d * x,
            tmp_c * c1,
            tmp_b * c2,
            0.6258357354491763 * c3,
        ]
    return torch.stack(bases, dim=-1)


def sh_to_colors(
    sh_degree: int,
    means: Float[Tensor, "n 3"],
    coeffs: Float[Tensor, "c n k 3"],
    viewmats: Float[Tensor, "c 4 4"],
) -> Float[Tensor, "c n 3"]:
    """View-dependent colours ``max(SH(dir) + 0.5, 0)`` exactly as gsplat's ``rasterization`` makes them."""
    if sh_degree > 4:
        raise ValueError(f"sh_degree must be at most 4 (as in gsplat), got {sh_degree}")
    num_bases = (sh_degree + 1) ** 2
    camera_centres = torch.linalg.inv(viewmats)[:, :3, 3]
    dirs = means[None, :, :] - camera_centres[:, None, :]
    bases = _sh_bases(sh_degree, dirs)
    colors = (bases[..., None] * coeffs[..., :num_bases, :]).sum(dim=-2)
    # The +0.5 offset and clamp reproduce the Inria 3DGS colour convention, as gsplat does.
    return torch.clamp_min(colors + 0.5, 0.0)


def _bin_tiles(
    means2d: Float[Tensor, "c n 2"],
    radii: Int[Tensor, "c n"],
    depths: Float[Tensor, "c n"],
    tile_size: int,
    tile_width: int,
    tile_height: int,
) -> Tuple[Int[Tensor, "c n"], Int[Tensor, " m"], Int[Tensor, " t"]]:
    """Depth-sorted Gaussian lists of every tile, as gsplat's ``isect_tiles`` + ``isect_offset_encode``.

    Returns ``(tiles_per_gauss [C, N], flatten_ids [M], tile_counts [C*TH*TW])``: ``flatten_ids``
    holds the ``camera * N + gaussian`` indices of all tiles back to back, tile by tile
    (camera-major, row-major), each tile's run front to back.
    """
    n_cameras, n_gauss = radii.shape
    device = means2d.device
    with torch.no_grad():
        flat_ids = torch.nonzero(radii.reshape(-1) > 0).squeeze(-1)
        # A stable sort by depth keeps equal depths in index order, as gsplat's radix sort does.
        flat_ids = flat_ids[torch.sort(depths.reshape(-1)[flat_ids], stable=True).indices]
        cam_ids = flat_ids // n_gauss
        centre = means2d.detach().reshape(-1, 2)[flat_ids] / tile_size
        tile_radius = radii.reshape(-1)[flat_ids].to(centre.dtype)[:, None] / tile_size
        # gsplat truncates negative floor/ceil results to 0 (float -> uint32 conversion).
        limits = torch.tensor([tile_width, tile_height], device=device)
        tile_min = torch.minimum(torch.floor(centre - tile_radius).clamp_min(0).long(), limits)
        tile_max = torch.minimum(torch.ceil(centre + tile_radius).clamp_min(0).long(), limits)
        extent = tile_max - tile_min
        per_gauss = extent[:, 0] * extent[:, 1]
        tiles_per_gauss = torch.zeros(n_cameras * n_gauss, dtype=torch.int32, device=device)
        tiles_per_gauss[flat_ids] = per_gauss.to(torch.int32)

        owner = torch.repeat_interleave(torch.arange(len(flat_ids), device=device), per_gauss)
        first = torch.cumsum(per_gauss, 0) - per_gauss
        local = torch.arange(len(owner), device=device) - first[owner]
        tile_x = tile_min[owner, 0] + local % extent[owner, 0]
        tile_y = tile_min[owner, 1] + local // extent[owner, 0]
        tile_ids = (cam_ids[owner] * tile_height + tile_y) * tile_width + tile_x
        # Intersections are generated in depth order; a stable sort by tile keeps that order.
        order = torch.sort(tile_ids, stable=True).indices
        flatten_ids = flat_ids[owner[order]]
        tile_counts = torch.bincount(tile_ids, minlength=n_cameras * tile_height * tile_width)
    return tiles_per_gauss.reshape(n_cameras, n_gauss), flatten_ids, tile_counts


def _offsets(means2d: Tensor, pixels: Tensor) -> Tuple[Tensor, Tensor]:
    """Pixel-centre minus Gaussian-mean offsets ``dx, dy``, each ``[B, P, G]``."""
    return pixels[..., 0:1] - means2d[:, None, :, 0], pixels[..., 1:2] - means2d[:, None, :, 1]


class _CompositeTiles(torch.autograd.Function):
    """Front-to-back alpha compositing of a block of tiles, with a hand-written backward.

    Inputs are each tile's Gaussians in depth order, gathered and padded: ``means2d [B, G, 2]``,
    ``conics [B, G, 3]``, ``opacities [B, G]`` (0 on padding, which then never passes the 1/255
    test), ``colors [B, G, D]`` and the pixel centres ``pixels [B, P, 2]``. Outputs are the
    accumulated colours ``[B, P, D]`` (no background) and alphas ``1 - T_final`` ``[B, P]``.

    Autograd through the same forward would keep a dozen ``[B, P, G]`` tensors and walk two
    ``cumprod`` backwards; the closed-form backward below (the one gsplat's CUDA kernel uses, in
    vectorised form) keeps three and runs about twice as fast. It also yields each pixel's gradient
    on the 2D means, which ``absgrad`` needs. Not twice differentiable.
    """

    @staticmethod
    def forward(
        ctx: Any,
        means2d: Tensor,
        conics: Tensor,
        opacities: Tensor,
        colors: Tensor,
        pixels: Tensor,
        absgrad_sink: Optional[Tensor],
        sink_ids: Optional[Tensor],
    ) -> Tuple[Tensor, Tensor]:
        dx, dy = _offsets(means2d, pixels)
        half_a, b, half_c = (conics[:, None, :, k] * s for k, s in ((0, 0.5), (1, 1.0), (2, 0.5)))
        sigma = (half_a * dx + b * dy).mul_(dx).addcmul_(half_c * dy, dy)
        sigma_ok = sigma >= 0
        # exp(-sigma) only matters while alpha can reach 1/255 (sigma < ln 255 for opacity <= 1);
        # the clamp keeps the far tails out of slow subnormal floats without changing any result.
        alpha = torch.exp(sigma.clamp_(max=80.0).neg_()).mul_(opacities[:, None, :])
        unclamped = alpha <= _ALPHA_MAX  # gsplat passes no gradient through the 0.999 cap
        alpha.clamp_(max=_ALPHA_MAX)
        keep = (alpha >= _ALPHA_MIN).logical_and_(sigma_ok)
        alpha.mul_(keep)
        # Transmittance after each Gaussian, counting every Gaussian that passes the alpha test.
        after = torch.cumprod(1.0 - alpha, dim=-1)
        # gsplat stops *before* the Gaussian that would take T to <= 1e-4 (that one is excluded);
        # T only decreases, so this masks exactly that Gaussian and everything after it.
        keep.logical_and_(after > _TRANSMITTANCE_MIN)
        alpha.mul_(keep)
        # Up to the stop, the transmittance in front of a Gaussian is the previous "after" value.
        before = F.pad(after[..., :-1], (1, 0), value=1.0)
        weights = alpha * before
        rendered = torch.bmm(weights, colors)
        final_t = torch.where(keep, after, torch.ones_like(after)).amin(dim=-1)
        ctx.save_for_backward(means2d, conics, opacities, colors, pixels, alpha, before, keep & unclamped, final_t)
        ctx.absgrad_sink, ctx.sink_ids = absgrad_sink, sink_ids
        return rendered, 1.0 - final_t

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_rendered: Tensor, grad_alpha: Tensor) -> Tuple[Optional[Tensor], ...]:
        means2d, conics, opacities, colors, pixels, alpha, before, passes_grad, final_t = ctx.saved_tensors
        weights = alpha * before
        grad_colors = torch.bmm(weights.transpose(1, 2), grad_rendered)
        # d rendered / d alpha_i = T_i c_i - sum_{j>i} w_j c_j / (1 - alpha_i);
        # d (1 - T_final) / d alpha_i = T_final / (1 - alpha_i).
        colour_dot = torch.bmm(grad_rendered, colors.transpose(1, 2))
        behind = weights * colour_dot
        behind = behind.sum(dim=-1, keepdim=True) - behind.cumsum(dim=-1)
        behind.sub_((final_t * grad_alpha)[..., None]).div_(1.0 - alpha)
        grad_raw = (before * colour_dot).sub_(behind).mul_(passes_grad)
        # alpha = opacity * exp(-sigma) where gradients pass, so d alpha / d sigma = -alpha.
        grad_sigma_neg = grad_raw.mul_(alpha)
        safe_opacities = torch.where(opacities > 0, opacities, torch.ones_like(opacities))
        grad_opacities = grad_sigma_neg.sum(dim=1) / safe_opacities
        dx, dy = _offsets(means2d, pixels)
        # sigma = a dx^2 / 2 + b dx dy + c dy^2 / 2, so with u = g dx and v = g dy (g = d/d sigma):
        u = grad_sigma_neg * dx
        v = grad_sigma_neg.mul_(dy)
        grad_conics = -torch.stack([0.5 * (u * dx).sum(1), (u * dy).sum(1), 0.5 * (v * dy).sum(1)], dim=-1)
        a, b, c = conics.unbind(-1)
        # d sigma / d mean_x = -(a dx + b dy): the two minus signs cancel.
        sum_u, sum_v = u.sum(1), v.sum(1)
        grad_means2d = torch.stack([a * sum_u + b * sum_v, b * sum_u + c * sum_v], dim=-1)
        if ctx.absgrad_sink is not None:
            # Per-pixel gradients on the mean, summed in absolute value (AbsGS), as gsplat does.
            abs_x = torch.addcmul(a[:, None, :] * u, b[:, None, :], v).abs_().sum(1)
            abs_y = torch.addcmul(b[:, None, :] * u, c[:, None, :], v).abs_().sum(1)
            ctx.absgrad_sink.index_put_((ctx.sink_ids,), torch.stack([abs_x, abs_y], dim=-1), accumulate=True)
        return grad_means2d, grad_conics, grad_opacities, grad_colors, None, None, None


def _composite_block(
    means2d: Float[Tensor, "m 2"],
    conics: Float[Tensor, "m 3"],
    opacities: Float[Tensor, " m"],
    colors: Float[Tensor, "m d"],
    ids: Int[Tensor, "b g"],
    in_list: Bool[Tensor, "b g"],
    pixels: Float[Tensor, "b p 2"],
    absgrad_sink: Optional[Float[Tensor, "m 2"]],
) -> Tuple[Float[Tensor, "b p d"], Float[Tensor, "b p"]]:
    """Gather a block of tiles' Gaussians (``ids``, padding where ``in_list`` is False) and composite."""
    block_opacities = torch.where(in_list, opacities[ids], torch.zeros_like(ids, dtype=opacities.dtype))
    return _CompositeTiles.apply(means2d[ids], conics[ids], block_opacities, colors[ids], pixels, absgrad_sink, ids)


def _rasterize_tiles(
    means2d: Float[Tensor, "c n 2"],
    conics: Float[Tensor, "c n 3"],
    opacities: Float[Tensor, "c n"],
    colors: Float[Tensor, "c n d"],
    flatten_ids: Int[Tensor, " m"],
    tile_counts: Int[Tensor, " t"],
    width: int,
    height: int,
    tile_size: int,
    tile_width: int,
    tile_height: int,
    absgrad_sink: Optional[Float[Tensor, "m 2"]],
) -> Tuple[Float[Tensor, "c h w d"], Float[Tensor, "c h w 1"]]:
    """Composite every non-empty tile, batching tiles of similar Gaussian counts into padded blocks."""
    n_cameras = means2d.shape[0]
    n_channels = colors.shape[-1]
    device, dtype = means2d.device, means2d.dtype
    n_pixels = tile_size * tile_size
    flat_means = means2d.reshape(-1, 2)
    flat_conics = conics.reshape(-1, 3)
    flat_opacities = opacities.reshape(-1)
    flat_colors = colors.reshape(-1, n_channels)

    offsets = torch.cumsum(tile_counts, 0) - tile_counts
    # Most-populated tiles first: neighbours in this order have similar counts, so padding is small.
    counts_sorted, tiles_sorted = torch.sort(tile_counts, descending=True)
    counts_list = counts_sorted.tolist()
    neg_counts = [-count for count in counts_list]  # ascending, for bisect
    n_busy = sum(1 for count in counts_list if count > 0)
    local = torch.arange(tile_size, device=device, dtype=dtype) + 0.5
    local_y, local_x = torch.meshgrid(local, local, indexing="ij")
    local_xy = torch.stack([local_x.reshape(-1), local_y.reshape(-1)], dim=-1)

    colour_blocks: List[Tensor] = []
    alpha_blocks: List[Tensor] = []
    start = 0
    while start < n_busy:
        longest = counts_list[start]
        stop = min(n_busy, start + max(1, _BLOCK_ELEMENTS // (n_pixels * longest)))
        # End the block early where counts drop a lot: padding costs as much as real work.
        stop = bisect.bisect_right(neg_counts, -_MIN_FILL * longest, start + 1, stop)
        tiles = tiles_sorted[start:stop]
        slot = torch.arange(longest, device=device)
        in_list = slot[None, :] < tile_counts[tiles][:, None]
        entry = torch.where(in_list, offsets[tiles][:, None] + slot[None, :], torch.zeros_like(slot)[None, :])
        ids = flatten_ids[entry]
        tile_in_camera = tiles % (tile_width * tile_height)
        corner = torch.stack([tile_in_camera % tile_width, tile_in_camera // tile_width], dim=-1) * tile_size
        pixels = corner[:, None, :].to(dtype) + local_xy[None]
        rendered, alpha = _composite_block(
            flat_means, flat_conics, flat_opacities, flat_colors, ids, in_list, pixels, absgrad_sink
        )
        colour_blocks.append(rendered)
        alpha_blocks.append(alpha)
        start = stop

    # Scatter the blocks back to image order; empty tiles read a trailing all-zero tile. That tile is
    # tied to the inputs with zero weight so that, as with gsplat, an image where nothing is visible
    # still has a graph: loss.backward() works and means2d.grad is zeros rather than None.
    n_tiles = len(counts_list)
    anchor = 0.0 * (flat_means.sum() + flat_conics.sum() + flat_opacities.sum() + flat_colors.sum())
    colour_blocks.append(anchor + torch.zeros(1, n_pixels, n_channels, device=device, dtype=dtype))
    alpha_blocks.append(anchor + torch.zeros(1, n_pixels, device=device, dtype=dtype))
    position = torch.full((n_tiles,), n_busy, dtype=torch.long, device=device)
    position[tiles_sorted[:n_busy]] = torch.arange(n_busy, device=device)
    tiled_colours = torch.cat(colour_blocks)[position]
    tiled_alphas = torch.cat(alpha_blocks)[position][..., None]

    def untile(values: Tensor) -> Tensor:
        tiles = values.reshape(n_cameras, tile_height, tile_width, tile_size, tile_size, values.shape[-1])
        image = tiles.permute(0, 1, 3, 2, 4, 5).reshape(
            n_cameras, tile_height * tile_size, tile_width * tile_size, values.shape[-1]
        )
        return image[:, :height, :width]

    return untile(tiled_colours), untile(tiled_alphas)


def _check_inputs(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    sh_degree: Optional[int],
    backgrounds: Optional[Tensor],
    render_mode: str,
    rasterize_mode: str,
) -> None:
    """Raise ValueError naming the offending shape or option."""
    n = means.shape[0] if means.ndim == 2 else -1
    if means.ndim != 2 or means.shape[1] != 3:
        raise ValueError(f"means must have shape (N, 3), got {tuple(means.shape)}")
    if quats.shape != (n, 4):
        raise ValueError(f"quats must have shape ({n}, 4), got {tuple(quats.shape)}")
    if scales.shape != (n, 3):
        raise ValueError(f"scales must have shape ({n}, 3), got {tuple(scales.shape)}")
    if opacities.shape != (n,):
        raise ValueError(f"opacities must have shape ({n},), got {tuple(opacities.shape)}")
    if viewmats.ndim != 3 or viewmats.shape[1:] != (4, 4):
        raise ValueError(f"viewmats must have shape (C, 4, 4), got {tuple(viewmats.shape)}")
    c = viewmats.shape[0]
    if Ks.shape != (c, 3, 3):
        raise ValueError(f"Ks must have shape ({c}, 3, 3), got {tuple(Ks.shape)}")
    if sh_degree is None:
        if not ((colors.ndim == 2 and colors.shape[0] == n) or (colors.ndim == 3 and colors.shape[:2] == (c, n))):
            raise ValueError(
                f"colors must have shape ({n}, D) or ({c}, {n}, D) without sh_degree, got {tuple(colors.shape)}"
            )
    else:
        per_gauss = colors.ndim == 3 and colors.shape[0] == n
        per_view = colors.ndim == 4 and colors.shape[:2] == (c, n)
        if not ((per_gauss or per_view) and colors.shape[-1] == 3):
            raise ValueError(f"SH colors must have shape ({n}, K, 3) or ({c}, {n}, K, 3), got {tuple(colors.shape)}")
        if sh_degree < 0 or (sh_degree + 1) ** 2 > colors.shape[-2]:
            raise ValueError(
                f"sh_degree {sh_degree} needs K >= {(sh_degree + 1) ** 2}, colors have shape {tuple(colors.shape)}"
            )
    if render_mode not in _RENDER_MODES:
        raise ValueError(f"render_mode must be one of {_RENDER_MODES}, got {render_mode!r}")
    if rasterize_mode not in _RASTERIZE_MODES:
        raise ValueError(f"rasterize_mode must be one of {_RASTERIZE_MODES}, got {rasterize_mode!r}")
    channels = 3 if sh_degree is not None else colors.shape[-1]
    if backgrounds is not None and backgrounds.shape != (c, channels):
        raise ValueError(f"backgrounds must have shape ({c}, {channels}), got {tuple(backgrounds.shape)}")


def torch_rasterization(
    means: Float[Tensor, "n 3"],
    quats: Float[Tensor, "n 4"],
    scales: Float[Tensor, "n 3"],
    opacities: Float[Tensor, " n"],
    colors: Tensor,
    viewmats: Float[Tensor, "c 4 4"],
    Ks: Float[Tensor, "c 3 3"],
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    sh_degree: Optional[int] = None,
    tile_size: int = 16,
    backgrounds: Optional[Float[Tensor, "c d"]] = None,
    render_mode: RenderMode = "RGB",
    rasterize_mode: RasterizeMode = "classic",
    absgrad: bool = False,
    radius_clip: float = 0.0,
    camera_model: str = "pinhole",
    **ignored: Any,
) -> Tuple[Float[Tensor, "c h w x"], Float[Tensor, "c h w 1"], Dict[str, Any]]:
    """Rasterise 3D Gaussians into C images with pure torch; a drop-in for ``gsplat.rasterization``.

    Arguments mean what they mean for gsplat 1.4.0's ``rasterization`` with ``packed=False``:
    ``colors`` is ``[N, D]`` / ``[C, N, D]`` post-activation features, or ``[N, K, 3]`` /
    ``[C, N, K, 3]`` SH coefficients when ``sh_degree`` is set; ``scales`` and ``opacities`` are
    activated; ``viewmats`` are OpenCV world-to-camera matrices. ``ignored`` swallows the gsplat
    options that change memory layout or speed but not the result (``packed``, ``sparse_grad``,
    ``channel_chunk``, ...). Only the pinhole camera model is implemented, and neither ``covars``
    nor ``distributed`` (both raise ValueError).

    Returns ``(render_colors [C, H, W, X], render_alphas [C, H, W, 1], meta)``; ``meta`` carries
    gsplat's unpacked keys (``radii``, ``means2d``, ``depths``, ``conics``, ``opacities``,
    ``tiles_per_gauss``, ``flatten_ids``, ``isect_offsets``, sizes, ``n_cameras``) so gsplat's
    densification strategies work unchanged. ``isect_ids`` is not produced.
    """
    _check_inputs(
        means, quats, scales, opacities, colors, viewmats, Ks, sh_degree, backgrounds, render_mode, rasterize_mode
    )
    if camera_model != "pinhole":
        raise ValueError(f"torch_rasterization only implements the 'pinhole' camera model, got {camera_model!r}")
    # Options that would change the result cannot be ignored silently.
    if ignored.get("covars") is not None or ignored.get("distributed", False):
        raise ValueError("torch_rasterization supports neither precomputed covars nor distributed rendering")
    n_cameras = viewmats.shape[0]

    covars = gaussian_covariances(quats, scales)
    radii, means2d, depths, conics, compensations = project_gaussians(
        means,
        covars,
        viewmats,
        Ks,
        width,
        height,
        eps2d=eps2d,
        near_plane=near_plane,
        far_plane=far_plane,
        radius_clip=radius_clip,
        antialiased=rasterize_mode == "antialiased",
    )
    view_opacities = opacities[None, :].expand(n_cameras, -1)
    if compensations is not None:
        view_opacities = view_opacities * compensations

    if sh_degree is None:
        features = colors if colors.ndim == 3 else colors[None].expand(n_cameras, -1, -1)
    else:
        coeffs = colors if colors.ndim == 4 else colors[None].expand(n_cameras, -1, -1, -1)
        features = sh_to_colors(sh_degree, means, coeffs, viewmats)
    if render_mode in ("RGB+D", "RGB+ED"):
        features = torch.cat([features, depths[..., None]], dim=-1)
        if backgrounds is not None:
            backgrounds = F.pad(backgrounds, (0, 1), value=0.0)
    elif render_mode in ("D", "ED"):
        features = depths[..., None]
        if backgrounds is not None:
            backgrounds = torch.zeros(n_cameras, 1, device=backgrounds.device, dtype=backgrounds.dtype)

    tile_width = math.ceil(width / tile_size)
    tile_height = math.ceil(height / tile_size)
    tiles_per_gauss, flatten_ids, tile_counts = _bin_tiles(means2d, radii, depths, tile_size, tile_width, tile_height)
    absgrad_sink = None
    if absgrad:
        # The attribute gsplat's backward sets; here it is filled in place during backward.
        absgrad_buffer = torch.zeros(means2d.shape, device=means2d.device, dtype=means2d.dtype)
        means2d.absgrad = absgrad_buffer  # type: ignore[attr-defined]  # gsplat's contract: not an attribute torch declares
        absgrad_sink = absgrad_buffer.view(-1, 2)
    render_colors, render_alphas = _rasterize_tiles(
        means2d,
        conics,
        view_opacities,
        features,
        flatten_ids,
        tile_counts,
        width,
        height,
        tile_size,
        tile_width,
        tile_height,
        absgrad_sink,
    )
    if backgrounds is not None:
        render_colors = render_colors + (1.0 - render_alphas) * backgrounds[:, None, None, :]
    if render_mode in ("ED", "RGB+ED"):
        expected_depth = render_colors[..., -1:] / render_alphas.clamp(min=1e-10)
        render_colors = torch.cat([render_colors[..., :-1], expected_depth], dim=-1)

    isect_offsets = (torch.cumsum(tile_counts, 0) - tile_counts).to(torch.int32)
    meta: Dict[str, Any] = {
        "camera_ids": None,
        "gaussian_ids": None,
        "radii": radii,
        "means2d": means2d,
        "depths": depths,
        "conics": conics,
        "opacities": view_opacities,
        "tile_width": tile_width,
        "tile_height": tile_height,
        "tiles_per_gauss": tiles_per_gauss,
        "flatten_ids": flatten_ids.to(torch.int32),
        "isect_offsets": isect_offsets.reshape(n_cameras, tile_height, tile_width),
        "width": width,
        "height": height,
        "tile_size": tile_size,
        "n_cameras": n_cameras,
    }
    return render_colors, render_alphas, meta
