"""The dataset vocabulary (``ds4d_ns.data.dataset_format``) is the one definition that writers and
readers agree on: the middle frame, frame times, roles and their default, image paths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ds4d_ns.data.dataset_format import ROLE_CODES, TRANSFORMS_NAME, image_path
from ds4d_ns.dataparsers.ds4d_dataparser import Ds4dDataParserConfig


def _datamanager(data: Path):
    from ds4d_ns.data.datamanager import Ds4dDatamanagerConfig

    config = Ds4dDatamanagerConfig(dataparser=Ds4dDataParserConfig(data=data), cache_images_type="uint8")
    datamanager = config.setup(device="cpu", test_mode="val")
    datamanager.static_stage_steps = 5  # as the pipeline hands over the model's
    return datamanager


def _tiny_model(datamanager, feature_bank=None):
    from ds4d_ns.ds4d_model import Ds4dModelConfig
    from ds4d_ns.features.feature_bank import FEATURE_BANK_KEY

    config = Ds4dModelConfig(hexplane_resolution=4, hexplane_multires=(1,), hexplane_features=2, deformation_width=8)
    outputs = datamanager.train_dataparser_outputs
    metadata = outputs.metadata if feature_bank is None else {**outputs.metadata, FEATURE_BANK_KEY: feature_bank}
    return config.setup(scene_box=outputs.scene_box, num_train_data=len(outputs.image_filenames), metadata=metadata)


@pytest.mark.parametrize("num_frames", [26, 30, 32])
def test_seed_points_static_stage_dsfd_reference_and_canonical_time_share_the_middle_frame(tmp_path, num_frames):
    from ds4d_ns.features.frame_features import frame_grid_from_dataset
    from ds4d_ns.synth.generate import generate_dataset

    data = tmp_path / "data"
    generate_dataset(data, frames=num_frames, resolution=8, steps=2, num_points=32)
    meta = json.loads((data / TRANSFORMS_NAME).read_text())
    ply_frame, ply_time = meta["ply_frame_index"], meta["ply_time"]  # the frame init.ply was sampled on

    datamanager = _datamanager(data)
    assert datamanager.middle_frame == ply_frame
    _, batch = datamanager.next_train(0)  # the static stage serves the canonical frame
    assert float(batch["time"]) == pytest.approx(ply_time)

    grid = frame_grid_from_dataset(datamanager.train_dataset)  # the pipeline's DSFD reference is its middle row
    assert float(grid.times[grid.middle_frame]) == pytest.approx(ply_time)

    assert _tiny_model(datamanager).canonical_time == pytest.approx(ply_time)  # cameras without a time


@pytest.mark.parametrize("num_frames", [26, 30])
def test_ds4d_process_carves_the_seed_points_on_the_middle_frame_training_uses(tmp_path, monkeypatch, num_frames):
    from PIL import Image

    from ds4d_ns.io.writers import write_png_atomic
    from ds4d_ns.process import visual_hull
    from ds4d_ns.process.run import ProcessConfig, process

    source = tmp_path / "frames"
    for k in range(num_frames):  # a square moving right: every frame's mask differs
        image = np.zeros((40, 64, 4), dtype=np.uint8)
        image[12:28, 2 + k : 14 + k] = (200, 40, 40, 255)
        write_png_atomic(source / f"{k}.png", image)
    tile = np.zeros((48, 32, 4), dtype=np.uint8)
    tile[..., :3] = 128
    for row in range(3):
        tile[16 * row + 4 : 16 * row + 12, 4:28] = (200, 40, 40, 255)
    for k in range(num_frames):
        write_png_atomic(tmp_path / "views" / f"{k}.png", tile)
    carved = []
    real_carve = visual_hull.carve
    monkeypatch.setattr(visual_hull, "carve", lambda masks, *a, **k: carved.append(masks) or real_carve(masks, *a, **k))
    out = tmp_path / "dataset"
    config = ProcessConfig(
        input=source,
        output=out,
        num_frames=num_frames,
        resolution=16,
        pseudo_views=tmp_path / "views",
        pseudo_release="v1.1",
        min_view_agreement=0.0,  # bars of any height: this test is about which frame is carved
        num_points=50,
        hull_resolution=8,
        device="cpu",
    )
    process(config)

    middle = _datamanager(out).middle_frame
    input_alpha = np.asarray(Image.open(out / image_path("input", 0, middle)))[..., 3] / 255.0
    np.testing.assert_allclose(carved[0][0].numpy(), input_alpha, atol=1e-6)  # carved on that frame's input mask
    assert json.loads((out / TRANSFORMS_NAME).read_text())["ply_frame_index"] == middle


def test_a_batch_without_roles_counts_as_input_views_for_every_loss(fake_dataset):
    """One default for a missing role: the photometric weight and LPIPS treat such views alike (as input)."""
    from ds4d_ns.guidance.priors import SdsConfig, TrainingPriors

    datamanager = _datamanager(fake_dataset(frames=2, pseudo_views=2))
    model = _tiny_model(datamanager)
    model.config.pseudo_rgb_weight, model.config.input_rgb_weight = 0.25, 0.75
    model.eval()  # the photometric term alone (no regularisers, no priors)
    outputs = {"rgb": torch.rand(3, 8, 8, 3), "background": torch.ones(3), "accumulation": torch.ones(3, 8, 8, 1)}
    image = torch.rand(3, 8, 8, 3)

    def rgb_loss(batch):
        return model.get_loss_dict(outputs, {"image": image, **batch})["rgb_loss"]

    unlabelled = rgb_loss({})
    torch.testing.assert_close(unlabelled, rgb_loss({"role": torch.full((3,), ROLE_CODES["input"])}))
    assert not torch.allclose(unlabelled, rgb_loss({"role": torch.full((3,), ROLE_CODES["pseudo"])}))

    class CountingLpips(torch.nn.Module):
        calls = 0

        def forward(self, a, b):
            CountingLpips.calls += 1
            return torch.zeros(a.shape[0], 1, 1, 1)

    priors = TrainingPriors(lpips_weight=1.0, sds=SdsConfig(), lpips=CountingLpips())
    images = torch.rand(3, 8, 8, 3)
    assert priors.lpips_loss(images, images, None) == {}
    assert CountingLpips.calls == 0
    labelled = torch.tensor([ROLE_CODES["input"], ROLE_CODES["pseudo"], ROLE_CODES["pseudo"]])
    assert "lpips_loss" in priors.lpips_loss(images, images, labelled)


def test_the_input_views_index_survives_a_checkpoint(fake_dataset):
    """TSSF trusts the input view most: its index comes from the roles at training and is kept in checkpoints
    (a model rebuilt from one used to assume view 0)."""
    from ds4d_ns.features.feature_bank import FeatureBank, FrameFeaturesConfig, feature_bank_from_state
    from ds4d_ns.features.frame_features import frame_grid_from_dataset

    datamanager = _datamanager(fake_dataset(frames=2, pseudo_views=2))
    grid = frame_grid_from_dataset(datamanager.train_dataset)
    assert grid.view_roles[grid.front_view] == "input" and grid.view_names[grid.front_view] == "input_00"

    config = FrameFeaturesConfig(mode="dsfd", dim=4)
    frames, views = 2, 3

    def bank(front_view: int) -> FeatureBank:
        eye4, eye3 = torch.eye(4).repeat(frames, views, 1, 1), torch.eye(3).repeat(frames, views, 1, 1)
        maps, magnitude = torch.rand(frames, views, 4, 2, 2), torch.rand(frames, views, 2, 2)
        return FeatureBank(config, maps, magnitude, torch.tensor([0.0, 1.0]), eye4, eye3, 16, 16, front_view)

    state = _tiny_model(datamanager, bank(front_view=2)).state_dict()
    from_checkpoint = _tiny_model(datamanager, feature_bank_from_state(state, config))  # as ds4d-render builds it
    from_checkpoint.load_state_dict(state)
    assert from_checkpoint.frame_point_features.fusion.front_view == 2
    from_dataset = _tiny_model(datamanager, bank(front_view=0))  # as ns-eval builds it, then loads the checkpoint
    from_dataset.load_state_dict(state)
    assert from_dataset.frame_point_features.fusion.front_view == 2
    older = {k: v for k, v in state.items() if not k.endswith("front_view")}
    restored = _tiny_model(datamanager, feature_bank_from_state(older, config))
    restored.load_state_dict(older)  # checkpoints from before the index was kept: the input came first
    assert restored.frame_point_features.fusion.front_view == 0
