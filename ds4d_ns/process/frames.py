"""Frames of the user's clip: a video file (PyAV) or a folder of images, sampled uniformly.

Everything is checked before any long work: a file PyAV cannot open or decode, a video without a
video stream or without frames, an empty folder, and images of different sizes are errors naming
the file. The user's files are only read.

Frame names are sorted in natural order (digit runs compare as numbers), so Consistent4D's
``0.png .. 31.png`` (also STAG4D's and Efficient4D's convention) is read 0, 1, 2, ..., not
0, 1, 10, 11, .... A video whose stream has an alpha channel (PNG or QuickTime RLE in MOV, ProRes
4444, VP8/VP9 WebM with alpha) is decoded as RGBA.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape

from ds4d_ns.data.images import DecodedImage, ImageReadError, decode_image
from ds4d_ns.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v")
# FFmpeg's native VP8/VP9 decoders drop the alpha plane that WebM stores beside each frame
# (matroska "BlockAdditional"); libvpx's decoders read it. The stream says so with alpha_mode=1.
_ALPHA_DECODERS = {"vp9": "libvpx-vp9", "vp8": "libvpx"}


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
    """Index of each sampled frame in the source (natural order of the folder, or decoding order)."""
    source_count: int = 0
    """Number of frames in the whole source (before sampling)."""
    files: Tuple[Path, ...] = ()
    """The files read: the sampled images of a folder, or the video file."""


def natural_key(name: str) -> Tuple[Tuple[int, Union[int, str]], ...]:
    """Sort key comparing digit runs as numbers (``2.png`` < ``10.png``), other text case-insensitively."""
    parts = re.split(r"(\d+)", name)
    # (kind, value) pairs: a number and a text never meet in one comparison, and ties stay stable
    return tuple((0, int(part)) if part.isdigit() else (1, part.casefold()) for part in parts if part) + ((2, name),)


def natural_sorted(paths: Sequence[Path]) -> List[Path]:
    """``paths`` in natural order of their names."""
    return sorted(paths, key=lambda path: natural_key(path.name))


def frame_number(path: Path) -> Optional[int]:
    """The last digit run of a file's stem (``frame_0012.png`` -> 12), or None without one."""
    runs = re.findall(r"\d+", path.stem)
    return int(runs[-1]) if runs else None


def describe_order(files: Sequence[Path]) -> str:
    """How a list of files was ordered, with its first and last names, for the log."""
    shown = [f.name for f in files[:3]] + (["..."] if len(files) > 4 else []) + [f.name for f in files[3:][-1:]]
    numbered = any(frame_number(f) is not None for f in files)
    order = "natural order (digit runs compare as numbers)" if numbered else "name order"
    return f"{len(files)} images in {order}: {', '.join(shown)}"


def image_files(folder: Path) -> List[Path]:
    """The images of a folder (by suffix, hidden files skipped) in natural order."""
    return natural_sorted(
        [p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")]
    )


def sample_indices(count: int, num_frames: int, start: int = 0, end: Optional[int] = None) -> List[int]:
    """``num_frames`` indices spread uniformly over ``[start, end)`` of ``count`` frames (all if fewer)."""
    end = count if end is None else min(end, count)
    if start < 0 or start >= end:
        raise InputError(f"--start {start} / --end {end} select no frames of the {count} available")
    available = end - start
    if available <= num_frames:
        return list(range(start, end))
    return [int(round(v)) for v in np.linspace(start, end - 1, num_frames)]


def read_image(file: Path) -> DecodedImage:
    """One of the user's images (a frame, a mask, a pseudo view), decoded in full into 8-bit RGBA.

    Every reader of the user's images goes through here, so every PIL mode means the same picture
    to each of them (``ds4d_ns.data.images``): PIL's own ``convert("RGB")`` would clip 16-bit grey
    to 0 or 255.

    Raises:
        InputError: the file is not a readable image; the decoder's message, naming the file.
    """
    try:
        return decode_image(file)
    except ImageReadError as err:
        raise InputError(str(err)) from err


def read_clip(path: Path, num_frames: int = 30, start: int = 0, end: Optional[int] = None) -> Clip:
    """Frames of a video file or an image folder; ``start``/``end`` are source frame indices."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        return _read_folder(path, num_frames, start, end)
    return _read_video(path, num_frames, start, end)


def _read_folder(folder: Path, num_frames: int, start: int, end: Optional[int]) -> Clip:
    files = image_files(folder)
    if not files:
        raise InputError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    CONSOLE.log(f"Frames: {escape(str(folder))}: {escape(describe_order(files))}")
    chosen = sample_indices(len(files), num_frames, start, end)
    images, size = [], None
    for index in chosen:
        file = files[index]
        image = read_image(file).rgb_or_rgba  # RGBA for an alpha channel or a transparency key
        if size is None:
            size = image.shape[:2]
        elif image.shape[:2] != size:
            raise InputError(
                f"{file}: {image.shape[1]}x{image.shape[0]} pixels, but {files[chosen[0]].name} is "
                f"{size[1]}x{size[0]}; every frame must have the same size"
            )
        images.append(image)
    if any(image.shape[-1] == 4 for image in images):
        # a folder mixing transparent and opaque files (one PNG saved with a transparency key among RGB
        # ones): one channel layout for the clip, the opaque frames fully opaque
        images = [_opaque_rgba(image) if image.shape[-1] == 3 else image for image in images]
    return Clip(images, [files[i].name for i in chosen], chosen, len(files), tuple(files[i] for i in chosen))


def _opaque_rgba(rgb: np.ndarray) -> np.ndarray:
    return np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, dtype=np.uint8)], axis=-1)


def _has_alpha(video_format) -> bool:
    return any(component.is_alpha for component in video_format.components)


def _decode(container, stream):
    """Decoded frames of ``stream``, through libvpx when a VP8/VP9 stream carries alpha."""
    import av

    decoder = _ALPHA_DECODERS.get(stream.codec_context.name)
    if decoder is None or stream.metadata.get("alpha_mode") != "1" or decoder not in av.codecs_available:
        yield from container.decode(stream)
        return
    context = av.CodecContext.create(decoder, "r")
    context.width, context.height = stream.codec_context.width, stream.codec_context.height
    for packet in container.demux(stream):
        yield from context.decode(packet)  # the last, empty packet flushes the decoder


def _read_video(path: Path, num_frames: int, start: int, end: Optional[int]) -> Clip:
    import av

    try:
        # two passes: count the frames, then convert only the sampled ones (a long clip at full
        # resolution would not fit in memory as arrays)
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path}: the file has no video stream")
            count, alpha = 0, False
            for frame in _decode(container, container.streams.video[0]):
                if count == 0:
                    alpha = _has_alpha(frame.format)
                count += 1
        if count == 0:
            raise InputError(f"{path}: the video has no frames")
        chosen = sample_indices(count, num_frames, start, end)
        wanted, frames = set(chosen), {}
        with av.open(str(path)) as container:
            for index, frame in enumerate(_decode(container, container.streams.video[0])):
                if index in wanted:
                    frames[index] = frame.to_ndarray(format="rgba" if alpha else "rgb24")
    except InputError:
        raise
    except (av.FFmpegError, ValueError, OSError) as err:  # unreadable file or unsupported codec
        raise InputError(f"{path}: cannot decode this video ({type(err).__name__}: {err})") from err
    CONSOLE.log(f"Frames: {escape(str(path))}: {count} frames in decoding order{', with alpha' if alpha else ''}")
    return Clip([frames[i] for i in chosen], [f"{path.name} frame {i}" for i in chosen], chosen, count, (path,))
