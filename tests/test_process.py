"""ds4d-process end to end on the CPU: a video encoded here, tiny random Zero123++ parts, then
the dataset is loaded by ds4d-data and trained on; resume, refusal, input safety, bad inputs."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import pytest
from conftest import ds4d_parts

from ds4d_ns.io.video import write_video_atomic
from ds4d_ns.io.writers import write_png_atomic
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


def _config(
    video: Path, masks: Optional[Path], output: Path, zero123plus_folder: Path, **overrides: Any
) -> ProcessConfig:
    settings: Dict[str, Any] = dict(
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


def test_generated_views_that_disagree_with_the_input_are_reported_not_refused(
    tmp_path: Path, tiny_zero123plus: Path, monkeypatch
):
    """The agreement check after our own generation only reports: a tiny random Zero123++ draws noise with no
    grey background to key out, so its views are foreground everywhere (they would agree with any input);
    the run still finishes, with one warning naming them."""
    from nerfstudio.utils.rich_utils import CONSOLE

    logged: list = []
    monkeypatch.setattr(CONSOLE, "log", lambda *args, **kwargs: logged.append(" ".join(map(str, args))))
    video, masks = _write_clip(tmp_path / "user")
    out = tmp_path / "dataset"
    process(_config(video, masks, out, tiny_zero123plus))
    assert (out / "transforms.json").is_file()
    warnings = [line for line in logged if "generated views disagree with the input" in line]
    assert len(warnings) == 1 and "frame 3:" in warnings[0] and "no background" in warnings[0], "\n".join(logged)


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
    ds4d_parts(config)[0].camera_res_scale_factor = 1.0
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


@pytest.mark.parametrize("planted", ["transforms.json", "init.ply", "images/pseudo_03/frame_0002.png", "images"])
def test_force_refuses_a_users_file_in_the_way_before_writing_anything(
    tmp_path: Path, tiny_zero123plus: Path, planted: str
):
    video, masks = _write_clip(tmp_path / "user")
    out = tmp_path / "dataset"
    users = out / planted
    users.parent.mkdir(parents=True, exist_ok=True)
    users.write_text("the user's own file")
    with pytest.raises(FileExistsError, match=f"{planted}: exists and was not written by ds4d-process"):
        process(_config(video, masks, out, tiny_zero123plus, force=True))
    assert users.read_text() == "the user's own file"
    # nothing written beside it: no image, no init.ply, no manifest, no lock left behind
    assert [p for p in out.rglob("*") if p.is_file()] == [users]


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


def _folder_clip(folder: Path, frames: int = 4, size: int = 48) -> Path:
    """RGBA frames ``0.png`` .. of a red square moving right on a transparent background."""
    for k in range(frames):
        image = np.zeros((size, size, 4), dtype=np.uint8)
        image[14:34, 8 + 3 * k : 28 + 3 * k] = (200, 40, 40, 255)
        write_png_atomic(folder / f"{k}.png", image)
    return folder


def _grid_image(tile: int, seed: int, alpha: bool) -> np.ndarray:
    """A Zero123++-style 3 x 2 grid image: view v shows a disc of brightness 20 * v + seed on grey (or transparent)."""
    ys, xs = np.mgrid[0:tile, 0:tile]
    disc = (xs - tile / 2) ** 2 + (ys - tile / 2) ** 2 <= (tile / 3) ** 2
    grid_image = np.zeros((3 * tile, 2 * tile, 4 if alpha else 3), dtype=np.uint8)
    for view in range(6):
        row, column = divmod(view, 2)
        cell = grid_image[row * tile : (row + 1) * tile, column * tile : (column + 1) * tile]
        cell[..., :3] = 128  # Zero123++'s grey background
        cell[disc, :3] = (20 * view + seed, 200, 30)
        if alpha:
            cell[disc, 3] = 255
    return grid_image


def _import_config(source: Path, out: Path, views_dir: Path, **overrides: Any) -> ProcessConfig:
    settings: Dict[str, Any] = dict(
        input=source,
        output=out,
        num_frames=4,
        resolution=24,
        pseudo_views=views_dir,
        pseudo_release="v1.1",
        num_points=200,
        hull_resolution=16,
        device="cpu",
        min_view_agreement=0.0,  # discs of every view: these tests are about order, alpha and cameras
    )
    settings.update(overrides)
    return ProcessConfig(**settings)


def test_imported_pseudo_views_need_no_generator_and_keep_order_alpha_and_cameras(tmp_path: Path, monkeypatch):
    import json

    from PIL import Image

    from ds4d_ns import camera_layouts
    from ds4d_ns.dataparsers.ds4d_dataparser import Ds4dDataParserConfig
    from ds4d_ns.process import zero123plus

    monkeypatch.setattr(
        zero123plus.Zero123PlusPipeline, "load", classmethod(lambda *a, **k: pytest.fail("no generator"))
    )
    source = _folder_clip(tmp_path / "frames")
    views_dir = tmp_path / "views"
    for k in range(4):  # frames 0, 2: RGBA grids; 1: RGB grid; 3: a folder of RGB tiles 0.png .. 5.png
        if k == 3:
            for view, tile in enumerate(_tiles(_grid_image(32, 3, alpha=False))):
                write_png_atomic(views_dir / "frame_3" / f"{view}.png", tile)
        else:
            write_png_atomic(views_dir / f"frame_{k}.png", _grid_image(32, k, alpha=k != 1))
    out = tmp_path / "dataset"
    process(_import_config(source, out, views_dir))
    for k in range(4):
        for view in range(6):
            tile = np.asarray(Image.open(out / f"images/pseudo_{view:02d}/frame_{k:04d}.png"))
            assert tile.shape == (24, 24, 4)
            assert tile[0, 0, 3] == 0 and tile[12, 12, 3] == 255  # grey background keyed, alpha kept
            assert abs(int(tile[12, 12, 0]) - (20 * view + k)) <= 2  # tile order and frame order
    meta = json.loads((out / "transforms.json").read_text())
    layout = camera_layouts.zero123pp_views("v1.1")
    for record in meta["frames"]:
        if record["role"] == "pseudo":
            position = np.asarray(record["transform_matrix"])[:3, 3]
            elevation = np.degrees(np.arctan2(position[2], np.hypot(position[0], position[1])))
            assert abs(elevation - layout[record["view_index"]].elevation_deg) < 1e-3  # v1.1: +30 / -20
    assert len(Ds4dDataParserConfig(data=out).setup().get_dataparser_outputs("train").image_filenames) == 28


def _tiles(grid_image: np.ndarray) -> list:
    tile = grid_image.shape[1] // 2
    return [grid_image[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] for r in range(3) for c in range(2)]


def test_bad_imported_pseudo_views_fail_before_any_output(tmp_path: Path):
    source = _folder_clip(tmp_path / "frames")
    out = tmp_path / "dataset"
    views_dir = tmp_path / "views"
    for k in range(3):
        write_png_atomic(views_dir / f"{k}.png", _grid_image(16, k, alpha=True))
    with pytest.raises(InputError, match="3 grid images or tile folders, but .*frames has 4 frames"):
        process(_import_config(source, out, views_dir))
    write_png_atomic(views_dir / "3.png", np.zeros((40, 32, 3), dtype=np.uint8))  # 4:5, not 2:3
    with pytest.raises(InputError, match=r"3.png: 32x40 pixels is not a Zero123\+\+ grid"):
        process(_import_config(source, out, views_dir))
    (views_dir / "3.png").unlink()
    for view in range(5):
        write_png_atomic(views_dir / "3" / f"{view}.png", np.zeros((16, 16, 3), dtype=np.uint8))
    with pytest.raises(InputError, match="3: 5 tile images .* has 6 views"):
        process(_import_config(source, out, views_dir))
    with pytest.raises(InputError, match="--pseudo-views needs --pseudo-release"):
        process(_import_config(source, out, views_dir, pseudo_release=None))
    assert not out.exists()


def test_zero123plus_is_conditioned_on_the_source_resolution_crop(tmp_path: Path, monkeypatch):
    from ds4d_ns.process import run
    from ds4d_ns.process.framing import clip_crop, crop_rgba

    source = _folder_clip(tmp_path / "frames", size=96)
    seen = {}

    class Stop(Exception):
        pass

    def record(config, out, condition_images, todo, pipeline, matting):
        seen["images"], seen["todo"] = condition_images, todo
        raise Stop

    monkeypatch.setattr(run, "_load_generator", lambda config: (None, None))
    monkeypatch.setattr(run, "_generate_pseudo_views", record)
    with pytest.raises(Stop):
        process(ProcessConfig(input=source, output=tmp_path / "dataset", num_frames=4, resolution=16, device="cpu"))
    from PIL import Image

    sources = [np.asarray(Image.open(source / f"{k}.png")) for k in range(4)]
    crop = clip_crop(sources, [str(k) for k in range(4)], 0.85)
    side = crop[2] - crop[0]
    assert side > 16 and [image.shape for image in seen["images"]] == [(side, side, 4)] * 4
    for image, original in zip(seen["images"], sources):
        assert np.array_equal(image, crop_rgba(original, crop))  # the same square, not resampled


def test_replaced_input_frames_are_noticed_and_named(tmp_path: Path):
    import os

    from PIL import Image

    source = _folder_clip(tmp_path / "frames")
    views_dir = tmp_path / "views"
    for k in range(4):
        write_png_atomic(views_dir / f"{k}.png", _grid_image(16, k, alpha=True))
    out = tmp_path / "dataset"
    process(_import_config(source, out, views_dir))
    process(_import_config(source, out, views_dir))  # unchanged: resumes
    replacement = np.zeros((48, 48, 4), dtype=np.uint8)
    replacement[4:44, 4:44] = (10, 200, 10, 255)
    stat = (source / "2.png").stat()
    write_png_atomic(source / "2.png", replacement)  # same name, new content
    with pytest.raises(FileExistsError, match=r"2.png: content, size(, modification time)? changed"):
        process(_import_config(source, out, views_dir))
    process(_import_config(source, out, views_dir, force=True))
    written = np.asarray(Image.open(out / "images/input_00/frame_0002.png"))
    assert written[12, 12, 1] > 150  # the new frame 2, not the old one
    os.utime(source / "2.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # only touched
    with pytest.raises(FileExistsError, match="2.png: modification time changed"):
        process(_import_config(source, out, views_dir))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"batch_size": 0}, "--batch-size must be a positive whole number, got 0"),
        ({"num_points": 0}, "--num-points must be a positive whole number, got 0"),
        ({"num_frames": -1}, "--num-frames must be a positive whole number, got -1"),
        ({"resolution": 0}, "--resolution must be a positive whole number, got 0"),
        ({"fill": 1.5}, r"--fill must be in \(0, 1\]"),
        ({"masks": Path("no-such-masks")}, "--masks no-such-masks: no such folder"),
        ({"init_mesh": Path("no-such.obj")}, "--init-mesh no-such.obj: no such file"),
        ({"pseudo_release": "v1.2"}, "--pseudo-release only applies with --pseudo-views"),
        ({"background_colour": (255, 300, 0)}, "--background-colour takes three values from 0 to 255"),
    ],
)
def test_bad_arguments_fail_before_any_work(tmp_path: Path, monkeypatch, overrides, message):
    from ds4d_ns.process import run

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run, "read_clip", lambda *a, **k: pytest.fail("work started"))
    source = _folder_clip(tmp_path / "frames")
    with pytest.raises(InputError, match=message):
        process(ProcessConfig(input=source, output=tmp_path / "dataset", **overrides))
    assert not (tmp_path / "dataset").exists()


def test_an_output_below_a_file_is_one_clear_line(tmp_path: Path):
    import os
    import subprocess
    import sys

    source = _folder_clip(tmp_path / "frames")
    (tmp_path / "a_file").write_text("x")
    for arguments, expected in (
        ([str(tmp_path / "a_file" / "out")], "a_file is a file, not a folder"),
        ([str(tmp_path / "out"), "--batch-size", "0"], "--batch-size must be a positive whole number, got 0"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "ds4d_ns.scripts.process", str(source), *arguments],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "300"},
        )
        assert result.returncode == 2 and expected in result.stdout, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_rembg_without_its_model_fails_before_long_work_naming_it(tmp_path: Path, monkeypatch):
    import sys
    import types

    def offline(model):
        raise ConnectionError(f"could not download {model}.onnx")

    monkeypatch.setitem(sys.modules, "rembg", types.SimpleNamespace(new_session=offline))
    video, _ = _write_clip(tmp_path / "user")
    with pytest.raises(InputError) as caught:
        process(ProcessConfig(input=video, output=tmp_path / "dataset", num_frames=3, matting="rembg"))
    message = str(caught.value)
    assert "'u2net'" in message and "--matting white" in message and "--masks" in message
    assert not (tmp_path / "dataset").exists()


def test_a_clip_on_white_is_matted_by_the_white_key(tmp_path: Path):
    from PIL import Image

    video, masks = _write_clip(tmp_path / "user")  # a red disc on white, no alpha
    views_dir = tmp_path / "views"
    for k in range(4):
        write_png_atomic(views_dir / f"{k}.png", _grid_image(16, k, alpha=True))
    out = tmp_path / "dataset"
    # the object cropped to --fill, as the test's 32 px frames were sized for (this test is about the key)
    process(_import_config(video, out, views_dir, matting="white", resolution=32, input_framing="fill"))
    reference = tmp_path / "with_masks"
    process(_import_config(video, reference, views_dir, masks=masks, resolution=32, input_framing="fill"))
    for k in range(4):
        name = f"images/input_00/frame_{k:04d}.png"
        keyed = np.asarray(Image.open(out / name))[..., 3] / 255.0
        true = np.asarray(Image.open(reference / name))[..., 3] / 255.0
        assert keyed[0, 0] == 0 and (keyed == 1).sum() > 50
        assert np.abs(keyed - true).mean() < 0.03


def test_the_output_folder_is_unlocked_when_the_run_ends_or_fails(tmp_path: Path, monkeypatch):
    """ds4d-process holds its folder's lock for the run only: released on return and on an error, not
    when the garbage collector gets to it (a second command right after must not be refused)."""
    from ds4d_ns.io.atomic import write_observers
    from ds4d_ns.io.folder_lock import LOCK_NAME
    from ds4d_ns.process import run

    source = _folder_clip(tmp_path / "frames")
    views_dir = tmp_path / "views"
    for k in range(4):
        write_png_atomic(views_dir / f"{k}.png", _grid_image(16, k, alpha=True))
    out = tmp_path / "dataset"
    process(_import_config(source, out, views_dir))
    assert not (out / LOCK_NAME).exists() and not write_observers()

    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(run, "_write_transforms", fail)
    with pytest.raises(RuntimeError, match="disk full") as failed:
        process(_import_config(source, out, views_dir, force=True))
    assert failed.tb is not None  # the error (and the frames its traceback holds) is still alive here
    assert not (out / LOCK_NAME).exists() and not write_observers()


def test_imported_views_without_background_are_refused_before_any_output(tmp_path: Path):
    """RGB views whose background is not Zero123++'s grey are foreground everywhere after keying: they carve
    nothing and would pass any agreement test, so they are refused, naming the views and the ways out."""
    source = _folder_clip(tmp_path / "frames")
    views_dir = tmp_path / "views"
    rng = np.random.default_rng(0)
    for k in range(4):
        write_png_atomic(views_dir / f"{k}.png", rng.integers(0, 100, size=(48, 32, 3), dtype=np.uint8))
    out = tmp_path / "dataset"
    with pytest.raises(InputError, match=r"pseudo view\(s\) 0, 1, 2, 3, 4, 5 have no background.*--matting rembg"):
        process(_import_config(source, out, views_dir, min_view_agreement=0.9))
    assert not out.exists()
