"""The ds4d-data dataparser: splits, cameras, times, seed points and every bad input it must name."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ds4d_ns.data.dataset_format import ROLE_CODES, TRANSFORMS_NAME
from ds4d_ns.dataparsers.ds4d_dataparser import DatasetError, Ds4dDataParserConfig


def parse(data: Path, split: str = "train", **config):
    return Ds4dDataParserConfig(data=data, **config).setup().get_dataparser_outputs(split=split)


def folder_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_train_split_holds_input_and_pseudo_views_with_times_and_roles(fake_dataset):
    data = fake_dataset(frames=3, pseudo_views=2, eval_views=1)
    out = parse(data)
    assert len(out.image_filenames) == 3 * 3
    cameras = out.cameras
    assert cameras.times is not None
    assert sorted(set(cameras.times.view(-1).tolist())) == [0.0, 0.5, 1.0]
    roles = cameras.metadata["role"].view(-1).tolist()
    assert roles.count(ROLE_CODES["input"]) == 3 and roles.count(ROLE_CODES["pseudo"]) == 6
    assert ROLE_CODES["eval"] not in roles
    assert int(cameras.width[0]) == 16 and int(cameras.height[0]) == 16
    assert out.metadata["num_frames"] == 3


def test_eval_split_holds_eval_views_or_falls_back_to_input(fake_dataset):
    with_eval = parse(fake_dataset(eval_views=2), split="val")
    assert set(with_eval.cameras.metadata["role"].view(-1).tolist()) == {ROLE_CODES["eval"]}
    assert len(with_eval.image_filenames) == 3 * 2
    without_eval = parse(fake_dataset(eval_views=0), split="test")
    assert set(without_eval.cameras.metadata["role"].view(-1).tolist()) == {ROLE_CODES["input"]}


def test_cameras_keep_the_file_matrices(fake_dataset):
    data = fake_dataset()
    meta = json.loads((data / TRANSFORMS_NAME).read_text())
    out = parse(data)
    first = Path(out.image_filenames[0]).relative_to(data).as_posix()
    record = next(f for f in meta["frames"] if f["file_path"] == first)
    torch.testing.assert_close(out.cameras.camera_to_worlds[0], torch.tensor(record["transform_matrix"])[:3].float())
    assert float(out.cameras.fx[0]) == pytest.approx(record["fl_x"])


def test_seed_points_and_scene_box_come_from_the_ply(fake_dataset):
    out = parse(fake_dataset())
    xyz, rgb = out.metadata["points3D_xyz"], out.metadata["points3D_rgb"]
    assert xyz.shape == (64, 3) and rgb.shape == (64, 3) and rgb.dtype == torch.uint8
    aabb = out.scene_box.aabb
    assert (aabb[0] < xyz.min(0).values).all() and (aabb[1] > xyz.max(0).values).all()
    no_ply = parse(fake_dataset(with_ply=False))
    assert "points3D_xyz" not in no_ply.metadata
    torch.testing.assert_close(no_ply.scene_box.aabb, torch.tensor([[-1.0] * 3, [1.0] * 3]))


def test_mask_paths_become_alpha(fake_dataset):
    from ds4d_ns.data.datamanager import Ds4dDataset

    data = fake_dataset(use_masks=True)
    out = parse(data)
    dataset = Ds4dDataset(out)
    image = dataset.get_numpy_image(0)
    assert image.shape == (16, 16, 4)
    from PIL import Image

    mask_path = out.metadata["alpha_mask_filenames"][0]
    np.testing.assert_array_equal(image[..., 3], np.asarray(Image.open(mask_path)))


def test_parsing_never_writes_into_the_data_folder(fake_dataset):
    data = fake_dataset()
    before = folder_digest(data)
    for split in ("train", "val", "test"):
        parse(data, split=split)
    assert folder_digest(data) == before


def _edit(data: Path, change) -> None:
    path = data / TRANSFORMS_NAME
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m["frames"][4].__setitem__("time", 1.5), r"frames\[4\] has time 1.5"),
        (lambda m: m["frames"][2]["transform_matrix"][0].__setitem__(1, float("nan")), "NaN"),
        (
            lambda m: [f.__setitem__("role", "pseudo") for f in m["frames"] if f["role"] == "input"],
            "no frame has role 'input'",
        ),
        (lambda m: m["frames"].pop(5), r"view (pseudo|eval) \d lacks frames \[1\]"),
        (lambda m: m["frames"][3].__setitem__("w", 32), "different image sizes"),
        (lambda m: m["frames"][0].pop("frame_index"), r"frames\[0\] lacks required keys \['frame_index'\]"),
        (lambda m: m["frames"][0].__setitem__("role", "extra"), "role 'extra'"),
        (lambda m: m["frames"][0].__setitem__("file_path", "images/none.png"), "none.png: image listed"),
        (lambda m: m["frames"][1].__setitem__("time", 0.3), "frame_index 0 has times"),
        (
            lambda m: [f.__setitem__("time", 0.0) for f in m["frames"] if f["frame_index"] == 1],
            r"frame_index 0 has time 0.0 and frame_index 1 has time 0.0; times must increase strictly",
        ),
        (
            lambda m: [f.__setitem__("time", 1.0 - f["time"]) for f in m["frames"]],
            r"frame_index 0 has time 1.0 and frame_index 1 has time 0.5; times must increase strictly",
        ),
    ],
)
def test_bad_transforms_are_named_before_training(fake_dataset, change, message):
    data = fake_dataset(frames=3, pseudo_views=2, eval_views=1)
    _edit(data, change)
    with pytest.raises(DatasetError, match=message):
        parse(data)


def test_missing_and_unreadable_files_are_named(fake_dataset, tmp_path):
    with pytest.raises(DatasetError, match="transforms.json: no such file"):
        parse(tmp_path / "nowhere")
    data = fake_dataset()
    (data / TRANSFORMS_NAME).write_text("{not json")
    with pytest.raises(DatasetError, match="transforms.json: cannot be read as JSON"):
        parse(data)
    data = fake_dataset()
    broken = data / "images" / "pseudo_01" / "frame_0002.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"frame_0002.png: cannot be read as an image"):
        parse(data)
    data = fake_dataset()
    (data / "init.ply").write_bytes(b"ply\ngarbage")
    with pytest.raises(DatasetError, match="init.ply"):
        parse(data)


def test_rgb_image_without_mask_is_refused(fake_dataset):
    from PIL import Image

    data = fake_dataset()
    path = data / "images" / "input_00" / "frame_0001.png"
    Image.open(path).convert("RGB").save(path)
    with pytest.raises(DatasetError, match="frame_0001.png: image has no alpha channel"):
        parse(data)


def test_image_size_must_match_the_declared_size(fake_dataset):
    from PIL import Image

    data = fake_dataset()
    path = data / "images" / "eval_00" / "frame_0000.png"
    Image.new("RGBA", (20, 16)).save(path)
    with pytest.raises(DatasetError, match="frame_0000.png: image is 20x16 but"):
        parse(data)


# ------------------------------------------------------------------ cameras that only fail in training
def _set_matrix(data: Path, index: int, matrix) -> None:
    _edit(data, lambda m: m["frames"][index].__setitem__("transform_matrix", np.asarray(matrix).tolist()))


@pytest.mark.parametrize(
    "make_matrix",
    [
        lambda c2w: np.zeros((4, 4)),  # finite, so the NaN check let it through; singular at the first render
        lambda c2w: np.diag([2.0, 2.0, 2.0, 1.0]) @ c2w,  # scaled
        lambda c2w: c2w @ np.diag([-1.0, 1.0, 1.0, 1.0]),  # mirrored: determinant -1
        lambda c2w: c2w + np.pad(np.full((3, 3), 0.05), ((0, 1), (0, 1))),  # sheared
    ],
    ids=["zero", "scaled", "mirrored", "sheared"],
)
def test_a_camera_whose_rotation_is_not_a_rotation_is_named(fake_dataset, make_matrix):
    data = fake_dataset()
    meta = json.loads((data / TRANSFORMS_NAME).read_text())
    c2w = np.asarray(meta["frames"][4]["transform_matrix"])
    _set_matrix(data, 4, make_matrix(c2w))
    name = meta["frames"][4]["file_path"]
    with pytest.raises(DatasetError, match=rf"frames\[4\] \({name}\): the rotation part of transform_matrix"):
        parse(data)


def test_rotations_rounded_to_three_decimals_pass_the_check_that_names_a_zero_matrix(fake_dataset):
    data = fake_dataset()
    meta = json.loads((data / TRANSFORMS_NAME).read_text())
    for index, frame in enumerate(meta["frames"]):
        _set_matrix(data, index, np.round(np.asarray(frame["transform_matrix"]), 3))
    assert len(parse(data).image_filenames) == 9
    _set_matrix(data, 7, np.zeros((3, 4)))
    with pytest.raises(DatasetError, match=r"frames\[7\] .*not a rotation"):
        parse(data)


# ------------------------------------------------------------------ images accepted, then failing or misread
def _png_bytes(rgba: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG")
    return buffer.getvalue()


def _idat(png: bytes):
    """Offset and length of the first IDAT chunk's data."""
    import struct

    offset = 8
    while offset < len(png):
        length, kind = struct.unpack(">I", png[offset : offset + 4])[0], png[offset + 4 : offset + 8]
        if kind == b"IDAT":
            return offset + 8, length
        offset += 12 + length
    raise AssertionError("no IDAT chunk")


