"""One square for the whole clip, the object's motion kept: how the input frames are framed.

Cropping each frame around its own object would cancel the motion (a jumping object would stay
put), so every frame is cut with one square; outside the image it is padded with empty
(transparent) pixels. Two framings (``ds4d-process --input-framing``):

* ``fill``: a square around the union of the foreground over all frames, scaled so that the union
  fills ``fill`` of the side (what ds4d-process gives its own Zero123++ generation);
* ``source``: each source frame as it is, padded to a square, never cropped (what STAG4D's and
  DS4D's code give Zero123++, so views made by them agree with it).
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from ds4d_ns.process.frames import InputError

Box = Tuple[int, int, int, int]
"""Pixel box ``(left, top, right, bottom)``, right/bottom exclusive."""


def foreground_box(mask: np.ndarray, threshold: float = 0.5) -> Box | None:
    """Bounding box of the pixels above ``threshold`` (mask in [0, 1]), or None if there are none."""
    rows = np.flatnonzero((mask > threshold).any(axis=1))
    cols = np.flatnonzero((mask > threshold).any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def union_box(masks: Sequence[np.ndarray], names: Sequence[str], threshold: float = 0.5) -> Box:
    """Union of the foreground boxes of all frames; a frame without foreground is an error naming it."""
    boxes = []
    for mask, name in zip(masks, names):
        box = foreground_box(mask, threshold)
        if box is None:
            raise InputError(f"{name}: no foreground found in this frame (its mask is empty)")
        boxes.append(box)
    return min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)


def square_crop(box: Box, fill: float = 0.85) -> Box:
    """Square box centred on ``box`` whose side is the box's longer side divided by ``fill``."""
    if not 0 < fill <= 1:
        raise InputError(f"--fill must be in (0, 1], got {fill}")
    left, top, right, bottom = box
    side = int(np.ceil(max(right - left, bottom - top) / fill))
    centre_x, centre_y = (left + right) / 2.0, (top + bottom) / 2.0
    x0, y0 = int(round(centre_x - side / 2.0)), int(round(centre_y - side / 2.0))
    return x0, y0, x0 + side, y0 + side


def source_square(width: int, height: int) -> Box:
    """The square around a whole ``width`` x ``height`` frame: its longer side, the shorter one padded evenly."""
    side = max(width, height)
    x0, y0 = (width - side) // 2, (height - side) // 2
    return x0, y0, x0 + side, y0 + side


def reached_fill(box: Box, square: Box) -> float:
    """Share of ``square``'s side that the object in ``box`` reaches, measured from the square's centre.

    For a box centred in the square this is the box's longer side over the square's; an off-centre
    object counts twice its farthest reach from the centre, so a cube of that half-extent around the
    scene origin still holds it.
    """
    left, top, right, bottom = box
    s_left, s_top, s_right, s_bottom = square
    centre_x, centre_y = (s_left + s_right) / 2.0, (s_top + s_bottom) / 2.0
    reach = max(centre_x - left, right - centre_x, centre_y - top, bottom - centre_y)
    return min(1.0, 2.0 * reach / (s_right - s_left))


def crop_rgba(rgba: np.ndarray, crop: Box, resolution: Optional[int] = None) -> np.ndarray:
    """Crop (padding with transparent pixels beyond the image) and resize an RGBA image to a square.

    ``resolution`` None keeps the crop at the source's own resolution (no resampling).
    """
    from PIL import Image

    left, top, right, bottom = crop
    height, width = rgba.shape[:2]
    canvas = np.zeros((bottom - top, right - left, 4), dtype=np.uint8)
    src_x0, src_y0 = max(left, 0), max(top, 0)
    src_x1, src_y1 = min(right, width), min(bottom, height)
    if src_x1 > src_x0 and src_y1 > src_y0:
        canvas[src_y0 - top : src_y1 - top, src_x0 - left : src_x1 - left] = rgba[src_y0:src_y1, src_x0:src_x1]
    if resolution is None or resolution == canvas.shape[0]:
        return canvas
    resized = Image.fromarray(canvas, mode="RGBA").resize((resolution, resolution), Image.Resampling.LANCZOS)
    return np.asarray(resized)


def clip_crop(rgbas: Sequence[np.ndarray], names: Sequence[str], fill: float = 0.85) -> Box:
    """The clip's one square (source pixels) around the union of its foreground."""
    return square_crop(union_box([rgba[..., 3] / 255.0 for rgba in rgbas], names), fill)


def clip_framing(
    rgbas: Sequence[np.ndarray], names: Sequence[str], framing: str, fill: float = 0.85
) -> Tuple[Box, float]:
    """The clip's square (source pixels) for ``framing`` ("fill" or "source"), and the share of its side
    the object fills (``fill`` itself for "fill"; measured with :func:`reached_fill` for "source").

    Both framings check that every frame has foreground (an error naming the first without).
    """
    union = union_box([rgba[..., 3] / 255.0 for rgba in rgbas], names)
    if framing == "fill":
        return square_crop(union, fill), fill
    if framing == "source":
        height, width = rgbas[0].shape[:2]
        square = source_square(width, height)
        return square, reached_fill(union, square)
    raise ValueError(f"unknown framing {framing!r} (fill or source)")


def frame_clip(
    rgbas: Sequence[np.ndarray], names: Sequence[str], resolution: Optional[int], fill: float = 0.85
) -> List[np.ndarray]:
    """Every frame cropped with the clip's one square; ``resolution`` None keeps the source's resolution."""
    crop = clip_crop(rgbas, names, fill)
    return [crop_rgba(rgba, crop, resolution) for rgba in rgbas]
