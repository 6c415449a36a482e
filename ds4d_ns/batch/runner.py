"""``ds4d-batch JOBS OUT``: every clip of JOBS through the whole job, one Ray task per clip.

Order of work: every check first (flags, JOBS, the ``ds4d-process`` and ``ns-train`` flags, OUT and its
manifest, Ray and its resources, pretrained weights), then the clips still to do (not ``done`` in the
manifest, or done but with outputs gone or changed since), then the summary. OUT is locked
(:mod:`ds4d_ns.io.folder_lock`) from the manifest's first reading to the end: one batch at a time.

With Ray (the optional extra ``ds4d-ns[batch]``) each clip is one task declaring ``--gpus-per-job``,
``--cpus-per-job`` and ``--memory-gb-per-job``, on a local Ray instance or the cluster at ``--ray-address``;
without Ray (or with ``--sequential``) the clips run one after the other in this process. Either way a
clip's failure is recorded and the others go on.

On a cluster every node must see JOBS and OUT at the same paths (a shared file system), and the paths in
``--train-args`` / ``--process-args`` must be absolute.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import tyro
from nerfstudio.utils.rich_utils import CONSOLE
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from typing_extensions import Annotated

from ds4d_ns.batch.clip import (
    ClipSettings,
    clip_folder,
    method_configs,
    process_config,
    read_task_marker,
    run_clip,
    training_config,
)
from ds4d_ns.batch.gsplat_kernels import load_gsplat_kernels
from ds4d_ns.batch.jobs import ClipJob, read_jobs
from ds4d_ns.batch.manifest import TOOL, BatchManifest, now
from ds4d_ns.errors import UserError
from ds4d_ns.evaluation.protocol import METRICS
from ds4d_ns.evaluation.score import MetricName
from ds4d_ns.io.folder_lock import locked_folder
from ds4d_ns.io.writers import write_bytes_atomic

SUMMARY_NAME = "summary.csv"
INSTALL_RAY = "pip install 'ds4d-ns[batch]' (or: pip install ray)"
"""How to install Ray, said where it is missing."""
OUTPUT_COLUMNS = ("dataset", "config", "eval", "renders", "splats")
"""Output paths of a clip in the summary, in its order."""
DONE_OUTPUTS = ("dataset", "config", "renders", "splats")
"""Outputs every clip done has (``eval`` only where its dataset has eval views)."""
GPU_DEFAULTS: Tuple[str, float] = ("ds4d", 1.0)
CPU_DEFAULTS: Tuple[str, float] = ("ds4d-cpu", 0.0)
"""--method and --gpus-per-job when left out, on a machine with CUDA and on one without."""


@dataclass
class BatchConfig:
    """Run many clips (videos, frame folders or datasets) through ds4d-process, training, ds4d-eval, ds4d-render
    and ds4d-export: one Ray task per clip, resumable, with a summary table."""

    jobs: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="JOBS")]
    """A CSV (column input, optional name, method and ds4d-process columns) or a folder of clips: videos,
    folders of images, or datasets (folders holding transforms.json)."""
    output: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="OUT")]
    """Output folder: new, empty, or an earlier ds4d-batch output with the same settings (resumed: clips done
    are skipped, failed or interrupted ones run again)."""
    ray_address: Optional[str] = None
    """Ray cluster to run on: auto (the cluster `ray start --head` started on this machine) or HOST:PORT.
    None: a local Ray instance on this machine (or, without Ray installed, one clip after the other here)."""
    sequential: bool = False
    """Run the clips one after the other in this process, even with Ray installed."""
    method: Optional[str] = None
    """ds4d method to train (ds4d, ds4d-ga, ds4d-base, ds4d-cpu, ds4d-base-cpu); a CSV's method column overrides it.
    None: ds4d where this machine has CUDA (or with --ray-address), else ds4d-cpu, its CPU configuration."""
    train_args: str = ""
    """ns-train flags for the method, in one quoted string after an equals sign (a value starting with -- is
    otherwise taken for a flag): --train-args="--max-num-iterations 3000"."""
    process_args: str = ""
    """ds4d-process flags for videos and frame folders, as --train-args: --process-args="--matting white
    --num-frames 32"; a CSV's columns override them per clip."""
    gpus_per_job: Optional[float] = None
    """GPUs each clip's Ray task declares (num_gpus): 1, a fraction to share a GPU (0.5: two clips per GPU), or
    0 to train on CPUs. None: 1 where this machine has CUDA (or with --ray-address), else 0."""
    cpus_per_job: int = 2
    """CPUs each clip's Ray task declares (num_cpus); torch uses as many threads."""
    memory_gb_per_job: float = 8.0
    """Host memory each clip's Ray task declares (Ray's memory resource, GiB; 0: none declared)."""
    ray_num_cpus: Optional[int] = None
    """CPUs of the local Ray instance (None: all of this machine's); not used with --ray-address."""
    eval_metrics: Tuple[MetricName, ...] = ()
    """ds4d-eval metrics (empty: all; those whose weights are missing are reported as unavailable)."""
    render_resolution: int = 512
    """Side of the rendered videos in pixels."""
    render_num_times: int = 60
    """Time steps of the front/right/back/left videos."""
    orbit_frames: int = 120
    """Frames of the orbit video at mid-clip (0: none)."""
    export_num_times: Optional[int] = None
    """Time steps exported as splat PLYs (None: one per training frame)."""

    @property
    def gpus(self) -> float:
        """--gpus-per-job, or its default for a machine with CUDA (:meth:`for_this_machine` sets it for others)."""
        return GPU_DEFAULTS[1] if self.gpus_per_job is None else self.gpus_per_job

    @property
    def method_name(self) -> str:
        """--method, or its default for a machine with CUDA (:meth:`for_this_machine` sets it for others)."""
        return GPU_DEFAULTS[0] if self.method is None else self.method

    def for_this_machine(self, cuda: Optional[bool] = None) -> "BatchConfig":
        """This configuration with --method and --gpus-per-job, where left out, set for the machine.

        Without CUDA (``cuda``; None: ask torch) a clip can only train on CPUs: 0 GPUs per job and the CPU
        configuration, said in one line, rather than a refusal because the clips ask for a GPU that is not
        there. With --ray-address the clips run on the cluster's machines, not this one: the GPU defaults stay
        (a cluster without GPUs is refused naming --gpus-per-job). A value the user gave is kept either way.
        """
        if self.ray_address is not None or (self.method is not None and self.gpus_per_job is not None):
            return self
        if cuda is None:
            import torch

            cuda = torch.cuda.is_available()
        method, gpus = GPU_DEFAULTS if cuda else CPU_DEFAULTS
        config = dataclasses.replace(
            self,
            method=method if self.method is None else self.method,
            gpus_per_job=gpus if self.gpus_per_job is None else self.gpus_per_job,
        )
        if not cuda:
            CONSOLE.log(
                escape(
                    f"no CUDA on this machine: clips train on CPUs with {config.method_name} and "
                    f"--gpus-per-job {config.gpus:g} (set --method and --gpus-per-job to choose)"
                )
            )
        return config

    def check_flags(self) -> None:
        """Raise a :class:`UserError` naming the first unusable flag."""
        if not 0.0 <= self.gpus <= 1.0 or not math.isfinite(self.gpus):
            raise UserError(
                f"--gpus-per-job {self.gpus}: a clip trains on one GPU; give 1, a fraction (0.5 shares a GPU "
                "between two clips) or 0 (CPUs)"
            )
        if self.cpus_per_job < 1:
            raise UserError(f"--cpus-per-job must be at least 1, got {self.cpus_per_job}")
        if not (math.isfinite(self.memory_gb_per_job) and self.memory_gb_per_job >= 0):
            raise UserError(f"--memory-gb-per-job must be 0 or more, got {self.memory_gb_per_job}")
        if self.ray_num_cpus is not None and self.ray_num_cpus < 1:
            raise UserError(f"--ray-num-cpus must be at least 1, got {self.ray_num_cpus}")
        if self.ray_address is not None and self.sequential:
            raise UserError("--sequential runs in this process: leave out --ray-address")
        for flag, value, minimum in (
            ("--render-resolution", self.render_resolution, 1),
            ("--render-num-times", self.render_num_times, 1),
            ("--orbit-frames", self.orbit_frames, 0),
            ("--export-num-times", self.export_num_times, 1),
        ):
            if value is not None and value < minimum:
                raise UserError(f"{flag} must be at least {minimum}, got {value}")
        unknown = [m for m in self.eval_metrics if m not in METRICS]
        if unknown:
            raise UserError(f"--eval-metrics: unknown {unknown}; choose from {list(METRICS)}")

    def clip_settings(self, torch_threads: Optional[int] = None) -> ClipSettings:
        return ClipSettings(
            method=self.method_name,
            train_args=self.train_args,
            process_args=self.process_args,
            eval_metrics=tuple(self.eval_metrics),
            render_resolution=self.render_resolution,
            render_num_times=self.render_num_times,
            orbit_frames=self.orbit_frames,
            export_num_times=self.export_num_times,
            torch_threads=torch_threads,
        )

    def recorded_settings(self) -> Dict[str, Any]:
        """What every clip's outputs depend on (the manifest's settings; how clips are run is left out)."""
        settings = self.clip_settings()
        return {
            "method": settings.method,
            "train_args": settings.train_args,
            "process_args": settings.process_args,
            "eval_metrics": list(settings.eval_metrics),
            "render_resolution": settings.render_resolution,
            "render_num_times": settings.render_num_times,
            "orbit_frames": settings.orbit_frames,
            "export_num_times": settings.export_num_times,
        }


