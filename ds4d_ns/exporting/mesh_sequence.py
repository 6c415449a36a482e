"""``ds4d-export --mesh``: the mesh of a trained model, its motion and colours, written as files.

:func:`export_mesh` reads the model (canonical Gaussians, deformation field, renders) through
:mod:`ds4d_ns.exporting.mesh` and writes, under the export folder::

    mesh/animated.glb        the mesh with one morph target per frame and an animation playing them
                             (with ``texture_size``: UVs and a baked texture instead of vertex colours)
    mesh/frame_0000.ply ...  the mesh deformed to each frame (binary PLY, vertex colours)
    mesh/manifest.json       counts, frame times (normalised and in seconds), bounds, the settings
                             and the run it came from; written last

Every file is written atomically (the output folder records each one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
import torch
from nerfstudio.utils.rich_utils import CONSOLE
from rich.progress import track

from ds4d_ns.errors import UserError
from ds4d_ns.exporting.mesh import (
    colour_view_poses,
    deform_points,
    mesh_from_gaussians,
    render_colour_views,
    vertex_colours_from_views,
    vertex_normals,
)
from ds4d_ns.io.writers import write_bytes_atomic, write_json_atomic

MESH_FOLDER = "mesh"
GLB_NAME = "animated.glb"
MESH_MANIFEST_NAME = "manifest.json"
MESH_MANIFEST_FORMAT = 1
RESOLUTION_RANGE = (16, 1024)
"""Allowed ``--mesh-resolution`` (grid samples along the longest side)."""
FACES_RANGE = (100, 5_000_000)
"""Allowed ``--mesh-faces``."""
FPS_RANGE = (0.1, 1000.0)
"""Allowed ``--fps``."""
TEXTURE_SIZE_RANGE = (64, 8192)
"""Allowed ``--mesh-texture-size`` (texels a side; 8192 is the largest that common GPUs and viewers load)."""
DEFAULT_FPS = 12.0
"""Playback rate when neither ``--fps`` nor the dataset gives one (the sample clips' rate)."""


def default_mesh_resolution() -> int:
    """Grid samples along the longest side: 256 with CUDA, 128 on a CPU (about 8x less work)."""
    return 256 if torch.cuda.is_available() else 128


def check_mesh_flags(
    resolution: int | None, faces: int, fps: float | None, texture_size: int | None = None, texture: bool = False
) -> None:
    """Refuse (one line naming the flag) a mesh resolution, face budget, rate or texture size out of range."""
    for flag, value, (low, high) in (
        ("--mesh-resolution", resolution, RESOLUTION_RANGE),
        ("--mesh-faces", faces, FACES_RANGE),
        ("--fps", fps, FPS_RANGE),
        ("--mesh-texture-size", texture_size, TEXTURE_SIZE_RANGE),
    ):
        if value is not None and not (low <= value <= high):
            raise UserError(f"{flag} must be between {low} and {high}, got {value}")
    if texture:
        require_xatlas()


def require_xatlas() -> None:
    """Refuse ``--mesh-texture`` (one line) where xatlas, which unwraps the mesh, is not installed."""
    import importlib.util

    if importlib.util.find_spec("xatlas") is None:
        raise UserError("--mesh-texture needs xatlas (pip install 'ds4d-ns[mesh]', or bash scripts/setup.sh)")


def mesh_file_names(frame_names: Sequence[str]) -> List[str]:
    """Relative paths of every file :func:`export_mesh` writes, given the per-frame PLY names."""
    return [
        f"{MESH_FOLDER}/{GLB_NAME}",
        *(f"{MESH_FOLDER}/{n}" for n in frame_names),
        f"{MESH_FOLDER}/{MESH_MANIFEST_NAME}",
    ]


def clip_seconds(times: Sequence[float], clip_frames: int | None, fps: float) -> List[float]:
    """Seconds of each normalised time: the clip (``clip_frames`` frames, ``len(times)`` if unknown) lasts
    ``(clip_frames - 1) / fps`` seconds, time 0 is its first frame and time 1 its last."""
    frames = clip_frames if clip_frames is not None else len(times)
    duration = max(frames - 1, 0) / fps
    return [float(t) * duration for t in times]


def require_deformation_field(model, config_path: Path) -> None:
    """Refuse a model without a deformation field (the mesh's motion comes from it)."""
    if getattr(model, "deformation", None) is None:
        raise UserError(f"{config_path}: this run has no deformation field, so its mesh cannot be animated")


@dataclass
class MeshExport:
    """What :func:`export_mesh` wrote and measured."""

    glb: Path
    frames: List[Path]
    manifest: Path
    num_vertices: int
    num_faces: int
    texture: Dict[str, Any] | None = None
    """With a texture: its size, the glb's vertex count and the baking's coverage (as in the manifest)."""


def _ply_bytes(vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray, colours: np.ndarray) -> bytes:
    import trimesh

    mesh = trimesh.Trimesh(
        vertices=vertices,
        faces=faces,
        vertex_normals=normals,
        vertex_colors=np.round(np.clip(colours, 0, 1) * 255).astype(np.uint8),
        process=False,  # keep the vertex order: frame k's vertex i is vertex i of every other frame
    )
    return trimesh.exchange.ply.export_ply(mesh, encoding="binary", include_attributes=False)


def export_mesh(
    model,
    out: Path,
    times: Sequence[float],
    seconds: Sequence[float],
    frame_names: Sequence[str],
    resolution: int,
    max_faces: int,
    fps: float,
    source: Dict[str, Any],
    generator: Dict[str, Any],
    texture_size: int | None = None,
) -> MeshExport:
    """Build the mesh of ``model``'s canonical Gaussians, move it to ``times`` and write it under ``out/mesh``.

    Args:
        model: a loaded ds4d model in eval mode.
        out: the export folder (open: every write is recorded).
        times: frame times in [0, 1], increasing; the middle one colours the mesh.
        seconds: each frame's time in seconds (the glb's keyframes).
        frame_names: file name of each frame's PLY (``frame_0000.ply``).
        resolution, max_faces: density grid samples along the longest side and the face budget.
        fps, source, generator: recorded in the manifest.
        texture_size: with it, the glb gets UVs (xatlas) and a texture of this many texels a side baked from
            the same renders as the vertex colours (:mod:`ds4d_ns.exporting.mesh_texture`).
    """
    with torch.no_grad():
        opacities = torch.sigmoid(model.opacities.view(-1))
        CONSOLE.log(f"meshing {opacities.numel()} Gaussians on a grid of {resolution} samples")
        try:
            mesh, grid = mesh_from_gaussians(model.means, model.quats, model.scales, opacities, resolution, max_faces)
        except ValueError as err:  # no Gaussian dense enough for a surface
            raise UserError(f"no mesh: {err}") from err
    CONSOLE.log(f"mesh: {mesh.num_vertices} vertices, {mesh.num_faces} faces")
    frames = deform_points(model, mesh.vertices, times)  # [T, V, 3]
    middle = len(times) // 2
    normals = np.stack([vertex_normals(frame, mesh.faces) for frame in frames])
    # colour from renders at the middle frame; the camera sphere frames the mesh there
    low, high = frames[middle].min(axis=0), frames[middle].max(axis=0)
    centre, radius = (low + high) / 2, float(np.linalg.norm(high - low) / 2)
    cpu = not torch.cuda.is_available()
    poses = colour_view_poses(6, (-20.0, 25.0)) if cpu else colour_view_poses()
    views = render_colour_views(model, centre, radius, times[middle], 128 if cpu else 256, poses)
    depth_tolerance = max(2.0 * grid.voxel, 0.01 * radius)
    colours, seen = vertex_colours_from_views(frames[middle], normals[middle], views, depth_tolerance)
    CONSOLE.log(f"vertex colours from {len(poses)} renders; {int((seen > 0).sum())} of {len(seen)} vertices seen")

    folder = Path(out) / MESH_FOLDER
    ply_paths = [folder / name for name in frame_names]
    for index in track(range(len(times)), description="writing mesh frames"):
        write_bytes_atomic(ply_paths[index], _ply_bytes(frames[index], mesh.faces, normals[index], colours))
    from ds4d_ns.exporting.gltf import GlbTexture, animated_glb

    base_normals = vertex_normals(mesh.vertices, mesh.faces)
    texture_info: Dict[str, Any] | None = None
    if texture_size is None:
        glb = animated_glb(
            mesh.vertices, mesh.faces, frames, seconds, colours, base_normals, normals, default_frame=middle
        )
    else:
        from ds4d_ns.exporting.mesh_texture import bake_texture, png_bytes, unwrap_mesh

        uv_mesh = unwrap_mesh(mesh.vertices, mesh.faces, texture_size)
        baked = bake_texture(uv_mesh, frames[middle], normals[middle], colours, views, depth_tolerance, texture_size)
        covered = float(baked.covered.mean())
        seen_share = float(baked.seen.sum() / max(baked.covered.sum(), 1.0))
        CONSOLE.log(
            f"texture {texture_size}x{texture_size}: {len(uv_mesh.vmapping)} vertices after unwrapping, "
            f"charts cover {covered:.0%} of it, {seen_share:.0%} of their texels seen"
        )
        remap = uv_mesh.vmapping  # new vertex i is old vertex remap[i]: same position, normal and motion
        glb = animated_glb(
            mesh.vertices[remap],
            uv_mesh.faces,
            frames[:, remap],
            seconds,
            colours[remap],
            base_normals[remap],
            normals[:, remap],
            default_frame=middle,
            texture=GlbTexture(uv_mesh.uvs, png_bytes(baked.image)),
        )
        texture_info = {
            "size": texture_size,
            "glb_vertices": int(len(remap)),
            "unwrapping": "xatlas; a vertex on a chart seam is one glb vertex per chart (same position and motion)",
            "covered_texels": covered,
            "seen_texels": seen_share,
        }
    write_bytes_atomic(folder / GLB_NAME, glb)
    bounds = [(frame.min(axis=0).tolist(), frame.max(axis=0).tolist()) for frame in frames]
    manifest = {
        "format": MESH_MANIFEST_FORMAT,
        "glb": GLB_NAME,
        "num_frames": len(times),
        "num_vertices": mesh.num_vertices,
        "num_faces": mesh.num_faces,
        "fps": fps,
        "topology": "fixed: every frame has the same vertices, in the same order, and the same faces",
        "frames": [
            {"file_path": name, "time": float(t), "seconds": float(s), "bounds": {"min": b[0], "max": b[1]}}
            for name, t, s, b in zip(frame_names, times, seconds, bounds)
        ],
        "bounds": {
            "min": np.min([b[0] for b in bounds], axis=0).tolist(),
            "max": np.max([b[1] for b in bounds], axis=0).tolist(),
        },
        "glb_layout": {
            "morph_targets": "one per frame (POSITION and NORMAL deltas from the canonical mesh)",
            "animation": "weights, LINEAR, a keyframe per frame at its time in seconds (one-hot)",
            "default_frame": middle,
            "colour": (
                "COLOR_0, linear RGB of the Gaussian renders; KHR_materials_unlit"
                if texture_info is None
                else "baseColorTexture (PNG in the buffer, sRGB) at TEXCOORD_0, baked from the Gaussian renders; "
                "no COLOR_0 (glTF would multiply the two); KHR_materials_unlit; the PLY frames keep vertex colours"
            ),
            "node_rotation": "-90 degrees about x: the run's z up is glTF's y up (vertices in the run's coordinates)",
        },
        "settings": {
            "mesh_resolution": resolution,
            "mesh_faces": max_faces,
            "grid_voxel": grid.voxel,
            "colour_time": float(times[middle]),
            "colour_views": len(poses),
            "vertices_seen": int((seen > 0).sum()),
            "texture": texture_info,
        },
        "source": source,
        "generator": generator,
    }
    write_json_atomic(folder / MESH_MANIFEST_NAME, manifest)  # last: a folder with it holds a complete mesh
    return MeshExport(
        folder / GLB_NAME, ply_paths, folder / MESH_MANIFEST_NAME, mesh.num_vertices, mesh.num_faces, texture_info
    )
