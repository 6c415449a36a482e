"""End to end on the CPU: nerfstudio's trainer on a tiny ds4d-synth scene, then the tools on the result.

One module-scoped run trains ``ds4d`` (DSFD features + distance-aware TSSF, with a tiny random
DINOv2 built offline) a few dozen steps through the same code path as ``ns-train``
(``TrainerConfig.setup`` + ``Trainer.setup`` + ``Trainer.train``); the tests after it use its
checkpoint with ``ns-eval``, ``ns-render``, ``ds4d-render``, ``ds4d-export`` and ``ds4d-viz``.
Shorter runs cover ``ds4d-ga``, ``ds4d-base`` and the feature options.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch
from conftest import ds4d_parts

from ds4d_ns.data.dataset_format import ROLE_CODES
from ds4d_ns.method_configs.ds4d_config import make_ds4d_config
from ds4d_ns.scripts.synth import SynthConfig
from ds4d_ns.scripts.synth import main as synth_main

STATIC_STEPS, DYNAMIC_STEPS = 15, 45


@dataclass
class TrainedRun:
    config_path: Path
    losses: List[Dict[str, float]]
    psnr_before: float
    psnr_after: float
    data: Path


def tiny_scene(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("scene") / "data"
    synth_main(SynthConfig(output=data, scene="windmill", frames=4, resolution=64, seed=0, num_points=1500))
    return data


def small_config(
    data: Path, output_dir: Path, dinov2: Path, static_steps: int, dynamic_steps: int, timestamp: str, **factory_args
):
    """A CPU ds4d configuration at 32 px with the tiny DINOv2 as frame-feature backbone."""
    factory_args.setdefault("priors", False)  # LPIPS needs VGG weights: on only where a test sets it up
    config = make_ds4d_config(
        method_name="ds4d-cpu", static_steps=static_steps, dynamic_steps=dynamic_steps, cpu=True, **factory_args
    )
    config.output_dir = output_dir
    config.experiment_name = "tiny"
    config.timestamp = timestamp
    config.vis = "tensorboard"
    config.steps_per_eval_image = 10_000
    config.steps_per_eval_all_images = 10_000
    datamanager, model = ds4d_parts(config)
    datamanager.data = data
    datamanager.camera_res_scale_factor = 0.5  # 32 px keeps the test short
    model.eval_lpips = False
    datamanager.frame_features.extractor.model_id = str(dinov2)
    datamanager.frame_features.extractor.image_size = 56
    config.save_config()
    return config


def record_training_losses(model) -> List[Dict[str, float]]:
    """The loss terms of every training step ``model`` computes from now on (a list filled as it trains)."""
    losses: List[Dict[str, float]] = []
    get_loss_dict = model.get_loss_dict

    def recording(outputs, batch, metrics_dict=None):
        loss_dict = get_loss_dict(outputs, batch, metrics_dict)
        if model.training:
            losses.append({key: float(value) for key, value in loss_dict.items()})
        return loss_dict

    model.get_loss_dict = recording
    return losses


def with_lpips_and_sds(config, zero123: Path):
    """``config`` with LPIPS (random VGG) and SDS (the tiny Zero123, 16 px renders, both conditions weighted 1)."""
    model_config = config.pipeline.model
    model_config.lpips_backbone = "random-init"
    model_config.sds.weight = 1.0
    model_config.sds.pseudo_condition_weight = model_config.sds.input_condition_weight = 1.0
    model_config.sds.model_id = str(zero123)
    model_config.sds.resolution = 16
    return config


def seeded_training(config):
    """Train ``config`` from fixed seeds; its per-step losses and the trained model."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    losses = record_training_losses(trainer.pipeline.model)
    trainer.train()
    return losses, trainer.pipeline.model


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return tiny_scene(tmp_path_factory)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, scene: Path, tiny_dinov2: Path) -> TrainedRun:
    root = tmp_path_factory.mktemp("training")
    data = scene
    config = small_config(data, root / "outputs", tiny_dinov2, STATIC_STEPS, DYNAMIC_STEPS, "run")
    frame_features = config.pipeline.datamanager.frame_features
    assert (frame_features.mode, frame_features.fusion) == ("dsfd", "da")
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    model = trainer.pipeline.model
    psnr_before = trainer.pipeline.get_average_eval_image_metrics()["psnr"]

    losses = record_training_losses(model)
    trainer.train()
    psnr_after = trainer.pipeline.get_average_eval_image_metrics()["psnr"]
    return TrainedRun(config.get_base_dir() / "config.yml", losses, psnr_before, psnr_after, data)