def _bad_crc(png: bytes) -> bytes:
    start, length = _idat(png)
    broken = bytearray(png)
    broken[start + length] ^= 0xFF  # the chunk's CRC; a plain decode never checks it
    return bytes(broken)


def _broken_deflate(png: bytes) -> bytes:
    import struct
    import zlib

    start, length = _idat(png)
    broken = bytearray(png)
    broken[start + 10 : start + 20] = b"\xff" * 10
    crc = zlib.crc32(bytes(broken[start - 4 : start + length]))  # a valid CRC over the broken stream
    broken[start + length : start + length + 4] = struct.pack(">I", crc)
    return bytes(broken)


def _huge_header(side: int):
    def change(png: bytes) -> bytes:
        import struct
        import zlib

        broken = bytearray(png)
        broken[16:24] = struct.pack(">II", side, side)  # IHDR width and height
        broken[29:33] = struct.pack(">I", zlib.crc32(bytes(broken[12:29])))
        return bytes(broken)

    return change


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (_bad_crc, "cannot be read as an image"),
        (_broken_deflate, "cannot be read as an image"),
        (lambda png: png[: _idat(png)[0] + _idat(png)[1] // 2], "cannot be read as an image"),
        (_huge_header(20_000), "decompression.bomb"),  # over twice PIL's limit: PIL raises its own error
        (_huge_header(10_000), "decompression.bomb"),  # over the limit: PIL only warns
    ],
    ids=["bad-crc", "broken-deflate", "truncated", "bomb-2x", "bomb-1x"],
)
def test_corrupt_images_are_named_at_set_up(fake_dataset, corrupt, message):
    data = fake_dataset()
    path = data / "images" / "pseudo_01" / "frame_0002.png"
    rng = np.random.default_rng(1)
    path.write_bytes(corrupt(_png_bytes(rng.integers(0, 256, size=(16, 16, 4), dtype=np.uint8))))
    with pytest.raises(DatasetError, match=rf"pseudo_01/frame_0002.png: .*{message}"):
        parse(data)


