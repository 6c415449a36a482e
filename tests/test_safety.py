"""Nothing of the user's is lost, and bad inputs stop before any work with one line naming the file.

The first part is a table of bad inputs to ``ds4d-export``, ``ds4d-render`` and ``ds4d-viz`` that
must all be refused before the model is loaded (the loader is replaced by one that fails the
test). The rest covers output folders (``--force`` with a user's file planted in the folder and
the input inside it), checkpoints written through a rename and skipped when damaged, file modes,
``config.yml`` read without running code, and user text in messages.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict

import numpy as np
import pytest
import torch
import yaml
from conftest import ds4d_parts

from ds4d_ns.errors import UserError, report_user_error
from ds4d_ns.io.checkpoints import CheckpointError, load_newest_checkpoint, save_checkpoint_atomic
from ds4d_ns.io.output_folder import OutputFolderError, prepare_output_dir
from ds4d_ns.io.writers import write_json_atomic, write_png_atomic
from ds4d_ns.method_configs.ds4d_config import make_ds4d_config
from ds4d_ns.scripts import export, loading, render, viz
from ds4d_ns.scripts.synth import SynthConfig
from ds4d_ns.scripts.synth import main as synth_main


# ---------------------------------------------------------------- a run folder without training
def saved_run(root: Path, checkpoint: bytes = b"not loaded before the checks pass") -> Path:
    """A ds4d run folder (config.yml written by nerfstudio) with one fake checkpoint; returns config.yml."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    config = make_ds4d_config(method_name="ds4d-cpu", static_steps=1, dynamic_steps=1, cpu=True, priors=False)
    config.output_dir, config.experiment_name, config.timestamp = root / "outputs", "x", "run"
    config.pipeline.datamanager.data = root / "data"
    config.save_config()
    models = config.get_checkpoint_dir()
    models.mkdir(parents=True)
    (models / "step-000000001.ckpt").write_bytes(checkpoint)
    return config.get_base_dir() / "config.yml"