def test_training_lowers_the_loss_and_raises_eval_psnr(trained_run: TrainedRun):
    totals = [sum(step.values()) for step in trained_run.losses]
    assert len(totals) == STATIC_STEPS + DYNAMIC_STEPS
    assert all(np.isfinite(totals))
    assert np.mean(totals[-5:]) < 0.8 * np.mean(totals[:5])
    assert trained_run.psnr_after > trained_run.psnr_before + 1.0


def test_dynamic_stage_adds_the_hexplane_terms(trained_run: TrainedRun):
    static, dynamic = trained_run.losses[0], trained_run.losses[-1]
    assert set(static) == {"rgb_loss", "mask_loss"}
    assert {"plane_tv", "time_smoothness", "time_l1"} <= set(dynamic)


def test_checkpoint_carries_the_feature_maps_and_the_fusion(trained_run: TrainedRun):
    checkpoints = sorted((trained_run.config_path.parent / "nerfstudio_models").glob("step-*.ckpt"))
    state = torch.load(checkpoints[-1], map_location="cpu", weights_only=True)["pipeline"]
    maps = state["_model.frame_point_features.maps"]
    assert maps.shape[:3] == (4, 7, 32)  # frames, input + 6 pseudo views, PCA channels
    fusion_values = [state["_model.frame_point_features.fusion.log_temperature"]]
    fusion_values.append(state["_model.frame_point_features.fusion.front_logit"])
    assert any(float(value) != 0.0 for value in fusion_values)  # TSSF was trained in the dynamic stage
    trunk = state["_model.deformation.trunk.0.weight"]
    assert trunk.shape[1] == 16 + 32  # HexPlane feature (16 channels at one scale) + fused point feature


def test_feature_model_renders_at_times_between_frames(trained_run: TrainedRun):
    from ds4d_ns.scripts.loading import load_trained_pipeline

    pipeline, _ = load_trained_pipeline(trained_run.config_path)
    model = pipeline.model
    with torch.no_grad():
        # halfway between frames 1 and 2 (times 1/3, 2/3) the per-view features are the average
        at_frames = [model.frame_point_features.per_view(model.means, t)[0] for t in (1 / 3, 2 / 3)]
        between = model.frame_point_features.per_view(model.means, 0.5)[0]
        torch.testing.assert_close(between, 0.5 * (at_frames[0] + at_frames[1]), atol=1e-5, rtol=1e-4)
        means = model.gaussians_at(0.5).means
    assert torch.isfinite(means).all()


@pytest.mark.parametrize("sampling_points", ["canonical", "deformed"])
def test_a_training_steps_features_and_deformation_read_nothing_back_from_the_device(
    trained_run: TrainedRun, sampling_points: str
):
    """On a GPU a training step's time is a device tensor: the step's deformation with its frame features
    (their frame bracket included) must not read a value back to the host, which would stall the kernels queued ahead.
    Counted here at the dispatcher on the CPU (``aten._local_scalar_dense`` is what ``float()``, ``.item()``
    and ``bool()`` of a tensor dispatch to); the result equals the Python-time path's."""
    from conftest import dispatched_operations

    from ds4d_ns.scripts.loading import load_trained_pipeline

    pipeline, _ = load_trained_pipeline(trained_run.config_path)
    model = pipeline.model
    model.feature_sampling_points = sampling_points
    model.train()
    time = torch.tensor(2 / 3)  # frame 2 of 4, a float32 camera time
    with dispatched_operations() as seen:
        geometry, regularisers = model.deformation_step(model.means, model.quats, model.scales, time, sampling_points)
    assert seen.host_reads == []
    reference = model.frame_features_at(float(time)).features  # the Python-time path (frames found on the host)
    expected = model.deformation(model.means, model.quats, model.scales, float(time), reference)
    torch.testing.assert_close(geometry.means, expected.means)
    torch.testing.assert_close(geometry.quats, expected.quats)
    assert set(regularisers) == {"plane_tv", "time_smoothness", "time_l1"}


