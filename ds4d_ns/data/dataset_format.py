"""The ds4d dataset vocabulary: one home for what a dataset is made of, used by every writer and reader.

A dataset is a folder with a ``transforms.json`` in Nerfstudio's style. Per frame::

    file_path          RGBA image (or RGB with ``mask_path``), relative to the folder
    mask_path          optional single-channel foreground mask, used as alpha
    transform_matrix   4 x 4 OpenGL camera-to-world matrix
    fl_x fl_y cx cy w h   pinhole intrinsics in pixels
    time               float in [0, 1]
    frame_index        integer index of the video frame this view belongs to
    role               "input" | "pseudo" | "eval"
    view_index         integer index of the camera within its role

Top level: optional ``ply_file_path`` (initial points, xyz + optional uint8 rgb), and, from the
plugin's writers, ``ply_frame_index`` / ``ply_time``: the frame the points were taken on.

Defined here and nowhere else:

* frame time (:func:`frame_time`): frame ``i`` of ``n`` at ``i / (n - 1)``;
* the middle (canonical) frame (:func:`middle_frame`, :func:`canonical_frame`, :func:`middle_time`):
  the frame at position ``n // 2`` in time order. The seed points are sampled on it, the static
  stage fits it, DSFD's reference uses it, and a camera without a time renders it;
* roles (:data:`ROLES`, :func:`decode_roles`): their integer codes in camera metadata, and the one
  default for a camera without a role (``input``: an unknown camera is taken as an observation);
* image and mask paths (:func:`image_path`, :func:`mask_path`) and the view layout (:class:`DatasetView`);
* :func:`write_dataset`, the one writer of ``transforms.json`` (``ds4d-synth``, ``ds4d-process``, tests).

Files are written through the generic atomic writers of :mod:`ds4d_ns.io.writers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Literal, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from ds4d_ns import camera_layouts
from ds4d_ns.io.writers import write_json_atomic

Role = Literal["input", "pseudo", "eval"]
"""What a camera of the dataset is: the video's camera, a generated view, or held-out ground truth."""
ROLES: Tuple[Role, ...] = ("input", "pseudo", "eval")
"""Valid values of a frame's ``role``; their position is the integer code used in camera metadata."""
ROLE_CODES: Dict[Role, int] = {name: code for code, name in enumerate(ROLES)}
MISSING_ROLE: Role = "input"
"""Role of a camera whose metadata has none (cameras made outside the ds4d dataparser)."""
TRAINING_ROLES: Tuple[Role, ...] = ("input", "pseudo")
"""Roles of the training views."""
TRANSFORMS_NAME = "transforms.json"
PLY_NAME = "init.ply"
"""File name of the initial points the plugin's writers produce."""
REQUIRED_FRAME_KEYS: Tuple[str, ...] = (
    "file_path",
    "transform_matrix",
    "fl_x",
    "fl_y",
    "cx",
    "cy",
    "w",
    "h",
    "time",
    "frame_index",
    "role",
    "view_index",
)


# ----------------------------------------------------------------------------- time and the middle frame
def frame_time(frame_index: int, num_frames: int) -> float:
    """Normalised time of a frame: 0 for the first, 1 for the last (0 for a single frame)."""
    return frame_index / (num_frames - 1) if num_frames > 1 else 0.0


def middle_frame(num_frames: int) -> int:
    """Position, in time order, of the middle (canonical) frame of ``num_frames``: ``num_frames // 2``.

    For an even count there are two middle frames; this is the later one (frame 15 of 30).
    """
    if num_frames < 1:
        raise ValueError(f"a clip needs at least one frame, got {num_frames}")
    return num_frames // 2


def middle_time(num_frames: Optional[int]) -> float:
    """Time of the middle frame of a clip of ``num_frames`` frames; 0.5 when the count is unknown."""
    return 0.5 if num_frames is None else frame_time(middle_frame(num_frames), num_frames)


def canonical_frame(time_of_frame: Mapping[int, float]) -> int:
    """The middle frame of a dataset, given the time of each of its frame indices."""
    in_time_order = sorted(time_of_frame, key=lambda frame: (time_of_frame[frame], frame))
    return in_time_order[middle_frame(len(in_time_order))]


# ----------------------------------------------------------------------------- roles
def decode_roles(roles: Optional[Tensor], count: int) -> Int[Tensor, " count"]:
    """Role codes of ``count`` cameras from their metadata (any shape with ``count`` entries, or None).

    The one decoder of the camera metadata's ``role``: cameras without one are :data:`MISSING_ROLE`.
    """
    if roles is None:
        return torch.full((count,), ROLE_CODES[MISSING_ROLE], dtype=torch.long)
    codes = roles.reshape(-1).long()
    if codes.numel() != count:
        raise ValueError(f"{codes.numel()} role codes for {count} cameras")
    return codes


def role_name(code: int) -> Role:
    """The role of an integer code."""
    return ROLES[int(code)]


