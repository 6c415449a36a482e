"""``ds4d-process``: a video (or image folder) to a ds4d dataset.

Steps, each resumable: read and check the input (all errors before long work); mask the frames;
crop every frame with one square around the clip's union of foreground; write the input views;
generate six Zero123++ pseudo views per frame (batched, seeded, optional temporal anchor), matte
them; write initial points (visual hull of the middle frame by default, a mesh, or none); write
``transforms.json`` last. The user's files are only read; a rerun with the same settings skips
what exists; every file is written to a temporary name and renamed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional

import numpy as np
import torch
import tyro
from nerfstudio.utils.rich_utils import CONSOLE
from rich.progress import track
from typing_extensions import Annotated

from ds4d_ns import views
from ds4d_ns.data.dataset_format import (
    TRANSFORMS_NAME,
    frame_record,
    write_json_atomic,
    write_ply_points_atomic,
    write_png_atomic,
)
from ds4d_ns.io.output_folder import prepare_output_dir
from ds4d_ns.process.frames import InputError, read_clip
from ds4d_ns.process.framing import frame_clip
from ds4d_ns.process.masks import GeneratedViewMatting, Matting, input_rgba
from ds4d_ns.process.zero123plus import GREY, AnchorCache, Zero123PlusConfig

TOOL = "ds4d-process"
MANIFEST_NAME = "ds4d_process.json"
PROCESS_VERSION = 1


@dataclass
class ProcessConfig:
    """Turn a short video of a moving object into a dataset for ``ns-train ds4d``."""

    input: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="VIDEO_OR_FRAME_DIR")]
    """Video file (mp4, mov, webm, ...) or folder of images (RGBA or RGB)."""
    output: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="OUT")]
    """Dataset folder to write (created; an earlier run with the same settings is resumed)."""
    num_frames: int = 30
    """Frames sampled uniformly from [start, end)."""
    start: int = 0
    """First source frame (index) to use."""
    end: Optional[int] = None
    """Source frame index to stop before; None = the end of the clip."""
    resolution: int = 256
    """Side of the square dataset images in pixels."""
    fill: float = 0.85
    """Share of the image side filled by the union of the object over the clip."""
    masks: Optional[Path] = None
    """Folder of foreground masks, one per source frame in name order (frames without alpha)."""
    matting: Matting = "none"
    """rembg: remove backgrounds of frames without alpha and of the generated views (optional extra)."""
    zero123plus: Annotated[Zero123PlusConfig, tyro.conf.OmitArgPrefixes] = field(default_factory=Zero123PlusConfig)
    """Pseudo-view generator: release, steps, guidance, seed, temporal anchor (flags without prefix:
    --version, --model-id, --num-inference-steps, --temporal-anchor, ...)."""
    batch_size: int = 4
    """Frames generated per Zero123++ call."""
    init: Literal["hull", "mesh", "random"] = "hull"
    """Initial points: visual hull of the middle frame's masks, a mesh (--init-mesh), or none (random init)."""
    init_mesh: Optional[Path] = None
    """Mesh of the middle frame (obj/ply/glb, e.g. from InstantMesh or an LRM); implies --init mesh."""
    num_points: int = 5000
    """Initial points written to init.ply."""
    hull_resolution: int = 128
    """Voxels per side of the visual hull grid."""
    device: Optional[str] = None
    """Torch device for Zero123++; None = cuda if available, else cpu (slow)."""
    force: bool = False
    """Write into a folder that holds something else (its files of this run are replaced)."""


def _frame_name(role: str, view_index: int, frame: int) -> str:
    return f"images/{role}_{view_index:02d}/frame_{frame:04d}.png"


def _settings(config: ProcessConfig) -> Dict[str, Any]:
    fields = dataclasses.asdict(config)
    fields.pop("force")
    fields.pop("device")
    fields["input"] = str(Path(config.input).resolve())
    for key in ("output", "masks", "init_mesh"):
        fields[key] = None if fields[key] is None else str(fields[key])
    return {"generator": TOOL, "version": PROCESS_VERSION, "settings": fields}


