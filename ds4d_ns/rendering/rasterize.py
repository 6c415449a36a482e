"""One entry point for Gaussian rasterisation on any device.

gsplat 1.4.0's ``rasterization()`` is the fast path, but it JIT-compiles CUDA kernels on first use
and has no CPU implementation, so importing and calling it on a machine without CUDA fails (or
spends minutes trying to build). ``rasterize_gaussians`` therefore sends CUDA tensors to gsplat and
everything else to :func:`ds4d_ns.rendering.torch_rasterizer.torch_rasterization`, a pure-torch
re-implementation of the same semantics (tested against a dense reference on CPU, and against
gsplat's kernels on a GPU). gsplat is imported inside the CUDA branch only, so CPU runs never touch
its extension loader.

Both paths are called unpacked (``packed=False``) with dense gradients (``sparse_grad=False``):
the returned ``meta`` then has the ``[C, N]`` layout on both devices, which is what the model's
densification strategy reads.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from jaxtyping import Float
from torch import Tensor

from ds4d_ns.rendering.torch_rasterizer import RasterizeMode, RenderMode, torch_rasterization


def rasterize_gaussians(
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
    **kwargs: Any,
) -> Tuple[Float[Tensor, "c h w x"], Float[Tensor, "c h w 1"], Dict[str, Any]]:
    """Rasterise Gaussians with gsplat's CUDA kernels on CUDA tensors, with pure torch elsewhere.

    The arguments and return values are those of ``gsplat.rendering.rasterization`` (see
    :func:`~ds4d_ns.rendering.torch_rasterizer.torch_rasterization`); ``colors`` is ``[N, D]``
    post-activation colours, or ``[N, K, 3]`` SH coefficients when ``sh_degree`` is set. Extra
    keyword arguments go to the selected backend unchanged.
    """
    # The arguments both backends take: values of several types, each checked by the backend's signature.
    common: Dict[str, Any] = dict(
        means=means,
        quats=quats,
        scales=scales,
        opacities=opacities,
        colors=colors,
        viewmats=viewmats,
        Ks=Ks,
        width=width,
        height=height,
        near_plane=near_plane,
        far_plane=far_plane,
        eps2d=eps2d,
        sh_degree=sh_degree,
        tile_size=tile_size,
        backgrounds=backgrounds,
        render_mode=render_mode,
        rasterize_mode=rasterize_mode,
        absgrad=absgrad,
    )
    if means.is_cuda:
        # Imported here: gsplat's CUDA extension loader must not run on CUDA-less machines.
        from gsplat.rendering import rasterization

        kwargs.update(packed=False, sparse_grad=False)
        return rasterization(**common, **kwargs)
    return torch_rasterization(**common, **kwargs)
