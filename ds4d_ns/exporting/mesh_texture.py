"""A UV texture for the exported mesh, baked from the same Gaussian renders that colour its vertices.

The steps:

1. :func:`unwrap_mesh`: xatlas cuts the canonical mesh into charts and packs them into one atlas. A
   vertex on a chart seam gets one copy per chart (each with its own UV), so everything per vertex is
   re-indexed through ``vmapping`` (new vertex ``i`` is old vertex ``vmapping[i]``): the positions of
   every frame, the normals and the vertex colours; faces keep their order.
2. :func:`rasterize_uv`: every texel whose centre lies in a triangle of the atlas gets that triangle
   and its barycentrics, hence a point and a normal on the mesh at the time the views were rendered.
3. :func:`bake_texture`: each such texel takes its colour from the views exactly as a vertex does
   (:func:`ds4d_ns.exporting.mesh.colours_from_views`); texels no view sees take the colour
   interpolated from the vertex colours; the texels between charts take the colour of the nearest
   chart texel, so that bilinear filtering and mip-maps near a chart's edge never mix in a background.

The texture holds sRGB values, as glTF's ``baseColorTexture`` and the renders do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch
from jaxtyping import Float, Int

from ds4d_ns.evaluation.mesh_fidelity import rasterize_flat
from ds4d_ns.exporting.mesh import RenderedViews, colours_from_views

XATLAS_PADDING = 2
"""Texels (at the atlas's own resolution) left between charts, so neighbouring charts do not share texels."""


@dataclass(frozen=True)
class UvMesh:
    """The mesh after unwrapping: new vertex ``i`` is old vertex ``vmapping[i]`` and has UV ``uvs[i]``."""

    vmapping: Int[np.ndarray, " n"]
    faces: Int[np.ndarray, "f 3"]
    uvs: Float[np.ndarray, "n 2"]


@dataclass(frozen=True)
class BakedTexture:
    """A baked texture (``image`` [H, W, 3] sRGB in [0, 1], row 0 at v = 0 as glTF reads it) and its coverage."""

    image: Float[np.ndarray, "h w 3"]
    covered: Float[np.ndarray, "h w"]
    """Texels whose centre lies in a triangle (1) or in a gutter between charts (0)."""
    seen: Float[np.ndarray, "h w"]
    """Covered texels seen in at least one view (1); the others took the vertex colours."""


def unwrap_mesh(vertices: Float[np.ndarray, "v 3"], faces: Int[np.ndarray, "f 3"], size: int) -> UvMesh:
    """UV charts of the mesh packed into one square-ish atlas by xatlas, for a texture of ``size`` texels a side."""
    import xatlas

    atlas = xatlas.Atlas()
    atlas.add_mesh(np.ascontiguousarray(vertices, np.float32), np.ascontiguousarray(faces, np.uint32))
    pack = xatlas.PackOptions()
    pack.resolution = size  # xatlas chooses the texel density that fills an atlas of about this size
    pack.padding = XATLAS_PADDING
    pack.bilinear = True  # leave room for bilinear filtering at chart edges
    atlas.generate(pack_options=pack)
    if atlas.atlas_count != 1:  # several atlases would give overlapping UVs in one texture
        raise ValueError(f"xatlas packed the mesh into {atlas.atlas_count} atlases instead of one")
    vmapping, new_faces, uvs = atlas[0]
    return UvMesh(vmapping.astype(np.int64), new_faces.astype(np.int64), uvs.astype(np.float32))


def rasterize_uv(
    uvs: Float[np.ndarray, "n 2"], faces: Int[np.ndarray, "f 3"], size: int
) -> Tuple[Int[np.ndarray, "h w"], Float[np.ndarray, "h w 3"]]:
    """The triangle (-1: none) and barycentrics at every texel centre of a ``size`` x ``size`` texture."""
    points = torch.from_numpy(np.asarray(uvs, np.float64) * size)
    face, bary = rasterize_flat(points, torch.from_numpy(np.asarray(faces, np.int64)), size, size)
    return face.numpy(), bary.numpy()


def bake_texture(
    uv_mesh: UvMesh,
    vertices: Float[np.ndarray, "v 3"],
    normals: Float[np.ndarray, "v 3"],
    vertex_colours: Float[np.ndarray, "v 3"],
    views: RenderedViews,
    depth_tolerance: float,
    size: int,
) -> BakedTexture:
    """Bake the colours of ``views`` into a ``size`` x ``size`` texture of ``uv_mesh``.

    Args:
        uv_mesh: the unwrapping of the mesh whose (old) vertices are ``vertices``.
        vertices, normals: the mesh (old vertex order) at the time ``views`` were rendered.
        vertex_colours: the old vertices' colours from the same views (the fallback for unseen texels).
        views: the renders (:func:`ds4d_ns.exporting.mesh.render_colour_views`).
        depth_tolerance: as for the vertex colours.
        size: texels along each side.
    """
    from scipy import ndimage

    face, bary = rasterize_uv(uv_mesh.uvs, uv_mesh.faces, size)
    covered = face >= 0
    corners = uv_mesh.vmapping[uv_mesh.faces[face[covered]]]  # [m, 3] old vertex indices
    weights = bary[covered][..., None]  # [m, 3, 1]
    points = (weights * vertices[corners]).sum(axis=1)
    texel_normals = (weights * normals[corners]).sum(axis=1)
    texel_normals /= np.maximum(np.linalg.norm(texel_normals, axis=-1, keepdims=True), 1e-12)
    colours, weight, _ = colours_from_views(
        points.astype(np.float32), texel_normals.astype(np.float32), views, depth_tolerance
    )
    fallback = (weights * vertex_colours[corners]).sum(axis=1)
    seen_texels = weight > 0
    colours = np.where(seen_texels[:, None], colours, fallback)

    image = np.zeros((size, size, 3), np.float32)
    image[covered] = colours
    # every gutter texel copies its nearest covered texel: filtering across a chart edge, at any mip level,
    # then mixes colours of the same chart instead of an arbitrary background
    if covered.any():
        nearest = ndimage.distance_transform_edt(~covered, return_distances=False, return_indices=True)
        image = image[nearest[0], nearest[1]]
    seen = np.zeros((size, size), np.float32)
    seen[covered] = seen_texels
    return BakedTexture(np.clip(image, 0.0, 1.0), covered.astype(np.float32), seen)


def sample_texture(image: Float[np.ndarray, "h w 3"], uvs: Float[np.ndarray, "n 2"]) -> Float[np.ndarray, "n 3"]:
    """Bilinear samples of ``image`` at ``uvs`` (glTF's convention: texel ``(i, j)`` is centred at
    ``((i + 0.5) / w, (j + 0.5) / h)``, edges clamped), as a viewer reads the texture."""
    height, width = image.shape[:2]
    x = np.clip(uvs[:, 0] * width - 0.5, 0, width - 1)
    y = np.clip(uvs[:, 1] * height - 0.5, 0, height - 1)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def png_bytes(image: Float[np.ndarray, "h w 3"]) -> bytes:
    """The 8-bit RGB PNG of ``image`` (values in [0, 1])."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8), "RGB").save(buffer, format="PNG")
    return buffer.getvalue()