def test_ds4d_viz_writes_heatmaps_and_fusion_weights(trained_run: TrainedRun, tmp_path):
    from PIL import Image

    from ds4d_ns.scripts.viz import VizFeatures

    paths = VizFeatures(load_config=trained_run.config_path, output_dir=tmp_path, frames=(0, 3), resolution=24).main()
    assert sorted(p.relative_to(tmp_path).as_posix() for p in paths) == [
        "dynamic_features/frame_0000.png",
        "dynamic_features/frame_0003.png",
        "tssf_weights/frame_0000.png",
        "tssf_weights/frame_0003.png",
    ]
    heat = np.asarray(Image.open(tmp_path / "dynamic_features/frame_0003.png"))
    weights = np.asarray(Image.open(tmp_path / "tssf_weights/frame_0000.png"))
    assert heat.shape == (24, 24 * 7, 3) and weights.shape == (24, 24 * 7, 3)
    assert weights.std() > 5  # Gaussians drawn, not an empty image


@pytest.mark.parametrize(
    ("name", "factory_args", "feature_overrides"),
    [
        ("ds4d-ga", {"fusion": "ga"}, {}),
        ("ds4d-base", {"frame_features": "none"}, {}),
        (
            "frame-front-linear-deformed",
            {"frame_features": "frame", "fusion": "front"},
            {"reduction": "linear", "sampling_points": "deformed"},
        ),
    ],
)
def test_other_feature_configurations_train(scene, tiny_dinov2, tmp_path, name, factory_args, feature_overrides):
    config = small_config(scene, tmp_path, tiny_dinov2, 3, 6, name, **factory_args)
    for key, value in feature_overrides.items():
        setattr(config.pipeline.datamanager.frame_features, key, value)
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    model = trainer.pipeline.model
    initial = {k: v.detach().clone() for k, v in model.state_dict().items() if "frame_point_features" in k}
    trainer.train()
    head = model.deformation.position_head[-1].weight
    assert torch.isfinite(head).all() and head.abs().sum() > 0  # the deformation was trained
    if factory_args.get("frame_features") == "none":
        assert model.frame_point_features is None
        return
    learnt = [k for k, v in model.state_dict().items() if k in initial and not torch.equal(v, initial[k])]
    if name == "ds4d-ga":
        assert "frame_point_features.fusion.score.weight" in learnt
    else:
        assert "frame_point_features.reduction.weight" in learnt


def test_checkpoint_loads_with_weights_only(trained_run: TrainedRun):
    checkpoints = sorted((trained_run.config_path.parent / "nerfstudio_models").glob("step-*.ckpt"))
    assert checkpoints
    state = torch.load(checkpoints[-1], map_location="cpu", weights_only=True)
    assert any(key.startswith("_model.deformation.") for key in state["pipeline"])
    assert any(key.startswith("_model.frame_point_features.") for key in state["pipeline"])


def test_a_run_set_up_for_evaluation_has_the_checkpoints_feature_shapes_before_loading_it(
    trained_run: TrainedRun, monkeypatch
):
    """eval_setup (ns-eval, ns-render, the viewer) builds the pipeline, then loads the checkpoint: the model is
    built with feature buffers of the trained shape from the configuration, and no backbone runs."""
    from ds4d_ns.features import frame_features
    from ds4d_ns.scripts.loading import read_run_config

    def no_backbone(*args, **kwargs):
        raise AssertionError("evaluation needs no feature backbone")

    monkeypatch.setattr(frame_features, "load_backbone", no_backbone)
    monkeypatch.setattr(frame_features, "extract_raw_features", no_backbone)
    pipeline = read_run_config(trained_run.config_path).pipeline.setup(device="cpu", test_mode="test")
    checkpoints = sorted((trained_run.config_path.parent / "nerfstudio_models").glob("step-*.ckpt"))
    state = torch.load(checkpoints[-1], map_location="cpu", weights_only=True)["pipeline"]
    built = {f"_model.{name}": value for name, value in pipeline.model.state_dict().items()}
    features = [name for name in state if name.startswith("_model.frame_point_features.")]
    assert features and all(built[name].shape == state[name].shape for name in features)
    pipeline.load_pipeline(state, 0)
    torch.testing.assert_close(pipeline.model.frame_point_features.maps, state["_model.frame_point_features.maps"])


