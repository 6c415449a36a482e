"""Foreground masks of the input frames, and matting of generated (or imported RGB) views.

Input frames: their own alpha channel when it is not fully opaque; else a folder of masks
(``--masks``, one per source frame); else ``--matting white`` (a key on a plain background,
``ds4d_ns.process.key_matte``) or ``--matting rembg`` (an optional extra whose model downloads on
first use). Masks are matched to frames by the number in their names when frames and masks are
both numbered (``0.png`` <- ``mask_0.png``), else by position in natural order.

Generated views: ``rembg`` when chosen, else a key on Zero123++'s uniform grey background (good for
objects that are not themselves mid-grey; ``rembg`` is the robust choice).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, List, Literal, Optional, Sequence, Tuple

import numpy as np
from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape

from ds4d_ns.data.images import luminance
from ds4d_ns.process.frames import Clip, InputError, describe_order, frame_number, image_files, read_image
from ds4d_ns.process.key_matte import Colour, key_rgba

Matting = Literal["none", "white", "rembg"]
REMBG_MODEL = "u2net"
"""rembg's default model; rembg downloads it from its GitHub releases on first use."""


def _rembg_model_path() -> Path:
    # where rembg keeps its models (its U2NET_HOME variable, else ~/.u2net)
    home = os.environ.get("U2NET_HOME", os.path.join(os.environ.get("XDG_DATA_HOME", "~"), ".u2net"))
    return Path(home).expanduser() / f"{REMBG_MODEL}.onnx"


def rembg_session():
    """rembg and a session of its model, or an InputError naming the model and the alternatives.

    Called before any long work: offline, rembg fails when it tries to download its model.
    """
    alternatives = "use --matting white for a plain white background (--background-colour for another), or --masks DIR"
    try:
        import rembg
    except ImportError as err:
        raise InputError(
            "--matting rembg needs the optional rembg package: pip install rembg (its model "
            f"'{REMBG_MODEL}' downloads on first use); or {alternatives}"
        ) from err
    try:
        return rembg, rembg.new_session(REMBG_MODEL)
    except Exception as err:  # a download failure surfaces as whatever the HTTP stack raises
        raise InputError(
            f"--matting rembg: its model '{REMBG_MODEL}' could not be loaded ({type(err).__name__}: {err}). "
            f"rembg downloads it once into its model folder (usually {_rembg_model_path()}; internet needed); "
            f"or {alternatives}"
        ) from err


def match_masks(masks_dir: Path, clip: Clip, source: Path) -> List[Path]:
    """The mask file of each sampled frame (see the module docstring for the matching)."""
    masks_dir = Path(masks_dir)
    if not masks_dir.is_dir():
        raise InputError(f"--masks {masks_dir}: no such folder")
    files = image_files(masks_dir)
    if not files:
        raise InputError(f"--masks {masks_dir}: no images in this folder")
    frame_numbers = [frame_number(f) for f in clip.files] if source.is_dir() else []
    by_number = _numbered(files)
    if frame_numbers and None not in frame_numbers and by_number is not None:
        CONSOLE.log(f"Masks: {escape(str(masks_dir))}: matched to the frames by the number in their names")
        chosen = []
        for frame, number in zip(clip.files, frame_numbers):
            if number not in by_number:
                raise InputError(
                    f"--masks {masks_dir}: no mask numbered {number} for frame {frame.name} (masks are numbered "
                    f"{min(by_number)}..{max(by_number)}); name each mask with its frame's number"
                )
            chosen.append(by_number[number])
        return chosen
    if len(files) != clip.source_count:
        raise InputError(
            f"--masks {masks_dir}: {len(files)} masks, but {source} has {clip.source_count} frames; give one mask "
            "per source frame (matched in natural order, or by the number in the names of numbered frames)"
        )
    CONSOLE.log(f"Masks: {escape(str(masks_dir))}: {escape(describe_order(files))}, matched to the frames by position")
    return [files[index] for index in clip.source_indices]


