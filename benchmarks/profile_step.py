"""Benchmark: where one training step's time goes, with torch's profiler.

Sets up the recipe exactly as ``train_recipe.py`` (so as ``ns-train``), trains through the static
stage and into the dynamic one, then runs ``--profile-steps`` more iterations of nerfstudio's own
training loop (callbacks, iteration, logging) under ``torch.profiler`` and prints the wall time of
each part of a step:

* ``data``: the datamanager's batch; ``deformation``: HexPlane + MLP; ``feature fusion``: TSSF
  sampling and fusion of the frame features; ``raster``: gsplat forward; ``losses``: loss terms
  and metrics; ``backward``: autograd (the raster's backward included); ``optimiser``: Adam steps,
  zeroing and schedulers; ``densification``: the strategy's statistics and refinement;
  ``callbacks``: nerfstudio's other training callbacks; ``rest``: the step's wall time minus the
  parts (Python glue, writer, viewer state).

Host synchronisations are counted too: the step runs under ``torch.cuda.set_sync_debug_mode``
and every synchronising call is attributed to the first frame of this project, nerfstudio or gsplat
on its stack. A last measurement times the rasteriser alone (forward + backward of the same
Gaussians and cameras), the floor a step cannot go under. One JSON record is written::

    python benchmarks/profile_step.py --method ds4d-base --output $OUT/profile-base.json

The parts are the CPU-side wall time of each range (inclusive; the GPU runs asynchronously behind
it, so a range that synchronises absorbs the GPU work queued before it).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import functools
import json
import platform
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_recipe import add_recipe_arguments, build_trainer  # noqa: E402

PARTS = (
    "data",
    "deformation",
    "feature fusion",
    "raster",
    "losses",
    "backward",
    "optimiser",
    "densification",
    "callbacks",
)
PREFIX = "ds4d::"
SOURCE_ROOTS = ("ds4d_ns", "method_configs", "dataparsers", "nerfstudio", "gsplat", "benchmarks")


def _ranged(label: str, function: Callable) -> Callable:
    import torch

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with torch.profiler.record_function(PREFIX + label):
            return function(*args, **kwargs)

    return wrapper


@contextlib.contextmanager
def patched(owner, name: str, wrap: Callable[[Callable], Callable]) -> Iterator[None]:
    """Replace ``owner.name`` by ``wrap(owner.name)`` for the duration of the block."""
    original = getattr(owner, name)
    own = name in vars(owner)  # a bound method patched on an instance is removed again, not pinned there
    setattr(owner, name, wrap(original))
    try:
        yield
    finally:
        if own:
            setattr(owner, name, original)
        else:
            delattr(owner, name)


def _patched(owner, name: str, label: str):
    """Wrap ``owner.name`` in a profiler range for the duration of the block."""
    return patched(owner, name, lambda original: _ranged(label, original))


def instrument(trainer) -> contextlib.ExitStack:
    """Profiler ranges around each part of a step (patched in, so the library carries no profiling code)."""
    import torch
    from nerfstudio.engine.callbacks import TrainingCallback

    import ds4d_ns.ds4d_model as model_module
    from ds4d_ns.fields.deformation import DeformationField

    model = trainer.pipeline.model
    stack = contextlib.ExitStack()
    stack.enter_context(_patched(trainer.pipeline.datamanager, "next_train", "data"))
    stack.enter_context(_patched(DeformationField, "forward", "deformation"))
    for module in model.modules():
        # TSSF's module, whatever it is called after refactors: the one that samples frame features
        if type(module).__name__ in ("FramePointFeatures", "FeatureBank", "FrameFeatureField"):
            stack.enter_context(_patched(type(module), "forward", "feature fusion"))
            break
    stack.enter_context(_patched(model_module, "rasterize_gaussians", "raster"))
    stack.enter_context(_patched(model, "get_loss_dict", "losses"))
    stack.enter_context(_patched(model, "get_metrics_dict", "losses"))
    stack.enter_context(_patched(torch.autograd, "backward", "backward"))
    optimizers = trainer.optimizers
    for name in ("optimizer_step_all", "zero_grad_all", "scheduler_step_all"):
        stack.enter_context(_patched(optimizers, name, "optimiser"))
    for name in ("step_pre_backward", "step_post_backward"):
        stack.enter_context(_patched(model.strategy, name, "densification"))
    stack.enter_context(_patched(TrainingCallback, "run_callback_at_location", "callbacks"))
    return stack


class SyncCounter:
    """Counts CUDA host synchronisations by the first project/library frame that asked for one."""

    def __init__(self) -> None:
        self.sites: Dict[str, int] = collections.Counter()

    def _site(self) -> str:
        for frame in reversed(traceback.extract_stack()[:-3]):
            path = frame.filename.replace("\\", "/")
            for root in SOURCE_ROOTS:
                marker = f"/{root}/"
                if marker in path and "profile_step.py" not in path:
                    return f"{root}/{path.split(marker, 1)[1]}:{frame.lineno} ({frame.name})"
        return "other"

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        import torch

        previous = warnings.showwarning

        def record(message, category, filename, lineno, file=None, line=None):
            if "synchroniz" in str(message):
                self.sites[self._site()] += 1
            else:
                previous(message, category, filename, lineno, file, line)

        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = record
            torch.cuda.set_sync_debug_mode("warn")
            try:
                yield
            finally:
                torch.cuda.set_sync_debug_mode("default")
                warnings.showwarning = previous


def run_steps(trainer, steps: int, start: int) -> None:
    """The body of nerfstudio's ``Trainer.train`` loop for ``steps`` iterations (no viewer, no eval)."""
    from nerfstudio.engine.callbacks import TrainingCallbackLocation
    from nerfstudio.utils import writer
    from nerfstudio.utils.misc import step_check
    from nerfstudio.utils.writer import EventName, TimeWriter

    for step in range(start, start + steps):
        trainer.step = step
        with TimeWriter(writer, EventName.ITER_TRAIN_TIME, step=step):
            trainer.pipeline.train()
            for callback in trainer.callbacks:
                callback.run_callback_at_location(step, location=TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
            loss, loss_dict, metrics_dict = trainer.train_iteration(step)
            for callback in trainer.callbacks:
                callback.run_callback_at_location(step, location=TrainingCallbackLocation.AFTER_TRAIN_ITERATION)
        if step_check(step, trainer.config.logging.steps_per_log, run_at_zero=True):
            writer.put_scalar(name="Train Loss", scalar=loss, step=step)
            writer.put_dict(name="Train Loss Dict", scalar_dict=loss_dict, step=step)
            writer.put_dict(name="Train Metrics Dict", scalar_dict=metrics_dict, step=step)
        writer.write_out_storage()


def timed_steps(trainer, steps: int, start: int, synchronize: Callable[[], None]) -> float:
    """Milliseconds per step of ``run_steps``, the GPU's queue drained before and after."""
    synchronize()
    begin = time.perf_counter()
    run_steps(trainer, steps, start)
    synchronize()
    return 1000 * (time.perf_counter() - begin) / steps


def breakdown(profiler, steps: int, wall_ms: float) -> Dict[str, float]:
    """Milliseconds per step of each part and the rest of the step's wall time.

    A part's time is exclusive: ranges nest (densification runs inside a callback, the SDS render's
    deformation and raster inside the losses), and a nested range counts for itself only."""
    totals: Dict[str, float] = collections.Counter()

    def nested_ranges(event) -> List:
        found = []
        for child in event.cpu_children:
            found.extend([child] if child.name.startswith(PREFIX) else nested_ranges(child))
        return found

    for event in profiler.events():
        if event.name.startswith(PREFIX):
            inner = sum(child.cpu_time_total for child in nested_ranges(event))
            totals[event.name[len(PREFIX) :]] += (event.cpu_time_total - inner) / 1000.0
    parts = {part: round(totals.get(part, 0.0) / steps, 3) for part in PARTS}
    parts["rest"] = round(wall_ms - sum(parts.values()), 3)
    parts["step wall"] = round(wall_ms, 3)
    return parts


def gpu_kernel_ms(profiler, steps: int) -> float:
    """Milliseconds per step that the GPU ran kernels and copies (its busy time).

    Summed over the device's own events only: the CPU-side ops of ``key_averages`` also carry the
    device time of the kernels they launched, so summing every row counts each kernel more than once
    (the records of 2026-12-03 hold that over-count, 22-27 ms; their Chrome trace gives 4.7 ms)."""
    from torch.autograd import DeviceType

    total = sum(event.time_range.elapsed_us() for event in profiler.events() if event.device_type == DeviceType.CUDA)
    return round(total / 1000.0 / steps, 3)


def rasteriser_floor(trainer, repeats: int = 50) -> Tuple[float, int, int]:
    """Forward + backward of the rasteriser alone on the model's Gaussians and one batch's cameras (ms)."""
    import torch

    from ds4d_ns.rendering.camera_matrices import opengl_c2w_to_opencv_viewmat
    from ds4d_ns.rendering.rasterize import rasterize_gaussians

    model = trainer.pipeline.model
    cameras, _ = trainer.pipeline.datamanager.next_train(trainer.step)
    viewmats = opengl_c2w_to_opencv_viewmat(cameras.camera_to_worlds)
    Ks = cameras.get_intrinsics_matrices().to(model.device)
    width, height = int(cameras.width[0]), int(cameras.height[0])
    params = {
        name: tensor.detach().clone().requires_grad_(True)
        for name, tensor in {
            "means": model.means,
            "quats": model.quats,
            "scales": model.scales,
            "opacities": model.opacities,
            "colors": torch.cat([model.features_dc[:, None, :], model.features_rest], dim=1),
        }.items()
    }

    def once() -> None:
        render, alpha, _ = rasterize_gaussians(
            means=params["means"],
            quats=params["quats"],
            scales=torch.exp(params["scales"]),
            opacities=torch.sigmoid(params["opacities"]).squeeze(-1),
            colors=params["colors"],
            viewmats=viewmats,
            Ks=Ks,
            width=width,
            height=height,
            sh_degree=model.config.sh_degree,
        )
        (render.sum() + alpha.sum()).backward()

    synchronize = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(min(5, repeats)):
        once()
    synchronize()
    begin = time.perf_counter()
    for _ in range(repeats):
        once()
    synchronize()
    return 1000 * (time.perf_counter() - begin) / repeats, len(cameras), width


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_recipe_arguments(parser)
    parser.add_argument("--warmup-steps", type=int, default=300, help="dynamic-stage steps before profiling")
    parser.add_argument("--profile-steps", type=int, default=50)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--trace", type=Path, default=None, help="also write a Chrome trace here")
    parser.add_argument("--smoke", action="store_true", help="allow a CPU run (checks the script, times nothing)")
    parser.set_defaults(static_steps=200, dynamic_steps=1000)
    args = parser.parse_args()

    import gsplat
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        raise SystemExit("profile_step.py measures the CUDA path: run it on a GPU machine (or --smoke on a CPU)")
    synchronize = torch.cuda.synchronize if cuda else (lambda: None)
    trainer, _ = build_trainer(args)
    start = 0
    # through the static stage and some dynamic steps: shapes, densification and caches settle
    run_steps(trainer, args.static_steps + args.warmup_steps, start)
    start += args.static_steps + args.warmup_steps

    plain_ms = timed_steps(trainer, args.profile_steps, start, synchronize)
    start += args.profile_steps

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with instrument(trainer), profile(activities=activities) as profiler:
        profiled_ms = timed_steps(trainer, args.profile_steps, start, synchronize)
    start += args.profile_steps
    if args.trace is not None:
        profiler.export_chrome_trace(str(args.trace))

    counter = SyncCounter()
    with counter.counting() if cuda else contextlib.nullcontext():
        run_steps(trainer, args.profile_steps, start)
    syncs: List[Tuple[str, float]] = sorted(
        ((site, round(count / args.profile_steps, 2)) for site, count in counter.sites.items()),
        key=lambda item: -item[1],
    )
    floor_ms, views, width = rasteriser_floor(trainer, repeats=50 if cuda else 2)

    parts = breakdown(profiler, args.profile_steps, profiled_ms)
    record = {
        "benchmark": "profile_step",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "device": torch.cuda.get_device_name(0) if cuda else "cpu (smoke run: no timing meaning)",
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "gsplat": gsplat.__version__},
        "method": args.method,
        "tag": args.tag,
        "model_overrides": args.model_set,
        "num_gaussians": int(trainer.pipeline.model.num_points),
        "step_ms_unprofiled": round(plain_ms, 3),
        "step_ms_profiled": round(profiled_ms, 3),
        "parts_ms_per_step": parts,
        "gpu_kernel_ms_per_step": gpu_kernel_ms(profiler, args.profile_steps),
        "host_syncs_per_step": dict(syncs),
        "host_syncs_total_per_step": round(sum(count for _, count in syncs), 2),
        "rasteriser_floor_ms": round(floor_ms, 3),
        "rasteriser_floor_views": views,
        "rasteriser_floor_width": width,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    print(f"{args.method} ({args.tag}): {plain_ms:.2f} ms/step unprofiled, {record['num_gaussians']} Gaussians")
    for part, value in parts.items():
        print(f"  {part:<16} {value:8.3f} ms")
    print(f"  GPU kernels busy {record['gpu_kernel_ms_per_step']} ms/step; rasteriser alone {floor_ms:.2f} ms")
    print(f"  host syncs per step: {record['host_syncs_total_per_step']}")
    for site, count in syncs[:15]:
        print(f"    {count:6.2f}  {site}")


if __name__ == "__main__":
    main()