@pytest.fixture
def no_model_loading(monkeypatch):
    """Any attempt to load a model fails the test: every refusal must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was refused")

    for module in (export, render, viz):
        for name in ("load_trained_model", "load_trained_pipeline"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, refuse)


def _export(config: Path, out: Path, **kwargs):
    return export.ExportGaussianSequence(load_config=config, output_dir=out, **kwargs).main()


def _views(config: Path, out: Path, **kwargs):
    return render.RenderViews(load_config=config, output_dir=out, **kwargs).main()


def _orbit(config: Path, out: Path, **kwargs):
    return render.RenderOrbit(load_config=config, output_dir=out, **kwargs).main()


def _viz(config: Path, out: Path, **kwargs):
    return viz.VizFeatures(load_config=config, output_dir=out, **kwargs).main()


def _plant(path: Path, text: str = "the user's own file") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _empty_checkpoint(run: Path, out: Path) -> None:
    (run.parent / "nerfstudio_models/step-000000001.ckpt").write_bytes(b"")


def _no_checkpoint(run: Path, out: Path) -> None:
    shutil.rmtree(run.parent / "nerfstudio_models")


def _user_file(name: str) -> Callable[[Path, Path], None]:
    def plant(run: Path, out: Path) -> None:
        _plant(out / name)

    return plant


def _crafted_config(text: str) -> Callable[[Path, Path], None]:
    def craft(run: Path, out: Path) -> None:
        run.write_text(text)

    return craft


# name, set-up (run config.yml, output folder), command, arguments, expected error, words of the message
BAD_INPUTS = [
    ("export --num-times 0", None, _export, {"num_times": 0}, UserError, "--num-times must be at least 1"),
    ("render --resolution 0", None, _views, {"resolution": 0}, UserError, "--resolution must be at least 1"),
    ("render --batch-size 0", None, _views, {"batch_size": 0}, UserError, "--batch-size must be at least 1"),
    ("render --num-times 0", None, _views, {"num_times": 0}, UserError, "--num-times must be at least 1"),
    ("orbit --num-frames 0", None, _orbit, {"num_frames": 0}, UserError, "--num-frames must be at least 1"),
    ("orbit --time 2", None, _orbit, {"time": 2.0}, UserError, "--time must lie in [0, 1]"),
    ("render unknown view", None, _views, {"view_names": ("top",)}, UserError, "unknown ['top']"),
    ("viz --resolution 0", None, _viz, {"resolution": 0}, UserError, "--resolution must be at least 1"),
    ("zero-byte checkpoint", _empty_checkpoint, _export, {}, CheckpointError, "empty (0 bytes)"),
    ("no checkpoint", _no_checkpoint, _views, {}, CheckpointError, "no such checkpoint folder"),
    ("user file in output", _user_file("notes.txt"), _export, {}, OutputFolderError, "holds notes.txt"),
    (
        "same-named user file, --force",
        _user_file("front.mp4"),
        _views,
        {"force": True},
        OutputFolderError,
        "front.mp4: exists and was not written by ds4d-render",
    ),
    (
        "user times.json, --force",
        _user_file("times.json"),
        _export,
        {"force": True, "num_times": 2},
        OutputFolderError,
        "times.json: exists and was not written by ds4d-export",
    ),
    (
        "config runs a command",
        _crafted_config("!!python/object/apply:os.system ['touch {marker}']\n"),
        _export,
        {},
        loading.RunLoadError,
        "refusing the tag 'tag:yaml.org,2002:python/object/apply:os.system'",
    ),
    (
        "config names a function as target",
        _crafted_config("!!python/name:os.system ''\n"),
        _views,
        {},
        loading.RunLoadError,
        "python/name:os.system",
    ),
    (
        "config builds a non-config object",
        _crafted_config("!!python/object:subprocess.Popen {args: ['touch', '{marker}']}\n"),
        _viz,
        {},
        loading.RunLoadError,
        "python/object:subprocess.Popen",
    ),
    (
        "config imports a module",
        _crafted_config("!!python/module:os ''\n"),
        _export,
        {},
        loading.RunLoadError,
        "python/module:os",
    ),
    ("config is not a run", _crafted_config("just: text\n"), _export, {}, loading.RunLoadError, "not a nerfstudio run"),
]


@pytest.mark.parametrize(
    ("setup", "command", "kwargs", "error", "words"),
    [row[1:] for row in BAD_INPUTS],
    ids=[row[0] for row in BAD_INPUTS],
)
def test_bad_inputs_stop_before_the_model_is_loaded(tmp_path, no_model_loading, setup, command, kwargs, error, words):
    run = saved_run(tmp_path / "project")
    out = tmp_path / "out"
    marker = tmp_path / "command-ran"
    if setup is not None:
        setup(run, out)
        if run.is_file():
            run.write_text(run.read_text().replace("{marker}", str(marker)))
    before = sorted(p.name for p in out.rglob("*")) if out.exists() else None
    with pytest.raises(error) as caught:
        command(run, out, **kwargs)
    assert words in str(caught.value)
    assert not marker.exists()
    assert (sorted(p.name for p in out.rglob("*")) if out.exists() else None) == before  # nothing written


def test_an_input_inside_the_output_is_refused_even_with_force(tmp_path, no_model_loading):
    run = saved_run(tmp_path / "project")
    for command in (_export, _views, _viz):
        with pytest.raises(OutputFolderError, match="holds the input"):
            command(run, tmp_path / "project", force=True)


def _eval_videos(run: Path, out: Path, **kwargs):
    from ds4d_ns.scripts.eval import EvalVideos

    return EvalVideos(pred=run.parent, gt=run.parent, output_dir=out, **kwargs).main()


def _eval_model(run: Path, out: Path, **kwargs):
    from ds4d_ns.scripts.eval import EvalModel

    return EvalModel(load_config=run, output_dir=out, **kwargs).main()


def _process(run: Path, out: Path, **kwargs):
    from ds4d_ns.process.run import ProcessConfig, process

    return process(ProcessConfig(input=run.parent, output=out, **kwargs))


def _batch(run: Path, out: Path, **kwargs):
    from ds4d_ns.batch.manifest import BatchManifest

    return BatchManifest.open(out, {}, [])


# every command that writes a folder: (run config.yml, output folder) -> its main work
FOLDER_COMMANDS = {
    "ds4d-export": _export,
    "ds4d-render views": _views,
    "ds4d-render orbit": _orbit,
    "ds4d-viz": _viz,
    "ds4d-eval videos": _eval_videos,
    "ds4d-eval model": _eval_model,
    "ds4d-synth": lambda run, out: _synth(out),
    "ds4d-process": _process,
    "ds4d-batch": _batch,
}


@pytest.mark.parametrize("command", FOLDER_COMMANDS.values(), ids=FOLDER_COMMANDS.keys())
def test_an_output_folder_below_a_file_names_the_file(tmp_path, no_model_loading, command):
    run = saved_run(tmp_path / "project")
    a_file = _plant(tmp_path / "notes.txt")
    with pytest.raises(UserError, match=f"{a_file} is a file"):
        command(run, a_file / "sub" / "out")
    assert a_file.read_text() == "the user's own file"


def test_an_output_folder_below_a_file_is_one_line_with_exit_status_2(tmp_path):
    a_file = _plant(tmp_path / "notes.txt")
    result = subprocess.run(
        [sys.executable, "-m", "ds4d_ns.scripts.eval", "videos", "--pred", str(tmp_path), "--gt", str(tmp_path)]
        + ["--output-dir", str(a_file / "sub")],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{a_file} is a file, not a folder" in result.stdout and "Errno" not in result.stdout


def test_a_command_error_is_one_line_with_exit_status_2(tmp_path):
    run = saved_run(tmp_path / "project[final]")
    (run.parent / "nerfstudio_models/step-000000001.ckpt").write_bytes(b"")
    result = subprocess.run(
        [sys.executable, "-m", "ds4d_ns.scripts.export", "--load-config", str(run), "--output-dir", f"{tmp_path}/o"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "project[final]" in result.stdout and "empty (0 bytes)" in result.stdout
    assert not (tmp_path / "o").exists()


def test_a_real_config_loads_with_the_restricted_loader(tmp_path):
    config = loading.read_run_config(saved_run(tmp_path))
    assert config.pipeline.datamanager.frame_features.mode == "dsfd" and isinstance(config.output_dir, Path)
    assert config.pipeline.datamanager.data == tmp_path / "data"
    assert config.optimizers["means"]["optimizer"]._target is torch.optim.Adam


# ---------------------------------------------------------------- output folders (--force)
def _synth(out: Path, **kwargs) -> Path:
    settings = dict(scene="windmill", frames=2, resolution=8, steps=4, num_points=16, seed=0)
    return synth_main(SynthConfig(output=out, **{**settings, **kwargs}))


def test_synth_force_replaces_only_its_own_files(tmp_path):
    out = tmp_path / "data"
    _synth(out, frames=3)
    holiday = _plant(out / "images/input_photos/holiday.png")
    beside = _plant(out / "images/input_00/my_notes.txt")
    with pytest.raises(OutputFolderError, match="different settings"):
        _synth(out, frames=2)
    _synth(out, frames=2, force=True)
    assert holiday.read_text() == beside.read_text() == "the user's own file"
    assert not (out / "images/input_00/frame_0002.png").exists()  # the old run's third frame went
    manifest = json.loads((out / "ds4d_synth.json").read_text())
    written = set(manifest["jobs"]["ds4d-synth"]["files"])
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk - written == {"ds4d_synth.json", "images/input_photos/holiday.png", "images/input_00/my_notes.txt"}


def test_force_never_overwrites_a_file_the_tool_did_not_write(tmp_path):
    out = tmp_path / "data"
    user_transforms = _plant(out / "transforms.json", "{}")
    with pytest.raises(OutputFolderError, match="transforms.json: exists and was not written by ds4d-synth"):
        _synth(out, force=True)
    assert user_transforms.read_text() == "{}"
    assert sorted(p.name for p in out.iterdir()) == ["transforms.json"]  # refused before writing anything


def test_process_refuses_an_output_holding_its_input(tmp_path):
    from ds4d_ns.process.run import ProcessConfig, process

    project = tmp_path / "proj"
    frames = project / "images/input_raw"
    rng = np.random.default_rng(0)
    for i in range(3):
        rgba = np.zeros((32, 32, 4), dtype=np.uint8)
        rgba[8:24, 8:24] = rng.integers(0, 256, size=(16, 16, 4), dtype=np.uint8)
        rgba[8:24, 8:24, 3] = 255
        write_png_atomic(frames / f"frame_{i}.png", rgba)
    before = {p.name: p.read_bytes() for p in frames.iterdir()}
    for force in (False, True):
        config = ProcessConfig(input=frames, output=project, num_frames=3, resolution=16, force=force)
        with pytest.raises(OutputFolderError, match="holds the input"):
            process(config)
    assert {p.name: p.read_bytes() for p in frames.iterdir()} == before
    assert sorted(p.name for p in project.iterdir()) == ["images"]


def test_a_forced_rerun_deletes_only_listed_files_and_keeps_folders_holding_user_files(tmp_path):
    out = tmp_path / "out"
    settings: Dict[str, int] = {"v": 1}
    with prepare_output_dir(out, "tool.json", settings, False, "tool"):
        write_png_atomic(out / "images/input_00/frame_0000.png", np.zeros((2, 2, 3), np.uint8))
        write_png_atomic(out / "images/pseudo_00/frame_0000.png", np.zeros((2, 2, 3), np.uint8))
    holiday = _plant(out / "images/input_photos/holiday.png")
    mine = _plant(out / "images/input_00/mine.png")
    with prepare_output_dir(out, "tool.json", {"v": 2}, True, "tool"):
        pass
    assert holiday.exists() and mine.exists()
    assert not (out / "images/input_00/frame_0000.png").exists()
    assert not (out / "images/pseudo_00").exists()  # emptied by the removal: gone too


def test_a_manifest_listing_paths_outside_the_folder_is_refused(tmp_path):
    victim = _plant(tmp_path / "victim.txt")
    out = tmp_path / "out"
    manifest = {"tool": "tool", "format": 2, "jobs": {"tool": {"settings": {"v": 1}, "files": ["../victim.txt"]}}}
    _plant(out / "tool.json", json.dumps(manifest))
    with pytest.raises(OutputFolderError, match="not a plain path inside the folder"):
        prepare_output_dir(out, "tool.json", {"v": 2}, True, "tool")
    assert victim.exists()


def test_writes_through_a_symlinked_folder_are_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "images").symlink_to(elsewhere)
    with pytest.raises(OutputFolderError, match="symlinked folder"):
        with prepare_output_dir(out, "tool.json", {}, True, "tool"):
            write_png_atomic(out / "images/a.png", np.zeros((2, 2, 3), np.uint8))
    assert list(elsewhere.iterdir()) == []


# ---------------------------------------------------------------- file modes
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_written_files_get_the_umask_mode(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_json_atomic(tmp_path / "a.json", {})
        write_png_atomic(tmp_path / "b.png", np.zeros((2, 2, 3), np.uint8))
        save_checkpoint_atomic({"step": 0, "pipeline": {}}, tmp_path / "models/step-000000000.ckpt")
    finally:
        os.umask(old)
    for name in ("a.json", "b.png", "models/step-000000000.ckpt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name


# ---------------------------------------------------------------- checkpoints
def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    models = tmp_path / "run/nerfstudio_models"
    save_checkpoint_atomic({"step": 1, "pipeline": {"w": torch.ones(3)}}, models / "step-000000001.ckpt")
    real_save = torch.save

    def disk_full(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint_atomic({"step": 2, "pipeline": {}}, models / "step-000000002.ckpt")
    monkeypatch.setattr(torch, "save", real_save)
    assert sorted(p.name for p in models.iterdir()) == ["step-000000001.ckpt"]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["nerfstudio_models"]  # no temporary file left
    path, state = load_newest_checkpoint(models)
    assert path.name == "step-000000001.ckpt" and torch.equal(state["pipeline"]["w"], torch.ones(3))
    killed = _plant(tmp_path / "run/.step-000000003.ckpt.partial-x1y2.tmp", "a save killed before its rename")
    users = _plant(tmp_path / "run/.step-notes")
    save_checkpoint_atomic({"step": 4, "pipeline": {}}, models / "step-000000004.ckpt")
    assert not killed.exists() and users.exists()


def test_a_truncated_newest_checkpoint_is_skipped_and_named(tmp_path, monkeypatch):
    from nerfstudio.utils.rich_utils import CONSOLE

    monkeypatch.setattr(CONSOLE, "width", 400)  # whole file names on one line
    models = tmp_path / "nerfstudio_models"
    for step in (1, 2):
        state = {"step": step, "pipeline": {"w": torch.full((64,), float(step))}}
        save_checkpoint_atomic(state, models / f"step-{step:09d}.ckpt")
    newest = models / "step-000000002.ckpt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with CONSOLE.capture() as captured:
        path, state = load_newest_checkpoint(models)
    assert path.name == "step-000000001.ckpt" and state["step"] == 1
    assert "step-000000002.ckpt" in captured.get() and "does not load" in captured.get()
    (models / "step-000000001.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="no checkpoint loads"):
        load_newest_checkpoint(models)


# ---------------------------------------------------------------- user text in messages
@pytest.mark.parametrize("name", ["clip[final]", "a[/y]b", "[bold]x"])
def test_paths_with_markup_are_printed_as_given(tmp_path, name):
    from nerfstudio.utils.rich_utils import CONSOLE

    out = tmp_path / name
    _plant(out / "notes.txt")
    with CONSOLE.capture() as captured:
        _synth(out, force=True)  # logs the --force warning and the run, both naming the folder
        report_user_error("tool", UserError(f"{out}/clip[final].mp4: no such file"))
    text = captured.get().replace("\n", "")
    assert name in text and f"{name}/clip[final].mp4: no such file" in text


# ---------------------------------------------------------------- with a trained run (a few CPU steps)
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A run trained 1 + 2 steps from its own folder with a relative dataset path; returns config.yml."""
    root = tmp_path_factory.mktemp("trained")
    synth_main(SynthConfig(output=root / "data", scene="windmill", frames=4, resolution=32, steps=20, num_points=200))
    cwd = Path.cwd()
    os.chdir(root)
    try:
        config = make_ds4d_config(
            method_name="ds4d-cpu", static_steps=1, dynamic_steps=2, cpu=True, priors=False, frame_features="none"
        )
        config.output_dir, config.experiment_name, config.timestamp = Path("outputs"), "tiny", "run"
        config.vis, config.steps_per_eval_image, config.steps_per_eval_all_images = "tensorboard", 10_000, 10_000
        config.pipeline.datamanager.data = Path("data")
        ds4d_parts(config)[1].eval_lpips = False
        config.steps_per_save, config.save_only_latest_checkpoint = 1, False
        config.save_config()
        trainer = config.setup(local_rank=0, world_size=1)
        trainer.setup()
        trainer.train()
    finally:
        os.chdir(cwd)
    return root / "outputs/tiny/ds4d-cpu/run/config.yml"


