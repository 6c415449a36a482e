"""One clip's whole job, through the same Python entry points as the commands.

:func:`run_clip` runs, in the process it is called in (a Ray worker, or the batch's own process):

1. ``ds4d-process`` (:func:`ds4d_ns.process.run.process`) for a video or a frame folder, into
   ``OUT/clips/NAME/data`` (resumable: a rerun with the same settings skips what exists); a ready
   dataset is used where it is;
2. training, as ``ns-train`` does it in its one process (nerfstudio's ``train_loop``), into
   ``OUT/clips/NAME/train/METHOD/run``; a run whose final checkpoint exists is not trained again;
3. ``ds4d-eval model`` into ``OUT/clips/NAME/eval``, when the dataset has ``eval`` views;
4. ``ds4d-render views`` and ``ds4d-render orbit`` into ``OUT/clips/NAME/renders``;
5. ``ds4d-export`` into ``OUT/clips/NAME/splats`` (through :func:`export_splats`, the one call to update
   when the export command's Python API changes).

It never raises for a problem of the clip: it returns an outcome (``done``, or ``failed`` with the error's
line and traceback), so one clip never stops the others. Flags the user gives for ``ds4d-process`` and
``ns-train`` (``--process-args``, ``--train-args``) are parsed in-process by tyro against the commands' own
configurations (:func:`parse_flags`); no command line is built for a shell.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, TypeVar

from ds4d_ns.batch.jobs import ClipJob
from ds4d_ns.data.dataset_format import TRANSFORMS_NAME
from ds4d_ns.errors import UserError
from ds4d_ns.evaluation.protocol import MetricName
from ds4d_ns.io.writers import write_json_atomic

CLIPS_FOLDER = "clips"
"""OUT's folder holding one folder per clip."""
TASK_MARKER = "ds4d_batch_task.json"
"""Written by a task in its clip's folder when it starts: the attempt, host and process id."""
TRAIN_EXPERIMENT, TRAIN_TIMESTAMP = "train", "run"
"""A clip's run folder is ``OUT/clips/NAME/train/METHOD/run`` (nerfstudio's experiment/method/timestamp)."""
TRAIN_FIXED_FIELDS = (
    "output_dir",
    "experiment_name",
    "timestamp",
    "data",
    "load_dir",
    "load_checkpoint",
    "load_config",
)
"""Trainer fields ds4d-batch sets itself; --train-args may not change them."""

T = TypeVar("T")


@dataclass(frozen=True)
class ClipSettings:
    """What every clip of a batch is run with (the batch's flags; sent to each task)."""

    method: str = "ds4d"
    """ds4d method trained for clips whose JOBS entry names none."""
    train_args: str = ""
    """ns-train flags for the method's configuration, e.g. ``--max-num-iterations 3000``."""
    process_args: str = ""
    """ds4d-process flags for videos and frame folders, e.g. ``--matting white --num-frames 32``."""
    eval_metrics: Tuple[MetricName, ...] = ()
    """ds4d-eval metrics (empty: ds4d-eval's default, all)."""
    render_resolution: int = 512
    """Side of the rendered videos in pixels."""
    render_num_times: int = 60
    """Time steps of the front/right/back/left videos."""
    orbit_frames: int = 120
    """Frames of the orbit video at mid-clip (0: no orbit)."""
    export_num_times: Optional[int] = None
    """Time steps exported (None: one per training frame)."""
    torch_threads: Optional[int] = None
    """CPU threads torch may use in the task (None: torch's default); a Ray task gets its declared CPUs."""


@dataclass
class ClipOutcome:
    """What one clip's job gave; sent back to the driver, which records it in the manifest."""

    state: str
    """done or failed."""
    minutes: float
    """Wall-clock minutes of this attempt."""
    outputs: Dict[str, str] = field(default_factory=dict)
    """Paths made (dataset, config, eval, renders, splats), as far as the job got."""
    metrics: Optional[Dict[str, Any]] = None
    """ds4d-eval's means (None without eval views)."""
    error: Optional[str] = None
    """The error's type and message (failed only)."""
    traceback: Optional[str] = None
    """The error's traceback (failed only)."""
    started: Optional[str] = None
    """When the attempt started (ISO 8601)."""

    def as_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def clip_folder(out: Path, name: str) -> Path:
    return Path(out) / CLIPS_FOLDER / name


def parse_flags(default: T, text: str, flag: str, command: str) -> T:
    """``default`` with the flags in ``text`` applied, parsed by tyro as ``command`` parses them.

    Raises:
        UserError: naming ``flag`` when tyro refuses the flags (tyro has printed why).
    """
    import tyro

    try:
        args = shlex.split(text)
    except ValueError as err:
        raise UserError(f"{flag} {text!r}: {err} (quote values with spaces)") from err
    if not args:
        return default
    try:
        return tyro.cli(type(default), default=default, args=args, prog=command)
    except SystemExit as err:
        raise UserError(f"{flag} {text!r}: not flags of `{command}` (see above, and `{command} --help`)") from err


