"""One schedule: the stages' lengths and the run's length are the sources; every other step count follows."""

from __future__ import annotations

import pytest
import torch

from ds4d_ns.errors import UserError
from ds4d_ns.method_configs.ds4d_config import make_ds4d_config
from ds4d_ns.schedule import TrainingSchedule, settle_schedule


def _decays(config) -> set:
    return {entry["scheduler"].max_steps for entry in config.optimizers.values() if entry["scheduler"] is not None}


def test_the_factory_takes_every_step_count_from_one_schedule():
    config = make_ds4d_config(static_steps=1000, dynamic_steps=6000)
    model = config.pipeline.model
    assert (model.static_stage_steps, config.max_num_iterations) == (1000, 7000)
    assert (model.warmup_length, model.stop_split_at, _decays(config)) == (500, 6000, {7000})
    assert not hasattr(config.pipeline.datamanager, "static_stage_steps")  # the model's is the one source
    assert settle_schedule(config) is None  # the factory's schedule agrees with itself


def test_the_datamanager_changes_stage_at_the_models_step(fake_dataset):
    config = make_ds4d_config(method_name="ds4d-base-cpu", static_steps=3, dynamic_steps=4, cpu=True, priors=False)
    config.pipeline.datamanager.frame_features.mode = "none"
    config.pipeline.model.static_stage_steps = 2  # --pipeline.model.static-stage-steps 2
    config.pipeline.datamanager.dataparser.data = fake_dataset(frames=3)
    pipeline = config.pipeline.setup(device="cpu", test_mode="val")
    datamanager = pipeline.datamanager
    assert datamanager.static_stage_steps == 2
    middle_time = 0.5  # frame 1 of 3
    assert [float(datamanager.next_train(step)[1]["time"]) for step in (0, 1)] == [middle_time, middle_time]
    served = {float(datamanager.next_train(step)[1]["time"]) for step in range(2, 5)}
    assert served == {0.0, 0.5, 1.0}  # the dynamic stage serves every frame from step 2


def test_a_shorter_run_shortens_every_derived_step_count():
    config = make_ds4d_config(static_steps=100, dynamic_steps=600)
    config.max_num_iterations = 350  # --max-num-iterations 350
    note = settle_schedule(config)
    expected = TrainingSchedule(100, 250)
    model = config.pipeline.model
    assert (model.warmup_length, model.stop_split_at, _decays(config)) == (35, 300, {350})
    assert (model.warmup_length, model.stop_split_at) == (expected.warmup_length, expected.stop_split_at)
    assert note is not None and "100 static + 250 dynamic" in note

    config.max_num_iterations = 2  # a smoke run, shorter than the static stage: the canonical Gaussians only
    assert "2 static + 0 dynamic" in settle_schedule(config)
    assert (config.pipeline.model.warmup_length, config.pipeline.model.stop_split_at, _decays(config)) == (0, 1, {2})


@pytest.mark.parametrize(
    "change, flag",
    [
        (lambda c: setattr(c.pipeline.model, "warmup_length", 10), "--pipeline.model.warmup-length"),
        (lambda c: setattr(c.pipeline.model, "stop_split_at", 10), "--pipeline.model.stop-split-at"),
        (lambda c: setattr(c.optimizers["means"]["scheduler"], "max_steps", 10), "max-steps"),
        (lambda c: setattr(c.pipeline.model, "static_stage_steps", -1), "--pipeline.model.static-stage-steps -1"),
    ],
)
def test_a_value_set_apart_from_the_schedule_is_a_user_error_naming_the_flag(change, flag):
    config = make_ds4d_config()
    change(config)
    with pytest.raises(UserError, match=flag):
        settle_schedule(config)


def test_ns_train_stops_on_a_contradicting_schedule_with_one_line_and_exit_2(fake_dataset, tmp_path, capsys):
    config = make_ds4d_config(method_name="ds4d-base-cpu", static_steps=3, dynamic_steps=4, cpu=True, priors=False)
    config.pipeline.datamanager.dataparser.data = fake_dataset()
    config.output_dir = tmp_path / "outputs"
    config.pipeline.model.stop_split_at = 1
    with pytest.raises(SystemExit) as stopped:
        config.save_config()
    assert stopped.value.code == 2
    assert "--pipeline.model.stop-split-at" in capsys.readouterr().out
    assert not (tmp_path / "outputs").exists()


def test_a_frames_batch_and_the_cached_images_are_one_copy(fake_dataset):
    config = make_ds4d_config(method_name="ds4d-base-cpu", static_steps=1, dynamic_steps=4, cpu=True, priors=False)
    config.pipeline.datamanager.frame_features.mode = "none"
    config.pipeline.datamanager.pseudo_views_per_step = None  # every view of a frame: the cached batches
    config.pipeline.datamanager.dataparser.data = fake_dataset(frames=3)
    datamanager = config.pipeline.setup(device="cpu", test_mode="val").datamanager
    before = {i: entry["image"].clone() for i, entry in enumerate(datamanager.cached_train)}
    for step in range(1, 4):  # the dynamic stage: every frame once
        _, batch = datamanager.next_train(step)
        for row, image_idx in enumerate(batch["image_idx"].tolist()):
            cached = datamanager.cached_train[image_idx]["image"]
            assert cached.data_ptr() == batch["image"][row].data_ptr()  # a view of the batch, not a copy
            assert torch.equal(cached, before[image_idx])
