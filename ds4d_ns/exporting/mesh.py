"""A fixed-topology triangle mesh from 3D Gaussians, moved over time by the model's deformation field.

The steps, each a pure function except the two that read a model (:func:`deform_points`,
:func:`render_colour_views`):

1. :func:`gaussian_density_grid`: the opacity-weighted density ``sum_i o_i exp(-d^T S_i^-1 d / 2)`` of
   the canonical Gaussians on a grid with cubic voxels. An opaque flat Gaussian seen face on renders
   alpha ``o exp(-m/2)``, the same expression, so the 0.5 level of this density follows the 0.5 level of
   the rendered alpha, the silhouette the mesh is judged against.
2. :func:`fill_interior`: voxels enclosed by the surface count as inside; Gaussians sit on the surface
   of an object, and without this the hollow shell would give a second, inner surface nobody sees.
3. :func:`surface_from_density`: marching cubes (scikit-image) at that level.
4. :func:`keep_largest_components`: floaters (small pieces apart from the object) are dropped.
5. :func:`simplify_mesh`: quadric decimation (fast-simplification) to a face budget.
6. :func:`deform_points`: the vertices, which lie in the canonical space the deformation field reads,
   are moved by the field itself at each frame time, so the topology stays fixed and the mesh moves
   as the Gaussians do.
7. :func:`vertex_colours_from_views`: each vertex takes the average colour of the Gaussian renders
   where it is visible (colour as rendered, view-dependent terms averaged over the views).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from ds4d_ns.rendering.torch_rasterizer import quat_to_rotmat

DENSITY_LEVEL = 0.5
"""Iso level of the opacity-weighted density: where a flat opaque Gaussian renders alpha 0.5."""
MAX_SPLAT_RADIUS = 16
"""A Gaussian adds density within at most this many voxels of its centre (a larger one is truncated)."""
SIGMA_CUTOFF = 3.0
"""A Gaussian adds density within this many standard deviations (beyond it, under 1.2 % of its peak)."""
_SPLAT_ELEMENTS = 1 << 22
"""Voxel samples evaluated at once while splatting (bounds the temporaries to about 200 MB)."""


@dataclass(frozen=True)
class DensityGrid:
    """Density samples on a regular grid of cubic voxels: ``values[i, j, k]`` at ``origin + voxel * (i, j, k)``."""

    values: Float[np.ndarray, "x y z"]
    origin: Float[np.ndarray, " 3"]
    voxel: float


@dataclass(frozen=True)
class TriangleMesh:
    """Vertices (float32) and triangles (int64, counter-clockwise seen from outside)."""

    vertices: Float[np.ndarray, "v 3"]
    faces: Int[np.ndarray, "f 3"]

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])


def gaussian_bounds(
    means: Float[Tensor, "n 3"],
    log_scales: Float[Tensor, "n 3"],
    opacities: Float[Tensor, " n"],
    min_opacity: float = 0.1,
) -> Tuple[Float[np.ndarray, " 3"], Float[np.ndarray, " 3"]]:
    """Box holding every Gaussian of opacity at least ``min_opacity`` out to :data:`SIGMA_CUTOFF` deviations.

    Faint Gaussians cannot reach the density level alone, so they do not widen the grid (and waste its voxels).
    """
    keep = opacities >= min_opacity
    if not bool(keep.any()):
        raise ValueError(f"no Gaussian has opacity {min_opacity} or more: there is no surface to mesh")
    reach = SIGMA_CUTOFF * torch.exp(log_scales[keep]).amax(dim=-1, keepdim=True)
    low = (means[keep] - reach).amin(dim=0)
    high = (means[keep] + reach).amax(dim=0)
    return low.detach().cpu().double().numpy(), high.detach().cpu().double().numpy()


def gaussian_density_grid(
    means: Float[Tensor, "n 3"],
    quats: Float[Tensor, "n 4"],
    log_scales: Float[Tensor, "n 3"],
    opacities: Float[Tensor, " n"],
    resolution: int,
    bounds: Tuple[np.ndarray, np.ndarray] | None = None,
) -> DensityGrid:
    """Opacity-weighted Gaussian density sampled on a grid whose longest side has ``resolution`` samples.

    Args:
        means, quats, log_scales: Gaussian geometry (log-scales, wxyz quaternions, as splatfacto stores them).
        opacities: opacities in [0, 1] (after the sigmoid).
        resolution: samples along the longest side of the box; the voxels are cubes.
        bounds: ``(low, high)`` corners of the box; default :func:`gaussian_bounds`.

    Returns:
        The grid; every Gaussian adds its density within :data:`SIGMA_CUTOFF` deviations (at most
        :data:`MAX_SPLAT_RADIUS` voxels) of its centre.
    """
    if resolution < 2:
        raise ValueError(f"resolution must be at least 2, got {resolution}")
    low, high = gaussian_bounds(means, log_scales, opacities) if bounds is None else bounds
    extent = np.maximum(np.asarray(high, np.float64) - np.asarray(low, np.float64), 1e-6)
    voxel = float(extent.max() / (resolution - 1))
    shape = tuple(int(math.ceil(e / voxel)) + 1 for e in extent)
    device = means.device
    origin = torch.as_tensor(np.asarray(low, np.float64), dtype=torch.float32, device=device)
    grid = torch.zeros(int(np.prod(shape)), dtype=torch.float32, device=device)
    dims = torch.tensor(shape, device=device)
    strides = torch.tensor([shape[1] * shape[2], shape[2], 1], device=device)

    scales = torch.exp(log_scales).clamp_min(1e-3 * voxel)  # a degenerate axis would make the inverse blow up
    rotations = quat_to_rotmat(quats)
    precision = (rotations / scales[:, None, :] ** 2) @ rotations.transpose(1, 2)  # R S^-2 R^T
    radii = torch.ceil(SIGMA_CUTOFF * scales.amax(dim=-1) / voxel).clamp(1, MAX_SPLAT_RADIUS).long()
    # Gaussians are splatted in groups of one window radius: at most MAX_SPLAT_RADIUS Python iterations,
    # and a small Gaussian never pays for the window of a large one.
    for radius in torch.unique(radii).tolist():
        members = torch.nonzero(radii == radius).view(-1)
        span = torch.arange(-radius, radius + 1, device=device)
        offsets = torch.stack(torch.meshgrid(span, span, span, indexing="ij"), dim=-1).view(-1, 3)
        chunk = max(1, _SPLAT_ELEMENTS // offsets.shape[0])
        for start in range(0, members.numel(), chunk):
            index = members[start : start + chunk]
            centre = torch.round((means[index] - origin) / voxel).long()
            cells = centre[:, None, :] + offsets[None]  # [g, w, 3]
            d = origin + cells.float() * voxel - means[index][:, None, :]
            mahalanobis = torch.einsum("gwi,gij,gwj->gw", d, precision[index], d)
            value = opacities[index][:, None] * torch.exp(-0.5 * mahalanobis)
            keep = (mahalanobis <= SIGMA_CUTOFF**2) & ((cells >= 0) & (cells < dims)).all(dim=-1)
            grid.index_add_(0, (cells[keep] * strides).sum(dim=-1), value[keep])
    return DensityGrid(grid.view(shape).cpu().numpy(), origin.cpu().double().numpy(), voxel)


def fill_interior(density: Float[np.ndarray, "x y z"], level: float = DENSITY_LEVEL) -> Float[np.ndarray, "x y z"]:
    """The density with every region enclosed by the ``level`` surface raised above the level.

    A region below the level that the grid's border cannot reach without crossing the surface is the
    inside of a hollow shell of Gaussians; raising it leaves marching cubes the outer surface only.
    """
    from scipy import ndimage

    inside = density > level
    enclosed = ndimage.binary_fill_holes(inside) & ~inside
    filled = density.copy()
    filled[enclosed] = 2.0 * level if level > 0 else 1.0
    return filled


def surface_from_density(grid: DensityGrid, level: float = DENSITY_LEVEL) -> TriangleMesh:
    """The ``level`` iso-surface of ``grid`` by marching cubes, in world coordinates, faces wound outwards.

    The grid is padded with one sample of zero density on every side, so a surface touching the
    grid's border is closed there rather than left open.
    """
    from skimage import measure

    padded = np.pad(grid.values, 1, mode="constant", constant_values=0.0)
    if not padded.max() > level:
        raise ValueError(f"the density never exceeds the level {level}: there is no surface")
    vertices, faces, _, _ = measure.marching_cubes(padded, level=level, spacing=(grid.voxel,) * 3)
    # scikit-image winds the triangles clockwise seen from the high side for this density (high inside);
    # glTF and PLY readers take counter-clockwise as the front, so the order is flipped.
    faces = faces[:, ::-1]
    vertices = vertices - grid.voxel + grid.origin  # undo the padding's offset
    return TriangleMesh(vertices.astype(np.float32), np.ascontiguousarray(faces, dtype=np.int64))


def compact(mesh: TriangleMesh) -> TriangleMesh:
    """The mesh without vertices that no face uses (faces renumbered)."""
    used, inverse = np.unique(mesh.faces, return_inverse=True)
    return TriangleMesh(mesh.vertices[used], inverse.reshape(-1, 3).astype(np.int64))


def keep_largest_components(mesh: TriangleMesh, min_fraction: float = 0.05) -> TriangleMesh:
    """The connected pieces of ``mesh`` with at least ``min_fraction`` of the largest piece's faces.

    Floaters (a few stray Gaussians apart from the object) become small separate pieces; a real part
    of the object (a detached rotor) is usually far larger than they are and stays.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if mesh.num_faces == 0:
        return mesh
    a, b, c = mesh.faces.T
    rows, cols = np.concatenate([a, b, c]), np.concatenate([b, c, a])
    graph = coo_matrix((np.ones(rows.size), (rows, cols)), shape=(mesh.num_vertices,) * 2)
    _, labels = connected_components(graph, directed=False)
    face_labels = labels[mesh.faces[:, 0]]
    counts = np.bincount(face_labels)
    keep = counts >= min_fraction * counts.max()
    return compact(TriangleMesh(mesh.vertices, mesh.faces[keep[face_labels]]))


