"""The videos ``ds4d-eval`` scores: view folders of any method's renders, and a dataset's eval views.

A *view set* is a folder holding one entry per evaluation view, named by the view (``eval_0`` ..
``eval_3`` by default, as the Consistent4D scripts name them): either a folder of frame images
(``eval_0/0.png`` .. ``eval_0/31.png``, read in natural order, so ``2.png`` comes before ``10.png``)
or a video file (``eval_0.mp4``; any suffix of ``ds4d_ns.process.frames.VIDEO_SUFFIXES``). RGBA frames
are composited on white. Every problem (no such folder, views missing or named otherwise, a view with
another frame count than its ground truth or than the other views) is a :class:`ViewSetError`
naming the folder, before any metric runs.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import numpy as np
from jaxtyping import UInt8

from ds4d_ns.errors import UserError
from ds4d_ns.evaluation.protocol import PROTOCOL_RESOLUTION, to_protocol_frames, view_name
from ds4d_ns.process.frames import VIDEO_SUFFIXES, frame_number, image_files, read_clip

if TYPE_CHECKING:  # annotations only: nerfstudio is imported where a dataset is read
    from nerfstudio.cameras.cameras import Cameras


class ViewSetError(UserError):
    """A folder of view videos cannot be scored; the message names the folder and what to fix."""


@dataclass
class ViewVideos:
    """One video per evaluation view, every frame as the metrics see it (on white, square, uint8)."""

    names: Tuple[str, ...]
    """View names, in order."""
    frames: UInt8[np.ndarray, "v t s s 3"]
    """Frames of every view at the scoring resolution."""
    sources: Tuple[str, ...]
    """Where each view was read from (folder, file, or dataset), for messages and the report."""
    times: Optional[Tuple[float, ...]] = None
    """Time in [0, 1] of each frame, where known (dataset eval views)."""

    @property
    def num_views(self) -> int:
        return int(self.frames.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[1])


def _view_entries(folder: Path) -> List[str]:
    """Names in ``folder`` that look like views (sub-folders and video files), for messages."""
    found = [p.name for p in sorted(folder.iterdir()) if not p.name.startswith(".")]
    return [n for n in found if (folder / n).is_dir() or Path(n).suffix.lower() in VIDEO_SUFFIXES]


def find_view_sources(folder: Path, names: Sequence[str], flag: str) -> Dict[str, Path]:
    """The folder or video file of each view of ``names`` in ``folder``.

    Raises:
        ViewSetError: ``folder`` is not a folder, a view is missing (the message lists what the folder
            holds), or a view is there both as a folder and as a video.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ViewSetError(
            f"{flag} {folder}: no such folder (give a folder holding one entry per view: {_layout(names)})"
        )
    sources: Dict[str, Path] = {}
    missing = []
    for name in names:
        candidates = [folder / name] if (folder / name).is_dir() else []
        candidates += [
            folder / f"{name}{suffix}" for suffix in VIDEO_SUFFIXES if (folder / f"{name}{suffix}").is_file()
        ]
        if len(candidates) > 1:
            raise ViewSetError(
                f"{flag} {folder}: view {name} is there more than once ({', '.join(c.name for c in candidates)}); "
                "keep one"
            )
        if candidates:
            sources[name] = candidates[0]
        else:
            missing.append(name)
    if missing:
        entries = _view_entries(folder)
        shown = ", ".join(entries[:8]) + (", ..." if len(entries) > 8 else "") if entries else "nothing of that kind"
        if not sources:
            raise ViewSetError(
                f"{flag} {folder}: no view named {', '.join(names)} (it holds {shown}); name each view's frame "
                f"folder or video by the view: {_layout(names)}, or pass --views with the names used"
            )
        raise ViewSetError(
            f"{flag} {folder}: lacks the views {', '.join(missing)} (it has {', '.join(sources)}; it holds {shown}); "
            f"every view must be there: {_layout(names)}"
        )
    return sources


def _layout(names: Sequence[str]) -> str:
    first = names[0] if names else view_name(0)
    return f"{first}/0.png, {first}/1.png, ... or {first}.mp4"


def _check_frame_numbers(source: Path, flag: str) -> None:
    """Refuse a frame folder in which two images carry the same frame number (``1.png`` and ``01.png``)."""
    numbers = [frame_number(file) for file in image_files(source)]
    seen = [n for n in numbers if n is not None]
    duplicates = sorted({n for n in seen if seen.count(n) > 1})
    if duplicates:
        raise ViewSetError(
            f"{flag} {source}: several images carry the frame numbers {duplicates}; keep one image per frame"
        )


