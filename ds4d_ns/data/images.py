"""Decoding images: every file fully checked, every PIL mode turned into 8-bit RGBA.

This is the project's one decoder of the images a user gives it. The dataparser decodes each image
and mask once at set-up, and the training datasets read them again through the same function, so what
was accepted is exactly what is trained on; ``ds4d-process`` reads its input frames, masks and
imported pseudo views, and ``ds4d-eval videos`` its frame folders, through :func:`decode_image` too
(``ds4d_ns.process.frames.read_image``), so that a 16-bit file means the same picture everywhere:

- A file is verified (PNG chunk checksums, which a plain decode skips) and then decoded in full
  (a broken deflate stream or a truncated file only shows there). A header declaring more pixels
  than PIL's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``) is refused before decoding.
  Every failure is an :class:`ImageReadError` naming the file.
- Modes PIL converts correctly itself (1, L, LA, P with or without transparency, PA, RGB, RGBX,
  RGBa, CMYK, YCbCr, LAB, HSV) go through ``convert("RGBA")``. Those it would clip are scaled
  here: 16-bit grey (``I;16*``, and ``I``, which PIL uses for 16-bit PNG/PGM/TIFF data) maps
  0..65535 to 0..255; float grey (``F``) maps 0..1 to 0..255 (the usual convention of float images).

Nerfstudio's own reader (``np.array(image, dtype="uint8")``) wraps 16-bit values modulo 256,
turning most 16-bit images black, and rejects two-channel (LA) arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
from jaxtyping import UInt8

from ds4d_ns.errors import UserError

ALPHA_MODES = frozenset({"RGBA", "LA", "La", "RGBa", "PA"})
"""PIL modes that carry an alpha channel (a palette or grey image may instead carry a transparency key)."""
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
"""Integer grey modes read as 16-bit data (0..65535)."""


class ImageReadError(UserError):
    """A dataset image or mask cannot be decoded; the message names the file."""


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image as 8-bit RGBA, and whether the file itself had transparency."""

    rgba: UInt8[np.ndarray, "h w 4"]
    has_alpha: bool
    mode: str
    """The file's PIL mode (for messages)."""

    @property
    def size(self) -> Tuple[int, int]:
        """(width, height) in pixels, as PIL reports it."""
        return self.rgba.shape[1], self.rgba.shape[0]

    @property
    def has_alpha_channel(self) -> bool:
        """Whether the file has an alpha channel (not only a transparency key)."""
        return self.mode in ALPHA_MODES

    @property
    def rgb_or_rgba(self) -> UInt8[np.ndarray, "h w c"]:
        """RGBA when the file has transparency, else RGB (its alpha would be all 255)."""
        return self.rgba if self.has_alpha else np.ascontiguousarray(self.rgba[..., :3])


def scale_to_uint8(values: np.ndarray, full_scale: float) -> UInt8[np.ndarray, "..."]:
    """Map ``0..full_scale`` linearly onto ``0..255`` (rounded, clipped), e.g. 65535 -> 255."""
    scaled = np.clip(values.astype(np.float64), 0.0, full_scale) * (255.0 / full_scale)
    return np.rint(scaled).astype(np.uint8)


def rgba_from_pil(image) -> UInt8[np.ndarray, "h w 4"]:
    """8-bit RGBA of a loaded PIL image of any mode PIL reads from files.

    Raises:
        ValueError: a mode no conversion is known for, or a float image with NaN or infinity.
    """
    mode = image.mode
    if mode in SIXTEEN_BIT_MODES or mode == "F":
        values = np.asarray(image)
        if mode == "F":
            if not np.isfinite(values).all():
                raise ValueError("the float image holds NaN or infinity")
            grey = scale_to_uint8(values, 1.0)
        else:
            grey = scale_to_uint8(values, 65535.0)
        alpha = np.full(grey.shape, 255, dtype=np.uint8)
        key = image.info.get("transparency")
        if isinstance(key, int):  # a PNG tRNS grey value marks fully transparent pixels
            alpha[values == key] = 0
        return np.stack([grey, grey, grey, alpha], axis=-1)
    try:
        return np.asarray(image.convert("RGBA"), dtype=np.uint8)
    except ValueError as err:
        raise ValueError(f"PIL mode {mode!r} cannot be converted to RGBA ({err})") from err


