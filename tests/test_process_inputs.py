"""ds4d-process inputs: reading and sampling clips, bad inputs, and the clip-wide crop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ds4d_ns.io.video import write_video_atomic
from ds4d_ns.io.writers import write_png_atomic
from ds4d_ns.process.frames import InputError, natural_sorted, read_clip, sample_indices
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


def test_a_folder_mixing_transparent_and_opaque_frames_reads_as_one_rgba_clip(tmp_path: Path):
    """One PNG with a transparency key among RGB ones: every frame RGBA (the opaque ones fully opaque), so
    the clip stacks into one array (ds4d-eval videos failed with a traceback in np.stack)."""
    from PIL import Image

    frames = _moving_square(3)
    write_png_atomic(tmp_path / "0.png", frames[0][..., :3])
    Image.fromarray(frames[1][..., :3]).convert("P").save(tmp_path / "1.png", transparency=0)
    write_png_atomic(tmp_path / "2.png", frames[2][..., :3])
    clip = read_clip(tmp_path)
    assert [image.shape for image in clip.images] == [(64, 64, 4)] * 3
    assert clip.images[0][..., 3].min() == 255 and np.array_equal(clip.images[0][..., :3], frames[0][..., :3])
    assert np.stack(clip.images).shape == (3, 64, 64, 4)


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
    with pytest.raises(InputError, match="c.png: cannot be read as an image"):
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


def _numbered_frames(folder: Path, count: int, size: int = 32, alpha: bool = True) -> list:
    """Frames ``0.png`` .. ``{count-1}.png`` (Consistent4D's names); frame k's object sits at column k."""
    images = []
    for k in range(count):
        image = np.zeros((size, size, 4 if alpha else 3), dtype=np.uint8)
        if not alpha:
            image[...] = 255
        image[10:20, k : k + 4, :3] = (200, 10 * k, 40)
        if alpha:
            image[10:20, k : k + 4, 3] = 255
        write_png_atomic(folder / f"{k}.png", image)
        images.append(image)
    return images


def _log_lines(monkeypatch) -> list:
    """What ds4d-process logs through nerfstudio's console, one string per call."""
    from nerfstudio.utils.rich_utils import CONSOLE

    lines: list = []
    monkeypatch.setattr(CONSOLE, "log", lambda *args, **kwargs: lines.append(" ".join(map(str, args))))
    return lines


def test_numbered_frames_are_read_in_natural_order_and_the_log_says_so(tmp_path: Path, monkeypatch):
    images = _numbered_frames(tmp_path, 12)
    logged = _log_lines(monkeypatch)
    clip = read_clip(tmp_path, num_frames=12)
    assert clip.names == [f"{k}.png" for k in range(12)]  # 2.png before 10.png
    assert all(np.array_equal(got, want) for got, want in zip(clip.images, images))
    assert clip.source_count == 12
    assert any("natural order" in line and "2.png, ..., 11.png" in line for line in logged)
    assert [p.name for p in natural_sorted([Path("b10.png"), Path("B2.png"), Path("a.png")])] == [
        "a.png",
        "B2.png",
        "b10.png",
    ]


def test_masks_are_matched_to_numbered_frames_by_their_number(tmp_path: Path):
    from ds4d_ns.process.masks import input_rgba

    _numbered_frames(tmp_path / "frames", 12, alpha=False)
    for k in range(12):  # mask k marks column k only; names sort differently as text and by number
        mask = np.zeros((32, 32), dtype=np.uint8)
        mask[:, k] = 255
        write_png_atomic(tmp_path / "masks" / f"mask_{k}.png", mask)
    clip = read_clip(tmp_path / "frames", num_frames=4)  # frames 0, 4, 7, 11
    rgba, files = input_rgba(clip, tmp_path / "frames", tmp_path / "masks", "none")
    assert [f.name for f in files] == ["mask_0.png", "mask_4.png", "mask_7.png", "mask_11.png"]
    for image, index in zip(rgba, clip.source_indices):
        assert np.flatnonzero(image[0, :, 3]).tolist() == [index]
    # frames numbered 0..11 and masks numbered 1..12: the frame without a mask is named
    for k in range(12):
        (tmp_path / "masks" / f"mask_{k}.png").rename(tmp_path / "masks" / f"m_{k + 1}.png")
    with pytest.raises(InputError, match=r"no mask numbered 0 for frame 0.png"):
        input_rgba(clip, tmp_path / "frames", tmp_path / "masks", "none")


def test_masks_of_a_video_are_matched_by_position_and_counted(tmp_path: Path):
    from ds4d_ns.process.masks import input_rgba

    video = tmp_path / "clip.mp4"
    write_video_atomic(video, [np.full((32, 32, 3), 255, dtype=np.uint8)] * 3, fps=10)
    for k in range(3):
        mask = np.zeros((32, 32), dtype=np.uint8)
        mask[k, :] = 255
        write_png_atomic(tmp_path / "masks" / f"{k}.png", mask)
    clip = read_clip(video)
    rgba, _ = input_rgba(clip, video, tmp_path / "masks", "none")
    assert [int(np.flatnonzero(image[:, 0, 3])[0]) for image in rgba] == [0, 1, 2]
    (tmp_path / "masks" / "2.png").unlink()
    with pytest.raises(InputError, match="2 masks, but .*clip.mp4 has 3 frames"):
        input_rgba(clip, video, tmp_path / "masks", "none")


def _rgba_frames(count: int = 4, size: int = 32) -> list:
    frames = []
    for k in range(count):
        image = np.zeros((size, size, 4), dtype=np.uint8)
        image[..., :3] = (200, 40, 40)
        image[8:24, 4 + 2 * k : 20 + 2 * k, 3] = 255
        frames.append(image)
    return frames


def _encode_rgba(path: Path, codec: str, pix_fmt: str, frames: list, options: dict | None = None) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], pix_fmt
        if options:
            stream.options = options
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgba")))
        container.mux(stream.encode(None))


