"""Benchmark (any device, CPU included): the framework operations a training step dispatches, by part.

A step on a GPU is bound by the host: every aten operation the step dispatches costs host time (and most
launch a kernel), whatever the GPU then spends on it. This counts them (a ``TorchDispatchMode``: every
operation that reaches a kernel, forward and backward) over ``--count-steps`` dynamic-stage steps of
nerfstudio's own training loop, and attributes each to a part of the step:

* forward: ``data`` (the batch), ``graphed: deformation`` (``DeformationStep``: frame features, deformation,
  HexPlane regularisers), ``raster`` (the rasteriser), ``graphed: image losses`` (``ImageLosses``),
  ``optimiser`` (Adam steps, zeroing, schedulers), ``densification`` (the strategy), with ``--priors``
  ``graphed: LPIPS``, ``graphed: VAE encoder``, ``graphed: UNet`` (Zero123's guided call, no gradients) and
  ``priors: other`` (the SDS view, its render's glue, the weighting), and ``rest`` (everything else:
  parameter activations, ground truth, loss sum, callbacks, metrics on logged steps);
* backward: each operation goes to the forward part whose autograd node it runs (a node's sequence number
  falls in the range of the part that created it; ``torch._C._current_autograd_node``), or ``backward:
  rest`` (the engine's own, gradient accumulation).

With ``--pipeline.model.cuda-graphs True`` a GPU replays each ``graphed:`` part as one launch forward and
one backward (plus copies of its inputs): the record's ``graph_share`` is the fraction of the step's
operations they hold. On the CPU the rasteriser is the project's torch fallback, not gsplat, so the
``raster`` counts are not gsplat's; every other part dispatches the same operations on either device (Adam is
made fused on the CPU too, as it is on a GPU). ::

    python benchmarks/step_operations.py --method ds4d-base --frames 3 --resolution 32 --output X.json
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import functools
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from profile_step import patched, run_steps  # noqa: E402
from train_recipe import add_recipe_arguments, build_trainer  # noqa: E402

GRAPHED = ("graphed: deformation", "graphed: image losses", "graphed: LPIPS", "graphed: VAE encoder", "graphed: UNet")


def _sequence_now() -> int:
    """The autograd sequence number the next node created on this thread will exceed."""
    import torch

    with torch.enable_grad():
        probe = torch.zeros((), requires_grad=True).mul(1.0)
    assert probe.grad_fn is not None
    return int(probe.grad_fn._sequence_nr())


def _caller() -> str:
    """The innermost frame of this project, nerfstudio, gsplat or torch.optim on the stack."""
    import traceback

    for frame in reversed(traceback.extract_stack()[:-3]):
        path = frame.filename.replace("\\", "/")
        for root in ("ds4d_ns", "nerfstudio", "gsplat", "torch/optim", "torch/nn"):
            marker = f"/{root}/"
            if marker in path:
                return f"{root}/{path.split(marker, 1)[1]}:{frame.lineno}"
    return "other"


class OperationCounter:
    """Counts dispatched operations by the innermost labelled part (forward) or by the part whose autograd node
    runs them (backward)."""

    def __init__(self, detail: bool = False) -> None:
        self.counts: Dict[str, int] = collections.Counter()
        self.detail = detail
        self.rest_sources: Dict[str, int] = collections.Counter()
        """With ``detail``: where the forward ``rest`` and ``priors: other`` operations come from (the innermost
        project, nerfstudio, gsplat or torch.optim/nn frame on the stack, and the operation)."""
        self.labels: List[str] = []
        self.ranges: List[Tuple[str, int, int]] = []  # (part, first sequence number, last) of this step's parts
        self.backward = False
        self.paused = False

    def mode(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        counter = self

        class Counting(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                if not counter.paused:
                    part = counter.part_of_current_operation()
                    counter.counts[part] += 1
                    if counter.detail and part in ("rest", "priors: other"):
                        counter.rest_sources[f"{_caller()} {func}"] += 1
                return func(*args, **(kwargs or {}))

        return Counting()

    def part_of_current_operation(self) -> str:
        if not self.backward:
            return self.labels[-1] if self.labels else "rest"
        import torch

        node = torch._C._current_autograd_node()
        if node is not None:
            number = node._sequence_nr()
            holding = [(last - first, part) for part, first, last in self.ranges if first < number < last]
            if holding:  # the innermost part that made the node: the narrowest range holding its number
                return f"backward: {min(holding)[1]}"
        return "backward: rest"

    @contextlib.contextmanager
    def part(self, label: str) -> Iterator[None]:
        self.paused = True
        first = _sequence_now()
        self.paused = False
        self.labels.append(label)
        try:
            yield
        finally:
            self.labels.pop()
            self.paused = True
            self.ranges.append((label, first, _sequence_now()))
            self.paused = False

    @contextlib.contextmanager
    def in_backward(self) -> Iterator[None]:
        self.backward = True
        try:
            yield
        finally:
            self.backward = False


def _wrapped(counter: OperationCounter, label: str, function: Callable) -> Callable:
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with counter.part(label):
            return function(*args, **kwargs)

    return wrapper


def instrument(trainer, counter: OperationCounter) -> contextlib.ExitStack:
    """Label each part of a step (patched in, as ``profile_step.py`` does)."""
    import torch

    import ds4d_ns.ds4d_model as model_module

    model = trainer.pipeline.model
    stack = contextlib.ExitStack()

    def label(owner, name: str, part: str) -> None:
        stack.enter_context(patched(owner, name, lambda original: _wrapped(counter, part, original)))

    label(trainer.pipeline.datamanager, "next_train", "data")
    label(model, "deformation_step", "graphed: deformation")
    label(model, "image_losses", "graphed: image losses")
    label(model_module, "rasterize_gaussians", "raster")
    for name in (
        "optimizer_step_all",
        "optimizer_scaler_step_all",
        "optimizer_scaler_step_some",
        "zero_grad_all",
        "zero_grad_some",
        "scheduler_step_all",
    ):
        if hasattr(trainer.optimizers, name):
            label(trainer.optimizers, name, "optimiser")
    for name in ("step_pre_backward", "step_post_backward"):
        label(model.strategy, name, "densification")
    priors = getattr(model, "priors", None)
    if priors is not None:  # LPIPS and SDS (--priors): the graphed networks inside the priors' other work
        label(priors, "losses", "priors: other")
        label(priors, "_lpips_graph", "graphed: LPIPS")
        if priors.zero123 is not None:
            label(priors.zero123, "_encoder", "graphed: VAE encoder")
            label(priors.zero123, "_noise", "graphed: UNet")

    def backward(original: Callable) -> Callable:
        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            with counter.in_backward():
                return original(*args, **kwargs)

        return wrapper

    stack.enter_context(patched(torch.autograd, "backward", backward))
    return stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_recipe_arguments(parser)
    parser.add_argument("--warmup-steps", type=int, default=20, help="dynamic-stage steps before counting")
    parser.add_argument("--count-steps", type=int, default=10)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument(
        "--detail", action="store_true", help="also record where the forward 'rest' and 'priors: other' come from"
    )
    parser.set_defaults(static_steps=20, dynamic_steps=200)
    args = parser.parse_args()

    import torch

    from ds4d_ns.optimizers import Ds4dAdamConfig

    # Adam as a GPU runs it, fused (one kernel a group), on the CPU too (torch has a fused CPU kernel): the CPU
    # configurations' foreach Adam dispatches some 35 operations a group instead
    setup = Ds4dAdamConfig.setup

    def fused_setup(self, params):
        self.fused = True if self.fused is None else self.fused
        return setup(self, params)

    Ds4dAdamConfig.setup = fused_setup  # type: ignore[method-assign]
    trainer, _ = build_trainer(args)
    if trainer.pipeline.model.config.cuda_graphs and torch.cuda.is_available():
        raise SystemExit(
            "step_operations.py counts the eager step (the graphed parts are labelled; a capture under the counting "
            "mode would fail): run it with --model-set cuda_graphs=False"
        )
    start = args.static_steps + args.warmup_steps
    run_steps(trainer, start, 0)
    counter = OperationCounter(detail=args.detail)
    with instrument(trainer, counter), counter.mode():
        for step in range(start, start + args.count_steps):
            counter.ranges.clear()
            run_steps(trainer, 1, step)
    per_step = {part: round(count / args.count_steps, 1) for part, count in sorted(counter.counts.items())}
    total = sum(per_step.values())
    graphed = sum(value for part, value in per_step.items() if any(part.endswith(name) for name in GRAPHED))
    raster = sum(value for part, value in per_step.items() if part.endswith("raster"))
    model = trainer.pipeline.model
    record = {
        "benchmark": "step_operations",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "torch": torch.__version__,
        "method": args.method,
        "num_gaussians": int(model.num_points),
        "steps_counted": [start, start + args.count_steps],
        "operations_per_step": per_step,
        "total_per_step": round(total, 1),
        "graphed_per_step": round(graphed, 1),
        "graph_share": round(graphed / total, 3) if total else None,
        "graph_share_without_raster": round(graphed / (total - raster), 3) if total > raster else None,
        "rest_sources_per_step": {
            source: round(count / args.count_steps, 1) for source, count in counter.rest_sources.most_common(40)
        },
        "raster_note": "the CPU counts the torch fallback rasteriser, not gsplat"
        if not torch.cuda.is_available()
        else "",
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    width = max(len(part) for part in per_step)
    for part, value in per_step.items():
        print(f"  {part:<{width}} {value:8.1f}")
    share, share_outside = record["graph_share"], record["graph_share_without_raster"]
    print(
        f"{args.method}: {total:.0f} operations a step, {graphed:.0f} in the graphed parts ({share:.0%}; "
        f"{share_outside:.0%} of those outside the rasteriser)"
    )


if __name__ == "__main__":
    main()