def test_resume_skips_and_names_a_truncated_newest_checkpoint(trained, tmp_path, monkeypatch):
    from nerfstudio.utils.rich_utils import CONSOLE

    run = tmp_path / "copy"
    shutil.copytree(trained.parent.parent.parent.parent.parent, run)  # the training folder: data and outputs
    models = run / "outputs/tiny/ds4d-cpu/run/nerfstudio_models"
    steps = sorted(p.name for p in models.glob("step-*.ckpt"))
    newest = models / steps[-1]
    newest.write_bytes(newest.read_bytes()[:1000])  # a full disk under nerfstudio's in-place save
    _plant(models / "user.ckpt")
    monkeypatch.chdir(run)
    monkeypatch.setattr(CONSOLE, "width", 400)  # whole file names on one line
    config = loading.read_run_config(run / "outputs/tiny/ds4d-cpu/run/config.yml")
    config.timestamp, config.load_dir, config.save_only_latest_checkpoint = "resumed", models, True
    trainer = config.setup(local_rank=0, world_size=1)
    with CONSOLE.capture() as captured:
        trainer.setup()
    assert newest.name in captured.get() and "does not load" in captured.get()
    assert trainer._start_step == int(steps[-2][5:14]) + 1
    trainer.save_checkpoint(7)
    saved = trainer.checkpoint_dir / "step-000000007.ckpt"
    assert torch.load(saved, map_location="cpu", weights_only=True)["step"] == 7
    newest.unlink(missing_ok=True)  # a fresh save with save_only_latest removes older checkpoints only
    trainer.checkpoint_dir = models
    trainer.save_checkpoint(8)
    assert sorted(p.name for p in models.iterdir()) == ["step-000000008.ckpt", "user.ckpt"]