def simplify_mesh(mesh: TriangleMesh, max_faces: int) -> TriangleMesh:
    """The mesh decimated by quadric error (fast-simplification) to about ``max_faces`` faces or fewer."""
    import fast_simplification

    if mesh.num_faces <= max_faces:
        return mesh
    reduction = 1.0 - max_faces / mesh.num_faces
    vertices, faces = fast_simplification.simplify(
        mesh.vertices.astype(np.float32), mesh.faces.astype(np.int32), target_reduction=reduction
    )
    return compact(TriangleMesh(np.asarray(vertices, np.float32), np.asarray(faces, np.int64)))


def mesh_from_gaussians(
    means: Float[Tensor, "n 3"],
    quats: Float[Tensor, "n 4"],
    log_scales: Float[Tensor, "n 3"],
    opacities: Float[Tensor, " n"],
    resolution: int,
    max_faces: int,
    level: float = DENSITY_LEVEL,
    min_component_fraction: float = 0.05,
) -> Tuple[TriangleMesh, DensityGrid]:
    """Steps 1 to 5 of the module: density grid, interior filled, marching cubes, largest pieces, decimation."""
    grid = gaussian_density_grid(means, quats, log_scales, opacities, resolution)
    grid = DensityGrid(fill_interior(grid.values, level), grid.origin, grid.voxel)
    mesh = surface_from_density(grid, level)
    mesh = keep_largest_components(mesh, min_component_fraction)
    return simplify_mesh(mesh, max_faces), grid