def test_a_json_nested_too_deeply_names_transforms_json(fake_dataset):
    data = fake_dataset()
    (data / TRANSFORMS_NAME).write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DatasetError, match=r"transforms.json: cannot be read as JSON \(nested too deeply\)"):
        parse(data)


def _dataset_image(data: Path, name: str):
    """The RGBA array training gets for the image ``name`` (train split, full resolution)."""
    from ds4d_ns.data.datamanager import Ds4dDataset

    out = parse(data)
    index = [Path(p).relative_to(data).as_posix() for p in out.image_filenames].index(name)
    return Ds4dDataset(out).get_numpy_image(index)


def test_grey_alpha_and_palette_transparency_images_are_read_as_rgba(fake_dataset):
    from PIL import Image

    data = fake_dataset()
    grey, alpha = np.arange(256, dtype=np.uint8).reshape(16, 16), np.full((16, 16), 200, np.uint8)
    Image.fromarray(np.stack([grey, alpha], axis=-1), "LA").save(data / "images/input_00/frame_0001.png")
    image = _dataset_image(data, "images/input_00/frame_0001.png")
    assert image.shape == (16, 16, 4)
    np.testing.assert_array_equal(image[..., :3], np.repeat(grey[..., None], 3, axis=-1))
    np.testing.assert_array_equal(image[..., 3], alpha)
    from ds4d_ns.data.datamanager import Ds4dDataset

    out = parse(data)
    index = [Path(p).relative_to(data).as_posix() for p in out.image_filenames].index("images/input_00/frame_0001.png")
    assert Ds4dDataset(out, scale_factor=0.5).get_numpy_image(index).shape == (8, 8, 4)  # as the -cpu configs scale

    palette = Image.new("P", (16, 16), 0)
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.paste(1, (0, 0, 8, 16))
    palette.save(data / "images/pseudo_00/frame_0002.png", transparency=0)  # colour 0 (red) is transparent
    image = _dataset_image(data, "images/pseudo_00/frame_0002.png")
    assert (image[:, :8] == [0, 0, 255, 255]).all() and (image[:, 8:, 3] == 0).all()