def check_clip_flags(config: BatchConfig, jobs: Sequence[ClipJob], methods: Dict[str, Any], local: bool) -> None:
    """The ns-train and ds4d-process flags of every clip, before any work; pretrained weights when ``local``.

    Raises:
        UserError: naming the flag (or the clip) and the fix.
    """
    from ds4d_ns.process.run import check_arguments

    out = Path(config.output).absolute()
    trained = {}
    for job in jobs:
        method = job.method or config.method_name
        if method not in trained:
            trained[method] = training_config(method, config.train_args, out / "data", out, methods)
        if job.kind != "dataset":
            try:
                check_arguments(process_config(job, config.process_args, clip_folder(out, job.name) / "data"))
            except UserError as err:
                raise UserError(f"{job.origin} ({job.name}): {err}") from err
    if local:  # a cluster's workers may hold weights this machine lacks: there each clip checks its own
        from ds4d_ns.pretrained import require_weights

        for method, trainer_config in trained.items():
            try:
                require_weights(trainer_config.pipeline)
            except UserError as err:
                raise UserError(f"--method {method}: {err}") from err


def ray_module():
    """The ``ray`` package, or None when it is not installed."""
    try:
        import ray
    except ImportError:
        return None
    return ray


class _Display:
    """The progress bar over clips and its counts."""

    def __init__(self, total: int) -> None:
        self.counts = {"done": 0, "failed": 0, "running": 0}
        self.progress = Progress(
            TextColumn("[bold]clips"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=CONSOLE,
        )
        self.task = self.progress.add_task("clips", total=total, status=self._status())

    def _status(self) -> str:
        return ", ".join(f"{count} {state}" for state, count in self.counts.items())

    def started(self) -> None:
        self.counts["running"] += 1
        self.progress.update(self.task, status=self._status())

    def finished(self, name: str, outcome: Dict[str, Any]) -> None:
        self.counts["running"] = max(0, self.counts["running"] - 1)
        self.counts[outcome["state"]] += 1
        self.progress.update(self.task, advance=1, status=self._status())
        if outcome["state"] == "failed":
            CONSOLE.print(f"[bold red]clip {escape(name)} failed: {escape(str(outcome.get('error')))}", soft_wrap=True)
        else:
            CONSOLE.log(f"clip {escape(name)} done in {outcome['minutes']:.1f} min")


def _run_sequential(todo: List[ClipJob], manifest: BatchManifest, settings: ClipSettings, display: _Display) -> None:
    out = manifest.out.absolute()
    for job in todo:
        manifest.mark_running(job.name, where={"host": socket.gethostname(), "pid": os.getpid()})
        display.started()
        outcome = run_clip(job, settings, out, uuid.uuid4().hex)
        manifest.mark_finished(job.name, outcome)
        display.finished(job.name, outcome)


def start_local_ray(ray, **options) -> None:
    """``ray.init`` of a local instance; one that misses Ray's fixed 30 s start-up wait is started once more.

    On a busy two-core machine Ray's own processes (GCS, raylet, its agents) took 8 to 42 s to start
    (measured, Ray 2.60), and past 30 s ``ray.init`` gives up with a bare ``Exception``.
    """
    try:
        ray.init(address=None, **options)
    except Exception as err:  # Ray raises a bare Exception for this one
        if "timed out during startup" not in str(err):
            raise
        CONSOLE.print("[yellow]Ray's local instance did not start in time (a busy machine?): starting it once more")
        ray.shutdown()
        ray.init(address=None, **options)


class RayExecutor:
    """Ray, started (or joined) and checked against the tasks' declared resources."""

    def __init__(self, ray, config: BatchConfig) -> None:
        self.ray = ray
        self.config = config
        self.owns = not ray.is_initialized()
        if self.owns:
            options: Dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
            if config.ray_address is None:
                options["num_cpus"] = config.ray_num_cpus
            try:
                self._init(options)
            except ConnectionError as err:
                raise UserError(
                    f"--ray-address {config.ray_address}: no Ray cluster answers ({err}); start one with "
                    "`ray start --head` or leave out --ray-address for a local instance"
                ) from err
        try:
            self._check_resources()
        except BaseException:
            self.close()
            raise

    def _init(self, options: Dict[str, Any]) -> None:
        if self.config.ray_address is None:
            start_local_ray(self.ray, **options)
        else:
            self.ray.init(address=self.config.ray_address, **options)

    def _check_resources(self) -> None:
        resources = self.ray.cluster_resources()
        wanted = {
            "GPU": (self.config.gpus, "--gpus-per-job", "0 trains on CPUs"),
            "CPU": (self.config.cpus_per_job, "--cpus-per-job", "lower it"),
            "memory": (self.config.memory_gb_per_job * 2**30, "--memory-gb-per-job", "lower it, or 0"),
        }
        for resource, (amount, flag, fix) in wanted.items():
            have = resources.get(resource, 0.0)
            if amount > have:
                shown = f"{have / 2**30:.1f} GiB" if resource == "memory" else f"{have:g}"
                raise UserError(
                    f"{flag}: each clip asks for more {resource} than the whole Ray cluster has ({shown}); no clip "
                    f"could ever start: {fix}"
                )

    def close(self) -> None:
        if self.owns and self.ray.is_initialized():
            self.ray.shutdown()

    def run(self, todo: List[ClipJob], manifest: BatchManifest, settings: ClipSettings, display: _Display) -> None:
        ray, config = self.ray, self.config
        if config.ray_address is None and config.gpus > 0 and len(todo) > 1:
            # the local tasks share this machine's gsplat build: made here once, not by every task at once
            load_gsplat_kernels()
        out = manifest.out.absolute()
        options: Dict[str, Any] = {"num_cpus": config.cpus_per_job, "num_gpus": config.gpus, "max_retries": 0}
        if config.memory_gb_per_job > 0:
            options["memory"] = int(config.memory_gb_per_job * 2**30)
        # a killed worker fails its clip (recorded; a rerun retries it) rather than Ray rerunning it silently
        task = ray.remote(run_clip)
        attempts = {job.name: uuid.uuid4().hex for job in todo}
        refs = {
            task.options(name=f"ds4d-batch {job.name}", **options).remote(job, settings, out, attempts[job.name]): job
            for job in todo
        }
        seen_running: set = set()
        pending = list(refs)
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1, timeout=2.0)
                for job in refs.values():  # tasks that have started since: their marker names this attempt
                    if job.name in seen_running:
                        continue
                    marker = read_task_marker(clip_folder(out, job.name))
                    if marker is not None and marker.get("attempt") == attempts[job.name]:
                        where = {"host": marker.get("host"), "pid": marker.get("pid")}
                        manifest.mark_running(job.name, marker.get("started"), where)
                        seen_running.add(job.name)
                        display.started()
                for ref in ready:
                    job = refs[ref]
                    try:
                        outcome = ray.get(ref)
                    except ray.exceptions.RayError as err:  # the worker died (killed, out of memory) or Ray failed
                        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                        outcome = {"state": "failed", "error": f"{type(err).__name__}: {first}", "traceback": str(err)}
                    if job.name not in seen_running:
                        seen_running.add(job.name)
                        display.started()
                    manifest.mark_finished(job.name, outcome)
                    display.finished(job.name, outcome)
        except BaseException:
            for ref in pending:  # an interrupted driver: stop its tasks; the manifest keeps them running
                ray.cancel(ref, force=True)
            raise


