"""Matte of an object filmed (or rendered) on a plain background of known colour (``--matting white``).

L4GM's and SV4D's example videos are RGB objects on white. The matte is a colour key with clean-up:

1. The distance of each pixel to the background colour (the largest difference over R, G, B, in
   0..255) gives a soft alpha: 0 up to ``0.4 * tolerance``, 1 from ``1.6 * tolerance``, linear
   between. Video compression leaves the background a few levels off its colour (measured on
   L4GM's clips: almost all background pixels within 8 of white), which the lower end absorbs.
2. Specks: connected foreground regions smaller than a few pixels (compression noise) are dropped.
3. Holes: regions enclosed by the object are filled, because an object's own white or pale parts
   (a robot's cream face, the highlights in a frog's eyes) fall below the key. Enclosed regions
   that are the background colour itself (median distance at most ``0.15 * tolerance``) and not
   tiny are kept as background: a gap seen through the object (between an arm and the body).
   Measured on L4GM's clips at 512 px: eye highlights have a median distance of 4 to 8 (50 to 76
   px), see-through gaps 0 to 5 (blurred by compression), so small or blurred gaps are filled too.
4. Soft edge: alpha is 1 inside the filled object (eroded by ``edge`` pixels), the soft key on its
   border, and 0 further out.

Where this guesses wrong (an object part of exactly the background colour touching the outline or
a gap, a small see-through gap filled), give ``--masks``.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
from jaxtyping import Float, UInt8

Colour = Tuple[int, int, int]


def background_distance(rgb: UInt8[np.ndarray, "h w 3"], colour: Colour) -> Float[np.ndarray, "h w"]:
    """Largest per-channel difference (0..255) between each pixel and the background colour."""
    return np.abs(rgb.astype(np.int16) - np.asarray(colour, dtype=np.int16)).max(axis=-1).astype(np.float32)


def key_alpha(
    rgb: UInt8[np.ndarray, "h w 3"],
    colour: Colour = (255, 255, 255),
    tolerance: float = 20.0,
    edge: int = 1,
) -> Float[np.ndarray, "h w"]:
    """Alpha in [0, 1] of an object on a plain ``colour`` background (see the module docstring)."""
    from scipy import ndimage

    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"key_alpha needs an RGB image [h, w, 3], got shape {rgb.shape}")
    distance = background_distance(rgb, colour)
    low, high = 0.4 * tolerance, 1.6 * tolerance
    soft = np.clip((distance - low) / (high - low), 0.0, 1.0)
    core = soft >= 0.5
    area = core.size
    # specks: compression noise leaves regions of a few pixels; real parts measured >= 10 px at 512^2
    labels, count = ndimage.label(core)
    if count:
        sizes = ndimage.sum_labels(core, labels, np.arange(1, count + 1))
        keep = np.concatenate([[False], sizes >= max(8.0, 3e-5 * area)])
        core = keep[labels]
    solid = ndimage.binary_fill_holes(core)
    holes, hole_count = ndimage.label(solid & ~core)
    if hole_count:
        index = np.arange(1, hole_count + 1)
        hole_sizes = ndimage.sum_labels(np.ones_like(distance), holes, index)
        hole_medians = ndimage.median(distance, holes, index)
        see_through = (hole_medians <= 0.15 * tolerance) & (hole_sizes >= max(16.0, 6e-5 * area))
        solid &= ~np.concatenate([[False], see_through])[holes]
    interior = ndimage.binary_erosion(solid, iterations=edge) if edge > 0 else solid
    near = ndimage.binary_dilation(solid, iterations=edge + 1)
    return np.where(interior, 1.0, np.where(near, soft, 0.0)).astype(np.float32)


def key_rgba(
    rgb: UInt8[np.ndarray, "h w 3"], colour: Colour = (255, 255, 255), tolerance: float = 20.0
) -> UInt8[np.ndarray, "h w 4"]:
    """RGBA uint8 of an object on a plain background: the image with :func:`key_alpha` as alpha."""
    alpha = (key_alpha(rgb, colour, tolerance) * 255.0).round().astype(np.uint8)
    return np.concatenate([rgb, alpha[..., None]], axis=-1)
