"""Every reader of a user's images decodes every PNG mode alike: one picture written in a table of modes
(8-bit and 16-bit, grey and colour, with an alpha channel or a transparency key) must come out of each
reader as its 8-bit version does, within one level.

The readers: ``ds4d-process``'s frame folders (``read_clip``), its masks (``input_rgba`` with
``--masks``), its imported pseudo views (``scan_pseudo_views`` / ``load_views``, grids and tile
folders), and ``ds4d-eval videos``' view folders. PIL cannot write 16-bit colour PNGs (it has no mode
for 16-bit RGB or RGBA), so those are written by hand here; PIL reads them as 8-bit RGB/RGBA, so their
rows check the readers' alpha handling, and the ``I;16`` row (16-bit grey, which PIL keeps 16-bit)
checks the scaling.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

import numpy as np
import pytest

from ds4d_ns.evaluation.protocol import to_protocol_frames
from ds4d_ns.evaluation.videos import read_view_videos
from ds4d_ns.process.frames import read_clip
from ds4d_ns.process.masks import input_rgba
from ds4d_ns.process.pseudo_import import load_views, scan_pseudo_views, split_tiles
from ds4d_ns.scripts import eval as eval_script

WIDTH, HEIGHT, TILE = 16, 24, 8
"""The picture's size: 2:3, so that it is also a Zero123++ grid of six 8 px tiles."""
Window = Tuple[slice, slice]
WHOLE: Window = (slice(None), slice(None))