def method_configs() -> Dict[str, Any]:
    """The ds4d methods by name, as ``ns-train`` finds them (the plugin's entry points)."""
    from nerfstudio.plugins.registry import discover_methods

    from ds4d_ns.trainer import Ds4dTrainerConfig

    methods, _ = discover_methods()
    return {name: config for name, config in methods.items() if isinstance(config, Ds4dTrainerConfig)}


def training_config(method: str, train_args: str, dataset: Path, clip_dir: Path, methods: Optional[Dict] = None):
    """The trainer configuration of one clip: ``ns-train METHOD TRAIN_ARGS`` with the batch's own run folder.

    Raises:
        UserError: an unknown method, flags ns-train refuses, or flags that set what the batch sets.
    """
    import copy

    methods = method_configs() if methods is None else methods
    if method not in methods:
        raise UserError(f"--method {method!r}: not a ds4d method; choose one of {sorted(methods)}")
    base = copy.deepcopy(methods[method])
    base.vis = "tensorboard"  # no viewer server per clip; --train-args may pick wandb or comet
    config = parse_flags(base, train_args, "--train-args", f"ns-train {method}")
    for name in TRAIN_FIXED_FIELDS:
        if getattr(config, name) != getattr(base, name):
            raise UserError(f"--train-args {train_args!r}: sets {name}, which ds4d-batch sets for each clip")
    if config.pipeline.datamanager.data != base.pipeline.datamanager.data:
        raise UserError(f"--train-args {train_args!r}: sets the data, which ds4d-batch sets for each clip")
    if "viewer" in config.vis:
        raise UserError(f"--train-args {train_args!r}: --vis {config.vis} opens a viewer per clip; use tensorboard")
    config.pipeline.datamanager.data = Path(dataset)
    config.output_dir = Path(clip_dir)
    config.experiment_name = TRAIN_EXPERIMENT
    config.timestamp = TRAIN_TIMESTAMP
    config.viewer.quit_on_train_completion = True  # a batch never waits on a viewer
    return config


def process_config(job: ClipJob, process_args: str, output: Path):
    """The ds4d-process configuration of a video or frame folder: --process-args, then the clip's own options.

    Raises:
        UserError: flags ds4d-process refuses, or flags that name its input or output.
    """
    from ds4d_ns.process.run import ProcessConfig

    base = ProcessConfig(input=job.source, output=Path(output))
    config = parse_flags(base, process_args, "--process-args", "ds4d-process")
    if (config.input, config.output) != (base.input, base.output):
        raise UserError(f"--process-args {process_args!r}: names an input or output; ds4d-batch sets them per clip")
    return dataclasses.replace(config, **job.process)


def has_eval_views(dataset: Path) -> bool:
    """Whether the dataset's transforms.json has frames of role ``eval``."""
    try:
        frames = json.loads((Path(dataset) / TRANSFORMS_NAME).read_text()).get("frames", [])
        return any(isinstance(frame, dict) and frame.get("role") == "eval" for frame in frames)
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


def train(config) -> Path:
    """Train as ``ns-train`` does in its one process; return the run's config.yml.

    A run whose final checkpoint exists (an earlier attempt trained it, and a later step failed) is kept.
    """
    from ds4d_ns.io.checkpoints import checkpoint_name

    config_path = config.get_base_dir() / "config.yml"
    final = config.get_checkpoint_dir() / checkpoint_name(config.max_num_iterations - 1)
    if final.is_file() and config_path.is_file():
        return config_path
    config.save_config()  # as ns-train does first (the plugin settles device and schedule here)
    try:
        _train_loop(config)
    finally:
        from ds4d_ns.trainer import forget_event_writers

        forget_event_writers()
    if not final.is_file():
        raise RuntimeError(f"training ended without its final checkpoint {final}")
    return config_path


def _train_loop(config) -> None:
    """What nerfstudio's ``train_loop`` does in ns-train's single process: seed, set up, train.

    Not imported from ``nerfstudio.scripts.train``: that module builds every nerfstudio method's
    configuration on import (about 10 s on two cores), in every worker.
    """
    import random

    import numpy as np
    import torch

    random.seed(config.machine.seed)
    np.random.seed(config.machine.seed)
    torch.manual_seed(config.machine.seed)
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    trainer.train()


