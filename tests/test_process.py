"""ds4d-process end to end on the CPU: a video encoded here, tiny random Zero123++ parts, then
the dataset is loaded by ds4d-data and trained on; resume, refusal, input safety, bad inputs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from ds4d_ns.data.dataset_format import write_png_atomic
from ds4d_ns.io.video import write_video_atomic
from ds4d_ns.process.frames import InputError
from ds4d_ns.process.run import ProcessConfig, process
from ds4d_ns.process.zero123plus import Zero123PlusConfig


def _write_clip(folder: Path, frames: int = 6, size: int = 64) -> tuple[Path, Path]:
    """A video of a red disc moving on white, and a folder with its masks."""
    ys, xs = np.mgrid[0:size, 0:size]
    images, masks = [], folder / "masks"
    for i in range(frames):
        inside = (xs - (20 + 4 * i)) ** 2 + (ys - 32) ** 2 <= 10**2
        image = np.full((size, size, 3), 255, dtype=np.uint8)
        image[inside] = (200, 40, 40)
        images.append(image)
        write_png_atomic(masks / f"m{i:03d}.png", (inside * 255).astype(np.uint8))
    video = folder / "clip.mp4"
    write_video_atomic(video, images, fps=10)
    return video, masks


def _config(video: Path, masks: Path, output: Path, zero123plus_folder: Path, **overrides) -> ProcessConfig:
    settings = dict(
        input=video,
        output=output,
        num_frames=4,
        resolution=32,
        masks=masks,
        zero123plus=Zero123PlusConfig(model_id=str(zero123plus_folder), num_inference_steps=2, tile_size=16),
        batch_size=3,
        num_points=300,
        hull_resolution=24,
        device="cpu",
    )
    settings.update(overrides)
    return ProcessConfig(**settings)


def _digest(folder: Path) -> dict:
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def test_a_video_becomes_a_dataset_that_ds4d_trains_on(tmp_path: Path, tiny_zero123plus: Path):
    from ds4d_ns.dataparsers.ds4d_dataparser import Ds4dDataParserConfig
    from ds4d_ns.method_configs.ds4d_config import make_ds4d_config

    video, masks = _write_clip(tmp_path / "user")
    before = _digest(tmp_path / "user")
    out = tmp_path / "dataset"
    transforms = process(_config(video, masks, out, tiny_zero123plus))
    assert _digest(tmp_path / "user") == before  # the user's files are untouched
    assert transforms == out / "transforms.json" and (out / "init.ply").is_file()
    assert len(list((out / "images").rglob("*.png"))) == 4 * 7
    outputs = Ds4dDataParserConfig(data=out).setup().get_dataparser_outputs("train")
    assert len(outputs.image_filenames) == 28
    assert outputs.metadata["points3D_xyz"].shape == (300, 3)

    config = make_ds4d_config(
        method_name="ds4d-base-cpu", static_steps=2, dynamic_steps=3, cpu=True, frame_features="none", priors=False
    )
    config.output_dir, config.vis = tmp_path / "runs", "tensorboard"
    config.steps_per_eval_image = config.steps_per_eval_all_images = 10_000
    config.pipeline.datamanager.data = out
    config.pipeline.datamanager.camera_res_scale_factor = 1.0
    config.set_timestamp()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    trainer.train()
    import torch

    assert torch.isfinite(trainer.pipeline.model.means).all()


def test_a_rerun_resumes_and_a_different_run_is_refused(tmp_path: Path, tiny_zero123plus: Path, monkeypatch):
    from ds4d_ns.process import zero123plus

    video, masks = _write_clip(tmp_path / "user")
    out = tmp_path / "dataset"
    process(_config(video, masks, out, tiny_zero123plus))
    written = _digest(out)

    def no_generation(*args, **kwargs):
        raise AssertionError("a resumed run must not generate frames again")

    monkeypatch.setattr(zero123plus.Zero123PlusPipeline, "load", classmethod(no_generation))
    process(_config(video, masks, out, tiny_zero123plus))
    assert _digest(out) == written
    with pytest.raises(FileExistsError, match="different settings"):
        process(_config(video, masks, out, tiny_zero123plus, num_frames=3))
    monkeypatch.undo()
    # an interrupted run: a missing pseudo view is regenerated, nothing else is rewritten
    (out / "images/pseudo_03/frame_0002.png").unlink()
    process(_config(video, masks, out, tiny_zero123plus))
    assert (out / "images/pseudo_03/frame_0002.png").is_file()


def test_a_foreign_folder_is_refused_without_force(tmp_path: Path, tiny_zero123plus: Path):
    video, masks = _write_clip(tmp_path / "user")
    out = tmp_path / "somebody_elses"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a ds4d-process output"):
        process(_config(video, masks, out, tiny_zero123plus))
    assert (out / "notes.txt").read_text() == "keep me"


def test_bad_inputs_fail_before_any_output(tmp_path: Path, tiny_zero123plus: Path):
    video, masks = _write_clip(tmp_path / "user")
    out = tmp_path / "dataset"
    broken_mesh = tmp_path / "broken.obj"
    broken_mesh.write_text("this is not a mesh\n")
    with pytest.raises(InputError, match="broken.obj"):
        process(_config(video, masks, out, tiny_zero123plus, init_mesh=broken_mesh))
    with pytest.raises(InputError, match="no alpha channel"):
        process(_config(video, None, out, tiny_zero123plus))
    blank_masks = tmp_path / "blank"
    for i in range(6):
        write_png_atomic(blank_masks / f"m{i:03d}.png", np.zeros((64, 64), dtype=np.uint8))
    with pytest.raises(InputError, match="frame 0: no foreground"):
        process(_config(video, blank_masks, out, tiny_zero123plus))
    assert not out.exists()


def test_an_initial_mesh_is_normalised_into_the_scene(tmp_path: Path, tiny_zero123plus: Path):
    import trimesh
    from plyfile import PlyData

    video, masks = _write_clip(tmp_path / "user")
    mesh_path = tmp_path / "box.obj"
    trimesh.creation.box(extents=(4.0, 2.0, 1.0)).apply_translation((10.0, 0.0, 0.0)).export(mesh_path)
    out = tmp_path / "dataset"
    process(_config(video, masks, out, tiny_zero123plus, init_mesh=mesh_path))
    vertices = PlyData.read(str(out / "init.ply"))["vertex"]
    points = np.stack([vertices["x"], vertices["y"], vertices["z"]], axis=-1)
    half_extent = np.abs(points).max(axis=0)
    assert abs(half_extent[0] - 0.85 * np.tan(np.radians(49.1 / 2)) * 2.0) < 1e-3  # longest side fills the frame
    assert abs(points[:, 0].mean()) < 0.1  # centred


def test_the_command_reports_bad_input_without_a_traceback(tmp_path: Path):
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "ds4d_ns.scripts.process", str(tmp_path / "missing.mp4"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 2
    assert "missing.mp4: no such file" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_missing_generator_weights_leave_no_output(tmp_path: Path, tiny_zero123plus: Path):
    from ds4d_ns.process.zero123plus import PseudoViewWeightsUnavailable

    video, masks = _write_clip(tmp_path / "user")
    out = tmp_path / "dataset"
    with pytest.raises(PseudoViewWeightsUnavailable):
        process(_config(video, masks, out, tmp_path / "no-such-release"))
    assert not out.exists()
    process(_config(video, masks, out, tiny_zero123plus))  # the fix the message suggests works at once


def test_an_interrupted_forced_run_does_not_reuse_the_old_runs_files(
    tmp_path: Path, tiny_zero123plus: Path, monkeypatch
):
    from PIL import Image

    from ds4d_ns.process import zero123plus

    video, masks = _write_clip(tmp_path / "user")
    out = tmp_path / "dataset"
    process(_config(video, masks, out, tiny_zero123plus))  # run A, 32 px
    calls = {"n": 0}
    original = zero123plus.Zero123PlusPipeline.__call__

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 1:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(zero123plus.Zero123PlusPipeline, "__call__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        process(_config(video, masks, out, tiny_zero123plus, resolution=24, force=True))  # run B, cut short
    monkeypatch.undo()
    process(_config(video, masks, out, tiny_zero123plus, resolution=24))  # run B resumed
    sizes = {Image.open(p).size for p in (out / "images").rglob("*.png")}
    assert sizes == {(24, 24)}


def test_palette_images_keep_their_transparency(tmp_path: Path):
    from PIL import Image

    from ds4d_ns.process.frames import read_clip

    for i in range(2):
        image = Image.new("P", (8, 8), color=0)
        image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
        image.paste(1, (2, 2, 5, 5))
        image.info["transparency"] = 0
        image.save(tmp_path / f"f{i}.png", transparency=0)
    clip = read_clip(tmp_path)
    assert clip.images[0].shape == (8, 8, 4)
    assert clip.images[0][0, 0, 3] == 0 and clip.images[0][3, 3, 3] == 255
