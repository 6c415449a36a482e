"""``ds4d-batch``: JOBS checks, the manifest, and whole batches of tiny ds4d-synth clips on the CPU.

The batches train ``ds4d-base-cpu`` (the CPU configuration, no pretrained weights) for 6 steps on three
3-frame 32 px clips: on a local Ray instance with two CPUs (a clip corrupted on purpose fails alone, a
rerun does only that one, a task whose worker is killed fails, and the rerun finishes it), and one after
the other in-process without Ray (a clip left ``running`` by a killed batch is run again).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

from ds4d_ns.batch import runner
from ds4d_ns.batch.clip import TASK_MARKER, clip_folder, process_config
from ds4d_ns.batch.jobs import ClipJob, JobsError, read_jobs
from ds4d_ns.batch.manifest import MANIFEST_NAME, BatchManifest, BatchOutputError
from ds4d_ns.batch.runner import SUMMARY_NAME, BatchConfig, run_batch
from ds4d_ns.errors import UserError

METHODS = ("ds4d", "ds4d-base-cpu")
TINY_TRAINING = (
    "--max-num-iterations 6 --pipeline.model.static-stage-steps 2 --pipeline.datamanager.camera-res-scale-factor 1.0"
)


def tiny_config(jobs: Path, out: Path, **overrides: Any) -> BatchConfig:
    """A batch of ds4d-base-cpu, 6 steps at 32 px, small eval and renders, CPU-only Ray tasks."""
    options: Dict[str, Any] = dict(
        method="ds4d-base-cpu",
        train_args=TINY_TRAINING,
        gpus_per_job=0.0,
        cpus_per_job=1,
        memory_gb_per_job=0.5,
        eval_metrics=("psnr",),
        render_resolution=32,
        render_num_times=3,
        orbit_frames=2,
    )
    options.update(overrides)
    return BatchConfig(jobs=jobs, output=out, **options)


def manifest_clips(out: Path) -> Dict[str, dict]:
    return json.loads((out / MANIFEST_NAME).read_text())["clips"]


def summary(out: Path) -> List[Dict[str, str]]:
    with open(out / SUMMARY_NAME, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def synth_clips(tmp_path_factory) -> Path:
    """Three tiny ds4d-synth datasets (3 frames, 32 px), made once; tests copy them."""
    from ds4d_ns.scripts.synth import SynthConfig
    from ds4d_ns.scripts.synth import main as synth

    root = tmp_path_factory.mktemp("synth")
    for index in range(3):
        synth(SynthConfig(output=root / f"clip{index}", frames=3, resolution=32, seed=index, num_points=300, steps=30))
    return root


def copy_clips(synth_clips: Path, folder: Path, names=("clip0", "clip1", "clip2")) -> Path:
    for name in names:
        shutil.copytree(synth_clips / name, folder / name)
    return folder


def first_image(dataset: Path) -> Path:
    frames = json.loads((dataset / "transforms.json").read_text())["frames"]
    return dataset / frames[0]["file_path"]


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance with two CPUs for this module's batches (its workers are reused between them)."""
    ray = pytest.importorskip("ray")
    runner.start_local_ray(ray, num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


# --- JOBS: every problem named before any work -------------------------------------------------------


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("input,speed\nclip0,1\n", "unknown columns ['speed']"),
        ("name\nclip0\n", "no 'input' column"),
        ("input\nclip0\nmissing\n", "line 3: input 'missing': no such file or folder"),
        ("input,num_frames\nclip0,3\n", "line 2: num_frames is a ds4d-process option, but 'clip0' is a ready dataset"),
        ("input,method\nclip0,nerfacto\n", "line 2: method 'nerfacto' is not a ds4d method"),
        ("input,name\nclip0,a\nclip1,a\n", "two clips are named 'a'"),
        ("input,name\nclip0,../up\n", "line 2: clip name '../up' cannot name a folder"),
        ("input\nclip0,extra\n", "line 2: 2 values for 1 columns"),
        ("input\nnotes.txt\n", "line 2: input 'notes.txt' is a file but not a video"),
        ("", "empty"),
    ],
)
def test_bad_jobs_csv_is_refused_naming_the_file_and_line(synth_clips, tmp_path, content, expected):
    jobs = copy_clips(synth_clips, tmp_path / "jobs", names=("clip0", "clip1"))
    (jobs / "notes.txt").write_text("not a clip")
    csv_path = write_csv(jobs / "jobs.csv", content)
    with pytest.raises(JobsError) as err:
        read_jobs(csv_path, tmp_path / "out", METHODS)
    assert expected in str(err.value) and str(csv_path) in str(err.value)