def evaluate(config_path: Path, output_dir: Path, metrics: Tuple[MetricName, ...]) -> Dict[str, Any]:
    """``ds4d-eval model``; returns its means (metrics computed; unavailable ones left out)."""
    from ds4d_ns.scripts.eval import EvalModel

    # no metrics given: the keyword is left out, for ds4d-eval's own default (values Any, as EvalModel's keywords vary)
    options: Dict[str, Any] = {"metrics": tuple(metrics)} if metrics else {}
    metrics_path, _ = EvalModel(load_config=config_path, output_dir=output_dir, **options).main()
    means = json.loads(Path(metrics_path).read_text())["means"]
    return {name: value for name, value in means.items() if value is not None}


def render(config_path: Path, output_dir: Path, settings: ClipSettings) -> List[Path]:
    """``ds4d-render views`` (front, right, back, left over the clip) and ``ds4d-render orbit`` at mid-clip."""
    from ds4d_ns.scripts.render import RenderOrbit, RenderViews

    size = settings.render_resolution
    paths = RenderViews(
        load_config=config_path, output_dir=output_dir, resolution=size, num_times=settings.render_num_times
    ).main()
    if settings.orbit_frames > 0:
        orbit = RenderOrbit(
            load_config=config_path, output_dir=output_dir, resolution=size, num_frames=settings.orbit_frames
        )
        paths += orbit.main()
    return paths


def export_splats(config_path: Path, output_dir: Path, num_times: Optional[int]) -> Path:
    """``ds4d-export`` of a trained run into ``output_dir`` (``ply/frame_XXXX.ply``, ``manifest.json``); returns
    the folder.

    The batch's one call of the export command: when its Python API changes, only this changes.
    """
    from ds4d_ns.scripts.export import ExportGaussianSequence, export_sequence

    options = ExportGaussianSequence(load_config=config_path, output_dir=output_dir, num_times=num_times)
    return Path(export_sequence(options).output_dir)


def write_task_marker(clip_dir: Path, attempt: str) -> Dict[str, Any]:
    """Say in the clip's folder that this process has started ``attempt`` (the driver polls for it)."""
    marker = {"attempt": attempt, "host": socket.gethostname(), "pid": os.getpid(), "started": _now()}
    write_json_atomic(Path(clip_dir) / TASK_MARKER, marker)
    return marker


def read_task_marker(clip_dir: Path) -> Optional[Dict[str, Any]]:
    try:
        marker = json.loads((Path(clip_dir) / TASK_MARKER).read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return marker if isinstance(marker, dict) else None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _error_line(err: BaseException) -> str:
    """``Type: message`` of a clip's failure.

    ns-train's set-up reports a user error by exiting (one line, status 2, ds4d_ns.errors): the error is the
    exit's context; in a Ray worker an exit would end the worker. Worked out here, not in a variable of
    :func:`run_clip`: one there would hold the error, its traceback and every frame in it (the commands'
    output folders, with their folder locks) in a cycle until the garbage collector runs.
    """
    cause = err.__context__ if isinstance(err, SystemExit) and err.__context__ is not None else err
    return f"{type(cause).__name__}: {cause}"


def run_clip(job: ClipJob, settings: ClipSettings, out: Path, attempt: str) -> Dict[str, Any]:
    """Process, train, evaluate, render and export one clip; the outcome as a dict (see :class:`ClipOutcome`).

    Args:
        job: the clip.
        settings: the batch's settings.
        out: the batch's output folder.
        attempt: names this attempt in the task marker (so the driver tells it from an earlier one's).
    """
    start = time.monotonic()
    clip_dir = clip_folder(out, job.name)
    outputs: Dict[str, str] = {}
    metrics = None
    started = write_task_marker(clip_dir, attempt)["started"]
    try:
        if settings.torch_threads:
            import torch

            torch.set_num_threads(settings.torch_threads)
        if job.kind == "dataset":
            dataset = job.source
        else:
            from ds4d_ns.process.run import process

            dataset = clip_dir / "data"
            process(process_config(job, settings.process_args, dataset))
        outputs["dataset"] = str(dataset)
        config = training_config(job.method or settings.method, settings.train_args, dataset, clip_dir)
        config_path = train(config)
        outputs["config"] = str(config_path)
        if has_eval_views(dataset):
            metrics = evaluate(config_path, clip_dir / "eval", settings.eval_metrics)
            outputs["eval"] = str(clip_dir / "eval" / "metrics.json")
        render(config_path, clip_dir / "renders", settings)
        outputs["renders"] = str(clip_dir / "renders")
        outputs["splats"] = str(export_splats(config_path, clip_dir / "splats", settings.export_num_times))
    except (Exception, SystemExit) as err:  # any failure is this clip's alone: recorded, and the batch goes on
        return ClipOutcome(
            "failed",
            (time.monotonic() - start) / 60.0,
            outputs,
            metrics,
            _error_line(err),
            traceback.format_exc(),
            started,
        ).as_dict()
    return ClipOutcome("done", (time.monotonic() - start) / 60.0, outputs, metrics, started=started).as_dict()