def load_mesh_points(path: Path, count: int, half_extent: float, seed: int = 0) -> np.ndarray:
    """Points on a mesh's surface, centred and scaled so its largest half-extent is ``half_extent``."""
    import trimesh

    try:
        mesh = trimesh.load(str(path), force="mesh")
    except Exception as err:  # trimesh raises many types for unreadable files
        raise InputError(f"{path}: cannot load this mesh ({type(err).__name__}: {err})") from err
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise InputError(f"{path}: no triangles in this mesh")
    points, _ = trimesh.sample.sample_surface(mesh, count, seed=seed)
    low, high = mesh.bounds
    centre, extent = (low + high) / 2.0, float((high - low).max()) / 2.0
    if extent <= 0:
        raise InputError(f"{path}: the mesh has no extent")
    return ((points - centre) * (half_extent / extent)).astype(np.float32)


def process(config: ProcessConfig) -> Path:
    """Write the dataset; return the path of its ``transforms.json``."""
    if config.init_mesh is not None:
        config = dataclasses.replace(config, init="mesh")
    if config.init == "mesh" and config.init_mesh is None:
        raise InputError("--init mesh needs --init-mesh PATH")
    # every check on the user's input happens here, before long work
    clip = read_clip(config.input, config.num_frames, config.start, config.end)
    rgba = input_rgba(clip, Path(config.input), config.masks, config.matting)
    frames = frame_clip(rgba, clip.names, config.resolution, config.fill)
    # the framing makes the object's largest half-extent about fill * tan(fov / 2) * radius
    half_extent = config.fill * np.tan(np.radians(views.INPUT_FOVY_DEG / 2)) * views.INPUT_RADIUS
    mesh_points = (
        load_mesh_points(config.init_mesh, config.num_points, half_extent) if config.init_mesh is not None else None
    )
    out = Path(config.output)
    if out.resolve() == Path(config.input).resolve() or Path(config.input).resolve() in out.resolve().parents:
        raise InputError(f"{out}: the output must not be inside the input {config.input}")
    inputs = (config.input, config.masks, config.init_mesh)
    output = prepare_output_dir(out, MANIFEST_NAME, _settings(config), config.force, TOOL, inputs=inputs)
    resume = output.resume
    todo = [f for f in range(len(frames)) if not (resume and _pseudo_done(out, f))]
    # load the generator (and matting) before writing anything: missing weights leave no output behind
    generator = _load_generator(config) if todo else None
    # Creates the folder; unless resuming, deletes the files the manifest lists for an earlier run (no
    # file of another run may be taken as done, and no file it did not write is touched). From here
    # on, every atomic write into the folder is listed in the manifest before it happens (while
    # `output` lives, i.e. until this function returns).
    output.start()
    num_frames = len(frames)
    for frame, image in enumerate(frames):
        path = out / _frame_name("input", 0, frame)
        if not (resume and path.is_file()):
            write_png_atomic(path, image)
    if generator is not None:
        _generate_pseudo_views(config, out, frames, todo, *generator)
    else:
        CONSOLE.log("Pseudo views: all frames already generated")
    _write_initial_points(config, out, num_frames, mesh_points, half_extent)
    return _write_transforms(config, out, num_frames)


def _pseudo_done(out: Path, frame: int) -> bool:
    return all((out / _frame_name("pseudo", view, frame)).is_file() for view in range(6))


def _load_generator(config: ProcessConfig):
    from ds4d_ns.process.zero123plus import Zero123PlusPipeline

    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return Zero123PlusPipeline.load(config.zero123plus, device), GeneratedViewMatting(config.matting)


def _generate_pseudo_views(
    config: ProcessConfig,
    out: Path,
    frames: List[np.ndarray],
    todo: List[int],
    pipeline,
    matting: GeneratedViewMatting,
) -> None:
    anchor = AnchorCache() if config.zero123plus.temporal_anchor else None
    if anchor is not None and todo[0] != 0:
        pipeline(_on_grey(frames[:1]), anchor=anchor)  # re-record the first frame's anchor on resume
    batches = [todo[i : i + config.batch_size] for i in range(0, len(todo), config.batch_size)]
    if anchor is not None and batches and batches[0][0] == 0 and len(batches[0]) > 1:
        batches = [[0], batches[0][1:]] + batches[1:]  # the anchor frame goes alone
    for batch in track(batches, description=f"Zero123++ pseudo views ({config.zero123plus.resolved_model_id()})"):
        tiles = pipeline(_on_grey([frames[f] for f in batch]), anchor=anchor).cpu().numpy()
        for frame, views_of_frame in zip(batch, tiles):
            for view, tile in enumerate(views_of_frame):
                write_png_atomic(out / _frame_name("pseudo", view, frame), _resize(matting(tile), config.resolution))