@pytest.mark.parametrize(
    "name, codec, pix_fmt, options",
    [
        ("png.mov", "png", "rgba", None),
        ("prores4444.mov", "prores_ks", "yuva444p10le", {"profile": "4444"}),
        ("vp9_alpha.webm", "libvpx-vp9", "yuva420p", None),
    ],
)
def test_a_video_with_an_alpha_channel_is_read_as_rgba(tmp_path: Path, name, codec, pix_fmt, options):
    import av

    if codec not in av.codecs_available:
        pytest.skip(f"PyAV's FFmpeg has no {codec} encoder")
    frames = _rgba_frames()
    _encode_rgba(tmp_path / name, codec, pix_fmt, frames, options)
    clip = read_clip(tmp_path / name)
    assert [image.shape for image in clip.images] == [(32, 32, 4)] * 4
    for got, want in zip(clip.images, frames):
        assert np.abs(got[..., 3].astype(int) - want[..., 3]).mean() < 4  # lossless or near it
        assert ((got[..., 3] > 127) == (want[..., 3] > 127)).mean() > 0.98


def test_the_white_key_mattes_an_object_with_a_soft_edge_and_no_holes():
    from ds4d_ns.process.key_matte import key_alpha

    size = 96
    ys, xs = np.mgrid[0:size, 0:size]
    image = np.full((size, size, 3), 255, dtype=np.uint8)
    disc = (xs - 48) ** 2 + (ys - 48) ** 2 <= 30**2
    image[disc] = (200, 30, 30)
    pale = (xs - 48) ** 2 + (ys - 40) ** 2 <= 6**2  # the object's own near-white part, enclosed
    image[pale] = (248, 246, 244)
    gap = (abs(xs - 60) <= 4) & (abs(ys - 58) <= 4)  # a see-through gap: exactly the background, enclosed
    image[gap] = 255
    edge = ((xs - 48) ** 2 + (ys - 48) ** 2 > 30**2) & ((xs - 48) ** 2 + (ys - 48) ** 2 <= 31**2)
    image[edge] = (245, 230, 230)  # a pixel half-mixed with the background: partial alpha
    image[5, 5] = (230, 230, 230)  # a compression speck on the background
    alpha = key_alpha(image)
    assert alpha[48, 48] == 1.0 and alpha[0, 0] == 0.0
    assert (alpha[pale] == 1.0).all()  # holes of the object's own colour are filled
    assert (alpha[gap] == 0.0).all()  # a large enclosed region of pure background is not
    assert alpha[5, 5] == 0.0  # specks are dropped
    soft = alpha[edge]
    assert ((soft > 0) & (soft < 1)).mean() > 0.5  # the border is soft
    # another background colour: the same object on green
    green = np.where(image == 255, np.array([0, 177, 64], dtype=np.uint8), image).astype(np.uint8)
    green[pale] = (200, 30, 30)
    alpha_green = key_alpha(green, colour=(0, 177, 64))
    assert alpha_green[48, 48] == 1.0 and alpha_green[0, 0] == 0.0