def vertex_normals(vertices: Float[np.ndarray, "v 3"], faces: Int[np.ndarray, "f 3"]) -> Float[np.ndarray, "v 3"]:
    """Unit vertex normals: the area-weighted sum of the adjacent faces' normals (+z where that is zero)."""
    corners = vertices[faces].astype(np.float64)
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])  # length = 2 x area
    normals = np.zeros((vertices.shape[0], 3), np.float64)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_normals)
    length = np.linalg.norm(normals, axis=-1, keepdims=True)
    unit = np.where(length > 0, normals / np.maximum(length, 1e-30), np.array([0.0, 0.0, 1.0]))
    return unit.astype(np.float32)


def deform_points(model, points: Float[np.ndarray, "v 3"], times: Sequence[float], chunk: int = 65536) -> np.ndarray:
    """``points`` (canonical space) moved to each of ``times`` by ``model``'s deformation field: ``[T, V, 3]``.

    The field is continuous in position and time: a point is moved as a Gaussian centred there would
    be. Where the model has per-point frame features, they are sampled at the points as
    ``Ds4dModel.frame_features_at`` samples them at the Gaussians.
    """
    device = model.means.device
    canonical = torch.as_tensor(points, dtype=torch.float32, device=device)
    features_of = getattr(model, "frame_point_features", None)
    deformed_sampling = getattr(model, "feature_sampling_points", None) == "deformed"
    frames: List[np.ndarray] = []
    with torch.no_grad():
        for time in times:
            parts = []
            for start in range(0, canonical.shape[0], chunk):
                part = canonical[start : start + chunk]
                # the field's rotation and scale inputs do not affect the position it predicts for a point
                # only through the HexPlane feature of the position; identity values keep the call well formed
                quats = torch.zeros(part.shape[0], 4, device=device)
                quats[:, 0] = 1.0
                scales = torch.zeros(part.shape[0], 3, device=device)
                features = None
                if features_of is not None:
                    features = features_of(part, time).features
                    if deformed_sampling:
                        moved = model.deformation(part, quats, scales, time, features).means
                        features = features_of(moved, time).features
                parts.append(model.deformation(part, quats, scales, time, features).means)
            frames.append(torch.cat(parts).cpu().numpy().astype(np.float32))
    return np.stack(frames)