# ----------------------------------------------------------------------------- layout and paths
def image_path(role: str, view_index: int, frame_index: int) -> str:
    """Image location relative to the dataset folder."""
    return f"images/{role}_{view_index:02d}/frame_{frame_index:04d}.png"


def mask_path(role: str, view_index: int, frame_index: int) -> str:
    """Mask location relative to the dataset folder (datasets with RGB images and separate masks)."""
    return f"masks/{role}_{view_index:02d}/frame_{frame_index:04d}.png"


@dataclass(frozen=True)
class DatasetView:
    """One camera of the dataset layout."""

    role: Role
    """``input``, ``pseudo`` or ``eval``."""
    view_index: int
    """Index of the camera within its role."""
    orbit: camera_layouts.OrbitView
    """Where the camera is."""

    def image_path(self, frame_index: int) -> str:
        """This view's image of a frame, relative to the dataset folder."""
        return image_path(self.role, self.view_index, frame_index)

    def mask_path(self, frame_index: int) -> str:
        """This view's mask of a frame, relative to the dataset folder."""
        return mask_path(self.role, self.view_index, frame_index)


def view_layout(
    pseudo: Sequence[camera_layouts.OrbitView] = (), evaluation: Sequence[camera_layouts.OrbitView] = ()
) -> Tuple[DatasetView, ...]:
    """The views of every frame, in ``transforms.json`` order: the input view, the pseudo views, the eval views."""
    layout: List[DatasetView] = [DatasetView("input", 0, camera_layouts.input_view())]
    layout += [DatasetView("pseudo", i, view) for i, view in enumerate(pseudo)]
    layout += [DatasetView("eval", i, view) for i, view in enumerate(evaluation)]
    return tuple(layout)


# ----------------------------------------------------------------------------- records and the writer
def frame_record(
    file_path: str,
    c2w: np.ndarray,
    focal: Tuple[float, float],
    principal_point: Tuple[float, float],
    size: Tuple[int, int],
    time: float,
    frame_index: int,
    role: Role,
    view_index: int,
    mask_path: Optional[str] = None,
) -> Dict[str, Any]:
    """One entry of ``frames`` in ``transforms.json``.

    Args:
        c2w: OpenGL camera-to-world matrix, ``[3, 4]`` or ``[4, 4]``.
        size: image (width, height) in pixels.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    matrix = np.eye(4)
    matrix[:3, :4] = np.asarray(c2w, dtype=np.float64)[:3, :4]
    record: Dict[str, Any] = {
        "file_path": file_path,
        "transform_matrix": matrix.tolist(),
        "fl_x": float(focal[0]),
        "fl_y": float(focal[1]),
        "cx": float(principal_point[0]),
        "cy": float(principal_point[1]),
        "w": int(size[0]),
        "h": int(size[1]),
        "time": float(time),
        "frame_index": int(frame_index),
        "role": role,
        "view_index": int(view_index),
    }
    if mask_path is not None:
        record["mask_path"] = mask_path
    return record


def view_record(view: DatasetView, frame_index: int, num_frames: int, resolution: int, masks: bool = False):
    """The ``transforms.json`` entry of one view of one frame (square images of ``resolution`` pixels)."""
    focal = camera_layouts.focal_from_fov(view.orbit.fov_deg, resolution)
    return frame_record(
        view.image_path(frame_index),
        camera_layouts.orbit_c2w(view.orbit).numpy(),
        (focal, focal),
        (resolution / 2.0, resolution / 2.0),
        (resolution, resolution),
        frame_time(frame_index, num_frames),
        frame_index,
        view.role,
        view.view_index,
        mask_path=view.mask_path(frame_index) if masks else None,
    )


def write_dataset(
    out: Path,
    layout: Sequence[DatasetView],
    num_frames: int,
    resolution: int,
    initial_points: bool,
    masks: bool = False,
    extra: Optional[Mapping[str, Any]] = None,
) -> Path:
    """Write the ``transforms.json`` of a dataset whose files lie at this module's paths; return its path.

    Args:
        out: dataset folder.
        layout: the views of every frame (:func:`view_layout`).
        num_frames: frames ``0 .. num_frames - 1`` of every view, at :func:`frame_time`.
        resolution: side of the square images in pixels.
        initial_points: whether ``PLY_NAME`` holds initial points (sampled on the middle frame).
        masks: whether each image has a separate mask at :func:`mask_path`.
        extra: further top-level fields (the writer's provenance), written first.
    """
    content: Dict[str, Any] = dict(extra or {})
    if initial_points:
        ply_frame = middle_frame(num_frames)
        content.update(ply_file_path=PLY_NAME, ply_frame_index=ply_frame, ply_time=frame_time(ply_frame, num_frames))
    content["frames"] = [
        view_record(view, frame, num_frames, resolution, masks) for frame in range(num_frames) for view in layout
    ]
    path = Path(out) / TRANSFORMS_NAME
    write_json_atomic(path, content)
    return path