def test_resume_from_empty_checkpoints_stops_before_the_dataset_is_loaded(trained, tmp_path, monkeypatch):
    models = _plant(tmp_path / "models/step-000000003.ckpt", "").parent
    config = loading.read_run_config(trained)
    config.load_dir, config.output_dir = models, tmp_path / "outputs"

    def refuse(*args, **kwargs):
        raise AssertionError("the pipeline was set up before the checkpoint was checked")

    monkeypatch.setattr(type(config.pipeline), "setup", refuse)
    trainer = config.setup(local_rank=0, world_size=1)
    with pytest.raises(CheckpointError, match="empty"):
        trainer.setup()


def test_export_replaces_its_previous_output_whole_and_keeps_the_users_files(trained, tmp_path):
    out = tmp_path / "splats"
    assert len(_export(trained, out, num_times=4)) == 4
    notes = _plant(out / "notes.txt")
    with pytest.raises(OutputFolderError, match="holds notes.txt"):
        _export(trained, out, num_times=2)
    assert len(_export(trained, out, num_times=2, force=True)) == 2
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "ds4d_export.json",
        "manifest.json",
        "notes.txt",
        "ply",
        "ply/frame_0000.ply",
        "ply/frame_0001.ply",
        "times.json",
    ]
    assert [f["file_path"] for f in json.loads((out / "times.json").read_text())["frames"]] == [
        "ply/frame_0000.ply",
        "ply/frame_0001.ply",
    ]
    assert notes.read_text() == "the user's own file"