def test_ns_eval_reports_psnr_ssim_and_says_why_lpips_is_missing(trained_run: TrainedRun, tmp_path, capsys):
    from nerfstudio.scripts.eval import ComputePSNR

    output = tmp_path / "eval.json"
    ComputePSNR(load_config=trained_run.config_path, output_path=output).main()
    results = json.loads(output.read_text())["results"]
    assert results["psnr"] > 10 and 0 < results["ssim"] <= 1
    assert "lpips" not in results  # eval_lpips is off in this run: no number from random weights


def test_ds4d_render_writes_orbit_and_named_view_videos(trained_run: TrainedRun, tmp_path):
    from ds4d_ns.io.video import read_video_frames
    from ds4d_ns.scripts.render import RenderOrbit, RenderViews

    orbit = RenderOrbit(
        load_config=trained_run.config_path, output_dir=tmp_path, resolution=32, num_frames=6, time=0.25
    )
    (orbit_path,) = orbit.main()
    frames = read_video_frames(orbit_path)
    assert frames.shape == (6, 32, 32, 3)
    assert frames.std() > 5  # an object, not a blank background
    named = RenderViews(load_config=trained_run.config_path, output_dir=tmp_path, resolution=32, num_times=4)
    paths = named.main()
    assert [p.name for p in paths] == ["front.mp4", "right.mp4", "back.mp4", "left.mp4"]
    # 4 times played forward and back twice (0 1 2 3 2 1, twice, then 0): 13 frames
    assert all(read_video_frames(p).shape == (13, 32, 32, 3) for p in paths)
    once = RenderViews(
        load_config=trained_run.config_path, output_dir=tmp_path, resolution=32, num_times=4, loops=0
    ).main()
    assert all(read_video_frames(p).shape == (4, 32, 32, 3) for p in once)


def test_ns_render_camera_path_honours_render_time(trained_run: TrainedRun, tmp_path, monkeypatch):
    from nerfstudio.scripts.render import RenderCameraPath

    from ds4d_ns import camera_layouts
    from ds4d_ns.ds4d_model import Ds4dModel

    requested_times: List[float] = []
    playback_geometry = Ds4dModel.playback_geometry  # the render's time, before the playback cache

    def spy(self, time):
        requested_times.append(round(float(time), 6))
        return playback_geometry(self, time)

    monkeypatch.setattr(Ds4dModel, "playback_geometry", spy)
    c2w = np.eye(4)
    c2w[:3] = camera_layouts.orbit_c2w(camera_layouts.input_view()).numpy()
    frame = {"camera_to_world": c2w.reshape(-1).tolist(), "fov": camera_layouts.INPUT_FOVY_DEG, "aspect": 1.0}
    path = {
        "camera_type": "perspective",
        "render_height": 32,
        "render_width": 32,
        "seconds": 3,
        "camera_path": [dict(frame, render_time=t) for t in (0.0, 0.25, 1.0)],
    }
    path_file = tmp_path / "path.json"
    path_file.write_text(json.dumps(path))
    out_dir = tmp_path / "frames"
    RenderCameraPath(
        load_config=trained_run.config_path, camera_path_filename=path_file, output_path=out_dir, output_format="images"
    ).main()
    assert requested_times == [0.0, 0.25, 1.0]
    images = sorted(out_dir.glob("*.jpg"))
    assert len(images) == 3
    from PIL import Image

    first = np.asarray(Image.open(images[0]), dtype=np.float32)
    assert first.shape == (32, 32, 3) and first.std() > 5  # the object, not an empty frame


