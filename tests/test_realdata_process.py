"""``ds4d-process`` on public clips written by others (``../shared/realdata``, see its SOURCES.md):

* Consistent4D's demo input ``blooming_rose`` (Consistent4D, ICLR 2024, Apache-2.0): 32 RGBA frames
  named ``0.png`` .. ``31.png``, 1080 x 1080; dataset frame k must be source frame k.
* L4GM's test video ``blooming_rose_fg.mp4`` (L4GM, Apache-2.0): 32 RGB frames of a rose on white,
  512 x 512, matted with ``--matting white``.

Pseudo views are imported (``--pseudo-views``), made here as Zero123++-style grids, so no weights
are needed. Without the data folder these tests are reported as skipped, with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest

from ds4d_ns.io.writers import write_png_atomic
from ds4d_ns.process.run import ProcessConfig, process

REALDATA = Path(os.environ.get("DS4D_REALDATA", Path(__file__).resolve().parents[1].parent / "shared" / "realdata"))
"""The public example clips (``../shared/realdata`` from the repository; ``DS4D_REALDATA`` overrides)."""

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not REALDATA.is_dir(), reason=f"the public example clips are not at {REALDATA}"),
]


def _grid_images(folder: Path, count: int, tile: int = 32) -> Path:
    """``count`` Zero123++-style RGB grids (3 x 2 tiles, a disc on grey), named 0.png .. like the frames."""
    ys, xs = np.mgrid[0:tile, 0:tile]
    disc = (xs - tile / 2) ** 2 + (ys - tile / 2) ** 2 <= (tile * 0.3) ** 2
    for k in range(count):
        grid_image = np.full((3 * tile, 2 * tile, 3), 128, dtype=np.uint8)
        for view in range(6):
            row, column = divmod(view, 2)
            grid_image[row * tile : (row + 1) * tile, column * tile : (column + 1) * tile][disc] = (200, 30 + 4 * k, 40)
        write_png_atomic(folder / f"{k}.png", grid_image)
    return folder


def _config(source: Path, out: Path, views: Path, **overrides: Any) -> ProcessConfig:
    settings: Dict[str, Any] = dict(
        input=source,
        output=out,
        num_frames=32,
        resolution=64,
        pseudo_views=views,
        pseudo_release="v1.2",
        num_points=300,
        hull_resolution=24,
        device="cpu",
    )
    settings.update(overrides)
    return ProcessConfig(**settings)


def test_consistent4d_frames_keep_their_numeric_order(tmp_path: Path):
    from PIL import Image

    from ds4d_ns.dataparsers.ds4d_dataparser import Ds4dDataParserConfig
    from ds4d_ns.process.framing import clip_crop, crop_rgba

    source = REALDATA / "consistent4d" / "blooming_rose"
    out = tmp_path / "dataset"
    process(_config(source, out, _grid_images(tmp_path / "views", 32)))
    originals = [np.asarray(Image.open(source / f"{k}.png").convert("RGBA")) for k in range(32)]
    crop = clip_crop(originals, [f"{k}.png" for k in range(32)], 0.85)
    for k in range(32):
        written = np.asarray(Image.open(out / f"images/input_00/frame_{k:04d}.png"))
        assert np.array_equal(written, crop_rgba(originals[k], crop, 64)), f"dataset frame {k} is not {k}.png"
    outputs = Ds4dDataParserConfig(data=out).setup().get_dataparser_outputs("train")
    assert len(outputs.image_filenames) == 32 * 7


def l4gm_dataset_frames(tmp_path: Path, name: str = "blooming_rose_fg.mp4", resolution: int = 128) -> list:
    """Run ds4d-process with --matting white on an L4GM clip; the dataset's input RGBA frames."""
    from PIL import Image

    out = tmp_path / "dataset"
    process(
        _config(
            REALDATA / "l4gm" / name, out, _grid_images(tmp_path / "views", 32), matting="white", resolution=resolution
        )
    )
    return [np.asarray(Image.open(out / f"images/input_00/frame_{k:04d}.png")) for k in range(32)]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_an_l4gm_clip_on_white_is_matted_by_the_white_key(tmp_path: Path):
    """L4GM's blooming_rose_fg is Consistent4D's blooming_rose on white at 512 px, so Consistent4D's
    alpha (resized, and cropped as ds4d-process crops the video) is an independent reference mask."""
    from PIL import Image
    from scipy import ndimage

    from ds4d_ns.io.video import read_video_frames
    from ds4d_ns.process.framing import clip_crop, crop_rgba
    from ds4d_ns.process.key_matte import key_alpha, key_rgba

    frames = l4gm_dataset_frames(tmp_path)
    video = read_video_frames(REALDATA / "l4gm" / "blooming_rose_fg.mp4")
    crop = clip_crop([key_rgba(image) for image in video], [str(k) for k in range(32)], 0.85)
    for k, rgba in enumerate(frames):
        with Image.open(REALDATA / "consistent4d" / "blooming_rose" / f"{k}.png") as image:
            reference = np.asarray(image.convert("RGBA").resize((512, 512), Image.Resampling.BILINEAR))
        source_alpha = key_alpha(video[k])
        assert _iou(source_alpha > 0.5, reference[..., 3] > 127) > 0.95, f"source frame {k}"
        soft = (source_alpha > 0) & (source_alpha < 1)
        assert 0 < soft.sum() < 0.1 * (source_alpha > 0.5).sum(), f"frame {k}: the edge is not soft, or too wide"
        alpha = rgba[..., 3] / 255.0
        solid = alpha > 0.5
        assert _iou(solid, crop_rgba(reference, crop, 128)[..., 3] > 127) > 0.93, f"dataset frame {k}"
        labels, count = ndimage.label(solid)
        assert np.bincount(labels.ravel())[1:].max() > 0.95 * solid.sum(), f"frame {k}: the rose is not one piece"
        holes = ndimage.binary_fill_holes(solid) & ~solid  # the rose has small see-through gaps
        assert holes.sum() <= 0.01 * solid.sum(), f"frame {k}: holes in the rose"
        assert alpha[:4].max() == 0 and alpha[:, :4].max() == 0, f"frame {k}: background kept"