def test_render_views_and_orbits_share_a_folder_and_replace_only_their_own_videos(trained, tmp_path):
    out = tmp_path / "renders"
    small = {"resolution": 16, "batch_size": 2}
    _views(trained, out, num_times=2, **small)
    _orbit(trained, out, num_frames=2, time=0.5, **small)
    _views(trained, out, num_times=2, view_names=("front",), **small)  # the demo's rerun, with fewer views
    assert sorted(p.name for p in out.iterdir()) == ["ds4d_render.json", "front.mp4", "orbit_t0.500.mp4"]


def test_render_and_export_work_from_another_folder_without_the_dataset(trained, tmp_path, monkeypatch):
    training_folder = tmp_path / "moved"
    shutil.copytree(trained.parent.parent.parent.parent.parent, training_folder)
    config = training_folder / "outputs/tiny/ds4d-cpu/run/config.yml"
    # as if trained elsewhere, with absolute paths that no longer exist here
    moved = loading.read_run_config(config)
    moved.output_dir = Path("/nonexistent/project/outputs")
    moved.pipeline.datamanager.data = moved.pipeline.datamanager.dataparser.data = Path("/nonexistent/project/data")
    config.write_text(yaml.dump(moved))
    monkeypatch.chdir(tmp_path)
    pipeline, step = loading.load_trained_pipeline(config)  # found where it lay beside the run folder
    assert Path(pipeline.datamanager.dataparser.config.data) == training_folder / "data"
    shutil.rmtree(training_folder / "data")
    model, same_step, _ = loading.load_trained_model(config)
    assert same_step == step
    for key, value in pipeline.model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)
    (video,) = _orbit(config, tmp_path / "renders", num_frames=2, resolution=16)
    assert video.stat().st_size > 0
    with pytest.raises(UserError, match="pass --num-times"):
        _export(config, tmp_path / "splats")
    assert len(_export(config, tmp_path / "splats", num_times=2)) == 2
    with pytest.raises(loading.RunLoadError, match="dataset /nonexistent/project/data is not found"):
        loading.load_trained_pipeline(config)
