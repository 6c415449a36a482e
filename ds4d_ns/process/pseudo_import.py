"""Pseudo views made elsewhere: ``ds4d-process FRAMES OUT --pseudo-views DIR --pseudo-release v1.1|v1.2``.

STAG4D's and DS4D's official code write Zero123++ outputs per input frame, and Zero123++ may run on
another machine; importing them needs no Zero123++ weights. ``DIR`` holds, per frame, either

* one grid image as Zero123++ returns it: 3 rows x 2 columns of square tiles (640 wide x 960 high
  for the releases' 320 px tiles; any size whose width:height is 2:3), tiles in row-major order; or
* a folder of six tile images, in the release's view order (natural order of their names).

Grids and folders are matched to the frames in natural order (digit runs compare as numbers):
one per source frame, or one per sampled frame when ``--num-frames``/``--start``/``--end`` select
fewer. Images with a (not fully opaque) alpha channel keep it; RGB images are matted like
generated views (the grey key, or rembg). Every entry is checked and decoded before any output is
written. The views' cameras are the release's layout (``ds4d_ns.camera_layouts``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

import numpy as np
from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape

from ds4d_ns.process.frames import IMAGE_SUFFIXES, Clip, InputError, image_files, natural_sorted, read_image

VIEWS = 6
"""Views per frame in both Zero123++ releases."""
TILE_ROWS, TILE_COLUMNS = 3, 2
"""Zero123++'s grid image (the six views tiled in one image): three rows of two tiles."""


@dataclass(frozen=True)
class PseudoViewEntry:
    """The pseudo views of one frame: a grid image, or six tile images."""

    path: Path
    """The grid image, or the folder of tiles."""
    tiles: Tuple[Path, ...]
    """The six tile images in view order; empty for a grid."""
    has_alpha: bool
    """Whether the images carry a usable (not fully opaque) alpha channel; else they are matted."""

    @property
    def files(self) -> Tuple[Path, ...]:
        """Every file read for this frame."""
        return self.tiles or (self.path,)


def _load(file: Path) -> np.ndarray:
    """Decode an image fully as uint8 RGBA (with transparency) or RGB, or raise an InputError naming it."""
    return read_image(file).rgb_or_rgba


def _usable_alpha(image: np.ndarray) -> bool:
    return image.shape[-1] == 4 and bool((image[..., 3] < 255).any())


def split_tiles(grid_image: np.ndarray) -> List[np.ndarray]:
    """The six tiles of a 3 x 2 grid image, row-major (Zero123++'s order)."""
    height, width = grid_image.shape[:2]
    tile = width // TILE_COLUMNS
    return [
        grid_image[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile]
        for r in range(TILE_ROWS)
        for c in range(TILE_COLUMNS)
    ]


def _check_grid_image(file: Path) -> bool:
    image = _load(file)
    height, width = image.shape[:2]
    if width % TILE_COLUMNS or height % TILE_ROWS or width // TILE_COLUMNS != height // TILE_ROWS:
        raise InputError(
            f"{file}: {width}x{height} pixels is not a Zero123++ grid of 3 rows x 2 columns of square tiles "
            "(width:height 2:3, e.g. 640x960 for the releases' 320 px tiles); give the grid as Zero123++ "
            "returns it, or a folder of six tiles"
        )
    return _usable_alpha(image)


def _check_tiles(folder: Path) -> Tuple[Tuple[Path, ...], bool]:
    tiles = image_files(folder)
    if len(tiles) != VIEWS:
        shown = ", ".join(t.name for t in tiles) or "none"
        raise InputError(
            f"{folder}: {len(tiles)} tile images ({shown}), but a Zero123++ release has {VIEWS} views: give six "
            "tiles in the release's view order (e.g. 0.png .. 5.png)"
        )
    alphas = []
    for tile in tiles:
        image = _load(tile)
        if image.shape[0] != image.shape[1]:
            raise InputError(
                f"{tile}: a pseudo-view tile must be square, this one is {image.shape[1]}x{image.shape[0]}"
            )
        alphas.append(_usable_alpha(image))
    return tuple(tiles), all(alphas)


def scan_pseudo_views(folder: Path, clip: Clip, source: Path) -> List[PseudoViewEntry]:
    """The checked pseudo-view entry of each sampled frame of ``clip`` (every image decoded once)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"--pseudo-views {folder}: no such folder")
    entries = natural_sorted(
        [
            p
            for p in folder.iterdir()
            if not p.name.startswith(".") and (p.is_dir() or p.suffix.lower() in IMAGE_SUFFIXES)
        ]
    )
    sampled = len(clip.source_indices)
    if len(entries) == clip.source_count:
        chosen, how = [entries[i] for i in clip.source_indices], "one per source frame"
    elif len(entries) == sampled:
        chosen, how = entries, "one per sampled frame"
    else:
        counts = f"{clip.source_count}" + (f" ({sampled} sampled)" if sampled != clip.source_count else "")
        raise InputError(
            f"--pseudo-views {folder}: {len(entries)} grid images or tile folders, but {source} has {counts} frames; "
            "give one per frame, in the frames' natural order"
        )
    shown = ", ".join(p.name for p in chosen[:3]) + (f", ..., {chosen[-1].name}" if len(chosen) > 3 else "")
    CONSOLE.log(f"Pseudo views: {escape(str(folder))}: {how}, in natural order ({escape(shown)})")
    result = []
    for entry in chosen:
        if entry.is_dir():
            tiles, has_alpha = _check_tiles(entry)
            result.append(PseudoViewEntry(entry, tiles, has_alpha))
        else:
            result.append(PseudoViewEntry(entry, (), _check_grid_image(entry)))
    return result


def load_views(entry: PseudoViewEntry) -> List[np.ndarray]:
    """The six views of an entry as uint8 RGB or RGBA images, in the release's order."""
    if entry.tiles:
        return [_load(tile) for tile in entry.tiles]
    return split_tiles(_load(entry.path))
