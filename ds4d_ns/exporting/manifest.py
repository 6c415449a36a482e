"""File names of a splat sequence and its ``manifest.json``.

Frame files are ``frame_<index>.<ext>``, indices from 0, zero-padded to at least four digits
(wider only past 10000 frames) so that sorting the names as text gives frame order. SuperSplat
recognises a sequence when every file it is given matches ``<common prefix><digits>.ply`` and
orders the frames by the number (playcanvas/supersplat ``src/file-handler.ts`` ``isPlySequence``,
``src/sequence.ts`` ``PlyFrameSource``); players that sort names as text need the padding.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

MANIFEST_FORMAT = "ds4d-splat-sequence"
"""``format`` field of ``manifest.json``."""
MANIFEST_VERSION = 1
"""``format_version`` of ``manifest.json``; raised when a field changes meaning or goes away."""


def frame_file_name(index: int, num_frames: int, extension: str) -> str:
    """``frame_0007.ply`` for frame 7 of a sequence of ``num_frames``; wider padding past 10000 frames."""
    if not 0 <= index < num_frames:
        raise ValueError(f"frame index {index} outside a sequence of {num_frames}")
    width = max(4, len(str(num_frames - 1)))
    return f"frame_{index:0{width}d}.{extension}"


def _box(low: np.ndarray, high: np.ndarray) -> Dict[str, List[float]]:
    return {"min": [float(v) for v in low], "max": [float(v) for v in high]}


def sequence_manifest(
    *,
    times: Sequence[float],
    files: Dict[str, List[str]],
    num_gaussians: Sequence[int],
    bounds: Sequence[tuple],
    ply_properties: List[str],
    sh_degree: int,
    source: Dict[str, Any],
    spz_version: Optional[int] = None,
    generator: Optional[Dict[str, str]] = None,
) -> Dict[str, Any]:
    """The content of ``manifest.json`` for one exported sequence.

    Args:
        times: each frame's time in [0, 1] (0 = first training frame, 1 = last).
        files: per format (``"ply"``, ``"spz"``), each frame's path relative to the export folder.
        num_gaussians: Gaussians written in each frame.
        bounds: each frame's ``(min, max)`` box of Gaussian centres.
        ply_properties: the PLY vertex properties, in file order.
        sh_degree: spherical-harmonic degree of the colours.
        source: where the Gaussians came from (run config, checkpoint, step).
        spz_version: the SPZ version written, when SPZ files were.
        generator: the tool and package version that wrote the files.
    """
    num_frames = len(times)
    for name, value in (("files", files.values()), ("num_gaussians", [num_gaussians]), ("bounds", [bounds])):
        if any(len(entry) != num_frames for entry in value):
            raise ValueError(f"{name}: one entry per frame expected ({num_frames} frames)")
    if num_frames:
        low = np.min([np.asarray(box[0]) for box in bounds], axis=0)
        high = np.max([np.asarray(box[1]) for box in bounds], axis=0)
    else:
        low = high = np.zeros(3)
    formats: Dict[str, Any] = {}
    if "ply" in files:
        formats["ply"] = {
            "layout": "3dgs",
            "encoding": "binary_little_endian",
            "element": "vertex",
            "properties": ply_properties,
            "dtype": "float32",
        }
    if "spz" in files:
        formats["spz"] = {"version": spz_version, "coordinates": "as in the PLY (no conversion to RUB)"}
    return {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "generator": generator or {},
        "source": source,
        "conventions": {
            "time": "normalised: 0 is the first training frame, 1 the last",
            "coordinates": "the trained run's world frame",
            "opacity": "logit",
            "scale": "log",
            "rotation": "unit quaternion w, x, y, z",
            "sh_degree": sh_degree,
            "bounds": "axis-aligned box of Gaussian centres",
        },
        "formats": formats,
        "frame_count": num_frames,
        "time_range": [float(min(times)), float(max(times))] if num_frames else None,
        "bounds": _box(low, high),
        "frames": [
            {
                "index": index,
                "time": float(times[index]),
                "num_gaussians": int(num_gaussians[index]),
                "bounds": _box(*bounds[index]),
                **{kind: paths[index] for kind, paths in files.items()},
            }
            for index in range(num_frames)
        ],
    }