def test_jobs_csv_reads_videos_frames_and_datasets_with_their_options(synth_clips, tmp_path):
    jobs = copy_clips(synth_clips, tmp_path / "jobs", names=("clip0",))
    (jobs / "frames").mkdir()
    shutil.copy(first_image(jobs / "clip0"), jobs / "frames" / "0.png")
    (jobs / "masks").mkdir()
    (jobs / "walk.mp4").write_bytes(b"not decoded here")
    csv_path = write_csv(
        jobs / "jobs.csv",
        "Input,name,num-frames,matting,masks,method\nwalk.mp4,,12,white,masks,ds4d\nframes,still,,,,\nclip0,,,,,\n",
    )
    clips = read_jobs(csv_path, tmp_path / "out", METHODS)
    assert [(c.name, c.kind, c.method) for c in clips] == [
        ("walk", "video", "ds4d"),
        ("still", "frames", None),
        ("clip0", "dataset", None),
    ]
    assert clips[0].process == {"num_frames": 12, "matting": "white", "masks": jobs / "masks"}
    # --process-args first, the clip's own columns over them; ds4d-batch sets the input and output
    config = process_config(clips[0], "--matting none --resolution 64 --model-id /weights/zero123plus", tmp_path / "d")
    assert (config.input, config.output) == (jobs / "walk.mp4", tmp_path / "d")
    assert (config.matting, config.num_frames, config.resolution) == ("white", 12, 64)
    assert config.zero123plus.model_id == "/weights/zero123plus"
    with pytest.raises(UserError, match="--process-args"):
        process_config(clips[0], "--no-such-flag 1", tmp_path / "d")


def test_jobs_folder_lists_clips_and_refuses_a_folder_that_is_not_one(synth_clips, tmp_path):
    jobs = copy_clips(synth_clips, tmp_path / "jobs", names=("clip0", "clip1"))
    (jobs / "readme.txt").write_text("ignored")
    (jobs / "out").mkdir()  # OUT inside JOBS is not taken for a clip
    (jobs / "out" / "x.png").write_bytes(b"")
    clips = read_jobs(jobs, jobs / "out", METHODS)
    assert [(c.name, c.kind) for c in clips] == [("clip0", "dataset"), ("clip1", "dataset")]
    with pytest.raises(JobsError, match="lies inside OUT"):
        read_jobs(jobs, jobs, METHODS)
    (jobs / "empty").mkdir()
    with pytest.raises(JobsError, match="empty/ is not a clip"):
        read_jobs(jobs, tmp_path / "out", METHODS)


def test_out_of_other_settings_or_other_files_is_refused(tmp_path):
    job = ClipJob("a", tmp_path / "a", "dataset", "folder")
    manifest = BatchManifest.open(tmp_path / "out", {"method": "ds4d"}, [job])
    manifest.save()
    with pytest.raises(BatchOutputError, match="other settings"):
        BatchManifest.open(tmp_path / "out", {"method": "ds4d-ga"}, [job])
    moved = ClipJob("a", tmp_path / "b", "dataset", "folder")
    with pytest.raises(BatchOutputError, match="clip 'a'"):
        BatchManifest.open(tmp_path / "out", {"method": "ds4d"}, [moved])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "holiday.jpg").write_bytes(b"")
    with pytest.raises(BatchOutputError, match="not a ds4d-batch output"):
        BatchManifest.open(tmp_path / "other", {"method": "ds4d"}, [job])