def test_a_16_bit_grey_image_trains_as_its_values_scaled_not_wrapped(fake_dataset):
    from PIL import Image

    from ds4d_ns.data.datamanager import Ds4dDatamanagerConfig

    data = fake_dataset(use_masks=True)
    values = np.linspace(0, 65535, 256).astype(np.uint16).reshape(16, 16)  # every multiple of 257: exact in 8 bits
    values[0, 0] = 65535 - 1  # wraps to 255 modulo 256, must read 255 (not 254) as well
    Image.fromarray(values).save(data / "images/input_00/frame_0001.png")
    assert Image.open(data / "images/input_00/frame_0001.png").mode == "I;16"
    expected = np.rint(values / 257.0).astype(np.uint8)
    image = _dataset_image(data, "images/input_00/frame_0001.png")
    np.testing.assert_array_equal(image[..., :3], np.repeat(expected[..., None], 3, axis=-1))

    # What training receives: the datamanager's cached images, as the method configs cache them.
    config = Ds4dDatamanagerConfig(dataparser=Ds4dDataParserConfig(data=data), cache_images_type="uint8")
    datamanager = config.setup(device="cpu", test_mode="val")
    names = [Path(p).relative_to(data).as_posix() for p in datamanager.train_dataset.image_filenames]
    cached = datamanager.cached_train[names.index("images/input_00/frame_0001.png")]["image"]
    np.testing.assert_array_equal(cached[..., :3].numpy(), np.repeat(expected[..., None], 3, axis=-1))
    mask = np.asarray(Image.open(data / "masks/input_00/frame_0001.png"))
    np.testing.assert_array_equal(cached[..., 3].numpy(), mask)


