"""The ds4d-data dataparser: splits, cameras, times, seed points and every bad input it must name."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ds4d_ns.dataparsers.ds4d_dataparser import DatasetError, Ds4dDataParserConfig

from ds4d_ns.data.dataset_format import ROLE_CODES, TRANSFORMS_NAME


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