@dataclass
class RenderedViews:
    """Gaussian renders of a model from several cameras, as numpy arrays (:func:`render_views`)."""

    images: Float[np.ndarray, "c h w 3"]
    """Colour without background (premultiplied colour divided by alpha), in [0, 1]."""
    alphas: Float[np.ndarray, "c h w"]
    depths: Float[np.ndarray, "c h w"]
    """Expected depth (OpenCV camera z)."""
    viewmats: Float[np.ndarray, "c 4 4"]
    """OpenCV world-to-camera matrices."""
    Ks: Float[np.ndarray, "c 3 3"]
    """Pinhole intrinsics."""


def colours_from_views(
    points: Float[np.ndarray, "p 3"], normals: Float[np.ndarray, "p 3"], views: RenderedViews, depth_tolerance: float
) -> Tuple[Float[np.ndarray, "p 3"], Float[np.ndarray, " p"], Int[np.ndarray, " p"]]:
    """Colour of surface points (vertices or texels): the weighted mean of the rendered colours at the
    point's pixel in every view where it is visible.

    Args:
        points, normals: points on the mesh and its unit normals there, at the time the views were rendered.
        views: the renders and their cameras.
        depth_tolerance: a point is visible where it lies at most this far behind the rendered depth.

    Returns:
        ``(colours, weight, seen)``: colours in [0, 1] (0.5 grey where no view sees the point), the sum of
        the view weights, and the number of views the point was seen in.
    """
    images, alphas, depths, viewmats, Ks = views.images, views.alphas, views.depths, views.viewmats, views.Ks
    num_views, height, width = alphas.shape
    total = np.zeros((points.shape[0], 3), np.float64)
    weight = np.zeros(points.shape[0], np.float64)
    seen = np.zeros(points.shape[0], np.int64)
    homogeneous = np.concatenate([points, np.ones((points.shape[0], 1), np.float32)], axis=-1).astype(np.float64)
    for view in range(num_views):
        camera = homogeneous @ viewmats[view].T
        z = camera[:, 2]
        pixel = camera[:, :3] @ Ks[view].T
        u = pixel[:, 0] / np.maximum(z, 1e-9)
        v = pixel[:, 1] / np.maximum(z, 1e-9)
        column, row = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
        inside = (z > 0) & (column >= 0) & (column < width) & (row >= 0) & (row < height)
        column, row = np.clip(column, 0, width - 1), np.clip(row, 0, height - 1)
        # facing: cosine between the normal and the direction to the camera (grazing views smear colours)
        camera_centre = -viewmats[view][:3, :3].T @ viewmats[view][:3, 3]
        to_camera = camera_centre[None] - points
        facing = np.einsum("vi,vi->v", normals, to_camera) / np.maximum(np.linalg.norm(to_camera, axis=-1), 1e-9)
        visible = (
            inside
            & (alphas[view, row, column] > 0.5)
            & (z <= depths[view, row, column] + depth_tolerance)
            & (facing > 0.1)
        )
        w = np.where(visible, facing, 0.0)
        total += w[:, None] * images[view, row, column]
        weight += w
        seen += visible
    colours = np.full((points.shape[0], 3), 0.5)
    has = weight > 0
    colours[has] = total[has] / weight[has, None]
    return np.clip(colours, 0.0, 1.0).astype(np.float32), weight, seen