def image_has_alpha(image) -> bool:
    """Whether a PIL image carries transparency: an alpha channel or a transparency key."""
    return image.mode in ALPHA_MODES or "transparency" in image.info


def _check_pixel_limit(path: Path, size: Tuple[int, int]) -> None:
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and size[0] * size[1] > limit:
        raise ImageReadError(
            f"{path}: the image declares {size[0]}x{size[1]} pixels, over PIL's decompression-bomb limit of "
            f"{limit} pixels; resize it"
        )


def decode_image(path: Path) -> DecodedImage:
    """Verify and fully decode an image file into 8-bit RGBA.

    Raises:
        ImageReadError: the file is missing, is not an image, is corrupt or truncated, is larger
            than PIL's decompression-bomb limit, or has a mode that cannot be converted.
    """
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as image:
            _check_pixel_limit(path, image.size)
            image.verify()  # PNG chunk checksums: a plain decode does not look at them
        with Image.open(path) as image:
            image.load()  # the whole pixel stream: broken compression and truncation show only here
            has_alpha = image_has_alpha(image)
            mode = image.mode
            try:
                rgba = rgba_from_pil(image)
            except ValueError as err:
                raise ImageReadError(f"{path}: cannot be read as an image ({err})") from err
    except ImageReadError:
        raise
    except Exception as err:  # noqa: BLE001 -- PIL's decoders raise many types on corrupt input
        # (OSError, SyntaxError, ValueError, EOFError, DecompressionBombError, struct.error, ...);
        # for a user's file every one of them means the same thing.
        raise ImageReadError(f"{path}: cannot be read as an image ({type(err).__name__}: {err})") from err
    return DecodedImage(rgba=rgba, has_alpha=has_alpha, mode=mode)


def luminance(rgba: UInt8[np.ndarray, "h w 4"]) -> UInt8[np.ndarray, "h w"]:
    """ITU-R 601 luma of the RGB channels, as PIL's ``convert("L")`` computes it (for masks)."""
    rgb = rgba[..., :3].astype(np.float64)
    return np.rint(rgb @ np.array([0.299, 0.587, 0.114])).clip(0, 255).astype(np.uint8)


def load_rgba(
    image_path: Path, mask_path: Optional[Path] = None, scale_factor: float = 1.0
) -> UInt8[np.ndarray, "h w 4"]:
    """A dataset image as 8-bit RGBA, its alpha replaced by the mask (luminance) when there is one.

    ``scale_factor`` resizes the result (bilinear, on premultiplied colour, as PIL resizes RGBA), to
    the size nerfstudio's datasets compute: ``int(side * scale_factor)``.
    """
    from PIL import Image

    rgba = decode_image(image_path).rgba
    if mask_path is not None:
        mask = luminance(decode_image(mask_path).rgba)
        if mask.shape != rgba.shape[:2]:
            resized = Image.fromarray(mask).resize((rgba.shape[1], rgba.shape[0]), resample=Image.Resampling.BILINEAR)
            mask = np.asarray(resized, dtype=np.uint8)
        rgba = np.concatenate([rgba[..., :3], mask[..., None]], axis=-1)
    if scale_factor != 1.0:
        height, width = rgba.shape[:2]
        size = (int(width * scale_factor), int(height * scale_factor))
        rgba = np.asarray(Image.fromarray(rgba).resize(size, resample=Image.Resampling.BILINEAR))
    return np.array(rgba, dtype=np.uint8, order="C")  # a writable copy: torch.from_numpy warns otherwise
