"""ds4d-process inputs: reading and sampling clips, bad inputs, and the clip-wide crop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ds4d_ns.data.dataset_format import write_png_atomic
from ds4d_ns.io.video import write_video_atomic
from ds4d_ns.process.frames import InputError, read_clip, sample_indices
from ds4d_ns.process.framing import crop_rgba, foreground_box, frame_clip, square_crop, union_box


def _moving_square(frames: int, size: int = 64) -> list:
    """RGBA frames of a white square moving left to right on a transparent background."""
    images = []
    for i in range(frames):
        rgba = np.zeros((size, size, 4), dtype=np.uint8)
        x = 8 + 4 * i
        rgba[20:32, x : x + 12] = (255, 255, 255, 255)
        images.append(rgba)
    return images


def test_uniform_sampling_spans_the_selected_range():
    assert sample_indices(100, 5) == [0, 25, 50, 74, 99]
    assert sample_indices(100, 3, start=10, end=20) == [10, 14, 19]  # 14.5 rounds to even
    assert sample_indices(4, 30) == [0, 1, 2, 3]  # fewer frames than asked: all of them
    with pytest.raises(InputError, match="select no frames"):
        sample_indices(10, 3, start=10)


def test_a_video_is_decoded_and_sampled(tmp_path: Path):
    video = tmp_path / "clip.mp4"
    frames = [np.full((32, 48, 3), 20 * i, dtype=np.uint8) for i in range(10)]
    write_video_atomic(video, frames, fps=10)
    clip = read_clip(video, num_frames=4)
    assert clip.source_indices == [0, 3, 6, 9]
    assert all(image.shape == (32, 48, 3) for image in clip.images)
    brightness = [float(image.mean()) for image in clip.images]
    assert brightness == sorted(brightness) and abs(brightness[-1] - 180) < 8  # frame 9 is the 9th grey
    assert video.read_bytes()  # still there, untouched


def test_a_folder_of_rgba_images_keeps_its_alpha(tmp_path: Path):
    for i, image in enumerate(_moving_square(6)):
        write_png_atomic(tmp_path / f"f{i:03d}.png", image)
    clip = read_clip(tmp_path, num_frames=3, start=1, end=6)
    assert clip.names == ["f001.png", "f003.png", "f005.png"]
    assert clip.images[0].shape == (64, 64, 4)


def test_bad_inputs_are_errors_naming_the_file(tmp_path: Path):
    with pytest.raises(InputError, match="no such file"):
        read_clip(tmp_path / "missing.mp4")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"this is not a video")
    with pytest.raises(InputError, match="broken.mp4: cannot decode"):
        read_clip(broken)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty: no images"):
        read_clip(empty)
    mixed = tmp_path / "mixed"
    write_png_atomic(mixed / "a.png", np.zeros((8, 8, 3), dtype=np.uint8))
    write_png_atomic(mixed / "b.png", np.zeros((8, 10, 3), dtype=np.uint8))
    with pytest.raises(InputError, match="b.png: 10x8 pixels"):
        read_clip(mixed)
    (mixed / "c.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="c.png: not a readable image"):
        read_clip(mixed, start=2)


def test_one_crop_for_the_whole_clip_keeps_the_motion():
    frames = _moving_square(5)
    names = [f"frame {i}" for i in range(5)]
    assert union_box([f[..., 3] / 255.0 for f in frames], names) == (8, 20, 36, 32)
    cropped = frame_clip(frames, names, resolution=32, fill=0.8)
    centres = [foreground_box(c[..., 3] / 255.0) for c in cropped]
    lefts = [box[0] for box in centres]
    assert lefts == sorted(lefts) and lefts[-1] - lefts[0] >= 8  # still moves left to right
    union = union_box([c[..., 3] / 255.0 for c in cropped], names)
    width = union[2] - union[0]
    assert 0.7 * 32 <= width <= 0.85 * 32  # the union fills about 80 % of the side


def test_a_frame_without_foreground_is_an_error_naming_it():
    frames = _moving_square(3)
    frames[1][..., 3] = 0
    with pytest.raises(InputError, match="frame 1: no foreground"):
        frame_clip(frames, ["frame 0", "frame 1", "frame 2"], resolution=16)


def test_crops_beyond_the_image_are_padded_transparent():
    image = np.full((10, 10, 4), 255, dtype=np.uint8)
    assert square_crop((0, 0, 10, 10), fill=0.5) == (-5, -5, 15, 15)
    cropped = crop_rgba(image, (-5, -5, 15, 15), 20)
    assert cropped[0, 0, 3] == 0 and cropped[10, 10, 3] == 255