def test_ds4d_export_writes_one_splat_ply_per_time(trained_run: TrainedRun, tmp_path):
    from plyfile import PlyData

    from ds4d_ns.scripts.export import ExportGaussianSequence

    paths = ExportGaussianSequence(load_config=trained_run.config_path, output_dir=tmp_path).main()
    assert len(paths) == 4  # one per training frame
    manifest = json.loads((tmp_path / "times.json").read_text())
    assert [f["time"] for f in manifest["frames"]] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    first, last = (PlyData.read(str(p))["vertex"] for p in (paths[0], paths[-1]))
    names = first.data.dtype.names
    for required in ("x", "y", "z", "f_dc_0", "f_dc_2", "f_rest_0", "opacity", "scale_0", "rot_3"):
        assert required in names
    assert len([n for n in names if n.startswith("f_rest_")]) == 9  # sh degree 1: 3 coefficients x 3 colours
    quats = np.stack([first[f"rot_{i}"] for i in range(4)], axis=-1)
    np.testing.assert_allclose(np.linalg.norm(quats, axis=-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first["opacity"], last["opacity"])  # opacity is not deformed
    moved = np.abs(np.asarray(first["x"]) - np.asarray(last["x"])).max()
    assert moved > 0  # positions are deformed by time


def test_lpips_and_sds_train_and_stay_finite(scene, tiny_dinov2, tiny_zero123, tmp_path):
    config = small_config(scene, tmp_path, tiny_dinov2, 2, 4, "priors", priors=True)
    model_config = config.pipeline.model
    assert model_config.lpips_loss_weight == 1.0 and model_config.sds.weight == 0.0  # CPU: SDS off by default
    with_lpips_and_sds(config, tiny_zero123)
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    model = trainer.pipeline.model
    losses = record_training_losses(model)
    canonical = model.means.detach().clone()
    trainer.train()
    assert all("lpips_loss" in step for step in losses)
    assert ["sds_loss" in step for step in losses] == [False, False, True, True, True, True]
    assert all(np.isfinite(list(step.values())).all() for step in losses)
    assert torch.isfinite(model.means).all() and not torch.equal(model.means.detach(), canonical[: len(model.means)])


def test_cpu_steps_serve_the_input_and_one_random_pseudo_view_after_the_static_stage(scene, tiny_dinov2, tmp_path):
    config = small_config(scene, tmp_path, tiny_dinov2, 2, 40, "views-per-step", frame_features="none")
    assert config.pipeline.datamanager.pseudo_views_per_step == 1  # the CPU configurations' setting
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    datamanager = trainer.pipeline.datamanager
    input_code, pseudo_code = ROLE_CODES["input"], ROLE_CODES["pseudo"]
    static_roles = datamanager.next_train(0)[1]["role"].tolist()
    assert static_roles.count(input_code) == 1 and static_roles.count(pseudo_code) == 6  # every view
    served = set()
    for step in range(2, 42):
        cameras, batch = datamanager.next_train(step)
        roles = batch["role"].tolist()
        assert sorted(roles) == [input_code, pseudo_code] and len(cameras) == 2
        assert len(set(cameras.times.view(-1).tolist())) == 1  # one time per step
        served.update(int(i) for i, role in zip(batch["image_idx"], roles) if role == pseudo_code)
    assert len(served) > 6  # over the steps, pseudo views of many frames and cameras are drawn


def test_sds_gradient_reaches_the_gaussians(scene, tiny_dinov2, tiny_zero123, tmp_path, monkeypatch):
    config = small_config(scene, tmp_path, tiny_dinov2, 0, 1, "sds-grad", frame_features="none")
    config.pipeline.model.sds.weight = 1.0
    config.pipeline.model.sds.model_id = str(tiny_zero123)
    config.pipeline.model.sds.resolution = 16
    config.pipeline.datamanager.pseudo_views_per_step = None  # the layout check below needs every pseudo view
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    model = trainer.pipeline.model
    model.train()
    cameras, batch = trainer.pipeline.datamanager.next_train(0)
    from ds4d_ns.guidance import anchoring

    seen = {}
    sample = anchoring.sample_sds_view

    def spy(rng, pseudo_views, **kwargs):
        seen["pseudo"], seen["input_elevation"] = pseudo_views, kwargs["input_elevation_deg"]
        return sample(rng, pseudo_views, **kwargs)

    monkeypatch.setattr(anchoring, "sample_sds_view", spy)
    outputs = model._render_at_time(cameras, float(batch["time"]), densify=False)  # the step's render, as get_outputs
    geometries = []
    render_at_time = model._render_at_time

    def recording_render(camera, time, densify=True, geometry=None):
        geometries.append(geometry)
        return render_at_time(camera, time, densify=densify, geometry=geometry)

    monkeypatch.setattr(model, "_render_at_time", recording_render)
    sds_only = model.get_loss_dict(outputs, batch)["sds_loss"]
    assert len(geometries) == 1 and geometries[0] is outputs["geometry"]  # the step's deformation, passed along
    # the Zero123++ v1.2 layout, relative to the input camera, as recovered from the batch's poses
    assert [round(az) for az, _ in seen["pseudo"]] == [30, 90, 150, -150, -90, -30]
    assert [round(el) for _, el in seen["pseudo"]] == [20, -10, 20, -10, 20, -10]
    assert abs(seen["input_elevation"]) < 1e-4
    sds_only.backward()
    assert model.gauss_params["features_dc"].grad is not None
    assert model.gauss_params["features_dc"].grad.abs().sum() > 0

    # Zero123's condition of an image is encoded once: the same view drawn again (same view draw, same
    # SDS noise) reuses it and gives the same loss as the first, freshly encoded call
    priors = model.priors
    encoded = []
    embed_condition = priors.zero123.embed_condition
    monkeypatch.setattr(priors.zero123, "embed_condition", lambda image: encoded.append(1) or embed_condition(image))
    priors._conditions.clear()
    losses = []
    for _ in range(2):
        priors._view_rng = random.Random(7)
        torch.manual_seed(0)
        losses.append(float(model.get_loss_dict(outputs, batch)["sds_loss"]))
    assert len(encoded) == 1 and len(priors._conditions) == 1
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


def test_training_metrics_are_computed_only_on_the_steps_nerfstudio_logs(scene, tiny_dinov2, tmp_path):
    config = small_config(scene, tmp_path, tiny_dinov2, 2, 5, "metrics-every", frame_features="none")
    config.logging.steps_per_log = 3
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    assert trainer.pipeline.metrics_every == 3
    model = trainer.pipeline.model
    metric_steps, loss_steps = [], []
    get_metrics_dict, get_loss_dict = model.get_metrics_dict, model.get_loss_dict

    def recording_metrics(outputs, batch):
        metric_steps.append(model.step)
        return get_metrics_dict(outputs, batch)

    def recording_losses(outputs, batch, metrics_dict=None):
        loss_steps.append(model.step)
        return get_loss_dict(outputs, batch, metrics_dict)

    model.get_metrics_dict, model.get_loss_dict = recording_metrics, recording_losses
    logged = []
    from nerfstudio.utils import writer

    put_dict = writer.put_dict

    def recording_put_dict(name, scalar_dict, step):
        if name == "Train Metrics Dict":
            logged.append((step, sorted(scalar_dict)))
        return put_dict(name=name, scalar_dict=scalar_dict, step=step)

    writer.put_dict = recording_put_dict
    try:
        trainer.train()
    finally:
        writer.put_dict = put_dict
    assert loss_steps == list(range(7))
    assert metric_steps == [0, 3, 6]
    assert [step for step, _ in logged] == [0, 3, 6] and all("psnr" in names for _, names in logged)


def test_a_non_finite_loss_stops_training_with_a_checkpoint(scene, tiny_dinov2, tmp_path):
    from ds4d_ns.trainer import NonFiniteLossError

    config = small_config(scene, tmp_path, tiny_dinov2, 2, 6, "nan", frame_features="none")
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    model = trainer.pipeline.model
    get_loss_dict = model.get_loss_dict

    def poisoned(outputs, batch, metrics_dict=None):
        loss_dict = get_loss_dict(outputs, batch, metrics_dict)
        if model.training and model.step >= 4:
            loss_dict["rgb_loss"] = loss_dict["rgb_loss"] * float("nan")
        return loss_dict

    model.get_loss_dict = poisoned
    with pytest.raises(NonFiniteLossError, match="step 4.*rgb_loss"):
        trainer.train()
    checkpoint = trainer.checkpoint_dir / "step-000000004.ckpt"
    assert checkpoint.is_file()
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["pipeline"]
    assert all(torch.isfinite(value).all() for value in state.values() if value.is_floating_point())


def test_a_resumed_run_keeps_training_every_parameter(scene, tiny_dinov2, tmp_path):
    first = small_config(scene, tmp_path, tiny_dinov2, 2, 3, "first")
    first.steps_per_save = 1
    trainer = first.setup(local_rank=0, world_size=1)
    trainer.setup()
    trainer.train()
    checkpoints = trainer.checkpoint_dir

    second = small_config(scene, tmp_path, tiny_dinov2, 2, 6, "resumed")
    second.load_dir = checkpoints
    resumed = second.setup(local_rank=0, world_size=1)
    resumed.setup()
    model = resumed.pipeline.model
    optimised = {
        id(p)
        for optimizer in resumed.optimizers.optimizers.values()
        for g in optimizer.param_groups
        for p in g["params"]
    }
    assert id(model.gauss_params["means"]) in optimised
    assert all(id(p) in optimised for p in model.frame_point_features.parameters())
    loaded = {name: value.detach().clone() for name, value in model.state_dict().items()}
    resumed.train()
    after = model.state_dict()
    for name in ("gauss_params.means", "frame_point_features.fusion.front_logit"):
        assert after[name].shape == loaded[name].shape  # no densification in these few steps
        assert not torch.equal(after[name], loaded[name]), f"{name} did not train after resume"


def test_training_with_the_cuda_graph_contract_equals_eager_training(scene, tiny_dinov2, tmp_path, monkeypatch):
    """With ``--pipeline.model.cuda-graphs True`` the step must live with a captured graph's contract: outputs
    overwritten by the next call, gradients handed back in the graph's own buffers, each backward after its
    own forward. The CPU cannot capture, so the contract is emulated (``conftest.emulated_graph_capture``) in
    place of ``torch.cuda.make_graphed_callables``; a `ds4d` run through both stages (frame features in the
    graph) must then train as the eager run does, loss for loss."""
    from conftest import emulated_graph_capture

    from ds4d_ns.cuda_graphs import GraphedFunction

    static_steps, dynamic_steps = 6, 34  # refinement waits num_train_data + refine_every steps (32 here)

    def train(graphs: bool, name: str):
        config = small_config(scene, tmp_path / name, tiny_dinov2, static_steps, dynamic_steps, "run")
        model_config = ds4d_parts(config)[1]
        model_config.cuda_graphs = graphs
        # densify within the run: a new Gaussian count means a new capture, with the old one's memory released
        model_config.warmup_length, model_config.refine_every = 4, 4
        return seeded_training(config)

    eager_losses, _ = train(False, "eager")
    monkeypatch.setattr(torch.cuda, "make_graphed_callables", emulated_graph_capture)
    monkeypatch.setattr(GraphedFunction, "_graphable", lambda self, args: self.enabled and torch.is_grad_enabled())
    graphed_losses, model = train(True, "graphed")

    assert model.image_losses.captures >= 1  # the emulated graphs ran
    assert model.deformation_step.captures >= 2  # and the deformation's again after densification
    assert all(graph.enabled for graph in model.deformation_step._graphs.values())  # none fell back to eager
    assert len(graphed_losses) == len(eager_losses) == static_steps + dynamic_steps
    for step, (graphed, eager) in enumerate(zip(graphed_losses, eager_losses)):
        assert graphed.keys() == eager.keys(), step
        for key in eager:
            assert graphed[key] == pytest.approx(eager[key], rel=1e-4, abs=1e-7), (step, key)


def test_lpips_and_sds_under_the_cuda_graph_contract_equal_eager(
    scene, tiny_dinov2, tiny_zero123, tmp_path, monkeypatch
):
    """The priors' graphed networks (LPIPS forward + backward, Zero123's VAE encoder forward + backward, its
    guided UNet call without gradients) under the emulated graph contract: the run equals the eager one."""
    from conftest import emulated_graph_capture, emulated_inference_capture

    from ds4d_ns.cuda_graphs import GraphedFunction, GraphedInference

    def train(graphs: bool, name: str):
        config = small_config(scene, tmp_path / name, tiny_dinov2, 2, 5, "priors", priors=True)
        config.pipeline.model.cuda_graphs = graphs
        return seeded_training(with_lpips_and_sds(config, tiny_zero123))

    eager_losses, _ = train(False, "eager")
    monkeypatch.setattr(torch.cuda, "make_graphed_callables", emulated_graph_capture)
    monkeypatch.setattr(GraphedFunction, "_graphable", lambda self, args: self.enabled and torch.is_grad_enabled())
    monkeypatch.setattr(GraphedInference, "_graphable", lambda self, args: self.enabled)
    monkeypatch.setattr(GraphedInference, "_capture", emulated_inference_capture)
    graphed_losses, model = train(True, "graphed")

    priors = model.priors
    assert priors is not None and priors.zero123 is not None
    captured = [priors._lpips_graph, priors.zero123._encoder, priors.zero123._noise]
    assert all(graph.captures >= 1 and graph.enabled for graph in captured)
    assert [("sds_loss" in step) for step in graphed_losses] == [False, False, True, True, True, True, True]
    for step, (graphed, eager) in enumerate(zip(graphed_losses, eager_losses, strict=True)):
        assert graphed.keys() == eager.keys(), step
        for key in eager:
            assert graphed[key] == pytest.approx(eager[key], rel=1e-4, abs=1e-7), (step, key)
