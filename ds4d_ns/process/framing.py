"""One crop for the whole clip: the object recentred and rescaled, its motion kept.

Cropping each frame around its own object would cancel the motion (a jumping object would stay
put). The crop is a square around the union of the foreground over all frames, scaled so that the
union fills ``fill`` of the side, and applied to every frame; outside the image it is padded with
empty (transparent) pixels.
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


def frame_clip(
    rgbas: Sequence[np.ndarray], names: Sequence[str], resolution: Optional[int], fill: float = 0.85
) -> List[np.ndarray]:
    """Every frame cropped with the clip's one square; ``resolution`` None keeps the source's resolution."""
    crop = clip_crop(rgbas, names, fill)
    return [crop_rgba(rgba, crop, resolution) for rgba in rgbas]