def read_view_videos(
    folder: Path, names: Sequence[str], flag: str, resolution: int = PROTOCOL_RESOLUTION
) -> ViewVideos:
    """Every view of ``names`` in ``folder`` (see the module docstring), on white, at ``resolution``.

    Raises:
        ViewSetError: see :func:`find_view_sources`; also views of different frame counts.
        ds4d_ns.process.frames.InputError: an unreadable image or video, or frames of different sizes.
    """
    sources = find_view_sources(folder, names, flag)
    videos = []
    for name in names:
        source = sources[name]
        if source.is_dir():
            _check_frame_numbers(source, flag)
        clip = read_clip(source, num_frames=sys.maxsize)
        videos.append(to_protocol_frames(np.stack(clip.images), resolution))
    counts = {name: len(video) for name, video in zip(names, videos)}
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{name}: {count}" for name, count in counts.items())
        raise ViewSetError(f"{flag} {folder}: the views have different frame counts ({listed}); each needs every frame")
    return ViewVideos(tuple(names), np.stack(videos), tuple(str(sources[name]) for name in names))


def check_matching(pred: ViewVideos, gt: ViewVideos, pred_flag: str = "--pred", gt_flag: str = "--gt") -> None:
    """Refuse a prediction that does not have the ground truth's views and frame count.

    Raises:
        ViewSetError: naming both folders (or files) of the first view that differs.
    """
    if pred.names != gt.names:
        raise ViewSetError(f"{pred_flag} has the views {list(pred.names)} but {gt_flag} {list(gt.names)}")
    if pred.num_frames != gt.num_frames:
        raise ViewSetError(
            f"{pred_flag} {pred.sources[0]}: {pred.num_frames} frames, but {gt_flag} {gt.sources[0]} has "
            f"{gt.num_frames}; render one frame per ground-truth frame (the same count in every view)"
        )


# ---------------------------------------------------------------------------------------- datasets
@dataclass
class DatasetEvalViews:
    """A ds4d dataset's eval views: their ground truth and their cameras."""

    ground_truth: ViewVideos
    """Frames of every eval view (on white, at the scoring resolution), times in ``times``."""
    cameras: Cameras
    """Nerfstudio ``Cameras`` ``[V * T]``, view-major (view 0's frames first), at the images' own size."""
    view_indices: Tuple[int, ...]
    """``view_index`` of each eval view."""
    poses: Tuple[Dict[str, float], ...]
    """Azimuth, elevation (degrees), radius and vertical field of view (degrees) of each view, read from
    its first camera (conventions of ``ds4d_ns.camera_layouts``)."""


def camera_pose(c2w: np.ndarray, fy: float, height: float) -> Dict[str, float]:
    """Orbit pose of an OpenGL camera-to-world matrix (the inverse of ``ds4d_ns.camera_layouts.orbit_position``)."""
    x, y, z = (float(v) for v in np.asarray(c2w)[:3, 3])
    radius = math.sqrt(x * x + y * y + z * z)
    return {
        "azimuth_deg": round(math.degrees(math.atan2(x, -y)), 3),
        "elevation_deg": round(math.degrees(math.asin(z / radius)) if radius > 0 else 0.0, 3),
        "radius": round(radius, 4),
        "fovy_deg": round(math.degrees(2.0 * math.atan(0.5 * height / fy)), 3),
    }


def read_dataset_eval_views(data: Path, resolution: int = PROTOCOL_RESOLUTION) -> DatasetEvalViews:
    """The ``eval`` views of a ds4d dataset, read and checked through its dataparser.

    Raises:
        DatasetError: the dataset is invalid (see the dataparser), or has no eval views.
    """
    import torch

    from ds4d_ns.data.dataset_format import ROLE_CODES
    from ds4d_ns.data.images import load_rgba
    from ds4d_ns.dataparsers.ds4d_dataparser import DatasetError, Ds4dDataParserConfig

    outputs = Ds4dDataParserConfig(data=Path(data), load_seed_points=False).setup().get_dataparser_outputs("test")
    cameras = outputs.cameras
    metadata = cameras.metadata or {}
    roles = metadata["role"].view(-1)
    if not bool((roles == ROLE_CODES["eval"]).all()):
        raise DatasetError(
            f"{data}: the dataset has no eval views (frames of role 'eval'), so there is no held-out ground truth to "
            "score; ds4d-synth writes the four Consistent4D views, or score renders with `ds4d-eval videos`"
        )
    view_index = metadata["view_index"].view(-1)
    frame_index = metadata["frame_index"].view(-1)
    masks = outputs.metadata.get("alpha_mask_filenames") or [None] * len(outputs.image_filenames)
    views = sorted(set(view_index.tolist()))
    order, frames, poses = [], [], []
    for view in views:
        rows = torch.nonzero(view_index == view).view(-1)
        rows = rows[torch.argsort(frame_index[rows])]
        order.append(rows)
        images = np.stack([load_rgba(outputs.image_filenames[i], masks[i]) for i in rows.tolist()])
        frames.append(to_protocol_frames(images, resolution))
        first = int(rows[0])
        poses.append(
            camera_pose(cameras.camera_to_worlds[first].numpy(), float(cameras.fy[first]), float(cameras.height[first]))
        )
    rows = torch.cat(order)
    times = tuple(float(t) for t in cameras.times.view(-1)[order[0]].tolist())
    ground_truth = ViewVideos(
        tuple(view_name(v) for v in views),
        np.stack(frames),
        tuple(f"{data} eval view {v}" for v in views),
        times,
    )
    return DatasetEvalViews(ground_truth, cameras[rows], tuple(views), tuple(poses))
