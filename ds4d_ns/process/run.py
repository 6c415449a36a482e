"""``ds4d-process``: a video (or image folder) to a ds4d dataset.

Steps, each resumable: check the arguments and read and check every input (all errors before any
output and before long work); mask the frames (their alpha, ``--masks``, a background key or
rembg); crop every frame with one square around the clip's union of foreground; write the input
views at ``--resolution``; generate six Zero123++ pseudo views per frame, conditioned on the same
square crop at the source's own resolution (or import existing ones with ``--pseudo-views``), matte
them; write initial points (visual hull of the middle frame by default, a mesh, or none); write
``transforms.json`` last. The user's files are only read; a rerun with the same settings and
unchanged inputs (size, modification time and SHA-256 of every file read) skips what exists;
every file is written to a temporary name and renamed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple

import numpy as np
import torch
import tyro
from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape
from rich.progress import track
from typing_extensions import Annotated

from ds4d_ns import camera_layouts
from ds4d_ns.data.dataset_format import (
    PLY_NAME,
    TRANSFORMS_NAME,
    DatasetView,
    image_path,
    middle_frame,
    view_layout,
    write_dataset,
)
from ds4d_ns.io.output_folder import prepare_output_dir, refuse_a_file_in_the_way
from ds4d_ns.io.writers import write_ply_points_atomic, write_png_atomic
from ds4d_ns.options import Zero123PlusRelease
from ds4d_ns.process import view_agreement
from ds4d_ns.process.fingerprint import describe_changes, fingerprints
from ds4d_ns.process.frames import InputError, read_clip
from ds4d_ns.process.framing import clip_framing, crop_rgba
from ds4d_ns.process.masks import GeneratedViewMatting, Matting, ViewMatting, input_rgba
from ds4d_ns.process.pseudo_import import PseudoViewEntry, load_views, scan_pseudo_views
from ds4d_ns.process.zero123plus import AnchorCache, Zero123PlusConfig, Zero123PlusPipeline, on_grey

TOOL = "ds4d-process"
MANIFEST_NAME = "ds4d_process.json"
PROCESS_VERSION = 3
"""3: imported views keep the source framing of their input by default (--input-framing)."""


@dataclass
class ProcessConfig:
    """Turn a short video of a moving object into a dataset for ``ns-train ds4d``."""

    input: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="VIDEO_OR_FRAME_DIR")]
    """Video file (mp4, mov, webm, ...; its alpha channel is used when the stream has one) or folder of
    images (RGBA or RGB; read in natural order: 2.png before 10.png)."""
    output: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="OUT")]
    """Dataset folder to write (created; an earlier run with the same settings is resumed)."""
    num_frames: int = 30
    """Frames sampled uniformly from [start, end)."""
    start: int = 0
    """First source frame (index) to use."""
    end: Optional[int] = None
    """Source frame index to stop before; None = the end of the clip."""
    resolution: int = 256
    """Side of the square dataset images in pixels (Zero123++ is conditioned on the source-resolution crop)."""
    fill: float = camera_layouts.DEFAULT_FILL
    """Share of the image side filled by the union of the object over the clip (--input-framing fill)."""
    input_framing: Optional[Literal["source", "fill"]] = None
    """How the input frames are framed. fill: one square around the clip's union of foreground, filled to
    --fill (what ds4d-process conditions its own Zero123++ generation on); source: each source frame as it
    is, padded to a square, never cropped (how STAG4D's and DS4D's code give frames to Zero123++). Imported
    views must see the input framed as their generator did. None: source with --pseudo-views, else fill."""
    min_view_agreement: float = view_agreement.MIN_COVERAGE
    """Share of the input view's silhouette that the pseudo views' visual hull must cover (first, middle
    and last frame). Imported views below it are refused before anything is written; generated views
    are reported only. 0 turns the check off."""
    masks: Optional[Path] = None
    """Folder of foreground masks, one per source frame: matched by the number in their names when the
    frames are numbered files, else in natural order (for frames without alpha)."""
    matting: Matting = "none"
    """Frames without alpha: white = key out a plain background (--background-colour); rembg = remove
    backgrounds with rembg (optional extra, model downloaded on first use; also mattes the pseudo
    views, which are otherwise keyed on Zero123++'s grey)."""
    background_colour: Tuple[int, int, int] = (255, 255, 255)
    """Background colour (R G B, 0-255) keyed out by --matting white."""
    key_tolerance: float = 20.0
    """--matting white: colour distance to the background (0-255, largest over R, G, B) at which a pixel
    is half object; the soft edge ramps from 0.4x to 1.6x this."""
    pseudo_views: Optional[Path] = None
    """Import existing pseudo views instead of running Zero123++: a folder with, per frame (natural
    order), one 3x2 grid image as Zero123++ returns it or a folder of six tiles in the release's order."""
    pseudo_release: Optional[Zero123PlusRelease] = None
    """Zero123++ release that made --pseudo-views (their cameras); required with --pseudo-views."""
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


def _settings(config: ProcessConfig, inputs: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """What the output is made from: the settings and the fingerprint of every input file read."""
    fields = dataclasses.asdict(config)
    fields.pop("force")
    fields.pop("device")
    if config.pseudo_views is not None:
        fields.pop("zero123plus")  # imported views: the generator's settings play no part
        fields.pop("batch_size")
    fields["input"] = str(Path(config.input).resolve())
    fields["background_colour"] = list(config.background_colour)
    for key in ("output", "masks", "init_mesh", "pseudo_views"):
        fields[key] = None if fields[key] is None else str(fields[key])
    return {"generator": TOOL, "version": PROCESS_VERSION, "settings": fields, "inputs": inputs}


def check_arguments(config: ProcessConfig) -> None:
    """Refuse impossible arguments before any work, with one line naming the flag."""
    for flag, value in (
        ("--num-frames", config.num_frames),
        ("--resolution", config.resolution),
        ("--batch-size", config.batch_size),
        ("--num-points", config.num_points),
        ("--hull-resolution", config.hull_resolution),
    ):
        if value <= 0:
            raise InputError(f"{flag} must be a positive whole number, got {value}")
    if config.start < 0:
        raise InputError(f"--start must be 0 or more, got {config.start}")
    if config.end is not None and config.end <= config.start:
        raise InputError(f"--end {config.end} must be greater than --start {config.start}")
    if not 0 < config.fill <= 1:
        raise InputError(f"--fill must be in (0, 1], got {config.fill}")
    if not 0 <= config.min_view_agreement <= 1:
        raise InputError(f"--min-view-agreement must be in [0, 1], got {config.min_view_agreement}")
    if not all(0 <= c <= 255 for c in config.background_colour):
        raise InputError(f"--background-colour takes three values from 0 to 255, got {config.background_colour}")
    if not config.key_tolerance > 0:
        raise InputError(f"--key-tolerance must be positive, got {config.key_tolerance}")
    if config.zero123plus.num_inference_steps <= 0:
        raise InputError(
            f"--num-inference-steps must be a positive whole number, got {config.zero123plus.num_inference_steps}"
        )
    if not Path(config.input).exists():
        raise InputError(f"{config.input}: no such file or folder")
    for flag, folder in (("--masks", config.masks), ("--pseudo-views", config.pseudo_views)):
        if folder is not None and not Path(folder).is_dir():
            what = "is not a folder" if Path(folder).exists() else "no such folder"
            raise InputError(f"{flag} {folder}: {what}")
    if config.init_mesh is not None and not Path(config.init_mesh).is_file():
        raise InputError(f"--init-mesh {config.init_mesh}: no such file")
    if config.init == "mesh" and config.init_mesh is None:
        raise InputError("--init mesh needs --init-mesh PATH")
    if config.pseudo_views is not None and config.pseudo_release is None:
        raise InputError(
            "--pseudo-views needs --pseudo-release v1.1 or v1.2: the Zero123++ release that made them sets "
            "their cameras"
        )
    if config.pseudo_views is None and config.pseudo_release is not None:
        raise InputError("--pseudo-release only applies with --pseudo-views DIR (use --version for generated views)")
    refuse_a_file_in_the_way(Path(config.output))


def input_framing(config: ProcessConfig) -> Literal["source", "fill"]:
    """The framing of the input frames: the flag, else source for imported views and fill for generated ones."""
    if config.input_framing is not None:
        return config.input_framing
    return "source" if config.pseudo_views is not None else "fill"


def _release(config: ProcessConfig) -> Zero123PlusRelease:
    """The Zero123++ release whose camera layout the pseudo views follow."""
    return (
        config.pseudo_release
        if config.pseudo_views is not None and config.pseudo_release
        else config.zero123plus.version
    )


def _explain_previous_run(out: Path, settings: Dict[str, Any], force: bool) -> None:
    """Say what changed since the earlier run in ``out``: refuse without --force, log with it."""
    import json

    try:
        content = json.loads((out / MANIFEST_NAME).read_text())
    except (OSError, ValueError, RecursionError):
        return  # no readable manifest: the output folder's own checks decide
    jobs = content.get("jobs") if isinstance(content, dict) else None
    previous = jobs.get(TOOL, {}).get("settings") if isinstance(jobs, dict) else content
    if not isinstance(previous, dict) or previous.get("generator") != TOOL:
        return
    current = json.loads(json.dumps(settings))  # as it reads back (tuples become lists)
    if previous == current:
        return
    changes = describe_changes(previous, current)
    if not force:
        raise FileExistsError(
            f"refusing to write into {out}: it holds a {TOOL} output with different settings or inputs "
            f"({changes}). Pick another folder, or pass --force to regenerate it."
        )
    CONSOLE.log(f"[yellow]--force: regenerating {escape(str(out))}; since its earlier run: {escape(changes)}")


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
    check_arguments(config)
    # every check on the user's input happens here, before any output and before long work
    clip = read_clip(config.input, config.num_frames, config.start, config.end)
    rgba, mask_files = input_rgba(
        clip, Path(config.input), config.masks, config.matting, config.background_colour, config.key_tolerance
    )
    framing = input_framing(config)
    crop, fill = clip_framing(rgba, clip.names, framing, config.fill)
    if framing == "source":
        CONSOLE.log(f"Input framing: the source frames padded to a square (the object reaches {fill:.0%} of it)")
    frames = [crop_rgba(image, crop, config.resolution) for image in rgba]
    imported = scan_pseudo_views(config.pseudo_views, clip, Path(config.input)) if config.pseudo_views else None
    # the framing makes the object's largest half-extent about fill * tan(fov / 2) * radius
    half_extent = camera_layouts.object_half_extent(fill)
    layout = _dataset_views(_release(config), half_extent)
    mesh_points = (
        load_mesh_points(config.init_mesh, config.num_points, half_extent) if config.init_mesh is not None else None
    )
    out = Path(config.output)
    if out.resolve() == Path(config.input).resolve() or Path(config.input).resolve() in out.resolve().parents:
        raise InputError(f"{out}: the output must not be inside the input {config.input}")
    inputs = (config.input, config.masks, config.init_mesh, config.pseudo_views)
    used = [*clip.files, *mask_files, *(f for entry in imported or [] for f in entry.files)]
    settings = _settings(config, fingerprints(used + ([Path(config.init_mesh)] if config.init_mesh else [])))
    _explain_previous_run(out, settings, config.force)
    output = prepare_output_dir(out, MANIFEST_NAME, settings, config.force, TOOL, inputs=inputs)
    try:
        # a user's file in the way: refused, nothing written
        output.check_can_write(_planned_files(config, layout, len(frames)))
        resume = output.resume
        todo = [f for f in range(len(frames)) if not (resume and _pseudo_done(out, f))]
        # load the generator (and matting) before writing anything: missing weights leave no output behind
        generator, import_matting = None, None
        decoded: Dict[int, List[np.ndarray]] = {}
        if imported is not None:
            checked = view_agreement.check_frames(len(frames)) if config.min_view_agreement > 0 else []
            if any(not imported[f].has_alpha for f in {*todo, *checked}):
                import_matting = GeneratedViewMatting(config.matting)
            if checked:  # the checked frames' decoded views are written from memory below
                decoded = _check_imported_views(config, imported, rgba, clip.names, checked, import_matting)
        elif todo:
            generator = _load_generator(config)
        # Creates the folder; unless resuming, deletes the files the manifest lists for an earlier run (no
        # file of another run may be taken as done, and no file it did not write is touched). From here
        # on, every atomic write into the folder is listed in the manifest before it happens (while
        # `output` is closed, at the end of this function).
        output.start()
        num_frames = len(frames)
        for frame, image in enumerate(frames):
            path = out / image_path("input", 0, frame)
            if not (resume and path.is_file()):
                write_png_atomic(path, image)
        if imported is not None:
            _import_pseudo_views(config, out, imported, todo, import_matting, decoded)
        elif generator is not None:
            # Zero123++ sees the same square as the dataset frames, at the source's own resolution (its
            # processors resize it); --resolution is the dataset's image size only
            condition_images = [crop_rgba(image, crop) for image in rgba]
            del rgba
            _generate_pseudo_views(config, out, condition_images, todo, *generator)
            if config.min_view_agreement > 0:
                _report_generated_views(config, out, frames, layout, half_extent)
        else:
            CONSOLE.log("Pseudo views: all frames already generated")
        _write_initial_points(config, out, num_frames, mesh_points, half_extent, layout)
        return _write_transforms(config, out, num_frames, layout)
    finally:
        output.close()  # the folder's lock and the record of writes end with the run, however it ends


def _pseudo_done(out: Path, frame: int) -> bool:
    return all((out / image_path("pseudo", view, frame)).is_file() for view in range(6))


def _load_generator(config: ProcessConfig) -> Tuple[Zero123PlusPipeline, GeneratedViewMatting]:
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    matting = GeneratedViewMatting(config.matting)  # rembg's model first: it fails fast offline
    return Zero123PlusPipeline.load(config.zero123plus, device), matting


def _imported_rgba(entry: PseudoViewEntry, matting: Optional[ViewMatting]) -> List[np.ndarray]:
    """The six imported views of one frame as RGBA uint8 (alpha kept, or matted like generated views)."""
    views = []
    for tile in load_views(entry):
        if not entry.has_alpha:
            assert matting is not None
            tile = matting(tile[..., :3] / 255.0)
        elif tile.shape[-1] == 3:  # an opaque tile beside transparent ones in a tile folder
            tile = np.concatenate([tile, np.full(tile.shape[:2] + (1,), 255, np.uint8)], axis=-1)
        views.append(tile)
    return views


def _import_pseudo_views(
    config: ProcessConfig,
    out: Path,
    entries: Sequence[PseudoViewEntry],
    todo: List[int],
    matting: Optional[ViewMatting],
    decoded: Dict[int, List[np.ndarray]],
) -> None:
    """Write the imported views of the frames in ``todo`` (those in ``decoded`` are not read again)."""
    for frame in track(todo, description=f"Importing pseudo views ({config.pseudo_release})"):
        views = decoded.pop(frame) if frame in decoded else _imported_rgba(entries[frame], matting)
        for view, tile in enumerate(views):
            write_png_atomic(out / image_path("pseudo", view, frame), _resize(tile, config.resolution))


def _agreement(
    frames: Sequence[int],
    input_views: Sequence[np.ndarray],
    pseudo_views: Sequence[Sequence[np.ndarray]],
    layout: Sequence[DatasetView],
    half_extent: float,
) -> view_agreement.ViewAgreement:
    """:func:`view_agreement.measure_agreement` on RGBA uint8 images of the dataset's layout."""
    (input_view,) = [view.orbit for view in layout if view.role == "input"]
    pseudo_orbits = [view.orbit for view in layout if view.role == "pseudo"]
    return view_agreement.measure_agreement(
        frames,
        [image[..., 3] / 255.0 for image in input_views],
        [[tile[..., 3] / 255.0 for tile in views] for views in pseudo_views],
        input_view,
        pseudo_orbits,
        half_extent,
    )


def _check_imported_views(
    config: ProcessConfig,
    entries: Sequence[PseudoViewEntry],
    rgba: Sequence[np.ndarray],
    names: Sequence[str],
    checked: Sequence[int],
    matting: Optional[ViewMatting],
) -> Dict[int, List[np.ndarray]]:
    """Refuse imported views whose visual hull does not cover the input's silhouette (nothing written yet);
    return the checked frames' decoded views.

    When they disagree, the other framing and the other release are scored too, so the message can say
    which of them would make the views agree.
    """
    pseudo = [_imported_rgba(entries[f], matting) for f in checked]

    def score(framing: Literal["source", "fill"], release: Zero123PlusRelease) -> view_agreement.ViewAgreement:
        crop, fill = clip_framing(rgba, names, framing, config.fill)
        half_extent = camera_layouts.object_half_extent(fill)
        inputs = [crop_rgba(rgba[f], crop, view_agreement.CHECK_SIZE) for f in checked]
        return _agreement(checked, inputs, pseudo, _dataset_views(release, half_extent), half_extent)

    framing, release = input_framing(config), _release(config)
    agreement = score(framing, release)
    if agreement.agrees(config.min_view_agreement):
        CONSOLE.log(f"Pseudo views agree with the input: {agreement.describe()}")
        return dict(zip(checked, pseudo))
    if agreement.opaque_views:
        raise InputError(
            f"--pseudo-views {config.pseudo_views}: {agreement.describe()}. Give RGBA views, or RGB views on "
            "Zero123++'s grey background (keyed out), or --matting rembg. Nothing was written; "
            "--min-view-agreement 0 skips this check"
        )
    other_framing: Literal["source", "fill"] = "fill" if framing == "source" else "source"
    other_release: Zero123PlusRelease = "v1.2" if release == "v1.1" else "v1.1"
    alternatives = {
        f"--input-framing {other_framing}": score(other_framing, release),
        f"--pseudo-release {other_release}": score(framing, other_release),
    }
    agreeing = [flag for flag, result in alternatives.items() if result.agrees(config.min_view_agreement)]
    measured = "; ".join(f"with {flag}: {result.worst:.0%}" for flag, result in alternatives.items())
    if agreeing:
        cause = f"they agree with {' or '.join(agreeing)} ({measured}): the input's framing or the release is wrong"
    else:
        cause = (
            f"no other framing or release makes them agree ({measured}): check the views' order (six tiles in "
            "the release's order, row-major, azimuths 30, 90, ..., 330), that they were made from these frames, "
            "and how the input frames were framed when the views were made"
        )
    raise InputError(
        f"--pseudo-views {config.pseudo_views}: the views disagree with the input frames (--input-framing "
        f"{framing}, --pseudo-release {release}): {agreement.describe()}, below --min-view-agreement "
        f"{config.min_view_agreement:.0%}; {cause}. Nothing was written; --min-view-agreement 0 skips this check"
    )


def _report_generated_views(
    config: ProcessConfig,
    out: Path,
    input_frames: Sequence[np.ndarray],
    layout: Sequence[DatasetView],
    half_extent: float,
) -> None:
    """Log how well the generated views agree with the input (a warning below the threshold, never a stop)."""
    from ds4d_ns.data.images import decode_image

    checked = view_agreement.check_frames(len(input_frames))
    pseudo = [[decode_image(out / image_path("pseudo", v, f)).rgba for v in range(6)] for f in checked]
    agreement = _agreement(checked, [input_frames[f] for f in checked], pseudo, layout, half_extent)
    if not agreement.agrees(config.min_view_agreement):
        CONSOLE.log(
            f"[yellow]The generated views disagree with the input frames: {escape(agreement.describe())}. "
            "Training will blur what they disagree on; look at the views (images/pseudo_*), try another --seed "
            "or --temporal-anchor"
        )
    else:
        CONSOLE.log(f"Pseudo views agree with the input: {agreement.describe()}")


def _generate_pseudo_views(
    config: ProcessConfig,
    out: Path,
    condition_images: Sequence[np.ndarray],
    todo: List[int],
    pipeline: Zero123PlusPipeline,
    matting: ViewMatting,
) -> None:
    """Six Zero123++ views of every frame in ``todo``, matted and resized to ``config.resolution``.

    ``condition_images[f]`` is frame f's square RGBA crop at any size (the release's processors resize it).
    Each frame's noise depends on the seed alone, so batching and resuming do not change the views; the
    temporal anchor is recorded from frame 0, generated again first when a resumed run no longer needs it.
    """
    generator = config.zero123plus
    anchor = AnchorCache() if generator.temporal_anchor != "none" else None
    if anchor is not None and todo and todo[0] != 0:
        pipeline(_on_grey(condition_images[:1]), anchor=anchor, frames=[0])  # re-record the anchor on resume
    batches = [todo[i : i + config.batch_size] for i in range(0, len(todo), config.batch_size)]
    CONSOLE.log(
        f"Zero123++ {generator.version}: temporal anchor {generator.temporal_anchor}, "
        f"{'the same noise for every frame' if generator.frame_noise == 'same' else 'noise seeded per frame'}"
    )
    for batch in track(batches, description=f"Zero123++ pseudo views ({generator.resolved_model_id()})"):
        tiles = pipeline(_on_grey([condition_images[f] for f in batch]), anchor=anchor, frames=batch).cpu().numpy()
        for frame, views_of_frame in zip(batch, tiles):
            for view, tile in enumerate(views_of_frame):
                write_png_atomic(out / image_path("pseudo", view, frame), _resize(matting(tile), config.resolution))


def _on_grey(images: Sequence[np.ndarray]) -> List[np.ndarray]:
    """RGBA uint8 crops as Zero123++ is given them: pasted on the release's grey (RGB uint8)."""
    return [on_grey(image) for image in images]


def _resize(rgba: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if rgba.shape[0] == size:
        return rgba
    return np.asarray(Image.fromarray(rgba, mode="RGBA").resize((size, size), Image.Resampling.LANCZOS))


def _dataset_views(release: Zero123PlusRelease, half_extent: float) -> Tuple[DatasetView, ...]:
    # v1.2's cameras frame a normalised object size: their radius follows the object's extent (the framing)
    return view_layout(camera_layouts.zero123pp_views(release, half_extent=half_extent))


def _planned_files(config: ProcessConfig, layout: Sequence[DatasetView], num_frames: int) -> List[str]:
    """Every file the run writes, relative to the output folder, so that one in the way is refused before any write."""
    planned = [view.image_path(frame) for frame in range(num_frames) for view in layout]
    return planned + ([PLY_NAME] if config.init != "random" else []) + [TRANSFORMS_NAME]


def _write_initial_points(
    config: ProcessConfig,
    out: Path,
    num_frames: int,
    mesh_points: Optional[np.ndarray],
    half_extent: float,
    layout: Sequence[DatasetView],
) -> None:
    path = out / PLY_NAME
    if config.init == "random":
        return  # nothing to write; an init.ply of an earlier run was removed with that run's files
    if mesh_points is not None:
        write_ply_points_atomic(path, mesh_points)
        return
    from PIL import Image

    from ds4d_ns.process.visual_hull import carve, sample_surface_points

    middle = middle_frame(num_frames)
    masks = []
    for view in layout:
        with Image.open(out / view.image_path(middle)) as pil:
            masks.append(torch.from_numpy(np.asarray(pil.convert("RGBA"))[..., 3] / 255.0).float())
    viewmats_t, intrinsics_t = view_agreement.orbit_cameras([view.orbit for view in layout], config.resolution)
    extent = 1.5 * half_extent
    hull = carve(masks, viewmats_t, intrinsics_t, extent, config.hull_resolution)
    if not hull.occupied.any():
        CONSOLE.log("[yellow]The pseudo views' masks disagree (empty visual hull): carving with the input view alone")
        (front,) = [i for i, view in enumerate(layout) if view.role == "input"]
        hull = carve(
            masks[front : front + 1],
            viewmats_t[front : front + 1],
            intrinsics_t[front : front + 1],
            extent,
            config.hull_resolution,
        )
    points = sample_surface_points(hull, config.num_points).numpy()
    write_ply_points_atomic(path, points)


def _write_transforms(config: ProcessConfig, out: Path, num_frames: int, layout: Sequence[DatasetView]) -> Path:
    path = write_dataset(out, layout, num_frames, config.resolution, initial_points=config.init != "random")
    CONSOLE.log(f"{TOOL}: {num_frames} frames x {len(layout)} views written to {escape(str(out))}")
    return path