def vertex_colours_from_views(
    vertices: Float[np.ndarray, "v 3"], normals: Float[np.ndarray, "v 3"], views: RenderedViews, depth_tolerance: float
) -> Tuple[Float[np.ndarray, "v 3"], Int[np.ndarray, " v"]]:
    """Per-vertex colour from the views (:func:`colours_from_views`, same arguments); vertices seen in no
    view take the colour of the nearest vertex that is seen.

    Returns:
        ``(colours, coverage)``: colours in [0, 1], and per vertex the number of views it was seen in.
    """
    colours, weight, seen = colours_from_views(vertices, normals, views, depth_tolerance)
    has = weight > 0
    if has.any() and not has.all():
        from scipy.spatial import cKDTree

        _, nearest = cKDTree(vertices[has]).query(vertices[~has])
        colours[~has] = colours[has][nearest]
    return colours, seen


def colour_view_poses(
    num_azimuths: int = 8, elevations: Sequence[float] = (-30.0, 0.0, 30.0)
) -> List[Tuple[float, float]]:
    """(azimuth, elevation) pairs in degrees around the object, plus straight above and below."""
    poses = [(360.0 * k / num_azimuths, elevation) for elevation in elevations for k in range(num_azimuths)]
    return poses + [(0.0, 89.0), (0.0, -89.0)]


def render_colour_views(
    model,
    centre: Float[np.ndarray, " 3"],
    radius: float,
    time: float,
    resolution: int,
    poses: Sequence[Tuple[float, float]],
    fov_deg: float = 40.0,
) -> RenderedViews:
    """Render ``model`` at ``time`` from cameras on a sphere around ``centre`` that frame a ball of ``radius``."""
    from ds4d_ns.rendering.orbit_cameras import orbit_cameras

    distance = 1.1 * radius / math.sin(math.radians(fov_deg) / 2)  # the ball fills the view
    cameras = orbit_cameras(
        [az for az, _ in poses],
        [float(time)] * len(poses),
        elevation_deg=[el for _, el in poses],
        radius=distance,
        fov_deg=fov_deg,
        resolution=resolution,
        centre=[float(c) for c in centre],
    )
    return render_views(model, cameras)


def render_views(model, cameras) -> RenderedViews:
    """Gaussian renders of ``cameras`` (one at a time, to bound memory) as numpy arrays."""
    from ds4d_ns.rendering.camera_matrices import intrinsics_and_size, opengl_c2w_to_opencv_viewmat

    images, alphas, depths = [], [], []
    with torch.no_grad():
        for index in range(len(cameras)):
            outputs = model.get_outputs(cameras[index : index + 1].to(model.device))
            alpha = outputs["accumulation"][0, ..., 0]
            background = outputs["background"].view(1, 1, 3)
            # the model composites over its background; colour of the Gaussians alone is (rgb - (1 - a) bg) / a
            colour = (outputs["rgb"][0] - (1.0 - alpha[..., None]) * background) / alpha[..., None].clamp_min(1e-6)
            images.append(colour.clamp(0, 1).cpu().numpy())
            alphas.append(alpha.cpu().numpy())
            depths.append(outputs["depth"][0, ..., 0].cpu().numpy())
    Ks, _, _ = intrinsics_and_size(cameras)
    return RenderedViews(
        images=np.stack(images),
        alphas=np.stack(alphas),
        depths=np.stack(depths),
        viewmats=opengl_c2w_to_opencv_viewmat(cameras.camera_to_worlds.float()).numpy().astype(np.float64),
        Ks=Ks.numpy().astype(np.float64),
    )
