"""Foreground masks of the input frames, and matting of generated views.

Input frames: their own alpha channel when they have one; else a folder of masks (``--masks``,
one per source frame, sorted by name); else ``rembg`` (an optional extra whose model downloads on
first use). Generated views: ``rembg`` when chosen, else a key on Zero123++'s uniform grey
background (good for objects that are not themselves mid-grey; ``rembg`` is the robust choice).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Literal, Optional

import numpy as np

from ds4d_ns.process.frames import IMAGE_SUFFIXES, Clip, InputError

Matting = Literal["none", "rembg"]


def _rembg_session():
    try:
        import rembg
    except ImportError as err:
        raise InputError(
            "--matting rembg needs the optional rembg package: pip install rembg (its model "
            "downloads on first use), or give masks with --masks DIR"
        ) from err
    return rembg, rembg.new_session()


def input_rgba(clip: Clip, source: Path, masks_dir: Optional[Path], matting: Matting) -> List[np.ndarray]:
    """RGBA frames: alpha from the images, a masks folder, or rembg (checked before long work)."""
    if all(image.shape[-1] == 4 for image in clip.images) and masks_dir is None:
        return list(clip.images)
    rgb = [image[..., :3] for image in clip.images]
    if masks_dir is not None:
        files = sorted(p for p in Path(masks_dir).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if len(files) <= max(clip.source_indices):
            raise InputError(
                f"{masks_dir}: {len(files)} masks, but frame {max(clip.source_indices)} of {source} needs one"
            )
        from PIL import Image

        frames = []
        for image, index in zip(rgb, clip.source_indices):
            with Image.open(files[index]) as pil:
                mask = np.asarray(pil.convert("L"))
            if mask.shape != image.shape[:2]:
                height, width = image.shape[:2]
                raise InputError(f"{files[index]}: mask is {mask.shape[1]}x{mask.shape[0]}, its frame {width}x{height}")
            frames.append(np.concatenate([image, mask[..., None]], axis=-1))
        return frames
    if matting == "rembg":
        rembg, session = _rembg_session()
        return [np.asarray(rembg.remove(image, session=session)) for image in rgb]
    raise InputError(f"{source}: the frames have no alpha channel; give masks with --masks DIR or use --matting rembg")


def grey_key_alpha(rgb: np.ndarray, grey: float = 0.5, low: float = 0.03, high: float = 0.09) -> np.ndarray:
    """Alpha in [0, 1] from the distance of each pixel (RGB in [0, 1]) to a uniform grey background."""
    distance = np.abs(rgb - grey).max(axis=-1)
    return np.clip((distance - low) / (high - low), 0.0, 1.0)


class GeneratedViewMatting:
    """Alpha for generated views: rembg when chosen, else the grey key."""

    def __init__(self, matting: Matting) -> None:
        self.rembg = _rembg_session() if matting == "rembg" else None

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """RGBA uint8 of an RGB view in [0, 1]."""
        rgb8 = (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)
        if self.rembg is not None:
            module, session = self.rembg
            return np.asarray(module.remove(rgb8, session=session))
        alpha = (grey_key_alpha(rgb) * 255).round().astype(np.uint8)
        return np.concatenate([rgb8, alpha[..., None]], axis=-1)