def test_bad_flags_stop_the_batch_before_any_work(synth_clips, tmp_path):
    jobs = copy_clips(synth_clips, tmp_path / "jobs", names=("clip0",))
    bad = [
        ({"gpus_per_job": 2.0}, "--gpus-per-job"),
        ({"train_args": "--no-such-flag 3"}, "--train-args"),
        ({"train_args": "--output-dir elsewhere"}, "sets output_dir"),
        ({"method": "nerfacto"}, "--method 'nerfacto'"),
        ({"eval_metrics": ("psnr", "sharpness")}, "--eval-metrics"),
    ]
    for overrides, expected in bad:
        with pytest.raises(UserError, match=expected):
            run_batch(tiny_config(jobs, tmp_path / "out", sequential=True, **overrides))
    assert not (tmp_path / "out").exists()


# --- whole batches -------------------------------------------------------------------------------


@pytest.mark.slow
def test_ray_batch_one_corrupt_clip_fails_alone_and_a_rerun_does_only_it(synth_clips, tmp_path, local_ray):
    jobs = copy_clips(synth_clips, tmp_path / "jobs")
    image = first_image(jobs / "clip1")
    good_bytes = image.read_bytes()
    image.write_bytes(good_bytes[: len(good_bytes) // 2])  # a truncated PNG: the dataparser names it
    out = tmp_path / "out"

    rows = run_batch(tiny_config(jobs, out))

    assert [(r["clip"], r["status"]) for r in rows] == [("clip0", "done"), ("clip1", "failed"), ("clip2", "done")]
    clips = manifest_clips(out)
    assert image.name in clips["clip1"]["error"] and "Traceback" in clips["clip1"]["traceback"]
    for name in ("clip0", "clip2"):
        outputs = clips[name]["outputs"]
        assert Path(outputs["config"]).is_file() and clips[name]["metrics"]["psnr"] > 5
        assert sorted(p.name for p in Path(outputs["renders"]).glob("*.mp4")) == [
            "back.mp4",
            "front.mp4",
            "left.mp4",
            "orbit_t0.500.mp4",
            "right.mp4",
        ]
        assert len(list(Path(outputs["splats"]).rglob("*.ply"))) == 3  # one splat per frame
        assert (Path(outputs["splats"]) / "manifest.json").is_file()
        assert clips[name]["worker"]["pid"] != os.getpid()  # ran in a Ray worker, not in this process
    table = summary(out)
    assert [r["status"] for r in table] == ["done", "failed", "done"] and float(table[0]["psnr"]) > 5
    assert table[1]["error"] == clips["clip1"]["error"]

    image.write_bytes(good_bytes)
    done_config = Path(clips["clip0"]["outputs"]["config"])
    stamp = done_config.stat().st_mtime_ns
    rows = run_batch(tiny_config(jobs, out))

    assert [r["status"] for r in rows] == ["done", "done", "done"]
    clips = manifest_clips(out)
    assert [clips[n]["attempts"] for n in ("clip0", "clip1", "clip2")] == [1, 2, 1]
    assert done_config.stat().st_mtime_ns == stamp  # the clips done earlier were not touched
    assert clips["clip1"]["error"] is None and clips["clip1"]["metrics"]["psnr"] > 5


@pytest.mark.slow
def test_ray_task_killed_fails_its_clip_and_the_rerun_finishes_it(synth_clips, tmp_path, local_ray):
    jobs = copy_clips(synth_clips, tmp_path / "jobs", names=("clip0",))
    out = tmp_path / "out"
    marker = clip_folder(out, "clip0") / TASK_MARKER
    result: Dict[str, object] = {}
    batch = threading.Thread(target=lambda: result.update(rows=run_batch(tiny_config(jobs, out))))
    batch.start()
    deadline = time.monotonic() + 120
    while not marker.is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = json.loads(marker.read_text())["pid"]
    assert pid != os.getpid()
    os.kill(pid, signal.SIGKILL)  # the Ray worker running the clip's task (started by this test's Ray)
    batch.join(timeout=120)

    assert [r["status"] for r in result["rows"]] == ["failed"]
    record = manifest_clips(out)["clip0"]
    assert record["worker"]["pid"] == pid and "Worker" in record["error"]

    rows = run_batch(tiny_config(jobs, out))
    assert [r["status"] for r in rows] == ["done"]
    assert manifest_clips(out)["clip0"]["attempts"] == 2


def write_disc_video(folder: Path, frames: int = 4, size: int = 48) -> Path:
    """A video of a red disc moving on white, with a folder ``masks`` of its masks beside it."""
    import numpy as np

    from ds4d_ns.io.video import write_video_atomic
    from ds4d_ns.io.writers import write_png_atomic

    ys, xs = np.mgrid[0:size, 0:size]
    images = []
    for i in range(frames):
        inside = (xs - (16 + 4 * i)) ** 2 + (ys - 24) ** 2 <= 8**2
        image = np.full((size, size, 3), 255, dtype=np.uint8)
        image[inside] = (200, 40, 40)
        images.append(image)
        write_png_atomic(folder / "masks" / f"m{i:03d}.png", (inside * 255).astype(np.uint8))
    write_video_atomic(folder / "disc.mp4", images, fps=10)
    return folder / "disc.mp4"


@pytest.mark.slow
def test_without_ray_clips_run_in_process_and_a_clip_left_running_is_run_again(
    synth_clips, tmp_path, tiny_zero123plus, monkeypatch, capsys
):
    monkeypatch.setattr(runner, "ray_module", lambda: None)
    jobs = copy_clips(synth_clips, tmp_path / "jobs", names=("clip0",))
    write_disc_video(jobs)
    csv_path = write_csv(jobs / "jobs.csv", "input,masks,num_frames\nclip0,,\ndisc.mp4,masks,3\n")
    process_args = (
        f"--model-id {tiny_zero123plus} --num-inference-steps 2 --tile-size 16 --resolution 32 --num-points 300 "
        "--hull-resolution 24 --device cpu"
    )
    out = tmp_path / "out"

    rows = run_batch(tiny_config(csv_path, out, process_args=process_args))

    assert [(r["clip"], r["status"]) for r in rows] == [("clip0", "done"), ("disc", "done")]
    assert "pip install 'ds4d-ns[batch]'" in capsys.readouterr().out.replace("\n", "")
    clips = manifest_clips(out)
    assert all(record["worker"]["pid"] == os.getpid() for record in clips.values())  # in this process
    # the video went through ds4d-process (3 frames, 1 input + 6 pseudo views); it has no eval views
    dataset = Path(clips["disc"]["outputs"]["dataset"])
    assert dataset == clip_folder(out, "disc") / "data" and len(list(dataset.rglob("*.png"))) == 3 * 7
    assert clips["disc"]["metrics"] is None and "eval" not in clips["disc"]["outputs"]
    assert len(list(Path(clips["disc"]["outputs"]["splats"]).rglob("*.ply"))) == 3
    checkpoint = next(Path(clips["disc"]["outputs"]["config"]).parent.glob("nerfstudio_models/*.ckpt"))
    stamp = checkpoint.stat().st_mtime_ns

    # a batch killed while the disc clip was being rendered leaves it "running" in the manifest
    content = json.loads((out / MANIFEST_NAME).read_text())
    content["clips"]["disc"]["state"] = "running"
    (out / MANIFEST_NAME).write_text(json.dumps(content))
    rows = run_batch(tiny_config(csv_path, out, process_args=process_args))

    assert [r["status"] for r in rows] == ["done", "done"]
    assert "interrupted earlier" in capsys.readouterr().out.replace("\n", "")
    clips = manifest_clips(out)
    assert (clips["clip0"]["attempts"], clips["disc"]["attempts"]) == (1, 2)
    assert checkpoint.stat().st_mtime_ns == stamp  # its finished training was kept, not trained again


def test_ray_cluster_without_the_gpus_asked_for_is_refused_before_any_work(synth_clips, tmp_path, local_ray):
    jobs = copy_clips(synth_clips, tmp_path / "jobs", names=("clip0",))
    with pytest.raises(UserError, match="--gpus-per-job: each clip asks for more GPU"):
        run_batch(tiny_config(jobs, tmp_path / "out", gpus_per_job=1.0))
    assert not (tmp_path / "out").exists()
    assert local_ray.is_initialized()  # a Ray instance the batch did not start is left running


class _Backend:
    """Stands for gsplat's backend module: ``_C`` is its CUDA library, or None when it could not be made."""

    def __init__(self, library) -> None:
        self._C = library


def test_gsplat_kernels_are_loaded_once_before_parallel_clips_only_with_cuda(monkeypatch):
    import importlib

    import torch

    from ds4d_ns.batch import gsplat_kernels

    imported: List[str] = []

    def import_module(name, backend=None):
        imported.append(name)
        if isinstance(backend, Exception):
            raise backend
        return backend

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(importlib, "import_module", lambda name: import_module(name, _Backend(object())))
    assert gsplat_kernels.load_gsplat_kernels() is False and imported == []  # no CUDA: nothing to build

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert gsplat_kernels.load_gsplat_kernels() is True and imported == [gsplat_kernels.BACKEND_MODULE]

    monkeypatch.setattr(importlib, "import_module", lambda name: import_module(name, _Backend(None)))
    with pytest.raises(UserError, match="not available.*python -c 'from gsplat.cuda._backend import _C'"):
        gsplat_kernels.load_gsplat_kernels()

    failure = RuntimeError("Error building extension 'gsplat_cuda'")
    monkeypatch.setattr(importlib, "import_module", lambda name: import_module(name, failure))
    with pytest.raises(UserError, match="could not be built: RuntimeError: Error building extension 'gsplat_cuda'"):
        gsplat_kernels.load_gsplat_kernels()


@pytest.mark.parametrize(
    "address, gpus, clips, loads",
    [
        (None, 1.0, 2, True),
        (None, 0.25, 4, True),
        (None, 0.0, 2, False),
        (None, 1.0, 1, False),
        ("auto", 1.0, 2, False),
    ],
)
def test_local_gpu_batches_load_gsplat_kernels_before_their_tasks(monkeypatch, tmp_path, address, gpus, clips, loads):
    class Stop(Exception):
        """Ends the run where the tasks would be submitted."""

    class NoRay:
        def remote(self, function):
            raise Stop

    loaded: List[bool] = []
    monkeypatch.setattr(runner, "load_gsplat_kernels", lambda: loaded.append(True))
    executor = runner.RayExecutor.__new__(runner.RayExecutor)
    executor.ray = NoRay()
    executor.config = BatchConfig(jobs=tmp_path, output=tmp_path / "out", ray_address=address, gpus_per_job=gpus)
    manifest = BatchManifest.__new__(BatchManifest)
    manifest.out = tmp_path / "out"
    todo = [ClipJob(f"clip{i}", tmp_path, "dataset", "test") for i in range(clips)]
    with pytest.raises(Stop):
        executor.run(todo, manifest, runner.ClipSettings(), None)
    assert loaded == ([True] if loads else [])


# --- the manifest checked, not trusted; one batch per OUT; defaults that follow the machine ----------------


def dataset_folders(folder: Path, names=("clip0", "clip1")) -> Path:
    """Folders that JOBS reads as ready datasets (the fake clips below never read them)."""
    for name in names:
        (folder / name).mkdir(parents=True)
        (folder / name / "transforms.json").write_text("{}")
    return folder


def fake_run_clip(calls: List[str]):
    """Stands for ``run_clip``: writes a clip's outputs as the real steps lay them out, in a moment."""

    def run(job: ClipJob, settings, out: Path, attempt: str) -> Dict[str, Any]:
        calls.append(job.name)
        clip = clip_folder(out, job.name)
        run_dir = clip / "train" / settings.method / "run"
        files = {
            run_dir / "config.yml": b"config",
            run_dir / "nerfstudio_models" / "step-000000005.ckpt": b"weights",
            clip / "eval" / "metrics.json": b"{}",
            clip / "renders" / "front.mp4": b"video",
            clip / "splats" / "ply" / "frame_0000.ply": b"ply",
            clip / "splats" / "manifest.json": b"{}",
        }
        for path, content in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        outputs = {
            "dataset": str(job.source),
            "config": str(run_dir / "config.yml"),
            "eval": str(clip / "eval" / "metrics.json"),
            "renders": str(clip / "renders"),
            "splats": str(clip / "splats"),
        }
        return {"state": "done", "minutes": 0.01, "outputs": outputs, "metrics": {"psnr": 30.0}, "started": attempt}

    return run


def logged(capsys) -> str:
    return " ".join(capsys.readouterr().out.split())


def test_a_done_clip_whose_outputs_are_gone_or_changed_is_run_again(tmp_path, monkeypatch, capsys):
    from nerfstudio.utils.rich_utils import CONSOLE

    monkeypatch.setattr(CONSOLE, "width", 400)  # log lines unwrapped
    calls: List[str] = []
    monkeypatch.setattr(runner, "run_clip", fake_run_clip(calls))
    jobs = dataset_folders(tmp_path / "jobs", ("clip0", "clip1", "clip2", "clip3"))
    out = tmp_path / "out"
    config = tiny_config(jobs, out, sequential=True)
    run_batch(config)
    assert calls == ["clip0", "clip1", "clip2", "clip3"]
    sizes = manifest_clips(out)["clip1"]["sizes"]  # recorded when the clip was done
    assert sizes["clips/clip1/renders/front.mp4"] == len(b"video")
    assert sizes["clips/clip1/train/ds4d-base-cpu/run/nerfstudio_models/step-000000005.ckpt"] == len(b"weights")

    calls.clear()
    shutil.rmtree(clip_folder(out, "clip0") / "splats")  # the user deleted a finished clip's splats/ ...
    shutil.rmtree(clip_folder(out, "clip1") / "train")  # ... another one's train/
    (clip_folder(out, "clip2") / "renders" / "front.mp4").write_bytes(b"vid")  # ... changed a third one's render
    content = json.loads((out / MANIFEST_NAME).read_text())
    del content["clips"]["clip3"]["sizes"]  # a manifest written before sizes were recorded: checked, then recorded
    (out / MANIFEST_NAME).write_text(json.dumps(content))
    capsys.readouterr()
    rows = run_batch(config)

    assert calls == ["clip0", "clip1", "clip2"] and [r["status"] for r in rows] == ["done"] * 4
    text = logged(capsys)
    splats = clip_folder(out, "clip0") / "splats"
    assert f"clip clip0: done in {out / MANIFEST_NAME}, but its splats output {splats} does not exist" in text
    assert "clip clip1: done in" in text and "config output" in text
    assert f"{clip_folder(out, 'clip2')}/renders/front.mp4 has 3 bytes, 5 when the clip was done" in text
    assert "clip clip3:" not in text and "1 done earlier (skipped), 3 to run" in text
    assert "clips/clip3/splats/manifest.json" in manifest_clips(out)["clip3"]["sizes"]

    # a never-run clip marked done by hand, with metrics and outputs that do not exist
    dataset_folders(jobs, ("clip4",))
    content = json.loads((out / MANIFEST_NAME).read_text())
    ghost = clip_folder(out, "clip4")
    content["clips"]["clip4"] = {
        "state": "done",
        "attempts": 1,
        "clip": ClipJob("clip4", (jobs / "clip4").absolute(), "dataset", "folder").identity(),
        "metrics": {"psnr": 99.0},
        "outputs": {"dataset": str(jobs / "clip4"), "config": str(ghost / "config.yml"), "splats": str(ghost)},
    }
    (out / MANIFEST_NAME).write_text(json.dumps(content))
    calls.clear()
    rows = run_batch(config)
    assert calls == ["clip4"] and "clip clip4: done in" in logged(capsys)
    for row in summary(out):  # the summary never lists a path that does not exist
        for column in runner.OUTPUT_COLUMNS:
            assert row[column] == "" or Path(row[column]).exists(), (row["clip"], column, row[column])


def test_the_summary_leaves_out_paths_that_are_gone(tmp_path):
    job = ClipJob("a", tmp_path / "a", "dataset", "folder")
    manifest = BatchManifest.open(tmp_path / "out", {}, [job])
    manifest.clips["a"].update(state="failed", outputs={"dataset": str(tmp_path), "config": str(tmp_path / "gone")})
    row = runner.summary_rows([job], manifest)[0]
    assert (row["dataset"], row["config"]) == (str(tmp_path), None)


def test_a_second_batch_on_one_out_refuses_at_once_and_a_killed_ones_lock_is_taken_over(tmp_path, monkeypatch, capsys):
    from nerfstudio.utils.rich_utils import CONSOLE
    from test_folder_lock import hold_lock

    from ds4d_ns.io.folder_lock import LOCK_NAME, FolderLockError

    monkeypatch.setattr(CONSOLE, "width", 400)
    calls: List[str] = []
    monkeypatch.setattr(runner, "run_clip", fake_run_clip(calls))
    jobs = dataset_folders(tmp_path / "jobs", ("clip0",))
    out = tmp_path / "out"
    out.mkdir()
    config = tiny_config(jobs, out, sequential=True)
    first = hold_lock(out, "ds4d-batch")  # a batch running on OUT in another process
    with pytest.raises(FolderLockError) as err:
        run_batch(config)
    message = str(err.value)
    assert f"is being written by ds4d-batch (pid {first.pid} on " in message and str(out / LOCK_NAME) in message
    assert "since" in message and calls == [] and not (out / MANIFEST_NAME).exists()

    first.kill()  # killed outright: its lock stays behind, its process is gone
    first.wait()
    assert (out / LOCK_NAME).is_file()
    capsys.readouterr()
    rows = run_batch(config)
    assert [r["status"] for r in rows] == ["done"] and calls == ["clip0"]
    assert f"stale lock of ds4d-batch (pid {first.pid} on" in logged(capsys)
    assert not (out / LOCK_NAME).exists()  # released at the end

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_clip", interrupted)
    (out / MANIFEST_NAME).write_text((out / MANIFEST_NAME).read_text().replace('"done"', '"failed"'))
    with pytest.raises(KeyboardInterrupt):
        run_batch(config)
    assert not (out / LOCK_NAME).exists()  # released on an exception too


class _CpuRay:
    """Stands for ``ray`` on a machine without GPUs: a local instance with two CPUs and no GPU resource."""

    def __init__(self) -> None:
        self.started = False

    def is_initialized(self) -> bool:
        return self.started

    def init(self, address=None, **options) -> None:
        self.started = True

    def cluster_resources(self) -> Dict[str, float]:
        return {"CPU": 2.0, "memory": 8.0 * 2**30}

    def shutdown(self) -> None:
        self.started = False


def test_without_cuda_the_batch_defaults_to_cpus_and_the_cpu_configuration(tmp_path, monkeypatch, capsys):
    import torch
    from nerfstudio.utils.rich_utils import CONSOLE

    from ds4d_ns import pretrained as weights

    monkeypatch.setattr(CONSOLE, "width", 400)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runner, "ray_module", _CpuRay)
    monkeypatch.setattr(weights, "require_weights", lambda *args, **kwargs: None)  # ds4d-cpu's weights: not here
    calls: List[str] = []
    fake = fake_run_clip(calls)
    declared: List[float] = []

    def run(executor, todo, manifest, settings, display):
        declared.append(executor.config.gpus)
        for job in todo:
            manifest.mark_finished(job.name, fake(job, settings, manifest.out.absolute(), "attempt"))

    monkeypatch.setattr(runner.RayExecutor, "run", run)
    jobs = dataset_folders(tmp_path / "jobs", ("clip0",))
    # --method and --gpus-per-job left out, as a user types it
    defaults = BatchConfig(jobs=jobs, output=tmp_path / "out", train_args=TINY_TRAINING, memory_gb_per_job=0.5)
    rows = run_batch(defaults)

    assert [r["status"] for r in rows] == ["done"] and declared == [0.0]
    assert json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())["settings"]["method"] == "ds4d-cpu"
    assert "no CUDA on this machine: clips train on CPUs with ds4d-cpu and --gpus-per-job 0" in logged(capsys)
    # a GPU the user asks for is still refused where there is none
    asked = BatchConfig(jobs=jobs, output=tmp_path / "out2", method="ds4d-cpu", gpus_per_job=1.0)
    with pytest.raises(UserError, match=r"--gpus-per-job: each clip asks for more GPU than the whole Ray cluster"):
        run_batch(asked)
    # with CUDA, or on a cluster (its machines are not this one), the defaults stay the GPU ones
    assert (defaults.for_this_machine(cuda=True).method, defaults.for_this_machine(cuda=True).gpus) == ("ds4d", 1.0)
    cluster = BatchConfig(jobs=jobs, output=tmp_path / "out", ray_address="auto").for_this_machine(cuda=False)
    assert (cluster.method_name, cluster.gpus) == ("ds4d", 1.0)