def run_batch(config: BatchConfig) -> List[Dict[str, Any]]:
    """Run every clip of ``config.jobs`` not yet done; returns the summary rows (also in ``OUT/summary.csv``).

    Raises:
        UserError: before any work, naming the flag, the JOBS file and line, or OUT's manifest.
    """
    config = config.for_this_machine()
    config.check_flags()
    methods = method_configs()
    if config.method_name not in methods:
        raise UserError(f"--method {config.method_name!r}: not a ds4d method; choose one of {sorted(methods)}")
    jobs = read_jobs(config.jobs, config.output, methods)
    BatchManifest.open(config.output, config.recorded_settings(), jobs)  # what is wrong with OUT, before it is made
    # one batch at a time on OUT, for the batch's life: a second one refuses here, naming this one
    with locked_folder(config.output, TOOL):
        return _run_locked(config, jobs, methods)


def _run_locked(config: BatchConfig, jobs: List[ClipJob], methods: Dict[str, Any]) -> List[Dict[str, Any]]:
    """:func:`run_batch` once OUT is locked."""
    manifest = BatchManifest.open(config.output, config.recorded_settings(), jobs)  # read again, now it is ours
    recheck_done(jobs, manifest)
    todo = [job for job in jobs if manifest.state(job.name) != "done"]
    check_clip_flags(config, todo, methods, local=config.ray_address is None)
    ray = None if config.sequential else ray_module()
    if ray is None and config.ray_address is not None:
        raise UserError(f"--ray-address {config.ray_address}: Ray is not installed here; {INSTALL_RAY}")
    executor = RayExecutor(ray, config) if ray is not None and todo else None
    try:
        _announce(jobs, todo, manifest, executor, config)
        manifest.save()
        display = _Display(len(todo))
        with display.progress:
            if executor is not None:
                executor.run(todo, manifest, config.clip_settings(torch_threads=config.cpus_per_job), display)
            else:
                _run_sequential(todo, manifest, config.clip_settings(), display)
    finally:
        if executor is not None:
            executor.close()
    rows = summary_rows(jobs, manifest)
    write_summary(Path(config.output) / SUMMARY_NAME, rows)
    print_summary(rows)
    return rows