def _on_grey(frames: List[np.ndarray]) -> torch.Tensor:
    rgba = torch.from_numpy(np.stack(frames)).float() / 255.0
    return rgba[..., :3] * rgba[..., 3:] + GREY * (1.0 - rgba[..., 3:])


def _resize(rgba: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if rgba.shape[0] == size:
        return rgba
    return np.asarray(Image.fromarray(rgba, mode="RGBA").resize((size, size), Image.Resampling.LANCZOS))


def _dataset_views(version: str):
    layout = [("input", 0, views.input_view())]
    layout += [("pseudo", i, view) for i, view in enumerate(views.zero123pp_views(version))]
    return layout


def _write_initial_points(
    config: ProcessConfig, out: Path, num_frames: int, mesh_points: Optional[np.ndarray], half_extent: float
) -> None:
    path = out / "init.ply"
    if config.init == "random":
        path.unlink(missing_ok=True)
        return
    if mesh_points is not None:
        write_ply_points_atomic(path, mesh_points)
        return
    from PIL import Image

    from ds4d_ns.process.visual_hull import carve, sample_surface_points
    from ds4d_ns.rendering.camera_matrices import opengl_c2w_to_opencv_viewmat

    middle = (num_frames - 1) // 2
    layout = _dataset_views(config.zero123plus.version)
    masks, viewmats, intrinsics = [], [], []
    for role, index, view in layout:
        with Image.open(out / _frame_name(role, index, middle)) as pil:
            masks.append(torch.from_numpy(np.asarray(pil.convert("RGBA"))[..., 3] / 255.0).float())
        viewmats.append(opengl_c2w_to_opencv_viewmat(views.orbit_c2w(view)[None].float())[0])
        focal = views.focal_from_fov(view.fov_deg, config.resolution)
        centre = config.resolution / 2.0
        intrinsics.append(torch.tensor([[focal, 0.0, centre], [0.0, focal, centre], [0.0, 0.0, 1.0]]))
    viewmats_t, intrinsics_t = torch.stack(viewmats), torch.stack(intrinsics)
    extent = 1.5 * half_extent
    grid = carve(masks, viewmats_t, intrinsics_t, extent, config.hull_resolution)
    if not grid.occupied.any():
        CONSOLE.log("[yellow]The pseudo views' masks disagree (empty visual hull): carving with the input view alone")
        grid = carve(masks[:1], viewmats_t[:1], intrinsics_t[:1], extent, config.hull_resolution)
    points = sample_surface_points(grid, config.num_points).numpy()
    write_ply_points_atomic(path, points)


def _write_transforms(config: ProcessConfig, out: Path, num_frames: int) -> Path:
    records = []
    for frame in range(num_frames):
        time = frame / (num_frames - 1) if num_frames > 1 else 0.0
        for role, index, view in _dataset_views(config.zero123plus.version):
            focal = views.focal_from_fov(view.fov_deg, config.resolution)
            records.append(
                frame_record(
                    _frame_name(role, index, frame),
                    views.orbit_c2w(view).numpy(),
                    (focal, focal),
                    (config.resolution / 2.0, config.resolution / 2.0),
                    (config.resolution, config.resolution),
                    time,
                    frame,
                    role,
                    index,
                )
            )
    content: Dict[str, Any] = {"frames": records}
    if (out / "init.ply").is_file():
        content["ply_file_path"] = "init.ply"
    path = out / TRANSFORMS_NAME
    write_json_atomic(path, content)
    CONSOLE.log(f"{TOOL}: {num_frames} frames x {len(records) // max(num_frames, 1)} views written to {out}")
    return path
