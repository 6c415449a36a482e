"""``ds4d-export``: the trained 4D asset as a numbered sequence of Gaussian-splat files.

``ns-export gaussian-splat`` writes the canonical Gaussians and ignores time. This command deforms
them to each time step and writes, into its output folder::

    ply/frame_0000.ply ...   one standard 3D Gaussian Splatting PLY per frame (the folder holds
                             nothing else, so it can be dropped on SuperSplat as an animation)
    spz/frame_0000.spz ...   the same frames in Niantic's compressed SPZ format (with --spz)
    manifest.json            frame times, counts, per-frame and overall bounds, file names,
                             formats and the run the frames came from; written last
    times.json               the frame times alone, in the layout of earlier versions
    mesh/animated.glb        with --mesh: a triangle mesh and its motion (glTF 2.0 morph targets and an
    mesh/frame_0000.ply ...  animation), the same mesh deformed to each frame, and its manifest.json
    mesh/manifest.json       (see ``ds4d_ns.exporting.mesh_sequence``)
    web/index.html ...       with --web: a page that plays the clip in a browser, with its SPZ frames, manifest
                             and vendored renderer (see ``ds4d_ns.exporting.web``)
    ds4d_export.json         the files this command wrote (``ds4d_ns.io.output_folder``)

Every file is written atomically, so a viewer never sees half a frame. It needs only the run's
checkpoint (the dataset is read, when found, for its frame count). A rerun replaces its previous
export whole; it never writes over or deletes a file it did not write. From Python, call
:func:`export_sequence`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import tyro
from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape
from rich.progress import track

import ds4d_ns
from ds4d_ns.data.dataset_format import TRANSFORMS_NAME
from ds4d_ns.errors import UserError, exit_on_user_error
from ds4d_ns.exporting.manifest import frame_file_name, sequence_manifest
from ds4d_ns.exporting.mesh_sequence import (
    DEFAULT_FPS,
    check_mesh_flags,
    clip_seconds,
    default_mesh_resolution,
    export_mesh,
    mesh_file_names,
    require_deformation_field,
)
from ds4d_ns.exporting.ply import splat_ply_property_names, write_splat_ply_atomic
from ds4d_ns.exporting.splat_frame import splat_frame_from_model
from ds4d_ns.exporting.spz import SPZ_VERSION, require_spz_writer, write_spz_atomic
from ds4d_ns.exporting.web import require_web_renderer, web_file_names, write_web_frame, write_web_page
from ds4d_ns.io.checkpoints import CheckpointError, check_checkpoint_folder, checkpoint_files, load_checkpoint_file
from ds4d_ns.io.output_folder import prepare_output_dir
from ds4d_ns.io.writers import write_json_atomic
from ds4d_ns.scripts.loading import RunFolder, load_trained_model, require_at_least, resolve_run

TOOL = "ds4d-export"
MANIFEST_NAME = "ds4d_export.json"
"""Lists the files this command wrote in its output folder (see ``ds4d_ns.io.output_folder``)."""
SEQUENCE_MANIFEST_NAME = "manifest.json"
"""Describes the exported sequence (see ``ds4d_ns.exporting.manifest``)."""
TIMES_NAME = "times.json"
"""Frame times only, kept for readers of earlier versions; ``manifest.json`` holds the same and more."""
PLY_FOLDER = "ply"
SPZ_FOLDER = "spz"


@dataclass
class ExportGaussianSequence:
    """Export a trained ds4d run as a numbered sequence of Gaussian-splat files (PLY, optionally SPZ)."""

    load_config: Path
    """config.yml of a trained ds4d run."""
    output_dir: Path
    """Folder to write ``ply/frame_XXXX.ply``, ``manifest.json`` and ``times.json`` into (created if missing). It
    must be new, empty or an earlier export (whose files are replaced whole); --force writes beside other files,
    never over them."""
    num_times: Optional[int] = None
    """Time steps sampled uniformly over [0, 1] (at least 1); None exports one per training frame."""
    spz: bool = False
    """Also write each frame as SPZ (Niantic's compressed splat format, about 10x smaller) into ``spz/``; needs
    the gsply package (``pip install gsply``)."""
    mesh: bool = False
    """Also write ``mesh/animated.glb`` (a triangle mesh with one morph target per frame and an animation that
    Blender, three.js and game engines play), ``mesh/frame_XXXX.ply`` and ``mesh/manifest.json``."""
    mesh_resolution: Optional[int] = None
    """Density grid samples along the object's longest side for --mesh (16 to 1024); None: 256 with CUDA, 128
    without."""
    mesh_faces: int = 50000
    """Face budget of the mesh (100 to 5000000): the surface is simplified to at most this many triangles."""
    mesh_texture: bool = False
    """With --mesh: give the glb UVs (unwrapped by xatlas) and a texture baked from the renders instead of vertex
    colours (the PLY frames keep vertex colours); needs xatlas (the ``mesh`` extra)."""
    mesh_texture_size: int = 1024
    """Texels along each side of --mesh-texture's texture (64 to 8192)."""
    web: bool = False
    """Also write ``web/``: a page that plays the clip in a browser (``web/index.html``, served by any static
    file server), with the frames as SPZ and the renderer (Spark, three.js) vendored; needs gsply and the renderer
    that ``scripts/setup.sh`` installs."""
    fps: Optional[float] = None
    """Playback rate of the glb's animation and of the web page in frames per second of the clip (0.1 to 1000);
    None: the dataset's ``fps`` if its transforms.json has one, else 12."""
    force: bool = False
    """Write into a folder holding files ds4d-export did not write (they are left alone)."""

    def main(self) -> List[Path]:
        """Run the export; returns the PLY files, in frame order (see :func:`export_sequence` for the rest)."""
        return export_sequence(self).ply_files


@dataclass
class ExportResult:
    """What :func:`export_sequence` wrote."""

    output_dir: Path
    """The export folder."""
    manifest: Path
    """Its ``manifest.json``."""
    times: List[float]
    """Each frame's time in [0, 1]."""
    ply_files: List[Path]
    """One PLY per frame, in frame order."""
    spz_files: List[Path] = field(default_factory=list)
    """One SPZ per frame, in frame order (empty without ``spz``)."""
    mesh_files: List[Path] = field(default_factory=list)
    """With ``mesh``: ``mesh/animated.glb``, the per-frame PLYs in frame order, then ``mesh/manifest.json``."""
    web_page: Optional[Path] = None
    """With ``web``: ``web/index.html``."""


def export_sequence(config: ExportGaussianSequence) -> ExportResult:
    """Write the Gaussians of a trained ds4d run at each time step as a numbered splat sequence.

    Every check (flags, run config, checkpoint, output folder, SPZ writer) comes before the model is
    loaded. Safe to call in-process (from ``ds4d-batch``): problems with the inputs raise
    :class:`ds4d_ns.errors.UserError` (or a subclass) instead of exiting.

    Args:
        config: what to export and where; ``config.output_dir`` gets ``ply/frame_XXXX.ply`` (and
            ``spz/frame_XXXX.spz`` with ``config.spz``), ``manifest.json`` and ``times.json``.

    Returns:
        The written files and the frame times.

    Raises:
        UserError: a bad flag, run folder, checkpoint or output folder, ``spz`` or ``web`` without gsply, or ``web``
            without its renderer.
    """
    require_at_least("--num-times", config.num_times)
    if config.mesh_texture and not config.mesh:
        raise UserError("--mesh-texture needs --mesh")
    check_mesh_flags(
        config.mesh_resolution, config.mesh_faces, config.fps, config.mesh_texture_size, config.mesh_texture
    )
    run = resolve_run(config.load_config)
    check_checkpoint_folder(run.checkpoint_dir)
    if config.spz or config.web:
        require_spz_writer()
    renderer = require_web_renderer() if config.web else None
    settings: Dict[str, Any] = {
        "load_config": str(config.load_config),
        "num_times": config.num_times,
        "spz": config.spz,
    }
    if config.mesh:  # only then: an earlier splat export's settings still match a plain rerun's
        settings.update(mesh=True, mesh_resolution=config.mesh_resolution, mesh_faces=config.mesh_faces, fps=config.fps)
        if config.mesh_texture:  # only then, as above: an untextured export's settings stay as they were
            settings.update(mesh_texture=True, mesh_texture_size=config.mesh_texture_size)
    if config.web:
        settings.update(web=True, fps=config.fps)
    output = prepare_output_dir(
        config.output_dir,
        MANIFEST_NAME,
        settings,
        config.force,
        TOOL,
        job="splats",
        inputs=(run.config_path, run.checkpoint_dir, run.dataset),
        resumable=False,
    )
    num_times = config.num_times or _training_frame_count(run)
    times = np.linspace(0.0, 1.0, num_times).tolist() if num_times > 1 else [0.5]
    formats = {"ply": PLY_FOLDER, **({"spz": SPZ_FOLDER} if config.spz else {})}
    files: Dict[str, List[str]] = {
        kind: [f"{folder}/{frame_file_name(i, num_times, kind)}" for i in range(num_times)]
        for kind, folder in formats.items()
    }
    mesh_frames = [frame_file_name(i, num_times, "ply") for i in range(num_times)]
    mesh_files = mesh_file_names(mesh_frames) if config.mesh else []
    output.check_can_write(
        [*(rel for paths in files.values() for rel in paths), SEQUENCE_MANIFEST_NAME, TIMES_NAME, *mesh_files]
        + (web_file_names(num_times) if config.web else [])
    )
    try:
        model, step, _ = load_trained_model(run)
        if config.mesh:
            require_deformation_field(model, run.config_path)
    except BaseException:
        output.close()  # the folder's lock goes now, with nothing written
        raise
    # the newest checkpoint that loaded (a damaged newer one is skipped by the loader)
    checkpoint = next((path.name for s, path in checkpoint_files(run.checkpoint_dir) if s == step), None)
    out = Path(config.output_dir)
    counts, bounds, sh_degree = [], [], int(model.config.sh_degree)
    web_page: Optional[Path] = None
    with output:  # replaces this command's previous files here, and only those
        for index in track(range(num_times), description="exporting Gaussians"):
            frame = splat_frame_from_model(model, times[index])
            finite = frame.finite_rows()
            if not finite.all():
                CONSOLE.log(f"[yellow]frame {index}: {int((~finite).sum())} Gaussians with non-finite values left out")
                frame = frame.select(finite)
            write_splat_ply_atomic(out / files["ply"][index], frame)
            if config.spz:
                write_spz_atomic(out / files["spz"][index], frame)
            if config.web:
                write_web_frame(out, index, num_times, frame)
            counts.append(frame.num_gaussians)
            bounds.append(frame.bounds())
        write_json_atomic(
            out / TIMES_NAME,
            {
                "source_config": str(config.load_config),
                "checkpoint_step": step,
                "frames": [{"file_path": path, "time": time} for path, time in zip(files["ply"], times)],
            },
        )
        manifest = sequence_manifest(
            times=times,
            files=files,
            num_gaussians=counts,
            bounds=bounds,
            ply_properties=splat_ply_property_names(sh_degree),
            sh_degree=sh_degree,
            spz_version=SPZ_VERSION if config.spz else None,
            source={
                "config": str(run.config_path.resolve()),
                "method": run.config.method_name,
                "experiment": run.config.experiment_name,
                "timestamp": str(run.config.timestamp),
                "checkpoint": checkpoint,
                "checkpoint_step": step,
            },
            generator={"tool": TOOL, "package": "ds4d-ns", "version": ds4d_ns.__version__},
        )
        if config.mesh:
            fps = config.fps or _dataset_fps(run) or DEFAULT_FPS
            clip_frames = _training_frame_count(run) if config.num_times is None else _frame_count_or_none(run)
            export_mesh(
                model,
                out,
                times,
                clip_seconds(times, clip_frames, fps),
                mesh_frames,
                config.mesh_resolution or default_mesh_resolution(),
                config.mesh_faces,
                fps,
                source=manifest["source"],
                generator=manifest["generator"],
                texture_size=config.mesh_texture_size if config.mesh_texture else None,
            )
        if renderer is not None:
            fps = config.fps or _dataset_fps(run) or DEFAULT_FPS
            clip_frames = _training_frame_count(run) if config.num_times is None else _frame_count_or_none(run)
            web_page = write_web_page(
                out,
                renderer,
                times=times,
                num_gaussians=counts,
                bounds=bounds,
                seconds=clip_seconds(times, clip_frames, fps),
                fps=fps,
                dataset=run.dataset,
                source=manifest["source"],
                generator=manifest["generator"],
            )
        # written last: a folder with a manifest.json holds a complete sequence
        write_json_atomic(out / SEQUENCE_MANIFEST_NAME, manifest)
    CONSOLE.log(f"wrote {num_times} Gaussian splat frames to {escape(str(out))}")
    if config.mesh:
        CONSOLE.log(f"wrote the animated mesh to {escape(str(out / mesh_files[0]))}")
    if web_page is not None:
        CONSOLE.log(f"wrote the web page {escape(str(web_page))} (serve its folder: python -m http.server)")
    return ExportResult(
        output_dir=out,
        manifest=out / SEQUENCE_MANIFEST_NAME,
        times=times,
        ply_files=[out / rel for rel in files["ply"]],
        spz_files=[out / rel for rel in files.get("spz", [])],
        mesh_files=[out / rel for rel in mesh_files],
        web_page=web_page,
    )


def _dataset_fps(run: RunFolder) -> Optional[float]:
    """The clip's frame rate from the dataset's transforms.json (a top-level ``fps``), if it records one."""
    if run.dataset is None:
        return None
    try:
        fps = json.loads((run.dataset / TRANSFORMS_NAME).read_text()).get("fps")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return float(fps) if isinstance(fps, (int, float)) and 0 < fps <= 1000 else None


def _frame_count_or_none(run: RunFolder) -> Optional[int]:
    try:
        return _training_frame_count(run)
    except UserError:
        return None


def _training_frame_count(run: RunFolder) -> int:
    """Frames of the run's clip: from the dataset's transforms.json, else from the checkpoint's feature maps."""
    if run.dataset is not None:
        try:
            frames = json.loads((run.dataset / TRANSFORMS_NAME).read_text())["frames"]
            return len({int(frame["frame_index"]) for frame in frames})
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            pass  # the dataparser's checks are not repeated here: fall back to the checkpoint
    for _, path in reversed(checkpoint_files(run.checkpoint_dir)):
        try:
            maps = load_checkpoint_file(path)["pipeline"].get("_model.frame_point_features.maps")
        except CheckpointError:
            continue
        if maps is not None:
            return int(maps.shape[0])
        break
    raise UserError(
        f"{run.config_path}: the number of training frames is unknown (the dataset {run.dataset_given} is not "
        "found and this model has no frame features): pass --num-times"
    )


def entrypoint() -> None:
    """Console entry point of ``ds4d-export``."""
    tyro.extras.set_accent_color("bright_yellow")
    config = tyro.cli(ExportGaussianSequence)
    with exit_on_user_error(TOOL):
        export_sequence(config)


if __name__ == "__main__":
    entrypoint()