def test_every_pil_mode_converts_to_rgba_with_its_range():
    from PIL import Image

    from ds4d_ns.data.images import rgba_from_pil

    def first(image):
        return rgba_from_pil(image)[0, 0].tolist()

    assert first(Image.fromarray(np.full((2, 2), 65535, np.uint16))) == [255, 255, 255, 255]  # I;16
    assert first(Image.fromarray(np.full((2, 2), 32896, np.int32))) == [128, 128, 128, 255]  # I (16-bit data)
    assert first(Image.fromarray(np.full((2, 2), 0.5, np.float32))) == [128, 128, 128, 255]  # F in [0, 1]
    assert first(Image.new("CMYK", (2, 2), (0, 255, 0, 0))) == [255, 0, 255, 255]
    assert first(Image.new("1", (2, 2), 1)) == [255, 255, 255, 255]
    assert first(Image.new("YCbCr", (2, 2), (128, 128, 128))) == [128, 128, 128, 255]
    sixteen = Image.fromarray(np.full((2, 2), 7, np.uint16))
    sixteen.info["transparency"] = 7  # a PNG tRNS grey key
    assert first(sixteen) == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="NaN or infinity"):
        rgba_from_pil(Image.fromarray(np.full((2, 2), np.nan, np.float32)))


# ------------------------------------------------------------------ files outside the dataset folder
@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink", "mask", "ply"])
def test_files_outside_the_dataset_are_refused_unless_allowed(fake_dataset, tmp_path, how):
    import shutil

    data = fake_dataset(use_masks=how == "mask")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    secret = outside / "secret.png"
    shutil.copy(data / ("masks" if how == "mask" else "images") / "input_00/frame_0000.png", secret)
    if how == "absolute":
        _edit(data, lambda m: m["frames"][3].__setitem__("file_path", str(secret)))
        expected = r"frames\[3\] file_path"
    elif how == "dotdot":
        _edit(data, lambda m: m["frames"][3].__setitem__("file_path", "../elsewhere/secret.png"))
        expected = r"frames\[3\] file_path '\.\./elsewhere/secret\.png'"
    elif how == "symlink":
        meta = json.loads((data / TRANSFORMS_NAME).read_text())
        link = data / meta["frames"][3]["file_path"]
        link.unlink()
        link.symlink_to(secret)
        expected = r"frames\[3\] file_path"
    elif how == "mask":
        _edit(data, lambda m: m["frames"][3].__setitem__("mask_path", str(secret)))
        expected = r"frames\[3\] mask_path"
    else:
        shutil.copy(data / "init.ply", outside / "points.ply")
        _edit(data, lambda m: m.__setitem__("ply_file_path", "../elsewhere/points.ply"))
        expected = r"transforms.json: ply_file_path"
    with pytest.raises(DatasetError, match=expected + r".* leads outside the dataset folder .*--allow-outside-paths"):
        parse(data)
    assert len(parse(data, allow_outside_paths=True).image_filenames) == 9
    if how == "absolute":  # what counts is where a path leads: an absolute path into the folder is fine
        inside = str(data.resolve() / "images/input_00/frame_0001.png")
        _edit(data, lambda m: m["frames"][3].__setitem__("file_path", inside))
        assert len(parse(data).image_filenames) == 9


def test_the_datamanager_names_the_dataparser_when_cameras_lack_ds4d_frames(fake_dataset, monkeypatch):
    """Another dataparser chosen on the command line gives cameras without times and frames."""
    from ds4d_ns.data.datamanager import Ds4dDatamanagerConfig
    from ds4d_ns.dataparsers.ds4d_dataparser import Ds4dDataParser, Ds4dDataParserConfig
    from ds4d_ns.errors import UserError

    parse = Ds4dDataParser._generate_dataparser_outputs

    def without_frames(self, *args, **kwargs):
        outputs = parse(self, *args, **kwargs)
        outputs.cameras.metadata = None
        outputs.cameras.times = None
        return outputs

    monkeypatch.setattr(Ds4dDataParser, "_generate_dataparser_outputs", without_frames)
    config = Ds4dDatamanagerConfig(dataparser=Ds4dDataParserConfig(data=fake_dataset(frames=2)))
    with pytest.raises(UserError, match="ds4d-data dataparser"):
        config.setup(device="cpu", test_mode="val")