def recheck_done(jobs: Sequence[ClipJob], manifest: BatchManifest) -> None:
    """Clips the manifest calls done whose outputs are gone or changed are run again, each said in one line.

    The manifest is only a record: a user may delete a clip's folders, or edit the file by hand. A done clip
    must still have every output it lists (and the outputs every done clip has), with the sizes recorded
    when it was done.
    """
    for job in jobs:
        record = manifest.clips[job.name]
        if record["state"] != "done":
            continue
        required = DONE_OUTPUTS + (("eval",) if record.get("metrics") is not None else ())
        problem = manifest.outputs_problem(job.name, required)
        if problem is not None:
            CONSOLE.log(
                f"[yellow]clip {escape(job.name)}: done in {escape(str(manifest.path))}, but {escape(problem)}: "
                "running it again"
            )
            record.update(state="pending", metrics=None)  # no metrics of outputs that are gone


def _announce(jobs, todo, manifest: BatchManifest, executor, config: BatchConfig) -> None:
    done = len(jobs) - len(todo)
    left = [job.name for job in todo if manifest.state(job.name) == "running"]
    failed = [job.name for job in todo if manifest.state(job.name) == "failed"]
    parts = [f"{len(jobs)} clips: {done} done earlier (skipped), {len(todo)} to run"]
    if failed:
        parts.append(f"retrying failed: {', '.join(failed)}")
    if left:
        parts.append(f"interrupted earlier (left running), run again: {', '.join(left)}")
    CONSOLE.log(escape("; ".join(parts)))
    if not todo:
        return
    if executor is not None:
        where = "a local Ray instance" if config.ray_address is None else f"the Ray cluster at {config.ray_address}"
        CONSOLE.log(
            escape(
                f"running on {where}: one task per clip with {config.gpus:g} GPU, {config.cpus_per_job} CPU, "
                f"{config.memory_gb_per_job:g} GiB"
            )
        )
    elif config.sequential:
        CONSOLE.log("--sequential: running the clips one after the other in this process")
    else:
        CONSOLE.print(
            f"[yellow]Ray is not installed: running the clips one after the other in this process. For parallel "
            f"runs (several GPUs, a cluster): {escape(INSTALL_RAY)}",
            soft_wrap=True,
        )
    for job in todo:  # a fresh attempt: what an earlier one left is not taken for this one's start
        record = manifest.clips[job.name]
        if record["state"] == "running":
            record["interrupted"] = now()