def _numbered(files: Sequence[Path]) -> Optional[Dict[int, Path]]:
    """Files by their number, or None when a file has no number or two share one."""
    numbers = [frame_number(f) for f in files]
    if None in numbers or len(set(numbers)) != len(numbers):
        return None
    return {number: file for number, file in zip(numbers, files) if number is not None}


def _read_mask(file: Path, size: Tuple[int, int]) -> np.ndarray:
    decoded = read_image(file)
    # A mask saved with an alpha channel carries the mask in its alpha (its colour is then usually
    # constant); any other mask, a transparency key included, is its luminance (16-bit grey scaled).
    mask = decoded.rgba[..., 3] if decoded.has_alpha_channel else luminance(decoded.rgba)
    if mask.shape != size:
        height, width = size
        raise InputError(f"{file}: mask is {mask.shape[1]}x{mask.shape[0]}, its frame {width}x{height}")
    return mask


def input_rgba(
    clip: Clip,
    source: Path,
    masks_dir: Optional[Path],
    matting: Matting,
    background_colour: Colour = (255, 255, 255),
    key_tolerance: float = 20.0,
) -> Tuple[List[np.ndarray], List[Path]]:
    """RGBA frames (alpha from the images, a masks folder, a background key or rembg) and the mask files read."""
    has_alpha = all(image.shape[-1] == 4 for image in clip.images)
    if has_alpha and masks_dir is None and any((image[..., 3] < 255).any() for image in clip.images):
        CONSOLE.log("Masks: the frames' own alpha channel")
        return list(clip.images), []
    if has_alpha and masks_dir is None:
        CONSOLE.log("[yellow]The frames' alpha channel is fully opaque: it is ignored")
    rgb = [image[..., :3] for image in clip.images]
    if masks_dir is not None:
        files = match_masks(masks_dir, clip, source)
        masks = [_read_mask(file, (image.shape[0], image.shape[1])) for file, image in zip(files, rgb)]
        return [np.concatenate([image, mask[..., None]], axis=-1) for image, mask in zip(rgb, masks)], files
    if matting == "white":
        CONSOLE.log(f"Masks: keyed on the background colour {escape(str(background_colour))} (--matting white)")
        return [key_rgba(image, background_colour, key_tolerance) for image in rgb], []
    if matting == "rembg":
        rembg, session = rembg_session()
        return [np.asarray(rembg.remove(image, session=session)) for image in rgb], []
    raise InputError(
        f"{source}: the frames have no alpha channel; give masks with --masks DIR, use --matting white for an "
        "object on a plain white background (--background-colour R G B for another colour), or --matting rembg"
    )


def grey_key_alpha(rgb: np.ndarray, grey: float = 0.5, low: float = 0.03, high: float = 0.09) -> np.ndarray:
    """Alpha in [0, 1] from the distance of each pixel (RGB in [0, 1]) to a uniform grey background."""
    distance = np.abs(rgb - grey).max(axis=-1)
    return np.clip((distance - low) / (high - low), 0.0, 1.0)


ViewMatting = Callable[[np.ndarray], np.ndarray]
"""Alpha for a generated view: RGB in [0, 1] to RGBA uint8 (:class:`GeneratedViewMatting`, or a stand-in)."""


class GeneratedViewMatting:
    """Alpha for generated views: rembg when chosen, else the grey key."""

    def __init__(self, matting: Matting) -> None:
        self.rembg = rembg_session() if matting == "rembg" else None

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """RGBA uint8 of an RGB view in [0, 1]."""
        rgb8 = (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)
        if self.rembg is not None:
            module, session = self.rembg
            return np.asarray(module.remove(rgb8, session=session))
        alpha = (grey_key_alpha(rgb) * 255).round().astype(np.uint8)
        return np.concatenate([rgb8, alpha[..., None]], axis=-1)