def _picture():
    """Palette indices ``[H, W]`` (0 outside the object), the palette ``[K, 3]``, and a graded alpha.

    48 blocks of 2 x 4 pixels, each its own colour, so that the picture fits a palette (P mode) as it is.
    """
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    inside = ((x - 7.5) / 6.5) ** 2 + ((y - 11.5) / 10.0) ** 2 <= 1.0  # every tile has pixels outside
    indices = np.where(inside, 1 + x // 2 + 8 * (y // 4), 0).astype(np.uint8)
    k = np.arange(49)
    palette = np.stack([(k * 5) % 256, (k * 37 + 11) % 256, 250 - k * 3], axis=-1).astype(np.uint8)
    palette[0] = 0  # the transparent entry
    alpha = np.where(inside, 255, 0).astype(np.uint8)
    alpha[inside & (x < 4)] = 128  # a semi-transparent edge, for the modes with an alpha channel
    return indices, palette, alpha


INDICES, PALETTE, ALPHA = _picture()
RGB = PALETTE[INDICES]
RGBA = np.dstack([RGB, ALPHA])
GREY = np.rint(RGB.astype(np.float64) @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
GREY16 = (GREY.astype(np.int64) * 257 + np.where(GREY % 2 == 0, 100, -100)).clip(0, 65535).astype(np.uint16)
"""16-bit grey of ``GREY`` whose low byte is not ``GREY``'s: only a decoder that scales rounds it back."""
OPAQUE = np.full((HEIGHT, WIDTH), 255, dtype=np.uint8)
KEYED = np.where(INDICES > 0, 255, 0).astype(np.uint8)
"""The alpha of the palette image: its transparency key (entry 0) is all-or-nothing."""


def _png16(path: Path, samples: np.ndarray) -> None:
    """A PNG of 16 bits per sample (grey, grey + alpha, RGB or RGBA by channel count), written by hand."""
    height, width = samples.shape[:2]
    channels = 1 if samples.ndim == 2 else samples.shape[-1]
    rows = samples.astype(">u2").reshape(height, width * channels)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter type 0 (none) on every row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


def _to16(values: np.ndarray) -> np.ndarray:
    return values.astype(np.uint16) * 257


@dataclass(frozen=True)
class Mode:
    """One row of the table: a way of writing the picture, and its 8-bit version."""

    name: str
    rgba: np.ndarray
    """The 8-bit RGBA every reader must see."""
    has_alpha: bool
    """Whether the file carries transparency (an alpha channel or a transparency key)."""
    alpha_channel: bool
    """Whether the file has an alpha channel (a mask is then its alpha, else its luminance)."""
    pil_mode: Tuple[str, ...]
    """The PIL modes the file may be read as (PIL versions differ: ``I`` or ``I;16`` for 16-bit grey)."""

    def write(self, path: Path, window: Window = WHOLE) -> Path:
        """Write the ``window`` of the picture to ``path`` in this mode."""
        from PIL import Image

        path.parent.mkdir(parents=True, exist_ok=True)
        if self.name == "P+transparency":
            image = Image.fromarray(INDICES[window], "P")
            image.putpalette(PALETTE.tobytes())
            image.save(path, transparency=0)
        elif self.name.endswith("16-bit"):
            samples = {"RGB": _to16(RGB), "RGBA": _to16(RGBA), "LA": np.dstack([GREY16, _to16(ALPHA)])}
            _png16(path, samples[self.name.split()[0]][window])
        else:
            arrays = {"RGB": RGB, "RGBA": RGBA, "L": GREY, "LA": np.dstack([GREY, ALPHA]), "I;16": GREY16}
            Image.fromarray(arrays[self.name][window], "LA" if self.name == "LA" else None).save(path)
        return path

    @property
    def expected(self) -> np.ndarray:
        """What a ``ds4d-process`` reader hands on: RGBA when the file has transparency, else RGB."""
        return self.rgba if self.has_alpha else self.rgba[..., :3]


def _grey(alpha: np.ndarray) -> np.ndarray:
    return np.dstack([GREY, GREY, GREY, alpha])


MODES = [
    Mode("RGB", np.dstack([RGB, OPAQUE]), False, False, ("RGB",)),
    Mode("RGBA", RGBA, True, True, ("RGBA",)),
    Mode("L", _grey(OPAQUE), False, False, ("L",)),
    Mode("LA", _grey(ALPHA), True, True, ("LA",)),
    Mode("P+transparency", np.dstack([RGB, KEYED]), True, False, ("P",)),
    Mode("I;16", _grey(OPAQUE), False, False, ("I;16", "I")),
    Mode("RGB 16-bit", np.dstack([RGB, OPAQUE]), False, False, ("RGB",)),
    Mode("RGBA 16-bit", RGBA, True, True, ("RGBA",)),
    Mode("LA 16-bit", _grey(ALPHA), True, True, ("LA", "RGBA")),  # PIL reads 16-bit LA as RGBA
]
IDS = [mode.name for mode in MODES]


def _assert_close(actual: np.ndarray, expected: np.ndarray, what: str, tolerance: int = 1) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    worst = int(np.abs(actual.astype(np.int64) - expected.astype(np.int64)).max())
    assert worst <= tolerance, f"{what}: off by up to {worst} levels"


def _rgb_frames(folder: Path, count: int) -> Path:
    for frame in range(count):
        MODES[0].write(folder / f"{frame}.png")
    return folder


@pytest.mark.parametrize("mode", MODES, ids=IDS)
def test_the_table_writes_what_it_says(tmp_path: Path, mode: Mode):
    from PIL import Image

    with Image.open(mode.write(tmp_path / "picture.png")) as image:
        assert image.mode in mode.pil_mode
        assert ("transparency" in image.info) == (mode.name == "P+transparency")


@pytest.mark.parametrize("mode", MODES, ids=IDS)
def test_frame_folders_read_every_mode_as_its_8_bit_version(tmp_path: Path, mode: Mode):
    for frame in range(2):
        mode.write(tmp_path / "frames" / f"{frame}.png")
    for image in read_clip(tmp_path / "frames").images:
        _assert_close(image, mode.expected, f"{mode.name} frame")


@pytest.mark.parametrize("mode", MODES, ids=IDS)
def test_masks_read_every_mode_as_its_8_bit_version(tmp_path: Path, mode: Mode):
    frames = _rgb_frames(tmp_path / "frames", 1)  # 8-bit RGB frames: the masks give the alpha
    mode.write(tmp_path / "masks" / "0.png")
    rgba, _ = input_rgba(read_clip(frames), frames, tmp_path / "masks", "none")
    if mode.alpha_channel:
        expected = mode.rgba[..., 3]
    else:  # the luminance, as PIL's convert("L") weighs the channels
        expected = np.rint(mode.rgba[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114]))
    _assert_close(rgba[0][..., 3], expected, f"{mode.name} mask")


@pytest.mark.parametrize("mode", MODES, ids=IDS)
def test_pseudo_view_grids_and_tiles_read_every_mode_as_its_8_bit_version(tmp_path: Path, mode: Mode):
    frames = _rgb_frames(tmp_path / "frames", 2)
    mode.write(tmp_path / "views" / "0.png")  # frame 0: one grid image
    windows = [(slice(r, r + TILE), slice(c, c + TILE)) for r in range(0, HEIGHT, TILE) for c in range(0, WIDTH, TILE)]
    for view, window in enumerate(windows):  # frame 1: a folder of the six tiles
        mode.write(tmp_path / "views" / "1" / f"{view}.png", window)
    entries = scan_pseudo_views(tmp_path / "views", read_clip(frames), frames)
    expected = split_tiles(mode.expected)
    for entry in entries:
        assert entry.has_alpha == mode.has_alpha  # every tile has transparent pixels where it has alpha
        for view, (tile, wanted) in enumerate(zip(load_views(entry), expected)):
            _assert_close(tile, wanted, f"{mode.name} {entry.path.name} view {view}")


@pytest.mark.parametrize("mode", MODES, ids=IDS)
def test_eval_view_folders_read_every_mode_as_its_8_bit_version(tmp_path: Path, mode: Mode):
    for frame in range(2):
        mode.write(tmp_path / "gt" / "eval_0" / f"{frame}.png")
    videos = read_view_videos(tmp_path / "gt", ("eval_0",), "--gt", resolution=WIDTH)
    expected = to_protocol_frames(np.stack([mode.expected] * 2), WIDTH)
    # composited on white and resized bicubic: a level's difference in the file may become two
    _assert_close(videos.frames[0], expected, f"{mode.name} eval frames", tolerance=2)


def test_eval_scores_16_bit_grey_frames_as_their_8_bit_versions(tmp_path: Path):
    """The issue's example: 16-bit grey frames scored lower (PSNR 10.84 dB against 22.86) as PIL clipped them."""
    from PIL import Image

    rng = np.random.default_rng(0)
    truth = np.rint(np.linspace(40, 200, 32 * 32)).reshape(32, 32).astype(np.uint8)
    noisy = np.clip(truth + rng.normal(0, 12, (3,) + truth.shape), 0, 255).astype(np.uint8)
    means = {}
    for depth in (8, 16):
        for role, frames in (("gt", [truth] * 3), ("pred", list(noisy))):
            for index, frame in enumerate(frames):
                path = tmp_path / str(depth) / role / "eval_0" / f"{index}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(frame if depth == 8 else _to16(frame)).save(path)
        summary, _ = eval_script.EvalVideos(
            pred=tmp_path / str(depth) / "pred",
            gt=tmp_path / str(depth) / "gt",
            output_dir=tmp_path / str(depth) / "out",
            views=("eval_0",),
            resolution=32,
            metrics=("psnr",),
            device="cpu",
        ).main()
        means[depth] = json.loads(summary.read_text())["means"]["psnr"]
    assert 20.0 < means[8] < 30.0
    assert means[16] == pytest.approx(means[8], abs=1e-6)


@pytest.mark.parametrize("pixel_format", ["gray16be", "ya16be", "rgba64be"])
def test_16_bit_video_frames_read_as_their_8_bit_versions(tmp_path: Path, pixel_format: str):
    """Videos are decoded by PyAV, whose conversion to rgb24/rgba scales 16-bit samples (PNG in MOV here;
    ProRes 4444's 12-bit yuva444p12le was checked the same way by hand)."""
    import av

    samples = {
        "gray16be": (GREY16, np.dstack([GREY, GREY, GREY])),
        "ya16be": (np.dstack([GREY16, _to16(ALPHA)]), _grey(ALPHA)),
        "rgba64be": (_to16(RGBA), RGBA),
    }
    written, expected = samples[pixel_format]
    path = tmp_path / "clip.mov"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("png", rate=10)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, pixel_format
        frame = av.VideoFrame(WIDTH, HEIGHT, pixel_format)
        plane = frame.planes[0]  # one packed plane, its rows padded to line_size bytes
        rows = np.zeros((HEIGHT, plane.line_size), dtype=np.uint8)
        packed = written.astype(">u2").reshape(HEIGHT, -1).view(np.uint8)
        rows[:, : packed.shape[1]] = packed
        plane.update(rows.tobytes())
        for packet in list(stream.encode(frame)) + list(stream.encode()):
            container.mux(packet)
    (image,) = read_clip(path).images
    _assert_close(image, expected, f"{pixel_format} video frame")