def summary_rows(jobs: Sequence[ClipJob], manifest: BatchManifest) -> List[Dict[str, Any]]:
    """One row per clip of JOBS: clip, status, minutes, each metric any clip has, output paths, error."""
    metrics = [m for m in METRICS if any(m in (manifest.clips[j.name].get("metrics") or {}) for j in jobs)]
    rows = []
    for job in jobs:
        record = manifest.clips[job.name]
        row: Dict[str, Any] = {"clip": job.name, "status": record["state"], "minutes": record.get("minutes")}
        for metric in metrics:
            row[metric] = (record.get("metrics") or {}).get(metric)
        for name in OUTPUT_COLUMNS:
            path = (record.get("outputs") or {}).get(name)
            row[name] = path if isinstance(path, str) and os.path.exists(path) else None  # never a path that is gone
        row["error"] = record.get("error")
        rows.append(row)
    return rows


def write_summary(path: Path, rows: List[Dict[str, Any]]) -> None:
    """The summary as CSV (empty cells where a value is missing), atomically."""
    if not rows:
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else (f"{v:.3f}" if k == "minutes" else v) for k, v in row.items()})
    write_bytes_atomic(path, buffer.getvalue().encode())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_summary(rows: List[Dict[str, Any]]) -> None:
    """The summary as a rich table: metrics, the clip's folder and the error."""
    if not rows:
        return
    metrics = [k for k in rows[0] if k not in ("clip", "status", "minutes", "error", *OUTPUT_COLUMNS)]
    table = Table(title="ds4d-batch")
    for column in ("clip", "status", "minutes", *metrics, "outputs", "error"):
        table.add_column(column, overflow="fold")
    colours = {"done": "green", "failed": "red", "running": "yellow", "pending": "yellow"}
    for row in rows:
        outputs = row.get("splats") or row.get("config") or row.get("dataset")
        status = f"[{colours[row['status']]}]{row['status']}"
        cells = [escape(_cell(row["clip"])), status, _cell(row["minutes"])]
        cells += [_cell(row[m]) for m in metrics] + [escape(_cell(outputs)), escape(_cell(row["error"]))]
        table.add_row(*cells)
    CONSOLE.print(table)
