"""Frames of the user's clip: a video file (PyAV) or a folder of images, sampled uniformly.

Everything is checked before any long work: a file PyAV cannot open or decode, a video without a
video stream or without frames, an empty folder, and images of different sizes are errors naming
the file. The user's files are only read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np

from ds4d_ns.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v")


class InputError(UserError):
    """The user's input cannot be used; the message names the file and the problem."""


@dataclass
class Clip:
    """Sampled frames of a clip, all the same size."""

    images: List[np.ndarray]
    """uint8 ``[H, W, 3]`` (RGB) or ``[H, W, 4]`` (RGBA) per frame."""
    names: List[str]
    """Where each frame came from (file name, or video file and frame number), for messages."""
    source_indices: List[int]
    """Index of each sampled frame in the source."""


def sample_indices(count: int, num_frames: int, start: int = 0, end: Optional[int] = None) -> List[int]:
    """``num_frames`` indices spread uniformly over ``[start, end)`` of ``count`` frames (all if fewer)."""
    end = count if end is None else min(end, count)
    if start < 0 or start >= end:
        raise InputError(f"--start {start} / --end {end} select no frames of the {count} available")
    available = end - start
    if available <= num_frames:
        return list(range(start, end))
    return [int(round(v)) for v in np.linspace(start, end - 1, num_frames)]


def read_clip(path: Path, num_frames: int = 30, start: int = 0, end: Optional[int] = None) -> Clip:
    """Frames of a video file or an image folder; ``start``/``end`` are source frame indices."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        return _read_folder(path, num_frames, start, end)
    return _read_video(path, num_frames, start, end)


def _read_folder(folder: Path, num_frames: int, start: int, end: Optional[int]) -> Clip:
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    chosen = sample_indices(len(files), num_frames, start, end)
    images, size = [], None
    for index in chosen:
        file = files[index]
        try:
            with Image.open(file) as pil:
                has_alpha = "A" in pil.getbands() or "transparency" in pil.info  # palette images too
                image = np.asarray(pil.convert("RGBA" if has_alpha else "RGB"))
        except (UnidentifiedImageError, OSError) as err:
            raise InputError(f"{file}: not a readable image ({err})") from err
        if size is None:
            size = image.shape[:2]
        elif image.shape[:2] != size:
            raise InputError(
                f"{file}: {image.shape[1]}x{image.shape[0]} pixels, but {files[chosen[0]].name} is "
                f"{size[1]}x{size[0]}; every frame must have the same size"
            )
        images.append(image)
    return Clip(images, [files[i].name for i in chosen], chosen)


def _read_video(path: Path, num_frames: int, start: int, end: Optional[int]) -> Clip:
    import av

    try:
        # two passes: count the frames, then convert only the sampled ones (a long clip at full
        # resolution would not fit in memory as arrays)
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path}: the file has no video stream")
            count = sum(1 for _ in container.decode(video=0))
        if count == 0:
            raise InputError(f"{path}: the video has no frames")
        chosen = sample_indices(count, num_frames, start, end)
        wanted, frames = set(chosen), {}
        with av.open(str(path)) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if index in wanted:
                    frames[index] = frame.to_ndarray(format="rgb24")
    except InputError:
        raise
    except (av.FFmpegError, ValueError, OSError) as err:  # unreadable file or unsupported codec
        raise InputError(f"{path}: cannot decode this video ({type(err).__name__}: {err})") from err
    return Clip([frames[i] for i in chosen], [f"{path.name} frame {i}" for i in chosen], chosen)
